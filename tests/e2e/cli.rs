//! The command line as glue: one error renderer (each cause once), exit codes that separate the
//! user's mistakes from internal errors, a `--set` typo blamed on the flag, and a closed pipe
//! that ends the process quietly.

use crate::MEDRL;
use medrl_tests::{medrl, repo_root};
use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn a_set_typo_names_the_flag_and_exits_1() {
    let run = medrl(MEDRL, &repo_root(), &["train", "--set", "ppo.clipange=0.1"]).failed();
    assert_eq!(run.status, 1);
    assert!(run.stderr.starts_with("error: --set ppo.clipange=0.1: unknown field `clipange`, expected one of"), "{}", run.stderr);
    assert!(!run.stderr.contains("<defaults>"), "{}", run.stderr);
}

#[test]
fn a_cause_quoted_in_the_message_is_not_printed_again() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("registry");
    std::fs::create_dir(&empty).unwrap();
    let out = tmp.path().join("qs");
    let run = medrl(MEDRL, &repo_root(), &["--registry", empty.to_str().unwrap(), "quickstart", "--out", out.to_str().unwrap()]).failed();
    assert_eq!(run.status, 1);
    assert_eq!(run.stderr.matches("no rule set named `medical-safety`").count(), 1, "{}", run.stderr);
    assert!(!run.stderr.contains("Caused by"), "{}", run.stderr);
    assert!(!out.exists(), "the rule set is refused before the quickstart writes anything");
}

#[test]
fn a_closed_pipe_ends_the_process_without_a_panic() {
    // 3,000 scored samples as JSON lines (several hundred kilobytes): more than a pipe buffers,
    // so the writer meets the closed pipe.
    let tmp = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(repo_root().join("data/samples/demo.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(demo.lines().next().unwrap()).unwrap();
    let input = tmp.path().join("many.jsonl");
    let text: String = (0..3000)
        .map(|i| {
            let mut l = line.clone();
            l["id"] = format!("s{i}").into();
            format!("{l}\n")
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let mut child = Command::new(MEDRL)
        .args([
            "rules",
            "score",
            "--ruleset",
            "medical-safety@1.0.0",
            "--json",
            "--input",
            input.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
            "--trust-state",
            tmp.path().join("trust-state.jsonl").to_str().unwrap(),
        ])
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is dropped here: the pipe is closed, as `| head -c 64` would close it.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

#[test]
fn the_quickstart_stages_take_set_overrides_checked_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    let o = out.to_str().unwrap();
    let run = medrl(MEDRL, &repo_root(), &["quickstart", "--out", o, "--rl-set", "ppo.learnig_rate=1e-3"]).failed();
    assert!(run.stderr.contains("RL stage: --set ppo.learnig_rate=1e-3: unknown field `learnig_rate`"), "{}", run.stderr);
    let run = medrl(MEDRL, &repo_root(), &["quickstart", "--out", o, "--sft-set", "learning_rate=nan"]).failed();
    assert!(run.stderr.contains("SFT stage: ") && run.stderr.contains("learning_rate"), "{}", run.stderr);
    assert!(!out.exists(), "nothing is written before both stages' settings are checked");
}

#[test]
fn the_quickstart_stages_take_config_files_checked_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    let o = out.to_str().unwrap();
    let rl = tmp.path().join("rl.toml");
    std::fs::write(&rl, "[rollout]\ntop_p = 5.0\n").unwrap();
    let run = medrl(MEDRL, &repo_root(), &["quickstart", "--out", o, "--rl-config", rl.to_str().unwrap()]).failed();
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("RL stage: invalid setting: `rollout.top_p` must be a finite number in (0, 1] (it is 5.0)"), "{}", run.stderr);
    let sft = tmp.path().join("sft.toml");
    std::fs::write(&sft, "epoch = 2\n").unwrap();
    let run = medrl(MEDRL, &repo_root(), &["quickstart", "--out", o, "--sft-config", sft.to_str().unwrap()]).failed();
    assert!(run.stderr.contains(&format!("SFT stage: {}: unknown field `epoch`", sft.display())), "{}", run.stderr);
    assert!(!out.exists(), "nothing is written before both stages' settings are checked");
}

/// Out-of-range numbers are refused with the fix before `medrl train` creates its run folder.
#[test]
fn train_refuses_bad_numbers_before_the_run_folder_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = format!("run.out_dir={:?}", tmp.path().join("runs").to_str().unwrap());
    for bad in ["ppo.learning_rate=nan", "ppo.cliprange=-0.2", "ppo.ppo_epochs=0", "lora.alpha=-1", "run.steps=0", "rollout.top_p=5"] {
        let run = medrl(MEDRL, &repo_root(), &["train", "--set", &out_dir, "--set", bad]).failed();
        assert_eq!(run.status, 1, "{bad}: {}", run.stderr);
        let key = bad.split('=').next().unwrap();
        assert!(run.stderr.starts_with(&format!("error: invalid setting: `{key}` must be")), "{bad}: {}", run.stderr);
        assert!(run.stderr.contains(&format!("from --set {bad}); for example --set {key}=")), "{bad}: {}", run.stderr);
        assert!(!tmp.path().join("runs").exists(), "{bad}: nothing written");
    }
}
