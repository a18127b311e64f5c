//! Checkpoint tensors from safetensors: one `model.safetensors`, or shards listed in
//! `model.safetensors.index.json`. Files are memory-mapped; each tensor is converted to the
//! dtype chosen at load and placed on the device when the layer that owns it is built.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::error::{ModelError, Result};

/// Name of the single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The tensors of one checkpoint, read on demand.
pub struct Weights {
    st: MmapedSafetensors,
    files: Vec<PathBuf>,
    device: Device,
    dtype: DType,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: std::collections::HashMap<String, String>,
}

/// The safetensors files of a model folder: the index's shards, or the single file.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| ModelError::Io { path: index.clone(), source })?;
        let idx: ShardIndex =
            serde_json::from_str(&text).map_err(|source| ModelError::Json { path: index.clone(), what: "safetensors shard index", source })?;
        let shards: BTreeSet<&String> = idx.weight_map.values().collect();
        let mut files = Vec::with_capacity(shards.len());
        for shard in shards {
            let path = dir.join(shard);
            if !path.is_file() {
                return Err(ModelError::MissingFile {
                    kind: "model",
                    dir: dir.to_path_buf(),
                    file: shard.clone(),
                    hint: "model.safetensors.index.json lists this shard; copy the complete checkpoint",
                });
            }
            files.push(path);
        }
        return Ok(files);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(ModelError::MissingFile {
        kind: "model",
        dir: dir.to_path_buf(),
        file: SINGLE_FILE.into(),
        hint: "a checkpoint is model.safetensors, or shards listed in model.safetensors.index.json",
    })
}

/// What to do about a checkpoint file that does not open.
const CORRUPT_CHECKPOINT_HINT: &str = "download the checkpoint again (compare its size and sha256 with the source), or for a model made here run `medrl model init` again; check that the folder holds the complete files";

/// The first of `files` that does not open as safetensors, as a [`ModelError`] naming it.
fn corrupt_file(files: &[PathBuf]) -> Option<ModelError> {
    files.iter().find_map(|path| {
        // SAFETY: as in Weights::open.
        let err = unsafe { MmapedSafetensors::new(path) }.err()?;
        Some(safetensors_error(path, err, CORRUPT_CHECKPOINT_HINT))
    })
}

/// A candle error from opening the safetensors file `path`, as a [`ModelError`] naming the file:
/// [`ModelError::CorruptSafetensors`] with `hint` when the bytes are not safetensors (a cut-off
/// download or copy), [`ModelError::Io`] when the file cannot be read.
pub(crate) fn safetensors_error(path: &std::path::Path, err: candle_core::Error, hint: &'static str) -> ModelError {
    // candle wraps the cause in a path, a backtrace or a context.
    let mut inner = err;
    while let candle_core::Error::WithPath { inner: cause, .. }
    | candle_core::Error::WithBacktrace { inner: cause, .. }
    | candle_core::Error::Context { inner: cause, .. } = inner
    {
        inner = *cause;
    }
    match inner {
        candle_core::Error::Io(source) => ModelError::Io { path: path.to_path_buf(), source },
        candle_core::Error::SafeTensor(e) => ModelError::CorruptSafetensors { path: path.to_path_buf(), reason: e.to_string(), hint },
        other => other.into(),
    }
}

impl Weights {
    /// Memory-maps the given safetensors files.
    pub fn open(files: Vec<PathBuf>, device: &Device, dtype: DType) -> Result<Self> {
        // SAFETY: the files are mapped read-only; like every safetensors reader we assume nobody
        // truncates a checkpoint while it is being loaded.
        let st = match unsafe { MmapedSafetensors::multi(&files) } {
            Ok(st) => st,
            // candle's message names no file: find the one that does not open, and say what to do.
            Err(e) => return Err(corrupt_file(&files).unwrap_or(e.into())),
        };
        Ok(Weights { st, files, device: device.clone(), dtype })
    }

    /// Opens the checkpoint of a model folder.
    pub fn from_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::open(checkpoint_files(dir)?, device, dtype)
    }

    /// The dtype every tensor is converted to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device tensors are placed on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the checkpoint holds a tensor of that name.
    pub fn contains(&self, name: &str) -> bool {
        self.st.get(name).is_ok()
    }

    /// The element type `name` is stored in (before the load's conversion).
    pub fn stored_dtype(&self, name: &str) -> Result<DType> {
        let view = self.st.get(name).map_err(|_| ModelError::MissingTensor {
            name: name.to_string(),
            files: self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
        })?;
        Ok(DType::try_from(view.dtype())?)
    }

    /// The tensor `name`, checked against `shape`, in the load dtype on the load device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let view = self.st.get(name).map_err(|_| ModelError::MissingTensor {
            name: name.to_string(),
            files: self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
        })?;
        if view.shape() != shape {
            return Err(ModelError::TensorShape { name: name.to_string(), expected: shape.to_vec(), found: view.shape().to_vec() });
        }
        let t = self.st.load(name, &self.device)?;
        Ok(t.to_dtype(self.dtype)?)
    }
}
