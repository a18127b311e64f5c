//! Near-duplicate detection: exact Jaccard similarity of character 3-gram sets.
//!
//! A prompt is first reduced to its [`dedup_key`]: [`medrl_sdk::text::normalize`] (full-width
//! ASCII folded, whitespace collapsed, lowercased), then every character that is not a letter or
//! digit dropped, so punctuation, spacing, width and case never make two prompts look different.
//! The key's overlapping 3-character windows form a set; two prompts' similarity is
//! `|A ∩ B| / |A ∪ B|`. Characters, not words, because Chinese has no spaces and a character
//! window catches a light edit in either language.
//!
//! The sets are exact, not sketched (no MinHash): a Unicode scalar value fits in 21 bits, so a
//! 3-gram packs into one `u64` without collisions, and comparing every pair of ~1,300 prompts
//! (~840,000 sorted merges of ~40 grams) takes well under a second.

use medrl_sdk::text::normalize;
use rayon::prelude::*;

/// Characters per gram.
pub const NGRAM: usize = 3;

/// Default threshold: pairs at or above this 3-gram Jaccard similarity are near duplicates.
/// Calibrated on Chinese prompts of typical length (~26 characters): one changed character keeps
/// about 0.7, four changed characters in three places about 0.48, while the shipped sets' most
/// similar pair of distinct prompts is 0.353 (a reordered question; see `data/DATA_CARD.md`).
/// Set low rather than high because a missed leak spoils an evaluation and a false alarm only
/// costs a rewrite.
pub const DEFAULT_THRESHOLD: f64 = 0.4;

/// The text that similarity is computed on: normalised, letters and digits only.
pub fn dedup_key(text: &str) -> String {
    normalize(text).chars().filter(|c| c.is_alphanumeric()).collect()
}

/// The set of a text's character 3-grams, each packed into a `u64`, sorted and deduplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shingles(Vec<u64>);

impl Shingles {
    /// The 3-grams of `text`'s [`dedup_key`]. A key shorter than three characters is one gram.
    pub fn new(text: &str) -> Self {
        let key: Vec<char> = dedup_key(text).chars().collect();
        let mut grams: Vec<u64> =
            if key.len() < NGRAM { if key.is_empty() { Vec::new() } else { vec![pack(&key)] } } else { key.windows(NGRAM).map(pack).collect() };
        grams.sort_unstable();
        grams.dedup();
        Shingles(grams)
    }

    /// Distinct grams.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `|A ∩ B| / |A ∪ B|`; two empty sets are identical (1.0).
    pub fn jaccard(&self, other: &Shingles) -> f64 {
        let (a, b) = (&self.0, &other.0);
        if a.is_empty() && b.is_empty() {
            return 1.0;
        }
        let (mut i, mut j, mut both) = (0, 0, 0usize);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    both += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        both as f64 / (a.len() + b.len() - both) as f64
    }
}

/// Up to three chars in 63 bits (21 each). Keys hold letters and digits only, never U+0000, so a
/// shorter gram cannot collide with a full one.
fn pack(chars: &[char]) -> u64 {
    chars.iter().fold(0u64, |acc, &c| (acc << 21) | c as u64)
}

/// Two texts (indices into the scanned slice, `i < j`) and their similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub i: usize,
    pub j: usize,
    pub similarity: f64,
}

/// The result of comparing every pair.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scan {
    /// Pairs at or above the threshold, ordered by `(i, j)`.
    pub similar: Vec<Pair>,
    /// The most similar pair of each class (see [`scan`]); the first in `(i, j)` order on a tie.
    pub max_by_class: Vec<Option<Pair>>,
    /// How many pairs were compared.
    pub compared: usize,
}

/// Compares every pair `i < j` of `sets` on all cores. `class(i, j)` sorts a pair into one of
/// `classes` buckets (for example "evaluation against training"), or `None` to skip it; the scan
/// keeps each bucket's most similar pair and every compared pair at or above `threshold`.
pub fn scan(sets: &[Shingles], threshold: f64, classes: usize, class: impl Fn(usize, usize) -> Option<usize> + Sync) -> Scan {
    let per_i: Vec<Scan> = (0..sets.len())
        .into_par_iter()
        .map(|i| {
            let mut s = Scan { max_by_class: vec![None; classes], ..Scan::default() };
            for j in i + 1..sets.len() {
                let Some(k) = class(i, j) else { continue };
                let similarity = sets[i].jaccard(&sets[j]);
                let pair = Pair { i, j, similarity };
                s.compared += 1;
                if similarity >= threshold {
                    s.similar.push(pair);
                }
                if s.max_by_class[k].is_none_or(|m| similarity > m.similarity) {
                    s.max_by_class[k] = Some(pair);
                }
            }
            s
        })
        .collect();
    // Folded in i order, so ties keep the first pair whatever the thread count.
    per_i.into_iter().fold(Scan { max_by_class: vec![None; classes], ..Scan::default() }, |mut acc, s| {
        acc.similar.extend(s.similar);
        acc.compared += s.compared;
        for (best, candidate) in acc.max_by_class.iter_mut().zip(s.max_by_class) {
            if let Some(c) = candidate
                && best.is_none_or(|b| c.similarity > b.similarity)
            {
                *best = Some(c);
            }
        }
        acc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_ignores_width_case_spacing_and_punctuation() {
        assert_eq!(dedup_key("Ｈｅｌｌｏ， World!"), "helloworld");
        assert_eq!(dedup_key("胸口痛， 怎么办？"), "胸口痛怎么办");
        assert_eq!(dedup_key("发烧39.5度"), "发烧395度");
    }

    #[test]
    fn jaccard_matches_hand_counted_gram_sets() {
        // abcd → {abc, bcd}; abce → {abc, bce}: 1 shared of 3 distinct = 1/3.
        let (a, b) = (Shingles::new("abcd"), Shingles::new("abce"));
        assert!((a.jaccard(&b) - 1.0 / 3.0).abs() < 1e-12);
        // 胸口痛怎么办 → {胸口痛, 口痛怎, 痛怎么, 怎么办}; 胸口痛怎么样 → {胸口痛, 口痛怎, 痛怎么, 怎么样}:
        // 3 shared of 5 distinct = 0.6.
        let (a, b) = (Shingles::new("胸口痛，怎么办"), Shingles::new("胸口痛怎么样？"));
        assert!((a.jaccard(&b) - 0.6).abs() < 1e-12);
        // aaaa → {aaa}: repeated grams count once, so aaaa and aaa are identical sets.
        assert_eq!(Shingles::new("aaaa").len(), 1);
        assert_eq!(Shingles::new("aaaa").jaccard(&Shingles::new("aaa")), 1.0);
        // No shared gram: 0.
        assert_eq!(Shingles::new("abc").jaccard(&Shingles::new("xyz")), 0.0);
        // Short keys are one gram; "ab" and "abc" share none.
        assert_eq!(Shingles::new("ab").len(), 1);
        assert_eq!(Shingles::new("ab").jaccard(&Shingles::new("abc")), 0.0);
        assert_eq!(Shingles::new("").jaccard(&Shingles::new("…")), 1.0);
    }

    #[test]
    fn a_light_edit_of_a_prompt_stays_above_the_threshold() {
        let gold = "外公76岁，今早起床发现他右边胳膊腿都抬不起来，说话含糊，家人说可能是睡觉压麻了。";
        let edited = "外公78岁，今天早上起床发现他右边胳膊腿都抬不起来，说话含糊，家里人说可能是睡觉压麻了。";
        let s = Shingles::new(gold).jaccard(&Shingles::new(edited));
        assert!(s >= DEFAULT_THRESHOLD, "{s}");
        let unrelated = "外婆最近总是口渴，晚上起夜三四次，体重也掉了，要不要查血糖？";
        assert!(Shingles::new(gold).jaccard(&Shingles::new(unrelated)) < 0.1);
    }

    #[test]
    fn scan_finds_pairs_above_the_threshold_and_the_max_of_each_class() {
        let sets: Vec<Shingles> = ["abcdef", "abcdeg", "xyzuvw", "xyzuvq"].iter().map(|t| Shingles::new(t)).collect();
        // abcdef/abcdeg: {abc,bcd,cde} shared, 5 distinct → 3/5; xyzuvw/xyzuvq likewise.
        // Class 0 = pairs touching text 0, class 1 = the others.
        let s = scan(&sets, 0.5, 2, |i, _| Some(usize::from(i != 0)));
        assert_eq!(s.compared, 6);
        assert_eq!(s.similar.iter().map(|p| (p.i, p.j)).collect::<Vec<_>>(), [(0, 1), (2, 3)]);
        assert!((s.similar[0].similarity - 0.6).abs() < 1e-12);
        assert_eq!(s.max_by_class[0].map(|p| (p.i, p.j)), Some((0, 1)));
        assert_eq!(s.max_by_class[1].map(|p| (p.i, p.j)), Some((2, 3)));
        let none = scan(&sets, 0.5, 1, |_, _| None);
        assert_eq!((none.compared, none.max_by_class[0]), (0, None));
    }
}
