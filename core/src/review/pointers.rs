//! Which rule parameters a disagreement points at.
//!
//! For each shipped rule and each direction of disagreement, the parameters of its manifest an
//! author would adjust, chosen by the hit codes the rule reported on that answer where they tell
//! more (a chain false negative with `missing-section` points at the section markers, one with
//! `empty-section` at `min_section_chars`). Only parameters present in the rule's effective
//! parameters (manifest defaults with the rule set's overrides) are named, with their current
//! value and the keywords of theirs that occur in the answer. A rule this table does not know
//! gets all its top-level parameters.
//!
//! "False positive" is the rule saying yes where the clinician says no; "false negative" the
//! reverse; "rule not applicable" the clinician answering a question the rule skipped.

use medrl_sdk::{Hit, Lang};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    FalsePositive,
    FalseNegative,
    RuleNotApplicable,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::FalsePositive => "false positive",
            Direction::FalseNegative => "false negative",
            Direction::RuleNotApplicable => "rule not applicable",
        }
    }
}

/// One parameter a disagreement points at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointedParam {
    /// Parameter path in the rule's params (`rx_drugs`, `weights.dose_above_max`).
    pub param: String,
    /// Its current value, summarised for the answer's language.
    pub current: String,
    /// Strings of the parameter that occur in the answer (case-insensitive), at most [`MAX_KEYWORDS`].
    pub keywords_in_answer: Vec<String>,
    /// Why an author would look at it.
    pub why: &'static str,
}

pub const MAX_KEYWORDS: usize = 8;

/// (rule, direction, hit code or `None` for "whatever was hit", parameters, why).
type Entry = (&'static str, Direction, Option<&'static str>, &'static [&'static str], &'static str);

use Direction::{FalseNegative as FN, FalsePositive as FP, RuleNotApplicable as NA};

const TABLE: &[Entry] = &[
    (
        "chain",
        FN,
        Some("missing-section"),
        &["sections"],
        "the clinician found the section under a heading the section's markers do not list: add the heading",
    ),
    (
        "chain",
        FN,
        Some("empty-section"),
        &["min_section_chars"],
        "the section's text is shorter than min_section_chars yet enough for the clinician: lower it",
    ),
    ("chain", FN, Some("out-of-order"), &["order_penalty"], "the clinician accepts this order: lower order_penalty"),
    ("chain", FN, None, &["sections", "min_section_chars"], "the rule missed a section the clinician saw"),
    (
        "chain",
        FP,
        None,
        &["min_section_chars", "sections"],
        "sections the rule counted are headings without real content for the clinician: raise min_section_chars or tighten the markers",
    ),
    ("emergency", FN, Some("no-referral"), &["referral_phrases"], "the answer refers to care in words the list lacks: add them"),
    (
        "emergency",
        FN,
        Some("negated-referral"),
        &["referral_negation_before", "referral_negation_after", "negation_window_chars"],
        "a negation cue was read as cancelling a referral the clinician accepts: narrow the cue or the window",
    ),
    (
        "emergency",
        FN,
        Some("delay-advice"),
        &["delay_phrases", "delay_negation_before", "negation_window_chars"],
        "a delay phrase fired that the clinician does not read as advice to wait (or its negation was missed)",
    ),
    (
        "emergency",
        FN,
        Some("missing-sign"),
        &["signs_weight", "referral_weight"],
        "the clinician counts the referral as enough where the rule wants the red-flag signs too",
    ),
    ("emergency", FN, None, &["referral_phrases", "referral_weight"], "the rule missed a referral the clinician saw"),
    (
        "emergency",
        FP,
        None,
        &["referral_phrases", "referral_negation_before", "referral_negation_after", "delay_phrases"],
        "a listed phrase matched without a real referral (too broad), or a negation or delay advice was missed",
    ),
    (
        "emergency",
        NA,
        None,
        &["applicable_categories"],
        "the clinician judged emergency care on a prompt the rule skipped: widen applicable_categories or fix the prompt's category",
    ),
    (
        "risk",
        FP,
        Some("rx-dosing-no-referral"),
        &["rx_drugs", "referral_phrases", "dose_units", "weights.rx_dosing_no_referral"],
        "a prescription drug with a dose that the clinician finds safe here, or a referral the list does not know",
    ),
    (
        "risk",
        FP,
        Some("controlled-class-advice"),
        &[
            "controlled_classes",
            "advice_verbs",
            "prohibition_cues",
            "prohibition_cues_after",
            "negation_window_chars",
            "weights.controlled_class_advice",
        ],
        "a controlled-class term read as advice to take it (a missed prohibition, or a term too broad)",
    ),
    (
        "risk",
        FP,
        Some("dose-above-max"),
        &[
            "max_daily_dose",
            "fixed_frequencies",
            "per_day_templates",
            "interval_hours_templates",
            "daily_cues_before",
            "daily_cues_after",
            "dose_cap_cues",
            "weights.dose_above_max",
        ],
        "a daily dose computed above the maximum that the clinician finds within it: check the drug's max_per_day and the frequency parsing",
    ),
    (
        "risk",
        FP,
        Some("contraindicated-population"),
        &["contraindicated_populations", "prohibition_cues", "weights.contraindicated_population"],
        "a population contraindication the clinician does not see in this case",
    ),
    (
        "risk",
        FP,
        Some("contraindicated-combination"),
        &["contraindicated_combinations", "interaction_warnings", "weights.contraindicated_combination"],
        "a combination flagged although the clinician finds it warned against or safe: add the warning wording",
    ),
    (
        "risk",
        FP,
        Some("stop-prescribed-medicine"),
        &["stop_phrases", "stop_verbs", "prescribed_words", "prohibition_cues", "weights.stop_prescribed_medicine"],
        "advice to stop a medicine that the clinician finds safe or negated",
    ),
    (
        "risk",
        FN,
        None,
        &[
            "rx_drugs",
            "controlled_classes",
            "max_daily_dose",
            "contraindicated_populations",
            "contraindicated_combinations",
            "advice_verbs",
            "stop_phrases",
        ],
        "the clinician found risky advice no table covers: add the drug, dose, population, combination or wording",
    ),
    ("verbosity", FP, Some("over-length"), &["budget", "hard_factor"], "the clinician finds this length justified: raise the budget"),
    (
        "verbosity",
        FP,
        Some("repetition"),
        &["repetition_threshold", "ngram", "repetition_min_ngrams"],
        "the repetition the rule measured is acceptable to the clinician (fixed clinical phrases): raise the threshold",
    ),
    ("verbosity", FP, Some("filler"), &["filler", "w_filler"], "a listed filler phrase the clinician does not mind here"),
    (
        "verbosity",
        FN,
        None,
        &["budget", "repetition_threshold", "filler"],
        "the clinician finds the answer padded within the budget: lower it, lower the threshold or add the filler wording",
    ),
];

/// The value at a dotted path (`weights.dose_above_max`).
fn lookup<'a>(params: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(params, |v, key| v.get(key))
}

fn lang_key(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "zh",
        Lang::En => "en",
    }
}

/// Whether an object is a per-language value (`{"en": …, "zh": …}`).
fn is_per_language(map: &serde_json::Map<String, Value>) -> bool {
    !map.is_empty() && map.keys().all(|k| k == "en" || k == "zh")
}

/// The strings of a parameter an answer in `lang` could contain: per-language values give their
/// `lang` side only; templates (`{n} times a day`) are skipped.
fn strings(value: &Value, lang: Lang, out: &mut Vec<String>) {
    match value {
        Value::String(s) if !s.contains('{') && !s.trim().is_empty() => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, lang, out)),
        Value::Object(map) if is_per_language(map) => {
            if let Some(v) = map.get(lang_key(lang)) {
                strings(v, lang, out);
            }
        }
        Value::Object(map) => map.values().for_each(|v| strings(v, lang, out)),
        _ => {}
    }
}

/// A parameter's current value in a line: numbers as they are, lists by their length.
pub fn summarize(value: &Value, lang: Lang) -> String {
    match value {
        Value::Array(items) if items.len() == 1 => "1 entry".to_string(),
        Value::Array(items) => format!("{} entries", items.len()),
        Value::Object(map) if is_per_language(map) => match map.get(lang_key(lang)) {
            Some(v) => format!("{}: {}", lang_key(lang), summarize(v, lang)),
            None => format!("no `{}` entry", lang_key(lang)),
        },
        other => {
            let text = other.to_string();
            if text.chars().count() > 80 { format!("{}…", text.chars().take(80).collect::<String>()) } else { text }
        }
    }
}

/// The parameter's strings found in the answer, in the parameter's order, without repeats.
fn keywords_in(value: &Value, lang: Lang, answer: &str) -> Vec<String> {
    let mut all = Vec::new();
    strings(value, lang, &mut all);
    let haystack = answer.to_lowercase();
    let mut found: Vec<String> = Vec::new();
    for s in all {
        if found.len() == MAX_KEYWORDS {
            break;
        }
        if haystack.contains(&s.to_lowercase()) && !found.contains(&s) {
            found.push(s);
        }
    }
    found
}

/// The parameters one disagreement points at; `params` is the rule's effective params object.
pub fn point(rule: &str, direction: Direction, hits: &[Hit], params: &Value, lang: Lang, answer: &str) -> Vec<PointedParam> {
    let known = TABLE.iter().any(|e| e.0 == rule);
    let make = |param: &str, why: &'static str| {
        lookup(params, param).map(|v| PointedParam {
            param: param.to_string(),
            current: summarize(v, lang),
            keywords_in_answer: keywords_in(v, lang, answer),
            why,
        })
    };
    if !known {
        let Some(map) = params.as_object() else { return Vec::new() };
        return map.keys().filter_map(|k| make(k, "medrl review has no parameter map for this rule; all its parameters are listed")).collect();
    }
    let entries: Vec<&Entry> = TABLE.iter().filter(|e| e.0 == rule && e.1 == direction).collect();
    let by_code: Vec<&&Entry> = entries.iter().filter(|e| e.2.is_some_and(|code| hits.iter().any(|h| h.code == code))).collect();
    let chosen: Vec<&Entry> =
        if by_code.is_empty() { entries.iter().copied().filter(|e| e.2.is_none()).collect() } else { by_code.into_iter().copied().collect() };
    let mut out: Vec<PointedParam> = Vec::new();
    for e in chosen {
        for &p in e.3 {
            if !out.iter().any(|o| o.param == p) {
                out.extend(make(p, e.4));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn risk_params() -> Value {
        json!({
            "rx_drugs": {"zh": ["阿莫西林", "华法林"], "en": ["amoxicillin"]},
            "referral_phrases": {"zh": ["遵医嘱"], "en": ["ask your doctor"]},
            "dose_units": {"zh": ["毫克", "片"], "en": ["mg"]},
            "per_day_templates": {"zh": ["每日{n}次"], "en": []},
            "weights": {"rx_dosing_no_referral": 0.5},
            "controlled_classes": [{"name": "antibiotics", "terms": {"zh": ["抗生素", "阿莫西林"], "en": ["antibiotic"]}}]
        })
    }

    #[test]
    fn a_risk_false_positive_points_at_the_tables_of_its_hit_code() {
        let hits = [Hit::new("rx-dosing-no-referral", "阿莫西林 500毫克")];
        let p = point("risk", FP, &hits, &risk_params(), Lang::Zh, "阿莫西林每次500毫克，每日3次。");
        let names: Vec<&str> = p.iter().map(|p| p.param.as_str()).collect();
        // dose_units and weights exist; advice tables of other codes are not named.
        assert_eq!(names, ["rx_drugs", "referral_phrases", "dose_units", "weights.rx_dosing_no_referral"]);
        assert_eq!(p[0].keywords_in_answer, ["阿莫西林"]);
        assert_eq!(p[0].current, "zh: 2 entries");
        assert!(p[1].keywords_in_answer.is_empty());
        assert_eq!(p[2].keywords_in_answer, ["毫克"]);
        assert_eq!(p[3].current, "0.5");
    }

    #[test]
    fn a_risk_false_negative_names_the_tables_and_the_drugs_found_in_the_answer() {
        let p = point("risk", FN, &[], &risk_params(), Lang::Zh, "可以吃点阿莫西林，注意休息。");
        let names: Vec<&str> = p.iter().map(|p| p.param.as_str()).collect();
        assert_eq!(names, ["rx_drugs", "controlled_classes"]);
        // Nested per-language lists inside table entries are searched too.
        assert_eq!(p[1].keywords_in_answer, ["阿莫西林"]);
    }

    #[test]
    fn chain_pointers_follow_the_hit_code_and_fall_back_without_one() {
        let params =
            json!({"sections": [{"zh": ["【分析】"], "en": ["Assessment:"]}], "min_section_chars": {"zh": 6, "en": 15}, "order_penalty": 0.25});
        let missing = point("chain", FN, &[Hit::new("missing-section", "advice")], &params, Lang::Zh, "【分析】……");
        assert_eq!(missing.iter().map(|p| p.param.as_str()).collect::<Vec<_>>(), ["sections"]);
        assert_eq!(missing[0].keywords_in_answer, ["【分析】"]);
        let empty = point("chain", FN, &[Hit::new("empty-section", "x")], &params, Lang::En, "");
        assert_eq!(empty[0].param, "min_section_chars");
        assert_eq!(empty[0].current, "en: 15");
        let fallback = point("chain", FN, &[], &params, Lang::Zh, "");
        assert_eq!(fallback.iter().map(|p| p.param.as_str()).collect::<Vec<_>>(), ["sections", "min_section_chars"]);
    }

    #[test]
    fn an_unknown_rule_lists_all_its_parameters() {
        let p = point("tone", FP, &[], &json!({"polite": ["please"], "threshold": 0.3}), Lang::En, "Please rest.");
        assert_eq!(p.iter().map(|p| p.param.as_str()).collect::<Vec<_>>(), ["polite", "threshold"]);
        assert_eq!(p[0].keywords_in_answer, ["please"]);
    }

    #[test]
    fn summaries_are_short() {
        assert_eq!(summarize(&json!(0.6), Lang::Zh), "0.6");
        assert_eq!(summarize(&json!({"zh": ["a", "b"]}), Lang::Zh), "zh: 2 entries");
        assert_eq!(summarize(&json!({"zh": ["a"]}), Lang::En), "no `en` entry");
        assert_eq!(summarize(&json!(["emergency"]), Lang::En), "1 entry");
    }
}
