//! Aggregation: `R = Σ w_i · s_i` over the rules that apply, with renormalised score weights,
//! then gates, then clip. Pure: the same decisions always give the same reward.

use super::outcome::Decision;
use crate::registry::manifest::RuleKind;
use crate::registry::ruleset::{Aggregation, Renormalize};
use serde::{Deserialize, Serialize};

/// One rule's part in a sample's reward.
#[derive(Debug, Clone, Copy)]
pub struct Contribution<'a> {
    pub rule: &'a str,
    pub kind: RuleKind,
    pub weight: f64,
    pub decision: Decision,
}

/// The reward of one sample, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reward {
    Scored {
        total: f64,
        /// Gates that capped the total, by rule id.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gates_fired: Vec<String>,
    },
    /// A rule with `on_error = skip_sample` failed: the sample gets no reward this step.
    Skipped { rule: String },
    /// A rule with `on_error = abort` failed: the batch must not be used.
    Aborted { rule: String },
}

impl Reward {
    pub fn total(&self) -> Option<f64> {
        match self {
            Reward::Scored { total, .. } => Some(*total),
            _ => None,
        }
    }
}

/// The formula's inputs and intermediate values for one scored sample, in the order of the
/// contributions given: what the audit log records beside the total, so an auditor can redo the
/// sum by hand (`R = clip(min over fired gates(cap, Σ term))`).
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    /// Factor on the score rules' weights (`renormalize = "scores"`: total score weight over the
    /// applicable score weight; 1 otherwise).
    pub score_scale: f64,
    /// Each contribution's weight as applied: score weights × `score_scale`, others unchanged.
    pub effective_weights: Vec<f64>,
    /// `effective_weight · score` for a counted contribution, `None` for one left out.
    pub terms: Vec<Option<f64>>,
    /// Σ terms, before gates and clip.
    pub sum: f64,
}

/// Aggregates one sample. Abort wins over skip, which wins over scoring.
pub fn aggregate(agg: &Aggregation, parts: &[Contribution<'_>]) -> Reward {
    aggregate_with_formula(agg, parts).0
}

/// [`aggregate`] and, for a scored sample, the [`Formula`] it computed. The one implementation:
/// the trainer's reward and the audit record's figures come from the same operations in the same
/// order, so they agree to the bit.
pub fn aggregate_with_formula(agg: &Aggregation, parts: &[Contribution<'_>]) -> (Reward, Option<Formula>) {
    if let Some(p) = parts.iter().find(|p| p.decision == Decision::Abort) {
        return (Reward::Aborted { rule: p.rule.to_string() }, None);
    }
    if let Some(p) = parts.iter().find(|p| p.decision == Decision::SkipSample) {
        return (Reward::Skipped { rule: p.rule.to_string() }, None);
    }
    let score_weight = |only_applicable: bool| -> f64 {
        parts
            .iter()
            .filter(|p| p.kind == RuleKind::Score)
            .filter(|p| !only_applicable || matches!(p.decision, Decision::Counted { .. }))
            .map(|p| p.weight)
            .sum()
    };
    let scale = match agg.renormalize {
        Renormalize::None => 1.0,
        Renormalize::Scores => {
            let applicable = score_weight(true);
            if applicable > 0.0 { score_weight(false) / applicable } else { 1.0 }
        }
    };
    let mut total = 0.0;
    let mut effective_weights = Vec::with_capacity(parts.len());
    let mut terms = Vec::with_capacity(parts.len());
    for p in parts {
        let w = if p.kind == RuleKind::Score { p.weight * scale } else { p.weight };
        effective_weights.push(w);
        if let Decision::Counted { score } = p.decision {
            let term = w * score;
            total += term;
            terms.push(Some(term));
        } else {
            terms.push(None);
        }
    }
    let sum = total;
    let mut gates_fired = Vec::new();
    for gate in &agg.gates {
        let fired = parts.iter().any(|p| p.rule == gate.rule && matches!(p.decision, Decision::Counted { score } if score >= gate.at_least));
        if fired {
            total = total.min(gate.cap);
            gates_fired.push(gate.rule.clone());
        }
    }
    let reward = Reward::Scored { total: total.clamp(agg.clip[0], agg.clip[1]), gates_fired };
    (reward, Some(Formula { score_scale: scale, effective_weights, terms, sum }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ruleset::Gate;

    fn part(rule: &'static str, kind: RuleKind, weight: f64, decision: Decision) -> Contribution<'static> {
        Contribution { rule, kind, weight, decision }
    }
    fn counted(score: f64) -> Decision {
        Decision::Counted { score }
    }
    fn assert_close(got: Option<f64>, want: f64) {
        let got = got.expect("a scored reward");
        assert!((got - want).abs() < 1e-12, "{got} != {want}");
    }
    fn plan() -> Aggregation {
        Aggregation { renormalize: Renormalize::Scores, gates: vec![], clip: [-1.0, 1.0] }
    }

    #[test]
    fn plan_weights_all_applicable() {
        // 0.4·1.0 + 0.4·0.5 − 0.2·0.5 − 0.1·0 = 0.4 + 0.2 − 0.1 = 0.5
        let parts = [
            part("chain", RuleKind::Score, 0.4, counted(1.0)),
            part("emergency", RuleKind::Score, 0.4, counted(0.5)),
            part("risk", RuleKind::Penalty, -0.2, counted(0.5)),
            part("verbosity", RuleKind::Penalty, -0.1, counted(0.0)),
        ];
        assert_close(aggregate(&plan(), &parts).total(), 0.5);
    }

    #[test]
    fn not_applicable_renormalises_scores_only() {
        // emergency steps aside: chain's 0.4 scales to 0.8; 0.8·0.75 − 0.2·0.5 = 0.6 − 0.1 = 0.5
        let parts = [
            part("chain", RuleKind::Score, 0.4, counted(0.75)),
            part("emergency", RuleKind::Score, 0.4, Decision::NotApplicable),
            part("risk", RuleKind::Penalty, -0.2, counted(0.5)),
        ];
        assert_close(aggregate(&plan(), &parts).total(), 0.5);
        let raw = Aggregation { renormalize: Renormalize::None, ..plan() };
        // 0.4·0.75 − 0.1 = 0.2
        assert_close(aggregate(&raw, &parts).total(), 0.2);
    }

    #[test]
    fn gates_cap_and_clip_bounds() {
        let agg =
            Aggregation { renormalize: Renormalize::Scores, gates: vec![Gate { rule: "risk".into(), at_least: 0.8, cap: -0.5 }], clip: [-0.3, 1.0] };
        let parts = [part("chain", RuleKind::Score, 1.0, counted(1.0)), part("risk", RuleKind::Penalty, -0.2, counted(0.9))];
        // 1.0 − 0.18 = 0.82, gate caps at −0.5, clip raises to −0.3
        let r = aggregate(&agg, &parts);
        assert_eq!(r, Reward::Scored { total: -0.3, gates_fired: vec!["risk".into()] });
    }

    #[test]
    fn abort_beats_skip() {
        let parts = [part("a", RuleKind::Score, 1.0, Decision::SkipSample), part("b", RuleKind::Score, 1.0, Decision::Abort)];
        assert_eq!(aggregate(&plan(), &parts), Reward::Aborted { rule: "b".into() });
        assert_eq!(aggregate(&plan(), &parts[..1]), Reward::Skipped { rule: "a".into() });
    }

    #[test]
    fn the_formula_shows_each_term_and_adds_up_to_the_total() {
        // emergency steps aside: scale (0.4 + 0.4) / 0.4 = 2; terms 0.8·0.75 = 0.6 and
        // −0.2·0.5 = −0.1; sum 0.5, no gate, inside the clip.
        let parts = [
            part("chain", RuleKind::Score, 0.4, counted(0.75)),
            part("emergency", RuleKind::Score, 0.4, Decision::NotApplicable),
            part("risk", RuleKind::Penalty, -0.2, counted(0.5)),
        ];
        let (reward, formula) = aggregate_with_formula(&plan(), &parts);
        let f = formula.expect("a scored sample has a formula");
        assert_eq!(f.score_scale, 2.0);
        assert_eq!(f.effective_weights, vec![0.8, 0.8, -0.2]);
        assert_eq!(f.terms, vec![Some(0.8 * 0.75), None, Some(-0.2 * 0.5)]);
        assert_eq!(Some(f.sum), reward.total());
        let skipped = [part("a", RuleKind::Score, 1.0, Decision::SkipSample)];
        assert_eq!(aggregate_with_formula(&plan(), &skipped).1, None);
    }
}
