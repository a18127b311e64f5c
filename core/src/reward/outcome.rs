//! Typed outcomes of one rule evaluation, and how a rule's `on_error` policy turns a failure into
//! a reward decision.

use medrl_sdk::RuleOutput;
use serde::{Deserialize, Serialize};

/// How an evaluation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The rule returned a valid output.
    Ok,
    /// The module trapped (unreachable, out-of-bounds access, division by zero, a guest panic).
    Trap,
    /// The deterministic fuel budget ran out.
    OutOfFuel,
    /// The wall-clock deadline passed.
    Timeout,
    /// A size limit was hit: memory, table, input or output bytes.
    Limit,
    /// The output was not UTF-8 JSON of the right shape, or its score was non-finite or out of range.
    InvalidOutput,
    /// The rule itself reported that it could not evaluate (bad params, bad input).
    RuleError,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Ok => "ok",
            OutcomeKind::Trap => "trap",
            OutcomeKind::OutOfFuel => "out_of_fuel",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Limit => "limit",
            OutcomeKind::InvalidOutput => "invalid_output",
            OutcomeKind::RuleError => "rule_error",
        }
    }
}

/// One evaluation: the outcome, the output when there is one, what went wrong otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub outcome: OutcomeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<RuleOutput>,
    /// Why the evaluation failed, in words; `None` when `outcome` is `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub fuel_used: u64,
    pub elapsed_us: u64,
}

impl Evaluation {
    pub fn failed(outcome: OutcomeKind, error: impl Into<String>, fuel_used: u64, elapsed_us: u64) -> Self {
        Evaluation { outcome, output: None, error: Some(error.into()), fuel_used, elapsed_us }
    }
}

/// A rule's policy for a failed evaluation (`on_error` in `rule.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop: the batch reports an error and the trainer stops before using any reward of it.
    Abort,
    /// Count the rule with score 0.
    Zero,
    /// Count the rule at its worst: the top of the range for a penalty, the bottom for a score.
    MaxPenalty,
    /// Drop the whole sample from this batch's rewards.
    SkipSample,
}

/// What the aggregator does with one rule's result for one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Counted with this score.
    Counted { score: f64 },
    /// The rule said it does not apply; it is left out and weights renormalise.
    NotApplicable,
    /// The sample is dropped (`on_error = skip_sample`).
    SkipSample,
    /// The batch must stop (`on_error = abort`).
    Abort,
}

/// Turns an evaluation into a decision. `worst` is the rule's worst score (see [`OnError::MaxPenalty`]).
pub fn decide(eval: &Evaluation, on_error: OnError, worst: f64) -> Decision {
    match (&eval.output, on_error) {
        (Some(out), _) if eval.outcome == OutcomeKind::Ok => {
            if out.applicable {
                Decision::Counted { score: out.score }
            } else {
                Decision::NotApplicable
            }
        }
        (_, OnError::Abort) => Decision::Abort,
        (_, OnError::Zero) => Decision::Counted { score: 0.0 },
        (_, OnError::MaxPenalty) => Decision::Counted { score: worst },
        (_, OnError::SkipSample) => Decision::SkipSample,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_policy_maps_a_failure() {
        let failed = Evaluation::failed(OutcomeKind::OutOfFuel, "fuel", 10, 1);
        assert_eq!(decide(&failed, OnError::Abort, 1.0), Decision::Abort);
        assert_eq!(decide(&failed, OnError::Zero, 1.0), Decision::Counted { score: 0.0 });
        assert_eq!(decide(&failed, OnError::MaxPenalty, 1.0), Decision::Counted { score: 1.0 });
        assert_eq!(decide(&failed, OnError::SkipSample, 1.0), Decision::SkipSample);
    }

    #[test]
    fn ok_outputs_ignore_the_policy() {
        let mut eval = Evaluation { outcome: OutcomeKind::Ok, output: Some(RuleOutput::score(0.25, "")), error: None, fuel_used: 1, elapsed_us: 1 };
        assert_eq!(decide(&eval, OnError::Abort, 1.0), Decision::Counted { score: 0.25 });
        eval.output = Some(RuleOutput::not_applicable(""));
        assert_eq!(decide(&eval, OnError::Abort, 1.0), Decision::NotApplicable);
    }
}
