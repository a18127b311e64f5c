//! Counts of a split: by language, category and risk, answers, emergency signs, sources and
//! versions, prompt lengths. What `validate` prints and the data card tabulates.

use super::build_prompts::Strata;
use super::item::{Item, Located, Quality};
use medrl_sdk::Lang;
use std::collections::BTreeMap;

/// The counts of one split (or of any list of items).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub items: usize,
    /// `[zh, en]`.
    pub lang: [usize; 2],
    pub strata: Strata,
    pub with_answer: usize,
    pub with_emergency_signs: usize,
    /// Items per (source, version, quality).
    pub provenance: BTreeMap<(String, String, Quality), usize>,
    /// Prompt lengths in characters, sorted.
    pub prompt_chars: Vec<usize>,
}

impl Tally {
    pub fn of(items: &[Located<Item>]) -> Self {
        let mut t = Tally { items: items.len(), ..Tally::default() };
        for Located { value: i, .. } in items {
            t.lang[usize::from(i.lang == Lang::En)] += 1;
            t.with_answer += usize::from(i.answer.is_some());
            t.with_emergency_signs += usize::from(!i.expect.emergency_signs.is_empty());
            *t.provenance.entry((i.source.clone(), i.version.clone(), i.quality)).or_default() += 1;
            t.prompt_chars.push(i.prompt.chars().count());
        }
        t.strata = Strata::of(items.iter().map(|i| (i.value.category, i.value.risk)));
        t.prompt_chars.sort_unstable();
        t
    }

    /// Share of Chinese items; 0 when empty.
    pub fn zh_share(&self) -> f64 {
        share(self.lang[0], self.items)
    }

    /// `(min, median, max)` prompt length in characters; the lower median for an even count.
    pub fn prompt_chars_summary(&self) -> Option<(usize, usize, usize)> {
        let v = &self.prompt_chars;
        (!v.is_empty()).then(|| (v[0], v[(v.len() - 1) / 2], v[v.len() - 1]))
    }
}

/// `part / whole`, 0 when `whole` is 0.
pub fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// A share as a percentage with one decimal: `0.6523` → `65.2 %`.
pub fn percent(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::item::Loc;
    use crate::data::validate::tests::item;
    use medrl_sdk::{Category, Risk};

    #[test]
    fn counts_and_the_median_prompt_length() {
        let at = |n| Loc { file: "f".into(), line: n };
        let items = vec![
            Located { loc: at(1), value: item("a", Category::Emergency, Risk::High, "胸口痛", None) },
            Located { loc: at(2), value: item("b", Category::General, Risk::Low, "Is tea ok?", Some("yes")) },
            Located { loc: at(3), value: item("c", Category::General, Risk::Low, "咳嗽两周了", None) },
        ];
        let t = Tally::of(&items);
        assert_eq!((t.items, t.lang, t.with_answer, t.with_emergency_signs), (3, [2, 1], 1, 1));
        assert_eq!((t.strata.high(), t.strata.category(7)), (1, 2));
        // Lengths 3, 10, 5 → sorted 3, 5, 10: median 5.
        assert_eq!(t.prompt_chars_summary(), Some((3, 5, 10)));
        assert_eq!(percent(t.zh_share()), "66.7 %");
        assert_eq!(t.provenance.get(&("test".into(), "1.0.0".into(), Quality::Draft)), Some(&3));
    }
}
