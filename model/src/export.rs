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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{STACK_FILE, StackRecord};
    use crate::{LoraConfig, LoraMode, position_ids_for};

    fn fixture(family: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/parity").join(family)
    }

    /// The fixture's model folder with tokenizer files (the tiny model's: a model folder needs
    /// them to have a digest; the ids of the fixture batch are all below both vocabularies).
    fn base_with_tokenizer(family: &str, root: &Path) -> PathBuf {
        let dir = root.join(format!("{family}-base"));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture(family).join("model")).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        for f in [crate::tokenizer::TOKENIZER_FILE, crate::tokenizer::TOKENIZER_CONFIG_FILE] {
            std::fs::copy(crate::init::testutil::tiny_model_dir().join(f), dir.join(f)).unwrap();
        }
        dir
    }

    /// The fixture's left-padded batch (0, 2 and 4 positions of padding) and its mask.
    fn batch(family: &str) -> (Tensor, Tensor, Tensor) {
        let t = candle_core::safetensors::load(fixture(family).join("reference.safetensors"), &Device::Cpu).unwrap();
        let ids = t["input_ids"].to_dtype(DType::U32).unwrap();
        let mask = t["attention_mask"].to_dtype(DType::U8).unwrap();
        let pos = position_ids_for(&mask.to_vec2::<u8>().unwrap(), &Device::Cpu).unwrap();
        (ids, mask, pos)
    }

    fn logits(m: &CausalLm, family: &str, lora: LoraMode) -> Tensor {
        let (ids, mask, pos) = batch(family);
        m.forward(&ids, &pos, &mask, None, lora).unwrap()
    }

    /// Max |a − b| over the real (mask = 1) positions.
    fn max_diff_real(a: &Tensor, b: &Tensor, family: &str) -> f32 {
        let (_, mask, _) = batch(family);
        let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(candle_core::D::Minus1).unwrap();
        (a - b).unwrap().abs().unwrap().broadcast_mul(&m).unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let bytes = std::fs::read(dir.join(SINGLE_FILE)).unwrap();
        let mut n: Vec<String> = safetensors::SafeTensors::deserialize(&bytes).unwrap().names().into_iter().map(str::to_string).collect();
        n.sort();
        n
    }

    /// An RL-style adapter trained "over" the fixture's PEFT adapter (the SFT adapter merged into
    /// the base), with seeded non-zero A and B, saved to `dir`.
    fn adapter_over_sft(family: &str, base: &Path, dir: &Path) -> CausalLm {
        let mut m = CausalLm::load(base, &Device::Cpu, DType::F32).unwrap();
        m.merge_adapter(&fixture(family).join("adapter")).unwrap();
        let cfg = LoraConfig {
            r: 2,
            alpha: 4.0,
            dropout: 0.0,
            target_modules: ["q_proj", "o_proj", "up_proj"].map(String::from).to_vec(),
            use_rslora: false,
        };
        m.attach_lora(cfg, 7).unwrap();
        for (k, var) in m.trainable_vars().iter().enumerate() {
            let n = var.as_tensor().elem_count();
            let vals: Vec<f32> = (0..n).map(|j| (((j * 7919 + k * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.4).collect();
            var.set(&Tensor::from_vec(vals, var.as_tensor().shape(), &Device::Cpu).unwrap()).unwrap();
        }
        m.save_adapter(dir).unwrap();
        m
    }

    /// One adapter folded in: the exported folder, loaded as a plain model, computes what the base
    /// with the adapter attached (unmerged, `B·A·x` beside each projection) computes, to 1e-5 at
    /// every real position, for the tied-embedding Qwen2 fixture and the rsLoRA Llama one; its
    /// checkpoint has exactly the base's tensor names and config says its dtype.
    #[test]
    fn a_merged_export_computes_what_base_plus_adapter_computes() {
        for family in ["qwen2", "llama"] {
            let out = tempfile::tempdir().unwrap();
            let dir = out.path().join("merged");
            let base = base_with_tokenizer(family, out.path());
            let adapter = fixture(family).join("adapter");
            let s = export_merged(&base, &[], Some(&adapter), &dir, None).unwrap();
            assert_eq!(s.record.merged.len(), 1);
            assert_eq!(s.record.torch_dtype, "float32");
            let mut unmerged = CausalLm::load(&base, &Device::Cpu, DType::F32).unwrap();
            unmerged.load_adapter(&adapter).unwrap();
            let want = logits(&unmerged, family, LoraMode::On);
            let merged = CausalLm::load(&dir, &Device::Cpu, DType::F32).unwrap();
            let got = logits(&merged, family, LoraMode::Off);
            let diff = max_diff_real(&got, &want, family);
            eprintln!("{family}: max |merged export − base+adapter| = {diff:e}");
            assert!(diff < 1e-5, "{family}: {diff:e}");
            // The adapter moves the logits far more than the tolerance.
            let bare = logits(&CausalLm::load(&base, &Device::Cpu, DType::F32).unwrap(), family, LoraMode::Off);
            assert!(max_diff_real(&bare, &want, family) > 0.1);
            assert_eq!(names(&dir), names(&base), "{family}");
            let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
            assert_eq!(config["torch_dtype"], "float32");
            assert_eq!(std::fs::read(dir.join("generation_config.json")).unwrap(), std::fs::read(base.join("generation_config.json")).unwrap());
            // A second export into the same folder is refused.
            let err = export_merged(&base, &[], Some(&adapter), &dir, None).unwrap_err().to_string();
            assert!(err.contains("is not empty"), "{err}");
        }
    }

    /// An adapter trained over an SFT adapter records it, names it as its base, and a merged
    /// export of the stack (found from the record) equals the stacked, unmerged top adapter.
    #[test]
    fn a_stacked_adapter_records_its_sft_adapter_and_exports_with_it() {
        for family in ["qwen2", "llama"] {
            let out = tempfile::tempdir().unwrap();
            let rl = out.path().join("rl");
            let base = base_with_tokenizer(family, out.path());
            let trained = adapter_over_sft(family, &base, &rl);
            let sft = fixture(family).join("adapter");
            let record = StackRecord::read(&rl).unwrap().expect("the stack is recorded");
            assert_eq!(record.base_model_sha256, crate::digest::model_sha256(&base).unwrap());
            assert_eq!(record.merged.len(), 1);
            assert_eq!(record.merged[0].sha256, crate::digest::adapter_sha256(&sft).unwrap());
            let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(rl.join("adapter_config.json")).unwrap()).unwrap();
            assert_eq!(cfg["base_model_name_or_path"], sft.display().to_string(), "named after the model it was trained on");
            assert!(crate::digest::adapter_sha256(&rl).is_ok());

            let want = logits(&trained, family, LoraMode::On);
            let dir = out.path().join("merged");
            let s = export_merged(&base, &[], Some(&rl), &dir, None).unwrap();
            assert_eq!(
                s.record.merged.iter().map(|a| a.sha256.clone()).collect::<Vec<_>>(),
                vec![record.merged[0].sha256.clone(), crate::digest::adapter_sha256(&rl).unwrap()]
            );
            let got = logits(&CausalLm::load(&dir, &Device::Cpu, DType::F32).unwrap(), family, LoraMode::Off);
            let diff = max_diff_real(&got, &want, family);
            eprintln!("{family}: max |merged export − base+SFT merged+RL adapter| = {diff:e}");
            assert!(diff < 1e-5, "{family}: {diff:e}");
            // The RL adapter alone on the bare base (what predict used to do) is another model.
            let mut wrong = CausalLm::load(&base, &Device::Cpu, DType::F32).unwrap();
            wrong.load_adapter(&rl).unwrap();
            assert!(max_diff_real(&logits(&wrong, family, LoraMode::On), &want, family) > 0.1);
        }
    }

    #[test]
    fn a_stack_that_does_not_match_is_refused_with_the_fix() {
        let out = tempfile::tempdir().unwrap();
        let rl = out.path().join("rl");
        let base = base_with_tokenizer("qwen2", out.path());
        adapter_over_sft("qwen2", &base, &rl);
        let sha = crate::digest::model_sha256(&base).unwrap();
        // Another base.
        let err = plan_stack(&base, &"0".repeat(64), &[], &rl).unwrap_err().to_string();
        assert!(err.contains("was trained on the base model") && err.contains("pass that model as --model"), "{err}");
        // The recorded SFT adapter is found and returned.
        assert_eq!(plan_stack(&base, &sha, &[], &rl).unwrap(), vec![fixture("qwen2").join("adapter")]);
        // Given explicitly: the same adapter is accepted, another one is refused.
        assert_eq!(plan_stack(&base, &sha, &[&fixture("qwen2").join("adapter")], &rl).unwrap().len(), 1);
        let err = plan_stack(&base, &sha, &[&rl], &rl).unwrap_err().to_string();
        assert!(err.contains("--merge gave") && err.contains("pass exactly the recorded adapters"), "{err}");
        // The recorded SFT adapter moved: say so, and how to pass it.
        let mut record = StackRecord::read(&rl).unwrap().unwrap();
        record.merged[0].path = out.path().join("gone").display().to_string();
        record.write(&rl).unwrap();
        let err = plan_stack(&base, &sha, &[], &rl).unwrap_err().to_string();
        assert!(err.contains("is not there; pass the SFT adapter with --merge DIR"), "{err}");
        // An adapter without a record (PEFT's own) is loaded as given.
        assert!(!fixture("qwen2").join("adapter").join(STACK_FILE).exists());
        assert!(plan_stack(&base, &sha, &[], &fixture("qwen2").join("adapter")).unwrap().is_empty());
    }
}
