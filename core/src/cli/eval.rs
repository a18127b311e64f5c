//! `medrl eval`: model variants on the gold and red-team sets, scored by the same rule set,
//! compared with intervals, and checked against regression gates.

use clap::Args;
use medrl::eval::{BootstrapConfig, CompareOptions, EvalPlan, Gate, Variant};
use std::path::PathBuf;

/// Exit code of `medrl eval` when a regression gate failed (the report is written first).
pub const EXIT_GATE_FAILED: u8 = 3;

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
    /// The variant the others are compared with (default: the first --adapter).
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// The variant the gates are checked for (default: the last --adapter).
    #[arg(long, value_name = "NAME")]
    pub candidate: Option<String>,
    /// A regression gate on the candidate, e.g. `redteam.risky_rate <= sft` or
    /// `gold.chain_coverage >= sft - 0.02`. Repeatable. A failed gate exits with code 3.
    #[arg(long = "gate", value_name = "SET.METRIC OP REF")]
    pub gates: Vec<String>,
    /// Most improved and most regressed samples listed per set.
    #[arg(long, default_value_t = 5)]
    pub top_samples: usize,
    /// Bootstrap resamples per set.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn named(s: &str) -> anyhow::Result<(String, String)> {
    let (n, v) = s.split_once('=').ok_or_else(|| anyhow::anyhow!("`{s}` is not NAME=PATH (for example sft= or rl=runs/ppo/final/adapter)"))?;
    Ok((n.to_string(), v.to_string()))
}

pub fn run(a: EvalArgs, g: &super::Globals) -> anyhow::Result<()> {
    // Gate syntax first: a typo must not cost a model run.
    let gates = a.gates.iter().map(|s| s.parse::<Gate>()).collect::<Result<Vec<_>, _>>()?;
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
    let compare = CompareOptions {
        baseline: a.baseline,
        candidate: a.candidate,
        gates,
        bootstrap: BootstrapConfig { resamples: a.resamples, seed: a.seed, ..BootstrapConfig::default() },
        top_samples: a.top_samples,
    };
    let plan = EvalPlan {
        model: a.model,
        variants,
        sets,
        ruleset: a.ruleset,
        out: a.out.clone(),
        max_new_tokens: a.max_new_tokens,
        batch_size: a.batch_size,
        compare,
    };
    let report = medrl::eval::evaluate(&plan, &g.registry, &medrl::rl::trainer::pick_device())?;
    print!("{}", medrl::eval::markdown(&report));
    println!("\nwrote {} and {}", a.out.join("eval_report.md").display(), a.out.join("report.json").display());
    if let Some(message) = &report.rollback {
        let failed: Vec<&str> = report.failed_gates().map(|g| g.expression.as_str()).collect();
        return Err(super::ExitError {
            code: EXIT_GATE_FAILED,
            message: format!("{message}; failed: {}; see {}", failed.join(", "), a.out.join("eval_report.md").display()),
        }
        .into());
    }
    Ok(())
}
