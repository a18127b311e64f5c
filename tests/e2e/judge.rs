//! The LLM judge plugin (issue 7): the real `medrl-llm-judge` cdylib, published into a copy of
//! the registry with `medrl rules ruleset new`, loaded by hash through the real loader, scoring
//! its sampled share with the tiny model; a changed library refused before it is loaded; a
//! plugin of another ABI version (the `medrl-judge-abi-fixture` cdylib) refused with a message
//! naming both versions.
//!
//! Both libraries are dev-dependencies of the `medrl` crate, so cargo builds them (into the
//! test binary's own `deps/` folder) before this test runs, under `cargo test --workspace` and
//! `cargo test -p medrl --test e2e` alike.

use crate::MEDRL;
use medrl::registry::ruleset::PinnedLibrary;
use medrl::reward::plugin::{JudgePlugin, PluginError, judge_selects};
use medrl_sdk::plugin::{JUDGE_ABI_VERSION, JudgeConfig};
use medrl_tests::{medrl, registry_copy, repo_root};
use serde_json::Value;
use std::path::{Path, PathBuf};

const JUDGE_CRATE: &str = "medrl_llm_judge";
const OTHER_ABI_CRATE: &str = "medrl_judge_abi_fixture";

/// The cdylib cargo built for `crate_name`: beside the test binary, in `target/<profile>/deps/`.
fn built_library(crate_name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let path = deps.join(format!("{}{crate_name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    assert!(path.is_file(), "{} is missing; it is built as a dev-dependency of medrl (core/Cargo.toml)", path.display());
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha256_file(path: &Path) -> String {
    medrl::registry::hash::sha256_hex(&std::fs::read(path).unwrap())
}

fn init_tiny(dir: &Path) -> PathBuf {
    let out = dir.join("tiny");
    medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "tiny", "--out", s(&out)]).ok();
    out
}

/// Copies `library` into the registry as plugin `id@0.1.0` and publishes `name@version`: the
/// shipped medical-safety rules plus that judge with `judge_toml` lines.
fn publish_judged(registry: &Path, library: &Path, id: &str, name: &str, version: &str, judge_toml: &str) -> PathBuf {
    let plugin_dir = registry.join("plugins").join(id).join("0.1.0");
    std::fs::create_dir_all(&plugin_dir).unwrap();
    let file = library.file_name().unwrap().to_str().unwrap().to_string();
    let installed = plugin_dir.join(&file);
    if !installed.exists() {
        std::fs::copy(library, &installed).unwrap();
    }
    let shipped = std::fs::read_to_string(repo_root().join("data/ruleset-specs/medical-safety-1.0.0.toml")).unwrap();
    let rules_and_aggregation = shipped.split_once("[[rules]]").unwrap().1;
    let spec = format!(
        "name = \"{name}\"\nversion = \"{version}\"\n\n[judge]\nid = \"{id}\"\nversion = \"0.1.0\"\nlibrary = \"{file}\"\n{judge_toml}\n\n[[rules]]{rules_and_aggregation}"
    );
    let spec_path = registry.join(format!("{name}-{version}.toml"));
    std::fs::write(&spec_path, spec).unwrap();
    medrl(MEDRL, registry, &["--registry", s(registry), "rules", "ruleset", "new", s(&spec_path), "--created-at", "2026-12-01T00:00:00Z"]).ok();
    // Signed by the demo key, which the registry copy's keyring trusts.
    let demo = repo_root().join("data/keys/DEMO-ONLY-medrl-demo.key");
    medrl(MEDRL, registry, &["--registry", s(registry), "rules", "sign", &format!("{name}@{version}"), "--key", s(&demo)]).ok();
    std::fs::remove_file(&spec_path).unwrap();
    installed
}

/// The demo samples, four times each under distinct ids (as rollouts of one prompt are).
fn samples(dir: &Path) -> (PathBuf, Vec<Value>) {
    let demo = std::fs::read_to_string(repo_root().join("data/samples/demo.jsonl")).unwrap();
    let mut rows = Vec::new();
    for k in 0..4 {
        for line in demo.lines() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v["id"] = Value::String(format!("{}#r{k}", v["id"].as_str().unwrap()));
            rows.push(v);
        }
    }
    let path = dir.join("samples.jsonl");
    medrl_tests::write_jsonl(&path, &rows);
    (path, rows)
}

fn score_json(registry: &Path, ruleset: &str, input: &Path, audit: &Path) -> Vec<Value> {
    let run = medrl(
        MEDRL,
        registry,
        &["--registry", s(registry), "rules", "score", "--ruleset", ruleset, "--input", s(input), "--json", "--audit-log", s(audit)],
    )
    .ok();
    run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn the_judge_loads_by_hash_and_scores_its_sampled_share_with_the_tiny_model() {
    let work = tempfile::tempdir().unwrap();
    let registry = registry_copy();
    let model = init_tiny(work.path());
    let library = built_library(JUDGE_CRATE);
    let params = format!("weight = 0.2\nshare = 0.5\nseed = 0\non_error = \"zero\"\nparams = {{ model = \"{}\" }}", s(&model));
    let installed = publish_judged(registry.path(), &library, "llm-judge", "judged", "1.0.0", &params);

    // The published rule set pins the library by sha256 and size, in `judge` and in `files`.
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(registry.path().join("rulesets/judged/1.0.0/ruleset.json")).unwrap()).unwrap();
    let sha = sha256_file(&library);
    assert_eq!(manifest["judge"]["library"]["sha256"], sha.as_str());
    assert_eq!(manifest["judge"]["library"]["size"], std::fs::metadata(&library).unwrap().len());
    let listed = format!("plugins/llm-judge/0.1.0/{}", library.file_name().unwrap().to_str().unwrap());
    assert!(
        manifest["files"].as_array().unwrap().iter().any(|f| f["path"] == listed.as_str() && f["sha256"] == sha.as_str()),
        "{}",
        manifest["files"]
    );
    let verify = medrl(MEDRL, registry.path(), &["--registry", s(registry.path()), "rules", "verify", "judged@1.0.0"]).ok();
    assert!(verify.stdout.contains("judge llm-judge@0.1.0") && verify.stdout.contains("not sandboxed"), "{}", verify.stdout);
    let inspect = medrl(MEDRL, registry.path(), &["--registry", s(registry.path()), "rules", "inspect", "judged@1.0.0", "--json"]).ok();
    let inspected: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(inspected["judge"]["library"]["sha256"], sha.as_str());
    assert_eq!((inspected["judge"]["share"].as_f64(), inspected["judge"]["on_error"].as_str()), (Some(0.5), Some("zero")));

    let (input, rows) = samples(work.path());
    let audit = work.path().join("audit.jsonl");
    let judged = score_json(registry.path(), "judged@1.0.0", &input, &audit);
    let plain = score_json(registry.path(), "medical-safety@1.0.0", &input, &work.path().join("plain.jsonl"));
    assert_eq!((judged.len(), plain.len()), (rows.len(), rows.len()));
    let selected: Vec<bool> = rows.iter().map(|r| judge_selects(0, 0.5, r["id"].as_str().unwrap())).collect();
    let n_judged = selected.iter().filter(|&&b| b).count();
    assert!(n_judged > 0 && n_judged < rows.len(), "{n_judged} of {} selected", rows.len());

    for ((with, without), &is_judged) in judged.iter().zip(&plain).zip(&selected) {
        let rules = with["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 5, "four rules, then the judge");
        // The rules score exactly as in the shipped rule set.
        for (a, b) in rules[..4].iter().zip(without["rules"].as_array().unwrap()) {
            for key in ["rule", "outcome", "output", "decision", "fuel_used"] {
                assert_eq!(a[key], b[key], "{key} of {a}");
            }
        }
        let judge = &rules[4];
        assert_eq!(judge["rule"], "judge:llm-judge@0.1.0");
        if is_judged {
            assert_eq!(judge["outcome"], "ok", "{judge}");
            let score = judge["output"]["score"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&score) && judge["decision"]["score"].as_f64() == Some(score), "{judge}");
            let explanation = judge["output"]["explanation"].as_str().unwrap();
            assert!(explanation.starts_with("rating distribution 1:") && explanation.contains(" 5:"), "{explanation}");
        } else {
            assert_eq!(judge["decision"]["decision"], "not_applicable", "{judge}");
        }
        // R = Σ w·s with the score weights (chain 0.4, emergency 0.4, judge 0.2 = 1.0 in all)
        // rescaled to 1.0 over the applicable ones (so outside the share the rules fill the
        // judge's 0.2 too); penalties (risk −0.2, verbosity −0.1) as they are; then clip to
        // the shipped [-1, 1].
        let weights = [0.4, 0.4, -0.2, -0.1, 0.2];
        let counted: Vec<Option<f64>> = rules.iter().map(|r| r["decision"]["score"].as_f64()).collect();
        let applicable_score_weight: f64 = [0, 1, 4].iter().filter(|&&i| counted[i].is_some()).map(|&i| weights[i]).sum();
        let scale = 1.0 / applicable_score_weight;
        let expected: f64 = (0..5)
            .filter_map(|i| counted[i].map(|s| if weights[i] > 0.0 { weights[i] * scale * s } else { weights[i] * s }))
            .sum::<f64>()
            .clamp(-1.0, 1.0);
        let total = with["reward"]["total"].as_f64().unwrap();
        assert!((total - expected).abs() < 1e-9, "reward {total}, by hand {expected}: {with}");
    }

    // The audit log: one judge_evaluation per judged sample, not sandboxed, with the library's
    // hash; the chain verifies and the rule evaluations still replay exactly.
    let records: Vec<Value> = std::fs::read_to_string(&audit).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let judge_records: Vec<&Value> = records.iter().filter(|r| r["event"]["kind"] == "judge_evaluation").collect();
    assert_eq!(judge_records.len(), n_judged);
    for r in &judge_records {
        let e = &r["event"];
        assert_eq!((e["sandboxed"].as_bool(), e["plugin"]["library_sha256"].as_str()), (Some(false), Some(sha.as_str())), "{e}");
        assert_eq!(e["plugin"]["abi"], JUDGE_ABI_VERSION);
        assert_eq!(e["outcome"], "ok");
    }
    medrl(MEDRL, work.path(), &["--registry", s(registry.path()), "audit", "verify", s(&audit)]).ok();
    let replay = medrl(MEDRL, work.path(), &["--registry", s(registry.path()), "rules", "replay", s(&audit), "--all"]).ok();
    assert!(replay.stdout.contains(&format!("replayed {} evaluations", rows.len() * 4)), "{}", replay.stdout);

    // A failed judge evaluation follows `on_error`: here every sample is judged, the judge's
    // prompt limit is lifted, and one answer is too long for the tiny model's 2048 positions.
    // The other sample is one the first run judged: another process gives it the same score.
    let params =
        format!("weight = 0.2\nshare = 1.0\non_error = \"skip_sample\"\nparams = {{ model = \"{}\", max_response_chars = 1000000 }}", s(&model));
    publish_judged(registry.path(), &installed, "llm-judge", "judged", "1.1.0", &params);
    let first_judged = selected.iter().position(|&b| b).unwrap();
    let mut long = vec![rows[first_judged].clone(), rows[0].clone()];
    long[1]["id"] = Value::String("too-long".into());
    long[1]["response"] = Value::String("请立即拨打120。".repeat(2000));
    let long_input = work.path().join("long.jsonl");
    medrl_tests::write_jsonl(&long_input, &long);
    let scored = score_json(registry.path(), "judged@1.1.0", &long_input, &work.path().join("long-audit.jsonl"));
    assert_eq!(scored[0]["reward"]["status"], "scored", "{}", scored[0]);
    assert_eq!(scored[0]["rules"][4]["output"], judged[first_judged]["rules"][4]["output"], "the same sample, the same judge score");
    assert_eq!(scored[1]["rules"][4]["outcome"], "rule_error", "{}", scored[1]);
    assert!(scored[1]["rules"][4]["error"].as_str().unwrap().contains("2048 positions"), "{}", scored[1]);
    assert_eq!(scored[1]["reward"], serde_json::json!({"status": "skipped", "rule": "llm-judge"}));
}

#[test]
fn a_changed_library_is_refused_before_it_is_loaded() {
    let work = tempfile::tempdir().unwrap();
    let registry = registry_copy();
    let library = built_library(JUDGE_CRATE);
    let params = "weight = 0.2\non_error = \"zero\"\nparams = { model = \"no-model-needed-it-is-never-loaded\" }";
    let installed = publish_judged(registry.path(), &library, "llm-judge", "judged", "1.0.0", params);
    let pinned = sha256_file(&installed);
    let (input, _) = samples(work.path());
    let audit = work.path().join("audit.jsonl");
    let original = std::fs::read(&installed).unwrap();

    // One byte appended (the library would still load), then one byte flipped in the middle.
    let mut appended = original.clone();
    appended.push(0);
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    for changed in [appended, flipped] {
        std::fs::write(&installed, &changed).unwrap();
        let actual = medrl::registry::hash::sha256_hex(&changed);
        let run = medrl(
            MEDRL,
            registry.path(),
            &["--registry", s(registry.path()), "rules", "score", "--ruleset", "judged@1.0.0", "--input", s(&input), "--audit-log", s(&audit)],
        )
        .failed();
        assert!(run.stderr.contains(s(&installed)) && run.stderr.contains(&pinned) && run.stderr.contains(&actual), "{}", run.stderr);
        let verify = medrl(MEDRL, registry.path(), &["--registry", s(registry.path()), "rules", "verify", "judged@1.0.0"]).failed();
        assert!(verify.stdout.contains(&actual), "{}", verify.stdout);
    }

    // The loader itself hashes before it opens: a changed copy under a name of its own is
    // refused, and no library of that name was mapped into this process.
    let copy = work.path().join(format!("{}tampered_judge{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    let mut bytes = original.clone();
    bytes.push(0);
    std::fs::write(&copy, &bytes).unwrap();
    let pin = PinnedLibrary { file: copy.file_name().unwrap().to_string_lossy().into_owned(), sha256: pinned.clone(), size: original.len() as u64 };
    let config = JudgeConfig {
        abi: JUDGE_ABI_VERSION.into(),
        plugin: "llm-judge@0.1.0".into(),
        params: serde_json::json!({"model": "none"}),
        registry_root: "/".into(),
    };
    let err = JudgePlugin::load_pinned(&bytes, &pin, &copy, "the test's pin", &config).unwrap_err();
    assert!(matches!(err, PluginError::HashMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(s(&copy)) && msg.contains(&pinned) && msg.contains(&medrl::registry::hash::sha256_hex(&bytes)), "{msg}");
    if cfg!(target_os = "linux") {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(!maps.contains("tampered_judge"), "the changed library was mapped:\n{maps}");
    }
}

#[test]
fn a_plugin_of_another_abi_version_is_refused_naming_both_versions() {
    let work = tempfile::tempdir().unwrap();
    let registry = registry_copy();
    let library = built_library(OTHER_ABI_CRATE);
    publish_judged(registry.path(), &library, "future-judge", "future", "1.0.0", "weight = 0.2\non_error = \"zero\"");
    let (input, _) = samples(work.path());
    let run = medrl(
        MEDRL,
        registry.path(),
        &[
            "--registry",
            s(registry.path()),
            "rules",
            "score",
            "--ruleset",
            "future@1.0.0",
            "--input",
            s(&input),
            "--audit-log",
            s(&work.path().join("a.jsonl")),
        ],
    )
    .failed();
    assert!(
        run.stderr.contains("is a plugin for ABI medrl-judge/2, but this medrl supports medrl-judge/1")
            && run.stderr.contains("libmedrl_judge_abi_fixture"),
        "{}",
        run.stderr
    );

    // The same through the loader, on the library cargo built.
    let bytes = std::fs::read(&library).unwrap();
    let pin = PinnedLibrary { file: "x".into(), sha256: medrl::registry::hash::sha256_hex(&bytes), size: bytes.len() as u64 };
    let config =
        JudgeConfig { abi: JUDGE_ABI_VERSION.into(), plugin: "future-judge@0.1.0".into(), params: serde_json::json!({}), registry_root: "/".into() };
    match JudgePlugin::load_pinned(&bytes, &pin, &library, "the test's pin", &config) {
        Err(PluginError::AbiMismatch { found, supported, .. }) => assert_eq!((found.as_str(), supported), ("medrl-judge/2", "medrl-judge/1")),
        other => panic!("expected an ABI mismatch, got {other:?}"),
    }
}
