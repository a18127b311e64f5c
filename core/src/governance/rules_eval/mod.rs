//! `medrl rules eval`: how often each rule of a rule set agrees with clinician labels on answers
//! its author never saw, and whether the aggregated reward ranks careful answers above
//! degenerate ones (docs/rules_eval.md).
//!
//! The labels ([`labels`], the format of `data/rules-eval/FORMAT.md`) are read and checked in
//! full first; the rule set is accepted under the normal trust rules and compiled
//! ([`crate::reward::ScoringSession`], the trainer's path), thresholds and gates are checked
//! against its rules, and only then is the audit log opened and every answer and both sides of
//! every pair scored in one batch. The figures ([`metrics`]) are assembled per split, rule and
//! group ([`report`]), rendered as Markdown ([`markdown`]) or JSON, and `--gate` expressions
//! ([`gate`]) decide the exit code.

pub mod gate;
pub mod labels;
pub mod markdown;
pub mod metrics;
pub mod report;

pub use gate::{Gate, GateError, GateResult};
pub use labels::{LabelCorpus, LabelError, Verdict};
pub use report::{EvalReport, EvaluatedRule, ScoredSample};

use crate::eval::bootstrap::BootstrapConfig;
use crate::reward::outcome::decide;
use crate::reward::scorer::{LoadedRule, RuleSetScorer, SampleScore};
use crate::reward::{Reward, ScoringSession, SessionError};
use medrl_sdk::Sample;
use metrics::RuleCall;
use std::collections::HashMap;
use std::path::Path;

/// What `medrl rules eval` does besides reading and scoring.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// `--threshold RULE=X`: a rule's threshold instead of its default
    /// ([`metrics::default_threshold`]).
    pub thresholds: Vec<(String, f64)>,
    /// A pair is ordered when good − hack ≥ this (default 0.05).
    pub margin: f64,
    pub bootstrap: BootstrapConfig,
    pub gates: Vec<Gate>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { thresholds: Vec::new(), margin: DEFAULT_MARGIN, bootstrap: BootstrapConfig::default(), gates: Vec::new() }
    }
}

/// The default `--margin`: a twentieth of the reward's usual [0, 1] span, far above the
/// rounding of any one rule's threshold yet below one rule's full weight.
pub const DEFAULT_MARGIN: f64 = 0.05;

/// Why an evaluation cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Labels(#[from] LabelError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error("--threshold {rule}={value}: {problem}")]
    Threshold { rule: String, value: String, problem: String },
    #[error("--margin {0} is not a finite number ≥ 0")]
    Margin(f64),
    #[error("--resamples 0 and a confidence outside (0, 1) give no interval; use e.g. --resamples 2000")]
    Bootstrap,
    #[error(transparent)]
    AuditLog(#[from] crate::governance::audit::AuditError),
}

/// Parses `RULE=X`.
pub fn parse_threshold(text: &str) -> Result<(String, f64), EvalError> {
    let bad = |problem: &str| {
        let (rule, value) = text.split_once('=').unwrap_or((text, ""));
        EvalError::Threshold { rule: rule.into(), value: value.into(), problem: problem.into() }
    };
    let (rule, value) = text.split_once('=').ok_or_else(|| bad("write RULE=X, e.g. risk=0.3"))?;
    let x: f64 = value.trim().parse().map_err(|_| bad("X is not a number"))?;
    if !x.is_finite() {
        return Err(bad("X is not finite"));
    }
    Ok((rule.trim().to_string(), x))
}

/// The rules of `scorer` with their thresholds; a `--threshold` naming no rule is refused.
pub fn evaluated_rules(scorer: &RuleSetScorer, thresholds: &[(String, f64)]) -> Result<Vec<EvaluatedRule>, EvalError> {
    let ids: Vec<&str> = scorer.rules.iter().map(|r| r.manifest.id.as_str()).collect();
    for (rule, value) in thresholds {
        if !ids.contains(&rule.as_str()) {
            return Err(EvalError::Threshold {
                rule: rule.clone(),
                value: value.to_string(),
                problem: format!("{} has no rule `{rule}` (its rules: {})", scorer.ruleset.manifest.reference(), ids.join(", ")),
            });
        }
    }
    let rules: Vec<EvaluatedRule> = scorer.rules.iter().map(|r| evaluated(r, thresholds)).collect();
    // A threshold given outside the rule's range makes its answer constant: a typo, not a setting.
    for (r, loaded) in rules.iter().zip(&scorer.rules) {
        let [lo, hi] = loaded.manifest.output_range;
        if r.threshold_from == "flag" && (r.threshold < lo || r.threshold > hi) {
            return Err(EvalError::Threshold {
                rule: r.id.clone(),
                value: r.threshold.to_string(),
                problem: format!("outside {}'s output range [{lo}, {hi}], so the rule's answer would never change", loaded.manifest.reference()),
            });
        }
    }
    Ok(rules)
}

fn evaluated(rule: &LoadedRule, thresholds: &[(String, f64)]) -> EvaluatedRule {
    let id = rule.manifest.id.clone();
    let given = thresholds.iter().rev().find(|(r, _)| *r == id).map(|(_, x)| *x);
    EvaluatedRule {
        threshold: given.unwrap_or_else(|| metrics::default_threshold(&id)),
        threshold_from: if given.is_some() { "flag" } else { "default" },
        version: rule.manifest.version.to_string(),
        kind: rule.manifest.kind.as_str().to_string(),
        id,
    }
}

/// Every sample the corpus asks for: each split's answers, then both sides of each pair.
pub fn samples(corpus: &LabelCorpus) -> Vec<Sample> {
    let mut out = Vec::new();
    for split in &corpus.splits {
        out.extend(split.answers.iter().map(|a| a.sample.clone()));
        for p in &split.pairs {
            out.push(p.good_sample());
            out.push(p.hack_sample());
        }
    }
    out
}

/// The session's scores by sample id, the rules' results only (a judge's is left out: it has
/// no label key and no threshold).
fn by_id(scores: Vec<SampleScore>, rules: usize) -> HashMap<String, ScoredSample> {
    scores
        .into_iter()
        .map(|s| {
            let calls = s.rules.iter().take(rules).map(|r| RuleCall::new(&r.evaluation, r.decision)).collect();
            let reward = match s.reward {
                Reward::Scored { total, .. } => Some(total),
                _ => None,
            };
            (s.sample_id, ScoredSample { calls, reward })
        })
        .collect()
}

/// Checks the options against the accepted rule set and the labels; nothing is scored or
/// logged yet. Returns the rules as evaluated.
pub fn prepare(session: &ScoringSession, corpus: &LabelCorpus, opts: &EvalOptions) -> Result<Vec<EvaluatedRule>, EvalError> {
    if !(opts.margin.is_finite() && opts.margin >= 0.0) {
        return Err(EvalError::Margin(opts.margin));
    }
    if opts.bootstrap.resamples == 0 || !(opts.bootstrap.confidence > 0.0 && opts.bootstrap.confidence < 1.0) {
        return Err(EvalError::Bootstrap);
    }
    let rules = evaluated_rules(&session.scorer, &opts.thresholds)?;
    let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    let splits: Vec<&str> = corpus.splits.iter().map(|s| s.name.as_str()).collect();
    for g in &opts.gates {
        g.validate(&session.scorer.ruleset.manifest.reference(), &ids, &splits)?;
    }
    Ok(rules)
}

/// Scores the corpus through `session` (which must have its audit log attached) and builds the
/// report, gates checked. A batch a rule's `on_error = abort` stopped is still reported: the
/// aborted samples have no reward and the rule's answer on them is "failed".
pub fn evaluate(session: &ScoringSession, corpus: &LabelCorpus, labels: &Path, opts: &EvalOptions) -> Result<EvalReport, EvalError> {
    let rules = prepare(session, corpus, opts)?;
    let samples = samples(corpus);
    let scores = match session.score(&samples) {
        Ok((scores, _)) => scores,
        Err(SessionError::Aborted { scores, .. }) => scores,
        Err(e) => return Err(e.into()),
    };
    let scored = by_id(scores, rules.len());
    let accepted = &session.accepted;
    let manifest = &session.scorer.ruleset.manifest;
    let mut report = EvalReport {
        format: report::REPORT_FORMAT,
        ruleset: report::RuleSetInfo {
            reference: manifest.reference(),
            revision: manifest.revision,
            sha256: session.scorer.ruleset.sha256.clone(),
            signers: accepted.signers.as_ref().map(|s| s.iter().map(|x| format!("{} ({})", x.name, x.key_id)).collect()),
        },
        labels: labels.display().to_string(),
        splits: corpus.splits.iter().map(|s| report::split_report(s, &rules, &scored, opts.margin, &opts.bootstrap)).collect(),
        rules,
        margin: opts.margin,
        bootstrap: opts.bootstrap,
        gates: Vec::new(),
        gates_passed: true,
    };
    report.gates = opts.gates.iter().flat_map(|g| g.check(&report)).collect();
    report.gates_passed = report.gates.iter().all(|g| g.passed);
    Ok(report)
}

/// One published rule alone (its manifest's parameters, no rule set) against the labels that
/// name it: what `medrl rules test --labels` prints beside the golden vectors. Pairs need a
/// rule set's reward and are left out. `None` for a split with no label for the rule.
pub fn rule_alone(rule: &LoadedRule, corpus: &LabelCorpus, opts: &EvalOptions) -> Vec<(String, Option<report::RuleReport>)> {
    let info = evaluated(rule, &opts.thresholds);
    corpus
        .splits
        .iter()
        .map(|split| {
            let answers: Vec<&labels::LabelledAnswer> = split.answers.iter().filter(|a| a.labels.contains_key(&info.id)).collect();
            let encoded: Vec<Vec<u8>> = answers.iter().map(|a| crate::reward::scorer::encode_sample(&a.sample)).collect();
            let runs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
            let scored: HashMap<String, ScoredSample> = answers
                .iter()
                .zip(rule.evaluate_many(&runs))
                .map(|(a, e)| {
                    let decision = decide(&e, rule.manifest.on_error, rule.manifest.worst_score());
                    (a.id.clone(), ScoredSample { calls: vec![RuleCall::new(&e, decision)], reward: None })
                })
                .collect();
            (split.name.clone(), report::rule_report(split, 0, &info, &scored, &opts.bootstrap))
        })
        .collect()
}
