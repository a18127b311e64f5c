//! Reinforcement learning: the pure functions from the papers (GAE, whitening, KL estimators, PPO
//! losses, group advantages), the KL controllers, and the optimiser helpers the trainer loop calls in
//! paper order (rollout, score, advantages, update epochs, metrics).
//!
//! Log-probabilities of chosen tokens come from [`crate::rollout::token_logprobs`];
//! [`episode::forward_logprobs`], the trainer's one way to recompute them, is checked against the
//! sampler's own (the parity test in `episode.rs`), so sampling and rescoring cannot drift apart.
//!
//! Everything here is a function of its arguments: no I/O, no global state, coefficients passed in.
//! Per-token quantities of one response are `&[f32]` (GAE is a backward recurrence over a short
//! sequence, cheapest on the host); quantities that carry gradients are candle tensors of shape
//! `[batch, response_len]` with a `mask` of the same shape (1.0 on real response tokens).

pub mod advantages;
pub mod checkpoint;
pub mod config;
pub mod episode;
pub mod group;
pub mod kl;
pub mod kl_controller;
pub mod losses;
pub mod shaping;
#[cfg(test)]
pub(crate) mod testutil;
pub mod trainer;
pub mod value_head;

pub use advantages::{gae, whiten};
pub use checkpoint::{TrainerState, step_seed};
pub use config::{Algorithm, LrDecay, TrainConfig};
pub use episode::{Episode, Packed, ResponseForward, forward_logprobs, pack};
pub use group::{grpo_advantages, rloo_advantages};
pub use kl::{KlEstimator, KlPlacement, kl_per_token};
pub use kl_controller::{KlController, KlControllerConfig};
pub use losses::{PolicyLoss, ValueLoss, approx_kl, entropy_from_logits, explained_variance, pg_loss, value_loss};
pub use shaping::{RunningMoments, apply_missing_eos, token_rewards};
pub use trainer::{StepReport, TrainError, Trainer};
pub use value_head::ValueHead;
