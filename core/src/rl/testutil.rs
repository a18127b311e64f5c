//! Test fixtures for the trainer: a toy rule set whose single WebAssembly rule rewards one
//! character, in a temporary registry, and a small prompt file.

use crate::governance::publish::{RuleSetSpec, create_ruleset};
use crate::registry::Registry;
use crate::registry::hash::sha256_hex;
use crate::registry::limits::SandboxLimits;
use crate::registry::manifest::RuleKind;
use crate::reward::outcome::OnError;
use std::path::{Path, PathBuf};

/// A `medrl-rule/1` module scoring the share of the response's bytes equal to `target`, to three
/// decimals (`{"score":0.123,…}`). It finds the `"response":"` key in the sample JSON, counts until
/// the closing quote (an escape counts as one byte), and writes its output at address 2048.
pub fn toy_rule_wasm(target: u8) -> Vec<u8> {
    let key = r#"\22response\22:\22"#; // "response":"  (12 bytes)
    let prefix = r#"{\22score\22:"#; // {"score":  (9 bytes)
    let suffix = r#",\22applicable\22:true,\22hits\22:[],\22explanation\22:\22toy\22}"#; // 49 bytes
    let text = format!(
        r#"(module
  (memory (export "memory") 2)
  (data (i32.const 16) "{key}")
  (data (i32.const 64) "{prefix}")
  (data (i32.const 128) "{suffix}")
  (func (export "medrl_alloc") (param $len i32) (result i32) i32.const 4096)
  (func (export "medrl_prepare") (param i32 i32) (result i64) i64.const 0)
  (func $at_key (param $p i32) (result i32) (local $k i32)
    (block $no
      (loop $l
        (br_if $no (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $k))) (i32.load8_u (i32.add (i32.const 16) (local.get $k)))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br_if $l (i32.lt_u (local.get $k) (i32.const 12))))
      (return (i32.const 1)))
    i32.const 0)
  (func $copy (param $dst i32) (param $src i32) (param $n i32)
    (memory.copy (local.get $dst) (local.get $src) (local.get $n)))
  (func (export "medrl_evaluate") (param $p i32) (param $n i32) (result i64)
    (local $i i32) (local $end i32) (local $c i32) (local $count i32) (local $len i32) (local $milli i32) (local $o i32)
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (local.set $i (local.get $p))
    (block $found
      (loop $search
        (br_if $found (call $at_key (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $search (i32.lt_u (i32.add (local.get $i) (i32.const 12)) (local.get $end)))))
    (local.set $i (i32.add (local.get $i) (i32.const 12)))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $c (i32.load8_u (local.get $i)))
        (br_if $done (i32.eq (local.get $c) (i32.const 34)))
        (if (i32.eq (local.get $c) (i32.const 92)) (then (local.set $i (i32.add (local.get $i) (i32.const 1)))))
        (if (i32.eq (local.get $c) (i32.const {target})) (then (local.set $count (i32.add (local.get $count) (i32.const 1)))))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (if (i32.gt_u (local.get $len) (i32.const 0))
      (then (local.set $milli (i32.div_u (i32.mul (local.get $count) (i32.const 1000)) (local.get $len)))))
    (call $copy (i32.const 2048) (i32.const 64) (i32.const 9))
    (local.set $o (i32.const 2057))
    (i32.store8 (local.get $o) (i32.add (i32.const 48) (i32.div_u (local.get $milli) (i32.const 1000))))
    (i32.store8 (i32.add (local.get $o) (i32.const 1)) (i32.const 46))
    (i32.store8 (i32.add (local.get $o) (i32.const 2)) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $milli) (i32.const 100)) (i32.const 10))))
    (i32.store8 (i32.add (local.get $o) (i32.const 3)) (i32.add (i32.const 48) (i32.rem_u (i32.div_u (local.get $milli) (i32.const 10)) (i32.const 10))))
    (i32.store8 (i32.add (local.get $o) (i32.const 4)) (i32.add (i32.const 48) (i32.rem_u (local.get $milli) (i32.const 10))))
    (call $copy (i32.const 2062) (i32.const 128) (i32.const 49))
    (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 63)))
  (@custom "medrl:abi" "medrl-rule/1"))"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad WAT: {e}\n{text}"))
}

/// A registry in `dir` holding rule `toy@1.0.0` (rewarding `target`) and rule set `toy@1.0.0`,
/// signed by a fresh key in the registry's own keyring (`keys/keyring.toml`), as a real one is.
pub fn toy_registry(dir: &Path, target: u8) -> Registry {
    let module = toy_rule_wasm(target);
    let rule_dir = dir.join("rules/toy/1.0.0");
    std::fs::create_dir_all(&rule_dir).unwrap();
    std::fs::write(rule_dir.join("rule.wasm"), &module).unwrap();
    std::fs::write(rule_dir.join("vectors.jsonl"), "").unwrap();
    let mut manifest = crate::reward::testutil::manifest("toy", RuleKind::Score, OnError::Zero, SandboxLimits::default(), &module);
    manifest.vectors.sha256 = sha256_hex(b"");
    std::fs::write(rule_dir.join("rule.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    std::fs::create_dir_all(dir.join("rulesets")).unwrap();
    let spec_path = dir.join("toy.toml");
    std::fs::write(
        &spec_path,
        "name = \"toy\"\nversion = \"1.0.0\"\n[[rules]]\nid = \"toy\"\nversion = \"1.0.0\"\nweight = 1.0\n[aggregation]\nclip = [0.0, 1.0]\n",
    )
    .unwrap();
    let spec: RuleSetSpec = toml::from_str(&std::fs::read_to_string(&spec_path).unwrap()).unwrap();
    let registry = Registry::integrity_only(dir);
    create_ruleset(&registry, &spec, &spec_path, "2026-12-01T00:00:00Z".into()).unwrap();
    sign_with_registry_key(dir, "toy@1.0.0");
    registry
}

/// Signs rule set `reference` in the registry at `dir` with a fresh key added to the registry's
/// own keyring.
pub fn sign_with_registry_key(dir: &Path, reference: &str) {
    use crate::registry::signing::KeyFile;
    use crate::registry::trust::{Keyring, REGISTRY_KEYRING, TrustedKey};
    let key = KeyFile::generate("test signer", String::new(), String::new()).unwrap();
    let trusted =
        TrustedKey { id: key.key_id.clone(), name: key.name.clone(), public_key: key.public_key.clone(), role: String::new(), added: String::new() };
    Keyring::add_key(&dir.join(REGISTRY_KEYRING), &trusted, 1).unwrap();
    crate::governance::publish::sign_ruleset(dir, &reference.parse().unwrap(), &key, "2026-12-01T00:00:00Z".into()).unwrap();
}

/// The first `n` shipped training prompts, in `dir`.
pub fn prompts(dir: &Path, n: usize) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/rl/training_prompts.jsonl");
    let text: String = std::fs::read_to_string(src).unwrap().lines().take(n).map(|l| format!("{l}\n")).collect();
    let path = dir.join("prompts.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::{RuleSetScorer, Sandbox};

    #[test]
    fn the_toy_rule_scores_the_share_of_its_byte() {
        let dir = tempfile::tempdir().unwrap();
        let registry = toy_registry(dir.path(), b'e');
        let set = registry.load_ruleset(&"toy@1.0.0".parse().unwrap()).unwrap();
        let scorer = RuleSetScorer::new(&Sandbox::new(1).unwrap(), set).unwrap();
        let mut s = crate::reward::testutil::sample("a");
        let cases = [("eeee", 1.0), ("e\"ab", 0.25), ("abc", 0.0), ("", 0.0), ("feed", 0.5)];
        for (response, want) in cases {
            s.response = response.into();
            let got = scorer.score_batch(std::slice::from_ref(&s))[0].reward.total().unwrap();
            assert!((got - want).abs() < 1e-9, "{response:?}: {got} vs {want}");
        }
    }
}
