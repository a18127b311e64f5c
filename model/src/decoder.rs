//! The decoder trunk: token embedding, the stack of pre-norm decoder layers, the final norm.
//! Field names are the checkpoint's tensor names (`model.layers.N.self_attn.q_proj.weight`…).

use candle_core::{Tensor, Var};

use super::attention::Attention;
use super::config::ModelConfig;
use super::error::Result;
use super::kv_cache::KvCache;
use super::linear::Linear;
use super::lora::LoraMode;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rotary::{Rotary, RotaryAngles};
use super::weights::Weights;

/// One decoder layer (`model.layers.N`).
#[derive(Clone, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    /// Loads `{prefix}.*`.
    pub fn new(cfg: &ModelConfig, w: &Weights, prefix: &str) -> Result<Self> {
        let (hid, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(DecoderLayer {
            self_attn: Attention::new(cfg, w, &format!("{prefix}.self_attn"))?,
            mlp: Mlp::new(cfg, w, &format!("{prefix}.mlp"))?,
            input_layernorm: RmsNorm::new(w, &format!("{prefix}.input_layernorm"), hid, eps)?,
            post_attention_layernorm: RmsNorm::new(w, &format!("{prefix}.post_attention_layernorm"), hid, eps)?,
        })
    }

    /// `x + attn(norm(x))`, then `h + mlp(norm(h))`.
    pub fn forward(
        &self,
        x: &Tensor,
        angles: &RotaryAngles,
        allowed: &Tensor,
        cache: Option<(&super::kv_cache::LayerKv, usize)>,
        mode: LoraMode,
    ) -> Result<Tensor> {
        let attn = self.self_attn.forward(&self.input_layernorm.forward(x)?, angles, allowed, cache, mode)?;
        let h = (x + attn)?;
        let mlp = self.mlp.forward(&self.post_attention_layernorm.forward(&h)?, mode)?;
        Ok((h + mlp)?)
    }

    /// The projections of this layer by module name (`q_proj`, …, `down_proj`).
    pub fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        let a = &mut self.self_attn;
        let m = &mut self.mlp;
        [
            ("self_attn.q_proj", &mut a.q_proj),
            ("self_attn.k_proj", &mut a.k_proj),
            ("self_attn.v_proj", &mut a.v_proj),
            ("self_attn.o_proj", &mut a.o_proj),
            ("mlp.gate_proj", &mut m.gate_proj),
            ("mlp.up_proj", &mut m.up_proj),
            ("mlp.down_proj", &mut m.down_proj),
        ]
    }

    /// The projections of this layer by module name, read-only.
    pub fn linears(&self) -> [(&'static str, &Linear); 7] {
        let a = &self.self_attn;
        let m = &self.mlp;
        [
            ("self_attn.q_proj", &a.q_proj),
            ("self_attn.k_proj", &a.k_proj),
            ("self_attn.v_proj", &a.v_proj),
            ("self_attn.o_proj", &a.o_proj),
            ("mlp.gate_proj", &m.gate_proj),
            ("mlp.up_proj", &m.up_proj),
            ("mlp.down_proj", &m.down_proj),
        ]
    }
}

/// The trunk (`model.*`).
#[derive(Clone, Debug)]
pub struct Decoder {
    /// `[vocab, hidden]`, frozen.
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    rotary: Rotary,
    /// The trainable twin of the embedding under full fine-tuning ([`super::full`]).
    pub embed_full: Option<Var>,
}

impl Decoder {
    /// Loads `{prefix}.*` (`prefix` is `model`).
    pub fn new(cfg: &ModelConfig, w: &Weights, prefix: &str) -> Result<Self> {
        let embed_tokens = w.get(&format!("{prefix}.embed_tokens.weight"), &[cfg.vocab_size, cfg.hidden_size])?;
        let layers = (0..cfg.num_hidden_layers).map(|i| DecoderLayer::new(cfg, w, &format!("{prefix}.layers.{i}"))).collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            embed_tokens,
            layers,
            norm: RmsNorm::new(w, &format!("{prefix}.norm"), cfg.hidden_size, cfg.rms_norm_eps)?,
            rotary: Rotary::new(cfg, w.device())?,
            embed_full: None,
        })
    }

    /// Final-normed hidden states `[b, t, hidden]`. `allowed` comes from
    /// [`super::mask::allowed_keys`]; with a cache, it is advanced by `t` positions.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        position_ids: &Tensor,
        allowed: &Tensor,
        mut cache: Option<&mut KvCache>,
        mode: LoraMode,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        // The embedding is frozen and not a Var, so index_select records no backward op.
        let ids = input_ids.flatten_all()?;
        let mut x = match &self.embed_full {
            Some(e) => e.as_tensor().index_select(&ids, 0)?.to_dtype(self.embed_tokens.dtype())?,
            None => self.embed_tokens.index_select(&ids, 0)?,
        }
        .reshape((b, t, ()))?;
        let angles = self.rotary.angles(position_ids)?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let kv = cache.as_ref().map(|c| (c.layer(i), past));
            x = layer.forward(&x, &angles, allowed, kv, mode)?;
        }
        if let Some(c) = cache.as_mut() {
            c.advance(t);
        }
        self.norm.forward(&x)
    }
}
