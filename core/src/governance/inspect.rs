//! What a verified rule set contains, for an auditor: identity, revision chain, approvals,
//! signatures, aggregation, each rule with its hashes and effective parameters, and the pinned
//! files. `medrl rules inspect` prints it as a table or JSON; `rules doc` and `rules diff`
//! build on it.

use crate::registry::hash::json_sha256;
use crate::registry::limits::SandboxLimits;
use crate::registry::manifest::{ChangelogEntry, RuleKind};
use crate::registry::ruleset::{Aggregation, Approval, FileEntry, PreviousRevision};
use crate::registry::signing::SignatureFile;
use crate::registry::store::VerifiedRuleSet;
use crate::registry::trust::{Keyring, TrustError, signature_files};
use crate::reward::outcome::OnError;
use medrl_sdk::vectors::merge_params;
use serde::Serialize;
use std::path::Path;

/// One signature file beside `ruleset.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureInfo {
    pub file: String,
    pub key_id: String,
    pub signer: String,
    pub signed_at: String,
    /// `valid`, `invalid: …`, `untrusted` (key not in the keyring), or `not checked` (no keyring).
    pub status: String,
}

/// One rule as the rule set uses it.
#[derive(Debug, Clone, Serialize)]
pub struct InspectedRule {
    pub id: String,
    pub version: String,
    pub kind: RuleKind,
    pub weight: f64,
    pub description: String,
    pub output_range: [f64; 2],
    pub on_error: OnError,
    pub limits: SandboxLimits,
    pub owners: Vec<String>,
    pub manifest_sha256: String,
    pub module_sha256: String,
    pub module_size: u64,
    /// The rule set's overrides of the manifest's default params (empty: defaults).
    pub overrides: serde_json::Map<String, serde_json::Value>,
    /// The effective params: defaults merged with the overrides.
    pub params: serde_json::Value,
    pub params_sha256: String,
    pub source_path: String,
    pub source_sha256: String,
    pub source_commit: Option<String>,
    pub vectors: usize,
    pub changelog: Vec<ChangelogEntry>,
}

impl InspectedRule {
    /// The rule's declared limits in words, as `rules inspect` and `rules doc` show them to
    /// whoever signs: each is checked against the host's ceilings when the rule loads.
    pub fn limits_words(&self) -> String {
        let l = &self.limits;
        format!(
            "fuel {} per call, memory {} pages ({} MiB), tables {} elements, input {} bytes, output {} bytes, timeout {} ms declared (the host's deadline is a backstop: fuel ends a long evaluation)",
            l.fuel,
            l.memory_pages,
            l.memory_pages / 16,
            l.table_elements,
            l.max_input_bytes,
            l.max_output_bytes,
            l.timeout_ms
        )
    }
}

/// Everything `rules inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub reference: String,
    pub name: String,
    pub version: String,
    pub revision: u64,
    pub sha256: String,
    pub created_at: String,
    pub description: String,
    pub previous: Option<PreviousRevision>,
    pub approvals: Vec<Approval>,
    pub signatures: Vec<SignatureInfo>,
    pub aggregation: Aggregation,
    pub rules: Vec<InspectedRule>,
    /// The LLM judge (a native plugin, not sandboxed) with its library pin; absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<crate::registry::ruleset::JudgeEntry>,
    pub files: Vec<FileEntry>,
}

impl Inspection {
    /// Describes a verified rule set; `dir` is its folder (for the signature files), `keyring`
    /// the one to judge signatures by (`None`: listed as not checked).
    pub fn new(rs: &VerifiedRuleSet, dir: &Path, keyring: Option<&Keyring>) -> Result<Self, TrustError> {
        let m = &rs.manifest;
        let mut canonical = None;
        let mut signatures = Vec::new();
        for path in signature_files(dir)? {
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let info = match SignatureFile::read(&path) {
                Err(e) => {
                    SignatureInfo { file, key_id: String::new(), signer: String::new(), signed_at: String::new(), status: format!("invalid: {e}") }
                }
                Ok(sig) => {
                    let status = match keyring.map(|k| k.get(&sig.key_id)) {
                        None => "not checked".to_string(),
                        Some(None) => "untrusted".to_string(),
                        Some(Some(key)) => {
                            if canonical.is_none() {
                                let path = dir.join(crate::registry::store::RULESET_MANIFEST);
                                let text = std::fs::read_to_string(&path).map_err(|source| TrustError::Io { path: path.clone(), source })?;
                                let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| TrustError::Parse {
                                    path: path.clone(),
                                    what: "rule set manifest",
                                    msg: e.to_string(),
                                })?;
                                canonical = Some(crate::registry::hash::canonical_json(&value));
                            }
                            match sig.verify(&key.public_key, canonical.as_deref().expect("set just above")) {
                                Ok(()) if sig.ruleset_sha256 == rs.sha256 => "valid".to_string(),
                                Ok(()) => "invalid: ruleset_sha256 differs".to_string(),
                                Err(e) => format!("invalid: {e}"),
                            }
                        }
                    };
                    SignatureInfo { file, key_id: sig.key_id.0, signer: sig.signer, signed_at: sig.signed_at, status }
                }
            };
            signatures.push(info);
        }
        let rules = m
            .rules
            .iter()
            .zip(&rs.rules)
            .map(|(entry, rule)| {
                let overrides = entry.param_overrides();
                let params = merge_params(&rule.manifest.params, overrides.as_ref());
                let rm = &rule.manifest;
                InspectedRule {
                    id: rm.id.clone(),
                    version: rm.version.to_string(),
                    kind: rm.kind,
                    weight: entry.weight,
                    description: rm.description.clone(),
                    output_range: rm.output_range,
                    on_error: rm.on_error,
                    limits: rm.limits,
                    owners: rm.owners.clone(),
                    manifest_sha256: rule.manifest_sha256.clone(),
                    module_sha256: rm.module.sha256.clone(),
                    module_size: rm.module.size,
                    overrides: entry.params.clone(),
                    params_sha256: json_sha256(&params),
                    params,
                    source_path: rm.build.source_path.clone(),
                    source_sha256: rm.build.source_sha256.clone(),
                    source_commit: rm.build.source_commit.clone(),
                    vectors: rm.vectors.count,
                    changelog: rm.changelog.clone(),
                }
            })
            .collect();
        Ok(Inspection {
            reference: m.reference(),
            name: m.name.clone(),
            version: m.version.to_string(),
            revision: m.revision,
            sha256: rs.sha256.clone(),
            created_at: m.created_at.clone(),
            description: m.description.clone(),
            previous: m.previous.clone(),
            approvals: m.approvals.clone(),
            signatures,
            aggregation: m.aggregation.clone(),
            rules,
            judge: m.judge.clone(),
            files: m.files.clone(),
        })
    }

    /// The reward formula in words: `R = 0.4·chain + 0.4·emergency − 0.2·risk`.
    pub fn formula(&self) -> String {
        let mut out = String::from("R =");
        for (i, r) in self.rules.iter().enumerate() {
            let (sign, w) = if r.weight < 0.0 { ("−", -r.weight) } else { ("+", r.weight) };
            match (i, sign) {
                (0, "+") => out.push_str(&format!(" {w}·{}", r.id)),
                _ => out.push_str(&format!(" {sign} {w}·{}", r.id)),
            }
        }
        out
    }

    /// Gates and clip in words.
    pub fn aggregation_words(&self) -> Vec<String> {
        let a = &self.aggregation;
        let mut out = vec![match a.renormalize {
            crate::registry::ruleset::Renormalize::Scores => {
                "score weights renormalise over the score rules that apply to a sample; penalties keep their weights".to_string()
            }
            crate::registry::ruleset::Renormalize::None => "weights are used as written; a rule that does not apply contributes nothing".to_string(),
        }];
        for g in &a.gates {
            out.push(format!("gate: when {} scores at least {}, R is capped at {}", g.rule, g.at_least, g.cap));
        }
        out.push(format!("R is clipped to [{}, {}]", a.clip[0], a.clip[1]));
        out
    }
}
