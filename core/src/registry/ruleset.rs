//! `ruleset.json`: a named, versioned selection of rule versions with weights, parameter
//! overrides and the aggregation, pinned by the sha256 of every manifest and file it uses.

use crate::reward::outcome::OnError;
use serde::{Deserialize, Serialize};

/// One rule in a rule set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEntry {
    pub id: String,
    pub version: semver::Version,
    /// sha256 of the canonical bytes of the rule's `rule.json`.
    pub manifest_sha256: String,
    /// Signed weight: positive for scores, negative for penalties, 0 for gates.
    pub weight: f64,
    /// Top-level keys that replace the manifest's default params.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
}

impl RuleEntry {
    /// The params this rule set puts over the rule's defaults, as the sandbox takes them (`None`
    /// when it sets none).
    pub fn param_overrides(&self) -> Option<serde_json::Value> {
        (!self.params.is_empty()).then(|| serde_json::Value::Object(self.params.clone()))
    }
}

/// A native library pinned by sha256 and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedLibrary {
    /// File name inside `plugins/<id>/<version>/` of the registry (e.g. `libmedrl_llm_judge.so`).
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

/// The LLM judge of a rule set: a native plugin (`medrl-judge/1`, see `docs/judge.md`) that
/// scores a deterministic share of the samples as one more `score` contribution. Optional:
/// rule sets without it are unchanged, byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeEntry {
    pub id: String,
    pub version: semver::Version,
    /// The library, in `plugins/<id>/<version>/`; hashed before it is loaded.
    pub library: PinnedLibrary,
    /// Weight of the judge's score (in [0, 1]) on the samples it judges; counted like a `score`
    /// rule's, so it must be >= 0.
    pub weight: f64,
    /// Share of samples judged, in [0, 1]. Default 0.1 (the plan's 10 %).
    #[serde(default = "default_judge_share")]
    pub share: f64,
    /// Seed of the selection: a sample is judged when the sha256 of the seed and its id falls
    /// in the share, so a replay picks the same samples. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Handed to the plugin as its config `params` (for llm-judge: the model folder, rubric).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// What a failed judge evaluation does to the sample's reward, as for a rule.
    pub on_error: OnError,
}

/// The plan's share of judged rollouts.
pub fn default_judge_share() -> f64 {
    0.1
}

impl JudgeEntry {
    pub fn reference(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

/// Which weights are rescaled when some rules do not apply to a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Renormalize {
    /// Default. The weights of the applicable `score` rules are scaled to sum to the total weight
    /// of all `score` rules, so a prompt without an emergency can still earn full credit;
    /// penalties keep their weights, so no penalty grows because a score rule stepped aside.
    #[default]
    Scores,
    /// Weights are used as written; a rule that does not apply contributes nothing.
    None,
}

/// A gate: when `rule`'s score is at least `at_least`, the total is capped at `cap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub rule: String,
    pub at_least: f64,
    pub cap: f64,
}

/// How rule scores become one reward.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    #[serde(default)]
    pub renormalize: Renormalize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    /// Inclusive clip of the final reward.
    pub clip: [f64; 2],
}

/// A file the rule set depends on, relative to the registry root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// The revision this one replaces, so revisions form a hash chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousRevision {
    pub version: semver::Version,
    pub revision: u64,
    /// sha256 of the canonical bytes of that revision's `ruleset.json`.
    pub sha256: String,
}

/// A recorded approval: who approved this version, in what role, on what date (YYYY-MM-DD).
/// It lies inside `ruleset.json`, so signatures cover it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub role: String,
    pub name: String,
    pub date: String,
}

/// `ruleset.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetManifest {
    pub name: String,
    pub version: semver::Version,
    /// Monotonic across all versions of this name.
    pub revision: u64,
    /// RFC 3339, UTC.
    pub created_at: String,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<RuleEntry>,
    /// The LLM judge, when the rule set has one. Absent from rule sets without a judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeEntry>,
    pub aggregation: Aggregation,
    /// Every file of every rule version used, with its sha256: no extra, no missing file.
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub previous: Option<PreviousRevision>,
    #[serde(default)]
    pub approvals: Vec<Approval>,
}

impl RuleSetManifest {
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// A `name@version` reference, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRef {
    pub name: String,
    pub version: semver::Version,
}

impl std::str::FromStr for VersionRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, version) = s.split_once('@').ok_or_else(|| format!("`{s}` is not NAME@VERSION (for example medical-safety@1.0.0)"))?;
        let version = version.parse().map_err(|e| format!("`{version}` in `{s}` is not an exact semver version ({e}); write e.g. 1.0.0"))?;
        Ok(VersionRef { name: name.to_string(), version })
    }
}

impl std::fmt::Display for VersionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_refs_are_exact() {
        let r: VersionRef = "medical-safety@1.0.0".parse().unwrap();
        assert_eq!((r.name.as_str(), r.version.to_string().as_str()), ("medical-safety", "1.0.0"));
        assert!("medical-safety".parse::<VersionRef>().unwrap_err().contains("NAME@VERSION"));
        assert!("medical-safety@^1".parse::<VersionRef>().unwrap_err().contains("exact semver"));
    }
}
