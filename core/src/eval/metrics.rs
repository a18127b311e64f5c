//! The plan's evaluation metrics, each defined per answer so that a set's value is a mean over
//! its prompts and can be bootstrapped over them (`bootstrap`). Rule ids are the shipped ones;
//! a metric whose rule the rule set lacks is left out of the report (and a gate on it refused).
//!
//! | metric | per answer | mean over |
//! |---|---|---|
//! | `chain_coverage` | the `chain` score (share of reasoning-chain sections present, in order) | every answer; an uncounted score is 0 |
//! | `emergency_coverage` | the `emergency` score | answers the rule applied to |
//! | `risky_rate` | 1 when the `risk` penalty is above 0, else 0 | every answer |
//! | `verbosity_penalty` | the `verbosity` penalty | every answer; an uncounted penalty is 0 |
//! | `mean_reward` | the rule set's aggregated reward | answers with a reward (not skipped) |
//! | `mean_length_tokens` | response tokens, the stop token included | every answer |
//! | `eos_rate` | 1 when the answer ended with EOS, else 0 | every answer |

use super::scored::ScoredAnswer;
use serde::{Deserialize, Serialize};

/// One evaluation metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ChainCoverage,
    EmergencyCoverage,
    RiskyRate,
    VerbosityPenalty,
    MeanReward,
    #[serde(rename = "mean_length_tokens")]
    MeanLength,
    EosRate,
}

/// Which way a metric should move for a better model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
    /// Neither (length): read together with the others.
    Neither,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 7] = [
        Metric::ChainCoverage,
        Metric::EmergencyCoverage,
        Metric::RiskyRate,
        Metric::VerbosityPenalty,
        Metric::MeanReward,
        Metric::MeanLength,
        Metric::EosRate,
    ];

    /// The name in gates and `report.json`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ChainCoverage => "chain_coverage",
            Metric::EmergencyCoverage => "emergency_coverage",
            Metric::RiskyRate => "risky_rate",
            Metric::VerbosityPenalty => "verbosity_penalty",
            Metric::MeanReward => "mean_reward",
            Metric::MeanLength => "mean_length_tokens",
            Metric::EosRate => "eos_rate",
        }
    }

    /// The row label in `eval_report.md`.
    pub fn label(self) -> &'static str {
        match self {
            Metric::ChainCoverage => "chain coverage ↑",
            Metric::EmergencyCoverage => "emergency coverage ↑",
            Metric::RiskyRate => "risky-prescription rate ↓",
            Metric::VerbosityPenalty => "verbosity penalty ↓",
            Metric::MeanReward => "mean reward ↑",
            Metric::MeanLength => "mean length (tokens)",
            Metric::EosRate => "EOS rate ↑",
        }
    }

    pub fn better(self) -> Better {
        match self {
            Metric::ChainCoverage | Metric::EmergencyCoverage | Metric::MeanReward | Metric::EosRate => Better::Higher,
            Metric::RiskyRate | Metric::VerbosityPenalty => Better::Lower,
            Metric::MeanLength => Better::Neither,
        }
    }

    /// The rule a metric reads, if it reads one.
    pub fn rule(self) -> Option<&'static str> {
        match self {
            Metric::ChainCoverage => Some("chain"),
            Metric::EmergencyCoverage => Some("emergency"),
            Metric::RiskyRate => Some("risk"),
            Metric::VerbosityPenalty => Some("verbosity"),
            Metric::MeanReward | Metric::MeanLength | Metric::EosRate => None,
        }
    }

    /// Whether the metric is a share or a score in [0, 1] (plotted together; length is not).
    pub fn is_unit_scale(self) -> bool {
        !matches!(self, Metric::MeanLength)
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The metrics a rule set with these rule ids supports.
    pub fn available(rule_ids: &[&str]) -> Vec<Metric> {
        Metric::ALL.into_iter().filter(|m| m.rule().is_none_or(|r| rule_ids.contains(&r))).collect()
    }

    /// This answer's value, or `None` when the answer does not count toward the metric.
    pub fn of(self, a: &ScoredAnswer) -> Option<f64> {
        let score = |rule: &str| a.rule(rule).and_then(|v| v.score);
        match self {
            Metric::ChainCoverage => Some(score("chain").unwrap_or(0.0)),
            Metric::EmergencyCoverage => score("emergency"),
            Metric::RiskyRate => Some(if score("risk").unwrap_or(0.0) > 0.0 { 1.0 } else { 0.0 }),
            Metric::VerbosityPenalty => Some(score("verbosity").unwrap_or(0.0)),
            Metric::MeanReward => a.reward,
            Metric::MeanLength => Some(a.tokens as f64),
            Metric::EosRate => Some(if a.eos { 1.0 } else { 0.0 }),
        }
    }

    /// Every answer's value, in order.
    pub fn values(self, answers: &[ScoredAnswer]) -> Vec<Option<f64>> {
        answers.iter().map(|a| self.of(a)).collect()
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::scored::RuleVerdict;

    fn answer(rules: &[(&str, Option<f64>)], reward: Option<f64>, tokens: usize, eos: bool) -> ScoredAnswer {
        let sample = serde_json::from_value(
            serde_json::json!({"id": "a", "prompt": "p", "response": "r", "lang": "zh", "category": "general", "risk": "low"}),
        )
        .unwrap();
        let rules = rules
            .iter()
            .map(|(id, score)| RuleVerdict {
                rule: id.to_string(),
                version: "1.0.0".into(),
                kind: "score".into(),
                outcome: "ok".into(),
                applicable: score.is_some(),
                score: *score,
                explanation: String::new(),
                hits: vec![],
            })
            .collect();
        ScoredAnswer { set: "gold".into(), variant: "sft".into(), sample, tokens, eos, reward, rules, judge: None }
    }

    #[test]
    fn per_answer_values_follow_the_definitions() {
        let a = answer(&[("chain", Some(0.75)), ("emergency", None), ("risk", Some(0.5)), ("verbosity", Some(0.0))], Some(0.2), 40, true);
        assert_eq!(Metric::ChainCoverage.of(&a), Some(0.75));
        assert_eq!(Metric::EmergencyCoverage.of(&a), None, "not applicable: left out");
        assert_eq!(Metric::RiskyRate.of(&a), Some(1.0));
        assert_eq!(Metric::VerbosityPenalty.of(&a), Some(0.0));
        assert_eq!(Metric::MeanReward.of(&a), Some(0.2));
        assert_eq!(Metric::MeanLength.of(&a), Some(40.0));
        assert_eq!(Metric::EosRate.of(&a), Some(1.0));
        let skipped = answer(&[("chain", None), ("risk", Some(0.0))], None, 8, false);
        assert_eq!(Metric::ChainCoverage.of(&skipped), Some(0.0));
        assert_eq!(Metric::RiskyRate.of(&skipped), Some(0.0));
        assert_eq!(Metric::MeanReward.of(&skipped), None);
        assert_eq!(Metric::EosRate.of(&skipped), Some(0.0));
    }

    #[test]
    fn names_round_trip_and_availability_follows_the_rules() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.name()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        assert_eq!(Metric::parse("risky"), None);
        let only_risk = Metric::available(&["risk"]);
        assert_eq!(only_risk, vec![Metric::RiskyRate, Metric::MeanReward, Metric::MeanLength, Metric::EosRate]);
    }
}
