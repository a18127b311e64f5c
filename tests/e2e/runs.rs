//! A run you can watch (issue 16, item 4), with the built binary: a real tiny `train` and `sft`
//! with their output piped print plain progress lines whose figures are the logged ones, leave
//! plots and a TensorBoard event file, and `medrl runs plot | events | compare` read the folders.

use crate::MEDRL;
use medrl::runs::{RunScalars, parse_line};
use medrl::training::tfevents;
use medrl_tests::{first_lines, medrl, repo_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn run(args: &[String]) -> medrl_tests::Run {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    medrl(MEDRL, &repo_root(), &refs)
}

/// `medrl train` of the tiny model: `steps` steps of 2 prompts, 8 new tokens, named `name`.
fn train(model: &str, runs: &Path, name: &str, steps: u64, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["train".into()];
    for kv in [
        format!("model.path=\"{model}\""),
        format!("run.out_dir=\"{}\"", runs.display()),
        format!("run.name=\"{name}\""),
        format!("run.steps={steps}"),
        "run.save_every=10".into(),
        "rollout.prompts_per_step=2".into(),
        "rollout.max_new_tokens=8".into(),
        "ppo.mini_batch_size=2".into(),
    ] {
        a.extend(["--set".into(), kv]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A JSONL log's rows by step.
fn rows(path: &Path) -> BTreeMap<u64, Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["step"].as_u64().unwrap(), v))
        .collect()
}

#[test]
fn a_piped_run_prints_progress_lines_and_leaves_plots_events_and_a_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "tiny", "--out", model.to_str().unwrap()]).ok();
    let model = model.to_str().unwrap();
    let runs = dir.path().join("runs");

    // A setting that would never print stops the run before its folder exists.
    let r = run(&train(model, &runs, "a", 5, &["--progress-every", "0"])).failed();
    assert!(r.stderr.contains("--progress-every 0") && !runs.join("a").exists(), "{}", r.stderr);

    // Output piped (not a terminal): lines at step 1 (the first), 2 and 4 (multiples of 2), 5 (the last).
    let r = run(&train(model, &runs, "a", 5, &["--progress-every", "2", "--progress-secs", "0"])).ok();
    let lines: Vec<_> = r.stderr.lines().filter_map(parse_line).collect();
    assert_eq!(lines.iter().map(|l| (l.what.as_str(), l.done, l.total)).collect::<Vec<_>>(), [1, 2, 4, 5].map(|s| ("train", s, 5)), "{}", r.stderr);
    assert!(!r.stdout.lines().any(|l| parse_line(l).is_some()), "progress goes to stderr: {}", r.stdout);
    let root = runs.join("a");
    let (metrics, kl) = (rows(&root.join("metrics.jsonl")), rows(&root.join("kl_metrics.jsonl")));
    for line in &lines {
        let (m, k) = (&metrics[&line.done], &kl[&line.done]);
        // Each figure is the step's logged value, rounded as printed.
        let near = |key: &str, logged: f64, decimals: i32| {
            let shown = line.number(key).unwrap_or_else(|| panic!("step {}: no {key}", line.done));
            assert!((shown - logged).abs() <= 0.51 * 10f64.powi(-decimals), "step {} {key}: printed {shown}, logged {logged}", line.done);
        };
        near("reward", m["reward_mean"].as_f64().unwrap(), 4);
        near("kl", k["kl_per_token"].as_f64().unwrap(), 5);
        near("beta", k["kl_coef"].as_f64().unwrap(), 4);
        near("pg_loss", m["pg_loss"].as_f64().unwrap(), 4);
        near("vf_loss", m["vf_loss"].as_f64().unwrap(), 4);
        near("len", m["response_len_mean"].as_f64().unwrap(), 1);
        near("eos", m["eos_rate"].as_f64().unwrap(), 3);
        near("tok_s", m["rollout_tokens_per_s"].as_f64().unwrap(), 0);
        let (elapsed, eta) = (line.duration("elapsed").unwrap(), line.duration("eta").unwrap());
        assert!(elapsed.as_secs() < 600 && eta.as_secs() < 600, "{line:?}");
    }
    assert_eq!(lines.last().unwrap().duration("eta").unwrap().as_secs(), 0, "nothing is left after the last step");

    // The end of `train`: five plots and the live event file, one event per step.
    assert!(r.stdout.contains(&format!("plots:       {} (5 SVG files)", root.join("plots").display())), "{}", r.stdout);
    for f in ["reward.svg", "kl.svg", "loss.svg", "entropy.svg", "length.svg"] {
        let svg = std::fs::read_to_string(root.join("plots").join(f)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains(">\na: "), "{f}");
    }
    let live = tfevents::read(&root.join("events.out.tfevents.medrl")).unwrap();
    assert_eq!(live.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
    let tags: Vec<&str> = live[1].scalars.iter().map(|(t, _)| t.as_str()).collect();
    for t in [
        "reward/total",
        "rule/chain",
        "rule/emergency",
        "rule/risk",
        "rule/verbosity",
        "kl/per_token",
        "kl/beta",
        "loss/policy",
        "loss/value",
        "policy/entropy",
        "response/length_mean",
        "response/eos_rate",
    ] {
        assert!(tags.contains(&t), "{t} missing from {tags:?}");
    }

    // `runs plot` elsewhere, and the event file rebuilt from the logs: the same steps and tags.
    let plots = dir.path().join("plots-a");
    let r = medrl(MEDRL, &repo_root(), &["runs", "plot", root.to_str().unwrap(), "--out", plots.to_str().unwrap()]).ok();
    assert!(r.stdout.contains("(Rl, 5 steps): 5 plots in"), "{}", r.stdout);
    let r = medrl(MEDRL, &repo_root(), &["runs", "events", root.to_str().unwrap()]).failed();
    assert!(r.stderr.contains("exists; pass --overwrite"), "{}", r.stderr);
    let rebuilt_dir = dir.path().join("rebuilt");
    std::fs::create_dir(&rebuilt_dir).unwrap();
    medrl(MEDRL, &repo_root(), &["runs", "events", root.to_str().unwrap(), "--out", rebuilt_dir.to_str().unwrap()]).ok();
    let rebuilt = tfevents::read(&rebuilt_dir.join("events.out.tfevents.medrl")).unwrap();
    assert_eq!(rebuilt.len(), live.len());
    for (l, b) in live.iter().zip(&rebuilt).skip(1) {
        let sorted = |e: &tfevents::Event| {
            let mut s = e.scalars.clone();
            s.sort_by(|x, y| x.0.cmp(&y.0));
            s
        };
        let (l, b) = (sorted(l), sorted(b));
        assert_eq!(l.iter().map(|x| &x.0).collect::<Vec<_>>(), b.iter().map(|x| &x.0).collect::<Vec<_>>());
        // The CSV keeps 6 decimals of each reward.
        assert!(l.iter().zip(&b).all(|(x, y)| (x.1 - y.1).abs() <= 1e-5 * x.1.abs().max(1.0)), "{l:?} vs {b:?}");
    }

    // A second run with another learning rate, compared with the first.
    run(&train(model, &runs, "b", 3, &["--set", "ppo.learning_rate=1e-4"])).ok();
    let (md, json, svg) = (dir.path().join("ab.md"), dir.path().join("ab.json"), dir.path().join("ab.svg"));
    let r = medrl(
        MEDRL,
        &repo_root(),
        &[
            "runs",
            "compare",
            root.to_str().unwrap(),
            runs.join("b").to_str().unwrap(),
            "--last",
            "2",
            "--md",
            md.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ],
    )
    .ok();
    assert_eq!(std::fs::read_to_string(&md).unwrap(), r.stdout);
    let c: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    // Every command of this harness gets its own trust-state file, so that path differs too.
    let settings: Vec<&str> = c["settings"].as_array().unwrap().iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(settings, ["ppo.learning_rate", "rules.trust_state", "run.name", "run.steps"], "{}", r.stdout);
    assert!(r.stdout.contains("| ppo.learning_rate | `0.0002` | `0.0001` |"), "{}", r.stdout);
    // reward/total: A's mean of its last 2 steps from its own rows, checked against the JSON.
    let a = RunScalars::read(&root).unwrap();
    let total = a.get("reward/total");
    let want = (total[3].1 + total[4].1) / 2.0;
    let row = c["metrics"].as_array().unwrap().iter().find(|m| m["tag"] == "reward/total").unwrap();
    assert!((row["a"]["mean_last"].as_f64().unwrap() - want).abs() < 1e-12 && row["a"]["final_step"] == 5 && row["b"]["final_step"] == 3, "{row}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains(">\nreward: a vs b\n</text>"));

    let r = medrl(MEDRL, &repo_root(), &["runs", "plot", dir.path().join("nope").to_str().unwrap()]).failed();
    assert!(r.stderr.contains("is not a folder"), "{}", r.stderr);
}

#[test]
fn a_piped_sft_prints_its_loss_and_leaves_its_plot_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "tiny", "--out", model.to_str().unwrap()]).ok();
    let data = dir.path().join("sft.jsonl");
    first_lines(&repo_root().join("data/sets/sft.jsonl"), 8, &data);
    let out = dir.path().join("sft");
    let r = medrl(
        MEDRL,
        &repo_root(),
        &[
            "sft",
            "--model",
            model.to_str().unwrap(),
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
            "--progress-every",
            "1",
        ],
    )
    .ok();
    let lines: Vec<_> = r.stderr.lines().filter_map(parse_line).collect();
    let metrics = rows(&out.join("metrics.jsonl"));
    assert_eq!(lines.iter().map(|l| (l.what.as_str(), l.done, l.total)).collect::<Vec<_>>(), [("sft", 1, 2), ("sft", 2, 2)], "{}", r.stderr);
    for l in &lines {
        assert!((l.number("loss").unwrap() - metrics[&l.done]["loss"].as_f64().unwrap()).abs() <= 0.51e-4, "{l:?}");
        assert!((l.number("lr").unwrap() / metrics[&l.done]["lr"].as_f64().unwrap() - 1.0).abs() < 1e-3, "{l:?}");
    }
    assert!(std::fs::read_to_string(out.join("plots/loss.svg")).unwrap().contains(">\nloss on the answer tokens\n</text>"));
    let events = tfevents::read(&out.join("events.out.tfevents.medrl")).unwrap();
    assert_eq!(events.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(events[2].scalars.iter().any(|(t, v)| t == "loss/sft" && (f64::from(*v) - metrics[&2]["loss"].as_f64().unwrap()).abs() < 1e-5));
}
