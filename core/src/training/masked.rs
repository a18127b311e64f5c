//! Masked reductions over `[batch, len]` tensors: padding and prompt tokens never count.

use candle_core::{Result, Tensor};

/// `Σ x·mask`, a scalar tensor.
pub fn masked_sum(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    x.mul(mask)?.sum_all()
}

/// `Σ x·mask / Σ mask`, a scalar tensor; an all-zero mask gives 0 rather than NaN (a batch whose
/// responses are all empty must not poison the step).
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let n = mask.sum_all()?.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
    masked_sum(x, mask)?.affine(1.0 / f64::from(n.max(1.0)), 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn mean_ignores_masked_positions() {
        let d = Device::Cpu;
        let x = Tensor::new(&[[1f32, 2., 100.], [3., 100., 100.]], &d).unwrap();
        let m = Tensor::new(&[[1f32, 1., 0.], [1., 0., 0.]], &d).unwrap();
        // (1 + 2 + 3) / 3 = 2
        assert_eq!(masked_mean(&x, &m).unwrap().to_scalar::<f32>().unwrap(), 2.0);
        let zero = m.zeros_like().unwrap();
        assert_eq!(masked_mean(&x, &zero).unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }
}
