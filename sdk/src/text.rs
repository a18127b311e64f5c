//! Text helpers for rule authors, Chinese and English.
//!
//! Rules look for phrases in model responses that mix scripts, widths and cases, and must report
//! where they found them in the *original* text. Everything here works on a [`NormText`], a
//! normalised copy of the text that remembers, for every byte, where it came from:
//!
//! - **Normalisation** ([`fold_width`], [`normalize`], [`NormText`]): full-width ASCII
//!   (U+FF01–U+FF5E) folds to ASCII, the ideographic space U+3000 and every other horizontal
//!   whitespace run collapse to one ASCII space (newlines stay, they end sentences), the curly
//!   apostrophes U+2018/U+2019 become `'` (so "don’t" matches "don't"), and then everything is
//!   lowercased. Nothing else changes: CJK punctuation outside the full-width block — 【】。、「」 —
//!   stays as it is, while ，！？；：（） are in that block and become , ! ? ; : ( ).
//! - **Phrase matching** ([`PhraseSet`], and [`PhraseGroups`] for many lists in one pass):
//!   leftmost-longest, non-overlapping matches of a phrase list over normalised text, each with
//!   its `[start, end)` byte span in the original. A phrase that begins (ends) with an ASCII
//!   letter only matches where no ASCII letter is just before (after) it, and one that begins
//!   (ends) with a digit where no digit is, so "the er" does not match "the error" and "打120"
//!   does not match "打1200", while "mg" matches in "800mg"; CJK phrases match anywhere.
//! - **Negation** ([`Negation`], [`NegationIndex`] for many checks): whether a cue such as 不需要
//!   or "no need to" governs a match: before it (or after it) in the same clause, within a window.
//! - **Clauses and sentences** ([`clause_range`], [`clause_start_within`], [`sentences`]).
//! - **Tokens and repetition** ([`tokens`], [`count_tokens`], [`ngram_stats`],
//!   [`repeated_ngram_ratio`]).
//! - **Numbers** ([`find_numbers`], [`parse_zh_numeral`], [`NumberTemplate`]): Arabic digits,
//!   Chinese numerals and English number words, ranges such as "4-6" or 三到四, and templates
//!   such as `每日{n}次` or `every {n} hours`.
//! - **Per-language params** ([`ByLang`]): `{ zh = …, en = … }`.
//!
//! All of it is deterministic and allocation-only (no clock, no randomness, no I/O), so it is safe
//! inside a `medrl-rule/1` module, and linear in the text, because the host meters fuel: a rule
//! that scans a 256 KiB answer once per keyword list, or walks back to the start of a clause for
//! every match, runs out of it.

use crate::abi::Lang;
use serde::{Deserialize, Serialize};
use std::ops::Range;

// ---------------------------------------------------------------------------------------------
// Per-language parameters
// ---------------------------------------------------------------------------------------------

/// One value per language, as rule params spell it: `{ zh = …, en = … }` in `rule.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByLang<T> {
    pub zh: T,
    pub en: T,
}

impl<T> ByLang<T> {
    /// The value for `lang`.
    pub fn get(&self, lang: Lang) -> &T {
        match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        }
    }
}

impl<T> ByLang<Vec<T>> {
    /// Both languages' items, Chinese first: for phrase lists that should match in any response
    /// (a Chinese answer may say "call 911", an English one 拨打120).
    pub fn both(&self) -> impl Iterator<Item = &T> {
        self.zh.iter().chain(self.en.iter())
    }
}

// ---------------------------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------------------------

/// Folds one character's width: U+FF01–U+FF5E to ASCII U+0021–U+007E, the ideographic space
/// U+3000 to a space, and the curly single quotes U+2018/U+2019 to `'`. Other characters,
/// including 【】。、, are returned unchanged.
pub fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => {
            char::from_u32(c as u32 - 0xFEE0).expect("U+FF01..=U+FF5E minus 0xFEE0 is printable ASCII")
        }
        '\u{3000}' => ' ',
        '\u{2018}' | '\u{2019}' => '\'',
        _ => c,
    }
}

/// Horizontal whitespace: collapsed to one space by normalisation. Newlines are not: they end
/// clauses and sentences.
fn is_hspace(c: char) -> bool {
    c != '\n' && c.is_whitespace()
}

/// Scripts without letter case (CJK, kana, hangul, Yi, CJK punctuation, the rest of the
/// half/full-width block), which lowercasing would only look up in vain: a fuel saving.
fn has_no_case(c: char) -> bool {
    matches!(
        c as u32,
        0x2E80..=0xA63F | 0xAC00..=0xD7FF | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFFEF | 0x20000..=0x3FFFF
    )
}

/// The normalised form of `s` (see the module docs), without the offset map.
pub fn normalize(s: &str) -> String {
    NormText::new(s).norm
}

/// A normalised copy of a text with a map back to the original's byte offsets.
///
/// Offsets called `norm_*` are byte offsets into [`NormText::as_str`]; plain `start`/`end` are byte
/// offsets into the original text, the convention of [`crate::Hit`] spans.
#[derive(Debug, Clone)]
pub struct NormText<'a> {
    original: &'a str,
    norm: String,
    /// For every byte of `norm` (and one past the end): the original byte offset of the character
    /// it came from.
    norm_to_orig: Vec<u32>,
    /// For every byte of `original` (and one past the end): the offset in `norm` of its
    /// character's normalised form.
    orig_to_norm: Vec<u32>,
}

impl<'a> NormText<'a> {
    pub fn new(original: &'a str) -> Self {
        let mut norm = String::with_capacity(original.len());
        let mut norm_to_orig = Vec::with_capacity(original.len() + 1);
        let mut orig_to_norm = vec![0u32; original.len() + 1];
        let mut in_space = false;
        for (i, c) in original.char_indices() {
            let at = norm.len();
            if c.is_ascii() {
                // Fast path (one byte in, one byte out); the general path below gives the same result.
                if c != '\n' && c.is_whitespace() {
                    if in_space {
                        orig_to_norm[i] = (at - 1) as u32;
                        continue;
                    }
                    in_space = true;
                    norm.push(' ');
                } else {
                    in_space = false;
                    norm.push(c.to_ascii_lowercase());
                }
                orig_to_norm[i] = at as u32;
                norm_to_orig.push(i as u32);
                continue;
            }
            let folded = fold_width(c);
            if is_hspace(folded) {
                if in_space {
                    // Collapsed into the space already written.
                    orig_to_norm[i..i + c.len_utf8()].fill((at - 1) as u32);
                    continue;
                }
                in_space = true;
                norm.push(' ');
            } else {
                in_space = false;
                if folded.is_ascii() {
                    norm.push(folded.to_ascii_lowercase());
                } else if has_no_case(folded) {
                    norm.push(folded);
                } else {
                    norm.extend(folded.to_lowercase());
                }
            }
            orig_to_norm[i..i + c.len_utf8()].fill(at as u32);
            norm_to_orig.resize(norm.len(), i as u32);
        }
        norm_to_orig.push(original.len() as u32);
        orig_to_norm[original.len()] = norm.len() as u32;
        NormText { original, norm, norm_to_orig, orig_to_norm }
    }

    /// The original text.
    pub fn original(&self) -> &'a str {
        self.original
    }

    /// The normalised text.
    pub fn as_str(&self) -> &str {
        &self.norm
    }

    /// Maps a normalised byte range to the original byte range `[start, end)` that produced it.
    pub fn orig_span(&self, norm_start: usize, norm_end: usize) -> (usize, usize) {
        let start = self.norm_to_orig[norm_start] as usize;
        if norm_end <= norm_start {
            return (start, start);
        }
        let last = self.norm_to_orig[norm_end - 1] as usize;
        let last_len = self.original[last..].chars().next().map_or(0, char::len_utf8);
        (start, last + last_len)
    }

    /// Maps an original byte range to the normalised byte range it became.
    pub fn norm_span(&self, start: usize, end: usize) -> (usize, usize) {
        let norm_start = self.orig_to_norm[start] as usize;
        if end <= start {
            return (norm_start, norm_start);
        }
        // The end is where the character after the range starts in `norm`; for a collapsed space
        // that is the shared space, so take the later of that and the start.
        let norm_end = (self.orig_to_norm[end] as usize).max(norm_start);
        (norm_start, norm_end)
    }

    /// [`sentences`] of the original text, as normalised byte ranges.
    pub fn sentences_norm(&self) -> Vec<Range<usize>> {
        sentences(self.original)
            .into_iter()
            .map(|(s, e)| {
                let (ns, ne) = self.norm_span(s, e);
                ns..ne
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Phrase matching
// ---------------------------------------------------------------------------------------------

/// One occurrence of a phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// Index of the phrase in the list the [`PhraseSet`] was built from (for [`PhraseGroups`], in
    /// its group).
    pub phrase: usize,
    /// `[start, end)` in the original text's bytes.
    pub start: usize,
    pub end: usize,
    /// `[norm_start, norm_end)` in the normalised text's bytes.
    pub norm_start: usize,
    pub norm_end: usize,
}

/// Whether a phrase edge at `edge` (an ASCII byte of the phrase) runs into `neighbour` (the text
/// byte just outside it): an ASCII letter next to a letter, or a digit next to a digit. A letter
/// next to a digit is a boundary, so "mg" matches in "800mg" and "q{n}h" in "q6h".
fn joins(edge: u8, neighbour: Option<&u8>) -> bool {
    neighbour.is_some_and(|&n| {
        (edge.is_ascii_alphabetic() && n.is_ascii_alphabetic()) || (edge.is_ascii_digit() && n.is_ascii_digit())
    })
}

/// A list of phrases, normalised once, matched leftmost-longest without overlaps.
///
/// Empty phrases (after normalisation) never match. Among phrases matching at the same position
/// the longest wins, then the earliest in the list. Matching tests the first two bytes of each
/// text position in a bitmap and then compares only the phrases that start with the same
/// character, so scanning a text costs a few instructions per byte however long the list is
/// (fuel is metered).
#[derive(Debug, Clone)]
pub struct PhraseSet {
    phrases: Vec<String>,
    /// One bit per pair of first two bytes a phrase may start with (for a one-byte phrase, every
    /// pair beginning with its byte).
    first_pairs: Vec<u64>,
    /// Phrases by [`char_bucket`] of their first character, longest first, then in list order.
    buckets: Vec<Vec<usize>>,
    /// Bytes that are a whole phrase (a one-character ASCII phrase): the only phrases that can
    /// match at the last byte of a text.
    singles: [bool; 256],
    max_chars: usize,
}

/// Length of the UTF-8 sequence a lead byte starts.
fn utf8_len(lead: u8) -> usize {
    match lead {
        0..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xFF => 4,
        // A continuation byte is never at a char boundary; step one byte to stay safe.
        0x80..=0xBF => 1,
    }
}

/// Number of first-character buckets of a [`PhraseSet`].
const BUCKETS: usize = 256;

/// The bucket of a first character: a multiplicative hash of the code point, so neighbouring
/// CJK characters spread out.
fn char_bucket(c: char) -> usize {
    ((c as u32).wrapping_mul(0x9E37_79B1) >> 24) as usize % BUCKETS
}

impl PhraseSet {
    pub fn new<I, S>(phrases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let phrases: Vec<String> = phrases.into_iter().map(|p| normalize(p.as_ref())).collect();
        let mut first_pairs = vec![0u64; 65536 / 64];
        let mut buckets = vec![Vec::new(); BUCKETS];
        let mut singles = [false; 256];
        for (i, p) in phrases.iter().enumerate() {
            let Some(first) = p.chars().next() else { continue };
            buckets[char_bucket(first)].push(i);
            match p.as_bytes() {
                [b] => {
                    singles[*b as usize] = true;
                    // Any second byte may follow: set all 256 pairs that start with it.
                    let base = (*b as usize) << 8;
                    first_pairs[base / 64..(base + 256) / 64].fill(u64::MAX);
                }
                [b0, b1, ..] => {
                    let pair = (*b0 as usize) << 8 | *b1 as usize;
                    first_pairs[pair / 64] |= 1 << (pair % 64);
                }
                [] => {}
            }
        }
        for list in &mut buckets {
            // Stable: equal lengths keep list order.
            list.sort_by_key(|&i| std::cmp::Reverse(phrases[i].len()));
        }
        let max_chars = phrases.iter().map(|p| p.chars().count()).max().unwrap_or(0);
        PhraseSet { phrases, first_pairs, buckets, singles, max_chars }
    }

    /// Number of phrases (including empty ones, so indices line up with the input list).
    pub fn len(&self) -> usize {
        self.phrases.len()
    }

    /// True when no phrase can match.
    pub fn is_empty(&self) -> bool {
        self.max_chars == 0
    }

    /// The normalised phrase `i`.
    pub fn phrase(&self, i: usize) -> &str {
        &self.phrases[i]
    }

    /// Length of the longest phrase, in characters (0 for an empty set).
    pub fn max_chars(&self) -> usize {
        self.max_chars
    }

    /// The phrases that start with the character at byte `at` (a char boundary), longest first.
    fn candidates(&self, norm: &str, at: usize) -> &[usize] {
        match norm[at..].chars().next() {
            Some(c) => &self.buckets[char_bucket(c)],
            None => &[],
        }
    }

    /// Whether some phrase may start at byte `at` (a cheap bitmap test, no decoding).
    fn may_start_at(&self, bytes: &[u8], at: usize) -> bool {
        let b0 = bytes[at] as usize;
        match bytes.get(at + 1) {
            Some(&b1) => {
                let pair = b0 << 8 | b1 as usize;
                self.first_pairs[pair / 64] & (1 << (pair % 64)) != 0
            }
            None => self.singles[b0],
        }
    }

    /// The longest phrase matching exactly at normalised offset `at` and ending by `limit`.
    fn longest_at(&self, norm: &str, at: usize, limit: usize) -> Option<(usize, usize)> {
        let bytes = norm.as_bytes();
        for &i in self.candidates(norm, at) {
            let p = self.phrases[i].as_bytes();
            let end = at + p.len();
            if end > limit || &bytes[at..end] != p {
                continue;
            }
            let before = if at > 0 { bytes.get(at - 1) } else { None };
            if joins(p[0], before) || joins(p[p.len() - 1], bytes.get(end)) {
                continue;
            }
            return Some((i, end));
        }
        None
    }

    fn make_match(text: &NormText<'_>, phrase: usize, norm_start: usize, norm_end: usize) -> Match {
        let (start, end) = text.orig_span(norm_start, norm_end);
        Match { phrase, start, end, norm_start, norm_end }
    }

    /// The phrase matching at normalised offset `norm_at` (longest wins), if any.
    pub fn match_at(&self, text: &NormText<'_>, norm_at: usize) -> Option<Match> {
        let norm = text.as_str();
        if norm_at >= norm.len() || !norm.is_char_boundary(norm_at) {
            return None;
        }
        self.longest_at(norm, norm_at, norm.len()).map(|(i, end)| Self::make_match(text, i, norm_at, end))
    }

    /// Every match in the whole text, in order.
    pub fn find_all(&self, text: &NormText<'_>) -> Vec<Match> {
        self.find_in(text, 0..text.as_str().len())
    }

    /// Every match lying inside the normalised byte range `range`, in order. Word boundaries are
    /// checked against the whole text, not the range.
    pub fn find_in(&self, text: &NormText<'_>, range: Range<usize>) -> Vec<Match> {
        let norm = text.as_str();
        let end = range.end.min(norm.len());
        let mut out = Vec::new();
        if self.max_chars == 0 {
            return out;
        }
        let bytes = norm.as_bytes();
        let mut i = range.start;
        while i < end {
            // `i` is always a char boundary: it steps by whole characters (the UTF-8 length from
            // the lead byte) or to the end of a match.
            if self.may_start_at(bytes, i)
                && let Some((p, e)) = self.longest_at(norm, i, end)
            {
                out.push(Self::make_match(text, p, i, e));
                i = e;
                continue;
            }
            i += utf8_len(bytes[i]);
        }
        out
    }

    /// The first match in the text, if any.
    pub fn find_first(&self, text: &NormText<'_>) -> Option<Match> {
        let norm = text.as_str();
        if self.max_chars == 0 {
            return None;
        }
        let bytes = norm.as_bytes();
        (0..norm.len())
            .filter(|&i| self.may_start_at(bytes, i))
            .find_map(|i| self.longest_at(norm, i, norm.len()).map(|(p, e)| Self::make_match(text, p, i, e)))
    }
}

/// Several phrase lists ("groups") matched in one pass over the text. Each group gets exactly the
/// matches `PhraseSet::new(group).find_all(text)` would give it (leftmost-longest, no overlaps
/// within the group; groups may overlap each other), with `Match::phrase` indexing into the
/// group. A rule that looks for twenty lists in a long answer pays for one scan, not twenty.
#[derive(Debug, Clone)]
pub struct PhraseGroups {
    set: PhraseSet,
    /// For each phrase of `set`: its group and its index inside the group.
    group_of: Vec<usize>,
    local: Vec<usize>,
    groups: usize,
}

impl PhraseGroups {
    pub fn new<G, I, S>(groups: G) -> Self
    where
        G: IntoIterator<Item = I>,
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let (mut all, mut group_of, mut local) = (Vec::new(), Vec::new(), Vec::new());
        let mut count = 0;
        for (g, group) in groups.into_iter().enumerate() {
            for (k, phrase) in group.into_iter().enumerate() {
                all.push(phrase.as_ref().to_string());
                group_of.push(g);
                local.push(k);
            }
            count = g + 1;
        }
        PhraseGroups { set: PhraseSet::new(all), group_of, local, groups: count }
    }

    /// The matches of every group, indexed like the groups passed to [`PhraseGroups::new`].
    pub fn find_all(&self, text: &NormText<'_>) -> Vec<Vec<Match>> {
        let mut out = vec![Vec::new(); self.groups];
        let set = &self.set;
        if set.max_chars == 0 {
            return out;
        }
        let norm = text.as_str();
        let bytes = norm.as_bytes();
        // Where each group may match next: the end of its last match.
        let mut free_from = vec![0usize; self.groups];
        let mut i = 0;
        while i < bytes.len() {
            if set.may_start_at(bytes, i) {
                // Longest first within a group, so a group's first match here is its longest.
                for &p in set.candidates(norm, i) {
                    let g = self.group_of[p];
                    if free_from[g] > i {
                        continue;
                    }
                    let phrase = set.phrases[p].as_bytes();
                    let end = i + phrase.len();
                    if end > bytes.len() || &bytes[i..end] != phrase {
                        continue;
                    }
                    let before = if i > 0 { bytes.get(i - 1) } else { None };
                    if joins(phrase[0], before) || joins(phrase[phrase.len() - 1], bytes.get(end)) {
                        continue;
                    }
                    out[g].push(PhraseSet::make_match(text, self.local[p], i, end));
                    free_from[g] = end;
                }
            }
            i += utf8_len(bytes[i]);
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Clauses, sentences, negation
// ---------------------------------------------------------------------------------------------

/// Characters that end a clause: ，,。.!?！？；; and newline. (After normalisation the full-width
/// ones have become ASCII; both forms are listed so the function works on raw text too.)
const CLAUSE_BREAKS: [char; 11] = [',', '.', '!', '?', ';', '\n', '，', '。', '！', '？', '；'];

/// Whether the character at byte `i` of `s` ends a clause. A `.` or `,` between two ASCII digits
/// (3.5, 1,000) does not.
fn is_clause_break(s: &str, i: usize, c: char) -> bool {
    if !CLAUSE_BREAKS.contains(&c) {
        return false;
    }
    if c == '.' || c == ',' {
        let b = s.as_bytes();
        let digit_before = i > 0 && b[i - 1].is_ascii_digit();
        let digit_after = b.get(i + 1).is_some_and(u8::is_ascii_digit);
        return !(digit_before && digit_after);
    }
    true
}

/// The clause around the byte range `start..end` of `s`: from just after the previous clause
/// break to just before the next one.
pub fn clause_range(s: &str, start: usize, end: usize) -> Range<usize> {
    let clause_start =
        s[..start].char_indices().rev().find(|&(i, c)| is_clause_break(s, i, c)).map_or(0, |(i, c)| i + c.len_utf8());
    let clause_end =
        s[end..].char_indices().find(|&(i, c)| is_clause_break(s, end + i, c)).map_or(s.len(), |(i, _)| end + i);
    clause_start..clause_end
}

/// Where the clause holding byte `pos` of `s` starts, looking back at most `max_chars`
/// characters: just after the nearest clause break before `pos`, or `max_chars` characters back if
/// there is none that near. Bounded, so checking many matches in one long clause stays linear.
pub fn clause_start_within(s: &str, pos: usize, max_chars: usize) -> usize {
    let mut start = pos;
    for (n, (i, c)) in s[..pos].char_indices().rev().enumerate() {
        if n == max_chars || is_clause_break(s, i, c) {
            break;
        }
        start = i;
    }
    start
}

/// Where the clause holding byte `pos` of `s` ends, looking ahead at most `max_chars` characters:
/// at the nearest clause break at or after `pos`, or `max_chars` characters on if there is none.
pub fn clause_end_within(s: &str, pos: usize, max_chars: usize) -> usize {
    let mut end = pos;
    for (n, (i, c)) in s[pos..].char_indices().enumerate() {
        if n == max_chars || is_clause_break(s, pos + i, c) {
            break;
        }
        end = pos + i + c.len_utf8();
    }
    end
}

/// Splits a text into sentences and returns their `[start, end)` byte ranges, trimmed of
/// surrounding whitespace, empty ones dropped.
///
/// A sentence ends after 。！？； (and their full-width forms), after a newline, and after an
/// ASCII `.`, `!` or `?` that is followed by whitespace or the end of the text (so 3.5 mg and
/// e.g.x do not split). Runs of terminators (?!, 。”) stay with their sentence.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    fn push(text: &str, s: usize, e: usize, out: &mut Vec<(usize, usize)>) {
        let piece = &text[s..e];
        let lead = piece.len() - piece.trim_start().len();
        let trimmed = piece.trim();
        if !trimmed.is_empty() {
            out.push((s + lead, s + lead + trimmed.len()));
        }
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let ends = match c {
            '\n' => {
                push(text, start, i, &mut out);
                start = i + 1;
                continue;
            }
            '。' | '！' | '？' | '；' => true,
            '.' | '!' | '?' => chars.peek().is_none_or(|&(_, n)| n.is_whitespace()),
            _ => false,
        };
        if ends {
            // Absorb following terminators and closing quotes into this sentence.
            while chars.peek().is_some_and(|&(_, n)| {
                matches!(n, '。' | '！' | '？' | '!' | '?' | '”' | '"' | '’' | '」' | '』' | ')' | '）')
            }) {
                chars.next();
            }
            let end = chars.peek().map_or(text.len(), |&(p, _)| p);
            push(text, start, end, &mut out);
            start = end;
        }
    }
    push(text, start, text.len(), &mut out);
    out
}

/// Negation cues and the window in which they govern a phrase.
///
/// A match is negated when, **in the same clause**, a `before` cue ends at most `window_chars`
/// characters before the match starts ("不需要就医", "you don't need to go to the emergency room"),
/// or an `after` cue starts at most `window_chars` characters after it ends ("去急诊没有必要").
/// Clauses are split on ，,。.!?！？；; and newlines, so in "do not wait, call 911" the cue is in
/// another clause and does not negate "call 911".
///
/// Known limits: this is surface matching, not parsing. A cue in the same clause negates even
/// when it governs another verb ("不要犹豫立即就医" without a comma reads as negated, "do not
/// hesitate to call 911" too if "do not" is a cue), double negation is not resolved, and
/// conditionals ("if you take antibiotics") are not recognised. Choose cue lists with that in mind:
/// "no need to" is safer than a bare "not".
#[derive(Debug, Clone)]
pub struct Negation {
    before: PhraseSet,
    after: PhraseSet,
    window_chars: usize,
}

impl Negation {
    pub fn new<I, J, S, T>(before: I, after: J, window_chars: usize) -> Self
    where
        I: IntoIterator<Item = S>,
        J: IntoIterator<Item = T>,
        S: AsRef<str>,
        T: AsRef<str>,
    {
        Negation { before: PhraseSet::new(before), after: PhraseSet::new(after), window_chars }
    }

    /// The cue negating `m`, if any (the nearest one; a `before` cue wins over an `after` cue).
    pub fn cue(&self, text: &NormText<'_>, m: &Match) -> Option<Match> {
        let norm = text.as_str();

        // Before: cues ending within the window, starting inside the clause.
        let region_start = clause_start_within(norm, m.norm_start, self.window_chars + self.before.max_chars);
        let before = self
            .before
            .find_in(text, region_start..m.norm_start)
            .into_iter()
            .rfind(|c| norm[c.norm_end..m.norm_start].chars().count() <= self.window_chars);
        if before.is_some() {
            return before;
        }

        // After: cues starting within the window, ending inside the clause.
        let region_end = clause_end_within(norm, m.norm_end, self.window_chars + self.after.max_chars);
        self.after
            .find_in(text, m.norm_end..region_end)
            .into_iter()
            .find(|c| norm[m.norm_end..c.norm_start].chars().count() <= self.window_chars)
    }

    /// Whether `m` is negated.
    pub fn is_negated(&self, text: &NormText<'_>, m: &Match) -> bool {
        self.cue(text, m).is_some()
    }

    /// Finds the cues in `text` once, for checking many matches: each check is then a binary
    /// search and a walk over at most `window_chars` characters instead of a scan of the window.
    pub fn index<'t>(&self, text: &'t NormText<'_>) -> NegationIndex<'t> {
        NegationIndex {
            norm: text.as_str(),
            before: self.before.find_all(text),
            after: self.after.find_all(text),
            window_chars: self.window_chars,
        }
    }
}

/// A [`Negation`] with its cues found in one text ([`Negation::index`]).
///
/// Gives the same answers as [`Negation::cue`], except where two cue phrases overlap in the text
/// (cues 不要 and 要求 in 不要求): the index takes the cues found leftmost-longest over the whole
/// text, `Negation::cue` those found in the window.
#[derive(Debug, Clone)]
pub struct NegationIndex<'t> {
    norm: &'t str,
    before: Vec<Match>,
    after: Vec<Match>,
    window_chars: usize,
}

impl NegationIndex<'_> {
    /// The cue negating `m`, if any (the nearest one; a `before` cue wins over an `after` cue).
    pub fn cue(&self, m: &Match) -> Option<Match> {
        // Cues do not overlap each other, so sorted by start they are sorted by end too, and the
        // nearest cue is the only one that can be in reach.
        let i = self.before.partition_point(|c| c.norm_end <= m.norm_start);
        if let Some(c) = i.checked_sub(1).map(|i| self.before[i])
            && self.in_reach(c.norm_end, m.norm_start)
        {
            return Some(c);
        }
        let j = self.after.partition_point(|c| c.norm_start < m.norm_end);
        self.after.get(j).copied().filter(|c| self.in_reach(m.norm_end, c.norm_start))
    }

    /// Whether `m` is negated.
    pub fn is_negated(&self, m: &Match) -> bool {
        self.cue(m).is_some()
    }

    /// At most `window_chars` characters from `from` to `to`, and no clause break among them.
    fn in_reach(&self, from: usize, to: usize) -> bool {
        for (n, (i, c)) in self.norm[from..to].char_indices().enumerate() {
            if n >= self.window_chars || is_clause_break(self.norm, from + i, c) {
                return false;
            }
        }
        true
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens and repetition
// ---------------------------------------------------------------------------------------------

/// CJK ideographs, kana and hangul: one token each in English tokenisation.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0xAC00..=0xD7AF
        | 0x20000..=0x2FA1F)
}

/// Tokens of an already normalised text.
///
/// - `zh`: every letter or digit is one token (Chinese characters, and also each Latin letter and
///   digit); whitespace, punctuation and symbols are not tokens.
/// - `en`: words, i.e. maximal runs of letters and digits, with an apostrophe inside a word kept
///   ("don't"); each CJK character is a token of its own.
pub fn tokens(norm: &str, lang: Lang) -> Vec<&str> {
    let mut out = Vec::new();
    match lang {
        Lang::Zh => {
            for (i, c) in norm.char_indices() {
                if is_word_char(c) {
                    out.push(&norm[i..i + c.len_utf8()]);
                }
            }
        }
        Lang::En => {
            let mut word_start: Option<usize> = None;
            let mut chars = norm.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                let cjk = is_cjk(c);
                let in_word = if cjk {
                    false
                } else if is_word_char(c) {
                    true
                } else if c == '\'' {
                    // An apostrophe between two word characters belongs to the word.
                    word_start.is_some() && chars.peek().is_some_and(|&(_, n)| is_word_char(n) && !is_cjk(n))
                } else {
                    false
                };
                if in_word {
                    word_start.get_or_insert(i);
                } else {
                    if let Some(s) = word_start.take() {
                        out.push(&norm[s..i]);
                    }
                    if cjk {
                        out.push(&norm[i..i + c.len_utf8()]);
                    }
                }
            }
            if let Some(s) = word_start {
                out.push(&norm[s..]);
            }
        }
    }
    out
}

/// A letter or digit (`char::is_alphanumeric`), with the common ASCII and CJK cases answered
/// without a Unicode table lookup.
fn is_word_char(c: char) -> bool {
    match c as u32 {
        0..=0x7F => c.is_ascii_alphanumeric(),
        0x4E00..=0x9FFF => true,
        _ => c.is_alphanumeric(),
    }
}

/// Number of [`tokens`] in `text` (normalised first): Chinese characters for `zh`, words for `en`.
pub fn count_tokens(text: &str, lang: Lang) -> usize {
    tokens(&normalize(text), lang).len()
}

/// Number of letters and digits in `s` (whitespace, punctuation and symbols do not count).
pub fn count_content_chars(s: &str) -> usize {
    s.chars().filter(|&c| is_word_char(c)).count()
}

/// Repetition statistics of a token sequence's n-grams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NgramStats {
    /// Number of n-gram occurrences, `tokens - n + 1` (0 when there are fewer than `n` tokens).
    pub total: usize,
    /// Number of distinct n-grams.
    pub distinct: usize,
}

impl NgramStats {
    /// `(total - distinct) / total`: the share of n-gram occurrences that repeat an earlier one;
    /// 0 when there are no n-grams.
    pub fn repeated_ratio(&self) -> f64 {
        if self.total == 0 { 0.0 } else { (self.total - self.distinct) as f64 / self.total as f64 }
    }
}

/// N-gram statistics of `text` (normalised first) over its [`tokens`]: character n-grams for `zh`,
/// word n-grams for `en`. `n = 0` counts as no n-grams.
pub fn ngram_stats(text: &str, lang: Lang, n: usize) -> NgramStats {
    let norm = normalize(text);
    ngram_stats_of(&tokens(&norm, lang), lang, n)
}

/// [`ngram_stats`] of tokens already computed with [`tokens`] for `lang`.
pub fn ngram_stats_of(toks: &[&str], lang: Lang, n: usize) -> NgramStats {
    if n == 0 || toks.len() < n {
        return NgramStats { total: 0, distinct: 0 };
    }
    // Number the tokens so n-grams compare as integers, not strings: a Chinese token is one
    // character, its code point is its number; English words are numbered by rank.
    let ids: Vec<u32> = match lang {
        Lang::Zh => toks.iter().map(|t| t.chars().next().map_or(0, |c| c as u32)).collect(),
        Lang::En => {
            // Sort by (FNV-1a hash, word): integer comparisons almost always decide, and equal
            // hashes fall back to the words, so the numbering stays exact.
            let hash =
                |t: &str| t.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
            let mut order: Vec<(u64, usize)> = toks.iter().enumerate().map(|(i, t)| (hash(t), i)).collect();
            order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| toks[a.1].cmp(toks[b.1])));
            let mut ids = vec![0u32; toks.len()];
            let mut id = 0u32;
            for k in 1..order.len() {
                if order[k].0 != order[k - 1].0 || toks[order[k].1] != toks[order[k - 1].1] {
                    id += 1;
                }
                ids[order[k].1] = id;
            }
            ids
        }
    };
    let total = toks.len() - n + 1;
    let max_id = ids.iter().copied().max().unwrap_or(0);
    let bits = (32 - max_id.leading_zeros()).max(1) as usize;
    // Pack each n-gram into one integer key when it fits: sorting integers is far cheaper in fuel
    // than sorting slices (Chinese 4-grams of BMP characters fit 64 bits, English 3-grams too).
    fn count_distinct<K: Ord + Copy>(mut keys: Vec<K>) -> usize {
        keys.sort_unstable();
        1 + keys.windows(2).filter(|w| w[0] != w[1]).count()
    }
    let distinct = if bits * n <= 64 {
        count_distinct(ids.windows(n).map(|w| w.iter().fold(0u64, |k, &id| (k << bits) | id as u64)).collect())
    } else if bits * n <= 128 {
        count_distinct(ids.windows(n).map(|w| w.iter().fold(0u128, |k, &id| (k << bits) | id as u128)).collect())
    } else {
        let gram = |start: usize| &ids[start..start + n];
        let mut starts: Vec<usize> = (0..total).collect();
        starts.sort_unstable_by(|&a, &b| gram(a).cmp(gram(b)));
        1 + starts.windows(2).filter(|w| gram(w[0]) != gram(w[1])).count()
    };
    NgramStats { total, distinct }
}

/// The share of repeated n-grams in `text`: `(total - distinct) / total` (see [`ngram_stats`]).
/// "头痛头痛头痛" has char 4-grams 头痛头痛, 痛头痛头, 头痛头痛: 3 in all, 2 distinct, ratio 1/3.
pub fn repeated_ngram_ratio(text: &str, lang: Lang, n: usize) -> f64 {
    ngram_stats(text, lang, n).repeated_ratio()
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

/// Parses a whole string of Chinese numerals: 零〇一二两三四五六七八九十百千万, e.g. 四 = 4,
/// 十二 = 12, 二十四 = 24, 两百五十 = 250, 一千零五 = 1005, 一万二千 = 12000; 半 alone is 0.5.
/// Returns `None` for anything else (including the empty string).
pub fn parse_zh_numeral(s: &str) -> Option<f64> {
    if s == "半" {
        return Some(0.5);
    }
    let (value, len) = zh_numeral_prefix(s)?;
    (len == s.len()).then_some(value)
}

fn zh_digit(c: char) -> Option<u64> {
    Some(match c {
        '零' | '〇' => 0,
        '一' => 1,
        '二' | '两' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        _ => return None,
    })
}

fn zh_unit(c: char) -> Option<u64> {
    Some(match c {
        '十' => 10,
        '百' => 100,
        '千' => 1000,
        _ => return None,
    })
}

/// The longest prefix of `s` that reads as a Chinese numeral: its value and byte length.
fn zh_numeral_prefix(s: &str) -> Option<(f64, usize)> {
    let (mut total, mut section) = (0u64, 0u64);
    let mut digit: Option<u64> = None;
    let mut len = 0;
    for (i, c) in s.char_indices() {
        if let Some(d) = zh_digit(c) {
            if d == 0 {
                digit = None;
            } else if digit.is_some() {
                // Two digits in a row (一二) is not a numeral we read; stop before the second.
                break;
            } else {
                digit = Some(d);
            }
        } else if let Some(u) = zh_unit(c) {
            section += digit.take().unwrap_or(1) * u;
        } else if c == '万' && (digit.is_some() || section > 0) {
            total += (section + digit.take().unwrap_or(0)) * 10_000;
            section = 0;
        } else {
            break;
        }
        len = i + c.len_utf8();
    }
    if len == 0 {
        return None;
    }
    Some(((total + section + digit.unwrap_or(0)) as f64, len))
}

/// English number words read by [`find_numbers`].
const EN_NUMBER_WORDS: [(&str, f64); 12] = [
    ("one", 1.0),
    ("two", 2.0),
    ("three", 3.0),
    ("four", 4.0),
    ("five", 5.0),
    ("six", 6.0),
    ("seven", 7.0),
    ("eight", 8.0),
    ("nine", 9.0),
    ("ten", 10.0),
    ("eleven", 11.0),
    ("twelve", 12.0),
];

/// Range separators between two numbers: 4-6, 4~6 (and 4～6 after normalisation), 4–6, 4—6,
/// 4至6, 4到6, 4 to 6, 4 or 6.
const RANGE_SEPARATORS: [&str; 8] = ["-", "~", "–", "—", "至", "到", "to", "or"];

/// A number, or a range of two numbers, found in normalised text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberSpan {
    /// The value, or the range's lower end.
    pub lo: f64,
    /// The value, or the range's upper end (`lo <= hi`).
    pub hi: f64,
    /// Normalised byte range of the number or range.
    pub norm_start: usize,
    pub norm_end: usize,
}

/// One number starting exactly at byte `i` of `s`: value and end.
fn number_at(s: &str, i: usize) -> Option<(f64, usize)> {
    let b = s.as_bytes();
    let c = s[i..].chars().next()?;
    if c.is_ascii_digit() {
        let mut j = i;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        // Thousands groups: ",ddd" not followed by another digit.
        while j + 3 < b.len()
            && b[j] == b','
            && b[j + 1..j + 4].iter().all(u8::is_ascii_digit)
            && !is_digit_at(b, j + 4)
        {
            j += 4;
        }
        if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
            j += 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        }
        let digits: String = s[i..j].chars().filter(|&c| c != ',').collect();
        return digits.parse().ok().map(|v| (v, j));
    }
    if c == '半' {
        return Some((0.5, i + c.len_utf8()));
    }
    if zh_digit(c).is_some() || zh_unit(c).is_some() {
        return zh_numeral_prefix(&s[i..]).map(|(v, len)| (v, i + len));
    }
    if c.is_ascii_alphabetic() && !(i > 0 && b[i - 1].is_ascii_alphabetic()) {
        for (word, value) in EN_NUMBER_WORDS {
            let end = i + word.len();
            if s[i..].starts_with(word) && !b.get(end).is_some_and(u8::is_ascii_alphabetic) {
                return Some((value, end));
            }
        }
    }
    None
}

fn is_digit_at(b: &[u8], i: usize) -> bool {
    b.get(i).is_some_and(u8::is_ascii_digit)
}

fn skip_spaces(s: &str, mut i: usize) -> usize {
    while s.as_bytes().get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// Every number in an already normalised text, left to right: Arabic numerals (3, 3.5, 1,000),
/// Chinese numerals (see [`parse_zh_numeral`]), English words one..twelve, and ranges of two of
/// them joined by -, ~, –, —, 至, 到, "to" or "or" ("4-6", "三到四", "4 to 6").
///
/// Chinese numerals are read wherever they occur, so 一 in 一些 is a number too; callers decide
/// what a number means from its neighbours (a unit, a [`NumberTemplate`]).
pub fn find_numbers(norm: &str) -> Vec<NumberSpan> {
    let b = norm.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < norm.len() {
        // Only digits, letters that start a word and number words (o t f s e n), and multi-byte
        // characters (Chinese numerals) can start a number; skip the rest without decoding.
        let could_start = match b[i] {
            d if d.is_ascii_digit() => true,
            b'o' | b't' | b'f' | b's' | b'e' | b'n' => i == 0 || !b[i - 1].is_ascii_alphabetic(),
            lead => lead >= 0xC0,
        };
        if !could_start {
            i += 1;
            continue;
        }
        let Some((lo, end)) = number_at(norm, i) else {
            i += 1;
            continue;
        };
        let (mut hi, mut span_end) = (lo, end);
        let after = skip_spaces(norm, end);
        for sep in RANGE_SEPARATORS {
            if !norm[after..].starts_with(sep) {
                continue;
            }
            let sep_end = after + sep.len();
            if sep.as_bytes()[0].is_ascii_alphabetic() && b.get(sep_end).is_some_and(u8::is_ascii_alphabetic) {
                continue;
            }
            let next = skip_spaces(norm, sep_end);
            if next < norm.len()
                && let Some((v, e)) = number_at(norm, next)
                && v >= lo
            {
                hi = v;
                span_end = e;
            }
            break;
        }
        out.push(NumberSpan { lo, hi, norm_start: i, norm_end: span_end });
        i = span_end;
    }
    out
}

/// A phrase with one number in it, e.g. `每日{n}次`, `every {n} hours`, `q{n}h`.
///
/// The template is normalised like text. Spaces around `{n}` are optional in the text ("每 6
/// 小时" matches `每{n}小时`), the word-boundary rule of [`PhraseSet`] applies at both ends, and
/// `{n}` is anything [`find_numbers`] reads, ranges included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NumberTemplate {
    source: String,
    prefix: String,
    suffix: String,
}

impl TryFrom<String> for NumberTemplate {
    type Error = String;

    fn try_from(source: String) -> Result<Self, String> {
        let norm = normalize(&source);
        let mut parts = norm.split("{n}");
        let (Some(prefix), Some(suffix), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("number template `{source}` must contain `{{n}}` exactly once"));
        };
        Ok(NumberTemplate { prefix: prefix.trim_end().to_string(), suffix: suffix.trim_start().to_string(), source })
    }
}

impl From<NumberTemplate> for String {
    fn from(t: NumberTemplate) -> String {
        t.source
    }
}

impl NumberTemplate {
    /// The template as written in the params.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the template matches around `number`; returns the normalised byte range of the
    /// whole match.
    pub fn matches(&self, norm: &str, number: &NumberSpan) -> Option<Range<usize>> {
        let b = norm.as_bytes();
        let before = norm[..number.norm_start].trim_end_matches(' ');
        if !before.ends_with(self.prefix.as_str()) {
            return None;
        }
        let start = if self.prefix.is_empty() { number.norm_start } else { before.len() - self.prefix.len() };
        if let Some(&first) = self.prefix.as_bytes().first()
            && start > 0
            && joins(first, b.get(start - 1))
        {
            return None;
        }
        let after_start = skip_spaces(norm, number.norm_end);
        if !norm[after_start..].starts_with(self.suffix.as_str()) {
            return None;
        }
        let end = if self.suffix.is_empty() { number.norm_end } else { after_start + self.suffix.len() };
        if let Some(&last) = self.suffix.as_bytes().last()
            && joins(last, b.get(end))
        {
            return None;
        }
        Some(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(set: &PhraseSet, text: &str) -> Vec<(usize, usize)> {
        set.find_all(&NormText::new(text)).iter().map(|m| (m.start, m.end)).collect()
    }

    #[test]
    fn width_and_case_fold() {
        assert_eq!(normalize("ＣＡＬＬ　９１１！"), "call 911!");
        // 【】 and 。 are outside U+FF01..FF5E and stay; ，；：（） are inside and fold.
        assert_eq!(normalize("【建议】多喝水，休息；注意：（发热）。"), "【建议】多喝水,休息;注意:(发热)。");
        assert_eq!(normalize("Don’t  \t wait"), "don't wait");
        assert_eq!(normalize("a\n\nb"), "a\n\nb");
        // ASCII and non-ASCII whitespace collapse alike (\x0b is whitespace too).
        assert_eq!(normalize("A\t\x0b\u{00A0}B\r\nÉ"), "a b \né");
    }

    #[test]
    fn spans_point_into_the_original() {
        // "ＥＲ" is 6 bytes in the original (two 3-byte chars) and 2 bytes normalised.
        let text = "去ＥＲ看看";
        let t = NormText::new(text);
        assert_eq!(t.as_str(), "去er看看");
        let set = PhraseSet::new(["er"]);
        let m = set.find_all(&t);
        assert_eq!((m[0].start, m[0].end), (3, 9));
        assert_eq!(&text[3..9], "ＥＲ");
        assert_eq!((m[0].norm_start, m[0].norm_end), (3, 5));
        // A collapsed space run maps back to its first character.
        let t = NormText::new("a \u{3000} b");
        assert_eq!(t.as_str(), "a b");
        assert_eq!(t.orig_span(1, 3), (1, 7));
        assert_eq!(t.norm_span(0, 6), (0, 2));
    }

    #[test]
    fn phrases_are_leftmost_longest_with_ascii_word_boundaries() {
        let set = PhraseSet::new(["打120", "拨打120", "the ER"]);
        // 拨打120 wins over the 打120 inside it: "请" is 3 bytes, "拨打120" 9.
        assert_eq!(spans(&set, "请拨打120"), vec![(3, 12)]);
        assert_eq!(spans(&set, "打1200"), vec![]);
        assert_eq!(spans(&set, "go to the error log"), vec![]);
        assert_eq!(spans(&set, "Go to THE ER now"), vec![(6, 12)]);
        // A letter next to a digit is a boundary: units after numbers, 120 after a letter.
        assert_eq!(spans(&PhraseSet::new(["mg"]), "800mg 5mgs"), vec![(3, 5)]);
        assert_eq!(spans(&PhraseSet::new(["120"]), "dial120 1200"), vec![(4, 7)]);
        // CJK phrases need no boundary.
        assert_eq!(spans(&PhraseSet::new(["急诊"]), "去急诊科"), vec![(3, 9)]);
        // Empty phrases never match.
        assert!(PhraseSet::new([""]).is_empty());
        assert_eq!(spans(&PhraseSet::new(["", "a"]), "a"), vec![(0, 1)]);
    }

    #[test]
    fn groups_match_like_separate_sets() {
        let groups: Vec<Vec<&str>> = vec![
            vec!["拨打120", "打120", "120"],
            vec!["120"],
            vec!["急诊", "急诊科"],
            vec!["a", "b", "ab"],
            vec![],
            vec!["b"],
        ];
        for text in ["请拨打120或去急诊科，a b ab", "打120120 急诊急诊科 aab", "", "b"] {
            let t = NormText::new(text);
            let together = PhraseGroups::new(&groups).find_all(&t);
            assert_eq!(together.len(), groups.len());
            for (g, group) in groups.iter().enumerate() {
                assert_eq!(together[g], PhraseSet::new(group).find_all(&t), "group {g} in {text:?}");
            }
        }
    }

    fn negated(phrases: &[&str], cues: &[&str], after: &[&str], window: usize, text: &str) -> Vec<bool> {
        let t = NormText::new(text);
        let neg = Negation::new(cues, after, window);
        let index = neg.index(&t);
        let matches = PhraseSet::new(phrases).find_all(&t);
        let direct: Vec<bool> = matches.iter().map(|m| neg.is_negated(&t, m)).collect();
        let indexed: Vec<bool> = matches.iter().map(|m| index.is_negated(m)).collect();
        assert_eq!(direct, indexed, "Negation::cue and NegationIndex::cue disagree on {text:?}");
        direct
    }

    const ZH_CUES: [&str; 6] = ["不需要", "无需", "不用", "没必要", "不必", "不要"];
    const EN_CUES: [&str; 6] =
        ["no need to", "don't need to", "do not need to", "not necessary to", "needn't", "unnecessary to"];
    const CARE: [&str; 6] = ["就医", "去医院", "急诊", "see a doctor", "emergency room", "call 911"];

    #[test]
    fn negation_cues_before_the_phrase_in_the_same_clause() {
        let cues: Vec<&str> = ZH_CUES.iter().chain(EN_CUES.iter()).copied().collect();
        let none: [&str; 0] = [];
        for text in
            ["不需要就医", "不用去医院", "no need to see a doctor", "you don't need to go to the emergency room"]
        {
            assert_eq!(negated(&CARE, &cues, &none, 30, text), vec![true], "{text}");
        }
        for text in ["如果出现胸痛，需要立即就医", "do not wait, call 911 now", "Do not wait. Call 911."] {
            assert_eq!(negated(&CARE, &cues, &none, 30, text), vec![false], "{text}");
        }
        // The cue must come before the phrase: here it follows in the same clause.
        assert_eq!(negated(&CARE, &cues, &none, 30, "去急诊不需要预约"), vec![false]);
        // Outside the window (window 3 chars; "马上去医院的" is 6 chars between cue and phrase).
        assert_eq!(negated(&["急诊"], &cues, &none, 3, "不需要马上去医院的急诊"), vec![false]);
        assert_eq!(negated(&["急诊"], &cues, &none, 6, "不需要马上去医院的急诊"), vec![true]);
        // Full-width punctuation splits clauses too (，folds to ,).
        assert_eq!(negated(&["就医"], &cues, &none, 30, "不要慌，立即就医"), vec![false]);
        // Documented limit: no comma, so 不要 governs the whole clause.
        assert_eq!(negated(&["就医"], &cues, &none, 30, "不要犹豫立即就医"), vec![true]);
    }

    #[test]
    fn negation_cues_after_the_phrase() {
        let none: [&str; 0] = [];
        assert_eq!(negated(&["急诊"], &none, &["没有必要"], 10, "去急诊没有必要"), vec![true]);
        assert_eq!(negated(&["急诊"], &none, &["没有必要"], 10, "去急诊，没有必要等"), vec![false]);
        assert_eq!(
            negated(&["calling 911"], &none, &["is not necessary"], 10, "Calling 911 is not necessary here"),
            vec![true]
        );
    }

    #[test]
    fn bounded_clause_edges() {
        let s = "不要慌，立即拨打120";
        // "不要慌，" is 12 bytes: the clause of 拨打 starts after the comma…
        assert_eq!(clause_start_within(s, 18, 100), 12);
        // …or 2 characters back when that is nearer.
        assert_eq!(clause_start_within(s, 18, 2), 12);
        assert_eq!(clause_start_within(s, 18, 1), 15);
        assert_eq!(clause_end_within(s, 0, 100), 9);
        assert_eq!(clause_end_within(s, 0, 2), 6);
        assert_eq!(clause_end_within(s, 12, 100), s.len());
    }

    #[test]
    fn clauses_do_not_split_decimals() {
        let s = "take 2.5 mg, then rest";
        assert_eq!(&s[clause_range(s, 5, 8)], "take 2.5 mg");
        let s = "第一句。第二句";
        assert_eq!(&s[clause_range(s, 12, 12)], "第二句");
    }

    #[test]
    fn sentence_splitting() {
        let text = "先休息。如果发热超过三天，请就医！\nTake 2.5 mg daily. Call 911 now!? ok";
        let got: Vec<&str> = sentences(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(got, vec!["先休息。", "如果发热超过三天，请就医！", "Take 2.5 mg daily.", "Call 911 now!?", "ok"]);
        assert!(sentences("").is_empty());
        assert!(sentences(" \n ").is_empty());
        let text = "他说：“好的。”然后走了";
        let got: Vec<&str> = sentences(text).into_iter().map(|(s, e)| &text[s..e]).collect();
        assert_eq!(got, vec!["他说：“好的。”", "然后走了"]);
    }

    #[test]
    fn sentences_map_to_normalised_ranges() {
        let t = NormText::new("Ａ。Ｂ！");
        let norm: Vec<&str> = t.sentences_norm().into_iter().map(|r| &t.as_str()[r]).collect();
        assert_eq!(norm, vec!["a。", "b!"]);
    }

    #[test]
    fn tokens_and_counts() {
        // 多喝水 3 + 休息 2 + "ok" 2 letters = 7; punctuation and spaces do not count.
        assert_eq!(count_tokens("多喝水，休息。 OK!", Lang::Zh), 7);
        assert_eq!(count_tokens("Don't wait — call 911, now.", Lang::En), 5);
        assert_eq!(tokens(&normalize("I can’t 吃药"), Lang::En), vec!["i", "can't", "吃", "药"]);
        assert_eq!(count_tokens("", Lang::En), 0);
        assert_eq!(count_content_chars("【建议】：多喝水 ok"), 7);
    }

    #[test]
    fn repetition_ratio_hand_checked() {
        // 头痛头痛头痛: char 4-grams 头痛头痛, 痛头痛头, 头痛头痛 → total 3, distinct 2 → 1/3.
        assert!((repeated_ngram_ratio("头痛头痛头痛", Lang::Zh, 4) - 1.0 / 3.0).abs() < 1e-12);
        // "rest and drink water rest and drink water": 8 words, 6 trigrams, distinct 4
        // (rest-and-drink, and-drink-water, drink-water-rest, water-rest-and) → 2/6.
        let r = repeated_ngram_ratio("Rest and drink water. Rest and drink water.", Lang::En, 3);
        assert!((r - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(repeated_ngram_ratio("短", Lang::Zh, 4), 0.0);
        assert_eq!(ngram_stats("a b c", Lang::En, 0), NgramStats { total: 0, distinct: 0 });
        // n large enough to take the slice path (21-bit code points × 7 > 128 bits): same answer.
        let text = "多喝水多喝水多喝水多喝水";
        // 12 chars, 6 7-grams, period 3 → 3 distinct.
        assert_eq!(ngram_stats(text, Lang::Zh, 7), NgramStats { total: 6, distinct: 3 });
    }

    #[test]
    fn chinese_numerals() {
        for (s, v) in [
            ("四", 4.0),
            ("十", 10.0),
            ("十二", 12.0),
            ("二十四", 24.0),
            ("两", 2.0),
            ("两百五十", 250.0),
            ("一千零五", 1005.0),
            ("一万二千", 12000.0),
            ("半", 0.5),
        ] {
            assert_eq!(parse_zh_numeral(s), Some(v), "{s}");
        }
        assert_eq!(parse_zh_numeral(""), None);
        assert_eq!(parse_zh_numeral("四次"), None);
    }

    fn nums(text: &str) -> Vec<(f64, f64, String)> {
        let norm = normalize(text);
        find_numbers(&norm).into_iter().map(|n| (n.lo, n.hi, norm[n.norm_start..n.norm_end].to_string())).collect()
    }

    #[test]
    fn numbers_and_ranges() {
        assert_eq!(nums("每次800mg，每日4次"), vec![(800.0, 800.0, "800".into()), (4.0, 4.0, "4".into())]);
        assert_eq!(nums("2.5 mg"), vec![(2.5, 2.5, "2.5".into())]);
        assert_eq!(nums("1,000 mg, 3 times"), vec![(1000.0, 1000.0, "1,000".into()), (3.0, 3.0, "3".into())]);
        assert_eq!(nums("every 4 to 6 hours"), vec![(4.0, 6.0, "4 to 6".into())]);
        assert_eq!(nums("每４～６小时"), vec![(4.0, 6.0, "4~6".into())]);
        assert_eq!(nums("一日三到四次"), vec![(1.0, 1.0, "一".into()), (3.0, 4.0, "三到四".into())]);
        assert_eq!(nums("Four times; someone"), vec![(4.0, 4.0, "four".into())]);
        // A range must go up; "6-4" is two numbers.
        assert_eq!(nums("6-4"), vec![(6.0, 6.0, "6".into()), (4.0, 4.0, "4".into())]);
    }

    #[test]
    fn number_templates() {
        let t = |s: &str| NumberTemplate::try_from(s.to_string()).unwrap();
        let check = |tpl: &NumberTemplate, text: &str| -> Vec<(f64, f64)> {
            let norm = normalize(text);
            find_numbers(&norm).iter().filter(|n| tpl.matches(&norm, n).is_some()).map(|n| (n.lo, n.hi)).collect()
        };
        assert_eq!(check(&t("每日{n}次"), "布洛芬每次800mg，每日4次"), vec![(4.0, 4.0)]);
        assert_eq!(check(&t("每{n}小时"), "每 6 小时一次"), vec![(6.0, 6.0)]);
        assert_eq!(check(&t("every {n} hours"), "Every 4-6 hours as needed"), vec![(4.0, 6.0)]);
        assert_eq!(check(&t("{n} times a day"), "800 mg four times a day"), vec![(4.0, 4.0)]);
        assert_eq!(check(&t("q{n}h"), "500 mg q6h"), vec![(6.0, 6.0)]);
        assert_eq!(check(&t("q{n}h"), "500 mg aq6h"), vec![]);
        assert!(NumberTemplate::try_from("every hours".to_string()).is_err());
        assert!(NumberTemplate::try_from("{n} to {n}".to_string()).is_err());
        let json: NumberTemplate = serde_json::from_str("\"每日{n}次\"").unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), "\"每日{n}次\"");
    }

    #[test]
    fn by_lang_picks_and_chains() {
        let b: ByLang<Vec<String>> = serde_json::from_str(r#"{"zh":["急诊"],"en":["the ER"]}"#).unwrap();
        assert_eq!(b.get(Lang::En), &vec!["the ER".to_string()]);
        assert_eq!(b.both().collect::<Vec<_>>(), vec!["急诊", "the ER"]);
        assert!(serde_json::from_str::<ByLang<u32>>(r#"{"zh":1,"en":2,"fr":3}"#).is_err());
    }
}
