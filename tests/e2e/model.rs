//! `medrl model init` → `medrl predict` → `medrl rules score`, as the README's quickstart runs
//! them, on the tiny model; `medrl bench rollout` on it; and the errors of a broken model folder
//! or prompt file.

use crate::MEDRL;
use medrl_tests::{medrl, repo_root};
use serde_json::Value;
use std::path::Path;

fn init_tiny(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("tiny");
    let run = medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "tiny", "--out", out.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("wrote tiny model to"), "{}", run.stdout);
    assert!(run.stdout.contains("2 layers, hidden 64"), "{}", run.stdout);
    out
}

/// Two Chinese and one English gold item and one training prompt.
fn prompts(dir: &Path) -> (std::path::PathBuf, Vec<Value>) {
    let gold = std::fs::read_to_string(repo_root().join("data/sets/gold.jsonl")).unwrap();
    let training = std::fs::read_to_string(repo_root().join("data/rl/training_prompts.jsonl")).unwrap();
    let parse = |l: &str| serde_json::from_str::<Value>(l).unwrap();
    let gold: Vec<Value> = gold.lines().map(parse).collect();
    let zh = gold.iter().filter(|g| g["lang"] == "zh").take(2);
    let en = gold.iter().filter(|g| g["lang"] == "en").take(1);
    let mut lines: Vec<Value> = zh.chain(en).cloned().collect();
    lines.push(parse(training.lines().next().unwrap()));
    let path = dir.join("prompts.jsonl");
    std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    (path, lines)
}

#[test]
fn init_then_predict_writes_one_answer_per_prompt_with_the_model_digest() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_tiny(dir.path());
    let (input, lines) = prompts(dir.path());
    let output = dir.path().join("answers.jsonl");
    let args = |out: &Path| {
        let mut a: Vec<String> = ["predict", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()].map(String::from).to_vec();
        a.extend(["--output".into(), out.to_str().unwrap().into(), "--max-new-tokens".into(), "8".into(), "--batch-size".into(), "3".into()]);
        a
    };
    let argv = args(&output);
    let run = medrl(MEDRL, &repo_root(), &argv.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    assert!(run.stdout.contains("wrote 4 answers to"), "{}", run.stdout);
    let answers: Vec<Value> = std::fs::read_to_string(&output).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 4);
    let digest = answers[0]["model_sha256"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64);
    assert!(run.stdout.contains(&digest), "{}", run.stdout);
    for (a, p) in answers.iter().zip(&lines) {
        assert_eq!(a["id"], p["id"]);
        assert_eq!(a["prompt"], p["prompt"]);
        assert_eq!(a["lang"], p["lang"]);
        assert!(a["response"].is_string());
        let tokens = a["tokens"].as_u64().unwrap();
        assert!((1..=8).contains(&tokens), "{a}");
        assert!(a["finish_reason"] == "stop" || (a["finish_reason"] == "length" && tokens == 8), "{a}");
        assert_eq!(a["model_sha256"], digest.as_str());
        assert!(a["adapter_sha256"].is_null());
    }
    // Greedy by default: a second run writes the same bytes.
    let again = dir.path().join("again.jsonl");
    let argv = args(&again);
    medrl(MEDRL, &repo_root(), &argv.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    assert_eq!(std::fs::read(&output).unwrap(), std::fs::read(&again).unwrap());
    // The answers are rule samples: the shipped rule set scores them as they are.
    let run = medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", output.to_str().unwrap()]).ok();
    assert!(run.stdout.contains(lines[0]["id"].as_str().unwrap()), "{}", run.stdout);
}

#[test]
fn bench_rollout_prints_throughput_and_peak_memory() {
    let run = medrl(MEDRL, &repo_root(), &["bench", "rollout", "--batch", "2", "--prompt-len", "8", "--new-tokens", "4"]).ok();
    assert!(run.stdout.contains("rollout on tiny"), "{}", run.stdout);
    assert!(run.stdout.contains("new tokens per second:"), "{}", run.stdout);
    assert!(run.stdout.contains("MiB (peak process RSS during the run)"), "{}", run.stdout);
}

#[test]
fn a_model_folder_without_its_tokenizer_and_a_malformed_prompt_line_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = init_tiny(dir.path());
    let (input, _) = prompts(dir.path());
    let out = dir.path().join("a.jsonl");
    let predict = |model: &Path, input: &Path| {
        medrl(
            MEDRL,
            &repo_root(),
            &["predict", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()],
        )
    };
    let bad = dir.path().join("bad.jsonl");
    let first = std::fs::read_to_string(&input).unwrap().lines().next().unwrap().to_string();
    std::fs::write(&bad, format!("{first}\n{{\"id\": \"x\", \"prompt\": \"a data item without its other fields\", \"lang\": \"en\"}}\n")).unwrap();
    let run = predict(&model, &bad).failed();
    assert!(run.stderr.contains("bad.jsonl:2: not a data item"), "{}", run.stderr);
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    let run = predict(&model, &input).failed();
    assert!(run.stderr.contains("has no tokenizer.json"), "{}", run.stderr);
    assert_eq!(run.status, 1);
    let run = medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "huge", "--out", dir.path().join("h").to_str().unwrap()]).failed();
    assert!(run.stderr.contains("unknown preset `huge`; presets: tiny, qwen2.5-0.5b-shape"), "{}", run.stderr);
    assert!(!out.exists());
}
