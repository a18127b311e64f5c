//! The training side of the sampler's logprobs: one full forward over prompt + response (no KV
//! cache, gradients through LoRA), logits divided by the rollout's temperature, log-softmax, and
//! the logprob of each response token. With the same model and adapter mode this reproduces the
//! sampler's `logprobs` (the parity test below), which is what makes PPO's first ratio 1 and the
//! KL estimate start at 0.

use super::generate::Rollout;
use crate::model::{CausalLm, LoraMode, ModelError, position_ids_for};
use candle_core::{D, DType, Tensor};

/// `log softmax(logits / T)` of `targets`: `logits [b, R, vocab]` (f32) are the predictions for
/// `targets [b, R]` (u32), position by position. Differentiable.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor, temperature: f64) -> candle_core::Result<Tensor> {
    let scaled = if temperature == 1.0 { logits.clone() } else { (logits / temperature)? };
    let logp = candle_nn::ops::log_softmax(&scaled.to_dtype(DType::F32)?, D::Minus1)?;
    logp.gather(&targets.contiguous()?.unsqueeze(2)?, 2)?.squeeze(2)
}

/// Logprobs `[b, R]` (f32) of the rollout's response tokens under `model` with `lora`, from the
/// training forward; divided by the temperature the rollout was sampled at. Values at masked
/// positions (after a row's stop) are meaningless: multiply by `response_mask`.
///
/// The LM head runs only on the R positions that predict the response (P − 1 … P + R − 2), not
/// on the prompt: `[b, R, vocab]` logits instead of `[b, P + R, vocab]`.
pub fn response_logprobs(model: &CausalLm, rollout: &Rollout, lora: LoraMode) -> Result<Tensor, ModelError> {
    let (p, r) = (rollout.prompt_len, rollout.response_len());
    let mask_rows: Vec<Vec<u8>> = rollout.attention_mask.to_vec2::<u8>()?;
    let positions = position_ids_for(&mask_rows, model.device())?;
    let hidden = model.forward_hidden(&rollout.tokens, &positions, &rollout.attention_mask, None, lora)?;
    let logits = model.lm_head(&hidden.narrow(1, p - 1, r)?)?;
    let targets = rollout.tokens.narrow(1, p, r)?;
    Ok(token_logprobs(&logits, &targets, rollout.logprob_temperature)?)
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
