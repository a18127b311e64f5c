//! The hand-off (issue 16): adapter stacking over a LoRA SFT model, plain prompts, round two,
//! `medrl release` and `release verify` with tampered packages, `medrl model export --merge`
//! against the stacked model's logits (and, where torch is installed, transformers).
//!
//! One tiny pipeline is built once and shared: model init, LoRA SFT on 8 examples, 2 RL steps
//! over the SFT adapter, an evaluation on 4 gold prompts.

use crate::MEDRL;
use candle_core::{DType, Device, Tensor};
use medrl::model::{CausalLm, LoraMode, position_ids_for};
use medrl_tests::{first_lines, medrl, repo_root};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Pipeline {
    root: PathBuf,
}

impl Pipeline {
    fn p(&self, rel: &str) -> String {
        self.root.join(rel).to_str().unwrap().to_string()
    }
}

fn run(args: &[&str]) -> medrl_tests::Run {
    medrl(MEDRL, &repo_root(), args)
}

fn train_args(p: &Pipeline, name: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["train".into()];
    for kv in [
        format!("model.path=\"{}\"", p.p("tiny")),
        format!("model.sft_adapter=\"{}\"", p.p("sft/adapter")),
        format!("run.out_dir=\"{}\"", p.p("runs")),
        format!("run.name=\"{name}\""),
        "run.steps=2".into(),
        "run.save_every=1".into(),
        "rollout.prompts_per_step=2".into(),
        "rollout.max_new_tokens=8".into(),
        "ppo.mini_batch_size=2".into(),
    ] {
        a.push("--set".into());
        a.push(kv);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The shared pipeline (built on first use; the folder lives as long as the test process).
fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let p = Pipeline { root };
        run(&["model", "init", "--preset", "tiny", "--out", &p.p("tiny")]).ok();
        first_lines(&repo_root().join("data/sets/sft.jsonl"), 8, &p.root.join("sft.jsonl"));
        first_lines(&repo_root().join("data/sets/gold.jsonl"), 4, &p.root.join("gold.jsonl"));
        run(&[
            "sft",
            "--model",
            &p.p("tiny"),
            "--data",
            &p.p("sft.jsonl"),
            "--out",
            &p.p("sft"),
            "--set",
            "epochs=1",
            "--set",
            "batch_size=4",
            "--set",
            "max_seq_len=96",
        ])
        .ok();
        let args = train_args(&p, "rl", &[]);
        medrl(MEDRL, &repo_root(), &args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
        let rl = format!("rl={}", p.p("runs/rl/final/adapter"));
        let gold = format!("gold={}", p.p("gold.jsonl"));
        run(&[
            "eval",
            "--model",
            &p.p("tiny"),
            "--merge",
            &p.p("sft/adapter"),
            "--adapter",
            "sft=",
            "--adapter",
            &rl,
            "--set",
            &gold,
            "--max-new-tokens",
            "8",
            "--resamples",
            "100",
            "--out",
            &p.p("eval"),
        ])
        .ok();
        p
    })
}

fn copy_dir(from: &Path, to: &Path) {
    medrl_tests::copy_tree(from, to);
}

/// The RL adapter records the SFT adapter it was trained over and names it as its base; predict
/// stacks it without being told, refuses another base and a wrong --merge.
#[test]
fn an_rl_adapter_over_lora_sft_is_stacked_on_its_sft_adapter() {
    let p = pipeline();
    let adapter = p.root.join("runs/rl/final/adapter");
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("stacked_on.json")).unwrap()).unwrap();
    assert_eq!(record["merged"][0]["path"], p.p("sft/adapter"));
    let sft_sha = medrl::model::digest::adapter_sha256(&p.root.join("sft/adapter")).unwrap();
    assert_eq!(record["merged"][0]["sha256"], sft_sha.as_str());
    assert_eq!(record["base_model_sha256"], medrl::model::digest::model_sha256(&p.root.join("tiny")).unwrap().as_str());
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["base_model_name_or_path"], p.p("sft/adapter"));
    // The manifest of the run records the policy too.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.root.join("runs/rl/final/run_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["policy"]["merged"][0]["sha256"], sft_sha.as_str());

    let input = p.root.join("gold.jsonl");
    let out = p.root.join("stacked.jsonl");
    let r = run(&[
        "predict",
        "--model",
        &p.p("tiny"),
        "--adapter",
        &p.p("runs/rl/final/adapter"),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--max-new-tokens",
        "6",
    ])
    .ok();
    assert!(r.stdout.contains(&format!("merged  {}", p.p("sft/adapter"))), "{}", r.stdout);
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&out).unwrap().lines().next().unwrap()).unwrap();
    assert!(line["adapter_sha256"].as_str().unwrap().starts_with(&format!("{sft_sha}+")), "{line}");
    // The same answers as eval's, which was told --merge: one stacking path.
    let eval_line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(p.root.join("eval/answers-gold-rl.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(line["adapter_sha256"], eval_line["adapter_sha256"]);

    // Another base (the tiny preset with another seed) is refused, with the fix.
    run(&["model", "init", "--preset", "tiny", "--seed", "1", "--out", &p.p("other-base")]).ok();
    let r = run(&[
        "predict",
        "--model",
        &p.p("other-base"),
        "--adapter",
        &p.p("runs/rl/final/adapter"),
        "--input",
        input.to_str().unwrap(),
        "--output",
        &p.p("x.jsonl"),
    ])
    .failed();
    assert!(r.stderr.contains("was trained on the base model") && r.stderr.contains("pass that model as --model"), "{}", r.stderr);
    // --merge with another adapter than the recorded one is refused.
    let r = run(&[
        "predict",
        "--model",
        &p.p("tiny"),
        "--merge",
        &p.p("runs/rl/checkpoints/step-1/adapter"),
        "--adapter",
        &p.p("runs/rl/final/adapter"),
        "--input",
        input.to_str().unwrap(),
        "--output",
        &p.p("x.jsonl"),
    ])
    .failed();
    assert!(r.stderr.contains("pass exactly the recorded adapters"), "{}", r.stderr);
    assert!(!p.root.join("x.jsonl").exists());
}

/// `{"id", "prompt"}` and `{"id", "messages"}` lines are answered, the language inferred from
/// the text, the risk unknown; a line with neither is refused with its line number.
#[test]
fn predict_answers_plain_prompts_and_names_the_bad_line() {
    let p = pipeline();
    let input = p.root.join("plain.jsonl");
    std::fs::write(
        &input,
        concat!(
            "{\"id\":\"zh-1\",\"prompt\":\"我头痛三天了，可以吃布洛芬吗？\"}\n",
            "{\"id\":\"en-1\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Can I take ibuprofen with warfarin?\"}]}\n",
        ),
    )
    .unwrap();
    let out = p.root.join("plain-answers.jsonl");
    let r = run(&[
        "predict",
        "--model",
        &p.p("tiny"),
        "--adapter",
        &p.p("runs/rl/final/adapter"),
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--max-new-tokens",
        "4",
    ])
    .ok();
    assert!(r.stdout.contains("2 plain prompt(s)"), "{}", r.stdout);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines[0]["id"].as_str(), lines[0]["lang"].as_str(), lines[0]["risk"].is_null()), (Some("zh-1"), Some("zh"), true));
    assert_eq!((lines[1]["lang"].as_str(), lines[1]["category"].as_str()), (Some("en"), Some("other")));
    assert_eq!(lines[1]["prompt"], "Can I take ibuprofen with warfarin?");
    std::fs::write(&input, "{\"id\":\"a\",\"prompt\":\"hi\"}\n{\"id\":\"b\"}\n").unwrap();
    let r = run(&["predict", "--model", &p.p("tiny"), "--input", input.to_str().unwrap(), "--output", &p.p("y.jsonl")]).failed();
    assert!(r.stderr.contains("plain.jsonl:2: has neither `prompt` nor `messages`"), "{}", r.stderr);
}

/// Round two starts the policy from round one's adapter: the first step's KL to the reference
/// (the SFT policy) is not zero, where a fresh adapter's is exactly zero (B = 0); the run's config
/// and manifest name the adapter it started from.
#[test]
fn round_two_starts_from_the_round_one_adapter_with_the_sft_reference() {
    let p = pipeline();
    let init = p.p("runs/rl/final/adapter");
    let args = train_args(p, "round2", &["--init-adapter", &init]);
    let r = medrl(MEDRL, &repo_root(), &args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    assert!(r.stderr.contains("round two: the policy starts from"), "{}", r.stderr);
    let first_kl = |run: &str| -> f64 {
        let text = std::fs::read_to_string(p.root.join("runs").join(run).join("kl_metrics.jsonl")).unwrap();
        serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap()).unwrap()["kl_per_token"].as_f64().unwrap()
    };
    assert_eq!(first_kl("rl"), 0.0, "a fresh adapter (B = 0) is the reference");
    assert!(first_kl("round2") > 0.0, "round two starts away from the reference: {}", first_kl("round2"));
    let config = std::fs::read_to_string(p.root.join("runs/round2/config.toml")).unwrap();
    assert!(config.contains(&format!("init_adapter = \"{init}\"")), "{config}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.root.join("runs/round2/final/run_manifest.json")).unwrap()).unwrap();
    let init_sha = medrl::model::digest::adapter_sha256(Path::new(&init)).unwrap();
    assert_eq!(manifest["policy"]["initialised_from"]["sha256"], init_sha.as_str());
    // A round-one adapter of another shape is refused before step 0, with the settings to use.
    let args = train_args(p, "round2-bad", &["--init-adapter", &init, "--set", "lora.r=4"]);
    let r = medrl(MEDRL, &repo_root(), &args.iter().map(String::as_str).collect::<Vec<_>>()).failed();
    assert!(r.stderr.contains("--set lora.r=8"), "{}", r.stderr);
    assert!(!p.root.join("runs/round2-bad").exists());
}

/// A release verifies; a changed byte, an extra file, a missing file, a bad signature are each
/// refused; a release is refused into a non-empty folder and from a run whose log was edited.
#[test]
fn a_release_verifies_and_every_tampering_is_refused() {
    let p = pipeline();
    let key = repo_root().join("data/keys/DEMO-ONLY-medrl-demo.key");
    let ring = repo_root().join("data/keys/keyring.toml");
    let rel = p.p("release");
    let r = run(&["release", &p.p("runs/rl"), "--out", &rel, "--eval", &p.p("eval"), "--key", key.to_str().unwrap()]).ok();
    assert!(r.stdout.contains("SHA256SUMS signed by"), "{}", r.stdout);
    let dir = p.root.join("release");
    for f in [
        "release.json",
        "MODEL_CARD.md",
        "adapter/adapter_config.json",
        "adapter/stacked_on.json",
        "sft_adapter/adapter_model.safetensors",
        "value_head.safetensors",
        "model/config.json",
        "model/tokenizer.json",
        "config.toml",
        "ruleset/rulesets/medical-safety/1.0.0/ruleset.json",
        "ruleset/rules/risk/1.0.0/rule.wasm",
        "eval/report.json",
        "DATA_CARD.md",
        "audit/run_manifest.json",
        "SHA256SUMS",
        "SHA256SUMS.sig",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing from the release");
    }
    assert!(!dir.join("model/model.safetensors").exists(), "base weights only with --with-base-weights");
    let card = std::fs::read_to_string(dir.join("MODEL_CARD.md")).unwrap();
    assert!(card.contains("Not for clinical use") && card.contains("### gold (4 prompts)") && card.contains("mean_reward"), "{card}");
    let verify = |d: &Path| run(&["release", "verify", d.to_str().unwrap(), "--operator-keyring", ring.to_str().unwrap()]);
    let ok = verify(&dir).ok();
    assert!(ok.stdout.contains("the release verifies") && ok.stdout.contains("every pinned file verifies"), "{}", ok.stdout);

    let tampered = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let copy = p.root.join(format!("tamper-{name}"));
        copy_dir(&dir, &copy);
        edit(&copy);
        let r = verify(&copy).failed();
        assert!(r.stderr.contains("check(s) of the release"), "{name}: {}", r.stderr);
        r.stdout
    };
    let out = tampered("byte", &|d| {
        let f = d.join("adapter/adapter_model.safetensors");
        let mut b = std::fs::read(&f).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&f, b).unwrap();
    });
    assert!(out.contains("FAILED   changed file adapter/adapter_model.safetensors"), "{out}");
    let out = tampered("extra", &|d| std::fs::write(d.join("eval/notes.txt"), "x").unwrap());
    assert!(out.contains("FAILED   extra file eval/notes.txt"), "{out}");
    let out = tampered("missing", &|d| std::fs::remove_file(d.join("ruleset/rules/risk/1.0.0/rule.wasm")).unwrap());
    assert!(out.contains("FAILED   missing file ruleset/rules/risk/1.0.0/rule.wasm"), "{out}");
    // SHA256SUMS re-hashed after an edit: the files agree with it, its signature does not.
    let out = tampered("resummed", &|d| {
        std::fs::write(d.join("MODEL_CARD.md"), "an edited card\n").unwrap();
        std::fs::write(d.join("SHA256SUMS"), medrl::release::sums::compute(d).unwrap()).unwrap();
    });
    assert!(out.contains("FAILED   SHA256SUMS.sig") && out.contains("changed after signing"), "{out}");
    let out = tampered("sig", &|d| {
        let f = d.join("SHA256SUMS.sig");
        let mut sig: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let s = sig["signature"].as_str().unwrap().to_string();
        let (first, rest) = s.split_at(1);
        let flipped = format!("{}{rest}", if first == "0" { "1" } else { "0" });
        sig["signature"] = flipped.into();
        std::fs::write(&f, sig.to_string()).unwrap();
    });
    assert!(out.contains("the signature does not verify"), "{out}");
    let out = tampered("unsigned", &|d| std::fs::remove_file(d.join("SHA256SUMS.sig")).unwrap());
    assert!(out.contains("is not signed, but --operator-keyring"), "{out}");

    // Fail closed when writing.
    let r = run(&["release", &p.p("runs/rl"), "--out", &rel]).failed();
    assert!(r.stderr.contains("is not empty"), "{}", r.stderr);
    let run_copy = p.root.join("edited-run");
    copy_dir(&p.root.join("runs/rl"), &run_copy);
    let log = run_copy.join("audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&log, lines[..lines.len() - 1].join("\n") + "\n").unwrap();
    let out = p.root.join("release-of-edited");
    let r = run(&["release", run_copy.to_str().unwrap(), "--out", out.to_str().unwrap()]).failed();
    assert!(r.stderr.contains("does not verify"), "{}", r.stderr);
    assert!(!out.exists(), "nothing is written");
}

fn batch(dev: &Device) -> (Tensor, Tensor, Tensor) {
    let rows = vec![vec![5u32, 17, 230, 9, 41, 7], vec![0, 0, 88, 300, 12, 3]];
    let mask_rows = vec![vec![1u8; 6], vec![0, 0, 1, 1, 1, 1]];
    let pos = position_ids_for(&mask_rows, dev).unwrap();
    (Tensor::new(rows, dev).unwrap(), Tensor::new(mask_rows, dev).unwrap(), pos)
}

/// `medrl model export --merge` of the trained stack (SFT adapter and RL adapter folded in)
/// computes the logits of the stacked, unmerged model (SFT merged, RL adapter beside the
/// projections) to 1e-5. Where torch, transformers and peft are installed, transformers loads the
/// folder and agrees too (scripts/parity/parity.py check-merged); elsewhere that half is skipped.
#[test]
fn a_merged_export_of_the_trained_stack_matches_the_stacked_model() {
    let p = pipeline();
    let out = p.p("merged");
    let r = run(&["model", "export", "--merge", "--model", &p.p("tiny"), "--adapter", &p.p("runs/rl/final/adapter"), "--out", &out]).ok();
    assert!(r.stdout.contains(&format!("merged  {}", p.p("sft/adapter"))), "{}", r.stdout);
    let dev = Device::Cpu;
    let (ids, mask, pos) = batch(&dev);
    let mut stacked = CausalLm::load(&p.root.join("tiny"), &dev, DType::F32).unwrap();
    stacked.merge_adapter(&p.root.join("sft/adapter")).unwrap();
    stacked.load_adapter(&p.root.join("runs/rl/final/adapter")).unwrap();
    let want = stacked.forward(&ids, &pos, &mask, None, LoraMode::On).unwrap();
    let merged = CausalLm::load(Path::new(&out), &dev, DType::F32).unwrap();
    let got = merged.forward(&ids, &pos, &mask, None, LoraMode::Off).unwrap();
    let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let diff = (got - &want).unwrap().abs().unwrap().broadcast_mul(&m).unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    eprintln!("max |merged export − stacked| = {diff:e}");
    assert!(diff < 1e-5, "{diff:e}");
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "medrl_export.json"] {
        assert!(Path::new(&out).join(f).is_file(), "{f}");
    }
    let has_torch = std::process::Command::new("python3").args(["-c", "import torch, transformers, peft"]).status().is_ok_and(|s| s.success());
    if !has_torch {
        eprintln!("skipped the transformers half: python3 with torch, transformers and peft is not installed");
        return;
    }
    let script = repo_root().join("scripts/parity/parity.py");
    let status = std::process::Command::new("python3")
        .args([script.to_str().unwrap(), "check-merged", &out, &p.p("tiny"), &p.p("sft/adapter"), &p.p("runs/rl/final/adapter")])
        .status()
        .unwrap();
    assert!(status.success(), "transformers disagrees with the merged export");
}
