//! `medrl quickstart`: tiny model → SFT → PPO → evaluation, on the shipped defaults.

use super::progress::{Progress, rl_figures};
use clap::Args;
use medrl::quickstart::Quickstart;
use std::path::PathBuf;

#[derive(Args)]
pub struct QuickstartArgs {
    /// Output root.
    #[arg(long, default_value = "runs/quickstart")]
    pub out: PathBuf,
    /// PPO steps.
    #[arg(long, default_value_t = medrl::quickstart::RL_STEPS)]
    pub steps: u64,
    /// SFT epochs.
    #[arg(long, default_value_t = medrl::quickstart::SFT_EPOCHS)]
    pub sft_epochs: usize,
    /// A TOML file of changes to the SFT stage's settings, keys as `medrl sft --config` reads them
    /// (`epochs = 2`, `[lora] r = 8`), laid over the quickstart's own.
    #[arg(long = "sft-config", value_name = "FILE")]
    pub sft_config: Option<PathBuf>,
    /// A TOML file of changes to the RL stage's settings, as `medrl train --config` reads them
    /// (`[ppo] learning_rate = 1e-3`), laid over the quickstart's own.
    #[arg(long = "rl-config", value_name = "FILE")]
    pub rl_config: Option<PathBuf>,
    /// Override a setting of the SFT stage, KEY=VALUE as `medrl sft --set` takes it, over
    /// --sft-config; repeatable.
    #[arg(long = "sft-set", value_name = "KEY=VALUE")]
    pub sft_overrides: Vec<String>,
    /// Override a setting of the RL stage, SECTION.KEY=VALUE as `medrl train --set` takes it, over
    /// --rl-config; repeatable.
    #[arg(long = "rl-set", value_name = "SECTION.KEY=VALUE")]
    pub rl_overrides: Vec<String>,
    /// Delete an earlier quickstart's outputs first.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub progress: super::progress::ProgressArgs,
}

pub fn run(a: QuickstartArgs, g: &super::Globals) -> anyhow::Result<()> {
    // The data folder is the registry's (the shipped layout keeps both in data/); every trust
    // flag reaches the RL stage and the evaluation alike.
    let every = a.progress.every()?;
    let rules = g.flags.source();
    let q = Quickstart {
        out: a.out,
        data: rules.registry.clone(),
        sft_epochs: a.sft_epochs,
        rl_steps: a.steps,
        rules,
        sft_config: a.sft_config,
        sft_overrides: a.sft_overrides,
        rl_config: a.rl_config,
        operator_key: g.operator_key()?,
        rl_overrides: a.rl_overrides,
        ..Quickstart::default()
    };
    // The RL stage's progress: a bar shown during stage 3 on a terminal, lines elsewhere, timed
    // from the start of stage 3. Both callbacks reach it, one at a time.
    let progress =
        std::cell::RefCell::new(Progress::new(every, "quickstart", "step", q.rl_steps, 0, "    {bar:30} step {pos}/{len} {msg} [{elapsed_precise}]"));
    if let Some(bar) = progress.borrow().bar() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let out = medrl::quickstart::run(
        &q,
        a.overwrite,
        |msg| {
            eprintln!("[{:>5.0} s] {msg}", started.elapsed().as_secs_f64());
            let mut progress = progress.borrow_mut();
            if msg.starts_with("3/4") {
                progress.restart_clock();
                if let Some(bar) = progress.bar() {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
            } else {
                progress.finish_and_clear();
            }
        },
        |r| progress.borrow_mut().update(r.step, &rl_figures(r), || format!("reward {:+.3} KL {:.4}/tok", r.reward_mean, r.kl_per_token)),
    )?;
    let rewards: Vec<f64> = out.rl_reports.iter().map(|r| r.reward_mean).collect();
    println!("quickstart done in {:.0} s", started.elapsed().as_secs_f64());
    println!("  model:        {}", out.model.display());
    println!("  SFT model:    {} (full fine-tuning, loss {:.3} → {:.3})", out.sft.output.display(), out.sft.first_loss, out.sft.last_loss);
    println!(
        "  RL run:       {} ({} steps; mean reward first step {:+.3}, last step {:+.3})",
        out.rl_run.display(),
        rewards.len(),
        rewards.first().copied().unwrap_or(0.0),
        rewards.last().copied().unwrap_or(0.0)
    );
    if let Some(t) = medrl::quickstart::reward_trend(&out.rl_reports) {
        println!(
            "  reward trend: first {} steps {:+.4} ± {:.4}, last {} steps {:+.4} ± {:.4} (mean ± sd of step means)",
            t.first_steps, t.first_mean, t.first_std, t.last_steps, t.last_mean, t.last_std
        );
    }
    let kl: Vec<f64> = out.rl_reports.iter().map(|r| r.kl_per_token).collect();
    let skipped: usize = out.rl_reports.iter().map(|r| r.skipped_updates).sum();
    println!(
        "  KL/token:     mean {:.4}, max {:.4}; {skipped} skipped updates",
        kl.iter().sum::<f64>() / kl.len().max(1) as f64,
        kl.iter().cloned().fold(0.0, f64::max)
    );
    for g in &out.eval.gates {
        println!("  gate:         {} → {}", g.expression, if g.passed { "pass" } else { "FAIL (see the eval report)" });
    }
    println!("  RL adapter:   {}", out.rl_run.join("final/adapter").display());
    println!("  rewards.csv:  {}", out.rl_run.join("rewards.csv").display());
    println!("  KL metrics:   {}", out.rl_run.join("kl_metrics.jsonl").display());
    println!("  audit log:    {}", out.rl_run.join("audit.jsonl").display());
    println!("  eval report:  {}", out.eval_dir.join("eval_report.md").display());
    println!("  report.json:  {}", out.eval_dir.join("report.json").display());
    Ok(())
}
