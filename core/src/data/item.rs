//! The one schema of every data item (training pool, SFT corpus, gold set, red-team set), the
//! split each file plays, and where an item was read from.
//!
//! The field types are the rule ABI's own ([`Lang`], [`Category`], [`Risk`], [`Expect`]), so an
//! item becomes a [`medrl_sdk::Sample`] without translation. Two of them are read more strictly
//! here than the ABI reads them: the ABI maps an unknown category to `other` (an old rule must
//! keep working), but a data file must name a real one, and `expect` must not carry a misspelt key
//! that the ABI would silently drop.

use medrl_sdk::{Category, Expect, Lang, Risk};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Every category, in the order of [`Category::ALL`]; tables and strata use this order.
pub const CATEGORIES: [Category; 8] = [
    Category::Emergency,
    Category::Medication,
    Category::Abuse,
    Category::Chronic,
    Category::Pediatrics,
    Category::Pregnancy,
    Category::MentalHealth,
    Category::General,
];

/// Position of a category in [`CATEGORIES`]; `None` for [`Category::Other`].
pub fn category_index(c: Category) -> Option<usize> {
    CATEGORIES.iter().position(|&k| k == c)
}

/// Both risk strata, high first.
pub const RISKS: [Risk; 2] = [Risk::High, Risk::Low];

/// Position of a risk stratum in [`RISKS`].
pub fn risk_index(r: Risk) -> usize {
    match r {
        Risk::High => 0,
        Risk::Low => 1,
    }
}

/// The JSON spelling of a risk stratum.
pub fn risk_str(r: Risk) -> &'static str {
    match r {
        Risk::High => "high",
        Risk::Low => "low",
    }
}

/// The JSON spelling of a language.
pub fn lang_str(l: Lang) -> &'static str {
    match l {
        Lang::Zh => "zh",
        Lang::En => "en",
    }
}

/// How far an item has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    /// Checked against the schema and the chain format by its author; not yet by anyone else.
    Draft,
    /// Read and corrected by a second person. Which person (a clinician or not) is the data
    /// card's business, not the schema's.
    Reviewed,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Draft => "draft",
            Quality::Reviewed => "reviewed",
        }
    }
}

/// One line of `data/sets/*.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Unique across every split, e.g. `pool-zh-emergency-0001`.
    pub id: String,
    pub lang: Lang,
    /// One of [`Category::ALL`]; `other` and unknown values are refused.
    #[serde(deserialize_with = "known_category")]
    pub category: Category,
    pub risk: Risk,
    /// Free-form, at least one.
    pub tags: Vec<String>,
    pub prompt: String,
    /// The reference answer: required in `sft`, `gold` and `redteam`, absent from `pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Required with at least one sign for category `emergency`; optional elsewhere.
    #[serde(default, deserialize_with = "strict_expect", skip_serializing_if = "expect_is_empty")]
    pub expect: Expect,
    /// Who wrote or supplied the item (`medrl-authored`, a data set's name).
    pub source: String,
    /// Version of the item, semver (`1.0.0`): bump it when the prompt or answer changes.
    pub version: String,
    pub quality: Quality,
    /// The licence the item is used under, as an SPDX expression (`CC-BY-4.0`, `MIT`,
    /// `LicenseRef-hospital-internal`); required on imported items, absent on the project's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// Where an imported item was read from (`medrl data import`); absent on the project's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// The place in an outside file an imported item came from, so it can be traced back and the
/// import repeated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// The import format (`jsonl`, `exam`, `dialogue`).
    pub format: String,
    /// The file's name as given to the import (without its folder, which is the importer's own).
    pub file: String,
    /// sha256 of the whole source file.
    pub sha256: String,
    /// 1-based line of the record in that file.
    pub line: usize,
    /// The record's own id in the source, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Item {
    /// The item as a rule sees it, with `response` as the answer under test.
    pub fn to_sample(&self, response: String) -> medrl_sdk::Sample {
        medrl_sdk::Sample {
            id: self.id.clone(),
            prompt: self.prompt.clone(),
            response,
            lang: self.lang,
            category: self.category,
            risk: self.risk,
            tags: self.tags.clone(),
            expect: self.expect.clone(),
        }
    }
}

pub(crate) fn expect_is_empty(e: &Expect) -> bool {
    e.emergency_signs.is_empty()
}

/// Parses a category by its JSON spelling and refuses anything outside [`Category::ALL`].
pub fn parse_category(s: &str) -> Result<Category, String> {
    let known = serde_json::from_value::<Category>(serde_json::Value::String(s.to_string())).ok().filter(|&c| c != Category::Other);
    known.ok_or_else(|| format!("unknown category `{s}`; allowed: {}", Category::ALL.join(", ")))
}

pub(crate) fn known_category<'de, D: Deserializer<'de>>(d: D) -> Result<Category, D::Error> {
    let s = String::deserialize(d)?;
    parse_category(&s).map_err(serde::de::Error::custom)
}

/// [`Expect`] with unknown keys refused (the ABI type accepts and drops them).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictExpect {
    #[serde(default)]
    emergency_signs: Vec<String>,
}

pub(crate) fn strict_expect<'de, D: Deserializer<'de>>(d: D) -> Result<Expect, D::Error> {
    let e = StrictExpect::deserialize(d)?;
    Ok(Expect { emergency_signs: e.emergency_signs })
}

/// The role a file plays. The file of split `s` is `<dir>/<s>.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// Prompts the RL trainer samples from (no answers).
    Pool,
    /// Prompt/answer pairs for supervised fine-tuning.
    Sft,
    /// Held-out prompts with reviewed reference answers, for evaluation.
    Gold,
    /// Held-out adversarial prompts with safe reference answers, for evaluation.
    Redteam,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Pool, Split::Sft, Split::Gold, Split::Redteam];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Pool => "pool",
            Split::Sft => "sft",
            Split::Gold => "gold",
            Split::Redteam => "redteam",
        }
    }

    pub fn file_name(self) -> String {
        format!("{}.jsonl", self.as_str())
    }

    /// Whether every item must carry an `answer` (else none may).
    pub fn has_answers(self) -> bool {
        self != Split::Pool
    }

    /// Held out for evaluation: none of its prompts may reach a training split.
    pub fn is_eval(self) -> bool {
        matches!(self, Split::Gold | Split::Redteam)
    }

    /// What the split is for, in a few words (the data card's column).
    pub fn purpose(self) -> &'static str {
        match self {
            Split::Pool => "RL prompt pool",
            Split::Sft => "SFT corpus",
            Split::Gold => "evaluation, reference answers",
            Split::Redteam => "evaluation, adversarial",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Split::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| format!("unknown split `{s}`; allowed: pool, sft, gold, redteam"))
    }
}

/// A place in a file: `path:line`, 1-based like an editor's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A value and the line it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub loc: Loc,
    pub value: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"id":"a","lang":"zh","category":"emergency","risk":"high","tags":["t"],"prompt":"胸口痛","expect":{"emergency_signs":["胸痛"]},"source":"s","version":"1.0.0","quality":"draft"}"#;

    #[test]
    fn a_full_line_parses_and_round_trips() {
        let item: Item = serde_json::from_str(LINE).unwrap();
        assert_eq!(item.category, Category::Emergency);
        assert_eq!(item.expect.emergency_signs, ["胸痛"]);
        assert_eq!(item.answer, None);
        let back: Item = serde_json::from_str(&serde_json::to_string(&item).unwrap()).unwrap();
        assert_eq!(back, item);
    }

    #[test]
    fn unknown_and_other_categories_are_refused_with_the_allowed_list() {
        for bad in ["dermatology", "other"] {
            let line = LINE.replace("\"emergency\",\"risk\"", &format!("\"{bad}\",\"risk\""));
            let err = serde_json::from_str::<Item>(&line).unwrap_err().to_string();
            assert!(err.contains(&format!("unknown category `{bad}`")), "{err}");
            assert!(err.contains("emergency, medication, abuse, chronic, pediatrics, pregnancy, mental_health, general"), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_at_the_top_and_inside_expect() {
        let err = serde_json::from_str::<Item>(&LINE.replace("\"quality\"", "\"qualty\"")).unwrap_err().to_string();
        assert!(err.contains("qualty"), "{err}");
        let err = serde_json::from_str::<Item>(&LINE.replace("emergency_signs", "emergency_sign")).unwrap_err().to_string();
        assert!(err.contains("emergency_sign"), "{err}");
    }

    #[test]
    fn categories_follow_the_abi_order() {
        let names: Vec<&str> = CATEGORIES.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, Category::ALL);
        assert_eq!(category_index(Category::Other), None);
    }
}
