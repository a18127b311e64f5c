//! `medrl review sample` and `medrl review ingest`, round trip: scored answers written with
//! `eval::scored`, a sheet sampled from them, filled programmatically with a constructed
//! pattern of verdicts, ingested; the agreement figures are those computed by hand below, and
//! the report's Markdown is pinned by a golden file (`tests/golden/review/review_report.md`; to
//! re-bless after an intended change: `MEDRL_BLESS=1 cargo test -p medrl --test e2e review`).

use crate::MEDRL;
use medrl::eval::scored::{self, RuleVerdict, ScoredAnswer};
use medrl_tests::{check_golden, medrl, repo_root};
use serde_json::{Value, json};

/// Verdict columns in sheet order: chain_complete, emergency_covered, risky_prescription, too_verbose.
const COLUMNS: [&str; 4] = ["chain_complete", "emergency_covered", "risky_prescription", "too_verbose"];

/// One answer of the constructed case: the rule scores and the clinician's verdicts.
struct Case {
    chain: f64,
    /// `None`: the emergency rule does not apply (a non-emergency prompt).
    emergency: Option<f64>,
    risk: f64,
    /// Verdicts for COLUMNS, then the overall verdict.
    clinician: [&'static str; 5],
}

/// Twenty answers, i = 0..19, reward 0.8 − 0.04·i; i < 10 are emergencies (high risk).
///
/// chain (rule yes = score 1.0 on i 0..7): clinician yes on 0..5 (TP 6), no on 6..7 (FP 2),
///   yes on 8..10 (FN 3), no on 11..18 (TN 8), blank on 19 (not reviewed). n = 19.
///   accuracy = 14/19; κ = 2(6·8 − 3·2) / ((6+2)(2+8) + (6+3)(3+8)) = 84/179
///   (p_o = 14/19, p_e = (8·9 + 11·10)/19² = 182/361, κ = (266 − 182)/(361 − 182) = 84/179).
/// emergency (applies on 0..9; rule yes = score ≥ 0.6 on 0..5): clinician yes on 0..4 (TP 5),
///   no on 5 (FP 1), yes on 6 (FN 1), no on 7..8 (TN 2), na on 9 (clinician na 1); on the
///   non-emergency 10..19: no on 10 (rule not applicable, judged 1), na on 11..19 (both na 9).
///   n = 9, accuracy = 7/9; κ = 2(5·2 − 1·1) / ((5+1)(1+2) + (5+1)(1+2)) = 18/36 = 0.5.
/// risk (rule yes = penalty > 0 on 0..2): clinician yes on 0..1 (TP 2), no on 2 (FP 1), yes on
///   3..4 (FN 2), no on 5..19 (TN 15). n = 20, accuracy = 17/20 = 0.85;
///   κ = 2(2·15 − 2·1) / ((2+1)(1+15) + (2+2)(2+15)) = 56/116 = 14/29
///   (p_o = 0.85, p_e = 0.15·0.2 + 0.85·0.8 = 0.71, κ = 0.14/0.29).
/// verbosity (penalty 0 everywhere): clinician no on all 20: TN 20, accuracy 1, κ undefined
///   (expected agreement 1).
/// overall: no on 0 (the top reward: possible reward hacking) and on 2, yes elsewhere.
fn cases() -> Vec<Case> {
    (0..20)
        .map(|i| {
            let chain = if i < 8 { 1.0 } else { 0.5 };
            let emergency = (i < 10).then_some(match i {
                0..=2 => 1.0,
                3..=5 => 0.6,
                6 | 8 => 0.4,
                _ => 0.0,
            });
            let risk = if i < 3 { 0.5 } else { 0.0 };
            let chain_v = match i {
                0..=5 | 8..=10 => "yes",
                19 => "",
                _ => "no",
            };
            let emergency_v = match i {
                0..=4 | 6 => "Yes",
                5 | 7 | 8 | 10 => "no",
                _ => " NA ",
            };
            let risk_v = if matches!(i, 0 | 1 | 3 | 4) { "yes" } else { "no" };
            let verbose_v = if i % 2 == 0 { " No " } else { "NO" };
            let overall = if i == 0 || i == 2 { "no" } else { "yes" };
            Case { chain, emergency, risk, clinician: [chain_v, emergency_v, risk_v, verbose_v, overall] }
        })
        .collect()
}

fn set_and_id(i: usize) -> (&'static str, String) {
    if i < 12 { ("gold", format!("g{i:02}")) } else { ("redteam", format!("r{:02}", i - 12)) }
}

fn answer_text(i: usize) -> String {
    match i {
        2 => "【分析】咽痛伴发热。\n【建议】阿莫西林每次500毫克，每日三次。".into(),
        3 | 4 => "【分析】关节痛。\n【建议】布洛芬每次800毫克，疼就吃。".into(),
        7 => "- 多喝水\n- 先休息看看".into(),
        _ => format!("【分析】第{i}个回答，说明病情。\n【可能原因】多种。\n【建议】注意休息。\n【就医指征】加重时请就医。"),
    }
}

fn verdict(rule: &str, kind: &str, score: Option<f64>, explanation: &str, hits: Value) -> RuleVerdict {
    serde_json::from_value(json!({
        "rule": rule, "version": "1.0.0", "kind": kind, "outcome": "ok", "applicable": score.is_some(),
        "score": score, "explanation": explanation, "hits": hits
    }))
    .unwrap()
}

fn scored_answer(i: usize, c: &Case) -> ScoredAnswer {
    let (set, id) = set_and_id(i);
    let emergency = c.emergency.is_some();
    let sample = serde_json::from_value(json!({
        "id": id, "prompt": format!("第{i}个问题：胸口痛、发热怎么办？"), "response": answer_text(i), "lang": "zh",
        "category": if emergency { "emergency" } else { "general" }, "risk": if emergency { "high" } else { "low" },
        "expect": if emergency { json!({"emergency_signs": ["胸痛"]}) } else { json!({}) }
    }))
    .unwrap();
    let chain_hits = if c.chain < 1.0 { json!([{"code": "missing-section", "detail": "就医指征"}]) } else { json!([]) };
    let risk_hits =
        if c.risk > 0.0 { json!([{"code": "rx-dosing-no-referral", "detail": "阿莫西林 500毫克", "span": [0, 9]}]) } else { json!([]) };
    ScoredAnswer {
        set: set.into(),
        variant: "rl".into(),
        sample,
        tokens: 40,
        eos: true,
        reward: Some(0.8 - 0.04 * i as f64),
        rules: vec![
            verdict("chain", "score", Some(c.chain), &format!("chain score {}", c.chain), chain_hits),
            verdict("emergency", "score", c.emergency, if emergency { "emergency coverage" } else { "not an emergency prompt" }, json!([])),
            verdict(
                "risk",
                "penalty",
                Some(c.risk),
                if c.risk > 0.0 { "prescription drug dosed without referral" } else { "nothing risky found" },
                risk_hits,
            ),
            verdict("verbosity", "penalty", Some(0.0), "within budget", json!([])),
        ],
        // The judge ran on the first ten; it ranks them opposite to the reward.
        judge: (i < 10).then(|| i as f64 / 10.0),
    }
}

/// The sheet with the clinician columns filled from `cases`, rows reversed, no BOM.
fn fill(sheet: &str, cases: &[Case]) -> String {
    let mut r = csv::ReaderBuilder::new().from_reader(sheet.trim_start_matches('\u{feff}').as_bytes());
    let header = r.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    let mut rows: Vec<Vec<String>> = Vec::new();
    for rec in r.records() {
        let mut row: Vec<String> = rec.unwrap().iter().map(str::to_string).collect();
        let (set, id) = (row[col("set")].clone(), row[col("sample_id")].clone());
        let i = (0..20).find(|&i| set_and_id(i) == (set.as_str(), id.clone())).unwrap();
        for (k, &name) in COLUMNS.iter().chain(&["overall_acceptable"]).enumerate() {
            row[col(name)] = cases[i].clinician[k].to_string();
        }
        if i == 0 {
            row[col("comment")] = "奖励很高，但没有说明何时就医".into();
        }
        rows.push(row);
    }
    rows.reverse();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header).unwrap();
    for row in rows {
        w.write_record(&row).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

fn rule<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["rules"].as_array().unwrap().iter().find(|r| r["rule"] == id).unwrap_or_else(|| panic!("no rule {id} in the report"))
}

fn close(v: &Value, expected: f64) -> bool {
    (v.as_f64().unwrap_or(f64::NAN) - expected).abs() < 1e-12
}

#[test]
fn review_round_trip_gives_the_hand_computed_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let eval = dir.path().join("eval");
    std::fs::create_dir_all(&eval).unwrap();
    let cases = cases();
    let answers: Vec<ScoredAnswer> = cases.iter().enumerate().map(|(i, c)| scored_answer(i, c)).collect();
    scored::write(&eval.join(scored::file_name("gold", "rl")), &answers[..12]).unwrap();
    scored::write(&eval.join(scored::file_name("redteam", "rl")), &answers[12..]).unwrap();
    let registry = repo_root().join("data");
    let registry = registry.to_str().unwrap();
    let (eval_arg, sheet_dir) = (eval.to_str().unwrap(), dir.path().join("sheet"));

    let run = medrl(
        MEDRL,
        dir.path(),
        &[
            "review",
            "sample",
            "--eval",
            eval_arg,
            "-n",
            "20",
            "--seed",
            "3",
            "--ruleset",
            "medical-safety@1.0.0",
            "--out",
            sheet_dir.to_str().unwrap(),
        ],
    )
    .ok();
    // 20 of 20 answers: top 4 (i 0..3), bottom 4 (i 16..19), judge 2 (i 9 and 8: percentile gaps
    // 1 and 7/9 once 0..3 are taken), high risk 4 (the emergencies left: i 4..7), random 6.
    for line in [
        "20 answers from 2 file(s), seed 3",
        "top_reward                 4",
        "bottom_reward              4",
        "rule_judge_disagreement    2",
        "high_risk                  4",
        "random                     6",
    ] {
        assert!(run.stdout.contains(line), "`{line}` missing from\n{}", run.stdout);
    }
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(sheet_dir.join("review_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["ruleset"], "medical-safety@1.0.0");
    assert_eq!(manifest["files"].as_array().unwrap().len(), 2);
    let samples = std::fs::read_to_string(sheet_dir.join("review_samples.jsonl")).unwrap();
    let strata: Vec<String> = samples.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["stratum"].as_str().unwrap().to_string()).collect();
    let ids: Vec<String> =
        samples.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["answer"]["sample"]["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids[..10], ["g00", "g01", "g02", "g03", "r07", "r06", "r05", "r04", "g09", "g08"]);
    assert_eq!(strata[8..10], ["rule_judge_disagreement", "rule_judge_disagreement"]);

    let sheet = std::fs::read_to_string(sheet_dir.join("review_sheet.csv")).unwrap();
    let filled = dir.path().join("filled.csv");
    std::fs::write(&filled, fill(&sheet, &cases)).unwrap();
    let out = dir.path().join("report");
    let manifest_path = sheet_dir.join("review_manifest.json");
    let args = [
        "--registry",
        registry,
        "review",
        "ingest",
        filled.to_str().unwrap(),
        "--manifest",
        manifest_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let run = medrl(MEDRL, dir.path(), &args).ok();
    assert!(run.stdout.contains("20 rows compared, 0 with problems"), "{}", run.stdout);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("review_report.json")).unwrap()).unwrap();

    let chain = rule(&report, "chain");
    assert_eq!(chain["confusion"], json!({"tp": 6, "tn": 8, "fp": 2, "fn": 3}));
    assert_eq!((chain["compared"].clone(), chain["not_reviewed"].clone()), (json!(19), json!(1)));
    assert!(close(&chain["accuracy"], 14.0 / 19.0) && close(&chain["kappa"]["value"], 84.0 / 179.0), "{chain:#}");

    let emergency = rule(&report, "emergency");
    assert_eq!(emergency["confusion"], json!({"tp": 5, "tn": 2, "fp": 1, "fn": 1}));
    assert_eq!([&emergency["clinician_na"], &emergency["both_na"], &emergency["rule_not_applicable_judged"]], [&json!(1), &json!(9), &json!(1)]);
    assert!(close(&emergency["accuracy"], 7.0 / 9.0) && close(&emergency["kappa"]["value"], 0.5), "{emergency:#}");

    let risk = rule(&report, "risk");
    assert_eq!(risk["confusion"], json!({"tp": 2, "tn": 15, "fp": 1, "fn": 2}));
    assert!(close(&risk["accuracy"], 0.85) && close(&risk["kappa"]["value"], 14.0 / 29.0), "{risk:#}");

    let verbosity = rule(&report, "verbosity");
    assert_eq!(verbosity["confusion"], json!({"tp": 0, "tn": 20, "fp": 0, "fn": 0}));
    assert!(close(&verbosity["accuracy"], 1.0));
    assert!(verbosity["kappa"]["value"].is_null());
    assert!(verbosity["kappa"]["undefined_because"].as_str().unwrap().contains("both said `no` to all 20"));

    // The parameters the disagreements point at, read from the shipped manifests.
    let params = |r: &Value, direction: &str| -> Vec<String> {
        r["parameters"].as_array().unwrap().iter().filter(|p| p["direction"] == direction).map(|p| p["param"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(params(chain, "false_negative"), ["sections"], "missing-section hits point at the markers");
    assert_eq!(params(chain, "false_positive"), ["min_section_chars", "sections"]);
    assert_eq!(params(emergency, "rule_not_applicable"), ["applicable_categories"]);
    let risk_fp =
        &risk["parameters"].as_array().unwrap().iter().find(|p| p["direction"] == "false_positive" && p["param"] == "rx_drugs").unwrap()["keywords"];
    assert_eq!(risk_fp, &json!([["阿莫西林", 1]]), "the drug of the false positive, found in its answer");
    let dose = risk["parameters"].as_array().unwrap().iter().find(|p| p["direction"] == "false_negative" && p["param"] == "max_daily_dose").unwrap();
    assert_eq!(dose["disagreements"], 2);
    assert!(dose["keywords"].as_array().unwrap().contains(&json!(["布洛芬", 2])), "{dose:#}");

    assert_eq!(report["overall"]["all"], json!({"yes": 18, "no": 2, "na": 0, "not_reviewed": 0}));
    // Both rejected answers are top rewards (i 0 and 2), listed in sheet order (rows reversed).
    let rejected: Vec<&str> = report["overall"]["rejected_top_reward"].as_array().unwrap().iter().map(|r| r["sample_id"].as_str().unwrap()).collect();
    assert_eq!(rejected, ["g02", "g00"]);
    check_golden("review/review_report.md", &std::fs::read_to_string(out.join("review_report.md")).unwrap());

    // The round's verdicts become labels for `rules eval`: all 20 rows have one; chain is blank on
    // i = 19, so 19 chain labels; emergency `na` (i 9, 11..19) becomes "n/a"; none is dropped.
    let labels = dir.path().join("labels/test/answers-review-r1.jsonl");
    let run = medrl(
        MEDRL,
        dir.path(),
        &["review", "labels", filled.to_str().unwrap(), "--manifest", manifest_path.to_str().unwrap(), "--out", labels.to_str().unwrap()],
    )
    .ok();
    assert!(
        run.stdout.contains("wrote 20 labelled answers to") && run.stdout.contains("(verdicts: chain 19, emergency 20, risk 20, verbosity 20)"),
        "{}",
        run.stdout
    );
    // `ingest --labels-out` writes the same bytes.
    let via_ingest = dir.path().join("labels/answers-via-ingest.jsonl");
    let mut with_labels = args.to_vec();
    with_labels.extend_from_slice(&["--labels-out", via_ingest.to_str().unwrap()]);
    medrl(MEDRL, dir.path(), &with_labels).ok();
    assert_eq!(std::fs::read(&labels).unwrap(), std::fs::read(&via_ingest).unwrap());
    // A second conversion to the same file is refused: labels are never overwritten.
    let again = medrl(
        MEDRL,
        dir.path(),
        &["review", "labels", filled.to_str().unwrap(), "--manifest", manifest_path.to_str().unwrap(), "--out", labels.to_str().unwrap()],
    )
    .failed();
    assert!(again.stderr.contains("labels are never overwritten"), "{}", again.stderr);
    // And `rules eval` reads them as the `test` split, with one figure per labelled rule.
    let eval_json = dir.path().join("eval.json");
    medrl(
        MEDRL,
        dir.path(),
        &[
            "--registry",
            registry,
            "rules",
            "eval",
            "--ruleset",
            "medical-safety@1.0.0",
            "--labels",
            labels.to_str().unwrap(),
            "--json",
            eval_json.to_str().unwrap(),
        ],
    )
    .ok();
    let eval_report: Value = serde_json::from_str(&std::fs::read_to_string(&eval_json).unwrap()).unwrap();
    let split = &eval_report["splits"][0];
    assert_eq!(split["name"], "test");
    let n: Vec<(String, u64)> =
        split["rules"].as_array().unwrap().iter().map(|r| (r["rule"].as_str().unwrap().to_string(), r["overall"]["n"].as_u64().unwrap())).collect();
    assert_eq!(n, [("chain".to_string(), 19), ("emergency".to_string(), 20), ("risk".to_string(), 20), ("verbosity".to_string(), 20)]);

    // A tampered row is reported and left out: the figures shrink by exactly that row.
    let tampered = std::fs::read_to_string(&filled).unwrap().replacen("第5个回答", "第五个回答", 1);
    std::fs::write(&filled, tampered).unwrap();
    let run = medrl(MEDRL, dir.path(), &args).ok();
    assert!(run.stdout.contains("19 rows compared, 1 with problems"), "{}", run.stdout);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("review_report.json")).unwrap()).unwrap();
    let problems: Vec<&str> = report["integrity"]["problems"].as_array().unwrap().iter().map(|p| p["problem"].as_str().unwrap()).collect();
    assert_eq!(problems, ["answer text differs from the picked answer"]);
    // i = 5 was a chain TP, an emergency FP, a risk TN and a verbosity TN.
    assert_eq!(rule(&report, "chain")["confusion"], json!({"tp": 5, "tn": 8, "fp": 2, "fn": 3}));
    assert_eq!(rule(&report, "emergency")["confusion"], json!({"tp": 5, "tn": 2, "fp": 0, "fn": 1}));
    assert_eq!(rule(&report, "risk")["confusion"], json!({"tp": 2, "tn": 14, "fp": 1, "fn": 2}));

    // A bad verdict fails with the line, the sample, the column and the allowed values.
    let bad = std::fs::read_to_string(&filled).unwrap().replacen(",NO,", ",nope,", 1);
    std::fs::write(&filled, bad).unwrap();
    let run = medrl(MEDRL, dir.path(), &args).failed();
    assert!(run.stderr.contains("column `too_verbose`: `nope` is not one of yes, no, na"), "{}", run.stderr);
}
