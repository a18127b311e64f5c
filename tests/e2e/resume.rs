//! `medrl train --resume` after a crash is exact (issue 14, items 7 and 6): a run killed with
//! SIGKILL in the step after a checkpoint, with a torn half line appended to every log (a full
//! disk), resumes and ends with the same files, byte for byte, as the same run never
//! interrupted. The run uses the adaptive KL controller, whose β at the checkpoint the run
//! resumes from (step 6: 0.049988001199935995) is a decimal serde_json's default parser reads
//! 1 ULP low: it must come back bit for bit, or `kl_metrics.jsonl` differs.

use crate::MEDRL;
use medrl_tests::{medrl, repo_root};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// The logs a resume cuts back to the checkpoint, then compared byte for byte.
const ROW_LOGS: [&str; 5] = ["rewards.csv", "kl_metrics.jsonl", "samples.jsonl", "failures.jsonl", "metrics.jsonl"];
/// The fields of `metrics.jsonl` that measure the machine (wall clock, memory), not the run.
const MACHINE_FIELDS: [&str; 6] =
    ["rollout_tokens_per_s", "update_tokens_per_s", "rollout_seconds", "update_seconds", "step_seconds", "peak_rss_bytes"];

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `medrl train` arguments for an 8-step run, checkpoints at 3, 6 and 8, into `runs/ppo` of the working folder. Every path is
/// absolute or relative to that folder, so two runs in two folders write the same `config.toml`.
fn train_args(model: &Path) -> Vec<String> {
    let root = repo_root();
    let mut a = vec!["train".to_string()];
    for kv in [
        format!("model.path=\"{}\"", s(model)),
        format!("data.prompts=\"{}\"", s(&root.join("data/rl/training_prompts.jsonl"))),
        format!("rules.registry=\"{}\"", s(&root.join("data"))),
        // The registry is the checkout's; its accepted revisions go to the working folder.
        "rules.trust_state=\"trust-state.jsonl\"".into(),
        "run.out_dir=\"runs\"".into(),
        "run.steps=8".into(),
        "run.save_every=3".into(),
        "rollout.prompts_per_step=2".into(),
        "rollout.max_new_tokens=8".into(),
        "ppo.mini_batch_size=2".into(),
        "ppo.normalize_rewards=true".into(),
    ] {
        a.extend(["--set".to_string(), kv]);
    }
    a
}

fn run_in(cwd: &Path, args: &[String]) -> medrl_tests::Run {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    medrl(MEDRL, cwd, &refs)
}

fn sha256(bytes: &[u8]) -> String {
    medrl::registry::hash::sha256_hex(bytes)
}

fn metrics_without_machine_fields(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for f in MACHINE_FIELDS {
                assert!(v.as_object_mut().unwrap().remove(f).is_some(), "metrics.jsonl has no `{f}`: update MACHINE_FIELDS");
            }
            v
        })
        .collect()
}

/// The evaluations of an audit log without what differs between two runs of the same steps
/// (time, elapsed µs, and with them seq, prev and hash), as a set: the crashed step's
/// evaluations, which happened, are recorded twice in the resumed log.
fn audit_evaluations(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let event = v.get_mut("event").unwrap().as_object_mut().unwrap();
            (event["kind"] != "ruleset_loaded").then(|| {
                event.remove("elapsed_us");
                serde_json::to_string(event).unwrap()
            })
        })
        .collect()
}

#[test]
fn a_run_killed_after_a_checkpoint_with_torn_logs_resumes_to_the_same_bytes() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("tiny");
    medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "tiny", "--out", s(&model)]).ok();
    let args = train_args(&model);

    let straight = work.path().join("straight");
    std::fs::create_dir_all(&straight).unwrap();
    run_in(&straight, &args).ok();

    // The same run, killed (SIGKILL: no destructor, no flush) as soon as checkpoint 6 is
    // complete, i.e. somewhere in step 7.
    let crashed = work.path().join("crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    let root = crashed.join("runs/ppo");
    let mut child = std::process::Command::new(MEDRL)
        .args(&args)
        .current_dir(&crashed)
        .env_remove("MEDRL_REGISTRY")
        .env_remove("MEDRL_AUDIT_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let marker = root.join("checkpoints/step-6/trainer_state.json");
    let started = Instant::now();
    while !marker.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before checkpoint 6");
        assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint 6 after 300 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!root.join("final").exists(), "the run finished before it was killed; the test interrupted nothing");

    // A full disk: every log ends in half a line (the samples log inside a UTF-8 character).
    let audit = root.join("audit.jsonl");
    let audit_samples = root.join("audit.samples.jsonl");
    let mut torn_files: Vec<&str> = Vec::new();
    for name in ROW_LOGS.iter().copied().chain(["audit.jsonl", "audit.samples.jsonl"]) {
        let path = root.join(name);
        let torn: &[u8] = if name.ends_with(".csv") { b"9,torn#s9r0,gen" } else { b"{\"step\":9,\"text\":\"\xC3" };
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(torn);
        std::fs::write(&path, bytes).unwrap();
        torn_files.push(name);
    }
    // The TensorBoard event file: 9 bytes of a record that was never finished.
    let events = root.join("events.out.tfevents.medrl");
    let mut bytes = std::fs::read(&events).unwrap();
    bytes.extend_from_slice(&[0x18, 0, 0, 0, 0, 0, 0, 0, 0xa3]);
    std::fs::write(&events, bytes).unwrap();

    let resumed = run_in(&crashed, &["train".to_string(), "--resume".to_string(), "runs/ppo".to_string()]).ok();
    assert!(resumed.stdout.contains("done: 8 steps"), "{}", resumed.stdout);
    // Every cut is reported, with its bytes.
    for name in torn_files {
        let line = resumed.stderr.lines().find(|l| l.starts_with("resume: ") && l.contains(&format!("runs/ppo/{name}: ")));
        let line = line.unwrap_or_else(|| panic!("no resume line for {name}:\n{}", resumed.stderr));
        assert!(line.contains("dropped ") && line.contains("a torn last line"), "{line}");
    }
    let line =
        resumed.stderr.lines().find(|l| l.contains("runs/ppo/events.out.tfevents.medrl: dropped ")).unwrap_or_else(|| panic!("{}", resumed.stderr));
    assert!(line.ends_with("(9 of them a torn last line)"), "{line}");

    let a = straight.join("runs/ppo");
    let mut compared = Vec::new();
    let mut same_bytes = |rel: String| {
        let (x, y) = (std::fs::read(a.join(&rel)).unwrap(), std::fs::read(root.join(&rel)).unwrap());
        assert!(x == y, "{rel} differs between the uninterrupted and the resumed run");
        compared.push((rel, sha256(&x), sha256(&y)));
    };
    for name in ["config.toml", "rewards.csv", "kl_metrics.jsonl", "samples.jsonl", "failures.jsonl"] {
        same_bytes(name.into());
    }
    for dir in ["checkpoints/step-3", "checkpoints/step-6", "checkpoints/step-8", "final"] {
        for file in [
            "trainer_state.json",
            "value_head.safetensors",
            "optimizer.safetensors",
            "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json",
        ] {
            same_bytes(format!("{dir}/{file}"));
        }
    }
    // Not vacuous: β at step 6 has 17 significant digits, the kind serde_json's parser without
    // `float_roundtrip` reads one ULP off; the checkpoint's own reader and the feature both read
    // it exactly, so kl_metrics.jsonl above is byte-identical.
    let state = std::fs::read_to_string(root.join("checkpoints/step-6/trainer_state.json")).unwrap();
    let beta = state.split_once("\"kl_coef\": ").unwrap().1.split_once(',').unwrap().0;
    assert_eq!(serde_json::from_str::<f64>(beta).unwrap().to_bits(), beta.parse::<f64>().unwrap().to_bits(), "β {beta}");
    assert_eq!(metrics_without_machine_fields(&a.join("metrics.jsonl")), metrics_without_machine_fields(&root.join("metrics.jsonl")));
    // The row logs' recorded lengths agree at every checkpoint, the resumed one's included.
    for dir in ["checkpoints/step-3", "checkpoints/step-6", "checkpoints/step-8"] {
        let lengths =
            |base: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(base.join(dir).join("log_lengths.json")).unwrap()).unwrap() };
        let (x, y) = (lengths(&a), lengths(&root));
        for name in ["rewards.csv", "kl_metrics.jsonl", "samples.jsonl", "failures.jsonl"] {
            assert_eq!(x["files"][name], y["files"][name], "{dir}: {name}");
        }
    }

    // The event file: every step once, and the same figures as the uninterrupted run's but for
    // the machine's (`perf/*`: times and throughput) and the wall times.
    let figures = |path: &Path| -> Vec<(i64, Vec<(String, f32)>)> {
        medrl::training::tfevents::read(path)
            .unwrap()
            .into_iter()
            .map(|e| (e.step, e.scalars.into_iter().filter(|(t, _)| !t.starts_with("perf/")).collect()))
            .collect()
    };
    let (x, y) = (figures(&a.join("events.out.tfevents.medrl")), figures(&events));
    assert_eq!(y.iter().map(|e| e.0).collect::<Vec<_>>(), (0..=8).collect::<Vec<i64>>());
    assert_eq!(x, y);

    // The audit log: the chain verifies after the resume, the same evaluations are in it, and
    // the same sample inputs beside it.
    let verify = medrl(MEDRL, &repo_root(), &["audit", "verify", s(&audit)]).ok();
    assert!(verify.stdout.contains("evaluations"), "{}", verify.stdout);
    assert_eq!(audit_evaluations(&a.join("audit.jsonl")), audit_evaluations(&audit));
    let lines = |p: &Path| -> BTreeSet<String> { std::fs::read_to_string(p).unwrap().lines().map(String::from).collect() };
    assert_eq!(lines(&a.join("audit.samples.jsonl")), lines(&audit_samples));

    eprintln!("sha256, uninterrupted run | resumed run:");
    for (rel, x, y) in compared {
        eprintln!("  {rel}: {x} | {y}");
    }
}
