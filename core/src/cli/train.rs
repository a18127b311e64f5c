//! `medrl train`: PPO / GRPO / RLOO on a LoRA adapter with rule rewards.

use super::progress::{Progress, ProgressArgs, RL_BAR, rl_bar_message, rl_figures};
use clap::Args;
use medrl::rl::{TrainConfig, Trainer};
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    /// TOML configuration (unknown keys are refused); without it, the defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override any setting: `--set ppo.cliprange=0.1 --set rules.ruleset="medical-safety@1.0.0"`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Continue the run in this folder from its newest checkpoint (its config.toml is used).
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// Delete an existing run folder of the same name and start again.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    /// Round two: start the policy from this earlier RL adapter (`model.init_adapter`); the KL
    /// reference stays the SFT policy.
    #[arg(long, value_name = "ADAPTER_DIR", conflicts_with = "resume")]
    pub init_adapter: Option<PathBuf>,
    #[command(flatten)]
    pub progress: ProgressArgs,
}

pub fn run(args: TrainArgs, g: &super::Globals) -> anyhow::Result<()> {
    // A bad key must stop the run before step 0, not after the last.
    let operator_key = g.operator_key()?;
    let every = args.progress.every()?;
    // Every global trust flag given on the command line overrides the configuration's `[rules]`
    // (for a resume too: a run may be resumed against a stricter keyring, never a different rule
    // set, which the trainer checks by sha256).
    let mut trainer = match &args.resume {
        Some(dir) => Trainer::resume_with(dir, &args.overrides, &g.flags)?,
        None => {
            let mut config = TrainConfig::load(args.config.as_deref(), &args.overrides)?;
            config.rules.apply(&g.flags);
            if let Some(dir) = &args.init_adapter {
                config.model.init_adapter = Some(dir.clone());
            }
            Trainer::start(config, args.overwrite)?
        }
    };
    // What the resume cut from the logs (the interrupted step's rows, a torn last line).
    for cut in &trainer.resume_cuts {
        eprintln!("resume: {cut}");
    }
    if let Some((key, path)) = operator_key {
        trainer.sign_with(key, path);
    }
    let c = &trainer.config;
    if let Some(dir) = &c.model.init_adapter {
        eprintln!("round two: the policy starts from {}; the KL reference is the SFT policy", dir.display());
    }
    eprintln!(
        "training {} with {} ({} prompts/step × {}, {} steps) into {}",
        c.model.path.display(),
        trainer.state.ruleset,
        c.rollout.prompts_per_step,
        c.rollout.group_size,
        c.run.steps,
        trainer.run.root.display()
    );
    let mut progress = Progress::new(every, "train", "step", c.run.steps, trainer.state.step, RL_BAR);
    let reports = trainer.run(|r| progress.update(r.step, &rl_figures(r), || rl_bar_message(r)))?;
    progress.finish();
    let skipped: usize = reports.iter().map(|r| r.skipped_updates).sum();
    println!("done: {} steps, {} skipped updates", trainer.state.step, skipped);
    println!("  rewards:     {}", trainer.run.rewards_csv().display());
    println!("  KL:          {}", trainer.run.kl_metrics().display());
    println!("  metrics:     {}", trainer.run.metrics().display());
    println!("  samples:     {}", trainer.run.samples().display());
    println!("  failures:    {}", trainer.run.failures().display());
    println!("  audit log:   {}", trainer.run.audit().display());
    println!("  adapter:     {}", trainer.run.final_dir().join("adapter").display());
    println!("  TensorBoard: {}", trainer.run.events().display());
    if let Some((dir, n)) = super::runs::write_plots_after_training(&trainer.run.root) {
        println!("  plots:       {} ({n} SVG files)", dir.display());
    }
    Ok(())
}
