//! Property tests of the parsers whose input an attacker controls: a rule's and a rule set's
//! manifest, the keyring and the trust state. Whatever the bytes, a parser returns a value or an
//! error that names the file, never panics; and any change to a signed rule set's manifest that
//! changes its meaning is refused by a load through the keyring. Cases are bounded (64 each) so
//! the suite stays in seconds on two cores.

use super::store::{RULE_MANIFEST, RULESET_MANIFEST, read_json_canonical};
use super::trust::{Keyring, TrustPolicy, TrustState};
use super::{Registry, RuleManifest, RuleSetManifest, VersionRef};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data")
}

/// A copy of the shipped registry: rules, rule sets and keyring.
fn registry_copy() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let (src, dst) = (e.path(), to.join(e.file_name()));
            if src.is_dir() { copy(&src, &dst) } else { std::fs::copy(&src, &dst).map(|_| ()).unwrap() }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for sub in ["rules", "rulesets", "keys"] {
        copy(&shipped().join(sub), &dir.path().join(sub));
    }
    dir
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() }
}

/// Bytes that look like JSON or TOML often enough to reach past the first character.
fn near_text() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), "[ \\[\\]{}\"=:,.a-z0-9_\\n-]{0,200}".prop_map(String::into_bytes),]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifests_parse_or_refuse_naming_the_file(bytes in near_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = read_json_canonical::<RuleManifest>(&path, "rule manifest") {
            prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        if let Err(e) = read_json_canonical::<RuleSetManifest>(&path, "rule set manifest") {
            prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
    }

    #[test]
    fn keyrings_parse_or_refuse_naming_the_file(bytes in near_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.toml");
        std::fs::write(&path, &bytes).unwrap();
        match Keyring::read(&path) {
            Ok(ring) => prop_assert!(ring.min_signatures >= 1),
            Err(e) => prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}"),
        }
    }

    #[test]
    fn trust_states_parse_or_refuse_naming_the_file(bytes in near_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = TrustState::read(&path) {
            prop_assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
    }

    /// One byte of the shipped, signed `ruleset.json` changed: a load through the registry's own
    /// keyring accepts it only when the canonical JSON (what is signed) is unchanged.
    #[test]
    fn a_changed_byte_of_a_signed_rule_set_is_refused_unless_its_meaning_is_unchanged(at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let reg = registry_copy();
        let path = reg.path().join("rulesets/medical-safety/1.0.0").join(RULESET_MANIFEST);
        let (_, sha, _) = read_json_canonical::<serde_json::Value>(&path, "rule set manifest").unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        std::fs::write(&path, &bytes).unwrap();
        let ring = Keyring::read(&reg.path().join(super::trust::REGISTRY_KEYRING)).unwrap();
        let registry = Registry::new(reg.path()).with_trust(TrustPolicy { keyring: Some(ring), ..TrustPolicy::default() });
        let same_meaning = read_json_canonical::<serde_json::Value>(&path, "rule set manifest").is_ok_and(|(_, s, _)| s == sha);
        let loaded = registry.load_ruleset(&VersionRef { name: "medical-safety".into(), version: "1.0.0".parse().unwrap() });
        prop_assert_eq!(loaded.is_ok(), same_meaning, "byte {} -> {:?}: {:?}", i, to as char, loaded.err().map(|e| e.to_string()));
    }

    /// One byte of a rule's `rule.json`: the rule set pins its canonical sha256 and, in `files`,
    /// its exact bytes, so every change is refused, even one that keeps the meaning.
    #[test]
    fn a_changed_byte_of_a_pinned_rule_manifest_is_always_refused(at in any::<prop::sample::Index>(), to in any::<u8>()) {
        let reg = registry_copy();
        let path = reg.path().join("rules/risk/1.0.0").join(RULE_MANIFEST);
        let mut bytes = std::fs::read(&path).unwrap();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != to);
        bytes[i] = to;
        std::fs::write(&path, &bytes).unwrap();
        let loaded = Registry::integrity_only(reg.path()).load_ruleset(&VersionRef { name: "medical-safety".into(), version: "1.0.0".parse().unwrap() });
        prop_assert!(loaded.is_err(), "byte {} -> {:?} was accepted", i, to as char);
    }
}
