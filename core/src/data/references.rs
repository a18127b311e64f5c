//! `medrl data score-references`: the reference answers of the SFT, gold and red-team sets scored
//! by the same rules the trainer rewards with. A reference answer is what the policy should learn
//! to write, so it should score well; one that does not is a data bug or a rule bug.

use super::item::{Item, Located};
use crate::reward::{Decision, OutcomeKind, SampleScore};
use medrl_sdk::Sample;

/// Every item with an answer, as a sample whose response is that answer.
pub fn reference_samples(items: &[Located<Item>]) -> Vec<Sample> {
    items.iter().filter_map(|i| i.value.answer.as_ref().map(|a| i.value.to_sample(a.clone()))).collect()
}

/// One rule over a batch of references.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMean {
    /// `id@version`.
    pub rule: String,
    /// Samples the rule scored (outcome ok, applicable).
    pub applied: usize,
    /// Samples the rule said it does not apply to.
    pub not_applicable: usize,
    /// Samples the rule failed on (trap, fuel, timeout, bad output, rule error); left out of the mean.
    pub failed: usize,
    /// Mean score over `applied`; `None` when it applied to none.
    pub mean: Option<f64>,
}

/// A batch of references, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceScores {
    pub samples: usize,
    /// In the rule set's order.
    pub rules: Vec<RuleMean>,
    /// Samples with a reward, and its mean.
    pub scored: usize,
    pub mean_reward: Option<f64>,
    /// Samples a rule's `skip_sample` or `abort` policy left without a reward.
    pub unrewarded: usize,
    /// The lowest rewards, lowest first: (sample id, reward).
    pub lowest: Vec<(String, f64)>,
}

/// Means per rule and of the reward; `lowest` keeps that many of the lowest-rewarded samples.
pub fn summarize(scores: &[SampleScore], lowest: usize) -> ReferenceScores {
    let n_rules = scores.first().map_or(0, |s| s.rules.len());
    let rules = (0..n_rules)
        .map(|k| {
            let mut m = RuleMean { rule: scores[0].rules[k].rule.clone(), applied: 0, not_applicable: 0, failed: 0, mean: None };
            let mut sum = 0.0;
            for s in scores {
                let r = &s.rules[k];
                match (r.evaluation.outcome, r.decision) {
                    (OutcomeKind::Ok, Decision::Counted { score }) => {
                        m.applied += 1;
                        sum += score;
                    }
                    (OutcomeKind::Ok, _) => m.not_applicable += 1,
                    _ => m.failed += 1,
                }
            }
            m.mean = (m.applied > 0).then(|| sum / m.applied as f64);
            m
        })
        .collect();
    let mut rewards: Vec<(String, f64)> = scores.iter().filter_map(|s| s.reward.total().map(|t| (s.sample_id.clone(), t))).collect();
    let mean_reward = (!rewards.is_empty()).then(|| rewards.iter().map(|r| r.1).sum::<f64>() / rewards.len() as f64);
    let scored = rewards.len();
    rewards.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    rewards.truncate(lowest);
    ReferenceScores { samples: scores.len(), rules, scored, mean_reward, unrewarded: scores.len() - scored, lowest: rewards }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::Evaluation;
    use crate::reward::Reward;
    use crate::reward::scorer::RuleResult;
    use medrl_sdk::RuleOutput;

    fn result(rule: &str, score: Option<f64>, outcome: OutcomeKind) -> RuleResult {
        let output = score.map(|s| RuleOutput::score(s, "")).or(Some(RuleOutput::not_applicable("")));
        let (output, decision) = match (outcome, score) {
            (OutcomeKind::Ok, Some(s)) => (output, Decision::Counted { score: s }),
            (OutcomeKind::Ok, None) => (output, Decision::NotApplicable),
            _ => (None, Decision::Counted { score: 0.0 }),
        };
        RuleResult { rule: rule.into(), evaluation: Evaluation { outcome, output, error: None, fuel_used: 0, elapsed_us: 0 }, decision }
    }

    fn sample(id: &str, rules: Vec<RuleResult>, reward: Reward) -> SampleScore {
        SampleScore { sample_id: id.into(), sample_sha256: String::new(), rules, reward }
    }

    #[test]
    fn means_count_only_the_samples_a_rule_applied_to() {
        let ok = OutcomeKind::Ok;
        let scores = vec![
            sample(
                "a",
                vec![result("chain@1", Some(1.0), ok), result("emergency@1", Some(0.5), ok)],
                Reward::Scored { total: 0.8, gates_fired: vec![] },
            ),
            sample("b", vec![result("chain@1", Some(0.5), ok), result("emergency@1", None, ok)], Reward::Scored { total: 0.4, gates_fired: vec![] }),
            sample(
                "c",
                vec![result("chain@1", Some(0.0), OutcomeKind::OutOfFuel), result("emergency@1", None, ok)],
                Reward::Skipped { rule: "chain@1".into() },
            ),
        ];
        let s = summarize(&scores, 1);
        // chain: applied to a and b, (1.0 + 0.5) / 2 = 0.75; failed on c.
        assert_eq!(s.rules[0], RuleMean { rule: "chain@1".into(), applied: 2, not_applicable: 0, failed: 1, mean: Some(0.75) });
        // emergency: applied to a only: 0.5; not applicable to b and c.
        assert_eq!(s.rules[1], RuleMean { rule: "emergency@1".into(), applied: 1, not_applicable: 2, failed: 0, mean: Some(0.5) });
        // Reward: (0.8 + 0.4) / 2 = 0.6 over the two rewarded samples.
        assert!((s.mean_reward.unwrap() - 0.6).abs() < 1e-12);
        assert_eq!((s.samples, s.scored, s.unrewarded), (3, 2, 1));
        assert_eq!(s.lowest, [("b".to_string(), 0.4)]);
        assert_eq!(summarize(&[], 5).rules, []);
    }
}
