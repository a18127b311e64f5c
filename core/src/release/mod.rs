//! `medrl release`: the v1.0-rl package of a finished training run, and its verification.
//!
//! A release folder holds everything needed to use, audit and re-verify the trained policy
//! offline (docs/release.md):
//!
//! ```text
//! release.json         what is inside: base model and digests, adapters, rule set (name, version,
//!                      sha256, signers), evaluation summary (medrl-release/1)
//! MODEL_CARD.md        intended use, limits, not for clinical use, metrics with intervals
//! adapter/             the RL adapter, byte for byte as trained (PEFT; stacked_on.json)
//! sft_adapter/         the SFT adapter it was trained over, when the base was LoRA SFT
//! value_head.safetensors
//! model/               config.json, tokenizer and generation files of the base (its weights only
//!                      with --with-base-weights)
//! config.toml          the run's resolved configuration
//! ruleset/             the signed rule set as a registry: rulesets/NAME/VERSION/{ruleset.json,
//!                      *.sig}, every pinned rule file, keys/keyring.toml (the releaser's keyring)
//! eval/                report.json, eval_report.md, plots, the evaluation's run_manifest.json
//! DATA_CARD.md
//! audit/               the run's final run_manifest.json (the audit head) and its signature
//! SHA256SUMS           every other file; SHA256SUMS.sig when a key was given
//! ```
//!
//! Writing fails closed: the run's audit log must verify (chain, every decision and total
//! recomputed, every anchor), the rule set must load with valid signatures and the run's sha256,
//! the adapter stack must match, the output folder must be new or empty; the package is built in
//! a sibling folder and renamed into place, so a refused or failed release leaves nothing.

mod card;
pub mod sums;
mod verify;
mod write;

pub use verify::{ReleaseCheck, verify_release};
pub use write::{ReleaseOptions, ReleaseSummary, write_release};

use crate::model::stack::AdapterRef;
use crate::registry::trust::Signer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `release.json`'s file name and format marker.
pub const RELEASE_FILE: &str = "release.json";
pub const RELEASE_FORMAT: &str = "medrl-release/1";

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The run, its files or the options cannot make a release; the message says why and what to do.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Trust(#[from] crate::registry::trust::TrustError),
    #[error(transparent)]
    Anchor(#[from] crate::governance::anchor::AnchorError),
    #[error(transparent)]
    Audit(#[from] crate::governance::audit::AuditError),
    #[error("the audit log does not verify: {0}")]
    Replay(#[from] crate::governance::replay::ReplayError),
    #[error(transparent)]
    Settings(#[from] crate::training::SettingsError),
}

impl ReleaseError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError + '_ {
        move |source| ReleaseError::Io { path: path.to_path_buf(), source }
    }
}

/// The rule set a release was trained with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetRef {
    pub name: String,
    pub version: String,
    pub revision: u64,
    /// sha256 of the canonical `ruleset.json`.
    pub sha256: String,
    /// The valid signatures by trusted keys when the release was written.
    pub signers: Vec<Signer>,
    /// Where the copy is: `ruleset/` (a registry root).
    pub registry: String,
}

/// The base model of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseModel {
    /// The folder the run was trained on, as it named it.
    pub trained_on: String,
    /// [`crate::model::digest::model_sha256`] of that folder.
    pub sha256: String,
    /// Whether `model/` holds its weights (else config and tokenizer only).
    pub weights_included: bool,
}

/// What the evaluation said, for the release's reader (the numbers are in `eval/report.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSummary {
    pub baseline: String,
    pub candidate: String,
    pub gates_passed: bool,
}

/// `release.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    /// Always `medrl-release/1`.
    pub format: String,
    /// The run's name (`run.name`).
    pub name: String,
    /// The medrl version that wrote it.
    pub medrl_version: String,
    pub created_at: String,
    pub base_model: BaseModel,
    /// The SFT adapter (`sft_adapter/`) the RL adapter was trained over; `None` when the base is
    /// itself the SFT model.
    pub sft_adapter: Option<AdapterRef>,
    /// The RL adapter (`adapter/`).
    pub adapter: AdapterRef,
    /// The adapter a second round started from.
    pub initialised_from: Option<AdapterRef>,
    pub algorithm: String,
    pub steps: u64,
    pub ruleset: RuleSetRef,
    pub eval: Option<EvalSummary>,
}

impl ReleaseManifest {
    pub fn read(dir: &Path) -> Result<Self, ReleaseError> {
        let path = dir.join(RELEASE_FILE);
        let text = std::fs::read_to_string(&path).map_err(ReleaseError::io(&path))?;
        let m: ReleaseManifest =
            serde_json::from_str(&text).map_err(|e| ReleaseError::Invalid(format!("{} is not a release manifest: {e}", path.display())))?;
        if m.format != RELEASE_FORMAT {
            return Err(ReleaseError::Invalid(format!("{} has format {} (expected {RELEASE_FORMAT})", path.display(), m.format)));
        }
        Ok(m)
    }
}
