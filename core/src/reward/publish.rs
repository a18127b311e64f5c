//! Publishing a rule-set version from a small TOML spec: rules by `id@version` with weights and
//! parameter overrides, the aggregation, and approvals. The manifest hashes, file list,
//! revision and previous-revision link are computed, never written by hand.

use super::registry::{RULESET_MANIFEST, Registry, RegistryError, check_weight_sign, read_json};
use super::ruleset::{Aggregation, Approval, PreviousRevision, RuleEntry, RuleSetManifest, VersionRef};
use super::manifest::valid_id;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One rule in a spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecRule {
    pub id: String,
    pub version: semver::Version,
    pub weight: f64,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// The TOML a rule-set author writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetSpec {
    pub name: String,
    pub version: semver::Version,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<SpecRule>,
    pub aggregation: Aggregation,
    #[serde(default)]
    pub approvals: Vec<Approval>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid rule-set spec: {msg}")]
    Spec { path: PathBuf, msg: String },
    #[error("rule set {reference} already exists at {dir}; published versions are immutable: raise `version` in the spec")]
    Exists { reference: String, dir: PathBuf },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl RuleSetSpec {
    pub fn read(path: &Path) -> Result<Self, PublishError> {
        let text = std::fs::read_to_string(path).map_err(|source| PublishError::Io { path: path.into(), source })?;
        let spec: RuleSetSpec = toml::from_str(&text).map_err(|e| PublishError::Spec { path: path.into(), msg: e.to_string() })?;
        if !valid_id(&spec.name) {
            return Err(PublishError::Spec {
                path: path.into(),
                msg: format!("name `{}` must be lowercase letters, digits and `-`", spec.name),
            });
        }
        if spec.rules.is_empty() {
            return Err(PublishError::Spec { path: path.into(), msg: "a rule set needs at least one `[[rules]]` entry".into() });
        }
        let [lo, hi] = spec.aggregation.clip;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(PublishError::Spec { path: path.into(), msg: format!("aggregation.clip [{lo}, {hi}] is not an ordered range") });
        }
        for gate in &spec.aggregation.gates {
            if !spec.rules.iter().any(|r| r.id == gate.rule) {
                return Err(PublishError::Spec { path: path.into(), msg: format!("gate names rule `{}`, which is not in `rules`", gate.rule) });
            }
        }
        Ok(spec)
    }
}

/// Writes `rulesets/<name>/<version>/ruleset.json` for `spec`, verifying every rule it names.
/// `created_at` is RFC 3339 UTC.
pub fn create_ruleset(registry: &Registry, spec: &RuleSetSpec, spec_path: &Path, created_at: String) -> Result<RuleSetManifest, PublishError> {
    let dir = registry.ruleset_dir(&spec.name, &spec.version);
    if dir.exists() {
        return Err(PublishError::Exists { reference: format!("{}@{}", spec.name, spec.version), dir });
    }
    let mut entries = Vec::new();
    let mut rules = Vec::new();
    for r in &spec.rules {
        let rule = registry.load_rule(&VersionRef { name: r.id.clone(), version: r.version.clone() })?;
        check_weight_sign(spec_path, &r.id, rule.manifest.kind, r.weight)?;
        entries.push(RuleEntry {
            id: r.id.clone(),
            version: r.version.clone(),
            manifest_sha256: rule.manifest_sha256.clone(),
            weight: r.weight,
            params: r.params.clone(),
        });
        rules.push(rule);
    }
    // The chain: the highest revision so far of this name, whatever its version.
    let mut previous: Option<PreviousRevision> = None;
    for version in registry.versions("rulesets", &spec.name) {
        let path = registry.ruleset_dir(&spec.name, &version).join(RULESET_MANIFEST);
        let (m, sha) = read_json::<RuleSetManifest>(&path, "rule set manifest")?;
        if previous.as_ref().is_none_or(|p| m.revision > p.revision) {
            previous = Some(PreviousRevision { version, revision: m.revision, sha256: sha });
        }
    }
    let manifest = RuleSetManifest {
        name: spec.name.clone(),
        version: spec.version.clone(),
        revision: previous.as_ref().map_or(1, |p| p.revision + 1),
        created_at,
        description: spec.description.clone(),
        rules: entries,
        aggregation: spec.aggregation.clone(),
        files: registry.file_entries(&rules)?,
        previous,
        approvals: spec.approvals.clone(),
    };
    std::fs::create_dir_all(&dir).map_err(|source| PublishError::Io { path: dir.clone(), source })?;
    let path = dir.join(RULESET_MANIFEST);
    let mut json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
    json.push(b'\n');
    std::fs::write(&path, json).map_err(|source| PublishError::Io { path: path.clone(), source })?;
    Ok(manifest)
}
