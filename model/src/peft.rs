//! LoRA adapters in PEFT's format: `adapter_config.json` and `adapter_model.safetensors` with
//! PEFT's key names (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), so an
//! adapter trained here loads in Python PEFT and one trained there loads here.
//!
//! PEFT's config has many features; those that change the computation and are not implemented here
//! (DoRA, per-module rank or alpha patterns, trained biases, `modules_to_save`, layer subsets,
//! regex targets) are refused by name rather than silently ignored. Unknown config fields are
//! ignored: newer PEFT versions add fields with neutral defaults.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Tensor};
use serde::Deserialize;
use serde_json::json;

use super::causal_lm::{CausalLm, module_name};
use super::error::{ModelError, Result};
use super::lora::{LoraConfig, LoraLayer, TARGETABLE};
use super::stack::{AdapterRef, STACK_FILE, STACK_FORMAT, StackRecord};

/// The adapter config file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The adapter weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The prefix PEFT puts before the base model's module paths.
pub const PEFT_PREFIX: &str = "base_model.model.";

#[derive(Deserialize)]
struct PeftConfig {
    #[serde(default)]
    peft_type: Option<String>,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    target_modules: serde_json::Value,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    modules_to_save: Option<serde_json::Value>,
    #[serde(default)]
    layers_to_transform: Option<serde_json::Value>,
    #[serde(default)]
    rank_pattern: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    alpha_pattern: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    lora_bias: bool,
    #[serde(default)]
    exclude_modules: Option<serde_json::Value>,
    #[serde(default)]
    layer_replication: Option<serde_json::Value>,
    #[serde(default)]
    target_parameters: Option<serde_json::Value>,
    #[serde(default)]
    trainable_token_indices: Option<serde_json::Value>,
}

fn unsupported(dir: &Path, field: &'static str, value: impl ToString, hint: &'static str) -> ModelError {
    ModelError::AdapterUnsupported { dir: dir.to_path_buf(), field, value: value.to_string(), hint }
}

/// Reads and checks `adapter_config.json` into our [`LoraConfig`].
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(ADAPTER_CONFIG);
    if !path.is_file() {
        return Err(ModelError::MissingFile {
            kind: "adapter",
            dir: dir.to_path_buf(),
            file: ADAPTER_CONFIG.into(),
            hint: "a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors",
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
    let c: PeftConfig = serde_json::from_str(&text).map_err(|source| ModelError::Json { path: path.clone(), what: "PEFT adapter config", source })?;
    if let Some(t) = c.peft_type.as_deref()
        && t != "LORA"
    {
        return Err(unsupported(dir, "peft_type", t, "only LORA adapters are supported"));
    }
    if c.use_dora {
        return Err(unsupported(dir, "use_dora", true, "DoRA is not implemented; train a plain LoRA adapter"));
    }
    if let Some(b) = c.bias.as_deref()
        && b != "none"
    {
        return Err(unsupported(dir, "bias", b, "trained biases are not implemented; use bias = \"none\""));
    }
    if c.fan_in_fan_out {
        return Err(unsupported(dir, "fan_in_fan_out", true, "only nn.Linear-style (out, in) weights are supported"));
    }
    if let Some(m) = c.modules_to_save.as_ref().filter(|m| !m.is_null() && m.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(unsupported(dir, "modules_to_save", m, "fully trained extra modules are not supported"));
    }
    if let Some(l) = c.layers_to_transform.as_ref().filter(|l| !l.is_null()) {
        return Err(unsupported(dir, "layers_to_transform", l, "adapters must cover every layer"));
    }
    if c.lora_bias {
        return Err(unsupported(dir, "lora_bias", true, "a bias on lora_B is not implemented"));
    }
    for (field, v, hint) in [
        ("exclude_modules", &c.exclude_modules, "excluding modules from the targets is not supported"),
        ("layer_replication", &c.layer_replication, "layer replication is not supported"),
        ("target_parameters", &c.target_parameters, "adapting raw parameters is not supported"),
        ("trainable_token_indices", &c.trainable_token_indices, "trainable token embeddings are not supported"),
    ] {
        if let Some(v) = v.as_ref().filter(|v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(unsupported(dir, field, v, hint));
        }
    }
    for (field, pat) in [("rank_pattern", &c.rank_pattern), ("alpha_pattern", &c.alpha_pattern)] {
        if let Some(p) = pat.as_ref().filter(|p| !p.is_empty()) {
            return Err(unsupported(dir, field, serde_json::Value::Object(p.clone()), "per-module ranks and alphas are not supported"));
        }
    }
    let targets: Vec<String> = match &c.target_modules {
        serde_json::Value::String(s) if s == "all-linear" => TARGETABLE.iter().map(|s| s.to_string()).collect(),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| unsupported(dir, "target_modules", &c.target_modules, "target_modules must be a list of module names"))?,
        other => {
            return Err(unsupported(dir, "target_modules", other, "regex targets are not supported; list the module names"));
        }
    };
    for t in &targets {
        if !TARGETABLE.contains(&t.as_str()) {
            return Err(ModelError::AdapterMismatch {
                dir: dir.to_path_buf(),
                reason: format!("target module `{t}` is not a projection of this model; targetable: {}", TARGETABLE.join(", ")),
            });
        }
    }
    let cfg = LoraConfig { r: c.r, alpha: c.lora_alpha, dropout: c.lora_dropout, target_modules: targets, use_rslora: c.use_rslora };
    cfg.validate()?;
    Ok(cfg)
}

impl CausalLm {
    /// Loads a PEFT LoRA adapter and attaches it (trainable: its tensors become the `Var`s).
    pub fn load_adapter(&mut self, dir: &Path) -> Result<()> {
        if self.lora_config().is_some() {
            return Err(ModelError::AdapterAlreadyAttached);
        }
        let cfg = read_adapter_config(dir)?;
        let path = dir.join(ADAPTER_WEIGHTS);
        if !path.is_file() {
            return Err(ModelError::MissingFile {
                kind: "adapter",
                dir: dir.to_path_buf(),
                file: ADAPTER_WEIGHTS.into(),
                hint: "a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors",
            });
        }
        let mut tensors = candle_core::safetensors::load(&path, self.device()).map_err(|e| {
            super::weights::safetensors_error(
                &path,
                e,
                "copy the adapter folder again, or load another checkpoint's adapter (runs/NAME/checkpoints/step-N/adapter) or train it again",
            )
        })?;
        let mismatch = |reason: String| ModelError::AdapterMismatch { dir: dir.to_path_buf(), reason };
        let mut layers = HashMap::new();
        for (stream, (path, lin)) in self.projections().into_iter().enumerate() {
            if !cfg.targets(module_name(&path)) {
                continue;
            }
            let (in_f, out_f) = (lin.base.in_features(), lin.base.out_features());
            let mut take = |which: &str, shape: [usize; 2]| -> Result<Tensor> {
                let key = format!("{PEFT_PREFIX}{path}.{which}.weight");
                let t = tensors
                    .remove(&key)
                    .ok_or_else(|| mismatch(format!("`{key}` is missing, but adapter_config.json targets `{}`", module_name(&path))))?;
                if t.dims() != shape {
                    return Err(mismatch(format!(
                        "`{key}` has shape {:?}, the base model needs {shape:?} (r = {}, {} → {})",
                        t.dims(),
                        cfg.r,
                        in_f,
                        out_f
                    )));
                }
                Ok(t)
            };
            let a = take("lora_A", [cfg.r, in_f])?;
            let b = take("lora_B", [out_f, cfg.r])?;
            layers.insert(path.clone(), LoraLayer::from_tensors(a, b, &cfg, stream as u64)?);
        }
        if let Some(extra) = tensors.keys().collect::<BTreeSet<_>>().into_iter().next() {
            return Err(mismatch(format!(
                "`{extra}` ({} tensor(s) in all) matches no targeted projection of the base model ({} layers; targets {})",
                tensors.len(),
                self.config().num_hidden_layers,
                cfg.target_modules.join(", ")
            )));
        }
        self.set_lora(cfg, layers)?;
        tracing::debug!(dir = %dir.display(), "loaded adapter");
        Ok(())
    }

    /// Writes the attached adapter as a PEFT adapter folder (created if absent).
    /// `base_model_name_or_path` names the model it was trained on: the last adapter merged into
    /// the base (the SFT adapter), else the base. When the base's digest is known
    /// ([`CausalLm::set_base_sha256`], or any merge), `stacked_on.json` records the whole stack
    /// ([`super::stack`]).
    pub fn save_adapter(&self, dir: &Path) -> Result<()> {
        let cfg = self.lora_config().ok_or(ModelError::NoAdapter)?;
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
        let p = self.provenance();
        let trained_on = p.merged.last().map_or_else(|| self.dir().display().to_string(), |a| a.path.clone());
        let stack_path = dir.join(STACK_FILE);
        // An adapter trained over merged ones must say so: the base's digest is taken now if
        // nobody recorded it.
        let base_sha256 = match &p.base_sha256 {
            None if !p.merged.is_empty() => Some(super::digest::model_sha256(self.dir())?),
            known => known.clone(),
        };
        match &base_sha256 {
            Some(sha) => StackRecord {
                format: STACK_FORMAT.into(),
                base_model: self.dir().display().to_string(),
                base_model_sha256: sha.clone(),
                merged: p.merged.clone(),
                initialised_from: p.initialised_from.clone(),
            }
            .write(dir)?,
            // A folder saved over keeps no record of another stack.
            None if stack_path.exists() => std::fs::remove_file(&stack_path).map_err(|source| ModelError::Io { path: stack_path, source })?,
            None => {}
        }
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, var) in self.named_trainable_vars() {
            tensors.insert(name, var.as_tensor().to_dtype(DType::F32)?.contiguous()?);
        }
        candle_core::safetensors::save(&tensors, dir.join(ADAPTER_WEIGHTS))?;
        // PEFT stores lora_alpha as an int; keep integral alphas integral so PEFT reads them as it wrote them.
        let alpha = if cfg.alpha.fract() == 0.0 { json!(cfg.alpha as i64) } else { json!(cfg.alpha) };
        let doc = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": trained_on,
            "r": cfg.r,
            "lora_alpha": alpha,
            "lora_dropout": cfg.dropout,
            "target_modules": cfg.target_modules,
            "use_rslora": cfg.use_rslora,
            "use_dora": false,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null
        });
        let path = dir.join(ADAPTER_CONFIG);
        let text = serde_json::to_string_pretty(&doc).expect("a json! value always serializes");
        std::fs::write(&path, text + "\n").map_err(|source| ModelError::Io { path, source })?;
        Ok(())
    }

    /// Loads a PEFT adapter and merges it into the base weights (an SFT adapter becoming the
    /// base, so that [`super::LoraMode::Off`] is the SFT policy). No adapter stays attached.
    /// The merge is recorded ([`CausalLm::provenance`]): adapters saved afterwards name it.
    pub fn merge_adapter(&mut self, dir: &Path) -> Result<()> {
        let adapter = AdapterRef::of(dir)?;
        self.load_adapter(dir)?;
        self.merge_attached()?;
        self.record_merged(adapter);
        Ok(())
    }
}
