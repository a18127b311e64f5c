//! `medrl model …`: make model folders.

use clap::Subcommand;
use medrl::model::init::{InitOptions, Preset, WeightDtype, init_model, shipped_corpus};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write a deterministic random Qwen2-style model folder (config, safetensors, tokenizer
    /// trained on the shipped corpus, ChatML chat template).
    Init {
        /// `tiny` (tests, quickstart) or `qwen2.5-0.5b-shape` (benchmarks; 2 GB in f32).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// The folder to create; it must not exist or be empty.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Element type of model.safetensors: f32 or bf16.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Data folder whose sets/*.jsonl and rl/training_prompts.jsonl train the tokenizer.
        #[arg(long, default_value = "data")]
        data: PathBuf,
    },
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    let ModelCommand::Init { preset, out, seed, dtype, data } = cmd;
    let preset: Preset = preset.parse()?;
    let dtype: WeightDtype = dtype.parse()?;
    let corpus = shipped_corpus(&data);
    if corpus.is_empty() {
        anyhow::bail!(
            "{} has no sets/*.jsonl or rl/training_prompts.jsonl to train the tokenizer on; pass --data with the repository's data folder",
            data.display()
        );
    }
    let s = init_model(&InitOptions { preset, seed, dtype, corpus }, &out)?;
    let sh = s.shape;
    println!("wrote {} model to {}", preset.as_str(), s.dir.display());
    println!(
        "  {} layers, hidden {}, {} query / {} key-value heads, intermediate {}, vocab {}, {} parameters ({})",
        sh.num_hidden_layers,
        sh.hidden_size,
        sh.num_attention_heads,
        sh.num_key_value_heads,
        sh.intermediate_size,
        sh.vocab_size,
        s.parameters,
        dtype.as_str()
    );
    println!("  tokenizer: byte-level BPE, {} tokens, trained on {} texts", s.tokenizer_vocab, s.corpus_texts);
    println!("  model.safetensors sha256 {}", s.weights_sha256);
    Ok(())
}
