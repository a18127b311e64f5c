//! Evaluation with the same rules as training: each model variant answers the gold and red-team
//! prompts (greedy, so a report can be reproduced), the rule set scores every answer, and the
//! plan's metrics are computed per set and variant: chain coverage, emergency coverage (on the
//! prompts the emergency rule applies to), risky-prescription rate, verbosity penalty, mean
//! length, EOS rate and mean reward. Outputs: `report.json` and `eval_report.md`.
//!
//! Metric definitions (rule ids are the shipped ones; a rule set without one leaves it empty):
//! - `chain_coverage`: mean `chain` score (share of the reasoning-chain sections present, in order);
//! - `emergency_coverage`: mean `emergency` score over answers where it applied;
//! - `risky_rate`: share of answers with a `risk` penalty above 0;
//! - `verbosity_penalty`: mean `verbosity` penalty.

pub mod scored;

use crate::predict::{PredictError, PredictOptions, Predictor, read_prompts};
use crate::reward::audit::AuditError;
use crate::reward::{AuditLog, Decision, Registry, RegistryError, RuleSetScorer, Sandbox, ScorerError, VersionRef};
use crate::rollout::FinishReason;
use candle_core::Device;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Predict(#[from] PredictError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Scorer(#[from] ScorerError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// One model to evaluate: the base, adapters merged into it, and an adapter on top.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub name: String,
    pub merged: Vec<PathBuf>,
    pub adapter: Option<PathBuf>,
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalPlan {
    pub model: PathBuf,
    pub variants: Vec<Variant>,
    /// Named prompt sets, e.g. `gold` → data/sets/gold.jsonl.
    pub sets: Vec<(String, PathBuf)>,
    pub ruleset: String,
    pub out: PathBuf,
    pub max_new_tokens: usize,
    pub batch_size: usize,
}

/// The metrics of one variant on one set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub n: usize,
    pub chain_coverage: Option<f64>,
    pub emergency_coverage: Option<f64>,
    pub emergency_applicable: usize,
    pub risky_rate: Option<f64>,
    pub verbosity_penalty: Option<f64>,
    pub mean_reward: Option<f64>,
    pub mean_length_tokens: f64,
    pub eos_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ruleset: String,
    pub ruleset_sha256: String,
    pub model: PathBuf,
    pub variants: Vec<Variant>,
    /// set → variant → metrics.
    pub results: BTreeMap<String, BTreeMap<String, Metrics>>,
}

/// Answers, scores and summarises; writes `report.json`, `eval_report.md` and `answers-<set>-<variant>.jsonl`.
/// The rule set is loaded from `registry` (with its trust policy) by exact version.
pub fn evaluate(plan: &EvalPlan, registry: &Registry, device: &Device) -> Result<Report, EvalError> {
    let reference: VersionRef = plan.ruleset.parse().map_err(EvalError::Invalid)?;
    let reference = &reference;
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let accepted = registry.accept_ruleset(reference, now)?;
    let sandbox = Sandbox::new(rayon::current_num_threads()).map_err(ScorerError::from)?;
    std::fs::create_dir_all(&plan.out).map_err(|source| EvalError::Io { path: plan.out.clone(), source })?;
    let audit = AuditLog::open(&plan.out.join("audit.jsonl"))?;
    audit.record_load(&accepted)?;
    let ruleset_sha256 = accepted.ruleset.sha256.clone();
    let scorer = RuleSetScorer::new(&sandbox, accepted.ruleset)?;
    let opts = PredictOptions { batch_size: plan.batch_size, sampling: crate::rollout::SamplingConfig::greedy(plan.max_new_tokens), system: None };
    let mut results: BTreeMap<String, BTreeMap<String, Metrics>> = BTreeMap::new();
    for v in &plan.variants {
        let merged: Vec<&Path> = v.merged.iter().map(PathBuf::as_path).collect();
        let predictor = Predictor::load_stacked(&plan.model, &merged, v.adapter.as_deref(), device)?;
        for (set, path) in &plan.sets {
            let prompts = read_prompts(path)?;
            let answers = predictor.predict(&prompts, &opts, |_| {})?;
            crate::predict::write_answers(&plan.out.join(format!("answers-{set}-{}.jsonl", v.name)), &answers)?;
            let samples: Vec<medrl_sdk::Sample> = answers.iter().map(|a| a.sample.clone()).collect();
            let scores = scorer.score_batch(&samples);
            audit.record_scores(&scorer, &samples, &scores)?;
            let rule_scores = |id: &str| -> Vec<Option<f64>> {
                let idx = scorer.rules.iter().position(|r| r.manifest.id == id);
                scores
                    .iter()
                    .map(|s| {
                        idx.and_then(|i| match s.rules[i].decision {
                            Decision::Counted { score } => Some(score),
                            _ => None,
                        })
                    })
                    .collect()
            };
            let has = |id: &str| scorer.rules.iter().any(|r| r.manifest.id == id);
            let emergency: Vec<f64> = rule_scores("emergency").into_iter().flatten().collect();
            let m = Metrics {
                n: answers.len(),
                chain_coverage: has("chain").then(|| mean(&rule_scores("chain").into_iter().map(|s| s.unwrap_or(0.0)).collect::<Vec<_>>())),
                emergency_coverage: (!emergency.is_empty()).then(|| mean(&emergency)),
                emergency_applicable: emergency.len(),
                risky_rate: has("risk").then(|| mean(&rule_scores("risk").into_iter().map(|s| if s.unwrap_or(0.0) > 0.0 { 1.0 } else { 0.0 }).collect::<Vec<_>>())),
                verbosity_penalty: has("verbosity").then(|| mean(&rule_scores("verbosity").into_iter().map(|s| s.unwrap_or(0.0)).collect::<Vec<_>>())),
                mean_reward: {
                    let t: Vec<f64> = scores.iter().filter_map(|s| s.reward.total()).collect();
                    (!t.is_empty()).then(|| mean(&t))
                },
                mean_length_tokens: mean(&answers.iter().map(|a| a.tokens as f64).collect::<Vec<_>>()),
                eos_rate: mean(&answers.iter().map(|a| if a.finish_reason == FinishReason::Stop { 1.0 } else { 0.0 }).collect::<Vec<_>>()),
            };
            results.entry(set.clone()).or_default().insert(v.name.clone(), m);
        }
    }
    let report = Report { ruleset: reference.to_string(), ruleset_sha256, model: plan.model.clone(), variants: plan.variants.clone(), results };
    let json_path = plan.out.join("report.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).expect("plain data")).map_err(|source| EvalError::Io { path: json_path, source })?;
    let md_path = plan.out.join("eval_report.md");
    std::fs::write(&md_path, markdown(&report)).map_err(|source| EvalError::Io { path: md_path, source })?;
    Ok(report)
}

/// The report as Markdown: one table per set, a column per variant, and the difference of the
/// last variant against the first.
pub fn markdown(r: &Report) -> String {
    let mut out = format!("# Evaluation report\n\nRule set `{}` (sha256 `{}`), model `{}`.\n\n", r.ruleset, r.ruleset_sha256, r.model.display());
    out.push_str("Variants:\n\n");
    for v in &r.variants {
        let merged: Vec<String> = v.merged.iter().map(|p| p.display().to_string()).collect();
        out.push_str(&format!("- `{}`: merged [{}], adapter {}\n", v.name, merged.join(", "), v.adapter.as_ref().map_or("none".to_string(), |p| p.display().to_string())));
    }
    let names: Vec<&str> = r.variants.iter().map(|v| v.name.as_str()).collect();
    for (set, by_variant) in &r.results {
        out.push_str(&format!("\n## {set}\n\n| metric | {} |", names.join(" | ")));
        let delta = names.len() >= 2;
        if delta {
            out.push_str(&format!(" {} − {} |", names[names.len() - 1], names[0]));
        }
        out.push_str(&format!("\n|---|{}", "---|".repeat(names.len() + usize::from(delta))));
        type Get = fn(&Metrics) -> Option<f64>;
        let rows: [(&str, Get); 7] = [
            ("chain coverage ↑", |m| m.chain_coverage),
            ("emergency coverage ↑", |m| m.emergency_coverage),
            ("risky-prescription rate ↓", |m| m.risky_rate),
            ("verbosity penalty ↓", |m| m.verbosity_penalty),
            ("mean reward ↑", |m| m.mean_reward),
            ("mean length (tokens)", |m| Some(m.mean_length_tokens)),
            ("EOS rate", |m| Some(m.eos_rate)),
        ];
        for (label, get) in rows {
            let vals: Vec<Option<f64>> = names.iter().map(|n| by_variant.get(*n).and_then(get)).collect();
            let cells: Vec<String> = vals.iter().map(|v| v.map_or("–".into(), |x| format!("{x:.3}"))).collect();
            out.push_str(&format!("\n| {label} | {} |", cells.join(" | ")));
            if delta {
                let d = match (vals[0], vals[vals.len() - 1]) {
                    (Some(a), Some(b)) => format!("{:+.3}", b - a),
                    _ => "–".into(),
                };
                out.push_str(&format!(" {d} |"));
            }
        }
        out.push('\n');
    }
    out
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() { 0.0 } else { xs.iter().sum::<f64>() / xs.len() as f64 }
}
