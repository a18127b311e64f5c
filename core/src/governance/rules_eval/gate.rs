//! `--gate` thresholds on the evaluation, checked after the report is written; a failed gate
//! makes `medrl rules eval` exit non-zero, naming it.
//!
//! ```text
//! gate    = [SPLIT ":"] SUBJECT "." METRIC ["[" BY "=" VALUE "]"] OP NUMBER
//! SUBJECT = RULE | "pairs"
//! METRIC  = agreement | precision | recall | f1 | specificity      (a rule)
//!         | ordered                                                (the pairs: share ordered by the margin)
//! BY      = lang | category | class                                 (a rule)
//!         | kind | lang                                             (the pairs)
//! OP      = ">=" | ">" | "<=" | "<"
//! ```
//!
//! `risk.recall>=0.95`, `test:risk.precision[lang=zh]>=0.95`, `pairs.ordered>=1`,
//! `chain.agreement[class=chain/empty-sections]>=0.9`. Without `SPLIT:` a gate holds on every
//! split of the report. A metric that is undefined there (no label it needs, no such group)
//! fails the gate: a gate that cannot be checked does not pass.

use super::metrics::Metric;
use super::report::{EvalReport, SplitReport};
use crate::eval::gate::Op;
use serde::Serialize;

/// What a gate measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Rule {
        id: String,
        metric: Metric,
    },
    /// The share of pairs ordered by the margin.
    PairsOrdered,
}

/// One parsed gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub expression: String,
    /// `None`: every split.
    pub split: Option<String>,
    pub subject: Subject,
    /// `(by, value)` of a group.
    pub group: Option<(String, String)>,
    pub op: Op,
    pub value: f64,
}

/// A gate on one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub expression: String,
    pub split: String,
    /// The metric's point value; `None` when undefined.
    pub value: Option<f64>,
    pub passed: bool,
    /// Why it failed, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error(
        "gate `{expression}`: {problem}; a gate reads [SPLIT:]RULE.METRIC[BY=VALUE] OP NUMBER or [SPLIT:]pairs.ordered[BY=VALUE] OP NUMBER, e.g. `risk.recall>=0.95`, `test:risk.precision[lang=zh]>=0.95`, `pairs.ordered>=1`"
    )]
    Syntax { expression: String, problem: String },
    #[error("gate `{expression}`: no rule `{rule}` in {ruleset} (its rules: {valid}); `pairs` names the good-vs-hack pairs")]
    UnknownRule { expression: String, rule: String, ruleset: String, valid: String },
    #[error("gate `{expression}`: no split `{split}` in the labels read (splits: {valid})")]
    UnknownSplit { expression: String, split: String, valid: String },
}

impl std::str::FromStr for Gate {
    type Err = GateError;

    fn from_str(expression: &str) -> Result<Gate, GateError> {
        let syntax = |problem: &str| GateError::Syntax { expression: expression.to_string(), problem: problem.to_string() };
        let text: String = expression.chars().filter(|c| !c.is_whitespace()).collect();
        let op_at = text.find(['<', '>']).ok_or_else(|| syntax("no comparison (>=, >, <=, <)"))?;
        let (lhs, rest) = text.split_at(op_at);
        let (op, number) = [(">=", Op::Ge), ("<=", Op::Le), (">", Op::Gt), ("<", Op::Lt)]
            .into_iter()
            .find_map(|(s, op)| rest.strip_prefix(s).map(|n| (op, n)))
            .expect("rest starts with < or >");
        let value: f64 = number.parse().ok().filter(|x: &f64| x.is_finite()).ok_or_else(|| syntax(&format!("`{number}` is not a number")))?;
        let (split, lhs) = match lhs.split_once(':') {
            Some((s, l)) if !s.is_empty() => (Some(s.to_string()), l),
            Some(_) => return Err(syntax("empty split name before `:`")),
            None => (None, lhs),
        };
        let (lhs, group) = match lhs.split_once('[') {
            Some((l, g)) => {
                let inner = g.strip_suffix(']').ok_or_else(|| syntax("`[` without a closing `]` before the comparison"))?;
                let (by, v) = inner.split_once('=').ok_or_else(|| syntax("a group reads [BY=VALUE], e.g. [lang=zh]"))?;
                if by.is_empty() || v.is_empty() {
                    return Err(syntax("a group reads [BY=VALUE], e.g. [lang=zh]"));
                }
                (l, Some((by.to_string(), v.to_string())))
            }
            None => (lhs, None),
        };
        let (subject, metric) = lhs.rsplit_once('.').ok_or_else(|| syntax("expected SUBJECT.METRIC before the comparison"))?;
        if subject.is_empty() {
            return Err(syntax("no rule name before `.`"));
        }
        let subject = if subject == "pairs" {
            if metric != "ordered" {
                return Err(syntax(&format!("the pairs' metric is `ordered`, not `{metric}`")));
            }
            if let Some((by, _)) = &group
                && by != "kind"
                && by != "lang"
            {
                return Err(syntax(&format!("pairs are grouped by `kind` or `lang`, not `{by}`")));
            }
            Subject::PairsOrdered
        } else {
            let metric = Metric::parse(metric)
                .ok_or_else(|| syntax(&format!("no metric `{metric}`; a rule's metrics are {}", Metric::ALL.map(Metric::name).join(", "))))?;
            if let Some((by, _)) = &group
                && !["lang", "category", "class"].contains(&by.as_str())
            {
                return Err(syntax(&format!("a rule's figures are grouped by `lang`, `category` or `class`, not `{by}`")));
            }
            Subject::Rule { id: subject.to_string(), metric }
        };
        Ok(Gate { expression: expression.to_string(), split, subject, group, op, value })
    }
}

impl Gate {
    /// Refuses a gate naming a rule the rule set lacks or a split the labels lack, before
    /// anything is scored.
    pub fn validate(&self, ruleset: &str, rules: &[&str], splits: &[&str]) -> Result<(), GateError> {
        if let Subject::Rule { id, .. } = &self.subject
            && !rules.contains(&id.as_str())
        {
            return Err(GateError::UnknownRule {
                expression: self.expression.clone(),
                rule: id.clone(),
                ruleset: ruleset.to_string(),
                valid: rules.join(", "),
            });
        }
        if let Some(split) = &self.split
            && !splits.contains(&split.as_str())
        {
            return Err(GateError::UnknownSplit { expression: self.expression.clone(), split: split.clone(), valid: splits.join(", ") });
        }
        Ok(())
    }

    /// The gate on every split it names.
    pub fn check(&self, report: &EvalReport) -> Vec<GateResult> {
        report.splits.iter().filter(|s| self.split.as_ref().is_none_or(|n| *n == s.name)).map(|s| self.check_split(s)).collect()
    }

    fn check_split(&self, split: &SplitReport) -> GateResult {
        let result = |value: Option<f64>, reason: Option<String>| {
            let passed = value.is_some_and(|v| self.op.holds(v, self.value));
            let reason = match (value, passed) {
                (_, true) => None,
                (Some(v), false) => Some(format!("{v:.4} is not {} {}", self.op.symbol(), self.value)),
                (None, false) => reason,
            };
            GateResult { expression: self.expression.clone(), split: split.name.clone(), value, passed, reason }
        };
        let group_words = || self.group.as_ref().map_or(String::new(), |(by, v)| format!(" for {by} `{v}`"));
        match &self.subject {
            Subject::Rule { id, metric } => {
                let Some(rule) = split.rules.iter().find(|r| &r.rule == id) else {
                    return result(None, Some(format!("no answer of split `{}` has a `{id}` label", split.name)));
                };
                let figures = match &self.group {
                    None => Some(&rule.overall),
                    Some((by, v)) => rule.groups.iter().find(|g| g.by == by && &g.value == v).map(|g| &g.figures),
                };
                match figures {
                    None => result(None, Some(format!("no `{id}` label{}", group_words()))),
                    Some(f) => {
                        result(f.get(*metric).map(|e| e.value), Some(format!("{} is undefined{} (no label it needs)", metric.name(), group_words())))
                    }
                }
            }
            Subject::PairsOrdered => {
                let Some(pairs) = &split.pairs_report else {
                    return result(None, Some(format!("split `{}` has no pairs", split.name)));
                };
                let figures = match &self.group {
                    None => Some(&pairs.overall),
                    Some((by, v)) => pairs.groups.iter().find(|g| g.by == by && &g.value == v).map(|g| &g.figures),
                };
                match figures {
                    None => result(None, Some(format!("no pairs{}", group_words()))),
                    Some(f) => result(f.ordered_share.map(|e| e.value), Some("no pairs".into())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(s: &str) -> Gate {
        s.parse().unwrap()
    }

    #[test]
    fn gates_parse_with_split_group_and_spaces() {
        let g = gate("risk.recall>=0.95");
        assert_eq!(
            (g.split, g.subject, g.group, g.op, g.value),
            (None, Subject::Rule { id: "risk".into(), metric: Metric::Recall }, None, Op::Ge, 0.95)
        );
        let g = gate("test: risk.precision[lang=zh] >= 0.95");
        assert_eq!(g.split.as_deref(), Some("test"));
        assert_eq!(g.group, Some(("lang".into(), "zh".into())));
        let g = gate("chain.agreement[class=chain/empty-sections]>0.5");
        assert_eq!((g.group.unwrap().1.as_str(), g.op), ("chain/empty-sections", Op::Gt));
        assert_eq!(gate("pairs.ordered[kind=markers-repeated]>=1").subject, Subject::PairsOrdered);
        assert_eq!(gate("verbosity.f1<0.2").op, Op::Lt);
    }

    #[test]
    fn bad_gates_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Gate>().unwrap_err().to_string();
        assert!(err("risk.recall").contains("no comparison"));
        assert!(err("risk.recal>=0.9").contains("no metric `recal`; a rule's metrics are agreement, precision, recall, f1, specificity"));
        assert!(err("risk.recall>=high").contains("`high` is not a number"));
        assert!(err("pairs.recall>=1").contains("the pairs' metric is `ordered`"));
        assert!(err("risk.recall[zh]>=1").contains("[BY=VALUE]"));
        assert!(err("risk.recall[kind=x]>=1").contains("not `kind`"));
        assert!(err("pairs.ordered[class=x]>=1").contains("by `kind` or `lang`"));
        assert!(err("recall>=1").contains("SUBJECT.METRIC"));
        let g = gate("triage.recall>=0.9");
        let e = g.validate("medical-safety@1.0.0", &["chain", "risk"], &["dev"]).unwrap_err().to_string();
        assert!(e.contains("no rule `triage` in medical-safety@1.0.0 (its rules: chain, risk)"), "{e}");
        let e = gate("test:risk.recall>=0.9").validate("x@1.0.0", &["risk"], &["dev"]).unwrap_err().to_string();
        assert!(e.contains("no split `test` in the labels read (splits: dev)"), "{e}");
    }
}
