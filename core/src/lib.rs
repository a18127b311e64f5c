//! medrl: rule-governed reinforcement learning for medical LLMs.
//!
//! - [`data`]: prompt sets: schema, validation, leakage checks, sampling, the data card.
//! - [`registry`]: rule and rule-set manifests, the on-disk registry, hashes, signatures, trust.
//! - [`reward`]: the reward runtime: the wasmtime sandbox, outcomes, aggregation, batch scoring,
//!   the judge plugin, and the scoring session every command scores through.
//! - [`governance`]: the audit log and replay, rule authoring and publishing, and the auditor's
//!   inspect, verify, diff and doc.
//! - [`model`]: the policy model (Qwen2 / Llama decoder on candle, LoRA, PEFT adapters,
//!   tokenizer and chat template, random model folders).
//! - [`rollout`]: batched sampling with a KV cache, and the sampler's logprobs recomputed.
//! - [`predict`]: batch prediction over JSONL prompts (`medrl predict`).
//! - [`io`]: JSONL input with file-and-line errors.
//! - [`rl`]: the RL math (GAE, whitening, KL estimators and controller, PPO losses, group advantages, AdamW).
//! - [`training`]: the kit SFT and RL share: optimiser and schedule, run folder and logs, data
//!   cursor, masked reductions, device choice.
//! - [`sft`]: supervised fine-tuning of a LoRA adapter on the SFT corpus.
//! - [`eval`]: SFT vs RL with the same rules on the gold and red-team sets.
//! - [`review`]: clinician review sheets out (stratified sample, CSV and HTML) and verdicts in
//!   (agreement with each rule, the rule parameters the disagreements point at).
//! - [`quickstart`]: the whole pipeline on the shipped defaults (`medrl quickstart`).
//!
//! The `medrl` command line lives in the binary (`src/main.rs`, `src/cli/`): parsing, printing and
//! exit codes only, so the library carries no clap or indicatif.

pub mod bench;
pub mod data;
pub mod eval;
pub mod governance;
pub mod io;
pub use medrl_model as model;
pub mod predict;
pub mod quickstart;
pub mod registry;
pub mod release;
pub mod review;
pub mod reward;
pub mod rl;
pub mod rollout;
pub mod sft;
pub mod training;
