//! Rollouts: batched, left-padded sampling from the policy with a preallocated KV cache, and the
//! training side's version of the sampler's logprobs.
//!
//! - [`config`]: [`SamplingConfig`] (temperature, top-k, top-p, max new tokens, seed).
//! - [`distribution`]: one draw from one row of logits, and its logprob.
//! - [`generate`]: the batched loop → [`Rollout`] (tokens, masks, logprobs, finish reasons).
//! - [`rescore`]: [`token_logprobs`], the sampler's `log softmax(logits / T)` on tensors (the
//!   trainer's recomputation, [`crate::rl::episode::forward_logprobs`], is tested against the sampler).
//! - [`bench`]: new tokens per second and peak memory (`medrl bench rollout`).

pub mod config;
pub mod distribution;
pub mod generate;
pub mod rescore;

pub use config::SamplingConfig;
pub use generate::{FinishReason, Rollout, RolloutError, StopTokens, generate, generate_observed, generate_with_streams};
pub use rescore::token_logprobs;
