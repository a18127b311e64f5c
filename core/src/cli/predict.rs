//! `medrl predict`: answer a JSONL file of prompts with a model (and adapter).

use candle_core::Device;
use clap::Args;
use medrl::predict::{PredictOptions, Predictor, read_prompts, write_answers};
use medrl::rollout::{FinishReason, SamplingConfig};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct PredictArgs {
    /// Hugging Face model folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).
    #[arg(long)]
    model: PathBuf,
    /// PEFT adapter folder to apply on top of the model. An RL adapter trained over an SFT adapter
    /// gets that one merged under it (its stacked_on.json says which; refused on another base).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// An adapter merged into the base under --adapter (the SFT adapter, when its recorded path
    /// has moved); it must be the one the adapter was trained over. Repeatable, in order.
    #[arg(long, value_name = "DIR")]
    merge: Vec<PathBuf>,
    /// Prompts: data items (data/sets/*.jsonl), training prompts (data/rl/training_prompts.jsonl),
    /// or plain prompts, one `{"id", "prompt"}` or `{"id", "messages": [...]}` per line.
    #[arg(long)]
    input: PathBuf,
    /// Where to write one JSON answer per prompt.
    #[arg(long)]
    output: PathBuf,
    /// Prompts per batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Most new tokens per answer.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Sampling seed (prompt i uses random stream i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A system message put before every prompt.
    #[arg(long)]
    system: Option<String>,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    progress: super::progress::ProgressArgs,
}

/// The candle device named by `--device`.
pub fn parse_device(name: &str) -> anyhow::Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(0)?),
        _ => match name.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(ordinal) => Ok(Device::new_cuda(ordinal)?),
            None => anyhow::bail!("unknown device `{name}`; use cpu, cuda or cuda:N"),
        },
    }
}

pub fn run(a: PredictArgs) -> anyhow::Result<()> {
    let every = a.progress.every()?;
    let device = parse_device(&a.device)?;
    let prompts = read_prompts(&a.input)?;
    let merge: Vec<&std::path::Path> = a.merge.iter().map(PathBuf::as_path).collect();
    let predictor = Predictor::load_stacked(&a.model, &merge, a.adapter.as_deref(), &device)?;
    let sampling = SamplingConfig { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, max_new_tokens: a.max_new_tokens, seed: a.seed };
    sampling.validate().map_err(anyhow::Error::msg)?;
    let opts = PredictOptions { batch_size: a.batch_size, sampling, system: a.system };
    let mut progress = super::progress::Progress::new(
        every,
        "predict",
        "prompts",
        prompts.len() as u64,
        0,
        "{spinner} answering [{bar:40}] {pos}/{len} prompts, {elapsed} (eta {eta})",
    );
    if let Some(bar) = progress.bar() {
        bar.set_style(bar.style().progress_chars("=> "));
    }
    let start = Instant::now();
    let answers = predictor.predict(&prompts, &opts, |n| progress.update(n as u64, &[], String::new))?;
    progress.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    write_answers(&a.output, &answers)?;
    let tokens: usize = answers.iter().map(|x| x.tokens).sum();
    let stopped = answers.iter().filter(|x| x.finish_reason == FinishReason::Stop).count();
    println!("wrote {} answers to {}", answers.len(), a.output.display());
    println!("  model   {} sha256 {}", a.model.display(), predictor.model_sha256);
    for dir in &predictor.merged {
        println!("  merged  {} (the adapter below was trained over it)", dir.display());
    }
    if let (Some(dir), Some(digest)) = (&a.adapter, &predictor.adapter_sha256) {
        println!("  adapter {} sha256 {digest}", dir.display());
    }
    let unlabelled = prompts.iter().filter(|p| !p.labelled).count();
    if unlabelled > 0 {
        println!("  {unlabelled} plain prompt(s): language inferred, category and risk unknown (written as \"risk\": null)");
    }
    println!(
        "  {stopped} stopped at EOS, {} hit --max-new-tokens {}; {tokens} new tokens in {seconds:.1} s ({:.0} tokens/s)",
        answers.len() - stopped,
        a.max_new_tokens,
        tokens as f64 / seconds
    );
    Ok(())
}
