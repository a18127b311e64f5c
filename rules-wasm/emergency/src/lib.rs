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

use medrl_sdk::text::{ByLang, Match, NegationIndex, NormText, PhraseGroups, find_phrase, normalize};
use medrl_sdk::{Category, Hit, RuleOutput, Sample};
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

/// Groups of the one scan of the response, in [`State::groups`].
const REFERRALS: usize = 0;
const DELAYS: usize = 1;
const REFERRAL_CUES_BEFORE: usize = 2;
const REFERRAL_CUES_AFTER: usize = 3;
const DELAY_CUES_BEFORE: usize = 4;

/// The prepared rule: the parameters checked, and every phrase list normalised into one matcher.
pub struct State {
    params: Params,
    /// Referrals, delays and the negation cues of both, scanned together ([`REFERRALS`], …).
    groups: PhraseGroups,
}

/// Checks the parameters and builds the matcher.
pub fn prepare(params: Params) -> Result<State, String> {
    if params.max_hits_per_code == 0 {
        return Err("max_hits_per_code is 0; it must be at least 1 (it bounds the hits reported, not the score)".into());
    }
    for (name, w) in [("referral_weight", params.referral_weight), ("signs_weight", params.signs_weight)] {
        if !(w.is_finite() && (0.0..=1.0).contains(&w)) {
            return Err(format!("{name} is {w}; it must be a number from 0 to 1"));
        }
    }
    for c in &params.applicable_categories {
        if !(Category::ALL.contains(&c.as_str()) || c == Category::Other.as_str()) {
            return Err(format!(
                "applicable_categories has `{c}`, which is not a category; use one of {} or other",
                Category::ALL.join(", ")
            ));
        }
    }
    if params.referral_phrases.zh.is_empty() && params.referral_phrases.en.is_empty() {
        return Err("referral_phrases is empty in both languages; without a referral phrase no answer can score".into());
    }
    for (name, list) in [
        ("referral_phrases", &params.referral_phrases),
        ("referral_negation_before", &params.referral_negation_before),
        ("referral_negation_after", &params.referral_negation_after),
        ("delay_phrases", &params.delay_phrases),
        ("delay_negation_before", &params.delay_negation_before),
    ] {
        for (lang, items) in [("zh", &list.zh), ("en", &list.en)] {
            if let Some(k) = items.iter().position(|p| normalize(p).trim().is_empty()) {
                return Err(format!("{name}.{lang}[{k}] is an empty phrase; remove it or give it text"));
            }
        }
    }
    let groups = PhraseGroups::new([
        params.referral_phrases.both().collect::<Vec<_>>(),
        params.delay_phrases.both().collect(),
        params.referral_negation_before.both().collect(),
        params.referral_negation_after.both().collect(),
        params.delay_negation_before.both().collect(),
    ]);
    Ok(State { params, groups })
}

pub fn evaluate(sample: &Sample, state: &State) -> RuleOutput {
    let params = &state.params;
    let signs = &sample.expect.emergency_signs;
    let category = sample.category.as_str();
    if signs.is_empty() && !params.applicable_categories.iter().any(|c| c == category) {
        return RuleOutput::not_applicable(format!(
            "not an emergency prompt (category {category}, no expected emergency signs)"
        ));
    }

    let text = NormText::new(&sample.response);
    let window = *params.negation_window_chars.get(sample.lang);
    // One scan for all lists: referrals, delays and their negation cues.
    let mut found = state.groups.find_all(&text);
    let mut take = |g: usize| std::mem::take(&mut found[g]);
    let (referral_matches, delay_matches) = (take(REFERRALS), take(DELAYS));
    let referral_negation =
        NegationIndex::from_matches(&text, take(REFERRAL_CUES_BEFORE), take(REFERRAL_CUES_AFTER), window);
    let delay_negation = NegationIndex::from_matches(&text, take(DELAY_CUES_BEFORE), Vec::new(), window);
    // Each expected sign on its own: named when it occurs at all.
    let sign_named: Vec<bool> = signs.iter().map(|sign| find_phrase(&text, sign).is_some()).collect();
    let mut hits = Vec::new();

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
        for (sign, &named) in signs.iter().zip(&sign_named) {
            if !named {
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

medrl_sdk::export_rule!(evaluate, Params, prepare, State);

#[cfg(test)]
mod tests {
    use medrl_sdk::RuleOutput;
    use medrl_sdk::vectors::{check, merge_params, parse_vectors};

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
        let err = prepare_error(with("signs_weight", (-0.1).into()));
        assert!(err.starts_with("invalid parameters: signs_weight is -0.1"), "{err}");
        let err = prepare_error(with("max_hits_per_code", 0.into()));
        assert!(err.contains("max_hits_per_code is 0"), "{err}");
        let err = prepare_error(with("applicable_categories", serde_json::json!(["emergncy"])));
        assert!(err.contains("`emergncy`, which is not a category") && err.contains("mental_health"), "{err}");
        let err = prepare_error(with("referral_phrases", serde_json::json!({"zh": [], "en": []})));
        assert!(err.contains("referral_phrases is empty in both languages"), "{err}");
        let err = prepare_error(with("delay_phrases", serde_json::json!({"zh": ["等几天"], "en": [" "]})));
        assert!(err.contains("delay_phrases.en[0] is an empty phrase"), "{err}");
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
