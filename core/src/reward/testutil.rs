//! Test helpers: rule modules written in WAT, and in-memory manifests for them.

use super::outcome::OnError;
use crate::registry::limits::SandboxLimits;
use crate::registry::manifest::{BuildProvenance, PinnedFile, RuleKind, RuleManifest, VectorsRef};
use crate::registry::store::VerifiedRule;

/// A `medrl-rule/1` module whose `medrl_evaluate` has the given body; `data` is placed at
/// address 16 (so the body can return `(16 << 32) | len`).
pub fn wat_rule(evaluate_body: &str, data: &str, extra: &str) -> Vec<u8> {
    wat_rule_with(evaluate_body, data, extra, "i64.const 0")
}

/// Like [`wat_rule`], with the body of `medrl_prepare` too (`i64.const 0` means ready).
pub fn wat_rule_with(evaluate_body: &str, data: &str, extra: &str, prepare_body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
  {extra}
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 4096))
  (func (export "medrl_alloc") (param $len i32) (result i32) (local $p i32)
    global.get $bump
    local.set $p
    global.get $bump
    local.get $len
    i32.add
    global.set $bump
    local.get $p)
  (data (i32.const 16) "{data}")
  (func (export "medrl_prepare") (param i32 i32) (result i64)
    {prepare_body})
  (func (export "medrl_evaluate") (param i32 i32) (result i64)
    {evaluate_body})
  (@custom "medrl:abi" "medrl-rule/1"))"#
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad WAT: {e}\n{text}"))
}

/// A body that returns the `len` bytes of data at address 16.
pub fn return_data(len: usize) -> String {
    format!("i64.const {}", (16i64 << 32) | len as i64)
}

/// A well-behaved module that always returns `json`.
pub fn constant_rule(json: &str) -> Vec<u8> {
    let escaped = json.replace('\\', "\\\\").replace('"', "\\\"");
    wat_rule(&return_data(json.len()), &escaped, "")
}

pub fn manifest(id: &str, kind: RuleKind, on_error: OnError, limits: SandboxLimits, module: &[u8]) -> RuleManifest {
    RuleManifest {
        id: id.into(),
        version: "1.0.0".parse().unwrap(),
        kind,
        abi: medrl_sdk::ABI_VERSION.into(),
        description: format!("test rule {id}"),
        owners: vec![],
        module: PinnedFile { file: "rule.wasm".into(), sha256: crate::registry::hash::sha256_hex(module), size: module.len() as u64 },
        params: serde_json::json!({}),
        output_range: [0.0, 1.0],
        limits,
        on_error,
        build: BuildProvenance {
            sdk_version: "0".into(),
            rustc: "wat".into(),
            target: "wasm32-unknown-unknown".into(),
            profile: "test".into(),
            source_path: "inline".into(),
            source_sha256: String::new(),
            source_commit: None,
            source_dirty: false,
        },
        vectors: VectorsRef { file: "vectors.jsonl".into(), sha256: String::new(), count: 0 },
        changelog: vec![],
    }
}

pub fn verified(id: &str, kind: RuleKind, on_error: OnError, limits: SandboxLimits, module: Vec<u8>) -> VerifiedRule {
    VerifiedRule {
        manifest: manifest(id, kind, on_error, limits, &module),
        manifest_sha256: format!("sha-of-{id}"),
        module,
        dir: std::path::PathBuf::from("inline"),
    }
}

pub fn sample(id: &str) -> medrl_sdk::Sample {
    serde_json::from_value(serde_json::json!({
        "id": id, "prompt": "胸口痛", "response": "请立即拨打120。", "lang": "zh",
        "category": "emergency", "risk": "high"
    }))
    .unwrap()
}
