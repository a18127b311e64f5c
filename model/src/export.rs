//! Merged exports: a base model with every adapter of its stack folded into the weights, written
//! as a Hugging Face model folder that transformers loads with `from_pretrained` (no PEFT, no
//! medrl).
//!
//! The stack is resolved as every loader resolves it ([`super::stack::plan_stack`]): the adapters
//! the top adapter was trained over are merged first, then the top adapter. Merging is
//! `W + s·B·A` in f32 ([`CausalLm::merge_attached`]); the weights are then saved in the base
//! checkpoint's own dtype unless asked otherwise. The folder holds `config.json` (its
//! `torch_dtype` set to the saved dtype), `model.safetensors` (`{"format": "pt"}` metadata), every
//! other file of the base folder (tokenizer, chat template, generation config) unchanged, and
//! `medrl_export.json`: what went in, with digests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::causal_lm::CausalLm;
use super::digest::model_sha256;
use super::error::{ModelError, Result};
use super::stack::{AdapterRef, plan_stack};
use super::weights::{SINGLE_FILE, Weights};

/// The provenance file of an export.
pub const EXPORT_FILE: &str = "medrl_export.json";
/// Its format marker.
pub const EXPORT_FORMAT: &str = "medrl-export/1";

/// `medrl_export.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRecord {
    /// Always `medrl-export/1`.
    pub format: String,
    pub base_model: String,
    pub base_model_sha256: String,
    /// Every adapter folded in, in merge order (SFT first, the top adapter last).
    pub merged: Vec<AdapterRef>,
    /// `float32`, `bfloat16` or `float16`.
    pub torch_dtype: String,
}

/// The Hugging Face name of a dtype (`torch_dtype` in config.json).
pub fn torch_dtype_name(dtype: DType) -> Result<&'static str> {
    match dtype {
        DType::F32 => Ok("float32"),
        DType::BF16 => Ok("bfloat16"),
        DType::F16 => Ok("float16"),
        other => Err(ModelError::Export(format!("cannot save weights as {other:?}; use f32, bf16 or f16"))),
    }
}

impl CausalLm {
    /// Every weight of the frozen model under its checkpoint name
    /// (`model.layers.0.self_attn.q_proj.weight`), merged adapters included; refused while an
    /// adapter is attached (merge it first) or under full fine-tuning ([`Self::save_full`]).
    pub fn named_weights(&self) -> Result<Vec<(String, Tensor)>> {
        if self.lora_config().is_some() {
            return Err(ModelError::Export("an adapter is attached; merge it into the weights first (merge_attached)".into()));
        }
        if self.is_unfrozen() {
            return Err(ModelError::Export("the model is being fully fine-tuned; save it with save_full".into()));
        }
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.model.embed_tokens.clone())];
        for (i, layer) in self.model.layers.iter().enumerate() {
            for (name, lin) in layer.linears() {
                out.push((format!("model.layers.{i}.{name}.weight"), lin.base.weight().clone()));
                if let Some(b) = lin.base.bias() {
                    out.push((format!("model.layers.{i}.{name}.bias"), b.clone()));
                }
            }
            out.push((format!("model.layers.{i}.input_layernorm.weight"), layer.input_layernorm.weight().clone()));
            out.push((format!("model.layers.{i}.post_attention_layernorm.weight"), layer.post_attention_layernorm.weight().clone()));
        }
        out.push(("model.norm.weight".to_string(), self.model.norm.weight().clone()));
        if !self.head_is_tied() {
            out.push(("lm_head.weight".to_string(), self.lm_head.weight().clone()));
        }
        Ok(out)
    }
}

/// Writes `tensors` (cast to `dtype`) as `model.safetensors` in `dir`, with every other regular
/// file of the model folder `base` copied unchanged (a sharded base becomes one file).
pub(crate) fn write_model_folder(base: &Path, dir: &Path, tensors: Vec<(String, Tensor)>, dtype: DType) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for entry in std::fs::read_dir(base).map_err(io(base))? {
        let entry = entry.map_err(io(base))?;
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        if name_s.ends_with(".safetensors") || name_s.ends_with(".safetensors.index.json") || !entry.path().is_file() {
            continue;
        }
        std::fs::copy(entry.path(), dir.join(&name)).map_err(io(&entry.path()))?;
    }
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().map(|(n, t)| Ok((n, t.to_dtype(dtype)?.contiguous()?))).collect::<Result<_>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let path = dir.join(SINGLE_FILE);
    let bytes = safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
        .map_err(|e| ModelError::Export(format!("cannot serialise {}: {e}", path.display())))?;
    std::fs::write(&path, bytes).map_err(io(&path))
}

/// What [`export_merged`] wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub dir: PathBuf,
    pub record: ExportRecord,
    /// Tensors in `model.safetensors`.
    pub tensors: usize,
    /// [`model_sha256`] of the written folder.
    pub model_sha256: String,
}

/// Folds `adapter` and the adapters it was trained over (`merge`, checked against its
/// `stacked_on.json`, or the recorded ones) into the base at `base`, and writes the result to
/// `out`, which must not exist or be empty. `dtype`: the saved element type (default: the base
/// checkpoint's).
pub fn export_merged(base: &Path, merge: &[&Path], adapter: Option<&Path>, out: &Path, dtype: Option<DType>) -> Result<ExportSummary> {
    if out.exists() && std::fs::read_dir(out).map_err(|source| ModelError::Io { path: out.into(), source })?.next().is_some() {
        return Err(ModelError::Export(format!("{} is not empty; choose a new folder for the merged model", out.display())));
    }
    if adapter.is_none() && merge.is_empty() {
        return Err(ModelError::Export("nothing to merge: pass --adapter DIR (and --merge DIR for an SFT adapter under it)".into()));
    }
    let base_sha256 = model_sha256(base)?;
    let planned = match adapter {
        Some(a) => plan_stack(base, &base_sha256, merge, a)?,
        None => merge.iter().map(|p| p.to_path_buf()).collect(),
    };
    let stored = Weights::from_dir(base, &Device::Cpu, DType::F32)?.stored_dtype("model.norm.weight")?;
    let dtype = dtype.unwrap_or(stored);
    let dtype_name = torch_dtype_name(dtype)?;
    // Merged in f32 on the CPU whatever the checkpoint's dtype: a bf16 merge would round each
    // delta into the base before the sum.
    let mut model = CausalLm::load(base, &Device::Cpu, DType::F32)?;
    model.set_base_sha256(base_sha256.clone());
    for dir in planned.iter().map(PathBuf::as_path).chain(adapter) {
        model.merge_adapter(dir)?;
    }
    let tensors = model.named_weights()?;
    let count = tensors.len();
    write_model_folder(base, out, tensors, dtype)?;
    // config.json says which dtype the weights are in (transformers' default for `torch_dtype="auto"`).
    let config_path = out.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|source| ModelError::Io { path: config_path.clone(), source })?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json { path: config_path.clone(), what: "model config", source })?;
    config["torch_dtype"] = serde_json::Value::from(dtype_name);
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).expect("plain data") + "\n")
        .map_err(|source| ModelError::Io { path: config_path, source })?;
    let record = ExportRecord {
        format: EXPORT_FORMAT.into(),
        base_model: base.display().to_string(),
        base_model_sha256: base_sha256,
        merged: model.provenance().merged.clone(),
        torch_dtype: dtype_name.into(),
    };
    let path = out.join(EXPORT_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&record).expect("plain data") + "\n").map_err(|source| ModelError::Io { path, source })?;
    Ok(ExportSummary { dir: out.to_path_buf(), tensors: count, model_sha256: model_sha256(out)?, record })
}
