//! Bad input gets a clear error that says what is wrong and loses nothing.

use crate::MEDRL;
use medrl_tests::{medrl, registry_copy, repo_root};

#[test]
fn a_malformed_jsonl_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("samples.jsonl");
    let good = r#"{"id":"a","prompt":"p","response":"r","lang":"en","category":"general","risk":"low"}"#;
    std::fs::write(&input, format!("{good}\n{good}\n{{\"id\": \"broken\"\n")).unwrap();
    let run = medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", input.to_str().unwrap()]).failed();
    assert!(run.stderr.contains("samples.jsonl:3:"), "{}", run.stderr);
    assert_eq!(run.status, 1);
}

#[test]
fn an_unknown_category_lists_the_allowed_ones_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("samples.jsonl");
    std::fs::write(&input, r#"{"id":"a","prompt":"p","response":"r","lang":"fr","category":"general","risk":"low"}"#).unwrap();
    let run = medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", input.to_str().unwrap()]).failed();
    assert!(run.stderr.contains("samples.jsonl:1:") && run.stderr.contains("`zh`"), "{}", run.stderr);
}

#[test]
fn an_unknown_rule_set_version_lists_the_versions_that_exist() {
    let run = medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "medical-safety@9.9.9", "--input", "data/samples/demo.jsonl"]).failed();
    assert!(run.stderr.contains("medical-safety@9.9.9") && run.stderr.contains("versions of `medical-safety`: 1.0.0"), "{}", run.stderr);
    let run = medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "no-such-set@1.0.0", "--input", "data/samples/demo.jsonl"]).failed();
    assert!(run.stderr.contains("known: medical-safety"), "{}", run.stderr);
    let run = medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "medical-safety", "--input", "data/samples/demo.jsonl"]).failed();
    assert!(run.stderr.contains("NAME@VERSION"), "{}", run.stderr);
}

#[test]
fn a_manifest_with_an_unknown_field_is_refused_with_its_name() {
    let reg = registry_copy();
    let path = reg.path().join("rules/chain/1.0.0/rule.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["limits"]["fuell"] = 5.into();
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let run = medrl(
        MEDRL,
        &repo_root(),
        &["--registry", reg.path().to_str().unwrap(), "rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", "data/samples/demo.jsonl"],
    )
    .failed();
    assert!(run.stderr.contains("fuell") && run.stderr.contains("rule.json"), "{}", run.stderr);
}

#[test]
fn a_flipped_byte_in_a_module_is_refused_before_any_rule_runs() {
    let reg = registry_copy();
    let path = reg.path().join("rules/risk/1.0.0/rule.wasm");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let run = medrl(
        MEDRL,
        &repo_root(),
        &["--registry", reg.path().to_str().unwrap(), "rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", "data/samples/demo.jsonl"],
    )
    .failed();
    assert!(run.stderr.contains("rules/risk/1.0.0/rule.wasm") && run.stderr.contains("sha256"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing was scored: {}", run.stdout);
}

/// Issue 14 item 6: an empty input, a byte order mark, bytes that are not UTF-8 and a cut-off
/// `model.safetensors` each stop the command with the file, the place and the fix.
#[test]
fn empty_bom_non_utf8_and_truncated_model_inputs_are_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("samples.jsonl");
    let good = r#"{"id":"a","prompt":"p","response":"r","lang":"en","category":"general","risk":"low"}"#;
    let score = |input: &std::path::Path| {
        medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", input.to_str().unwrap()]).failed()
    };
    std::fs::write(&input, "").unwrap();
    let run = score(&input);
    assert!(run.stderr.contains("samples.jsonl is empty") && run.stderr.contains("check the path"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    std::fs::write(&input, format!("\u{feff}{good}\n")).unwrap();
    let run = score(&input);
    assert!(run.stderr.contains("samples.jsonl starts with a UTF-8 byte order mark") && run.stderr.contains("without a BOM"), "{}", run.stderr);
    // Latin-1 "é" in the response of line 2.
    let mut bytes = format!("{good}\n").into_bytes();
    bytes.extend_from_slice(&good.replace("\"r\"", "\"caf\u{e9}\"").into_bytes());
    let at = bytes.iter().position(|&b| b == 0xC3).unwrap();
    bytes.splice(at..at + 2, [0xE9]);
    std::fs::write(&input, &bytes).unwrap();
    let run = score(&input);
    assert!(
        run.stderr.contains(&format!("samples.jsonl:2: not UTF-8 (invalid byte 0xE9 at byte offset {at})")) && run.stderr.contains("iconv"),
        "{}",
        run.stderr
    );

    // `medrl train`: an empty prompts file, then a model whose weights were cut off mid-copy.
    let model = dir.path().join("tiny");
    medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "tiny", "--out", model.to_str().unwrap()]).ok();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, "\n").unwrap();
    let runs = dir.path().join("runs");
    let train = |prompts: &std::path::Path| {
        let sets = [
            format!("model.path=\"{}\"", model.display()),
            format!("data.prompts=\"{}\"", prompts.display()),
            format!("run.out_dir=\"{}\"", runs.display()),
        ];
        let mut args = vec!["train"];
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        medrl(MEDRL, &repo_root(), &args).failed()
    };
    let run = train(&prompts);
    assert!(run.stderr.contains("prompts.jsonl is empty"), "{}", run.stderr);
    assert!(!runs.join("ppo").exists(), "the run folder was created");
    let weights = model.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 3]).unwrap();
    let run = train(&repo_root().join("data/rl/training_prompts.jsonl"));
    assert!(
        run.stderr.contains(&format!("{} is not a readable safetensors file", weights.display()))
            && run.stderr.contains("truncated or corrupt")
            && run.stderr.contains("medrl model init"),
        "{}",
        run.stderr
    );
}
