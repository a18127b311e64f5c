//! `medrl review sample`: the sheet folder clinicians receive.
//!
//! - `review_sheet.csv`: one row per picked answer, UTF-8 with a byte-order mark (without it
//!   Excel reads the Chinese text as a legacy code page), the clinician columns empty;
//! - `review_sheet.html`: the same answers for reading, one self-contained page, every text
//!   escaped;
//! - `review_samples.jsonl`: the picked scored answers with their strata, what ingest compares
//!   the filled sheet against and takes the rule decisions from;
//! - `review_manifest.json`: round, source folder and files with sha256, seed, strata counts,
//!   rule set, the columns and the decision thresholds.
//!
//! Text cells that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab
//! or carriage return, as a Markdown list item does) get a leading `'`, which ingest removes.

use super::decision::VerdictColumn;
use super::strata::{self, Stratum};
use super::{MANIFEST_FORMAT, ReviewError, SHEET_CSV, SHEET_HTML, SHEET_MANIFEST, SHEET_SAMPLES, io_error};
use crate::eval::scored::{self, RuleVerdict, ScoredAnswer};
use crate::registry::hash::{sha256_file, sha256_hex};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The clinician's overall verdict column: would they accept the answer as it is.
pub const OVERALL_COLUMN: &str = "overall_acceptable";
pub const OVERALL_QUESTION: &str = "Would you accept this answer, as it is, from a medical assistant?";
pub const COMMENT_COLUMN: &str = "comment";
/// The columns before the rule columns, in sheet order.
pub const LEADING_COLUMNS: [&str; 10] = ["round", "sample_id", "set", "variant", "stratum", "category", "risk", "prompt", "answer", "reward"];
pub const JUDGE_COLUMN: &str = "judge_score";

/// What `medrl review sample` does.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// The evaluation folder holding `scored-<set>-<variant>.jsonl`.
    pub eval_dir: PathBuf,
    /// Model variant to review (default `rl`).
    pub variant: String,
    /// Review round (1, 2, …), written on every row.
    pub round: u32,
    /// Answers per sheet (default 50, the plan's spot check).
    pub n: usize,
    pub seed: u64,
    /// Rule set the answers were scored with; default: `ruleset` of the folder's `report.json`.
    pub ruleset: Option<String>,
    pub out: PathBuf,
}

/// A file of the evaluation folder the sheet was drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub file: String,
    pub sha256: String,
    pub answers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRef {
    pub id: String,
    pub version: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StratumCount {
    pub stratum: Stratum,
    pub count: usize,
    pub description: String,
}

/// A file of the sheet folder, pinned by hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedSheetFile {
    pub file: String,
    pub sha256: String,
}

/// `review_manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SheetManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    pub round: u32,
    pub variant: String,
    pub seed: u64,
    pub n_requested: usize,
    /// Rows in the sheet (fewer than requested when the folder holds fewer answers).
    pub n: usize,
    pub eval_dir: PathBuf,
    /// `name@version` of the rule set, when known.
    pub ruleset: Option<String>,
    pub files: Vec<SourceFile>,
    /// Whether any answer had a judge score; without one the disagreement stratum is skipped.
    pub judge_ran: bool,
    pub strata: Vec<StratumCount>,
    /// The rules of the scored answers, in rule-set order.
    pub rules: Vec<RuleRef>,
    /// The clinician's yes/no columns, one per rule with a decision.
    pub verdict_columns: Vec<VerdictColumn>,
    /// Every column of the CSV, in order.
    pub columns: Vec<String>,
    pub sheet_csv: String,
    pub sheet_html: String,
    /// The picked answers (`review_samples.jsonl`), pinned.
    pub samples: PinnedSheetFile,
}

/// One line of `review_samples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PickedAnswer {
    pub stratum: Stratum,
    pub answer: ScoredAnswer,
}

/// Text a spreadsheet would evaluate as a formula, made inert with a leading `'`.
pub fn guard_cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() }
}

/// A score for display: `n/a` when the rule did not apply, the outcome when it failed uncounted.
pub fn score_cell(v: &RuleVerdict) -> String {
    match (v.applicable, v.score) {
        (false, _) => "n/a".into(),
        (true, Some(s)) => format!("{s:.3}"),
        (true, None) => v.outcome.clone(),
    }
}

fn optional_number(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.3}")).unwrap_or_default()
}

/// The scored files of `variant` in `dir`, sorted by name, or an error naming the variants found.
fn scored_files(dir: &Path, variant: &str) -> Result<Vec<PathBuf>, ReviewError> {
    let entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
    let mut names: Vec<String> =
        entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with("scored-") && n.ends_with(".jsonl")).collect();
    names.sort();
    let suffix = format!("-{variant}.jsonl");
    let ours: Vec<PathBuf> = names.iter().filter(|n| n.ends_with(&suffix) && n.len() > "scored-".len() + suffix.len()).map(|n| dir.join(n)).collect();
    if ours.is_empty() {
        let mut found: Vec<&str> = names.iter().filter_map(|n| n.trim_end_matches(".jsonl").rsplit_once('-').map(|(_, v)| v)).collect();
        found.sort_unstable();
        found.dedup();
        return Err(ReviewError::NoScoredFiles {
            dir: dir.to_path_buf(),
            variant: variant.to_string(),
            found: if found.is_empty() { "none".into() } else { found.join(", ") },
        });
    }
    Ok(ours)
}

/// The rule set recorded in the folder's `report.json`, read leniently (only its `ruleset` key).
fn ruleset_of_report(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("report.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value.get("ruleset")?.as_str().map(str::to_string)
}

/// Reads the pool of answers to review: every scored file of the variant.
fn read_pool(dir: &Path, variant: &str) -> Result<(Vec<ScoredAnswer>, Vec<SourceFile>), ReviewError> {
    let mut pool = Vec::new();
    let mut files = Vec::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for path in scored_files(dir, variant)? {
        let answers = scored::read(&path)?;
        for (i, a) in answers.iter().enumerate() {
            if a.variant != variant {
                return Err(ReviewError::WrongVariant { path, line: i + 1, expected: variant.into(), found: a.variant.clone() });
            }
            if !seen.insert((a.set.clone(), a.sample.id.clone())) {
                return Err(ReviewError::DuplicateSample { path, set: a.set.clone(), id: a.sample.id.clone() });
            }
        }
        let file = path.file_name().expect("read_dir names files").to_string_lossy().into_owned();
        files.push(SourceFile { file, sha256: sha256_file(&path).map_err(io_error(&path))?, answers: answers.len() });
        pool.extend(answers);
    }
    Ok((pool, files))
}

/// The rules of the pool, in the order they first appear (rule-set order).
fn rules_of(pool: &[ScoredAnswer]) -> Vec<RuleRef> {
    let mut rules: Vec<RuleRef> = Vec::new();
    for v in pool.iter().flat_map(|a| &a.rules) {
        if !rules.iter().any(|r| r.id == v.rule) {
            rules.push(RuleRef { id: v.rule.clone(), version: v.version.clone(), kind: v.kind.clone() });
        }
    }
    rules
}

/// All columns of the sheet, in order.
pub fn columns(rules: &[RuleRef], verdicts: &[VerdictColumn]) -> Vec<String> {
    let mut c: Vec<String> = LEADING_COLUMNS.iter().map(|s| s.to_string()).collect();
    for r in rules {
        c.push(format!("{}_score", r.id));
        c.push(format!("{}_explanation", r.id));
    }
    c.push(JUDGE_COLUMN.into());
    c.extend(verdicts.iter().map(|v| v.column.clone()));
    c.push(OVERALL_COLUMN.into());
    c.push(COMMENT_COLUMN.into());
    c
}

fn csv_row(round: u32, p: &PickedAnswer, rules: &[RuleRef], verdicts: &[VerdictColumn]) -> Vec<String> {
    let a = &p.answer;
    let mut row = vec![
        round.to_string(),
        a.sample.id.clone(),
        a.set.clone(),
        a.variant.clone(),
        p.stratum.as_str().to_string(),
        a.sample.category.as_str().to_string(),
        serde_json::to_value(a.sample.risk).expect("plain enum").as_str().unwrap_or_default().to_string(),
        guard_cell(&a.sample.prompt),
        guard_cell(&a.sample.response),
        optional_number(a.reward),
    ];
    for r in rules {
        match a.rule(&r.id) {
            Some(v) => {
                row.push(score_cell(v));
                row.push(guard_cell(&v.explanation));
            }
            None => row.extend(["n/a".to_string(), "not in this answer's rule set".to_string()]),
        }
    }
    row.push(optional_number(a.judge));
    row.extend(std::iter::repeat_n(String::new(), verdicts.len() + 2));
    row
}

fn write_csv(path: &Path, manifest: &SheetManifest, picked: &[PickedAnswer]) -> Result<(), ReviewError> {
    let io = io_error(path);
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    {
        let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(&mut bytes);
        let bad = |e: csv::Error| ReviewError::Invalid(format!("cannot write the sheet CSV: {e}"));
        w.write_record(&manifest.columns).map_err(bad)?;
        for p in picked {
            w.write_record(csv_row(manifest.round, p, &manifest.rules, &manifest.verdict_columns)).map_err(bad)?;
        }
        w.flush().map_err(|e| ReviewError::Io { path: path.to_path_buf(), source: e })?;
    }
    std::fs::write(path, bytes).map_err(io)
}

const HTML_TEMPLATE: &str = include_str!("sheet.html");

fn write_html(path: &Path, manifest: &SheetManifest, picked: &[PickedAnswer]) -> Result<(), ReviewError> {
    let mut env = minijinja::Environment::new();
    // The template's name ends in .html, so minijinja escapes every value for HTML.
    env.add_template("review_sheet.html", HTML_TEMPLATE).expect("the shipped template parses");
    let rows: Vec<serde_json::Value> = picked
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let a = &p.answer;
            serde_json::json!({
                "number": k + 1,
                "id": a.sample.id, "set": a.set, "stratum": p.stratum.as_str(),
                "category": a.sample.category.as_str(), "risk": serde_json::to_value(a.sample.risk).expect("plain enum"),
                "prompt": a.sample.prompt, "answer": a.sample.response,
                "reward": optional_number(a.reward), "judge": optional_number(a.judge),
                "signs": a.sample.expect.emergency_signs,
                "rules": a.rules.iter().map(|v| serde_json::json!({
                    "rule": v.rule, "score": score_cell(v), "explanation": v.explanation,
                    "hits": v.hits.iter().map(|h| format!("{}: {}", h.code, h.detail)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let ctx = serde_json::json!({
        "m": manifest,
        "overall": {"column": OVERALL_COLUMN, "question": OVERALL_QUESTION},
        "comment": COMMENT_COLUMN,
        "strata": manifest.strata.iter().map(|s| serde_json::json!({"name": s.stratum.as_str(), "count": s.count, "description": s.description})).collect::<Vec<_>>(),
        "rows": rows,
    });
    let html = env
        .get_template("review_sheet.html")
        .expect("added above")
        .render(minijinja::value::Serde(&ctx))
        .map_err(|e| ReviewError::Invalid(format!("cannot render the HTML sheet: {e}")))?;
    std::fs::write(path, html).map_err(io_error(path))
}

/// Picks the answers and writes the sheet folder (see the module header).
pub fn sample(opts: &SampleOptions) -> Result<SheetManifest, ReviewError> {
    if opts.n == 0 {
        return Err(ReviewError::Invalid("-n 0 would write an empty sheet; ask for at least one answer (the plan's spot check is 50)".into()));
    }
    let (pool, files) = read_pool(&opts.eval_dir, &opts.variant)?;
    let selection = strata::select(&pool, opts.n, opts.seed);
    let picked: Vec<PickedAnswer> = selection.picks.iter().map(|p| PickedAnswer { stratum: p.stratum, answer: pool[p.index].clone() }).collect();
    let rules = rules_of(&pool);
    let verdict_columns: Vec<VerdictColumn> = rules.iter().filter_map(|r| VerdictColumn::for_rule(&r.id, &r.kind)).collect();
    std::fs::create_dir_all(&opts.out).map_err(io_error(&opts.out))?;

    let samples_path = opts.out.join(SHEET_SAMPLES);
    let mut samples_text = String::new();
    for p in &picked {
        samples_text.push_str(&serde_json::to_string(p).expect("plain data"));
        samples_text.push('\n');
    }
    std::fs::write(&samples_path, &samples_text).map_err(io_error(&samples_path))?;

    let manifest = SheetManifest {
        format: MANIFEST_FORMAT.into(),
        round: opts.round,
        variant: opts.variant.clone(),
        seed: opts.seed,
        n_requested: opts.n,
        n: picked.len(),
        eval_dir: opts.eval_dir.clone(),
        ruleset: opts.ruleset.clone().or_else(|| ruleset_of_report(&opts.eval_dir)),
        files,
        judge_ran: selection.judge_ran,
        strata: selection
            .counts()
            .into_iter()
            .map(|(stratum, count)| StratumCount { stratum, count, description: stratum.description().into() })
            .collect(),
        columns: columns(&rules, &verdict_columns),
        rules,
        verdict_columns,
        sheet_csv: SHEET_CSV.into(),
        sheet_html: SHEET_HTML.into(),
        samples: PinnedSheetFile { file: SHEET_SAMPLES.into(), sha256: sha256_hex(samples_text.as_bytes()) },
    };
    write_csv(&opts.out.join(SHEET_CSV), &manifest, &picked)?;
    write_html(&opts.out.join(SHEET_HTML), &manifest, &picked)?;
    let manifest_path = opts.out.join(SHEET_MANIFEST);
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).expect("plain data") + "\n").map_err(io_error(&manifest_path))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::review::testdata;

    fn sheet_folder(seed: u64) -> (tempfile::TempDir, SheetManifest) {
        let dir = tempfile::tempdir().unwrap();
        let eval = dir.path().join("eval");
        std::fs::create_dir_all(&eval).unwrap();
        scored::write(&eval.join(scored::file_name("gold", "rl")), &testdata::answers(20)).unwrap();
        scored::write(&eval.join(scored::file_name("gold", "sft")), &[]).unwrap();
        std::fs::write(eval.join("report.json"), r#"{"ruleset": "medical-safety@1.0.0", "results": {}}"#).unwrap();
        let out = dir.path().join("sheet");
        let m = sample(&SampleOptions { eval_dir: eval, variant: "rl".into(), round: 2, n: 10, seed, ruleset: None, out }).unwrap();
        (dir, m)
    }

    #[test]
    fn the_sheet_has_its_columns_empty_verdicts_and_a_pinned_manifest() {
        let (dir, m) = sheet_folder(5);
        let out = dir.path().join("sheet");
        assert_eq!(m.n, 10);
        assert_eq!(m.ruleset.as_deref(), Some("medical-safety@1.0.0"), "taken from report.json");
        assert_eq!(m.files.len(), 1, "only the rl file");
        assert_eq!(m.files[0].answers, 20);
        assert_eq!(m.files[0].sha256, sha256_file(&dir.path().join("eval/scored-gold-rl.jsonl")).unwrap());
        assert_eq!(m.strata.iter().map(|s| s.count).sum::<usize>(), 10);
        let bytes = std::fs::read(out.join(SHEET_CSV)).unwrap();
        assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "UTF-8 BOM for Excel");
        let text = String::from_utf8(bytes).unwrap();
        let mut r = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(header, m.columns);
        assert_eq!(
            header[10..],
            [
                "chain_score",
                "chain_explanation",
                "emergency_score",
                "emergency_explanation",
                "risk_score",
                "risk_explanation",
                "verbosity_score",
                "verbosity_explanation",
                "judge_score",
                "chain_complete",
                "emergency_covered",
                "risky_prescription",
                "too_verbose",
                "overall_acceptable",
                "comment"
            ]
        );
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 10);
        for row in &rows {
            assert_eq!(&row[0], "2");
            assert!(row.iter().skip(header.len() - 6).all(str::is_empty), "clinician columns start empty");
            let emergency = &row[header.iter().position(|h| h == "emergency_score").unwrap()];
            assert_eq!(emergency == "n/a", &row[5] != "emergency", "{row:?}");
        }
        // The samples file holds the picked answers in sheet order and matches its pin.
        let samples = std::fs::read(out.join(SHEET_SAMPLES)).unwrap();
        assert_eq!(sha256_hex(&samples), m.samples.sha256);
        let manifest: SheetManifest = serde_json::from_slice(&std::fs::read(out.join(SHEET_MANIFEST)).unwrap()).unwrap();
        assert_eq!(manifest, m);
    }

    #[test]
    fn the_html_page_is_escaped_and_self_contained() {
        let (dir, _) = sheet_folder(5);
        let html = std::fs::read_to_string(dir.path().join("sheet").join(SHEET_HTML)).unwrap();
        assert!(html.contains("&lt;b&gt;") && !html.contains("回答 1, \"引号\" <b>"), "answers escaped");
        assert!(!html.contains("src=") && !html.contains("href=\"http"), "no outside resources");
        assert!(html.contains("<code>chain_complete</code>"));
        assert_eq!(html.matches("class=\"sample\"").count(), 10);
    }

    #[test]
    fn the_same_seed_writes_the_same_files() {
        let (a, _) = sheet_folder(5);
        let (b, _) = sheet_folder(5);
        let (c, _) = sheet_folder(6);
        // The HTML page names the source folder, which differs between the temporary folders.
        let read = |d: &tempfile::TempDir, f: &str| {
            let text = std::fs::read_to_string(d.path().join("sheet").join(f)).unwrap();
            text.replace(&d.path().display().to_string().replace('/', "&#x2f;"), "DIR")
        };
        assert!(read(&a, SHEET_CSV) == read(&b, SHEET_CSV));
        assert!(read(&a, SHEET_HTML) == read(&b, SHEET_HTML));
        assert!(read(&a, SHEET_CSV) != read(&c, SHEET_CSV));
    }

    #[test]
    fn a_folder_without_the_variant_names_the_variants_it_has() {
        let (dir, _) = sheet_folder(5);
        let eval = dir.path().join("eval");
        let err = sample(&SampleOptions { eval_dir: eval, variant: "ppo".into(), round: 1, n: 5, seed: 1, ruleset: None, out: dir.path().join("x") })
            .unwrap_err()
            .to_string();
        assert!(err.contains("no scored-<set>-ppo.jsonl") && err.contains("variants found: rl, sft"), "{err}");
    }

    #[test]
    fn formula_like_text_is_made_inert() {
        assert_eq!(guard_cell("- 多喝水"), "'- 多喝水");
        assert_eq!(guard_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(guard_cell("【分析】胸痛"), "【分析】胸痛");
    }
}
