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
