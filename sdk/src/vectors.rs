//! Golden test vectors: a sample, optional parameter overrides, and what the rule must say.
//!
//! One vector per line of a rule's `vectors.jsonl`. The rule crate's native test and the host's
//! `medrl rules test` (which runs the built WebAssembly) both check outputs with [`check`].

use crate::abi::{RuleOutput, Sample};
use serde::{Deserialize, Serialize};

/// One golden vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// Unique within the file; says what the vector pins (`zh-missing-advice`).
    pub name: String,
    pub sample: Sample,
    /// Merged over the manifest's default params (object keys replace, top level only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    pub expect: Expectation,
}

/// What the output must be. Unset fields are not checked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Expected score, compared within `tolerance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Absolute tolerance on `score`; default 1e-6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// Inclusive bounds on `score`, for vectors that pin a direction rather than a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicable: Option<bool>,
    /// The hit codes, as a multiset, in any order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit_codes: Option<Vec<String>>,
    /// Each string must occur in the explanation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explanation_contains: Vec<String>,
}

/// Merges `overrides` over `defaults`: top-level keys of an object replace the default's.
pub fn merge_params(defaults: &serde_json::Value, overrides: Option<&serde_json::Value>) -> serde_json::Value {
    match (defaults, overrides) {
        (serde_json::Value::Object(d), Some(serde_json::Value::Object(o))) => {
            let mut merged = d.clone();
            for (k, v) in o {
                merged.insert(k.clone(), v.clone());
            }
            serde_json::Value::Object(merged)
        }
        (_, Some(o)) => o.clone(),
        (d, None) => d.clone(),
    }
}

/// Checks `out` against `expect`; the error lists every mismatch.
#[allow(clippy::neg_cmp_op_on_partial_ord, clippy::collapsible_if)] pub fn check(expect: &Expectation, out: &RuleOutput) -> Result<(), String> { // negated bounds: NaN fails each
    let mut problems = Vec::new();
    if let Some(want) = expect.score {
        let tol = expect.tolerance.unwrap_or(1e-6);
        if !((out.score - want).abs() <= tol) {
            problems.push(format!("score {} != expected {want} (tolerance {tol})", out.score));
        }
    }
    if let Some(min) = expect.score_min {
        if !(out.score >= min) {
            problems.push(format!("score {} < score_min {min}", out.score));
        }
    }
    if let Some(max) = expect.score_max {
        if !(out.score <= max) {
            problems.push(format!("score {} > score_max {max}", out.score));
        }
    }
    if let Some(want) = expect.applicable {
        if out.applicable != want {
            problems.push(format!("applicable {} != expected {want}", out.applicable));
        }
    }
    if let Some(want) = &expect.hit_codes {
        let mut got: Vec<&str> = out.hits.iter().map(|h| h.code.as_str()).collect();
        let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
        got.sort_unstable();
        want.sort_unstable();
        if got != want {
            problems.push(format!("hit codes {got:?} != expected {want:?}"));
        }
    }
    for needle in &expect.explanation_contains {
        if !out.explanation.contains(needle.as_str()) {
            problems.push(format!("explanation {:?} does not contain {needle:?}", out.explanation));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// Parses a `vectors.jsonl` text; errors name the line.
pub fn parse_vectors(text: &str) -> Result<Vec<Vector>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(score: f64, codes: &[&str]) -> RuleOutput {
        RuleOutput {
            score,
            applicable: true,
            hits: codes.iter().map(|c| crate::abi::Hit::new(*c, "")).collect(),
            explanation: "2 of 4 sections".into(),
        }
    }

    #[test]
    fn check_reports_each_mismatch() {
        let e = Expectation {
            score: Some(0.5),
            hit_codes: Some(vec!["b".into(), "a".into()]),
            explanation_contains: vec!["of 4".into()],
            ..Default::default()
        };
        assert!(check(&e, &out(0.5, &["a", "b"])).is_ok());
        let err = check(&e, &out(0.7, &["a"])).unwrap_err();
        assert!(err.contains("score 0.7") && err.contains("hit codes"), "{err}");
        // NaN never satisfies a bound.
        let bounded = Expectation { score_min: Some(0.0), ..Default::default() };
        assert!(check(&bounded, &out(f64::NAN, &[])).is_err());
    }

    #[test]
    fn merge_replaces_top_level_keys_only() {
        let d = serde_json::json!({"a": 1, "b": {"x": 1}});
        let o = serde_json::json!({"b": {"y": 2}});
        assert_eq!(merge_params(&d, Some(&o)), serde_json::json!({"a": 1, "b": {"y": 2}}));
    }
}
