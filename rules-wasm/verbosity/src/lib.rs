//! `verbosity`: a penalty against padding an answer to farm reward (0 = fine, 1 = worst).
//!
//! Three terms, each from the response alone:
//!
//! - **Length**: tokens (zh: letters and digits, so Chinese characters; en: words; see
//!   `medrl_sdk::text::tokens`) over the sample language's `budget`, ramping linearly to 1 at
//!   `hard_factor × budget`: `length_excess = clamp((tokens - budget) / ((hard_factor - 1) × budget), 0, 1)`
//!   (a step to 1 just over the budget when `hard_factor <= 1`).
//! - **Repetition**: the share of repeated n-grams (zh character `ngram.zh`-grams, en word
//!   `ngram.en`-grams), `(total - distinct) / total`, judged only when there are at least
//!   `repetition_min_ngrams` n-grams: `rep_excess = clamp((ratio - threshold) / (1 - threshold), 0, 1)`.
//! - **Filler**: occurrences of filler phrases of both languages (希望对你有帮助, "I hope this helps"),
//!   counted up to `filler_cap`.
//!
//! ```text
//! penalty = min(1, w_length × length_excess + w_repetition × rep_excess + w_filler × min(fillers, filler_cap))
//! ```
//!
//! Hit spans: `over-length` runs from the first token past the budget to the end of the response,
//! each `filler` hit covers its phrase, `repetition` has no span (it is a property of the whole text).

use medrl_sdk::text::{ByLang, NormText, PhraseSet, normalize, token_stats};
use medrl_sdk::{Hit, Lang, RuleOutput, Sample};
use serde::Deserialize;

/// The rule's parameters; defaults live in `rule.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Hits reported per code at most (default 10); the score counts them all.
    pub max_hits_per_code: usize,
    /// Tokens an answer may use without penalty (default zh 600 characters, en 350 words).
    pub budget: ByLang<usize>,
    /// The length penalty reaches 1 at `hard_factor × budget` (default 2).
    pub hard_factor: f64,
    /// n of the n-grams (default zh 4 characters, en 3 words).
    pub ngram: ByLang<usize>,
    /// Repeated-n-gram ratio above which repetition is penalised (default zh 0.3, en 0.2).
    pub repetition_threshold: ByLang<f64>,
    /// Fewer n-grams than this are too short to judge repetition (default 20).
    pub repetition_min_ngrams: usize,
    /// Filler phrases; both languages' lists count in every answer.
    pub filler: ByLang<Vec<String>>,
    /// Filler occurrences counted at most (default 3).
    pub filler_cap: usize,
    /// Weights of the three terms (defaults 1, 1, 0.1 per filler).
    pub w_length: f64,
    pub w_repetition: f64,
    pub w_filler: f64,
}

/// A finite number as explanations print it: at most three decimals, no trailing zeros.
fn num(x: f64) -> String {
    // The common values without the float formatter (the same text it would give).
    if x == 0.0 {
        return "0".to_string();
    }
    if x == 1.0 {
        return "1".to_string();
    }
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_string() } else { s.to_string() }
}

/// The prepared rule: the parameters checked, the filler phrases of both languages in one set.
pub struct State {
    params: Params,
    fillers: PhraseSet,
    /// `repetition_threshold` of each language as explanations print it.
    threshold_text: ByLang<String>,
}

/// Checks the parameters and builds the filler matcher.
pub fn prepare(params: Params) -> Result<State, String> {
    if params.max_hits_per_code == 0 {
        return Err("max_hits_per_code is 0; it must be at least 1 (it bounds the hits reported, not the score)".into());
    }
    for (lang, budget) in [("zh", params.budget.zh), ("en", params.budget.en)] {
        if budget == 0 {
            return Err(format!("budget.{lang} is 0; it must be at least 1 token"));
        }
    }
    if !(params.hard_factor.is_finite() && params.hard_factor >= 0.0) {
        return Err(format!(
            "hard_factor is {}; it must be a number >= 0 (at most 1 makes the length penalty a step)",
            params.hard_factor
        ));
    }
    for (lang, n) in [("zh", params.ngram.zh), ("en", params.ngram.en)] {
        if n == 0 {
            return Err(format!("ngram.{lang} is 0; it must be at least 1"));
        }
    }
    for (lang, t) in [("zh", params.repetition_threshold.zh), ("en", params.repetition_threshold.en)] {
        if !(t.is_finite() && (0.0..=1.0).contains(&t)) {
            return Err(format!("repetition_threshold.{lang} is {t}; it must be a ratio from 0 to 1"));
        }
    }
    for (name, w) in
        [("w_length", params.w_length), ("w_repetition", params.w_repetition), ("w_filler", params.w_filler)]
    {
        if !(w.is_finite() && (0.0..=1.0).contains(&w)) {
            return Err(format!("{name} is {w}; it must be a number from 0 to 1"));
        }
    }
    for (lang, items) in [("zh", &params.filler.zh), ("en", &params.filler.en)] {
        if let Some(k) = items.iter().position(|p| normalize(p).trim().is_empty()) {
            return Err(format!("filler.{lang}[{k}] is an empty phrase; remove it or give it text"));
        }
    }
    let fillers = PhraseSet::new(params.filler.both());
    let threshold = &params.repetition_threshold;
    let threshold_text = ByLang { zh: num(threshold.zh), en: num(threshold.en) };
    Ok(State { params, fillers, threshold_text })
}

pub fn evaluate(sample: &Sample, state: &State) -> RuleOutput {
    let params = &state.params;
    let lang = sample.lang;
    let unit = match lang {
        Lang::Zh => "zh chars",
        Lang::En => "en words",
    };
    let text = NormText::new(&sample.response);
    let norm = text.as_str();
    let mut hits = Vec::new();

    // Length and repetition: one pass over the tokens counts them, finds the first one past the
    // budget and numbers them for the n-grams.
    let budget = *params.budget.get(lang);
    let n = *params.ngram.get(lang);
    let tokens = token_stats(norm, lang, n, budget);
    let length_excess = if tokens.count <= budget {
        0.0
    } else {
        let ramp = (params.hard_factor - 1.0) * budget as f64;
        let over = (tokens.count - budget) as f64;
        if ramp > 0.0 { (over / ramp).clamp(0.0, 1.0) } else { 1.0 }
    };
    if let Some(first_over) = tokens.nth_start {
        let (start, _) = text.orig_span(first_over, first_over);
        hits.push(
            Hit::new("over-length", format!("{} {unit} over a budget of {budget}", tokens.count))
                .with_span(start, sample.response.len()),
        );
    }

    // Repetition.
    let threshold = *params.repetition_threshold.get(lang);
    let stats = tokens.ngrams;
    let ratio = stats.repeated_ratio();
    let judged = stats.total >= params.repetition_min_ngrams && stats.total > 0;
    let rep_excess = if judged && ratio > threshold && threshold < 1.0 {
        ((ratio - threshold) / (1.0 - threshold)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Printed only when repetition is judged.
    let ratio_text = if judged { num(ratio) } else { String::new() };
    let threshold_text = state.threshold_text.get(lang);
    if judged && ratio > threshold {
        hits.push(Hit::new("repetition", format!("repeated {n}-gram ratio {ratio_text} > {threshold_text}")));
    }

    // Filler.
    let fillers = state.fillers.find_all(&text);
    for m in fillers.iter().take(params.max_hits_per_code) {
        hits.push(Hit::new("filler", format!("'{}'", &sample.response[m.start..m.end])).with_span(m.start, m.end));
    }
    let filler_term = fillers.len().min(params.filler_cap) as f64;

    let raw = params.w_length * length_excess + params.w_repetition * rep_excess + params.w_filler * filler_term;
    let penalty = if raw.is_finite() { raw.clamp(0.0, 1.0) } else { 1.0 };
    let repetition_part = if judged {
        format!("repeated {n}-gram ratio {ratio_text} (threshold {threshold_text})")
    } else {
        format!("too short to judge repetition ({} {n}-grams)", stats.total)
    };
    let explanation = format!(
        "{} {unit} (budget {budget}); {repetition_part}; {} filler phrase{}; penalty {}",
        tokens.count,
        fillers.len(),
        if fillers.len() == 1 { "" } else { "s" },
        num(penalty)
    );
    let hits = cap_hits(hits, params.max_hits_per_code);
    RuleOutput { score: penalty, applicable: true, hits, explanation }
}

/// Keeps the first `max` hits of each code, in order, so that a pathological answer cannot push
/// the output past the host's `max_output_bytes`; the score is computed before and does not change.
fn cap_hits(hits: Vec<Hit>, max: usize) -> Vec<Hit> {
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    hits.into_iter()
        .filter(|h| {
            let n = counts.entry(h.code.clone()).or_insert(0);
            *n += 1;
            *n <= max
        })
        .collect()
}

medrl_sdk::export_rule!(evaluate, Params, prepare, State);

#[cfg(test)]
mod tests {
    use medrl_sdk::vectors::{check, merge_params, parse_vectors};
    use medrl_sdk::{RuleOutput, Sample};

    /// The `[params]` table of `rule.toml`, as JSON: the defaults every vector starts from.
    fn default_params() -> serde_json::Value {
        let manifest: toml::Table = toml::from_str(include_str!("../rule.toml")).expect("rule.toml parses");
        serde_json::to_value(&manifest["params"]).expect("params convert to JSON")
    }

    /// The error `prepare_json` gives for `params`; panics when they are accepted.
    fn prepare_error(params: serde_json::Value) -> String {
        let input = serde_json::json!({"abi": medrl_sdk::ABI_VERSION, "params": params, "memory_pages": 16});
        match super::prepare_json(&serde_json::to_vec(&input).unwrap()) {
            Ok(_) => panic!("accepted bad params"),
            Err(e) => serde_json::from_slice::<medrl_sdk::abi::GuestError>(&e).unwrap().error,
        }
    }

    /// The defaults with one top-level key replaced.
    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut p = default_params();
        p[key] = value;
        p
    }

    #[test]
    fn prepare_refuses_bad_params_and_says_why() {
        let err = prepare_error(with("repetition_threshold", serde_json::json!({"zh": 1.3, "en": 0.2})));
        assert!(err.starts_with("invalid parameters: repetition_threshold.zh is 1.3"), "{err}");
        let err = prepare_error(with("ngram", serde_json::json!({"zh": 4, "en": 0})));
        assert!(err.contains("ngram.en is 0"), "{err}");
        let err = prepare_error(with("budget", serde_json::json!({"zh": 0, "en": 350})));
        assert!(err.contains("budget.zh is 0"), "{err}");
        let err = prepare_error(with("w_filler", (-1.0).into()));
        assert!(err.contains("w_filler is -1"), "{err}");
        let err = prepare_error(with("filler", serde_json::json!({"zh": [""], "en": []})));
        assert!(err.contains("filler.zh[0] is an empty phrase"), "{err}");
    }

    #[test]
    fn golden_vectors() {
        let defaults = default_params();
        let vectors = parse_vectors(include_str!("../vectors.jsonl")).expect("vectors.jsonl parses");
        assert!(vectors.len() >= 35, "only {} vectors", vectors.len());
        let mut failures = Vec::new();
        for v in &vectors {
            let input = serde_json::json!({
                "abi": medrl_sdk::ABI_VERSION,
                "sample": v.sample,
                "params": merge_params(&defaults, v.params.as_ref()),
            });
            let raw = super::evaluate_json(&serde_json::to_vec(&input).expect("input encodes"));
            let out: RuleOutput = match serde_json::from_slice(&raw) {
                Ok(out) => out,
                Err(_) => {
                    failures.push(format!("{}: {}", v.name, String::from_utf8_lossy(&raw)));
                    continue;
                }
            };
            if !(out.score.is_finite() && (0.0..=1.0).contains(&out.score)) {
                failures.push(format!("{}: score {} outside [0, 1]", v.name, out.score));
            }
            if let Err(e) = check(&v.expect, &out) {
                failures.push(format!("{}: {e}\n    got {}", v.name, String::from_utf8_lossy(&raw)));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} vectors failed:\n{}",
            failures.len(),
            vectors.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn explanation_numbers_are_stable() {
        for (x, want) in [(0.0, "0"), (-0.0, "0"), (1.0, "1"), (0.3, "0.3"), (0.1 + 0.2, "0.3"), (2.0 / 3.0, "0.667")] {
            assert_eq!(super::num(x), want);
        }
    }

    #[test]
    fn over_length_span_starts_at_the_first_token_past_the_budget() {
        let mut params: super::Params = serde_json::from_value(default_params()).unwrap();
        params.budget.zh = 3;
        let sample: Sample = serde_json::from_value(serde_json::json!({
            "id": "s", "prompt": "", "lang": "zh", "category": "general", "risk": "low",
            "response": "多喝　水，注意休息"
        }))
        .unwrap();
        let out = super::evaluate(&sample, &super::prepare(params).unwrap());
        let [s, e] = out.hits[0].span.unwrap();
        assert_eq!(&sample.response[s as usize..e as usize], "注意休息");
    }
}
