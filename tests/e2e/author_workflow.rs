//! The rule author's path with the already built binary: scaffold a fifth rule, build it, add it
//! to a new rule-set version, and score samples with it. No rebuild of medrl anywhere.

use crate::MEDRL;
use medrl_tests::{medrl, registry_copy, repo_root, write_jsonl};
use serde_json::json;

#[test]
fn scaffold_build_publish_and_score_a_fifth_rule() {
    let work = tempfile::tempdir().unwrap();
    let reg = registry_copy();
    let reg_arg = reg.path().to_str().unwrap();
    let crate_dir = work.path().join("referral");
    let sdk = repo_root().join("sdk");

    let run = medrl(MEDRL, work.path(), &["rules", "new", "referral", "--dir", crate_dir.to_str().unwrap(), "--sdk", sdk.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("created rule `referral`"), "{}", run.stdout);

    // The scaffold builds, passes its own vectors, and lands in the registry as generated.
    let run = medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "build", crate_dir.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("published referral@0.1.0"), "{}", run.stdout);
    for file in ["rule.json", "rule.wasm", "vectors.jsonl"] {
        assert!(reg.path().join("rules/referral/0.1.0").join(file).is_file(), "{file}");
    }
    // Building the same source again changes nothing; versions are immutable.
    let again = medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "build", crate_dir.to_str().unwrap()]).ok();
    assert!(again.stdout.contains("unchanged referral@0.1.0"), "{}", again.stdout);

    // A new rule-set version with the fifth rule, chained to 1.0.0.
    let spec = work.path().join("medical-safety-1.1.0.toml");
    let base = std::fs::read_to_string(repo_root().join("data/ruleset-specs/medical-safety-1.0.0.toml")).unwrap();
    let spec_text = base.replace("version = \"1.0.0\"\ndescription", "version = \"1.1.0\"\ndescription")
        + "\n[[rules]]\nid = \"referral\"\nversion = \"0.1.0\"\nweight = 0.2\n[rules.params]\nkeywords_zh = [\"医生\", \"医院\"]\n";
    assert!(spec_text.contains("version = \"1.1.0\""));
    std::fs::write(&spec, spec_text).unwrap();
    let run = medrl(
        MEDRL,
        work.path(),
        &["--registry", reg_arg, "rules", "ruleset", "new", spec.to_str().unwrap(), "--created-at", "2026-11-26T00:00:00Z"],
    )
    .ok();
    assert!(run.stdout.contains("published rule set medical-safety@1.1.0 (revision 2, 5 rules, 15 pinned files)"), "{}", run.stdout);
    // Unsigned, it is refused by every command that would score with it; the registry's keyring
    // trusts the demo key, so a signature by it lets it through.
    let demo = repo_root().join("data/keys/DEMO-ONLY-medrl-demo.key");
    medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "sign", "medical-safety@1.1.0", "--key", demo.to_str().unwrap()]).ok();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.path().join("rulesets/medical-safety/1.1.0/ruleset.json")).unwrap()).unwrap();
    assert_eq!(manifest["previous"]["version"], "1.0.0");
    assert_eq!(manifest["previous"]["revision"], 1);

    // Score with it: the fifth rule runs with the rule set's parameter override.
    let input = work.path().join("samples.jsonl");
    let sample = |id: &str, lang: &str, response: &str| json!({"id": id, "prompt": "头痛三天", "response": response, "lang": lang, "category": "general", "risk": "low"});
    write_jsonl(
        &input,
        &[
            sample("mentions-hospital", "zh", "【分析】头痛持续三天。【建议】请去医院看看。"),
            sample("mentions-nothing", "zh", "多喝水，好好休息。"),
            sample("en-doctor", "en", "Please see a doctor if it gets worse."),
        ],
    );
    let run = medrl(
        MEDRL,
        work.path(),
        &["--registry", reg_arg, "rules", "score", "--ruleset", "medical-safety@1.1.0", "--input", input.to_str().unwrap(), "--json"],
    )
    .ok();
    let rows: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let referral = |row: &serde_json::Value| {
        row["rules"].as_array().unwrap().iter().find(|r| r["rule"] == "referral@0.1.0").cloned().expect("the fifth rule ran")
    };
    assert_eq!(rows.len(), 3);
    assert_eq!(referral(&rows[0])["output"]["score"], 1.0, "override keyword 医院 matched: {}", rows[0]);
    assert_eq!(referral(&rows[1])["output"]["score"], 0.0);
    assert_eq!(referral(&rows[2])["output"]["score"], 1.0);
    assert!(rows.iter().all(|r| r["rules"].as_array().unwrap().len() == 5));
}

#[test]
fn a_rule_whose_vectors_fail_is_not_published() {
    let work = tempfile::tempdir().unwrap();
    let reg = tempfile::tempdir().unwrap();
    let crate_dir = work.path().join("strict");
    let sdk = repo_root().join("sdk");
    medrl(MEDRL, work.path(), &["rules", "new", "strict", "--dir", crate_dir.to_str().unwrap(), "--sdk", sdk.to_str().unwrap()]).ok();
    let vectors = crate_dir.join("vectors.jsonl");
    let text = std::fs::read_to_string(&vectors).unwrap().replace(r#""expect":{"score":0.0"#, r#""expect":{"score":0.5"#);
    std::fs::write(&vectors, text).unwrap();
    let run = medrl(MEDRL, work.path(), &["--registry", reg.path().to_str().unwrap(), "rules", "build", crate_dir.to_str().unwrap()]).failed();
    assert!(run.stderr.contains("1 of 4 golden vectors fail") && run.stderr.contains("en-silent"), "{}", run.stderr);
    assert!(!reg.path().join("rules/strict").exists());
}
