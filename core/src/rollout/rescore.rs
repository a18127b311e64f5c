//! The training side of the sampler's logprobs: `log softmax(logits / T)` of the chosen tokens over
//! the full vocabulary, on tensors and differentiable, as [`super::distribution::logprob`] defines
//! it on the host. The trainer recomputes the sampler's logprobs with it in
//! [`crate::rl::episode::forward_logprobs`] (one full forward over prompt + response, no KV cache,
//! gradients through LoRA), whose parity with the sampler is tested there; SFT uses it at T = 1.

use candle_core::{D, DType, Tensor};

/// `log softmax(logits / T)` of `targets`: `logits [b, R, vocab]` (f32) are the predictions for
/// `targets [b, R]` (u32), position by position. Differentiable.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor, temperature: f64) -> candle_core::Result<Tensor> {
    let scaled = if temperature == 1.0 { logits.clone() } else { (logits / temperature)? };
    let logp = candle_nn::ops::log_softmax(&scaled.to_dtype(DType::F32)?, D::Minus1)?;
    logp.gather(&targets.contiguous()?.unsqueeze(2)?, 2)?.squeeze(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn by_hand() {
        let d = Device::Cpu;
        // logits [0, ln 3] → softmax [1/4, 3/4]; at T = 2: [0, ln3/2] → [1/(1+√3), √3/(1+√3)]
        let logits = Tensor::new(&[[[0f32, 3f32.ln()]]], &d).unwrap();
        let tok = Tensor::new(&[[1u32]], &d).unwrap();
        let lp = token_logprobs(&logits, &tok, 1.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((lp[0] - 0.75f32.ln()).abs() < 1e-6);
        let lp2 = token_logprobs(&logits, &tok, 2.0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let s3 = 3f32.sqrt();
        assert!((lp2[0] - (s3 / (1.0 + s3)).ln()).abs() < 1e-6);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let d = Device::Cpu;
        let base = [0.3f32, -1.2, 2.0, 0.5, 0.1, -0.4];
        let tok = Tensor::new(&[[2u32, 0]], &d).unwrap();
        let f = |v: &[f32]| -> f32 {
            let l = Tensor::from_slice(v, (1, 2, 3), &d).unwrap();
            token_logprobs(&l, &tok, 0.7).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap()
        };
        let var = Var::from_tensor(&Tensor::from_slice(&base, (1, 2, 3), &d).unwrap()).unwrap();
        let grads = token_logprobs(var.as_tensor(), &tok, 0.7).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for i in 0..base.len() {
            let (mut hi, mut lo) = (base, base);
            hi[i] += 1e-2;
            lo[i] -= 1e-2;
            let fd = (f(&hi) - f(&lo)) / 2e-2;
            assert!((fd - g[i]).abs() < 1e-3, "coordinate {i}: finite difference {fd} vs autograd {}", g[i]);
        }
    }
}
