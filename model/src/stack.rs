//! Adapter stacks: what an adapter was trained on, recorded beside it, and checked when it is
//! loaded.
//!
//! An RL adapter trained on a LoRA SFT model is a delta over *base + SFT adapter* (the trainer
//! merges the SFT adapter into the base, so "adapter off" is the SFT policy). Applied to the bare
//! base it computes something nobody trained. So every adapter the trainer saves carries
//! `stacked_on.json` (`medrl-adapter-stack/1`): the base model (its path as given and the sha256
//! of its folder, [`crate::digest::model_sha256`]), the adapters merged into it in order (path
//! and [`crate::digest::adapter_sha256`]), and, for a second round, the adapter the policy
//! started from (provenance only: it is not stacked, the new adapter replaces it).
//!
//! Loading goes through [`plan_stack`]: a different base is refused; the recorded SFT adapters
//! are merged first (from the recorded paths, or from the folders the caller names, which must
//! have the recorded sha256s, in order). An adapter without the file (PEFT's own, or one saved
//! before the file existed) is loaded as the caller says, as before.
//!
//! `adapter_config.json` names, as `base_model_name_or_path`, the model the adapter was trained
//! on: the base, or the last adapter merged into it (the SFT adapter folder).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::adapter_sha256;
use super::error::{ModelError, Result};

/// The file beside `adapter_config.json`.
pub const STACK_FILE: &str = "stacked_on.json";
/// Its format marker.
pub const STACK_FORMAT: &str = "medrl-adapter-stack/1";

/// An adapter folder and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterRef {
    /// The folder, as the run named it (relative paths are relative to where it ran).
    pub path: String,
    /// [`crate::digest::adapter_sha256`] of the folder.
    pub sha256: String,
}

impl AdapterRef {
    /// The reference of the adapter in `dir` (hashes it).
    pub fn of(dir: &Path) -> Result<AdapterRef> {
        Ok(AdapterRef { path: dir.display().to_string(), sha256: adapter_sha256(dir)? })
    }
}

/// `stacked_on.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackRecord {
    /// Always `medrl-adapter-stack/1`.
    pub format: String,
    /// The base model folder, as the run named it.
    pub base_model: String,
    /// [`crate::digest::model_sha256`] of the base model folder.
    pub base_model_sha256: String,
    /// Adapters merged into the base before this one was trained, in merge order (the SFT
    /// adapter); empty when the base itself is the SFT model.
    pub merged: Vec<AdapterRef>,
    /// The adapter the policy started from (round two), for provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialised_from: Option<AdapterRef>,
}

/// What a model was built from, kept on the [`crate::CausalLm`] so that the adapters it saves
/// record it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// sha256 of the base model folder, when known (the trainer sets it; merging computes it).
    pub base_sha256: Option<String>,
    /// Adapters merged into the loaded weights, in order.
    pub merged: Vec<AdapterRef>,
    /// The adapter a second round started from.
    pub initialised_from: Option<AdapterRef>,
}

impl StackRecord {
    /// The record in an adapter folder; `None` when the folder has none.
    pub fn read(dir: &Path) -> Result<Option<StackRecord>> {
        let path = dir.join(STACK_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        let record: StackRecord =
            serde_json::from_str(&text).map_err(|source| ModelError::Json { path: path.clone(), what: "adapter stack record", source })?;
        if record.format != STACK_FORMAT {
            return Err(ModelError::Stack(format!("{} has format `{}`; this medrl reads `{STACK_FORMAT}`", path.display(), record.format)));
        }
        Ok(Some(record))
    }

    /// Writes the record into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STACK_FILE);
        let text = serde_json::to_string_pretty(self).expect("plain data") + "\n";
        std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })
    }
}

/// The adapters to merge into the base at `base_dir` (digest `base_sha256`) before `adapter` is
/// applied, checked against the adapter's [`StackRecord`]:
/// - no record: `given`, as before (PEFT adapters, adapters saved before records existed);
/// - a record whose base sha256 differs: refused (the adapter was trained on another model);
/// - `given` empty: the recorded adapters, each found at its recorded path with its sha256;
/// - `given` not empty: they must be the recorded adapters (by sha256, in order).
pub fn plan_stack(base_dir: &Path, base_sha256: &str, given: &[&Path], adapter: &Path) -> Result<Vec<PathBuf>> {
    let Some(record) = StackRecord::read(adapter)? else {
        return Ok(given.iter().map(|p| p.to_path_buf()).collect());
    };
    let short = |s: &str| s.chars().take(16).collect::<String>();
    if record.base_model_sha256 != base_sha256 {
        return Err(ModelError::Stack(format!(
            "adapter {} was trained on the base model {} (sha256 {}…), not on {} (sha256 {}…); pass that model as --model",
            adapter.display(),
            record.base_model,
            short(&record.base_model_sha256),
            base_dir.display(),
            short(base_sha256)
        )));
    }
    let listing = |refs: &[AdapterRef]| -> String {
        if refs.is_empty() {
            return "none".into();
        }
        refs.iter().map(|r| format!("{} (sha256 {}…)", r.path, short(&r.sha256))).collect::<Vec<_>>().join(", ")
    };
    if given.is_empty() {
        let mut out = Vec::with_capacity(record.merged.len());
        for r in &record.merged {
            let dir = PathBuf::from(&r.path);
            if !dir.join(super::peft::ADAPTER_CONFIG).is_file() {
                return Err(ModelError::Stack(format!(
                    "adapter {} was trained on {} with the SFT adapter {} (sha256 {}…) merged into it, and that folder is not there; pass the SFT adapter with --merge DIR",
                    adapter.display(),
                    record.base_model,
                    r.path,
                    short(&r.sha256)
                )));
            }
            let found = adapter_sha256(&dir)?;
            if found != r.sha256 {
                return Err(ModelError::Stack(format!(
                    "adapter {} was trained on top of the SFT adapter {} with sha256 {}…, but that folder now has sha256 {}…; pass the original SFT adapter with --merge DIR",
                    adapter.display(),
                    r.path,
                    short(&r.sha256),
                    short(&found)
                )));
            }
            out.push(dir);
        }
        return Ok(out);
    }
    let given_refs = given.iter().map(|p| AdapterRef::of(p)).collect::<Result<Vec<_>>>()?;
    let same = given_refs.len() == record.merged.len() && given_refs.iter().zip(&record.merged).all(|(g, r)| g.sha256 == r.sha256);
    if !same {
        return Err(ModelError::Stack(format!(
            "adapter {} was trained with these adapters merged into its base: {}; --merge gave {}; pass exactly the recorded adapters, in order (or no --merge to use the recorded paths)",
            adapter.display(),
            listing(&record.merged),
            listing(&given_refs)
        )));
    }
    Ok(given.iter().map(|p| p.to_path_buf()).collect())
}
