//! From scored answers to the report's numbers: per set, every variant's metrics with bootstrap
//! intervals, each variant's paired difference against the baseline, and the samples whose
//! reward rose and fell the most. Pure: no model, no files.

use super::bootstrap::{BootstrapConfig, Estimate, Resamples};
use super::metrics::Metric;
use super::scored::ScoredAnswer;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A variant's answers to one set, by sample id, must match the baseline's prompts one for one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PairingError {
    #[error("set `{set}`: sample id `{id}` occurs more than once; paired comparison needs unique ids (fix the prompt file)")]
    DuplicateId { set: String, id: String },
    #[error("set `{set}`: variant `{variant}` has no answer to sample `{id}` that the baseline `{baseline}` answered")]
    Missing { set: String, variant: String, baseline: String, id: String },
    #[error("set `{set}`: variant `{variant}` answered {got} prompts, the baseline `{baseline}` {expected}")]
    Count { set: String, variant: String, baseline: String, got: usize, expected: usize },
}

/// One variant's metrics on one set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantMetrics {
    pub variant: String,
    /// The scored-answers file of this set and variant.
    pub scored: String,
    /// Each metric with its interval; `null` when no answer counted toward it (no prompt the
    /// emergency rule applies to). A metric whose rule the rule set lacks is absent.
    pub metrics: BTreeMap<Metric, Option<Estimate>>,
    /// How many answers counted toward each metric (for emergency coverage: the applicable prompts).
    pub counted: BTreeMap<Metric, usize>,
}

/// A variant's paired difference against the baseline on one set: `variant − baseline`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub variant: String,
    pub baseline: String,
    pub metrics: BTreeMap<Metric, Option<Estimate>>,
}

/// One rule's verdict on one answer, as a reader needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleNote {
    pub rule: String,
    pub score: Option<f64>,
    pub explanation: String,
}

/// One side of a changed sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerView {
    pub response: String,
    pub reward: f64,
    pub rules: Vec<RuleNote>,
}

/// A sample whose reward changed between the baseline and a variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleChange {
    pub id: String,
    pub category: String,
    pub prompt: String,
    /// `variant reward − baseline reward`.
    pub reward_difference: f64,
    pub baseline: AnswerView,
    pub variant: AnswerView,
}

/// The samples that improved and regressed most for one variant against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    pub variant: String,
    pub baseline: String,
    /// Largest reward gain first.
    pub improved: Vec<SampleChange>,
    /// Largest reward loss first.
    pub regressed: Vec<SampleChange>,
}

/// Everything the report says about one set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetComparison {
    pub n: usize,
    pub variants: Vec<VariantMetrics>,
    pub differences: Vec<Difference>,
    pub changes: Vec<Changes>,
}

/// Puts a variant's answers in the baseline's prompt order, pairing by sample id.
pub fn align<'a>(
    set: &str,
    baseline_name: &str,
    baseline: &[ScoredAnswer],
    variant_name: &str,
    answers: &'a [ScoredAnswer],
) -> Result<Vec<&'a ScoredAnswer>, PairingError> {
    let mut by_id: HashMap<&str, &ScoredAnswer> = HashMap::with_capacity(answers.len());
    for a in answers {
        if by_id.insert(a.sample.id.as_str(), a).is_some() {
            return Err(PairingError::DuplicateId { set: set.to_string(), id: a.sample.id.clone() });
        }
    }
    if answers.len() != baseline.len() {
        return Err(PairingError::Count {
            set: set.to_string(),
            variant: variant_name.to_string(),
            baseline: baseline_name.to_string(),
            got: answers.len(),
            expected: baseline.len(),
        });
    }
    baseline
        .iter()
        .map(|b| {
            by_id.get(b.sample.id.as_str()).copied().ok_or_else(|| PairingError::Missing {
                set: set.to_string(),
                variant: variant_name.to_string(),
                baseline: baseline_name.to_string(),
                id: b.sample.id.clone(),
            })
        })
        .collect()
}

/// Compares the variants on one set. `answers[v]` are variant `names[v]`'s answers; `baseline`
/// indexes the baseline; `metrics` are the ones the rule set supports.
pub fn compare_set(
    set: &str,
    names: &[&str],
    answers: &[Vec<ScoredAnswer>],
    baseline: usize,
    metrics: &[Metric],
    bootstrap: &BootstrapConfig,
    top: usize,
) -> Result<SetComparison, PairingError> {
    let base = &answers[baseline];
    // The baseline pairs with itself too, which checks its ids are unique.
    let aligned: Vec<Vec<&ScoredAnswer>> =
        names.iter().zip(answers).map(|(name, a)| align(set, names[baseline], base, name, a)).collect::<Result<_, _>>()?;
    let n = base.len();
    let resamples = Resamples::draw(n, bootstrap);
    let values = |v: usize, m: Metric| -> Vec<Option<f64>> { aligned[v].iter().map(|a| m.of(a)).collect() };
    let variants = names
        .iter()
        .enumerate()
        .map(|(v, name)| {
            let per_metric: Vec<(Metric, Vec<Option<f64>>)> = metrics.iter().map(|&m| (m, values(v, m))).collect();
            VariantMetrics {
                variant: name.to_string(),
                scored: super::scored::file_name(set, name),
                metrics: per_metric.iter().map(|(m, x)| (*m, resamples.interval(x))).collect(),
                counted: per_metric.iter().map(|(m, x)| (*m, x.iter().flatten().count())).collect(),
            }
        })
        .collect();
    let others = || (0..names.len()).filter(move |&v| v != baseline);
    let differences = others()
        .map(|v| Difference {
            variant: names[v].to_string(),
            baseline: names[baseline].to_string(),
            metrics: metrics.iter().map(|&m| (m, resamples.paired_difference(&values(baseline, m), &values(v, m)))).collect(),
        })
        .collect();
    let changes = others().map(|v| top_changes(names[v], names[baseline], &aligned[baseline], &aligned[v], top)).collect();
    Ok(SetComparison { n, variants, differences, changes })
}

fn view(a: &ScoredAnswer, reward: f64) -> AnswerView {
    AnswerView {
        response: a.sample.response.clone(),
        reward,
        rules: a.rules.iter().map(|r| RuleNote { rule: r.rule.clone(), score: r.score, explanation: r.explanation.clone() }).collect(),
    }
}

/// The `top` samples with the largest reward gain and the `top` with the largest loss, paired
/// answers of the same prompt; ties in order of sample id. Samples without a reward on either
/// side are left out, and an unchanged reward is neither.
pub fn top_changes(variant: &str, baseline: &str, base: &[&ScoredAnswer], other: &[&ScoredAnswer], top: usize) -> Changes {
    let mut deltas: Vec<(f64, &ScoredAnswer, f64, &ScoredAnswer, f64)> = base
        .iter()
        .zip(other)
        .filter_map(|(b, o)| {
            let (rb, ro) = (b.reward?, o.reward?);
            Some((ro - rb, *b, rb, *o, ro))
        })
        .collect();
    deltas.sort_by(|x, y| y.0.total_cmp(&x.0).then_with(|| x.1.sample.id.cmp(&y.1.sample.id)));
    let change = |&(d, b, rb, o, ro): &(f64, &ScoredAnswer, f64, &ScoredAnswer, f64)| SampleChange {
        id: b.sample.id.clone(),
        category: b.sample.category.as_str().to_string(),
        prompt: b.sample.prompt.clone(),
        reward_difference: d,
        baseline: view(b, rb),
        variant: view(o, ro),
    };
    let improved = deltas.iter().take_while(|x| x.0 > 0.0).take(top).map(change).collect();
    deltas.sort_by(|x, y| x.0.total_cmp(&y.0).then_with(|| x.1.sample.id.cmp(&y.1.sample.id)));
    let regressed = deltas.iter().take_while(|x| x.0 < 0.0).take(top).map(change).collect();
    Changes { variant: variant.to_string(), baseline: baseline.to_string(), improved, regressed }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::eval::scored::RuleVerdict;

    /// A scored answer with a `risk` verdict and a reward.
    pub(crate) fn answer(variant: &str, id: &str, risk: f64, reward: Option<f64>) -> ScoredAnswer {
        let sample = serde_json::from_value(serde_json::json!({"id": id, "prompt": format!("prompt {id}"), "response": format!("{variant} answer to {id}"), "lang": "zh", "category": "medication", "risk": "high"})).unwrap();
        let rules = vec![RuleVerdict {
            rule: "risk".into(),
            version: "1.0.0".into(),
            kind: "penalty".into(),
            outcome: "ok".into(),
            applicable: true,
            score: Some(risk),
            explanation: format!("risk {risk}"),
            hits: vec![],
        }];
        ScoredAnswer { set: "redteam".into(), variant: variant.into(), sample, tokens: 10, eos: true, reward, rules, judge: None }
    }

    #[test]
    fn variants_pair_by_sample_id_whatever_their_order() {
        let base = vec![answer("sft", "a", 0.0, Some(0.1)), answer("sft", "b", 0.0, Some(0.2))];
        let rl = vec![answer("rl", "b", 0.5, Some(0.0)), answer("rl", "a", 0.0, Some(0.4))];
        let aligned = align("redteam", "sft", &base, "rl", &rl).unwrap();
        assert_eq!(aligned.iter().map(|a| a.sample.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let err = align("redteam", "sft", &base, "rl", &rl[..1]).unwrap_err().to_string();
        assert!(err.contains("answered 1 prompts, the baseline `sft` 2"), "{err}");
        let other = vec![answer("rl", "a", 0.0, None), answer("rl", "c", 0.0, None)];
        let err = align("redteam", "sft", &base, "rl", &other).unwrap_err().to_string();
        assert!(err.contains("no answer to sample `b`"), "{err}");
        let twice = vec![answer("rl", "a", 0.0, None), answer("rl", "a", 0.0, None)];
        assert!(matches!(align("redteam", "sft", &base, "rl", &twice), Err(PairingError::DuplicateId { .. })));
    }

    #[test]
    fn a_set_comparison_has_metrics_differences_and_changes() {
        // Rewards sft [0.1, 0.2, 0.3, 0.4], rl [0.5, 0.2, 0.0, 0.45]: differences +0.4, 0, −0.3, +0.05.
        let ids = ["a", "b", "c", "d"];
        let sft: Vec<ScoredAnswer> = ids.iter().zip([0.1, 0.2, 0.3, 0.4]).map(|(id, r)| answer("sft", id, 0.0, Some(r))).collect();
        let rl: Vec<ScoredAnswer> =
            ids.iter().zip([0.5, 0.2, 0.0, 0.45]).zip([0.0, 0.0, 0.5, 0.0]).map(|((id, r), risk)| answer("rl", id, risk, Some(r))).collect();
        let metrics = [Metric::RiskyRate, Metric::MeanReward];
        let c = compare_set("redteam", &["sft", "rl"], &[sft, rl], 0, &metrics, &BootstrapConfig::default(), 5).unwrap();
        assert_eq!(c.n, 4);
        let rl_m = &c.variants[1];
        assert_eq!(rl_m.scored, "scored-redteam-rl.jsonl");
        assert_eq!(rl_m.metrics[&Metric::RiskyRate].unwrap().value, 0.25);
        assert!((rl_m.metrics[&Metric::MeanReward].unwrap().value - 0.2875).abs() < 1e-12);
        assert_eq!(rl_m.counted[&Metric::MeanReward], 4);
        assert!(!rl_m.metrics.contains_key(&Metric::ChainCoverage), "not supported by this rule set");
        let d = &c.differences[0];
        assert_eq!((d.variant.as_str(), d.baseline.as_str()), ("rl", "sft"));
        // Mean reward 0.2875 − 0.25 = +0.0375; risky rate 0.25 − 0.
        assert!((d.metrics[&Metric::MeanReward].unwrap().value - 0.0375).abs() < 1e-12);
        assert_eq!(d.metrics[&Metric::RiskyRate].unwrap().value, 0.25);
        let ch = &c.changes[0];
        assert_eq!(ch.improved.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["a", "d"]);
        assert_eq!(ch.regressed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["c"]);
        let c_change = &ch.regressed[0];
        assert!((c_change.reward_difference + 0.3).abs() < 1e-12);
        assert_eq!((c_change.baseline.response.as_str(), c_change.variant.response.as_str()), ("sft answer to c", "rl answer to c"));
        assert_eq!(c_change.variant.rules[0].explanation, "risk 0.5");
    }

    #[test]
    fn top_n_keeps_the_largest_changes_and_skips_unrewarded_samples() {
        let base: Vec<ScoredAnswer> = (0..8).map(|i| answer("sft", &format!("s{i}"), 0.0, Some(0.0))).collect();
        let other: Vec<ScoredAnswer> =
            (0..8).map(|i| answer("rl", &format!("s{i}"), 0.0, if i == 7 { None } else { Some(i as f64 / 10.0 - 0.25) })).collect();
        let (b, o): (Vec<&ScoredAnswer>, Vec<&ScoredAnswer>) = (base.iter().collect(), other.iter().collect());
        let ch = top_changes("rl", "sft", &b, &o, 2);
        // Differences −0.25, −0.15, −0.05, 0.05, 0.15, 0.25, 0.35 (s7 unrewarded).
        assert_eq!(ch.improved.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s6", "s5"]);
        assert_eq!(ch.regressed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s0", "s1"]);
    }
}
