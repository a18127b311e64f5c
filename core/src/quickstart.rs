//! `medrl quickstart`: the whole pipeline on the shipped defaults, small enough for two CPU cores:
//! make the tiny model, SFT it on the shipped corpus, run PPO with `medical-safety@1.0.0` on the
//! shipped training prompts, and evaluate SFT against RL on the gold and red-team sets with the
//! same rules.

use crate::eval::{EvalPlan, Report, Variant};
use crate::model::init::{InitOptions, Preset, WeightDtype, init_model, shipped_corpus};
use crate::reward::Registry;
use crate::rl::{StepReport, TrainConfig, Trainer};
use crate::sft::{SftConfig, SftSummary};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum QuickstartError {
    #[error("model init: {0}")]
    Init(#[from] crate::model::init::InitError),
    #[error("SFT: {0}")]
    Sft(#[from] crate::sft::SftError),
    #[error("PPO: {0}")]
    Train(#[from] crate::rl::TrainError),
    #[error("evaluation: {0}")]
    Eval(#[from] crate::eval::EvalError),
    #[error("{0} already exists; pass --overwrite to run the quickstart again from scratch")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where the quickstart writes, and how long it trains.
#[derive(Debug, Clone)]
pub struct Quickstart {
    /// Output root (default `runs/quickstart`).
    pub out: PathBuf,
    /// The repository's `data/` folder (corpus, prompts, sets, registry).
    pub data: PathBuf,
    pub sft_epochs: usize,
    pub ppo_steps: u64,
    pub ruleset: String,
}

impl Default for Quickstart {
    fn default() -> Self {
        Quickstart { out: "runs/quickstart".into(), data: "data".into(), sft_epochs: 4, ppo_steps: 60, ruleset: "medical-safety@1.0.0".into() }
    }
}

/// Where everything went.
pub struct QuickstartOutputs {
    pub model: PathBuf,
    pub sft: SftSummary,
    pub ppo_run: PathBuf,
    pub ppo_reports: Vec<StepReport>,
    pub eval_dir: PathBuf,
    pub eval: Report,
}

/// The training configuration the quickstart uses for PPO.
pub fn ppo_config(q: &Quickstart, model: &Path, sft_adapter: &Path) -> TrainConfig {
    let mut c = TrainConfig::default();
    c.run.name = "ppo".into();
    c.run.out_dir = q.out.clone();
    c.run.steps = q.ppo_steps;
    c.run.save_every = 10;
    c.model.path = model.to_path_buf();
    c.model.sft_adapter = Some(sft_adapter.to_path_buf());
    c.rules.ruleset = q.ruleset.clone();
    c.rules.registry = q.data.clone();
    c.data.prompts = q.data.join("rl/training_prompts.jsonl");
    // Tuned for the tiny model on two CPU cores: more responses per step and a larger step than
    // a real LoRA run (the defaults) would use.
    c.rollout.prompts_per_step = 16;
    c.ppo.ppo_epochs = 4;
    c.ppo.learning_rate = 1e-3;
    // The SFT answers run to ~300 tokens and the quickstart samples 96: nearly every response is
    // cut, so a missing-EOS penalty would only teach the tiny policy to stop at once.
    c.ppo.missing_eos_penalty = 0.0;
    c
}

pub fn run(q: &Quickstart, registry: &Registry, overwrite: bool, mut say: impl FnMut(&str), on_step: impl FnMut(&StepReport)) -> Result<QuickstartOutputs, QuickstartError> {
    if q.out.exists() {
        if !overwrite {
            return Err(QuickstartError::Exists(q.out.clone()));
        }
        std::fs::remove_dir_all(&q.out).map_err(|source| QuickstartError::Io { path: q.out.clone(), source })?;
    }
    let model = q.out.join("model");
    say("1/4 making the tiny model and its tokenizer");
    init_model(&InitOptions { preset: Preset::Tiny, seed: 0, dtype: WeightDtype::F32, corpus: shipped_corpus(&q.data) }, &model)?;
    say("2/4 SFT on the shipped corpus");
    let sft_cfg = SftConfig { model: model.clone(), data: q.data.join("sets/sft.jsonl"), out: q.out.join("sft"), epochs: q.sft_epochs, learning_rate: 1e-2, ..SftConfig::default() };
    let sft = crate::sft::run(&sft_cfg, false, |_, _, _| {})?;
    say("3/4 PPO with the rule set");
    let mut trainer = Trainer::start(ppo_config(q, &model, &sft.output), false)?;
    let ppo_run = trainer.run.root.clone();
    let ppo_reports = trainer.run(on_step)?;
    drop(trainer);
    say("4/4 evaluating SFT against RL with the same rules");
    let eval_dir = q.out.join("eval");
    let plan = EvalPlan {
        model: model.clone(),
        variants: vec![
            Variant { name: "sft".into(), merged: vec![sft.output.clone()], adapter: None },
            Variant { name: "rl".into(), merged: vec![sft.output.clone()], adapter: Some(ppo_run.join("final/adapter")) },
        ],
        sets: vec![("gold".into(), q.data.join("sets/gold.jsonl")), ("redteam".into(), q.data.join("sets/redteam.jsonl"))],
        ruleset: q.ruleset.clone(),
        out: eval_dir.clone(),
        max_new_tokens: 128,
        batch_size: 16,
        compare: crate::eval::CompareOptions::default(),
    };
    let eval = crate::eval::evaluate(&plan, registry, &crate::rl::trainer::pick_device())?;
    Ok(QuickstartOutputs { model, sft, ppo_run, ppo_reports, eval_dir, eval })
}
