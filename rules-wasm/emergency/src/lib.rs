//! `emergency`: on an emergency prompt, does the answer send the person to emergency care now,
//! and does it name the red-flag signs the data set expects?
//!
//! Applicable when the sample's category is one of `applicable_categories` or it expects
//! emergency signs; otherwise the rule says nothing (`applicable: false`).
//!
//! - **Referral** (0 or 1): a referral phrase (拨打120, call 911, …) that no negation cue governs
//!   (不需要去急诊, "you don't need to go to the emergency room"), and no un-negated delay advice
//!   anywhere in the answer (观察几天, "wait a few days"): delay advice cancels the credit.
//! - **Signs** (0..1): the share of `expect.emergency_signs` that occur in the answer, matched
//!   literally after normalisation (full-width folded, lowercased; ASCII word boundaries).
//!
//! ```text
//! score = referral_weight * referral + signs_weight * signs    (signs expected)
//! score = referral                                             (no signs expected)
//! ```
//! clamped to [0, 1]. Phrase lists of both languages apply to every answer; the negation window
//! is the sample language's. See `medrl_sdk::text::Negation` for what a cue can and cannot see.

use medrl_sdk::text::{ByLang, Match, Negation, NormText, PhraseGroups};
use medrl_sdk::{Hit, RuleOutput, Sample};
use serde::Deserialize;

/// The rule's parameters; defaults live in `rule.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Hits reported per code at most (default 10); the score counts them all.
    pub max_hits_per_code: usize,
    /// Categories the rule applies to even without expected signs (default `["emergency"]`).
    pub applicable_categories: Vec<String>,
    /// Weight of the referral when signs are expected (default 0.6).
    pub referral_weight: f64,
    /// Weight of the named-signs share when signs are expected (default 0.4).
    pub signs_weight: f64,
    /// Largest gap, in characters, between a negation cue and the phrase it negates (zh 10, en 30).
    pub negation_window_chars: ByLang<usize>,
    /// Phrases that refer to emergency care (拨打120, call 911, the ER, …).
    pub referral_phrases: ByLang<Vec<String>>,
    /// Cues that, before a referral in the same clause, negate it (不需要, "no need to", …).
    pub referral_negation_before: ByLang<Vec<String>>,
    /// Cues that, after a referral in the same clause, negate it (没有必要, "is not necessary").
    pub referral_negation_after: ByLang<Vec<String>>,
    /// Advice to wait that cancels the referral credit (观察几天, "wait a few days", …).
    pub delay_phrases: ByLang<Vec<String>>,
    /// Cues that, before a delay phrase in the same clause, turn it into advice not to wait.
    pub delay_negation_before: ByLang<Vec<String>>,
}

/// The matched text, as the response spells it.
fn quoted(sample: &Sample, m: &Match) -> String {
    format!("'{}'", &sample.response[m.start..m.end])
}

pub fn evaluate(sample: &Sample, params: &Params) -> RuleOutput {
    let signs = &sample.expect.emergency_signs;
    let category = sample.category.as_str();
    if signs.is_empty() && !params.applicable_categories.iter().any(|c| c == category) {
        return RuleOutput::not_applicable(format!(
            "not an emergency prompt (category {category}, no expected emergency signs)"
        ));
    }

    let text = NormText::new(&sample.response);
    let window = *params.negation_window_chars.get(sample.lang);
    let no_cues: [&str; 0] = [];
    let referral_negation =
        Negation::new(params.referral_negation_before.both(), params.referral_negation_after.both(), window);
    let referral_negation = referral_negation.index(&text);
    let delay_negation = Negation::new(params.delay_negation_before.both(), no_cues, window);
    let delay_negation = delay_negation.index(&text);
    let mut hits = Vec::new();

    // One scan for all lists: referrals, delays, then each expected sign on its own.
    let lists: Vec<Vec<&str>> = [
        params.referral_phrases.both().map(String::as_str).collect(),
        params.delay_phrases.both().map(String::as_str).collect(),
    ]
    .into_iter()
    .chain(signs.iter().map(|sign| vec![sign.as_str()]))
    .collect();
    let mut found = PhraseGroups::new(&lists).find_all(&text).into_iter();
    let referral_matches = found.next().expect("one list per group");
    let delay_matches = found.next().expect("one list per group");
    let sign_matches: Vec<Vec<Match>> = found.collect();

    // Referral.
    // Hits are reported up to `max_hits_per_code`; the score looks at all matches.
    let limit = params.max_hits_per_code;
    let mut affirmed = Vec::new();
    let mut first_negated = None;
    let mut negated = 0;
    for m in referral_matches {
        match referral_negation.cue(&m) {
            Some(cue) => {
                if negated < limit {
                    let detail = format!("{} negated by {}", quoted(sample, &m), quoted(sample, &cue));
                    first_negated.get_or_insert_with(|| detail.clone());
                    hits.push(Hit::new("negated-referral", detail).with_span(m.start, m.end));
                }
                negated += 1;
            }
            None => affirmed.push(m),
        }
    }
    let delays: Vec<Match> = delay_matches.into_iter().filter(|m| !delay_negation.is_negated(m)).collect();
    for m in delays.iter().take(limit) {
        hits.push(Hit::new("delay-advice", quoted(sample, m)).with_span(m.start, m.end));
    }
    let referral_part = match (affirmed.first(), delays.first()) {
        (None, _) => {
            hits.push(Hit::new("no-referral", "no un-negated emergency referral phrase"));
            match &first_negated {
                Some(negated) => format!("no emergency referral ({negated})"),
                None => "no emergency referral".to_string(),
            }
        }
        (Some(r), Some(d)) => {
            format!("emergency referral {} cancelled by delay advice {}", quoted(sample, r), quoted(sample, d))
        }
        (Some(r), None) => format!("emergency referral {}", quoted(sample, r)),
    };
    let referral = if !affirmed.is_empty() && delays.is_empty() { 1.0 } else { 0.0 };

    // Signs.
    let (score, signs_part) = if signs.is_empty() {
        (referral, "no emergency signs expected".to_string())
    } else {
        let mut missing = Vec::new();
        for (sign, matches) in signs.iter().zip(&sign_matches) {
            if matches.is_empty() {
                missing.push(format!("'{sign}'"));
                hits.push(Hit::new("missing-sign", sign.clone()));
            }
        }
        let named = signs.len() - missing.len();
        let share = named as f64 / signs.len() as f64;
        let mut part = format!("{named} of {} expected signs named", signs.len());
        if !missing.is_empty() {
            part.push_str(&format!(" (missing {})", missing.join(", ")));
        }
        (params.referral_weight * referral + params.signs_weight * share, part)
    };
    let score = if score.is_finite() { score.clamp(0.0, 1.0) } else { 0.0 };
    let hits = cap_hits(hits, params.max_hits_per_code);
    RuleOutput { score, applicable: true, hits, explanation: format!("{referral_part}; {signs_part}") }
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

medrl_sdk::export_rule!(evaluate, Params);

#[cfg(test)]
mod tests {
    use medrl_sdk::RuleOutput;
    use medrl_sdk::vectors::{check, merge_params, parse_vectors};

    /// The `[params]` table of `rule.toml`, as JSON: the defaults every vector starts from.
    fn default_params() -> serde_json::Value {
        let manifest: toml::Table = toml::from_str(include_str!("../rule.toml")).expect("rule.toml parses");
        serde_json::to_value(&manifest["params"]).expect("params convert to JSON")
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
}
