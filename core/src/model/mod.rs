//! The policy model: Hugging Face model folders, the tokenizer and chat template, and random
//! model folders for tests and benchmarks.

pub mod chat;
pub mod init;
pub mod tokenizer;
pub mod train_tokenizer;

pub use chat::{ChatTemplate, Message};
pub use tokenizer::{SpecialToken, SpecialTokens, Tokenizer, TokenizerError};
