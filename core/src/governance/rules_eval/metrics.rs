//! The figures of a rule against clinician labels, pure: each rule's binary answer at its
//! threshold, agreement with each verdict, the confusion counts and precision, recall, F1 and
//! specificity over the binary verdicts, each with a percentile bootstrap interval; and how a
//! good-vs-hack pair is ordered by the aggregated reward.
//!
//! Definitions (docs/rules_eval.md):
//!
//! - The rule **says yes** when its decision counts a score at or above its threshold (a score
//!   rule credits the answer, a penalty rule penalises it); **no** below it; **n/a** when the rule
//!   did not apply; **failed** when its `on_error` dropped the sample or stopped the batch. A
//!   failure that `on_error` turns into a counted score (`zero`, `max_penalty`) is that score, as
//!   in training.
//! - **Agreement** with a verdict: `true`/`false` agree with yes/no; `"n/a"` agrees with n/a only;
//!   bounds `{min, max}` agree with a counted score in `[min, max]`. A rule that says n/a or failed
//!   where the label is `true` or `false` disagrees.
//! - **Confusion** over the `true`/`false` verdicts only, positive = `true` (should credit /
//!   should penalise); a rule that says n/a or failed there counts as a "no".

use crate::eval::bootstrap::{BootstrapConfig, Estimate, Resamples};
use crate::review::agreement::Confusion;
use crate::review::decision::{Comparison, Threshold};
use crate::reward::{Decision, Evaluation, OutcomeKind};
use serde::Serialize;

use super::labels::Verdict;

/// The default threshold of a rule: `chain` 1.0 (its score is the share of the four sections
/// present, minus an order penalty, so only 1.0 is "all sections, in order"); every other rule
/// 0.5 (a score rule credits, a penalty rule penalises at half its range or more).
pub fn default_threshold(rule: &str) -> f64 {
    if rule == "chain" { 1.0 } else { 0.5 }
}

/// A rule's binary answer at `value`: score ≥ value, within the review module's rounding
/// tolerance (a chain score computed as 0.999…9 is complete).
pub fn threshold(value: f64) -> Threshold {
    Threshold { yes_when: Comparison::AtLeast, value }
}

/// One rule's result on one sample, as the evaluation reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleCall {
    /// What the aggregator did with it.
    pub decision: Decision,
    pub outcome: OutcomeKind,
    /// The rule's own score when it ran (`None` after a failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    pub explanation: String,
    pub hit_codes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RuleCall {
    /// The evaluation of one rule and what the aggregator decided from it.
    pub fn new(evaluation: &Evaluation, decision: Decision) -> RuleCall {
        let mut hit_codes: Vec<String> = Vec::new();
        for h in evaluation.output.iter().flat_map(|o| &o.hits) {
            if !hit_codes.contains(&h.code) {
                hit_codes.push(h.code.clone());
            }
        }
        RuleCall {
            decision,
            outcome: evaluation.outcome,
            score: evaluation.output.as_ref().map(|o| o.score),
            explanation: evaluation.output.as_ref().map_or_else(|| evaluation.error.clone().unwrap_or_default(), |o| o.explanation.clone()),
            hit_codes,
            error: evaluation.error.clone(),
        }
    }

    /// The score the reward counted, `None` when none was.
    pub fn counted(&self) -> Option<f64> {
        match self.decision {
            Decision::Counted { score } => Some(score),
            _ => None,
        }
    }

    /// The rule's result in a table cell: the counted score, `n/a`, or the failure.
    pub fn cell(&self) -> String {
        match self.decision {
            Decision::Counted { score } if self.outcome == OutcomeKind::Ok => format!("{score:.3}"),
            Decision::Counted { score } => format!("{score:.3} ({})", self.outcome.as_str()),
            Decision::NotApplicable => "n/a".into(),
            Decision::SkipSample => format!("{} (skip_sample)", self.outcome.as_str()),
            Decision::Abort => format!("{} (abort)", self.outcome.as_str()),
        }
    }
}

/// The rule's answer to the label's question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Said {
    Yes,
    No,
    NotApplicable,
    Failed,
}

impl Said {
    pub fn of(call: &RuleCall, threshold: &Threshold) -> Said {
        match call.decision {
            Decision::Counted { score } if threshold.says_yes(score) => Said::Yes,
            Decision::Counted { .. } => Said::No,
            Decision::NotApplicable => Said::NotApplicable,
            Decision::SkipSample | Decision::Abort => Said::Failed,
        }
    }
}

/// One verdict and the rule's answer to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    pub said: Said,
    pub agree: bool,
}

/// Bounds are compared with the same tolerance as thresholds.
const EPS: f64 = 1e-9;

impl Judged {
    pub fn new(verdict: Verdict, call: &RuleCall, threshold: &Threshold) -> Judged {
        let said = Said::of(call, threshold);
        let agree = match verdict {
            Verdict::Yes => said == Said::Yes,
            Verdict::No => said == Said::No,
            Verdict::NotApplicable => said == Said::NotApplicable,
            Verdict::Bounds { min, max } => call.counted().is_some_and(|s| s >= min - EPS && s <= max + EPS),
        };
        Judged { verdict, said, agree }
    }

    /// `Some(clinician yes)` for a binary verdict; `None` for n/a and bounds.
    fn clinician_yes(&self) -> Option<bool> {
        match self.verdict {
            Verdict::Yes => Some(true),
            Verdict::No => Some(false),
            _ => None,
        }
    }
}

/// A metric of one rule on a set of labels; the names are those of `--gate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Agreement,
    Precision,
    Recall,
    F1,
    Specificity,
}

impl Metric {
    pub const ALL: [Metric; 5] = [Metric::Agreement, Metric::Precision, Metric::Recall, Metric::F1, Metric::Specificity];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Agreement => "agreement",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::F1 => "f1",
            Metric::Specificity => "specificity",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The metric of a set of judged labels; `None` where it is undefined.
    fn of(self, judged: &mut dyn Iterator<Item = &Judged>) -> Option<f64> {
        if self == Metric::Agreement {
            let (agreed, n) = judged.fold((0usize, 0usize), |(a, n), j| (a + usize::from(j.agree), n + 1));
            return (n > 0).then(|| agreed as f64 / n as f64);
        }
        let c = confusion(judged);
        match self {
            Metric::Precision => c.precision(),
            Metric::Recall => c.recall(),
            Metric::F1 => c.f1(),
            Metric::Specificity => c.specificity(),
            Metric::Agreement => unreachable!("handled above"),
        }
    }
}

fn confusion(judged: &mut dyn Iterator<Item = &Judged>) -> Confusion {
    let mut c = Confusion::default();
    for j in judged {
        if let Some(clinician_yes) = j.clinician_yes() {
            c.add(j.said == Said::Yes, clinician_yes);
        }
    }
    c
}

/// A rule's figures on a set of labelled answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Labelled answers (every verdict kind).
    pub n: usize,
    /// Of them, those the rule agreed with.
    pub agreed: usize,
    pub agreement: Option<Estimate>,
    /// Over the `true`/`false` verdicts; positive = `true`.
    pub confusion: Confusion,
    pub precision: Option<Estimate>,
    pub recall: Option<Estimate>,
    pub f1: Option<Estimate>,
    pub specificity: Option<Estimate>,
    /// Binary verdicts where the rule said n/a or failed (counted as its "no" in the confusion).
    pub undecided: usize,
}

impl Figures {
    /// Every figure of `judged`, intervals from `config`'s resamples of these items.
    pub fn of(judged: &[Judged], config: &BootstrapConfig) -> Figures {
        let resamples = Resamples::draw(judged.len(), config);
        let interval = |m: Metric| resamples.interval_by(|idx| m.of(&mut idx.map(|i| &judged[i])));
        Figures {
            n: judged.len(),
            agreed: judged.iter().filter(|j| j.agree).count(),
            agreement: interval(Metric::Agreement),
            confusion: confusion(&mut judged.iter()),
            precision: interval(Metric::Precision),
            recall: interval(Metric::Recall),
            f1: interval(Metric::F1),
            specificity: interval(Metric::Specificity),
            undecided: judged.iter().filter(|j| j.clinician_yes().is_some() && matches!(j.said, Said::NotApplicable | Said::Failed)).count(),
        }
    }

    pub fn get(&self, metric: Metric) -> Option<Estimate> {
        match metric {
            Metric::Agreement => self.agreement,
            Metric::Precision => self.precision,
            Metric::Recall => self.recall,
            Metric::F1 => self.f1,
            Metric::Specificity => self.specificity,
        }
    }
}

/// How the aggregated reward orders one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// good − hack ≥ margin.
    Ordered,
    /// 0 < good − hack < margin: the right way round, but by less than the margin.
    Narrow,
    /// good = hack.
    Tied,
    /// The hack gets more.
    Reversed,
    /// A side got no reward (a rule's `on_error` skipped the sample or aborted).
    Unscored,
}

impl Order {
    pub const ALL: [Order; 5] = [Order::Ordered, Order::Narrow, Order::Tied, Order::Reversed, Order::Unscored];

    pub fn of(good: Option<f64>, hack: Option<f64>, margin: f64) -> Order {
        let (Some(good), Some(hack)) = (good, hack) else { return Order::Unscored };
        let d = good - hack;
        if d >= margin - EPS {
            Order::Ordered
        } else if d > EPS {
            Order::Narrow
        } else if d >= -EPS {
            Order::Tied
        } else {
            Order::Reversed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Order::Ordered => "ordered",
            Order::Narrow => "narrow",
            Order::Tied => "tied",
            Order::Reversed => "reversed",
            Order::Unscored => "unscored",
        }
    }
}

/// How a set of pairs is ordered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairFigures {
    pub n: usize,
    pub ordered: usize,
    pub narrow: usize,
    pub tied: usize,
    pub reversed: usize,
    pub unscored: usize,
    /// Share ordered by the margin, with its interval.
    pub ordered_share: Option<Estimate>,
}

impl PairFigures {
    pub fn of(orders: &[Order], config: &BootstrapConfig) -> PairFigures {
        let count = |o: Order| orders.iter().filter(|x| **x == o).count();
        let values: Vec<Option<f64>> = orders.iter().map(|o| Some(f64::from(u8::from(*o == Order::Ordered)))).collect();
        PairFigures {
            n: orders.len(),
            ordered: count(Order::Ordered),
            narrow: count(Order::Narrow),
            tied: count(Order::Tied),
            reversed: count(Order::Reversed),
            unscored: count(Order::Unscored),
            ordered_share: Resamples::draw(orders.len(), config).interval(&values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(decision: Decision) -> RuleCall {
        RuleCall { decision, outcome: OutcomeKind::Ok, score: None, explanation: String::new(), hit_codes: vec![], error: None }
    }

    fn counted(score: f64) -> RuleCall {
        call(Decision::Counted { score })
    }

    #[test]
    fn each_verdict_agrees_with_the_right_answer() {
        let t = threshold(0.5);
        let j = |v, c: &RuleCall| Judged::new(v, c, &t).agree;
        assert!(j(Verdict::Yes, &counted(0.5)) && !j(Verdict::Yes, &counted(0.49)));
        assert!(j(Verdict::No, &counted(0.0)) && !j(Verdict::No, &counted(0.8)));
        // n/a agrees only with a rule that did not apply, and the other way round.
        assert!(j(Verdict::NotApplicable, &call(Decision::NotApplicable)));
        assert!(!j(Verdict::NotApplicable, &counted(0.0)));
        assert!(!j(Verdict::No, &call(Decision::NotApplicable)));
        // A failure the rule's on_error drops is no answer; one it counts as a score is that score.
        assert!(!j(Verdict::No, &call(Decision::SkipSample)));
        assert!(j(Verdict::No, &RuleCall { outcome: OutcomeKind::Trap, ..counted(0.0) }));
        // Bounds are inclusive and need a counted score.
        let b = Verdict::Bounds { min: 0.25, max: 0.75 };
        assert!(j(b, &counted(0.25)) && j(b, &counted(0.75)) && !j(b, &counted(0.8)) && !j(b, &call(Decision::NotApplicable)));
        // chain's default: 1.0, reached by a score rounded just below it.
        let chain = threshold(default_threshold("chain"));
        assert_eq!(Said::of(&counted(1.0 - 1e-12), &chain), Said::Yes);
        assert_eq!(Said::of(&counted(0.75), &chain), Said::No);
        assert_eq!(default_threshold("risk"), 0.5);
    }

    #[test]
    fn figures_match_hand_counts() {
        // 10 risk labels: 4 true (rule yes on 3), 5 false (rule yes on 1), 1 n/a-free bounds
        // [0, 0.2] the rule meets with 0.0.
        // Confusion: TP 3, FN 1, FP 1, TN 4. Agreement: 3 + 4 + 1 = 8 of 10.
        // Precision 3/4, recall 3/4, F1 6/8, specificity 4/5.
        let t = threshold(0.5);
        let mut judged = Vec::new();
        for s in [0.8, 0.5, 1.0, 0.0] {
            judged.push(Judged::new(Verdict::Yes, &counted(s), &t));
        }
        for s in [0.0, 0.0, 0.3, 0.6, 0.0] {
            judged.push(Judged::new(Verdict::No, &counted(s), &t));
        }
        judged.push(Judged::new(Verdict::Bounds { min: 0.0, max: 0.2 }, &counted(0.0), &t));
        let f = Figures::of(&judged, &BootstrapConfig::default());
        assert_eq!((f.n, f.agreed), (10, 8));
        assert_eq!(f.confusion, Confusion { tp: 3, tn: 4, fp: 1, fn_: 1 });
        assert_eq!(f.agreement.unwrap().value, 0.8);
        assert_eq!(f.precision.unwrap().value, 0.75);
        assert_eq!(f.recall.unwrap().value, 0.75);
        assert_eq!(f.f1.unwrap().value, 0.75);
        assert_eq!(f.specificity.unwrap().value, 0.8);
        assert_eq!(f.undecided, 0);
        let a = f.agreement.unwrap();
        assert!(a.lo < 0.8 && 0.8 < a.hi && a.lo >= 0.4 && a.hi <= 1.0, "{a:?}");
        // The same items and seed give the same intervals.
        assert_eq!(Figures::of(&judged, &BootstrapConfig::default()), f);
    }

    #[test]
    fn a_rule_that_never_fires_has_no_precision_and_zero_recall() {
        // The finding on risk@1.0.0: every risky answer scored 0.
        let t = threshold(0.5);
        let judged: Vec<Judged> = (0..6).map(|i| Judged::new(if i < 4 { Verdict::Yes } else { Verdict::No }, &counted(0.0), &t)).collect();
        let f = Figures::of(&judged, &BootstrapConfig::default());
        assert_eq!(f.precision, None);
        assert_eq!(f.recall.unwrap(), Estimate { value: 0.0, lo: 0.0, hi: 0.0 });
        assert_eq!(f.specificity.unwrap().value, 1.0);
        // An n/a answer to a binary verdict is a disagreement and an undecided "no".
        let judged = [Judged::new(Verdict::Yes, &call(Decision::NotApplicable), &t)];
        let f = Figures::of(&judged, &BootstrapConfig::default());
        assert_eq!((f.agreed, f.undecided, f.confusion.fn_), (0, 1, 1));
    }

    #[test]
    fn pairs_are_ordered_by_the_margin() {
        let m = 0.05;
        assert_eq!(Order::of(Some(0.80), Some(0.75), m), Order::Ordered);
        assert_eq!(Order::of(Some(0.3), Some(-0.2), m), Order::Ordered);
        assert_eq!(Order::of(Some(0.80), Some(0.78), m), Order::Narrow);
        assert_eq!(Order::of(Some(0.8), Some(0.8), m), Order::Tied);
        assert_eq!(Order::of(Some(0.5), Some(0.8), m), Order::Reversed);
        assert_eq!(Order::of(None, Some(0.8), m), Order::Unscored);
        let f = PairFigures::of(&[Order::Ordered, Order::Ordered, Order::Tied, Order::Reversed], &BootstrapConfig::default());
        assert_eq!((f.n, f.ordered, f.tied, f.reversed, f.narrow), (4, 2, 1, 1, 0));
        assert_eq!(f.ordered_share.unwrap().value, 0.5);
    }
}
