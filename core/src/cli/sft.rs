//! `medrl sft`: supervised fine-tuning on the SFT corpus, of a LoRA adapter or (`full = true`)
//! every weight. Settings come from `--config FILE.toml` and `--set key=value`, as `medrl train`'s
//! do (`core/src/sft/config.rs`); `--model`, `--data`, `--out` and `--full` are shorthands for the
//! `--set` they equal.

use super::progress::Progress;
use clap::Args;
use medrl::runs::Figure;
use medrl::sft::SftConfig;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SftArgs {
    /// TOML settings (unknown keys are refused); without it, the defaults. A run's own
    /// `<out>/config.toml` is such a file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any setting: `--set epochs=2 --set learning_rate=1e-3 --set lora.r=8`. The value is
    /// TOML; a bare word is a string. Applied in order, after the file and the shorthands.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Base model folder (Hugging Face layout): shorthand for `--set model="DIR"`.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// SFT corpus, JSONL with `prompt` and `answer`: shorthand for `--set data="FILE"`.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Output folder (the adapter goes to <out>/adapter, a fully fine-tuned model to <out>/model):
    /// shorthand for `--set out="DIR"`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Train every weight and write a whole model folder instead of a LoRA adapter: shorthand for
    /// `--set full=true`.
    #[arg(long)]
    pub full: bool,
    /// Delete an existing output folder first.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub progress: super::progress::ProgressArgs,
}

/// A path as a TOML string for an override (a path that is not UTF-8 is refused rather than
/// silently changed).
fn path_value(flag: &str, p: &Path) -> anyhow::Result<String> {
    let s = p.to_str().ok_or_else(|| anyhow::anyhow!("--{flag} {}: the path is not UTF-8", p.display()))?;
    Ok(toml::Value::String(s.to_string()).to_string())
}

/// The shorthands as the `--set` overrides they equal, followed by the `--set` flags.
fn overrides(a: &SftArgs) -> anyhow::Result<Vec<String>> {
    let mut all = Vec::new();
    for (flag, p) in [("model", &a.model), ("data", &a.data), ("out", &a.out)] {
        if let Some(p) = p {
            all.push(format!("{flag}={}", path_value(flag, p)?));
        }
    }
    if a.full {
        all.push("full=true".into());
    }
    all.extend(a.overrides.iter().cloned());
    Ok(all)
}

pub fn run(a: SftArgs) -> anyhow::Result<()> {
    let cfg = SftConfig::load(a.config.as_deref(), &overrides(&a)?)?;
    let every = a.progress.every()?;
    eprintln!(
        "SFT of {} on {} ({}, {} epoch(s), batch {}, learning rate {}) into {}",
        cfg.model.display(),
        cfg.data.display(),
        if cfg.full { "every weight".to_string() } else { format!("LoRA r {}", cfg.lora.r) },
        cfg.epochs,
        cfg.batch_size,
        cfg.learning_rate,
        cfg.out.display()
    );
    // The step count is known once the corpus is read: the display starts at the first step.
    let mut progress: Option<Progress> = None;
    let started = std::time::Instant::now();
    let summary = medrl::sft::run(&cfg, a.overwrite, |s| {
        let figures = [Figure::new("loss", f64::from(s.loss), 4), Figure::sci("lr", s.lr), Figure::new("tok_s", s.tokens_per_s, 0)];
        progress
            .get_or_insert_with(|| {
                Progress::new(every, "sft", "step", s.total, 0, "{bar:30} step {pos}/{len} {msg} [{elapsed_precise}]").since(started)
            })
            .update(s.step, &figures, || format!("loss {:.3}", s.loss));
    })?;
    if let Some(p) = &progress {
        p.finish();
    }
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
    println!("  settings: {}", cfg.out.join("config.toml").display());
    println!("  events:   {}", cfg.out.join(medrl::training::run_dir::EVENTS_FILE).display());
    if let Some((dir, n)) = super::runs::write_plots_after_training(&cfg.out) {
        println!("  plots:    {} ({n} SVG files)", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(model: Option<&str>, full: bool, sets: &[&str]) -> SftArgs {
        SftArgs {
            config: None,
            overrides: sets.iter().map(|s| s.to_string()).collect(),
            model: model.map(PathBuf::from),
            data: None,
            out: Some("runs/a \"b\"".into()),
            full,
            overwrite: false,
            progress: crate::cli::progress::ProgressArgs { progress_every: 10, progress_secs: 60.0 },
        }
    }

    #[test]
    fn shorthands_equal_their_overrides_and_a_later_set_wins() {
        let a = args(Some("runs/m"), true, &["epochs=1"]);
        let c = SftConfig::load(None, &overrides(&a).unwrap()).unwrap();
        assert_eq!((c.model.to_str(), c.out.to_str(), c.full, c.epochs), (Some("runs/m"), Some("runs/a \"b\""), true, 1));
        let a = args(Some("runs/m"), false, &["model=\"runs/n\""]);
        assert_eq!(SftConfig::load(None, &overrides(&a).unwrap()).unwrap().model, PathBuf::from("runs/n"));
        // A path that reads as a number or a boolean stays a path.
        let a = args(Some("1e3"), false, &[]);
        assert_eq!(SftConfig::load(None, &overrides(&a).unwrap()).unwrap().model, PathBuf::from("1e3"));
    }
}
