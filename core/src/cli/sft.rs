//! `medrl sft`: supervised fine-tuning on the SFT corpus, of a LoRA adapter or (`--full`) every weight.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use medrl::sft::SftConfig;
use std::path::PathBuf;

#[derive(Args)]
pub struct SftArgs {
    /// Base model folder (Hugging Face layout).
    #[arg(long, default_value = "runs/quickstart/model")]
    pub model: PathBuf,
    /// SFT corpus: JSONL with `prompt` and `answer`.
    #[arg(long, default_value = "data/sets/sft.jsonl")]
    pub data: PathBuf,
    /// Output folder; the adapter goes to <out>/adapter, a fully fine-tuned model to <out>/model.
    #[arg(long, default_value = "runs/sft")]
    pub out: PathBuf,
    /// Full fine-tuning: train every weight and write a whole model folder instead of a LoRA adapter.
    #[arg(long, conflicts_with = "lora_r")]
    pub full: bool,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub grad_accum_steps: Option<usize>,
    #[arg(long)]
    pub learning_rate: Option<f64>,
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    #[arg(long)]
    pub lora_r: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Batch examples of similar length together: less padding, faster steps (about 30 % on the
    /// quickstart corpus); the batches differ, so the result does too.
    #[arg(long)]
    pub group_by_length: bool,
    /// Delete an existing output folder first.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(a: SftArgs) -> anyhow::Result<()> {
    let mut cfg = SftConfig { model: a.model, data: a.data, out: a.out, full: a.full, group_by_length: a.group_by_length, ..SftConfig::default() };
    if let Some(v) = a.epochs {
        cfg.epochs = v;
    }
    if let Some(v) = a.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = a.grad_accum_steps {
        cfg.grad_accum_steps = v;
    }
    if let Some(v) = a.learning_rate {
        cfg.learning_rate = v;
    }
    if let Some(v) = a.max_seq_len {
        cfg.max_seq_len = v;
    }
    if let Some(v) = a.lora_r {
        cfg.lora.r = v;
        cfg.lora.alpha = 2.0 * v as f64;
    }
    if let Some(v) = a.seed {
        cfg.seed = v;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed_precise}]").expect("a valid template"));
    let summary = medrl::sft::run(&cfg, a.overwrite, |step, total, loss| {
        bar.set_length(total);
        bar.set_position(step);
        bar.set_message(format!("loss {loss:.3}"));
    })?;
    bar.finish();
    println!(
        "SFT: {} examples, {} steps, loss {:.3} → {:.3}, {:.0} tokens/s; {}: {}",
        summary.examples,
        summary.optimizer_steps,
        summary.first_loss,
        summary.last_loss,
        summary.tokens_per_s,
        if summary.full { "model" } else { "adapter" },
        summary.output.display()
    );
    Ok(())
}
