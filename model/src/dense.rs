//! Trainable twins of frozen weights, for full fine-tuning ([`super::full`]): a dense f32
//! projection made from a frozen one, and an f32 variable copied from a frozen tensor. The layers
//! (`linear`, `norm`, the embedding in `causal_lm`) use these in place of the frozen ops once the
//! model is unfrozen.

use candle_core::{DType, Tensor, Var};

use super::error::Result;
use super::frozen::FrozenLinear;

/// A trainable `y = x·Wᵀ (+ b)`.
#[derive(Clone, Debug)]
pub struct DenseLinear {
    pub weight: Var,
    pub bias: Option<Var>,
}

impl DenseLinear {
    /// A trainable copy of a frozen projection, in f32.
    pub fn from_frozen(base: &FrozenLinear) -> Result<Self> {
        let weight = Var::from_tensor(&base.weight().to_dtype(DType::F32)?)?;
        let bias = match base.bias() {
            Some(b) => Some(Var::from_tensor(&b.to_dtype(DType::F32)?)?),
            None => None,
        };
        Ok(DenseLinear { weight, bias })
    }

    /// `x: [..., in]` → `[..., out]` in `x`'s dtype, computed in f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_f = dims[dims.len() - 1];
        let x2 = x.reshape(((), in_f))?.to_dtype(DType::F32)?;
        let mut y = x2.matmul(&self.weight.as_tensor().t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b.as_tensor())?;
        }
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("x has a last dimension") = self.weight.dims()[0];
        Ok(y.reshape(out_dims)?.to_dtype(x.dtype())?)
    }
}

/// A trainable twin of a frozen tensor (an embedding or a norm weight), in f32.
pub fn trainable_copy(t: &Tensor) -> Result<Var> {
    Ok(Var::from_tensor(&t.to_dtype(DType::F32)?)?)
}
