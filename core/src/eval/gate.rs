//! Regression gates: `--gate` expressions that the candidate variant must satisfy before it
//! ships, checked on the point estimates of the report.
//!
//! ```text
//! gate      = SET "." METRIC OP reference [ ("+" | "-") NUMBER ]
//! reference = VARIANT | ["-"] NUMBER
//! OP        = "<=" | "<" | ">=" | ">"
//! ```
//!
//! `redteam.risky_rate <= sft` (no more risky answers than the SFT model),
//! `gold.chain_coverage >= sft - 0.02` (at most two points of chain coverage lost),
//! `gold.mean_reward > 0.1` (an absolute floor). Names are letters, digits and `_`, with `-`
//! allowed between two such runs when a letter follows it (`rl-v2`), so `sft-0.02` reads as
//! `sft - 0.02`. A gate is parsed when given and validated against the sets, the variants and the
//! rule set's metrics before any model runs.

use super::metrics::Metric;
use serde::Serialize;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = ">")]
    Gt,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Le => "<=",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Gt => ">",
        }
    }

    pub fn holds(self, lhs: f64, rhs: f64) -> bool {
        match self {
            Op::Le => lhs <= rhs,
            Op::Lt => lhs < rhs,
            Op::Ge => lhs >= rhs,
            Op::Gt => lhs > rhs,
        }
    }
}

/// What the candidate's value is compared with.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reference {
    /// The same metric of another variant on the same set.
    Variant(String),
    Number(f64),
}

/// One parsed gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The expression as given.
    pub expression: String,
    pub set: String,
    pub metric: Metric,
    pub op: Op,
    pub reference: Reference,
    /// Added to the reference (`sft - 0.02` → −0.02).
    pub offset: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GateError {
    #[error(
        "gate `{expression}`: {problem} at column {column}; a gate reads SET.METRIC OP (VARIANT | NUMBER) [(+|-) NUMBER], e.g. `redteam.risky_rate <= sft` or `gold.chain_coverage >= sft - 0.02`"
    )]
    Syntax { expression: String, column: usize, problem: String },
    #[error("gate `{expression}`: no metric `{metric}`; the metrics are {valid}")]
    UnknownMetric { expression: String, metric: String, valid: String },
    #[error("gate `{expression}`: no set `{set}` in this evaluation; the sets are {valid} (add one with --set NAME=FILE)")]
    UnknownSet { expression: String, set: String, valid: String },
    #[error("gate `{expression}`: no variant `{variant}`; the variants are {valid}")]
    UnknownVariant { expression: String, variant: String, valid: String },
    #[error("gate `{expression}`: compares the candidate `{variant}` with itself; name the baseline (e.g. {baseline}) or a number")]
    SelfComparison { expression: String, variant: String, baseline: String },
    #[error("gate `{expression}`: metric `{metric}` needs rule `{rule}`, which rule set {ruleset} does not have")]
    MetricUnavailable { expression: String, metric: Metric, rule: &'static str, ruleset: String },
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

impl std::str::FromStr for Gate {
    type Err = GateError;

    fn from_str(expression: &str) -> Result<Gate, GateError> {
        let mut p = Parser { text: expression, pos: 0 };
        let syntax =
            |p: &Parser, problem: &str| GateError::Syntax { expression: expression.to_string(), column: p.pos + 1, problem: problem.to_string() };
        let set = p.name().ok_or_else(|| syntax(&p, "expected a set name"))?;
        if !p.eat(".") {
            return Err(syntax(&p, "expected `.` between set and metric"));
        }
        let metric_name = p.name().ok_or_else(|| syntax(&p, "expected a metric name"))?;
        let metric = Metric::parse(metric_name).ok_or_else(|| GateError::UnknownMetric {
            expression: expression.to_string(),
            metric: metric_name.to_string(),
            valid: quoted(&Metric::ALL.map(Metric::name)),
        })?;
        // Two-character operators first.
        let op = [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)]
            .into_iter()
            .find(|(s, _)| p.eat(s))
            .map(|(_, op)| op)
            .ok_or_else(|| syntax(&p, "expected one of <=, <, >=, >"))?;
        let reference = if let Some(x) = p.signed_number() {
            Reference::Number(x)
        } else if let Some(v) = p.name() {
            Reference::Variant(v.to_string())
        } else {
            return Err(syntax(&p, "expected a variant name or a number"));
        };
        let offset = if p.eat("+") {
            p.number().ok_or_else(|| syntax(&p, "expected a number after `+`"))?
        } else if p.eat("-") {
            -p.number().ok_or_else(|| syntax(&p, "expected a number after `-`"))?
        } else {
            0.0
        };
        p.skip_space();
        if p.pos < expression.len() {
            return Err(syntax(&p, &format!("unexpected `{}`", &expression[p.pos..])));
        }
        Ok(Gate { expression: expression.to_string(), set: set.to_string(), metric, op, reference, offset })
    }
}

impl Gate {
    /// Checks the names against this evaluation: the sets, the variants, the candidate, and the
    /// metrics the rule set supports.
    pub fn validate(
        &self,
        sets: &[&str],
        variants: &[&str],
        candidate: &str,
        baseline: &str,
        metrics: &[Metric],
        ruleset: &str,
    ) -> Result<(), GateError> {
        let expression = self.expression.clone();
        if !sets.contains(&self.set.as_str()) {
            return Err(GateError::UnknownSet { expression, set: self.set.clone(), valid: quoted(sets) });
        }
        if let Reference::Variant(v) = &self.reference {
            if !variants.contains(&v.as_str()) {
                return Err(GateError::UnknownVariant { expression, variant: v.clone(), valid: quoted(variants) });
            }
            if v == candidate {
                return Err(GateError::SelfComparison { expression, variant: v.clone(), baseline: format!("`{baseline}`") });
            }
        }
        if !metrics.contains(&self.metric) {
            let rule = self.metric.rule().expect("metrics without a rule are always available");
            return Err(GateError::MetricUnavailable { expression, metric: self.metric, rule, ruleset: ruleset.to_string() });
        }
        Ok(())
    }

    /// Checks the gate on the candidate's value and, for a variant reference, that variant's value.
    pub fn check(&self, candidate: &str, candidate_value: Option<f64>, reference_value: Option<f64>) -> GateResult {
        let threshold = match &self.reference {
            Reference::Number(x) => Some(x + self.offset),
            Reference::Variant(_) => reference_value.map(|x| x + self.offset),
        };
        let (passed, reason) = match (candidate_value, threshold) {
            (Some(lhs), Some(rhs)) => (self.op.holds(lhs, rhs), None),
            // A gate that cannot be checked must not pass: no answer had a value for the metric.
            (None, _) => (false, Some(format!("`{candidate}` has no value for {} on `{}`", self.metric, self.set))),
            (_, None) => (false, Some(format!("the reference has no value for {} on `{}`", self.metric, self.set))),
        };
        GateResult {
            expression: self.expression.clone(),
            set: self.set.clone(),
            metric: self.metric,
            candidate: candidate.to_string(),
            candidate_value,
            op: self.op,
            reference: self.reference.clone(),
            reference_value: match self.reference {
                Reference::Variant(_) => reference_value,
                Reference::Number(x) => Some(x),
            },
            offset: self.offset,
            threshold,
            passed,
            reason,
        }
    }
}

/// One gate, checked: the values it compared and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub expression: String,
    pub set: String,
    pub metric: Metric,
    pub candidate: String,
    pub candidate_value: Option<f64>,
    pub op: Op,
    pub reference: Reference,
    pub reference_value: Option<f64>,
    pub offset: f64,
    /// `reference_value + offset`.
    pub threshold: Option<f64>,
    pub passed: bool,
    /// Why a gate failed without a comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`, and `-` followed by a letter or `_` continues a name.
    fn name(&mut self) -> Option<&'a str> {
        self.skip_space();
        let b = self.rest().as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let starts = |c: u8| c.is_ascii_alphabetic() || c == b'_';
        if !b.first().is_some_and(|&c| starts(c)) {
            return None;
        }
        let mut end = 1;
        loop {
            while end < b.len() && word(b[end]) {
                end += 1;
            }
            if end + 1 < b.len() && b[end] == b'-' && starts(b[end + 1]) {
                end += 1;
            } else {
                break;
            }
        }
        let start = self.pos;
        self.pos += end;
        Some(&self.text[start..self.pos])
    }

    /// An unsigned decimal number: digits with an optional fraction and exponent (`0.02`, `.5`, `1e-3`).
    fn number(&mut self) -> Option<f64> {
        self.skip_space();
        let b = self.rest().as_bytes();
        let digits = |mut i: usize| {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        let mut end = digits(0);
        if end < b.len() && b[end] == b'.' {
            end = digits(end + 1);
        }
        if end == 0 || (end == 1 && b[0] == b'.') {
            return None;
        }
        if end < b.len() && (b[end] == b'e' || b[end] == b'E') {
            let mut e = end + 1;
            if e < b.len() && (b[e] == b'+' || b[e] == b'-') {
                e += 1;
            }
            let after = digits(e);
            if after > e {
                end = after;
            }
        }
        let x = self.rest()[..end].parse().ok()?;
        self.pos += end;
        Some(x)
    }

    /// A number with an optional leading `-` (the reference `> -0.1`).
    fn signed_number(&mut self) -> Option<f64> {
        let start = self.pos;
        let negative = self.eat("-");
        match self.number() {
            Some(x) => Some(if negative { -x } else { x }),
            None => {
                self.pos = start;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(s: &str) -> Gate {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_the_three_forms_of_the_issue() {
        let g = gate("redteam.risky_rate <= sft");
        assert_eq!(
            (g.set.as_str(), g.metric, g.op, &g.reference, g.offset),
            ("redteam", Metric::RiskyRate, Op::Le, &Reference::Variant("sft".into()), 0.0)
        );
        let g = gate("gold.chain_coverage >= sft - 0.02");
        assert_eq!((g.metric, g.op, &g.reference, g.offset), (Metric::ChainCoverage, Op::Ge, &Reference::Variant("sft".into()), -0.02));
        let g = gate("gold.mean_reward > 0.1");
        assert_eq!((g.op, &g.reference), (Op::Gt, &Reference::Number(0.1)));
    }

    #[test]
    fn spacing_signs_and_hyphenated_names() {
        assert_eq!(
            gate("gold.chain_coverage>=sft-0.02"),
            Gate { expression: "gold.chain_coverage>=sft-0.02".into(), ..gate("gold.chain_coverage >= sft - 0.02") }
        );
        let g = gate("  gold.mean_reward > -0.1  ");
        assert_eq!(g.reference, Reference::Number(-0.1));
        let g = gate("red-team.eos_rate < rl-v2 + 1e-3");
        assert_eq!((g.set.as_str(), &g.reference, g.offset), ("red-team", &Reference::Variant("rl-v2".into()), 0.001));
        assert_eq!(gate("gold.eos_rate >= .5").reference, Reference::Number(0.5));
    }

    #[test]
    fn syntax_errors_name_the_column_and_the_grammar() {
        for (s, column, problem) in [
            ("gold chain_coverage >= sft", 6, "expected `.`"),
            ("gold.chain_coverage = sft", 21, "expected one of"),
            ("gold.chain_coverage >=", 23, "expected a variant name or a number"),
            ("gold.chain_coverage >= sft -", 29, "expected a number after `-`"),
            ("gold.chain_coverage >= sft 0.1", 28, "unexpected `0.1`"),
            (".risky_rate <= sft", 1, "expected a set name"),
        ] {
            let err = s.parse::<Gate>().unwrap_err();
            match &err {
                GateError::Syntax { column: c, problem: p, .. } => assert!(*c == column && p.contains(problem), "{s}: {err}"),
                other => panic!("{s}: {other}"),
            }
            assert!(err.to_string().contains("SET.METRIC OP (VARIANT | NUMBER)"), "{err}");
        }
    }

    #[test]
    fn an_unknown_metric_lists_the_valid_ones() {
        let err = "redteam.risky <= sft".parse::<Gate>().unwrap_err().to_string();
        assert!(
            err.contains("no metric `risky`") && err.contains("`risky_rate`") && err.contains("`chain_coverage`") && err.contains("`eos_rate`"),
            "{err}"
        );
    }

    #[test]
    fn validation_names_what_is_wrong_and_the_valid_names() {
        let all = Metric::ALL.to_vec();
        let v = |s: &str, metrics: &[Metric]| gate(s).validate(&["gold", "redteam"], &["sft", "rl"], "rl", "sft", metrics, "medical-safety@1.0.0");
        assert_eq!(v("redteam.risky_rate <= sft", &all), Ok(()));
        assert_eq!(v("gold.mean_reward > 0.1", &all), Ok(()));
        let err = v("red.risky_rate <= sft", &all).unwrap_err().to_string();
        assert!(err.contains("no set `red`") && err.contains("`gold`, `redteam`"), "{err}");
        let err = v("redteam.risky_rate <= base", &all).unwrap_err().to_string();
        assert!(err.contains("no variant `base`") && err.contains("`sft`, `rl`"), "{err}");
        let err = v("redteam.risky_rate <= rl", &all).unwrap_err().to_string();
        assert!(err.contains("with itself") && err.contains("`sft`"), "{err}");
        let err = v("redteam.risky_rate <= sft", &Metric::available(&["chain"])).unwrap_err().to_string();
        assert!(err.contains("needs rule `risk`") && err.contains("medical-safety@1.0.0"), "{err}");
    }

    #[test]
    fn checking_compares_with_the_reference_plus_the_offset() {
        let g = gate("gold.chain_coverage >= sft - 0.02");
        // 0.70 ≥ 0.71 − 0.02 = 0.69: passes; 0.68 does not.
        let r = g.check("rl", Some(0.70), Some(0.71));
        assert!(r.passed && (r.threshold.unwrap() - 0.69).abs() < 1e-12, "{r:?}");
        assert!(!g.check("rl", Some(0.68), Some(0.71)).passed);
        let g = gate("redteam.risky_rate <= sft");
        assert!(g.check("rl", Some(0.25), Some(0.25)).passed, "equal is not worse");
        assert!(!g.check("rl", Some(0.26), Some(0.25)).passed);
        let g = gate("gold.mean_reward > 0.1");
        let r = g.check("rl", Some(0.1), None);
        assert!(!r.passed && r.reference_value == Some(0.1) && r.threshold == Some(0.1));
        assert!(g.check("rl", Some(0.11), None).passed);
    }

    #[test]
    fn a_gate_without_values_fails_and_says_why() {
        let g = gate("gold.emergency_coverage >= sft");
        let r = g.check("rl", None, Some(0.5));
        assert!(!r.passed && r.reason.as_deref().unwrap().contains("`rl` has no value for emergency_coverage"), "{r:?}");
        let r = g.check("rl", Some(0.5), None);
        assert!(!r.passed && r.reason.as_deref().unwrap().contains("reference has no value"), "{r:?}");
    }
}
