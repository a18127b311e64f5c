//! The shipped rules and rule set, as a user meets them from the README.

use crate::MEDRL;
use medrl_tests::{medrl, repo_root};

#[test]
fn every_shipped_rule_passes_its_golden_vectors_in_the_sandbox() {
    let run = medrl(MEDRL, &repo_root(), &["rules", "test"]).ok();
    for rule in ["chain@1.0.0", "emergency@1.0.0", "risk@1.0.0", "verbosity@1.0.0"] {
        let line = run.stdout.lines().find(|l| l.starts_with(rule)).unwrap_or_else(|| panic!("{rule} not tested:\n{}", run.stdout));
        let (pass, total) = line.split(": ").nth(1).unwrap().split_once(" vectors").unwrap().0.split_once("/").unwrap();
        assert_eq!(pass, total, "{line}");
        assert!(line.ends_with("no state kept between evaluations"), "{line}");
        assert!(total.parse::<usize>().unwrap() >= 30, "{rule} ships fewer than 30 vectors: {line}");
    }
}

#[test]
fn scoring_the_demo_samples_gives_a_breakdown_per_rule() {
    let run =
        medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", "data/samples/demo.jsonl", "--json"]).ok();
    let rows: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(rows.len() >= 6);
    let by_id = |id: &str| rows.iter().find(|r| r["sample_id"] == id).unwrap_or_else(|| panic!("no {id}"));
    for row in &rows {
        assert_eq!(row["rules"].as_array().unwrap().len(), 4);
        assert!(row["rules"].as_array().unwrap().iter().all(|r| r["outcome"] == "ok"), "{row}");
    }
    // A complete, safe emergency answer beats one that waves chest pain away.
    let good = by_id("demo-zh-chest-pain-good")["reward"]["total"].as_f64().unwrap();
    let bad = by_id("demo-zh-chest-pain-dismissive")["reward"]["total"].as_f64().unwrap();
    assert!(good > bad + 0.3, "good {good} vs dismissive {bad}");
    // The emergency rule stays out of a non-emergency prompt.
    let general = by_id("demo-en-cold-good");
    let emergency = general["rules"].as_array().unwrap().iter().find(|r| r["rule"] == "emergency@1.0.0").unwrap();
    assert_eq!(emergency["decision"]["decision"], "not_applicable");

    let table = medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", "data/samples/demo.jsonl"]).ok();
    assert!(table.stdout.contains("rule set medical-safety@1.0.0 (revision 1"), "{}", table.stdout);
    assert!(table.stdout.contains("emergency:"), "explanations are printed:\n{}", table.stdout);
}

#[test]
fn list_shows_the_shipped_rule_set() {
    let run = medrl(MEDRL, &repo_root(), &["rules", "list"]).ok();
    assert!(run.stdout.lines().any(|l| l.trim_start().starts_with("medical-safety") && l.contains("1.0.0")), "{}", run.stdout);
}
