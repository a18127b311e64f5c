//! RMS norm with a frozen weight: `w ⊙ x / sqrt(mean(x²) + ε)`, the statistics in f32.
//!
//! Built from differentiable tensor ops (candle-nn's fused `rms_norm` has no backward).

use candle_core::{D, DType, Tensor, Var};

use super::error::Result;
use super::frozen::FrozenScale;
use super::weights::Weights;

/// An RMS norm layer; the field is named as the checkpoint's tensor (`weight`).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: FrozenScale,
    eps: f64,
    /// The trainable twin of the weight under full fine-tuning ([`super::full`]).
    full: Option<Var>,
}

impl RmsNorm {
    /// Loads `{prefix}.weight` of width `dim`.
    pub fn new(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm { weight: FrozenScale::new(w.get(&format!("{prefix}.weight"), &[dim])?)?, eps, full: None })
    }

    /// Gives the weight a trainable f32 twin (full fine-tuning).
    pub(crate) fn unfreeze(&mut self) -> Result<()> {
        self.full = Some(super::dense::trainable_copy(self.weight())?);
        Ok(())
    }

    /// The trainable twin, under full fine-tuning.
    pub fn full(&self) -> Option<&Var> {
        self.full.as_ref()
    }

    /// The frozen `[dim]` weight.
    pub fn weight(&self) -> &Tensor {
        self.weight.weight()
    }

    /// Normalises the last dimension of `x`; the result has `x`'s dtype, as in Hugging Face
    /// (normalise in f32, cast back, then scale).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let var = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xf.broadcast_div(&(var + self.eps)?.sqrt()?)?.to_dtype(dtype)?;
        match &self.full {
            Some(w) => Ok(normed.to_dtype(DType::F32)?.broadcast_mul(w.as_tensor())?.to_dtype(dtype)?),
            None => self.weight.forward(&normed),
        }
    }
}
