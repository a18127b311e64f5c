//! Rule builds are reproducible: the committed rule.wasm files were built in the developer's
//! checkout; rebuilding the same sources in a temporary copy (another path) must give the same
//! sha256 for every module.

use crate::MEDRL;
use medrl_tests::{copy_tree, medrl, repo_root};

#[test]
fn committed_modules_match_a_fresh_build_in_another_path() {
    let copy = tempfile::tempdir().unwrap();
    let root = repo_root();
    for entry in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        std::fs::copy(root.join(entry), copy.path().join(entry)).unwrap();
    }
    for dir in ["sdk", "rules-wasm", "plugins", "core", "model", "tests"] {
        copy_tree(&root.join(dir), &copy.path().join(dir));
    }
    let registry = copy.path().join("fresh-registry");
    let rules = ["chain", "emergency", "risk", "verbosity"];
    let mut args = vec!["--registry", registry.to_str().unwrap(), "rules", "build"];
    let dirs: Vec<String> = rules.iter().map(|r| format!("rules-wasm/{r}")).collect();
    args.extend(dirs.iter().map(String::as_str));
    medrl(MEDRL, copy.path(), &args).ok();
    // A rule build reads the workspace's lock file and never writes it (`--locked`).
    assert_eq!(
        std::fs::read(copy.path().join("Cargo.lock")).unwrap(),
        std::fs::read(root.join("Cargo.lock")).unwrap(),
        "building rules changed Cargo.lock"
    );

    for rule in rules {
        let read = |base: &std::path::Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(base.join(format!("rules/{rule}/1.0.0/rule.json"))).unwrap()).unwrap()
        };
        let (committed, fresh) = (read(&root.join("data")), read(&registry));
        assert_eq!(
            committed["module"]["sha256"],
            fresh["module"]["sha256"],
            "{rule}: a fresh build in {} differs from the committed module; rebuild with `medrl rules build` and commit, or find the non-determinism",
            copy.path().display()
        );
        assert_eq!(committed["build"]["source_sha256"], fresh["build"]["source_sha256"], "{rule}: source changed since the module was built");
    }
}
