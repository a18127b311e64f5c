//! `medrl eval`: model variants on the gold and red-team sets, scored by the same rule set,
//! compared with intervals, and checked against regression gates. It prints a summary (per set
//! and variant the mean reward with its interval and the rule metrics, the gates, where the full
//! report is); the whole report is in `eval_report.md` and `report.json`.

use clap::Args;
use medrl::eval::{BootstrapConfig, CompareOptions, EvalPlan, Gate, Metric, Report, Variant};
use std::path::{Path, PathBuf};

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
    let operator_key = g.operator_key()?;
    let key = operator_key.as_ref().map(|(k, p)| (k, p.as_path()));
    let report = medrl::eval::evaluate_signed(&plan, &g.registry, &medrl::training::pick_device(), key)?;
    print!("{}", summary(&report, &a.out));
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

/// A number for the summary: three decimals, an absent value as `–`.
fn num(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{x:.3}"))
}

/// A difference: signed, an exact or rounded zero unsigned (as the report writes it).
fn signed(x: f64) -> String {
    if x.abs() < 0.0005 { "0.000".into() } else { format!("{x:+.3}") }
}

/// What `medrl eval` prints: per set, per variant the mean reward with its interval (and its
/// paired difference against the baseline), the rule metrics' point values; the gates with their
/// verdict; where the full report is. Metric names are those of gates and `report.json`.
fn summary(r: &Report, out: &Path) -> String {
    let pct = r.bootstrap.confidence * 100.0;
    let mut s = format!(
        "evaluated {} variant(s) with {}: baseline `{}`, candidate `{}`; [lo, hi] are {pct:.0} % bootstrap intervals over prompts, \
         Δ is the paired difference against `{}`\n",
        r.variants.len(),
        r.ruleset,
        r.baseline,
        r.candidate,
        r.baseline
    );
    let width = r.variants.iter().map(|v| v.name.chars().count()).max().unwrap_or(0);
    for set in &r.sets {
        let c = &set.comparison;
        s.push_str(&format!("\n{} ({} prompts)\n", set.set, c.n));
        for v in &c.variants {
            let est = |m: Metric| v.metrics.get(&m).copied().flatten();
            let reward = est(Metric::MeanReward).map_or("–".to_string(), |e| format!("{:.3} [{:.3}, {:.3}]", e.value, e.lo, e.hi));
            let mut line = format!("  {:<width$}  mean_reward {reward}", v.variant);
            if let Some(d) = c.differences.iter().find(|d| d.variant == v.variant) {
                let diff = d.metrics.get(&Metric::MeanReward).copied().flatten();
                line.push_str(&diff.map_or("  Δ –".to_string(), |e| format!("  Δ {} [{}, {}]", signed(e.value), signed(e.lo), signed(e.hi))));
            }
            for m in Metric::ALL.into_iter().filter(|m| m.rule().is_some() && v.metrics.contains_key(m)) {
                line.push_str(&format!("  {} {}", m.name(), num(est(m).map(|e| e.value))));
            }
            s.push_str(&line);
            s.push('\n');
        }
    }
    if r.gates.is_empty() {
        s.push_str("\nno gates\n");
    } else {
        s.push_str(&format!("\ngates on `{}`: {}\n", r.candidate, if r.gates_passed { "all passed" } else { "FAILED" }));
        for g in &r.gates {
            let verdict = if g.passed { "pass" } else { "FAIL" };
            let mut line =
                format!("  {verdict}  {}: {} {} {} {}", g.expression, g.candidate, num(g.candidate_value), g.op.symbol(), num(g.threshold));
            if let Some(why) = &g.reason {
                line.push_str(&format!(" ({why})"));
            }
            s.push_str(&line);
            s.push('\n');
        }
    }
    s.push_str(&format!(
        "\nfull report: {} (every number: {}; figures and scored answers in {})\n",
        out.join("eval_report.md").display(),
        out.join("report.json").display(),
        out.display()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use medrl::eval::Estimate;
    use medrl::eval::compare::{Difference, SetComparison, VariantMetrics};
    use medrl::eval::report::{INTERVAL_METHOD, SetPlots, SetReport};
    use std::collections::BTreeMap;

    fn estimate(value: f64) -> Option<Estimate> {
        Some(Estimate { value, lo: value - 0.1, hi: value + 0.1 })
    }

    fn variant(name: &str, reward: f64, risky: f64) -> VariantMetrics {
        let metrics: BTreeMap<Metric, Option<Estimate>> = [
            (Metric::ChainCoverage, estimate(0.5)),
            (Metric::EmergencyCoverage, None),
            (Metric::RiskyRate, estimate(risky)),
            (Metric::MeanReward, estimate(reward)),
            (Metric::MeanLength, estimate(20.0)),
            (Metric::EosRate, estimate(1.0)),
        ]
        .into();
        VariantMetrics { variant: name.into(), scored: String::new(), metrics, counted: BTreeMap::new() }
    }

    #[test]
    fn the_summary_has_each_variants_reward_interval_rule_metrics_and_the_gates() {
        let gates: Vec<Gate> = ["redteam.risky_rate <= sft", "redteam.mean_reward > 0.1"].iter().map(|g| g.parse().unwrap()).collect();
        let results = vec![gates[0].check("rl", Some(0.5), Some(0.0)), gates[1].check("rl", Some(0.3), None)];
        let difference = Difference {
            variant: "rl".into(),
            baseline: "sft".into(),
            metrics: [(Metric::MeanReward, Some(Estimate { value: 0.1, lo: -0.05, hi: 0.25 }))].into(),
        };
        let report = Report {
            ruleset: "medical-safety@1.0.0".into(),
            ruleset_sha256: "ab".into(),
            model: "m".into(),
            variants: ["sft", "rl"].map(|n| Variant { name: n.into(), merged: vec![], adapter: None }).to_vec(),
            baseline: "sft".into(),
            candidate: "rl".into(),
            interval_method: INTERVAL_METHOD,
            bootstrap: BootstrapConfig::default(),
            sets: vec![SetReport {
                set: "redteam".into(),
                prompts: "r.jsonl".into(),
                comparison: SetComparison {
                    n: 6,
                    variants: vec![variant("sft", 0.2, 0.0), variant("rl", 0.3, 0.5)],
                    differences: vec![difference],
                    changes: vec![],
                },
                plots: SetPlots { metrics: String::new(), rewards: String::new() },
            }],
            gates_passed: false,
            gates: results,
            rollback: Some("roll back".into()),
        };
        let text = summary(&report, Path::new("runs/eval"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"redteam (6 prompts)"), "{text}");
        assert!(lines.contains(&"  sft  mean_reward 0.200 [0.100, 0.300]  chain_coverage 0.500  emergency_coverage –  risky_rate 0.000"), "{text}");
        assert!(
            lines.contains(
                &"  rl   mean_reward 0.300 [0.200, 0.400]  Δ +0.100 [-0.050, +0.250]  chain_coverage 0.500  emergency_coverage –  risky_rate 0.500"
            ),
            "{text}"
        );
        assert!(lines.contains(&"gates on `rl`: FAILED"), "{text}");
        assert!(lines.contains(&"  FAIL  redteam.risky_rate <= sft: rl 0.500 <= 0.000"), "{text}");
        assert!(lines.contains(&"  pass  redteam.mean_reward > 0.1: rl 0.300 > 0.100"), "{text}");
        assert!(text.contains(&format!("full report: {}", Path::new("runs/eval/eval_report.md").display())), "{text}");
        assert!(text.contains("report.json"), "{text}");
        // Not the whole report: no sample texts, no Markdown tables.
        assert!(!text.contains('|') && !text.contains("# "), "{text}");
    }
}
