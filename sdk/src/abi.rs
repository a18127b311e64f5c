//! The `medrl-rule/1` ABI, shared by the host (wasmtime) and every guest rule.
//!
//! A rule is a core WebAssembly module for `wasm32-unknown-unknown` with no imports. It exports
//! `memory`, `medrl_alloc(len: i32) -> i32`, `medrl_prepare(ptr: i32, len: i32) -> i64` and
//! `medrl_evaluate(ptr: i32, len: i32) -> i64`, and carries the ABI version in a custom section
//! named `medrl:abi`.
//!
//! Per instance the host first writes `{"abi", "params", "memory_pages"}` (see
//! [`crate::guest::PrepareInput`]) into memory it got from `medrl_alloc` and calls
//! `medrl_prepare` (0 = ready). Then, per sample, it writes the UTF-8 JSON [`Sample`] the same way,
//! calls `medrl_evaluate`, and reads a UTF-8 JSON [`RuleOutput`] (or a [`GuestError`]) at
//! `(ret >> 32, ret & 0xffff_ffff)`. `medrl_alloc` frees everything the previous sample
//! allocated, so each evaluation starts from the state `medrl_prepare` left.
//! [`RuleInput`] (params and sample in one document) is the one-shot form golden vectors use.

use serde::{Deserialize, Serialize};

/// The ABI this SDK speaks; stamped into every module's `medrl:abi` section.
pub const ABI_VERSION: &str = "medrl-rule/1";
/// The ABI major version; a host supports exactly one major and refuses modules of another.
pub const ABI_MAJOR: u32 = 1;
/// Name of the custom section holding [`ABI_VERSION`].
pub const ABI_SECTION: &str = "medrl:abi";
/// The exported linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// `medrl_alloc(len: i32) -> i32`: reserve `len` bytes for the input, return their address.
pub const EXPORT_ALLOC: &str = "medrl_alloc";
/// `medrl_prepare(ptr: i32, len: i32) -> i64`: decode the parameters and build the rule's state
/// once per instance; 0 on success, else a packed `{"error": …}` like `medrl_evaluate`'s output.
pub const EXPORT_PREPARE: &str = "medrl_prepare";
/// `medrl_evaluate(ptr: i32, len: i32) -> i64`: score one sample, return `(out_ptr << 32) | out_len`.
pub const EXPORT_EVALUATE: &str = "medrl_evaluate";

/// Parses `medrl-rule/<major>` into its major version.
pub fn parse_abi_major(version: &str) -> Option<u32> {
    version.strip_prefix("medrl-rule/")?.parse().ok()
}

/// Language of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Zh,
    En,
}

/// Clinical category of a prompt. `other` keeps an old rule working when a newer host sends a
/// category it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Emergency,
    Medication,
    Abuse,
    Chronic,
    Pediatrics,
    Pregnancy,
    MentalHealth,
    General,
    #[serde(other)]
    Other,
}

impl Category {
    /// Every category a sample may carry, as spelled in JSON (for error messages that list them).
    pub const ALL: [&'static str; 8] = [
        "emergency",
        "medication",
        "abuse",
        "chronic",
        "pediatrics",
        "pregnancy",
        "mental_health",
        "general",
    ];

    /// The JSON spelling of this category.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Emergency => "emergency",
            Category::Medication => "medication",
            Category::Abuse => "abuse",
            Category::Chronic => "chronic",
            Category::Pediatrics => "pediatrics",
            Category::Pregnancy => "pregnancy",
            Category::MentalHealth => "mental_health",
            Category::General => "general",
            Category::Other => "other",
        }
    }
}

/// Risk stratum of a prompt: `high` covers emergencies, medication and misuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    High,
    Low,
}

/// What the data set expects of a good answer to this prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Expect {
    /// Red-flag signs a good answer names (e.g. "胸痛放射至左臂", "slurred speech").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emergency_signs: Vec<String>,
}

/// One prompt and the policy's response to it: what every rule sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub id: String,
    pub prompt: String,
    pub response: String,
    pub lang: Lang,
    pub category: Category,
    pub risk: Risk,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub expect: Expect,
}

/// The JSON document the host passes to `medrl_evaluate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleInput<P> {
    /// Always [`ABI_VERSION`].
    pub abi: String,
    pub sample: Sample,
    /// The rule's parameters: manifest defaults merged with the rule set's overrides.
    pub params: P,
}

/// One finding of a rule, with the byte span of `response` it points at when there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Stable, kebab-case reason code (e.g. `missing-section`, `dose-above-max`).
    pub code: String,
    /// Human-readable detail: the phrase, the drug, the section.
    #[serde(default)]
    pub detail: String,
    /// `[start, end)` byte offsets into `sample.response`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<[u32; 2]>,
}

impl Hit {
    pub fn new(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Hit { code: code.into(), detail: detail.into(), span: None }
    }

    pub fn with_span(mut self, start: usize, end: usize) -> Self {
        self.span = Some([start as u32, end as u32]);
        self
    }
}

/// What a rule says about one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleOutput {
    /// Finite, inside the manifest's `output_range`.
    pub score: f64,
    /// `false`: the rule has nothing to say about this sample; the aggregator must not count it.
    pub applicable: bool,
    #[serde(default)]
    pub hits: Vec<Hit>,
    #[serde(default)]
    pub explanation: String,
}

impl RuleOutput {
    /// A score with an explanation and no hits.
    pub fn score(score: f64, explanation: impl Into<String>) -> Self {
        RuleOutput { score, applicable: true, hits: Vec::new(), explanation: explanation.into() }
    }

    /// The rule does not apply to this sample.
    pub fn not_applicable(explanation: impl Into<String>) -> Self {
        RuleOutput { score: 0.0, applicable: false, hits: Vec::new(), explanation: explanation.into() }
    }
}

/// What a guest returns instead of a [`RuleOutput`] when it cannot evaluate (bad params, bad input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestError {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_major_parses_only_our_prefix() {
        assert_eq!(parse_abi_major("medrl-rule/1"), Some(1));
        assert_eq!(parse_abi_major("medrl-rule/12"), Some(12));
        assert_eq!(parse_abi_major("other/1"), None);
        assert_eq!(parse_abi_major("medrl-rule/x"), None);
    }

    #[test]
    fn unknown_category_is_other_not_an_error() {
        let c: Category = serde_json::from_str("\"dermatology\"").unwrap();
        assert_eq!(c, Category::Other);
        let c: Category = serde_json::from_str("\"mental_health\"").unwrap();
        assert_eq!(c, Category::MentalHealth);
    }

    #[test]
    fn sample_round_trips_with_defaults() {
        let json = r#"{"id":"a","prompt":"p","response":"r","lang":"zh","category":"emergency","risk":"high"}"#;
        let s: Sample = serde_json::from_str(json).unwrap();
        assert!(s.tags.is_empty() && s.expect.emergency_signs.is_empty());
        assert_eq!(serde_json::to_value(&s).unwrap()["lang"], "zh");
    }
}
