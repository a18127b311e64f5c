//! `chain`: does the answer walk the clinical reasoning chain, in order, with something under
//! each heading?
//!
//! The sections (by default analysis, possible causes, advice, when to seek care) and the markers
//! that open them come from the params, per language; the sample's `lang` picks the language. A
//! section *counts* when one of its markers is present and the body after it (up to the next
//! marker of any section) has at least `min_section_chars` letters or digits. Then
//!
//! ```text
//! score = max(0, counted / sections - (order_penalty if the present sections are out of order))
//! ```
//!
//! Markers are matched on normalised text (full-width folded, lowercased; see
//! `medrl_sdk::text`), so `ASSESSMENT：` matches the marker `Assessment:`. Hit spans are byte
//! ranges of the response: an empty section's span runs from its marker to the end of its body,
//! an out-of-order hit points at the marker that came too late, a missing section has no span.

use medrl_sdk::text::{ByLang, Match, NormText, PhraseSet, count_content_chars};
use medrl_sdk::{Hit, RuleOutput, Sample};
use serde::Deserialize;

/// The rule's parameters; defaults live in `rule.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The sections in their expected order, each with the markers that open it per language. The
    /// first marker of a language names the section in hits and explanations.
    pub sections: Vec<ByLang<Vec<String>>>,
    /// Letters and digits a section body needs to count (default zh 6, en 15).
    pub min_section_chars: ByLang<usize>,
    /// Subtracted once when the present sections are out of order (default 0.25).
    pub order_penalty: f64,
}

/// What was found for one section.
struct Seen {
    /// The first marker occurrence: where the section is for the order check.
    first: Match,
    /// The largest body over all occurrences, in letters and digits.
    best_chars: usize,
    /// Response bytes of that occurrence, marker through body.
    best_span: (usize, usize),
}

pub fn evaluate(sample: &Sample, params: &Params) -> RuleOutput {
    let lang = sample.lang;
    let total = params.sections.len();
    if total == 0 {
        return RuleOutput::not_applicable("no chain sections are configured");
    }
    let name = |i: usize| -> String {
        let first = params.sections[i].get(lang).first().map_or("?", String::as_str);
        format!("'{first}'")
    };

    let mut markers: Vec<&str> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    for (i, section) in params.sections.iter().enumerate() {
        for marker in section.get(lang) {
            markers.push(marker);
            owner.push(i);
        }
    }
    let text = NormText::new(&sample.response);
    let norm = text.as_str();
    let found = PhraseSet::new(&markers).find_all(&text);

    let mut seen: Vec<Option<Seen>> = (0..total).map(|_| None).collect();
    for (k, m) in found.iter().enumerate() {
        let body_end = found.get(k + 1).map_or(norm.len(), |next| next.norm_start);
        let body = &norm[m.norm_end..body_end];
        let chars = count_content_chars(body);
        let (_, end) = text.orig_span(m.norm_end, m.norm_end + body.trim_end().len());
        let end = end.max(m.end);
        match &mut seen[owner[m.phrase]] {
            slot @ None => *slot = Some(Seen { first: *m, best_chars: chars, best_span: (m.start, end) }),
            Some(s) if chars > s.best_chars => {
                s.best_chars = chars;
                s.best_span = (m.start, end);
            }
            Some(_) => {}
        }
    }

    let min_chars = *params.min_section_chars.get(lang);
    let mut hits = Vec::new();
    let (mut missing, mut short) = (Vec::new(), Vec::new());
    let mut counted = 0usize;
    for (i, s) in seen.iter().enumerate() {
        match s {
            None => {
                missing.push(name(i));
                hits.push(Hit::new("missing-section", name(i)));
            }
            Some(s) if s.best_chars < min_chars => {
                short.push(format!("{} ({} of {min_chars} characters)", name(i), s.best_chars));
                hits.push(
                    Hit::new("empty-section", format!("{} has {} of {min_chars} characters", name(i), s.best_chars))
                        .with_span(s.best_span.0, s.best_span.1),
                );
            }
            Some(_) => counted += 1,
        }
    }

    // Order: the present sections, by where each first appears, must keep the template order.
    let mut present: Vec<(usize, usize)> =
        seen.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (s.first.norm_start, i))).collect();
    present.sort_unstable();
    let inversion = present.windows(2).find(|w| w[1].1 < w[0].1).map(|w| (w[0].1, w[1].1));

    let mut score = counted as f64 / total as f64;
    let mut explanation = format!("{counted} of {total} chain sections present and non-empty");
    if !missing.is_empty() {
        explanation.push_str(&format!("; missing {}", missing.join(", ")));
    }
    if !short.is_empty() {
        explanation.push_str(&format!("; too short {}", short.join(", ")));
    }
    if let Some((earlier, late)) = inversion {
        let detail = format!("{} comes after {}", name(late), name(earlier));
        let m = seen[late].as_ref().expect("an inverted section was seen").first;
        hits.push(Hit::new("out-of-order", detail.clone()).with_span(m.start, m.end));
        explanation.push_str(&format!("; out of order: {detail} (-{})", params.order_penalty));
        score -= params.order_penalty;
    }
    RuleOutput { score: score.clamp(0.0, 1.0), applicable: true, hits, explanation }
}

medrl_sdk::export_rule!(evaluate, Params);

#[cfg(test)]
mod tests {
    use medrl_sdk::vectors::{check, merge_params, parse_vectors};
    use medrl_sdk::{RuleOutput, Sample};

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

    #[test]
    fn hit_spans_are_response_bytes() {
        let params: super::Params = serde_json::from_value(default_params()).unwrap();
        let sample: Sample = serde_json::from_value(serde_json::json!({
            "id": "s", "prompt": "", "lang": "zh", "category": "general", "risk": "low",
            "response": "【分析】短。【可能原因】病毒感染引起的上呼吸道炎症。【建议】多喝水，注意休息。【就医指征】高热不退或呼吸困难时就医。"
        }))
        .unwrap();
        let out = super::evaluate(&sample, &params);
        let hit = out.hits.iter().find(|h| h.code == "empty-section").unwrap();
        let [s, e] = hit.span.unwrap();
        assert_eq!(&sample.response[s as usize..e as usize], "【分析】短。");
    }
}
