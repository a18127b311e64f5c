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

use medrl_sdk::text::{ByLang, Match, NormText, PhraseSet, count_content_chars, normalize};
use medrl_sdk::{Hit, Lang, RuleOutput, Sample};
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

/// One language's markers, built once by [`prepare`].
struct LangMarkers {
    /// Every marker of every section, section by section.
    markers: PhraseSet,
    /// The section of each marker.
    owner: Vec<usize>,
    /// Each section's name in hits and explanations: its first marker, quoted.
    names: Vec<String>,
    min_chars: usize,
}

/// The prepared rule: the parameters turned into matchers, once per instance.
pub struct State {
    sections: usize,
    zh: LangMarkers,
    en: LangMarkers,
    order_penalty: f64,
}

impl State {
    fn lang(&self, lang: Lang) -> &LangMarkers {
        match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        }
    }
}

/// Checks the parameters and builds the marker sets of both languages.
pub fn prepare(params: Params) -> Result<State, String> {
    if !(params.order_penalty.is_finite() && (0.0..=1.0).contains(&params.order_penalty)) {
        return Err(format!("order_penalty is {}; it must be a number from 0 to 1", params.order_penalty));
    }
    for (i, section) in params.sections.iter().enumerate() {
        for (lang, markers) in [("zh", &section.zh), ("en", &section.en)] {
            if markers.is_empty() {
                return Err(format!(
                    "sections[{i}].{lang} has no markers; give each section at least one marker per language"
                ));
            }
            if let Some(k) = markers.iter().position(|m| normalize(m).trim().is_empty()) {
                return Err(format!("sections[{i}].{lang}[{k}] is an empty marker; remove it or give it text"));
            }
        }
    }
    let build = |lang: Lang| {
        let mut markers: Vec<&str> = Vec::new();
        let mut owner = Vec::new();
        let mut names = Vec::new();
        for (i, section) in params.sections.iter().enumerate() {
            let list = section.get(lang);
            names.push(format!("'{}'", list.first().map_or("?", String::as_str)));
            for marker in list {
                markers.push(marker);
                owner.push(i);
            }
        }
        LangMarkers { markers: PhraseSet::new(&markers), owner, names, min_chars: *params.min_section_chars.get(lang) }
    };
    Ok(State {
        sections: params.sections.len(),
        zh: build(Lang::Zh),
        en: build(Lang::En),
        order_penalty: params.order_penalty,
    })
}

/// What was found for one section.
#[derive(Clone, Copy)]
struct Seen {
    /// The first marker occurrence: where the section is for the order check.
    first: Match,
    /// The largest body over all occurrences, in letters and digits.
    best_chars: usize,
    /// Response bytes of that occurrence, marker through body.
    best_span: (usize, usize),
}

pub fn evaluate(sample: &Sample, state: &State) -> RuleOutput {
    let total = state.sections;
    if total == 0 {
        return RuleOutput::not_applicable("no chain sections are configured");
    }
    let lang = state.lang(sample.lang);
    let name = |i: usize| lang.names[i].as_str();

    let text = NormText::new(&sample.response);
    let norm = text.as_str();
    let found = lang.markers.find_all(&text);

    let mut seen: Vec<Option<Seen>> = vec![None; total];
    for (k, m) in found.iter().enumerate() {
        let body_end = found.get(k + 1).map_or(norm.len(), |next| next.norm_start);
        let body = &norm[m.norm_end..body_end];
        let chars = count_content_chars(body);
        let (_, end) = text.orig_span(m.norm_end, m.norm_end + body.trim_end().len());
        let end = end.max(m.end);
        match &mut seen[lang.owner[m.phrase]] {
            slot @ None => *slot = Some(Seen { first: *m, best_chars: chars, best_span: (m.start, end) }),
            Some(s) if chars > s.best_chars => {
                s.best_chars = chars;
                s.best_span = (m.start, end);
            }
            Some(_) => {}
        }
    }

    let min_chars = lang.min_chars;
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
        explanation.push_str("; missing ");
        explanation.push_str(&missing.join(", "));
    }
    if !short.is_empty() {
        explanation.push_str("; too short ");
        explanation.push_str(&short.join(", "));
    }
    if let Some((earlier, late)) = inversion {
        let detail = format!("{} comes after {}", name(late), name(earlier));
        let m = seen[late].as_ref().expect("an inverted section was seen").first;
        explanation.push_str(&format!("; out of order: {detail} (-{})", state.order_penalty));
        hits.push(Hit::new("out-of-order", detail).with_span(m.start, m.end));
        score -= state.order_penalty;
    }
    RuleOutput { score: score.clamp(0.0, 1.0), applicable: true, hits, explanation }
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
        let err = prepare_error(with("order_penalty", 1.5.into()));
        assert!(err.starts_with("invalid parameters: order_penalty is 1.5"), "{err}");
        let sections = serde_json::json!([{"zh": [], "en": ["Conclusion:"]}]);
        let err = prepare_error(with("sections", sections));
        assert!(err.contains("sections[0].zh has no markers"), "{err}");
        let sections = serde_json::json!([{"zh": ["【结论】", "　"], "en": ["Conclusion:"]}]);
        let err = prepare_error(with("sections", sections));
        assert!(err.contains("sections[0].zh[1] is an empty marker"), "{err}");
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
        let state = super::prepare(params).unwrap();
        let sample: Sample = serde_json::from_value(serde_json::json!({
            "id": "s", "prompt": "", "lang": "zh", "category": "general", "risk": "low",
            "response": "【分析】短。【可能原因】病毒感染引起的上呼吸道炎症。【建议】多喝水，注意休息。【就医指征】高热不退或呼吸困难时就医。"
        }))
        .unwrap();
        let out = super::evaluate(&sample, &state);
        let hit = out.hits.iter().find(|h| h.code == "empty-section").unwrap();
        let [s, e] = hit.span.unwrap();
        assert_eq!(&sample.response[s as usize..e as usize], "【分析】短。");
    }
}
