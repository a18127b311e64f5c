//! The policy model: a Qwen2 / Llama-family decoder on candle that hosts LoRA, returns logits at
//! every position or only the last, and differentiates through the adapter only; its tokenizer
//! and chat template; random model folders for tests and benchmarks.
//!
//! - [`config`]: Hugging Face `config.json` → [`ModelConfig`].
//! - [`weights`]: safetensors checkpoints, single or sharded.
//! - [`frozen`]: the frozen matmul (no weight gradients) and frozen scale.
//! - [`rotary`], [`mask`], [`norm`], [`attention`], [`mlp`], [`decoder`]: the architecture.
//! - [`kv_cache`]: the preallocated KV cache for decoding.
//! - [`lora`], [`linear`]: LoRA and the adaptable projection.
//! - [`full`]: full fine-tuning (every weight a trainable twin of the frozen one).
//! - [`peft`]: PEFT adapter files (load, save, merge).
//! - [`causal_lm`]: [`CausalLm`], the API the sampler and trainer use.
//! - [`tokenizer`], [`chat`]: `tokenizer.json`, special tokens, chat templates (minijinja).
//! - [`init`], [`train_tokenizer`]: `medrl model init` (random model folders from presets).
//! - [`digest`]: sha256 digests of model and adapter folders.
//! - [`stack`]: what an adapter was trained on (`stacked_on.json`), checked when it is loaded.
//! - [`export`]: every adapter folded in, written as a Hugging Face model folder.
//!
//! See `docs/model.md`.

pub mod attention;
pub mod causal_lm;
pub mod chat;
pub mod config;
pub mod decoder;
pub mod dense;
pub mod digest;
pub mod error;
pub mod export;
pub mod frozen;
pub mod full;
pub mod init;
pub mod kv_cache;
pub mod linear;
pub mod lora;
pub mod mask;
pub mod mlp;
pub mod norm;
pub mod peft;
pub mod rotary;
pub mod stack;
pub mod tokenizer;
pub mod train_tokenizer;
pub mod weights;

pub use causal_lm::{CausalLm, default_dtype, position_ids_for};
pub use chat::{ChatTemplate, Message};
pub use config::{Family, ModelConfig, SUPPORTED_ARCHITECTURES};
pub use error::ModelError;
pub use kv_cache::KvCache;
pub use lora::{LoraConfig, LoraMode};
pub use tokenizer::{SpecialToken, SpecialTokens, Tokenizer, TokenizerError};

#[cfg(test)]
mod tests;
