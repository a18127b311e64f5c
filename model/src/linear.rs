//! A projection of the decoder: a frozen base weight plus, when an adapter is attached, its LoRA
//! update. The LoRA path runs in f32 and is added in the base dtype.

use candle_core::Tensor;

use super::dense::DenseLinear;
use super::error::Result;
use super::frozen::FrozenLinear;
use super::lora::{LoraLayer, LoraMode};
use super::weights::Weights;

/// One projection (`q_proj`, `down_proj`, …).
#[derive(Clone, Debug)]
pub struct Linear {
    /// The frozen `weight` (and `bias`) of the checkpoint.
    pub base: FrozenLinear,
    /// The attached LoRA update, if any.
    pub lora: Option<LoraLayer>,
    /// The trainable twin of the base under full fine-tuning ([`super::full`]); used instead of it.
    pub full: Option<DenseLinear>,
}

impl Linear {
    /// Loads `{prefix}.weight: [out, in]` and, with `bias`, `{prefix}.bias: [out]`.
    pub fn new(w: &Weights, prefix: &str, in_features: usize, out_features: usize, bias: bool) -> Result<Self> {
        let weight = w.get(&format!("{prefix}.weight"), &[out_features, in_features])?;
        let bias = if bias { Some(w.get(&format!("{prefix}.bias"), &[out_features])?) } else { None };
        Ok(Linear { base: FrozenLinear::new(weight, bias)?, lora: None, full: None })
    }

    /// `x: [..., in]` → `[..., out]` in the base dtype.
    pub fn forward(&self, x: &Tensor, mode: LoraMode) -> Result<Tensor> {
        if let Some(full) = &self.full {
            return full.forward(x);
        }
        let y = self.base.forward(x)?;
        match (&self.lora, mode) {
            (None, _) | (_, LoraMode::Off) => Ok(y),
            (Some(lora), mode) => {
                let in_f = self.base.in_features();
                let x2 = x.reshape(((), in_f))?;
                let delta = lora.forward(&x2, mode)?.reshape(y.shape())?.to_dtype(y.dtype())?;
                Ok((y + delta)?)
            }
        }
    }
}
