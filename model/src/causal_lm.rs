//! `CausalLm`: the decoder trunk plus the LM head, the policy the sampler and the trainer use.
//!
//! One forward pass serves every caller: the sampler (last position's logits, with a KV cache),
//! the trainer (logits at every position, no cache, gradients through LoRA only), the value head
//! (final hidden states of the shared trunk) and the KL reference (the same weights with
//! [`LoraMode::Off`]).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use super::config::ModelConfig;
use super::decoder::Decoder;
use super::dense::DenseLinear;
use super::error::{ModelError, Result};
use super::frozen::FrozenLinear;
use super::kv_cache::KvCache;
use super::linear::Linear;
use super::lora::{LoraConfig, LoraLayer, LoraMode};
use super::mask::allowed_keys;
use super::stack::{AdapterRef, Provenance};
use super::weights::Weights;

/// A Qwen2- or Llama-family causal language model with an optional LoRA adapter.
#[derive(Clone, Debug)]
pub struct CausalLm {
    /// The trunk (`model.*`).
    pub model: Decoder,
    /// `lm_head.weight`, or the embedding when `tie_word_embeddings`.
    pub lm_head: FrozenLinear,
    /// The trainable twin of the LM head under full fine-tuning ([`super::full`]); with tied
    /// embeddings it shares the embedding's variable.
    pub(crate) lm_head_full: Option<DenseLinear>,
    tied_head: bool,
    cfg: ModelConfig,
    device: Device,
    dtype: DType,
    dir: PathBuf,
    lora: Option<LoraConfig>,
    /// What the weights were built from (base digest, merged adapters), recorded by the adapters
    /// this model saves ([`super::stack`]).
    provenance: Provenance,
}

/// The default dtype of the frozen weights on a device: bf16 on CUDA, f32 on CPU.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() { DType::BF16 } else { DType::F32 }
}

impl CausalLm {
    /// Loads `config.json` and the safetensors checkpoint of a Hugging Face model folder, with the
    /// frozen weights in `dtype` on `device`.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let cfg = ModelConfig::from_dir(dir)?;
        let w = Weights::from_dir(dir, device, dtype)?;
        Self::from_weights(cfg, &w, dir)
    }

    /// Builds the model from an already opened checkpoint.
    pub fn from_weights(cfg: ModelConfig, w: &Weights, dir: &Path) -> Result<Self> {
        let model = Decoder::new(&cfg, w, "model")?;
        let tied_head = cfg.tie_word_embeddings && !w.contains("lm_head.weight");
        let lm_head = if tied_head {
            FrozenLinear::new(model.embed_tokens.clone(), None)?
        } else {
            FrozenLinear::new(w.get("lm_head.weight", &[cfg.vocab_size, cfg.hidden_size])?, None)?
        };
        tracing::debug!(dir = %dir.display(), layers = cfg.num_hidden_layers, dtype = ?w.dtype(), "loaded model");
        Ok(CausalLm {
            model,
            lm_head,
            device: w.device().clone(),
            dtype: w.dtype(),
            dir: dir.to_path_buf(),
            lora: None,
            provenance: Provenance::default(),
            lm_head_full: None,
            tied_head,
            cfg,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of the frozen weights and of the hidden states.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The folder the base model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the weights were built from: the base's digest when known, the adapters merged in.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Records the base folder's sha256 ([`super::digest::model_sha256`]), so that the adapters
    /// this model saves name the base they were trained on.
    pub fn set_base_sha256(&mut self, sha256: String) {
        self.provenance.base_sha256 = Some(sha256);
    }

    /// Records the adapter a second training round started from (provenance only).
    pub fn set_initialised_from(&mut self, adapter: AdapterRef) {
        self.provenance.initialised_from = Some(adapter);
    }

    pub(crate) fn record_merged(&mut self, adapter: AdapterRef) {
        self.provenance.merged.push(adapter);
    }

    /// The attached adapter's configuration, if any.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// A KV cache sized for this model.
    pub fn new_cache(&self, batch: usize, max_len: usize) -> Result<KvCache> {
        KvCache::new(&self.cfg, batch, max_len, &self.device, self.dtype)
    }

    /// Final-normed hidden states `[b, t, hidden]` (model dtype).
    ///
    /// `input_ids: [b, t]` (u32), `position_ids: [b, t]` (i64 or u32; for left padding, each row
    /// counts from 0 at its first real token), `attention_mask: [b, past + t]` (1 = real token,
    /// `past` = the cache's length). With a cache, the pass's keys and values are appended to it.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        attention_mask: &Tensor,
        cache: Option<&mut KvCache>,
        lora: LoraMode,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2().map_err(|_| ModelError::BadInput(format!("input_ids must be [batch, t], got {:?}", input_ids.dims())))?;
        if !input_ids.dtype().is_int() {
            return Err(ModelError::BadInput(format!("input_ids must be integers, got {:?}", input_ids.dtype())));
        }
        if position_ids.dims() != input_ids.dims() || !position_ids.dtype().is_int() {
            return Err(ModelError::BadInput(format!(
                "position_ids must be integers of shape {:?}, got {:?} {:?}",
                input_ids.dims(),
                position_ids.dtype(),
                position_ids.dims()
            )));
        }
        if t == 0 {
            return Err(ModelError::BadInput("input_ids has no positions".into()));
        }
        let past = match &cache {
            Some(c) => {
                c.check(b, t, self.cfg.num_hidden_layers, self.dtype)?;
                c.len()
            }
            None => 0,
        };
        let allowed = allowed_keys(attention_mask, past, t)?;
        self.model.forward(input_ids, position_ids, &allowed, cache, lora)
    }

    /// Logits `[b, t, vocab]` (f32) of hidden states from [`Self::forward_hidden`].
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = match &self.lm_head_full {
            Some(head) => head.forward(hidden)?,
            None => self.lm_head.forward(hidden)?,
        };
        Ok(logits.to_dtype(DType::F32)?)
    }

    /// Logits `[b, t, vocab]` (f32) at every position: the training and rescoring forward.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        attention_mask: &Tensor,
        cache: Option<&mut KvCache>,
        lora: LoraMode,
    ) -> Result<Tensor> {
        let h = self.forward_hidden(input_ids, position_ids, attention_mask, cache, lora)?;
        self.lm_head(&h)
    }

    /// Logits `[b, vocab]` (f32) of the last position only: the decoding forward. With left
    /// padding the last position is every row's newest token.
    pub fn forward_last(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        attention_mask: &Tensor,
        cache: Option<&mut KvCache>,
        lora: LoraMode,
    ) -> Result<Tensor> {
        let h = self.forward_hidden(input_ids, position_ids, attention_mask, cache, lora)?;
        let t = h.dim(1)?;
        let last = h.narrow(1, t - 1, 1)?;
        Ok(self.lm_head(&last)?.squeeze(1)?)
    }

    /// Every projection with its module path (`model.layers.0.self_attn.q_proj`), in layer order.
    pub fn projections(&self) -> Vec<(String, &Linear)> {
        let mut out = Vec::new();
        for (i, layer) in self.model.layers.iter().enumerate() {
            for (name, lin) in layer.linears() {
                out.push((format!("model.layers.{i}.{name}"), lin));
            }
        }
        out
    }

    /// Whether the LM head is the embedding (`tie_word_embeddings` without an `lm_head.weight`).
    pub(crate) fn head_is_tied(&self) -> bool {
        self.tied_head
    }

    pub(crate) fn projections_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, layer) in self.model.layers.iter_mut().enumerate() {
            for (name, lin) in layer.linears_mut() {
                out.push((format!("model.layers.{i}.{name}"), lin));
            }
        }
        out
    }

    /// Attaches a fresh adapter (A random from `seed`, B zero) to the targeted projections.
    pub fn attach_lora(&mut self, cfg: LoraConfig, seed: u64) -> Result<()> {
        cfg.validate()?;
        if self.lora.is_some() {
            return Err(ModelError::AdapterAlreadyAttached);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let device = self.device.clone();
        for (stream, (path, lin)) in self.projections_mut().into_iter().enumerate() {
            if cfg.targets(module_name(&path)) {
                let (i, o) = (lin.base.in_features(), lin.base.out_features());
                lin.lora = Some(LoraLayer::init(i, o, &cfg, &mut rng, stream as u64, &device)?);
            }
        }
        self.lora = Some(cfg);
        Ok(())
    }

    /// Attaches `lora` layers built elsewhere (the adapter loader), keyed by module path.
    pub(crate) fn set_lora(&mut self, cfg: LoraConfig, mut layers: std::collections::HashMap<String, LoraLayer>) -> Result<()> {
        if self.lora.is_some() {
            return Err(ModelError::AdapterAlreadyAttached);
        }
        for (path, lin) in self.projections_mut() {
            lin.lora = layers.remove(&path);
        }
        self.lora = Some(cfg);
        Ok(())
    }

    /// Adds the attached adapter's `s·B·A` to the base weights and removes it: afterwards
    /// [`LoraMode::Off`] is the adapted policy.
    pub fn merge_attached(&mut self) -> Result<()> {
        if self.lora.is_none() {
            return Err(ModelError::NoAdapter);
        }
        let dtype = self.dtype;
        for (_, lin) in self.projections_mut() {
            if let Some(lora) = lin.lora.take() {
                let w = lin.base.weight().to_dtype(DType::F32)?;
                let merged = (w + lora.delta_weight()?)?.to_dtype(dtype)?;
                lin.base.set_weight(merged)?;
            }
        }
        self.lora = None;
        Ok(())
    }

    /// The adapter's variables with their PEFT names
    /// (`base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), in layer order.
    pub fn named_trainable_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (path, lin) in self.projections() {
            if let Some(l) = &lin.lora {
                out.push((format!("base_model.model.{path}.lora_A.weight"), l.lora_a.clone()));
                out.push((format!("base_model.model.{path}.lora_B.weight"), l.lora_b.clone()));
            }
        }
        out
    }

    /// The adapter's variables (empty without an adapter); everything else is frozen.
    pub fn trainable_vars(&self) -> Vec<Var> {
        self.named_trainable_vars().into_iter().map(|(_, v)| v).collect()
    }

    /// Every frozen tensor of the base model (for checks that no gradient reaches them).
    pub fn frozen_tensors(&self) -> Vec<Tensor> {
        let mut out = vec![self.model.embed_tokens.clone(), self.lm_head.weight().clone()];
        for (_, lin) in self.projections() {
            out.push(lin.base.weight().clone());
            if let Some(b) = lin.base.bias() {
                out.push(b.clone());
            }
        }
        for layer in &self.model.layers {
            out.push(layer.input_layernorm.weight().clone());
            out.push(layer.post_attention_layernorm.weight().clone());
        }
        out.push(self.model.norm.weight().clone());
        out
    }
}

/// `q_proj` of `model.layers.0.self_attn.q_proj`.
pub(crate) fn module_name(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Position ids for a left-padded batch: each row counts from 0 at its first real token; padding
/// positions get 0. `attention_mask: [b, t]` of 0/1.
pub fn position_ids_for(attention_mask: &[Vec<u8>], device: &Device) -> Result<Tensor> {
    let b = attention_mask.len();
    let t = attention_mask.first().map_or(0, Vec::len);
    let mut ids = Vec::with_capacity(b * t);
    for row in attention_mask {
        if row.len() != t {
            return Err(ModelError::BadInput("attention mask rows differ in length".into()));
        }
        let mut p = 0i64;
        for &m in row {
            ids.push(if m != 0 { p } else { 0 });
            if m != 0 {
                p += 1;
            }
        }
    }
    Ok(Tensor::from_vec(ids, (b, t), device)?)
}
