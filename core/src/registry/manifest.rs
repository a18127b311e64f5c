//! `rule.json`: the immutable manifest of one rule version.
//!
//! A manifest pins the module bytes (sha256 and size), carries the rule's default parameters,
//! range, limits and error policy, and records how the module was built. Unknown fields are
//! refused, so a misspelt key never silently falls back to a default.

use super::limits::SandboxLimits;
use crate::reward::outcome::OnError;
use serde::{Deserialize, Serialize};

/// What a rule's score means to the aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Higher is better; weighted with a positive weight.
    Score,
    /// Higher is worse; weighted with a negative weight.
    Penalty,
    /// Used by the rule set's gates only (weight 0).
    Gate,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Score => "score",
            RuleKind::Penalty => "penalty",
            RuleKind::Gate => "gate",
        }
    }
}

/// A file of a rule version, pinned by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedFile {
    /// File name inside the rule version's folder.
    pub file: String,
    pub sha256: String,
    pub size: u64,
}

/// The golden vectors shipped with a rule version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorsRef {
    pub file: String,
    pub sha256: String,
    pub count: usize,
}

/// How the module was built, so an auditor can rebuild it and compare bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildProvenance {
    /// Version of `medrl-sdk` the rule was compiled against.
    pub sdk_version: String,
    /// `rustc -V` of the toolchain that built it.
    pub rustc: String,
    pub target: String,
    /// Cargo profile (`rule`).
    pub profile: String,
    /// Crate folder, relative to its cargo workspace root.
    pub source_path: String,
    /// sha256 over the crate's source files (sorted relative paths and contents).
    pub source_sha256: String,
    /// `git rev-parse HEAD` of the checkout, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    /// Whether the crate folder had uncommitted changes at build time.
    #[serde(default)]
    pub source_dirty: bool,
}

/// One change-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangelogEntry {
    pub version: String,
    pub date: String,
    pub notes: String,
}

/// `rule.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleManifest {
    pub id: String,
    pub version: semver::Version,
    pub kind: RuleKind,
    /// ABI the module speaks (`medrl-rule/1`).
    pub abi: String,
    pub description: String,
    #[serde(default)]
    pub owners: Vec<String>,
    pub module: PinnedFile,
    /// Default parameters, passed to the rule unless a rule set overrides them.
    pub params: serde_json::Value,
    /// Inclusive range every score must fall in.
    pub output_range: [f64; 2],
    #[serde(default)]
    pub limits: SandboxLimits,
    pub on_error: OnError,
    pub build: BuildProvenance,
    pub vectors: VectorsRef,
    #[serde(default)]
    pub changelog: Vec<ChangelogEntry>,
}

impl RuleManifest {
    /// `id@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }

    /// The score `on_error = max_penalty` assigns: the top of the range for a penalty, the bottom otherwise.
    pub fn worst_score(&self) -> f64 {
        match self.kind {
            RuleKind::Penalty => self.output_range[1],
            RuleKind::Score | RuleKind::Gate => self.output_range[0],
        }
    }
}

/// Checks a rule or rule-set id: lowercase ASCII letters, digits and `-`, starting with a letter.
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("chain"));
        assert!(valid_id("drug-dose-2"));
        assert!(!valid_id("Chain"));
        assert!(!valid_id("2chain"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
    }
}
