//! The rule author's path with the already built binary: scaffold a fifth rule, build it, add it
//! to a new rule-set version, and score samples with it. No rebuild of medrl anywhere.

use crate::MEDRL;
use medrl_tests::{medrl, registry_copy, repo_root, write_jsonl};
use serde_json::json;

#[test]
fn scaffold_build_publish_and_score_a_fifth_rule() {
    let work = tempfile::tempdir().unwrap();
    let reg = registry_copy();
    let reg_arg = reg.path().to_str().unwrap();
    let crate_dir = work.path().join("referral");
    let sdk = repo_root().join("sdk");

    let run = medrl(MEDRL, work.path(), &["rules", "new", "referral", "--dir", crate_dir.to_str().unwrap(), "--sdk", sdk.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("created rule `referral`"), "{}", run.stdout);

    // The scaffold builds, passes its own vectors, and lands in the registry as generated.
    let run = medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "build", crate_dir.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("published referral@0.1.0"), "{}", run.stdout);
    for file in ["rule.json", "rule.wasm", "vectors.jsonl"] {
        assert!(reg.path().join("rules/referral/0.1.0").join(file).is_file(), "{file}");
    }
    // Building the same source again changes nothing; versions are immutable.
    let again = medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "build", crate_dir.to_str().unwrap()]).ok();
    assert!(again.stdout.contains("unchanged referral@0.1.0"), "{}", again.stdout);

    // A new rule-set version with the fifth rule, chained to 1.0.0.
    let spec = work.path().join("medical-safety-1.1.0.toml");
    let base = std::fs::read_to_string(repo_root().join("data/ruleset-specs/medical-safety-1.0.0.toml")).unwrap();
    let spec_text = base.replace("version = \"1.0.0\"\ndescription", "version = \"1.1.0\"\ndescription")
        + "\n[[rules]]\nid = \"referral\"\nversion = \"0.1.0\"\nweight = 0.2\n[rules.params]\nkeywords_zh = [\"医生\", \"医院\"]\n";
    assert!(spec_text.contains("version = \"1.1.0\""));
    std::fs::write(&spec, spec_text).unwrap();
    let run = medrl(
        MEDRL,
        work.path(),
        &["--registry", reg_arg, "rules", "ruleset", "new", spec.to_str().unwrap(), "--created-at", "2026-11-26T00:00:00Z"],
    )
    .ok();
    assert!(run.stdout.contains("published rule set medical-safety@1.1.0 (revision 2, 5 rules, 15 pinned files)"), "{}", run.stdout);
    // Unsigned, it is refused by every command that would score with it; the registry's keyring
    // trusts the demo key, so a signature by it lets it through.
    let demo = repo_root().join("data/keys/DEMO-ONLY-medrl-demo.key");
    medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "sign", "medical-safety@1.1.0", "--key", demo.to_str().unwrap()]).ok();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.path().join("rulesets/medical-safety/1.1.0/ruleset.json")).unwrap()).unwrap();
    assert_eq!(manifest["previous"]["version"], "1.0.0");
    assert_eq!(manifest["previous"]["revision"], 1);

    // Score with it: the fifth rule runs with the rule set's parameter override.
    let input = work.path().join("samples.jsonl");
    let sample = |id: &str, lang: &str, response: &str| json!({"id": id, "prompt": "头痛三天", "response": response, "lang": lang, "category": "general", "risk": "low"});
    write_jsonl(
        &input,
        &[
            sample("mentions-hospital", "zh", "【分析】头痛持续三天。【建议】请去医院看看。"),
            sample("mentions-nothing", "zh", "多喝水，好好休息。"),
            sample("en-doctor", "en", "Please see a doctor if it gets worse."),
        ],
    );
    let run = medrl(
        MEDRL,
        work.path(),
        &["--registry", reg_arg, "rules", "score", "--ruleset", "medical-safety@1.1.0", "--input", input.to_str().unwrap(), "--json"],
    )
    .ok();
    let rows: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let referral = |row: &serde_json::Value| {
        row["rules"].as_array().unwrap().iter().find(|r| r["rule"] == "referral@0.1.0").cloned().expect("the fifth rule ran")
    };
    assert_eq!(rows.len(), 3);
    assert_eq!(referral(&rows[0])["output"]["score"], 1.0, "override keyword 医院 matched: {}", rows[0]);
    assert_eq!(referral(&rows[1])["output"]["score"], 0.0);
    assert_eq!(referral(&rows[2])["output"]["score"], 1.0);
    assert!(rows.iter().all(|r| r["rules"].as_array().unwrap().len() == 5));
}

#[test]
fn a_rule_whose_vectors_fail_is_not_published() {
    let work = tempfile::tempdir().unwrap();
    let reg = tempfile::tempdir().unwrap();
    let crate_dir = work.path().join("strict");
    let sdk = repo_root().join("sdk");
    medrl(MEDRL, work.path(), &["rules", "new", "strict", "--dir", crate_dir.to_str().unwrap(), "--sdk", sdk.to_str().unwrap()]).ok();
    let vectors = crate_dir.join("vectors.jsonl");
    let text = std::fs::read_to_string(&vectors).unwrap().replace(r#""expect":{"score":0.0"#, r#""expect":{"score":0.5"#);
    std::fs::write(&vectors, text).unwrap();
    let run = medrl(MEDRL, work.path(), &["--registry", reg.path().to_str().unwrap(), "rules", "build", crate_dir.to_str().unwrap()]).failed();
    assert!(run.stderr.contains("1 of 4 golden vectors fail") && run.stderr.contains("en-silent"), "{}", run.stderr);
    assert!(!reg.path().join("rules/strict").exists());
}

/// A penalty rule from `rules new --kind penalty`, a crate of its own: it passes its vectors
/// natively (`cargo test`), `rules build --dry-run` builds and tests it without writing to the
/// registry, and no build touches its lock file; a dependency the lock lacks is refused.
#[test]
fn a_penalty_scaffold_tests_natively_dry_runs_and_builds_without_touching_its_lock() {
    let work = tempfile::tempdir().unwrap();
    let reg = registry_copy();
    let reg_arg = reg.path().to_str().unwrap();
    let crate_dir = work.path().join("promise");
    let dir_arg = crate_dir.to_str().unwrap();
    let sdk = repo_root().join("sdk");
    let run = medrl(MEDRL, work.path(), &["rules", "new", "promise", "--kind", "penalty", "--dir", dir_arg, "--sdk", sdk.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("created rule `promise`") && run.stdout.contains("medrl rules build --dry-run"), "{}", run.stdout);
    let rule_toml = std::fs::read_to_string(crate_dir.join("rule.toml")).unwrap();
    assert!(rule_toml.contains("kind = \"penalty\"") && rule_toml.contains("on_error = \"max_penalty\""), "{rule_toml}");
    let lock = crate_dir.join("Cargo.lock");
    let locked = std::fs::read(&lock).expect("the scaffold locks its dependencies");

    // The native golden-vector test, as the shipped rules have it.
    let test = std::process::Command::new("cargo").args(["test", "--quiet", "--manifest-path"]).arg(crate_dir.join("Cargo.toml")).output().unwrap();
    let out = String::from_utf8_lossy(&test.stdout);
    assert!(test.status.success() && out.contains("test result: ok. 1 passed"), "{out}\n{}", String::from_utf8_lossy(&test.stderr));

    // Dry run: built, validated, vectors and isolation checked; nothing in the registry.
    let dry = medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "build", "--dry-run", dir_arg]).ok();
    assert!(
        dry.stdout.contains("dry run: promise@0.1.0 builds (sha256 ") && dry.stdout.contains("passes its 4 vectors; it would be published to"),
        "{}",
        dry.stdout
    );
    assert!(!reg.path().join("rules/promise").exists(), "a dry run writes nothing in the registry");
    let sha = dry.stdout.split("sha256 ").nth(1).unwrap()[..64].to_string();

    let run = medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "build", dir_arg]).ok();
    assert!(run.stdout.contains("published promise@0.1.0 -> ") && run.stdout.contains(&sha), "the dry run built the same bytes: {}", run.stdout);
    let again = medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "build", "--dry-run", dir_arg]).ok();
    assert!(again.stdout.contains("is already published in") && again.stdout.contains("with these exact bytes"), "{}", again.stdout);
    // Changed source under the same version: the dry run says the build would be refused.
    let lib = crate_dir.join("src/lib.rs");
    std::fs::write(&lib, std::fs::read_to_string(&lib).unwrap().replace("penalty 1\"", "penalty one\"")).unwrap();
    let changed = medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "build", "--dry-run", dir_arg]).ok();
    assert!(changed.stdout.contains("would be REFUSED") && changed.stdout.contains("bump `version`"), "{}", changed.stdout);
    assert_eq!(std::fs::read(&lock).unwrap(), locked, "no build touched Cargo.lock");

    // A dependency the lock file does not have: refused before cargo writes anything.
    let manifest = crate_dir.join("Cargo.toml");
    std::fs::write(&manifest, std::fs::read_to_string(&manifest).unwrap().replace("[dev-dependencies]", "itoa = \"1\"\n\n[dev-dependencies]"))
        .unwrap();
    let refused = medrl(MEDRL, work.path(), &["--registry", reg_arg, "rules", "build", "--dry-run", dir_arg]).failed();
    assert!(
        refused.stderr.contains("does not lock this crate's dependencies as they are now") && refused.stderr.contains("cargo update"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read(&lock).unwrap(), locked, "a refused build did not touch Cargo.lock");
}

/// Inside the workspace, `rules new` adds exactly the new member to Cargo.lock (commit it with
/// the crate); building it then leaves the lock file as it is.
#[test]
fn a_workspace_scaffold_adds_only_itself_to_the_lock_and_its_build_changes_nothing() {
    let copy = tempfile::tempdir().unwrap();
    let root = repo_root();
    for entry in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        std::fs::copy(root.join(entry), copy.path().join(entry)).unwrap();
    }
    for dir in ["sdk", "rules-wasm", "plugins", "core", "model", "tests"] {
        medrl_tests::copy_tree(&root.join(dir), &copy.path().join(dir));
    }
    let before = std::fs::read_to_string(copy.path().join("Cargo.lock")).unwrap();
    medrl(MEDRL, copy.path(), &["rules", "new", "probe", "--kind", "penalty"]).ok();
    let after = std::fs::read_to_string(copy.path().join("Cargo.lock")).unwrap();
    // The one change: a [[package]] block for rule-probe with its dependencies (toml for the native test).
    let added = "[[package]]\nname = \"rule-probe\"\nversion = \"0.1.0\"\ndependencies = [\n \"medrl-sdk\",\n \"serde\",\n \"serde_json\",\n \"toml\",\n]\n\n";
    assert!(after.contains(added), "{after}");
    assert_eq!(after.replacen(added, "", 1), before, "only rule-probe was added to Cargo.lock");
    let registry = copy.path().join("scratch-registry");
    let run = medrl(MEDRL, copy.path(), &["--registry", registry.to_str().unwrap(), "rules", "build", "rules-wasm/probe"]).ok();
    assert!(run.stdout.contains("published probe@0.1.0"), "{}", run.stdout);
    assert_eq!(std::fs::read_to_string(copy.path().join("Cargo.lock")).unwrap(), after, "the build left Cargo.lock as it was");
}
