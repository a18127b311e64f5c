//! RMS norm with a frozen weight: `w ⊙ x / sqrt(mean(x²) + ε)`, the statistics in f32.
//!
//! Built from differentiable tensor ops (candle-nn's fused `rms_norm` has no backward).

use candle_core::{D, DType, Tensor};

use super::error::Result;
use super::frozen::FrozenScale;
use super::weights::Weights;

/// An RMS norm layer; the field is named as the checkpoint's tensor (`weight`).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: FrozenScale,
    eps: f64,
}

impl RmsNorm {
    /// Loads `{prefix}.weight` of width `dim`.
    pub fn new(w: &Weights, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm {
            weight: FrozenScale::new(w.get(&format!("{prefix}.weight"), &[dim])?)?,
            eps,
        })
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
        let normed = xf
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .to_dtype(dtype)?;
        self.weight.forward(&normed)
    }
}
