//! `medrl model …`: make model folders, export merged ones.

use clap::Subcommand;
use medrl::model::init::{InitOptions, Preset, WeightDtype, init_model, shipped_corpus};
use std::path::{Path, PathBuf};

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
    /// Write a Hugging Face model folder with every adapter folded into the weights
    /// (transformers loads it with from_pretrained, no PEFT needed).
    Export {
        /// Fold the adapters into the weights (the only export there is; the unmerged form is
        /// the release package, `medrl release`).
        #[arg(long, required = true)]
        merge: bool,
        /// The base model folder the adapters were trained on.
        #[arg(long)]
        model: PathBuf,
        /// The top adapter (the RL adapter); the SFT adapter it was trained over is found from
        /// its stacked_on.json, or given with --under.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// An adapter under --adapter (the SFT adapter), merged first; repeatable, in order.
        #[arg(long, value_name = "DIR")]
        under: Vec<PathBuf>,
        /// The folder to write; it must not exist or be empty.
        #[arg(long)]
        out: PathBuf,
        /// Element type of model.safetensors: f32, bf16 or f16 [default: the base checkpoint's].
        #[arg(long)]
        dtype: Option<String>,
    },
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    let (preset, out, seed, dtype, data) = match cmd {
        ModelCommand::Init { preset, out, seed, dtype, data } => (preset, out, seed, dtype, data),
        ModelCommand::Export { merge: _, model, adapter, under, out, dtype } => {
            return export(&model, adapter.as_deref(), &under, &out, dtype.as_deref());
        }
    };
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

fn export(model: &Path, adapter: Option<&Path>, under: &[PathBuf], out: &Path, dtype: Option<&str>) -> anyhow::Result<()> {
    let dtype = match dtype {
        None => None,
        Some("f32") => Some(candle_core::DType::F32),
        Some("bf16") => Some(candle_core::DType::BF16),
        Some("f16") => Some(candle_core::DType::F16),
        Some(other) => anyhow::bail!("--dtype {other}: use f32, bf16 or f16"),
    };
    let under: Vec<&Path> = under.iter().map(PathBuf::as_path).collect();
    let s = medrl::model::export::export_merged(model, &under, adapter, out, dtype)?;
    println!("wrote merged model {} ({} tensors, {})", s.dir.display(), s.tensors, s.record.torch_dtype);
    println!("  base    {} sha256 {}", s.record.base_model, s.record.base_model_sha256);
    for a in &s.record.merged {
        println!("  merged  {} sha256 {}", a.path, a.sha256);
    }
    println!("  model sha256 {} (every adapter folded in; load it with transformers' from_pretrained)", s.model_sha256);
    Ok(())
}
