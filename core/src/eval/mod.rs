//! Evaluation with the same rules as training: each model variant answers the gold and red-team
//! prompts (greedy, so a report can be reproduced), the rule set scores every answer, and the
//! plan's metrics are computed per set and variant with bootstrap intervals, paired differences
//! against the baseline, and the samples that changed most; `--gate` expressions decide whether
//! the candidate may ship (docs/eval.md).
//!
//! - `metrics`: the metric definitions, per answer;
//! - `bootstrap`: percentile intervals, paired resampling;
//! - `compare`: scored answers → per-set numbers;
//! - `gate`: the gate grammar and its check;
//! - `plot`: the SVG figures;
//! - `report`: `report.json` and `eval_report.md`;
//! - `scored`: the scored-answers files (the review sheets read them).
//!
//! Outputs in the plan's `out` folder: `answers-<set>-<variant>.jsonl`,
//! `scored-<set>-<variant>.jsonl`, `plot-<set>-metrics.svg`, `plot-<set>-rewards.svg`,
//! `report.json`, `eval_report.md`, `audit.jsonl`, and `run_manifest.json` (the log's head and the
//! sha256 of the report and scored files; signed as `run_manifest.sig` with an operator key).

pub mod bootstrap;
pub mod compare;
pub mod gate;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod scored;

pub use bootstrap::{BootstrapConfig, Estimate};
pub use gate::{Gate, GateError, GateResult};
pub use metrics::Metric;
pub use report::{Report, markdown};

use crate::governance::AuditLog;
use crate::governance::audit::AuditError;
use crate::predict::{Answer, PredictError, PredictOptions, Predictor, read_prompts};
use crate::registry::{Registry, RegistryError, VersionRef};
use crate::reward::{Decision, RuleSetScorer, SampleScore, ScorerError, ScoringSession, SessionError};
use crate::rollout::FinishReason;
use candle_core::Device;
use compare::PairingError;
use report::{SetPlots, SetReport};
use scored::{RuleVerdict, ScoredAnswer, ScoredError};
use serde::Serialize;
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
    #[error(transparent)]
    Session(Box<SessionError>),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Pairing(#[from] PairingError),
    #[error(transparent)]
    Scored(#[from] ScoredError),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Anchor(#[from] crate::governance::anchor::AnchorError),
    #[error("{0}")]
    Invalid(String),
}

impl From<SessionError> for EvalError {
    fn from(e: SessionError) -> Self {
        EvalError::Session(Box::new(e))
    }
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
    /// Baseline, candidate, gates, intervals.
    pub compare: CompareOptions,
}

/// How the variants are compared.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The variant the others are compared with (default: the first, the SFT model).
    pub baseline: Option<String>,
    /// The variant the gates are checked for (default: the last, the RL model).
    pub candidate: Option<String>,
    /// Regression gates on the candidate (default none).
    pub gates: Vec<Gate>,
    /// Interval settings (default 2000 resamples, 95 %, seed 0).
    pub bootstrap: BootstrapConfig,
    /// Most improved and most regressed samples listed per set and variant (default 5).
    pub top_samples: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions { baseline: None, candidate: None, gates: Vec::new(), bootstrap: BootstrapConfig::default(), top_samples: 5 }
    }
}

/// A variant or set name: it becomes part of file names (`scored-<set>-<variant>.jsonl`).
fn check_name(what: &str, name: &str) -> Result<(), EvalError> {
    let ok = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(EvalError::Invalid(format!(
            "{what} name `{name}` must start with a letter and hold only letters, digits, `_` and `-` (it becomes part of file names)"
        )))
    }
}

/// Resolves the baseline and candidate indices and checks names, before anything runs.
fn resolve(plan: &EvalPlan) -> Result<(usize, usize), EvalError> {
    if plan.variants.is_empty() {
        return Err(EvalError::Invalid("no variant to evaluate; add one with --adapter NAME=DIR (or NAME= for the base model)".into()));
    }
    if plan.sets.is_empty() {
        return Err(EvalError::Invalid("no prompt set to evaluate; add one with --set NAME=FILE".into()));
    }
    let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
    for (i, n) in names.iter().enumerate() {
        check_name("variant", n)?;
        if names[..i].contains(n) {
            return Err(EvalError::Invalid(format!("variant `{n}` is given twice; each --adapter needs its own name")));
        }
    }
    for (i, (n, _)) in plan.sets.iter().enumerate() {
        check_name("set", n)?;
        if plan.sets[..i].iter().any(|(m, _)| m == n) {
            return Err(EvalError::Invalid(format!("set `{n}` is given twice; each --set needs its own name")));
        }
    }
    let find = |role: &str, flag: &str, name: &Option<String>, default: usize| -> Result<usize, EvalError> {
        match name {
            None => Ok(default),
            Some(n) => names.iter().position(|v| v == n).ok_or_else(|| {
                let valid: Vec<String> = names.iter().map(|v| format!("`{v}`")).collect();
                EvalError::Invalid(format!("{flag} `{n}`: no such variant; the {role} must be one of {}", valid.join(", ")))
            }),
        }
    };
    let baseline = find("baseline", "--baseline", &plan.compare.baseline, 0)?;
    let candidate = find("candidate", "--candidate", &plan.compare.candidate, names.len() - 1)?;
    if baseline == candidate && !plan.compare.gates.is_empty() && names.len() > 1 {
        return Err(EvalError::Invalid(format!(
            "the baseline and the candidate are both `{}`; gates compare two variants (use --baseline and --candidate)",
            names[baseline]
        )));
    }
    Ok((baseline, candidate))
}

/// Every rule's verdict on one answer, in rule-set order, beside the answer and its reward.
fn scored_answer(set: &str, variant: &str, answer: &Answer, score: &SampleScore, scorer: &RuleSetScorer) -> ScoredAnswer {
    let rules = scorer
        .rules
        .iter()
        .zip(&score.rules)
        .map(|(rule, r)| {
            let score = match r.decision {
                Decision::Counted { score } => Some(score),
                _ => None,
            };
            let output = r.evaluation.output.as_ref();
            RuleVerdict {
                rule: rule.manifest.id.clone(),
                version: rule.manifest.version.to_string(),
                kind: rule.manifest.kind.as_str().to_string(),
                outcome: r.evaluation.outcome.as_str().to_string(),
                // A failed evaluation that `on_error` counted (zero, max_penalty) is applicable.
                applicable: score.is_some(),
                score,
                explanation: match (output, &r.evaluation.error) {
                    (Some(o), _) => o.explanation.clone(),
                    (None, Some(e)) => e.clone(),
                    (None, None) => String::new(),
                },
                hits: output.map(|o| o.hits.clone()).unwrap_or_default(),
            }
        })
        .collect();
    ScoredAnswer {
        set: set.to_string(),
        variant: variant.to_string(),
        sample: answer.sample.clone(),
        tokens: answer.tokens,
        eos: answer.finish_reason == FinishReason::Stop,
        reward: score.reward.total(),
        rules,
        // The judge's result is the scorer's last entry, after the rules zipped above.
        judge: score.judge_score(),
    }
}

fn write_file(path: PathBuf, text: &str) -> Result<(), EvalError> {
    std::fs::write(&path, text).map_err(|source| EvalError::Io { path, source })
}

/// Answers, scores and compares; writes the outputs listed in the module header and returns the
/// report. The rule set is loaded from `registry` (with its trust policy) by exact version.
/// Everything that can be checked without a model (names, gates, the rule set, the prompt files)
/// is checked before the first model loads. A failed gate is not an error: the report says so
/// ([`Report::gates_passed`], [`Report::rollback`]) and the caller decides the exit code.
pub fn evaluate(plan: &EvalPlan, registry: &Registry, device: &Device) -> Result<Report, EvalError> {
    evaluate_signed(plan, registry, device, None)
}

/// [`evaluate`], signing the folder's `run_manifest.json` with the operator's key (and the path
/// it was read from, for messages) when one is given.
pub fn evaluate_signed(
    plan: &EvalPlan,
    registry: &Registry,
    device: &Device,
    operator_key: Option<(&crate::registry::signing::KeyFile, &Path)>,
) -> Result<Report, EvalError> {
    let (baseline, candidate) = resolve(plan)?;
    let reference: VersionRef = plan.ruleset.parse().map_err(EvalError::Invalid)?;
    let reference = &reference;
    let mut session = ScoringSession::accept(registry, reference, rayon::current_num_threads())?;
    let rule_ids: Vec<String> = session.scorer.rules.iter().map(|r| r.manifest.id.clone()).collect();
    let metrics = Metric::available(&rule_ids.iter().map(String::as_str).collect::<Vec<_>>());
    let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
    let set_names: Vec<&str> = plan.sets.iter().map(|(n, _)| n.as_str()).collect();
    for g in &plan.compare.gates {
        g.validate(&set_names, &names, names[candidate], names[baseline], &metrics, &plan.ruleset)?;
    }
    let prompts: Vec<_> = plan.sets.iter().map(|(_, path)| read_prompts(path)).collect::<Result<Vec<_>, _>>()?;
    // The metrics and the rules read category and risk: a plain prompt has neither.
    for ((set, path), records) in plan.sets.iter().zip(&prompts) {
        if let Some(p) = records.iter().find(|p| !p.labelled) {
            return Err(EvalError::Invalid(format!(
                "set `{set}` ({}): prompt `{}` is a plain prompt without category and risk; evaluation needs labelled data items (docs/data.md)",
                path.display(),
                p.sample.id
            )));
        }
    }
    std::fs::create_dir_all(&plan.out).map_err(|source| EvalError::Io { path: plan.out.clone(), source })?;
    session.log_to(AuditLog::open(&plan.out.join("audit.jsonl"))?)?;
    let ruleset_sha256 = session.scorer.ruleset.sha256.clone();
    let scorer = &session.scorer;
    let opts = PredictOptions { batch_size: plan.batch_size, sampling: crate::rollout::SamplingConfig::greedy(plan.max_new_tokens), system: None };
    // scored[set][variant]
    let mut scored: Vec<Vec<Vec<ScoredAnswer>>> = vec![Vec::new(); plan.sets.len()];
    for v in &plan.variants {
        let merged: Vec<&Path> = v.merged.iter().map(PathBuf::as_path).collect();
        let predictor = Predictor::load_stacked(&plan.model, &merged, v.adapter.as_deref(), device)?;
        for (s, ((set, _), prompts)) in plan.sets.iter().zip(&prompts).enumerate() {
            let answers = predictor.predict(prompts, &opts, |_| {})?;
            crate::predict::write_answers(&plan.out.join(format!("answers-{set}-{}.jsonl", v.name)), &answers)?;
            let samples: Vec<medrl_sdk::Sample> = answers.iter().map(|a| a.sample.clone()).collect();
            // An aborted batch has no rewards to compare: the evaluation stops (it is logged).
            let (scores, _) = session.score(&samples)?;
            let rows: Vec<ScoredAnswer> = answers.iter().zip(&scores).map(|(a, sc)| scored_answer(set, &v.name, a, sc, scorer)).collect();
            scored::write(&plan.out.join(scored::file_name(set, &v.name)), &rows)?;
            scored[s].push(rows);
        }
    }
    let header = ReportHeader { ruleset: reference.to_string(), ruleset_sha256, model: plan.model.clone() };
    let report = build_report(plan, header, baseline, candidate, &metrics, &scored)?;
    write_outputs(&plan.out, &report, &scored)?;
    // Where the audit log ends and what the scores were, anchored (`medrl audit verify OUT`).
    let head = crate::governance::anchor::HeadFile::new("audit.jsonl", session.audit().expect("attached above").head()?);
    let mut files = vec!["report.json".to_string()];
    files.extend(plan.sets.iter().flat_map(|(set, _)| plan.variants.iter().map(move |v| scored::file_name(set, &v.name))));
    let manifest =
        crate::governance::anchor::RunManifest::new("eval", reference.to_string(), session.scorer.ruleset.sha256.clone(), head, &plan.out, &files)?;
    manifest.write(&plan.out, operator_key)?;
    Ok(report)
}

/// What the report says about where its numbers come from.
pub struct ReportHeader {
    pub ruleset: String,
    pub ruleset_sha256: String,
    pub model: PathBuf,
}

/// The report from scored answers (`scored[set][variant]`, sets and variants in plan order):
/// intervals, differences, changes, gates. No model and no file.
pub fn build_report(
    plan: &EvalPlan,
    header: ReportHeader,
    baseline: usize,
    candidate: usize,
    metrics: &[Metric],
    scored: &[Vec<Vec<ScoredAnswer>>],
) -> Result<Report, EvalError> {
    let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
    let sets = plan
        .sets
        .iter()
        .zip(scored)
        .map(|((set, path), answers)| {
            let comparison = compare::compare_set(set, &names, answers, baseline, metrics, &plan.compare.bootstrap, plan.compare.top_samples)?;
            let plots = SetPlots { metrics: format!("plot-{set}-metrics.svg"), rewards: format!("plot-{set}-rewards.svg") };
            Ok(SetReport { set: set.clone(), prompts: path.clone(), comparison, plots })
        })
        .collect::<Result<Vec<_>, EvalError>>()?;
    let mut report = Report {
        ruleset: header.ruleset,
        ruleset_sha256: header.ruleset_sha256,
        model: header.model,
        variants: plan.variants.clone(),
        baseline: names[baseline].to_string(),
        candidate: names[candidate].to_string(),
        interval_method: report::INTERVAL_METHOD,
        bootstrap: plan.compare.bootstrap,
        sets,
        gates: Vec::new(),
        gates_passed: true,
        rollback: None,
    };
    let gates: Vec<GateResult> = plan
        .compare
        .gates
        .iter()
        .map(|g| {
            let reference = match &g.reference {
                gate::Reference::Variant(v) => report.value(&g.set, v, g.metric),
                gate::Reference::Number(_) => None,
            };
            g.check(names[candidate], report.value(&g.set, names[candidate], g.metric), reference)
        })
        .collect();
    report.gates = gates;
    let failed = report.failed_gates().count();
    report.gates_passed = failed == 0;
    if failed > 0 {
        report.rollback = Some(report::rollback_message(&plan.variants[baseline], names[candidate], failed));
    }
    Ok(report)
}

/// Writes the figures, `report.json` and `eval_report.md`.
fn write_outputs(out: &Path, report: &Report, scored: &[Vec<Vec<ScoredAnswer>>]) -> Result<(), EvalError> {
    let names: Vec<&str> = report.variants.iter().map(|v| v.name.as_str()).collect();
    for (s, answers) in report.sets.iter().zip(scored) {
        let rows: Vec<(Metric, Vec<Option<Estimate>>)> = Metric::ALL
            .into_iter()
            .filter(|m| m.is_unit_scale())
            .filter(|m| s.comparison.variants.first().is_some_and(|v| v.metrics.contains_key(m)))
            .map(|m| (m, s.comparison.variants.iter().map(|v| v.metrics[&m]).collect()))
            .collect();
        let confidence = report.bootstrap.confidence * 100.0;
        let svg = plot::metric_bars(&format!("{}: metrics per variant, {confidence:.0} % bootstrap intervals", s.set), &names, &rows)?;
        write_file(out.join(&s.plots.metrics), &svg)?;
        let rewards: Vec<(&str, Vec<f64>)> = names.iter().zip(answers).map(|(n, a)| (*n, a.iter().filter_map(|x| x.reward).collect())).collect();
        let svg = plot::reward_histograms(&format!("{}: reward distribution per variant", s.set), &rewards)?;
        write_file(out.join(&s.plots.rewards), &svg)?;
    }
    write_file(out.join("report.json"), &serde_json::to_string_pretty(report).expect("plain data"))?;
    write_file(out.join("eval_report.md"), &markdown(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use compare::tests::answer;

    fn plan(gates: &[&str]) -> EvalPlan {
        let variant = |name: &str, adapter: Option<&str>| Variant { name: name.into(), merged: vec![], adapter: adapter.map(PathBuf::from) };
        EvalPlan {
            model: "model".into(),
            variants: vec![variant("sft", Some("runs/sft/adapter")), variant("rl", Some("runs/ppo/final/adapter"))],
            sets: vec![("redteam".into(), "redteam.jsonl".into())],
            ruleset: "medical-safety@1.0.0".into(),
            out: "out".into(),
            max_new_tokens: 8,
            batch_size: 2,
            compare: CompareOptions { gates: gates.iter().map(|g| g.parse().unwrap()).collect(), ..CompareOptions::default() },
        }
    }

    fn header() -> ReportHeader {
        ReportHeader { ruleset: "medical-safety@1.0.0".into(), ruleset_sha256: "abc".into(), model: "model".into() }
    }

    /// sft: no risky answer; rl: 2 of 4 risky, rewards lower on those.
    fn scored() -> Vec<Vec<Vec<ScoredAnswer>>> {
        let ids = ["a", "b", "c", "d"];
        let sft = ids.iter().map(|id| answer("sft", id, 0.0, Some(0.4))).collect();
        let rl = ids.iter().zip([0.0, 0.5, 0.8, 0.0]).map(|(id, risk)| answer("rl", id, risk, Some(0.4 - risk))).collect();
        vec![vec![sft, rl]]
    }

    #[test]
    fn a_risky_candidate_fails_the_red_team_gate_and_the_report_says_to_roll_back() {
        let p = plan(&["redteam.risky_rate <= sft", "redteam.mean_reward > -1"]);
        let metrics = Metric::available(&["risk"]);
        let r = build_report(&p, header(), 0, 1, &metrics, &scored()).unwrap();
        assert!(!r.gates_passed);
        let g = &r.gates[0];
        assert_eq!((g.candidate_value, g.reference_value, g.passed), (Some(0.5), Some(0.0), false));
        assert!(r.gates[1].passed);
        let rollback = r.rollback.as_deref().unwrap();
        assert!(
            rollback.contains(
                "1 regression gate(s) failed: roll back to the baseline (SFT) adapter `sft` (adapter `runs/sft/adapter`) and do not ship `rl`"
            ),
            "{rollback}"
        );
        let md = markdown(&r);
        assert!(md.contains("| `redteam.risky_rate <= sft` | `rl` 0.500 | `sft` 0.000 | <= 0.000 | **FAIL** |"), "{md}");
        assert!(md.contains(&format!("**{rollback}.**")), "{md}");
        assert!(md.contains("| risky-prescription rate ↓ | 0.000 [0.000, 0.000] | 0.500 ["), "{md}");
        assert!(
            md.contains("### Most regressed: `rl` against `sft`") && md.contains("#### `c` (`medication`): reward 0.400 → -0.400 (-0.800)"),
            "{md}"
        );
        assert!(md.contains("No sample improved."), "{md}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["gates"][0]["passed"], false);
        assert_eq!(json["sets"][0]["variants"][1]["metrics"]["risky_rate"]["value"], 0.5);
        assert_eq!(json["sets"][0]["differences"][0]["metrics"]["risky_rate"]["value"], 0.5);
    }

    #[test]
    fn passing_gates_give_no_rollback() {
        let p = plan(&["redteam.risky_rate <= sft + 0.5"]);
        let r = build_report(&p, header(), 0, 1, &Metric::available(&["risk"]), &scored()).unwrap();
        assert!(r.gates_passed && r.rollback.is_none());
        assert!(markdown(&r).contains("All gates passed."));
    }

    #[test]
    fn names_baseline_and_candidate_are_checked_before_anything_runs() {
        let mut p = plan(&[]);
        assert_eq!(resolve(&p).unwrap(), (0, 1));
        p.compare.baseline = Some("rl".into());
        p.compare.candidate = Some("sft".into());
        assert_eq!(resolve(&p).unwrap(), (1, 0));
        p.compare.baseline = Some("base".into());
        let err = resolve(&p).unwrap_err().to_string();
        assert!(err.contains("--baseline `base`: no such variant; the baseline must be one of `sft`, `rl`"), "{err}");
        let mut p = plan(&["redteam.risky_rate <= 0.1"]);
        p.compare.candidate = Some("sft".into());
        assert!(resolve(&p).unwrap_err().to_string().contains("both `sft`"));
        let mut p = plan(&[]);
        p.variants[1].name = "sft".into();
        assert!(resolve(&p).unwrap_err().to_string().contains("`sft` is given twice"));
        p.variants[1].name = "rl/2".into();
        assert!(resolve(&p).unwrap_err().to_string().contains("variant name `rl/2`"));
    }
}
