//! `medrl quickstart`, the README's main command, end to end on a cut-down copy of `data/`: every
//! stage runs (model, full SFT, PPO with the shipped rule set, evaluation with the red-team gate)
//! and every output it names exists. The full-size run is measured in the README, not here.

use crate::MEDRL;
use medrl_tests::{copy_tree, first_lines, medrl, repo_root};
use std::path::Path;

/// `data/` with the SFT, RL and evaluation sets cut to their first `n` lines.
fn small_data(to: &Path, n: usize) {
    copy_tree(&repo_root().join("data"), to);
    // `sets/pool.jsonl` stays whole: the tokenizer is trained on every shipped set.
    for rel in ["sets/sft.jsonl", "sets/gold.jsonl", "sets/redteam.jsonl", "rl/training_prompts.jsonl"] {
        let path = to.join(rel);
        first_lines(&repo_root().join("data").join(rel), n, &path);
    }
}

#[test]
fn quickstart_runs_every_stage_and_names_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    small_data(&data, 16);
    let out = dir.path().join("qs");
    // The operator's key signs the RL run's and the evaluation's manifests.
    let (key, operators) = (dir.path().join("operator.key"), dir.path().join("operators.toml"));
    medrl(MEDRL, dir.path(), &["keys", "generate", "--name", "operator", "--out", key.to_str().unwrap(), "--add-to", operators.to_str().unwrap()])
        .ok();
    let args = [
        "--registry",
        data.to_str().unwrap(),
        "--operator-key",
        key.to_str().unwrap(),
        "quickstart",
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "2",
        "--sft-epochs",
        "1",
    ];
    let r = medrl(MEDRL, &repo_root(), &args).ok();
    for stage in ["1/4 making the tiny model", "2/4 SFT", "3/4 PPO", "4/4 evaluating SFT against RL"] {
        assert!(r.stderr.contains(stage), "{stage} missing:\n{}", r.stderr);
    }
    assert!(r.stdout.contains("(2 steps;"), "{}", r.stdout);
    assert!(r.stdout.contains("0 skipped updates"), "{}", r.stdout);
    assert!(r.stdout.contains("gate:         redteam.risky_rate <= sft → "), "{}", r.stdout);
    // Every path the summary prints exists.
    let printed: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(_, v)| v.trim())
        .filter(|v| v.starts_with('/'))
        .map(|v| v.split(' ').next().unwrap())
        .collect();
    assert!(printed.len() >= 8, "{}", r.stdout);
    for p in printed {
        assert!(Path::new(p).exists(), "{p} is printed but missing");
    }
    for f in [
        "model/config.json",
        "sft/model/model.safetensors",
        "rl/config.toml",
        "rl/rewards.csv",
        "rl/final/adapter/adapter_model.safetensors",
        "eval/report.json",
        "eval/eval_report.md",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // RL started from the fully fine-tuned SFT model, with the exact rule set.
    let config = std::fs::read_to_string(out.join("rl/config.toml")).unwrap();
    assert!(config.contains("ruleset = \"medical-safety@1.0.0\", sha256 = "), "{config}");
    assert!(config.contains(&format!("path = \"{}\"", out.join("sft/model").display())), "{config}");
    // Two steps of 32 prompts × 1 answer.
    assert_eq!(std::fs::read_to_string(out.join("rl/rewards.csv")).unwrap().lines().count(), 1 + 2 * 32);
    assert!(out.join("rl/final/run_manifest.sig").exists() && out.join("eval/run_manifest.sig").exists());
    let verified = medrl(
        MEDRL,
        &repo_root(),
        &[
            "--registry",
            data.to_str().unwrap(),
            "audit",
            "verify",
            out.join("rl").to_str().unwrap(),
            "--operator-keyring",
            operators.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(verified.stdout.contains("(operator): valid"), "{}", verified.stdout);
    // A second run never deletes the first one's outputs unless told to.
    let again = medrl(MEDRL, &repo_root(), &args).failed();
    assert!(again.stderr.contains("already exists; pass --overwrite"), "{}", again.stderr);
    assert!(out.join("rl/rewards.csv").exists());
}
