//! Frozen base weights: a linear layer and a per-channel scale whose backward pass returns only the
//! gradient of their input.
//!
//! With candle's own `matmul`, backprop computes `xᵀ·grad` for the weight of every projection even
//! when the weight is a constant, and keeps it in the gradient store: for a 0.5B model that is a
//! full model's worth of wasted FLOPs and memory per step. Here the weight is not an argument of the
//! op at all but a field of it (a [`CustomOp1`] over the input only), so the autograd graph never
//! sees a frozen weight and the gradient store never holds an entry for one. The forward pass calls
//! the backend's own matmul through [`BackendStorage`], so it is the same kernel on CPU and CUDA.

use candle_core::backend::BackendStorage;
use candle_core::op::{Add, Mul};
use candle_core::{CpuStorage, CudaStorage, CustomOp1, Layout, Shape, Storage, Tensor};

use super::error::Result;

/// `y = x·Wᵀ (+ b)` with `W: [out, in]` frozen; gradients flow to `x` only.
#[derive(Clone, Debug)]
pub struct FrozenLinear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl FrozenLinear {
    /// Wraps a `[out, in]` weight and an optional `[out]` bias (made contiguous once here).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let weight = weight.detach().contiguous()?;
        let bias = match bias {
            Some(b) => Some(b.detach().contiguous()?),
            None => None,
        };
        Ok(FrozenLinear { weight, bias })
    }

    /// The `[out, in]` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The `[out]` bias, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Replaces the weight (used when an adapter is merged into the base).
    pub(crate) fn set_weight(&mut self, weight: Tensor) -> Result<()> {
        self.weight = weight.detach().contiguous()?;
        Ok(())
    }

    /// `x: [..., in]` → `[..., out]`, in the weight's dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        Ok(x.apply_op1_arc(std::sync::Arc::new(Box::new(self.clone())))?)
    }
}

/// Splits the frozen tensor's storage out of its lock for the backend of the input.
macro_rules! frozen_storage {
    ($t:expr, $variant:ident) => {{
        match &*$t {
            Storage::$variant(s) => s,
            other => candle_core::bail!("frozen weight is on {:?} but the input is on another device", other.device().location()),
        }
    }};
}

fn linear_fwd<S: BackendStorage>(x: &S, xl: &Layout, w: &S, wl: &Layout, b: Option<(&S, &Layout)>) -> candle_core::Result<(S, Shape)> {
    let dims = xl.dims();
    let k = *dims.last().unwrap_or(&0);
    let (n, wk) = (wl.dims()[0], wl.dims()[1]);
    if k != wk {
        candle_core::bail!("frozen linear: input has {k} features, weight expects {wk}");
    }
    if !xl.is_contiguous() || !wl.is_contiguous() {
        candle_core::bail!("frozen linear: input and weight must be contiguous");
    }
    let m = xl.shape().elem_count() / k.max(1);
    let x2 = Layout::contiguous_with_offset((m, k), xl.start_offset());
    let wt = wl.transpose(0, 1)?;
    let y = x.matmul(w, (1, m, n, k), &x2, &wt)?;
    let y = match b {
        None => y,
        Some((b, bl)) => {
            let yl = Layout::contiguous((m, n));
            y.binary_impl::<Add>(b, &yl, &bl.broadcast_as((m, n))?)?
        }
    };
    let mut out = dims.to_vec();
    if let Some(last) = out.last_mut() {
        *last = n;
    }
    Ok((y, Shape::from(out)))
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (ws, wl) = self.weight.storage_and_layout();
        let w = frozen_storage!(ws, Cpu);
        match &self.bias {
            None => linear_fwd(x, xl, w, wl, None),
            Some(bias) => {
                let (bs, bl) = bias.storage_and_layout();
                let b = frozen_storage!(bs, Cpu);
                linear_fwd(x, xl, w, wl, Some((b, bl)))
            }
        }
    }

    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let (ws, wl) = self.weight.storage_and_layout();
        let w = frozen_storage!(ws, Cuda);
        match &self.bias {
            None => linear_fwd(x, xl, w, wl, None),
            Some(bias) => {
                let (bs, bl) = bias.storage_and_layout();
                let b = frozen_storage!(bs, Cuda);
                linear_fwd(x, xl, w, wl, Some((b, bl)))
            }
        }
    }

    /// `∂L/∂x = ∂L/∂y · W`; nothing for W or b.
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let n = self.weight.dims()[0];
        let g = grad.reshape(((), n))?.matmul(&self.weight)?;
        Ok(Some(g.reshape(arg.shape())?))
    }
}

/// `y = x ⊙ w` over the last dimension with `w: [d]` frozen (the weight of an RMS norm).
#[derive(Clone, Debug)]
pub struct FrozenScale {
    weight: Tensor,
}

impl FrozenScale {
    /// Wraps a `[d]` weight.
    pub fn new(weight: Tensor) -> Result<Self> {
        Ok(FrozenScale { weight: weight.detach().contiguous()? })
    }

    /// The `[d]` weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `x: [..., d]` → `[..., d]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        Ok(x.apply_op1_arc(std::sync::Arc::new(Box::new(self.clone())))?)
    }
}

fn scale_fwd<S: BackendStorage>(x: &S, xl: &Layout, w: &S, wl: &Layout) -> candle_core::Result<(S, Shape)> {
    let y = x.binary_impl::<Mul>(w, xl, &wl.broadcast_as(xl.shape())?)?;
    Ok((y, xl.shape().clone()))
}

impl CustomOp1 for FrozenScale {
    fn name(&self) -> &'static str {
        "frozen-scale"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (ws, wl) = self.weight.storage_and_layout();
        scale_fwd(x, xl, frozen_storage!(ws, Cpu), wl)
    }

    fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout) -> candle_core::Result<(CudaStorage, Shape)> {
        let (ws, wl) = self.weight.storage_and_layout();
        scale_fwd(x, xl, frozen_storage!(ws, Cuda), wl)
    }

    /// `∂L/∂x = ∂L/∂y ⊙ w`; nothing for w.
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.broadcast_mul(&self.weight)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn frozen_linear_matches_matmul_and_returns_only_the_input_gradient() {
        let dev = Device::Cpu;
        let w = Tensor::arange(0f32, 12., &dev).unwrap().reshape((3, 4)).unwrap().affine(0.1, -0.5).unwrap();
        let b = Tensor::new(&[0.5f32, -1.0, 2.0], &dev).unwrap();
        let lin = FrozenLinear::new(w.clone(), Some(b.clone())).unwrap();
        let x = Var::from_tensor(&Tensor::arange(0f32, 16., &dev).unwrap().reshape((2, 2, 4)).unwrap().affine(0.25, -1.0).unwrap()).unwrap();
        let y = lin.forward(x.as_tensor()).unwrap();
        let want = x.as_tensor().broadcast_matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
        let diff = (y.clone() - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "forward differs by {diff}");
        // loss = Σ y² → ∂/∂x = 2y·W
        let loss = y.sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let gx = grads.get(x.as_tensor()).expect("input gradient");
        let want = (y * 2.0).unwrap().broadcast_matmul(&w).unwrap();
        let diff = (gx - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "input gradient differs by {diff}");
        assert!(grads.get(lin.weight()).is_none() && grads.get(&b).is_none());
        assert!(grads.get(&w).is_none());
    }

    #[test]
    fn frozen_scale_scales_the_last_dim() {
        let dev = Device::Cpu;
        let w = Tensor::new(&[1f32, 2., 3.], &dev).unwrap();
        let s = FrozenScale::new(w).unwrap();
        let x = Tensor::ones((2, 3), DType::F32, &dev).unwrap();
        let y = s.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![1., 2., 3.], vec![1., 2., 3.]]);
    }
}
