//! `medrl train` and `medrl sft` with the built binary: a short real run and its files, and the
//! bad inputs that must stop a run before step 0 without touching the run folder.

use crate::MEDRL;
use medrl_tests::{first_lines, medrl, registry_copy, repo_root};
use std::path::Path;

fn tiny(dir: &Path) -> String {
    let out = dir.join("tiny");
    medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "tiny", "--out", out.to_str().unwrap()]).ok();
    out.to_str().unwrap().to_string()
}

fn set(k: &str, v: &str) -> [String; 2] {
    ["--set".to_string(), format!("{k}=\"{v}\"")]
}

fn small_run(model: &str, out: &Path) -> Vec<String> {
    let mut a = vec!["train".to_string()];
    a.extend(set("model.path", model));
    a.extend(set("run.out_dir", out.to_str().unwrap()));
    for kv in ["run.steps=2", "run.save_every=1", "rollout.prompts_per_step=2", "rollout.max_new_tokens=8", "ppo.mini_batch_size=2"] {
        a.extend(["--set".to_string(), kv.to_string()]);
    }
    a
}

fn run(args: &[String]) -> medrl_tests::Run {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    medrl(MEDRL, &repo_root(), &refs)
}

#[test]
fn a_short_run_writes_the_run_directory_and_is_never_overwritten_silently() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let runs = dir.path().join("runs");
    let out = run(&small_run(&model, &runs)).ok();
    assert!(out.stdout.contains("done: 2 steps, 0 skipped updates"), "{}", out.stdout);
    let root = runs.join("ppo");
    for f in [
        "config.toml",
        "rewards.csv",
        "kl_metrics.jsonl",
        "metrics.jsonl",
        "samples.jsonl",
        "failures.jsonl",
        "audit.jsonl",
        "checkpoints/step-1/trainer_state.json",
        "checkpoints/step-2/adapter/adapter_config.json",
        "final/value_head.safetensors",
    ] {
        assert!(root.join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(root.join("rewards.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap(), "step,sample_id,category,chain,emergency,risk,verbosity,total");
    assert_eq!(csv.lines().count(), 1 + 2 * 2);
    let config = std::fs::read_to_string(root.join("config.toml")).unwrap();
    assert!(config.contains("ruleset = \"medical-safety@1.0.0\", sha256 = \"51ef25ec"), "{config}");
    let audit = medrl(MEDRL, &repo_root(), &["audit", "verify", root.join("audit.jsonl").to_str().unwrap()]).ok();
    assert!(audit.stdout.contains("16 evaluations"), "{}", audit.stdout);
    // Again without --resume or --overwrite: refused, nothing changed.
    let again = run(&small_run(&model, &runs)).failed();
    assert!(again.stderr.contains("--resume") && again.stderr.contains("--overwrite"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(root.join("rewards.csv")).unwrap(), csv);
}

#[test]
fn bad_input_stops_the_run_before_step_0() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let runs = dir.path().join("runs");
    // An unknown rule-set version lists the existing ones.
    let mut a = small_run(&model, &runs);
    a.extend(set("rules.ruleset", "medical-safety@9.9.9"));
    let r = run(&a).failed();
    assert!(r.stderr.contains("versions of `medical-safety`: 1.0.0"), "{}", r.stderr);
    assert!(!runs.join("ppo").exists());
    // A tampered rule module.
    let reg = registry_copy();
    let wasm = reg.path().join("rules/risk/1.0.0/rule.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&wasm, bytes).unwrap();
    let mut a = vec!["--registry".to_string(), reg.path().to_str().unwrap().to_string()];
    a.extend(small_run(&model, &runs));
    let r = run(&a).failed();
    assert!(r.stderr.contains("rule.wasm") && r.stderr.contains("sha256"), "{}", r.stderr);
    assert!(!runs.join("ppo").exists());
    // A config typo names the key and the file.
    let cfg = dir.path().join("train.toml");
    std::fs::write(&cfg, "[ppo]\nclip_range = 0.1\n").unwrap();
    let r = medrl(MEDRL, &repo_root(), &["train", "--config", cfg.to_str().unwrap()]).failed();
    assert!(r.stderr.contains("clip_range") && r.stderr.contains("train.toml"), "{}", r.stderr);
}

#[test]
fn sft_writes_a_peft_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let data = dir.path().join("sft.jsonl");
    first_lines(&repo_root().join("data/sets/sft.jsonl"), 8, &data);
    let out = dir.path().join("sft");
    let r = medrl(
        MEDRL,
        &repo_root(),
        &[
            "sft",
            "--model",
            &model,
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            "epochs=1",
            "--set",
            "batch_size=4",
            "--set",
            "max_seq_len=96",
        ],
    )
    .ok();
    assert!(r.stdout.contains("SFT: 8 examples, 2 steps"), "{}", r.stdout);
    for f in ["adapter/adapter_config.json", "adapter/adapter_model.safetensors", "metrics.jsonl", "config.toml"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
}

#[test]
fn full_sft_writes_a_model_folder_that_predict_and_train_use_as_a_base() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let data = dir.path().join("sft.jsonl");
    first_lines(&repo_root().join("data/sets/sft.jsonl"), 8, &data);
    let out = dir.path().join("sft");
    let r = medrl(
        MEDRL,
        &repo_root(),
        &[
            "sft",
            "--full",
            "--model",
            &model,
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            "epochs=2",
            "--set",
            "batch_size=4",
            "--set",
            "max_seq_len=96",
            "--set",
            "learning_rate=1e-3",
        ],
    )
    .ok();
    assert!(r.stdout.contains("SFT: 8 examples, 4 steps"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("model: {}", out.join("model").display())), "{}", r.stdout);
    // The loss goes down on the examples it sees again in the second epoch.
    let losses: Vec<f64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 4);
    assert!(losses[2] + losses[3] < losses[0] + losses[1], "{losses:?}");
    for f in ["model/config.json", "model/model.safetensors", "model/tokenizer.json", "metrics.jsonl", "config.toml"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    assert!(!out.join("adapter").exists());
    assert_ne!(std::fs::read(out.join("model/model.safetensors")).unwrap(), std::fs::read(Path::new(&model).join("model.safetensors")).unwrap());
    // The fine-tuned folder is a model like any other: predict answers with it, RL starts from it.
    let prompts = dir.path().join("prompts.jsonl");
    first_lines(&data, 2, &prompts);
    let answers = dir.path().join("answers.jsonl");
    let full = out.join("model");
    medrl(
        MEDRL,
        &repo_root(),
        &[
            "predict",
            "--model",
            full.to_str().unwrap(),
            "--input",
            prompts.to_str().unwrap(),
            "--output",
            answers.to_str().unwrap(),
            "--max-new-tokens",
            "8",
        ],
    )
    .ok();
    assert_eq!(std::fs::read_to_string(&answers).unwrap().lines().count(), 2);
    let mut a = small_run(full.to_str().unwrap(), &dir.path().join("runs"));
    let steps = a.iter().position(|s| s == "run.steps=2").unwrap();
    a[steps] = "run.steps=1".into();
    let r = run(&a).ok();
    assert!(r.stdout.contains("done: 1 steps, 0 skipped updates"), "{}", r.stdout);
}
