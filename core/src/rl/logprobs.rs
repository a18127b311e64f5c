//! Log-probabilities of chosen tokens from logits, at a sampling temperature, with gradient.
//! Implementation detail "logits divided by temperature whenever logprobs are recomputed": the same
//! function serves the sampler's record, the policy's rescoring and the reference's, so the three
//! can never disagree on how a logprob is defined.

use candle_core::{D, DType, Result, Tensor};

/// `log softmax(logits / temperature)[tokens]`: `[batch, len, vocab]` and `[batch, len]` (u32) →
/// `[batch, len]` f32. Built from differentiable ops only (the max is a detached shift, which does
/// not change the value or the gradient of log-sum-exp).
pub fn token_logprobs(logits: &Tensor, tokens: &Tensor, temperature: f64) -> Result<Tensor> {
    let z = logits.to_dtype(DType::F32)?.affine(1.0 / temperature, 0.0)?;
    let max = z.max_keepdim(D::Minus1)?.detach();
    let lse = (z.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &max)?;
    let chosen = z.gather(&tokens.unsqueeze(D::Minus1)?.contiguous()?, D::Minus1)?;
    (chosen - lse)?.squeeze(D::Minus1)
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
