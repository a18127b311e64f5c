//! `medrl eval`: model variants on the gold and red-team sets, scored by the same rule set.

use crate::eval::{EvalPlan, Variant};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct EvalArgs {
    /// Base model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// An adapter merged into the base for every variant (the SFT adapter under an RL one).
    #[arg(long)]
    pub merge: Vec<PathBuf>,
    /// A named variant: `NAME=ADAPTER_DIR`, or `NAME=` for the (merged) base alone. Repeatable.
    #[arg(long = "adapter", value_name = "NAME=DIR", required = true)]
    pub adapters: Vec<String>,
    /// A named prompt set: `NAME=FILE`. Default: gold and redteam from data/sets.
    #[arg(long = "set", value_name = "NAME=FILE")]
    pub sets: Vec<String>,
    #[arg(long, default_value = "medical-safety@1.0.0")]
    pub ruleset: String,
    #[arg(long, default_value = "runs/eval")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
}

fn named(s: &str) -> anyhow::Result<(String, String)> {
    let (n, v) = s.split_once('=').ok_or_else(|| anyhow::anyhow!("`{s}` is not NAME=PATH (for example sft= or rl=runs/ppo/final/adapter)"))?;
    Ok((n.to_string(), v.to_string()))
}

pub fn run(a: EvalArgs, g: &super::Globals) -> anyhow::Result<()> {
    let variants = a
        .adapters
        .iter()
        .map(|s| {
            let (name, dir) = named(s)?;
            Ok(Variant { name, merged: a.merge.clone(), adapter: (!dir.is_empty()).then(|| PathBuf::from(dir)) })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let data = g.registry.root();
    let sets = if a.sets.is_empty() {
        vec![("gold".to_string(), data.join("sets/gold.jsonl")), ("redteam".to_string(), data.join("sets/redteam.jsonl"))]
    } else {
        a.sets.iter().map(|s| named(s).map(|(n, p)| (n, PathBuf::from(p)))).collect::<anyhow::Result<_>>()?
    };
    let plan = EvalPlan { model: a.model, variants, sets, ruleset: a.ruleset, out: a.out.clone(), max_new_tokens: a.max_new_tokens, batch_size: a.batch_size };
    let report = crate::eval::evaluate(&plan, &g.registry, &crate::rl::trainer::pick_device())?;
    print!("{}", crate::eval::markdown(&report));
    println!("\nwrote {} and {}", a.out.join("eval_report.md").display(), a.out.join("report.json").display());
    Ok(())
}
