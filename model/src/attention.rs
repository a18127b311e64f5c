//! Grouped-query self-attention with rotary positions, an additive causal/padding mask and an
//! optional KV cache.
//!
//! Grouped-query attention without copying keys: the `g = heads / kv_heads` query heads that share
//! a key/value head are laid side by side as `[b, kv_heads, g·t, d]`, so one batched matmul against
//! `[b, kv_heads, L, d]` serves the whole group (Hugging Face's `repeat_kv` materialises `g` copies
//! of every key and value instead). Scores are masked and soft-maxed in f32 with plain tensor ops,
//! which have a backward (candle-nn's fused `softmax_last_dim` does not).

use candle_core::{D, DType, Tensor};

use super::config::ModelConfig;
use super::error::Result;
use super::kv_cache::LayerKv;
use super::linear::Linear;
use super::lora::LoraMode;
use super::mask::MASKED;
use super::rotary::RotaryAngles;
use super::weights::Weights;

/// `self_attn` of one decoder layer.
#[derive(Clone, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

/// Softmax over the last dimension from differentiable ops (max-subtracted for stability).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?)
}

impl Attention {
    /// Loads `{prefix}.{q,k,v,o}_proj`.
    pub fn new(cfg: &ModelConfig, w: &Weights, prefix: &str) -> Result<Self> {
        let (h, kv, d) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        let hid = cfg.hidden_size;
        Ok(Attention {
            q_proj: Linear::new(w, &format!("{prefix}.q_proj"), hid, h * d, cfg.qkv_bias)?,
            k_proj: Linear::new(w, &format!("{prefix}.k_proj"), hid, kv * d, cfg.qkv_bias)?,
            v_proj: Linear::new(w, &format!("{prefix}.v_proj"), hid, kv * d, cfg.qkv_bias)?,
            o_proj: Linear::new(w, &format!("{prefix}.o_proj"), h * d, hid, cfg.o_bias)?,
            num_heads: h,
            num_kv_heads: kv,
            head_dim: d,
        })
    }

    /// `x: [b, t, hidden]`, `allowed: [b, 1, t, past + t]` (u8, from
    /// [`super::mask::allowed_keys`]) → `[b, t, hidden]`. With a cache, this
    /// pass's keys and values are written at `past..past + t` and attention reads `0..past + t`.
    pub fn forward(&self, x: &Tensor, angles: &RotaryAngles, allowed: &Tensor, cache: Option<(&LayerKv, usize)>, mode: LoraMode) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let g = h / kv;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> { Ok(y.reshape((b, t, n, d))?.transpose(1, 2)?.contiguous()?) };
        let q = angles.apply(&heads(self.q_proj.forward(x, mode)?, h)?)?;
        let k = angles.apply(&heads(self.k_proj.forward(x, mode)?, kv)?)?.contiguous()?;
        let v = heads(self.v_proj.forward(x, mode)?, kv)?;
        let (k, v) = match cache {
            None => (k, v),
            Some((layer, past)) => layer.append(&k, &v, past)?,
        };
        let l = k.dim(2)?;
        let q = q.contiguous()?.reshape((b, kv, g * t, d))?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?.reshape((b, h, t, l))?.to_dtype(DType::F32)?;
        let masked = Tensor::new(MASKED, scores.device())?.broadcast_as(scores.shape())?;
        let scores = allowed.broadcast_as(scores.shape())?.where_cond(&scores, &masked)?;
        let probs = softmax_last_dim(&scores)?.to_dtype(x.dtype())?.reshape((b, kv, g * t, l))?;
        let out = probs.matmul(&v)?.reshape((b, h, t, d))?.transpose(1, 2)?.reshape((b, t, h * d))?;
        self.o_proj.forward(&out, mode)
    }
}
