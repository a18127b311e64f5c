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
//!   does not match "打1200", while "mg" matches in "800mg"; CJK phrases match anywhere. Sets and
//!   groups are built once, in a rule's `prepare`; [`find_phrase`] looks for one phrase that comes
//!   with the sample.
//! - **Negation** ([`Negation`], [`NegationIndex`] for many checks): whether a cue such as 不需要
//!   or "no need to" governs a match: before it (or after it) in the same clause, within a window.
//!   [`NegationIndex::from_matches`] takes cues found by the same [`PhraseGroups`] scan as the
//!   phrases they govern.
//! - **Clauses and sentences** ([`clause_range`], [`clause_start_within`], [`sentences`]).
//! - **Tokens and repetition** ([`tokens`], [`count_tokens`], [`ngram_stats`],
//!   [`repeated_ngram_ratio`], and [`token_stats`] for the count, a position and the n-grams in
//!   one pass).
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

/// ASCII horizontal whitespace (`char::is_whitespace` but not a newline).
#[inline(always)]
fn is_ascii_hspace(b: u8) -> bool {
    matches!(b, b'\t' | 0x0B | 0x0C | b'\r' | b' ')
}

/// The character whose UTF-8 sequence of `len` bytes starts at byte `i` of valid UTF-8.
#[inline(always)]
fn decode_char(b: &[u8], i: usize, len: usize) -> char {
    let cont = |k: usize| (b[i + k] & 0x3F) as u32;
    let code = match len {
        1 => b[i] as u32,
        2 => ((b[i] as u32 & 0x1F) << 6) | cont(1),
        3 => ((b[i] as u32 & 0x0F) << 12) | (cont(1) << 6) | cont(2),
        _ => ((b[i] as u32 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
    };
    char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
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
    /// The map between the two texts, in pieces ordered by both offsets, and a last piece at
    /// the two ends. A piece runs to where the next one starts.
    pieces: Vec<Piece>,
}

/// A stretch of the normalised text and the stretch of the original text it came from.
#[derive(Debug, Clone, Copy)]
struct Piece {
    norm: u32,
    orig: u32,
    /// Characters of the same byte lengths on both sides (ASCII lowercased or turned into a space,
    /// caseless characters copied), so an offset `k` bytes into one is `k` bytes into the other.
    /// Otherwise the piece is one original character and what it became: one or more characters,
    /// or nothing (a collapsed whitespace character).
    same: bool,
}

impl<'a> NormText<'a> {
    pub fn new(original: &'a str) -> Self {
        let src = original.as_bytes();
        let mut norm = String::with_capacity(src.len());
        let mut pieces = Vec::new();
        // Whether the last piece is a `same` piece that the next such character can extend.
        let mut same_open = false;
        let mut in_space = false;
        let mut i = 0;
        while i < src.len() {
            let b = src[i];
            if b < 0x80 && !(in_space && is_ascii_hspace(b)) {
                if !same_open {
                    pieces.push(Piece { norm: norm.len() as u32, orig: i as u32, same: true });
                    same_open = true;
                }
                // A run of ASCII: every byte but a whitespace that follows a whitespace.
                let start = i;
                let at = norm.len();
                let mut changed = false;
                let mut prev_space = false;
                // Eight bytes at a time while they are ASCII with no two whitespaces in a row.
                while i + 8 <= src.len() {
                    let w = load8(src, i);
                    if w & HI_BITS != 0 {
                        break;
                    }
                    let other = ascii_hspace_mask(w) & !byte_eq_mask(w, b' ');
                    let spaces = ascii_hspace_mask(w);
                    let carry = if prev_space { 0x80 } else { 0 };
                    if spaces & ((spaces << 8) | carry) != 0 {
                        break;
                    }
                    changed |= other != 0;
                    prev_space = spaces >> 63 != 0;
                    i += 8;
                }
                while i < src.len() && src[i] < 0x80 {
                    let space = is_ascii_hspace(src[i]);
                    if space && (prev_space || (i == start && in_space)) {
                        break;
                    }
                    changed |= space && src[i] != b' ';
                    prev_space = space;
                    i += 1;
                }
                if changed {
                    // Tabs, \r, \x0b and \x0c become spaces (one each: a run has no two in a row).
                    for &c in &src[start..i] {
                        norm.push(if is_ascii_hspace(c) { ' ' } else { c.to_ascii_lowercase() as char });
                    }
                } else {
                    norm.push_str(&original[start..i]);
                    norm[at..].make_ascii_lowercase();
                }
                in_space = prev_space;
                continue;
            }
            if b < 0x80 && in_space {
                // A run of ASCII whitespace after a space: collapsed, into one empty piece (or
                // the one a collapsed character just before opened).
                if !pieces.last().is_some_and(|p: &Piece| !p.same && p.norm as usize == norm.len()) {
                    pieces.push(Piece { norm: norm.len() as u32, orig: i as u32, same: false });
                }
                same_open = false;
                while i < src.len() && is_ascii_hspace(src[i]) {
                    i += 1;
                }
                continue;
            }
            if (0xE4..=0xE9).contains(&b) {
                // A run of U+4000..=U+9FFF (CJK ideographs): caseless, copied.
                if !same_open {
                    pieces.push(Piece { norm: norm.len() as u32, orig: i as u32, same: true });
                    same_open = true;
                }
                let start = i;
                while i < src.len() && (0xE4..=0xE9).contains(&src[i]) {
                    i += 3;
                }
                norm.push_str(&original[start..i]);
                in_space = false;
                continue;
            }
            // One character on its own: a collapsed ASCII space, or anything else outside ASCII.
            let len = utf8_len(b);
            let c = if b < 0x80 { b as char } else { decode_char(src, i, len) };
            let folded = fold_width(c);
            // No caseless character is whitespace (U+3000 has been folded to a space already).
            let caseless = !folded.is_ascii() && has_no_case(folded);
            let hspace = if folded.is_ascii() { is_ascii_hspace(folded as u8) } else { !caseless && is_hspace(folded) };
            if hspace && in_space {
                // Collapsed. A run of collapsed characters shares one empty piece.
                let last = pieces.last().copied();
                if !last.is_some_and(|p: Piece| !p.same && p.norm as usize == norm.len()) {
                    pieces.push(Piece { norm: norm.len() as u32, orig: i as u32, same: false });
                }
                same_open = false;
                i += len;
                continue;
            }
            in_space = hspace;
            if caseless {
                if !same_open {
                    pieces.push(Piece { norm: norm.len() as u32, orig: i as u32, same: true });
                    same_open = true;
                }
                norm.push(folded);
                i += len;
                continue;
            }
            pieces.push(Piece { norm: norm.len() as u32, orig: i as u32, same: false });
            same_open = false;
            if hspace {
                norm.push(' ');
            } else if folded.is_ascii() {
                norm.push(folded.to_ascii_lowercase());
            } else {
                norm.extend(folded.to_lowercase());
            }
            i += len;
        }
        pieces.push(Piece { norm: norm.len() as u32, orig: src.len() as u32, same: true });
        NormText { original, norm, pieces }
    }

    /// The original offset of the character normalised byte `at` came from (`at` may be the end).
    fn to_orig(&self, at: usize) -> usize {
        assert!(at <= self.norm.len(), "normalised offset {at} past the end ({})", self.norm.len());
        // The last piece starting at or before `at`: an empty piece (a collapsed space) shares its
        // start with the piece after it, which is the one taken.
        let k = self.pieces.partition_point(|p| p.norm as usize <= at) - 1;
        let p = self.pieces[k];
        if p.same {
            let nb = self.norm.as_bytes();
            let mut cs = at;
            while cs > p.norm as usize && cs < nb.len() && (nb[cs] & 0xC0) == 0x80 {
                cs -= 1;
            }
            p.orig as usize + (cs - p.norm as usize)
        } else {
            p.orig as usize
        }
    }

    /// The normalised offset of what original byte `at` became (`at` may be the end); for a
    /// collapsed whitespace character, the space it was collapsed into.
    fn to_norm(&self, at: usize) -> usize {
        assert!(at <= self.original.len(), "offset {at} past the end ({})", self.original.len());
        let k = self.pieces.partition_point(|p| p.orig as usize <= at) - 1;
        let p = self.pieces[k];
        if p.same {
            let ob = self.original.as_bytes();
            let mut cs = at;
            while cs > p.orig as usize && cs < ob.len() && (ob[cs] & 0xC0) == 0x80 {
                cs -= 1;
            }
            p.norm as usize + (cs - p.orig as usize)
        } else if self.pieces.get(k + 1).is_some_and(|next| next.norm == p.norm) {
            // Collapsed: it became nothing, after the space it joined.
            p.norm as usize - 1
        } else {
            p.norm as usize
        }
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
        let start = self.to_orig(norm_start);
        if norm_end <= norm_start {
            return (start, start);
        }
        let last = self.to_orig(norm_end - 1);
        // `last` is where a character starts: its lead byte gives its length.
        let last_len = self.original.as_bytes().get(last).map_or(0, |&b| utf8_len(b));
        (start, last + last_len)
    }

    /// Maps an original byte range to the normalised byte range it became.
    pub fn norm_span(&self, start: usize, end: usize) -> (usize, usize) {
        let norm_start = self.to_norm(start);
        if end <= start {
            return (norm_start, norm_start);
        }
        // The end is where the character after the range starts in `norm`; for a collapsed space
        // that is the shared space, so take the later of that and the start.
        let norm_end = self.to_norm(end).max(norm_start);
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
/// text position in a bitmap (an ASCII letter or digit inside a word cannot start a match and is
/// skipped), hashes the first character of the positions that pass into a second, finer bitmap,
/// and only then compares the phrases that start the same way, eight bytes at a time. So scanning
/// a text costs a few instructions per byte however long the list is (fuel is metered). The
/// tables are built once by [`PhraseSet::new`]: build a set in a rule's `prepare`, not per sample.
#[derive(Debug, Clone)]
pub struct PhraseSet {
    phrases: Vec<String>,
    index: PhraseIndex,
    max_chars: usize,
}

/// Length of the UTF-8 sequence a lead byte starts.
#[inline(always)]
fn utf8_len(lead: u8) -> usize {
    UTF8_LEN[lead as usize] as usize
}

/// [`utf8_len`] of every byte. A continuation byte is never at a char boundary; it gets 1, to
/// step one byte and stay safe.
const UTF8_LEN: [u8; 256] = {
    let mut t = [1u8; 256];
    let mut b = 0xC0;
    while b < 256 {
        t[b] = if b < 0xE0 {
            2
        } else if b < 0xF0 {
            3
        } else {
            4
        };
        b += 1;
    }
    t
};

/// Which bytes are ASCII letters (1) and digits (2), for the word-boundary rule.
const WORD_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphabetic() {
            1
        } else if c.is_ascii_digit() {
            2
        } else {
            0
        };
        b += 1;
    }
    t
};

/// Up to this many first pairs, a [`PhraseIndex`] scans a text with a branch per byte; past it,
/// sixty-four bytes at a time (see [`PhraseIndex::for_each_start`]).
const FEW_PAIRS: usize = 40;

/// Number of candidate buckets of a [`PhraseIndex`] (a power of two).
const BUCKET_BITS: u32 = 9;
const BUCKETS: usize = 1 << BUCKET_BITS;

/// The eight bytes of `bytes` from `i` as a little-endian integer, zero-padded past the end.
#[inline(always)]
fn load8(bytes: &[u8], i: usize) -> u64 {
    match bytes.get(i..i + 8) {
        Some(w) => u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]),
        None => {
            let mut buf = [0u8; 8];
            let rest = &bytes[i.min(bytes.len())..];
            buf[..rest.len()].copy_from_slice(rest);
            u64::from_le_bytes(buf)
        }
    }
}

/// A fixed multiplicative hash (deterministic: no random state).
#[inline(always)]
fn mix(key: u64) -> u64 {
    (key ^ (key >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The filter bit (16 bits) and the bucket of a start key's hash.
#[inline(always)]
fn filter_bit(h: u64) -> usize {
    (h >> 48) as usize
}

#[inline(always)]
fn bucket_of(h: u64) -> usize {
    (h >> 39) as usize & (BUCKETS - 1)
}

/// One phrase in a [`PhraseIndex`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The phrase's first `min(8, len)` bytes, little-endian, and the mask selecting them.
    prefix: u64,
    mask: u64,
    /// Where its bytes are in [`PhraseIndex::bytes`].
    offset: u32,
    len: u32,
    /// Its index in its list (for [`PhraseGroups`], in its group) and its group.
    phrase: u32,
    group: u32,
}

/// The lookup tables of a [`PhraseSet`] or [`PhraseGroups`].
#[derive(Debug, Clone)]
struct PhraseIndex {
    /// One bit per pair of first two bytes a phrase may start with (for a one-byte phrase, every
    /// pair starting with its byte): a cheap test before the start key is hashed. For a CJK
    /// character the pair is its first two bytes, which tell apart blocks of 64 characters.
    first_pairs: Vec<u64>,
    /// More than [`FEW_PAIRS`] bits set in `first_pairs`: see [`PhraseIndex::for_each_start`].
    many_pairs: bool,
    /// One bit per [`filter_bit`] of a [`start_key`] a phrase of two bytes or more starts with.
    filter: Vec<u64>,
    /// Phrases of two bytes or more by [`bucket_of`] their start key: bucket `b` is
    /// `entries[starts[b]..starts[b + 1]]`, longest first, then in list order.
    entries: Vec<Entry>,
    starts: Vec<u32>,
    /// One-byte phrases by their byte: `singles[single_starts[b]..single_starts[b + 1]]`, in list
    /// order. They are the shortest phrases starting with that byte, so they are tried last.
    singles: Vec<Entry>,
    single_starts: Vec<u32>,
    /// Every phrase's bytes, one after the other.
    bytes: Vec<u8>,
}

/// For the first byte of a window: the mask selecting the window's start key (see
/// [`start_key`]).
const KEY_MASK: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = if b < 0x80 {
            0xFFFF
        } else if b < 0xC0 {
            0xFF
        } else if b < 0xE0 {
            0xFFFF
        } else if b < 0xF0 {
            0xFF_FFFF
        } else {
            0xFFFF_FFFF
        };
        b += 1;
    }
    t
};

/// What a match must start with to be looked up: for an ASCII first byte, the first two bytes
/// (0 for a missing second byte); otherwise the whole first character.
#[inline(always)]
fn start_key(window: u64) -> u64 {
    window & KEY_MASK[window as u8 as usize]
}

impl PhraseIndex {
    /// `phrases[k]` (normalised) belongs to group `groups[k]` with index `locals[k]` in it.
    fn new(phrases: &[String], groups: &[u32], locals: &[u32]) -> Self {
        let mut filter = vec![0u64; 65536 / 64];
        let mut first_pairs = vec![0u64; 65536 / 64];
        let mut bytes = Vec::new();
        let mut keyed: Vec<(usize, Entry)> = Vec::new();
        let mut singles: Vec<(usize, Entry)> = Vec::new();
        for (k, p) in phrases.iter().enumerate() {
            let pb = p.as_bytes();
            if pb.is_empty() {
                continue;
            }
            let n = pb.len().min(8);
            let mut head = [0u8; 8];
            head[..n].copy_from_slice(&pb[..n]);
            let entry = Entry {
                prefix: u64::from_le_bytes(head),
                mask: if n == 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 },
                offset: bytes.len() as u32,
                len: pb.len() as u32,
                phrase: locals[k],
                group: groups[k],
            };
            bytes.extend_from_slice(pb);
            match pb {
                [b0] => {
                    let base = (*b0 as usize) << 8;
                    first_pairs[base / 64..(base + 256) / 64].fill(u64::MAX);
                }
                [b0, b1, ..] => {
                    let pair = (*b0 as usize) << 8 | *b1 as usize;
                    first_pairs[pair / 64] |= 1 << (pair % 64);
                }
                [] => {}
            }
            if pb.len() == 1 {
                singles.push((pb[0] as usize, entry));
            } else {
                let h = mix(start_key(entry.prefix));
                let bit = filter_bit(h);
                filter[bit / 64] |= 1 << (bit % 64);
                keyed.push((bucket_of(h), entry));
            }
        }
        // Stable: equal buckets and lengths keep list order.
        keyed.sort_by_key(|(b, e)| (*b, std::cmp::Reverse(e.len)));
        singles.sort_by_key(|(b, _)| *b);
        let mut starts = vec![0u32; BUCKETS + 1];
        for (b, _) in &keyed {
            starts[b + 1] += 1;
        }
        let mut single_starts = vec![0u32; 257];
        for (b, _) in &singles {
            single_starts[b + 1] += 1;
        }
        for i in 0..BUCKETS {
            starts[i + 1] += starts[i];
        }
        for i in 0..256 {
            single_starts[i + 1] += single_starts[i];
        }
        let many_pairs = first_pairs.iter().map(|w| w.count_ones() as usize).sum::<usize>() > FEW_PAIRS;
        PhraseIndex {
            first_pairs,
            many_pairs,
            filter,
            entries: keyed.into_iter().map(|(_, e)| e).collect(),
            starts,
            singles: singles.into_iter().map(|(_, e)| e).collect(),
            single_starts,
            bytes,
        }
    }

    /// The phrases that may start where the text reads `window`, in the order to try them: the
    /// longer ones (same start key; none when the filter says no phrase starts that way), then
    /// the one-byte ones.
    #[inline(always)]
    fn candidates(&self, window: u64) -> (&[Entry], &[Entry]) {
        let h = mix(start_key(window));
        let bit = filter_bit(h);
        let keyed: &[Entry] = if self.filter[bit / 64] & (1 << (bit % 64)) == 0 {
            &[]
        } else {
            let b = bucket_of(h);
            &self.entries[self.starts[b] as usize..self.starts[b + 1] as usize]
        };
        let b0 = window as u8 as usize;
        let singles = &self.singles[self.single_starts[b0] as usize..self.single_starts[b0 + 1] as usize];
        (keyed, singles)
    }

    /// Where `e` ends if it matches at byte `i` (`window` = the text's bytes from `i`), ending by
    /// `limit`, with the word-boundary rule.
    #[inline]
    fn match_end(&self, e: &Entry, bytes: &[u8], window: u64, i: usize, limit: usize) -> Option<usize> {
        let end = i + e.len as usize;
        if end > limit || window & e.mask != e.prefix {
            return None;
        }
        let p = &self.bytes[e.offset as usize..e.offset as usize + e.len as usize];
        if p.len() > 8 && bytes[i + 8..end] != p[8..] {
            return None;
        }
        let before = if i > 0 { bytes.get(i - 1) } else { None };
        if joins(p[0], before) || joins(p[p.len() - 1], bytes.get(end)) {
            return None;
        }
        Some(end)
    }

    /// The first candidate (the longest, then the earliest) matching at byte `i`.
    #[inline(always)]
    fn longest_at(&self, bytes: &[u8], i: usize, limit: usize) -> Option<(usize, usize)> {
        let window = load8(bytes, i);
        let (keyed, singles) = self.candidates(window);
        keyed
            .iter()
            .chain(singles)
            .find_map(|e| self.match_end(e, bytes, window, i, limit).map(|end| (e.phrase as usize, end)))
    }

    /// Calls `at` with every position in `from..end` whose first two bytes start a phrase and
    /// that is not inside a word (see [`inside_word`]), in order. `at` returns `None` to
    /// go on, `Some(p)` to skip the positions before `p` (the end of a match), or
    /// `Some(usize::MAX)` to stop.
    #[inline(always)]
    fn for_each_start(&self, bytes: &[u8], from: usize, end: usize, mut at: impl FnMut(usize) -> Option<usize>) {
        // Byte by byte, not character by character: the next position does not wait for the
        // length of this character to be looked up, and continuation bytes fail the pair test
        // (no phrase starts with one), so only char boundaries get further. With few pairs the
        // test almost always fails and a branch per byte is cheap; with many, a text passes it
        // often and unpredictably, so the positions are first gathered into a mask of sixty-four
        // without a branch per byte.
        let mut i = from;
        let mut next_free = from;
        if !self.many_pairs {
            while i < end {
                let pair = (bytes[i] as usize) << 8 | bytes.get(i + 1).map_or(0, |&b| b as usize);
                if self.first_pairs[pair / 64] & (1 << (pair % 64)) != 0 && !inside_word(bytes, i) {
                    match at(i) {
                        Some(usize::MAX) => return,
                        Some(next) if next > i => {
                            i = next;
                            continue;
                        }
                        _ => {}
                    }
                }
                i += 1;
            }
            return;
        }
        let mut block = [0u8; 72];
        while i < end {
            let n = (end - i).min(64);
            // The block and the byte after it (0 past the end of the text).
            let copy = (n + 1).min(bytes.len() - i);
            block[..copy].copy_from_slice(&bytes[i..i + copy]);
            block[copy..n + 1].fill(0);
            let mut mask = 0u64;
            for k in 0..n {
                let pair = (block[k] as usize) << 8 | block[k + 1] as usize;
                mask |= ((self.first_pairs[pair / 64] >> (pair % 64)) & 1) << k;
            }
            while mask != 0 {
                let pos = i + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                if pos < next_free || inside_word(bytes, pos) {
                    continue;
                }
                match at(pos) {
                    Some(usize::MAX) => return,
                    Some(next) => next_free = next,
                    None => {}
                }
            }
            i = (i + n).max(next_free);
        }
    }
}

/// Whether byte `i` is inside a word: an ASCII letter (digit) right after another letter (digit).
/// A phrase starting there would begin with that byte and fail the word-boundary rule.
#[inline(always)]
fn inside_word(bytes: &[u8], i: usize) -> bool {
    let class = WORD_CLASS[bytes[i] as usize];
    class != 0 && i > 0 && WORD_CLASS[bytes[i - 1] as usize] == class
}

impl PhraseSet {
    pub fn new<I, S>(phrases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let phrases: Vec<String> = phrases.into_iter().map(|p| normalize(p.as_ref())).collect();
        let locals: Vec<u32> = (0..phrases.len() as u32).collect();
        let index = PhraseIndex::new(&phrases, &vec![0; phrases.len()], &locals);
        let max_chars = phrases.iter().map(|p| p.chars().count()).max().unwrap_or(0);
        PhraseSet { phrases, index, max_chars }
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
        self.index
            .longest_at(norm.as_bytes(), norm_at, norm.len())
            .map(|(i, end)| Self::make_match(text, i, norm_at, end))
    }

    /// Every match in the whole text, in order.
    pub fn find_all(&self, text: &NormText<'_>) -> Vec<Match> {
        self.find_in(text, 0..text.as_str().len())
    }

    /// Every match lying inside the normalised byte range `range`, in order. Word boundaries are
    /// checked against the whole text, not the range.
    pub fn find_in(&self, text: &NormText<'_>, range: Range<usize>) -> Vec<Match> {
        let mut out = Vec::new();
        self.scan(text, range, |m| {
            out.push(m);
            true
        });
        out
    }

    /// The first match in the text, if any.
    pub fn find_first(&self, text: &NormText<'_>) -> Option<Match> {
        let mut first = None;
        self.scan(text, 0..text.as_str().len(), |m| {
            first = Some(m);
            false
        });
        first
    }

    /// Calls `found` with each match inside `range`, in order, while it returns true.
    fn scan(&self, text: &NormText<'_>, range: Range<usize>, mut found: impl FnMut(Match) -> bool) {
        if self.max_chars == 0 {
            return;
        }
        let bytes = text.as_str().as_bytes();
        let end = range.end.min(bytes.len());
        self.index.for_each_start(bytes, range.start, end, |i| {
            let (p, e) = self.index.longest_at(bytes, i, end)?;
            // Matches do not overlap: the next one starts at the end of this one.
            Some(if found(Self::make_match(text, p, i, e)) { e } else { usize::MAX })
        });
    }
}

/// The first match of one phrase (normalised here) in `text`: the same as
/// `PhraseSet::new([phrase]).find_first(text)`, without building a set, for phrases that come
/// with the sample (a data set's expected signs) rather than from the params.
pub fn find_phrase(text: &NormText<'_>, phrase: &str) -> Option<Match> {
    let p = normalize(phrase);
    let p = p.as_bytes();
    let (Some(&first), Some(&last)) = (p.first(), p.last()) else { return None };
    let bytes = text.as_str().as_bytes();
    let mut from = 0;
    while from + p.len() <= bytes.len() {
        // The phrase is valid UTF-8 starting with a lead byte, so any occurrence starts at a char
        // boundary of the text.
        let at = from + find_bytes(&bytes[from..], p)?;
        let end = at + p.len();
        let before = if at > 0 { bytes.get(at - 1) } else { None };
        if !joins(first, before) && !joins(last, bytes.get(end)) {
            return Some(PhraseSet::make_match(text, 0, at, end));
        }
        from = at + utf8_len(first);
    }
    None
}

/// The first occurrence of `needle` (not empty) in `hay`.
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(k) => i += k,
        }
        if &hay[i + 1..i + needle.len()] == rest {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Several phrase lists ("groups") matched in one pass over the text. Each group gets exactly the
/// matches `PhraseSet::new(group).find_all(text)` would give it (leftmost-longest, no overlaps
/// within the group; groups may overlap each other), with `Match::phrase` indexing into the
/// group. A rule that looks for twenty lists in a long answer pays for one scan, not twenty.
#[derive(Debug, Clone)]
pub struct PhraseGroups {
    index: PhraseIndex,
    groups: usize,
    /// True when no phrase of any group can match.
    empty: bool,
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
                all.push(normalize(phrase.as_ref()));
                group_of.push(g as u32);
                local.push(k as u32);
            }
            count = g + 1;
        }
        let empty = all.iter().all(String::is_empty);
        PhraseGroups { index: PhraseIndex::new(&all, &group_of, &local), groups: count, empty }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups
    }

    /// True when there are no groups.
    pub fn is_empty(&self) -> bool {
        self.groups == 0
    }

    /// The matches of every group, indexed like the groups passed to [`PhraseGroups::new`].
    pub fn find_all(&self, text: &NormText<'_>) -> Vec<Vec<Match>> {
        let mut out = vec![Vec::new(); self.groups];
        if self.empty {
            return out;
        }
        let bytes = text.as_str().as_bytes();
        let index = &self.index;
        // Where each group may match next: the end of its last match.
        let mut free_from = vec![0usize; self.groups];
        index.for_each_start(bytes, 0, bytes.len(), |i| {
            let window = load8(bytes, i);
            let (keyed, singles) = index.candidates(window);
            // Longest first within a group, so a group's first match here is its longest.
            for e in keyed.iter().chain(singles) {
                let g = e.group as usize;
                if free_from[g] > i {
                    continue;
                }
                if let Some(end) = index.match_end(e, bytes, window, i, bytes.len()) {
                    out[g].push(PhraseSet::make_match(text, e.phrase as usize, i, end));
                    free_from[g] = end;
                }
            }
            // Groups overlap each other: every later position is still looked at.
            None
        });
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

/// The bytes [`sentences`] stops at: a newline, `.`, `!`, `?`, and E3 and EF, the lead bytes of
/// 。 and of ！？；.
const SENTENCE_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\n' as usize] = true;
    t[b'.' as usize] = true;
    t[b'!' as usize] = true;
    t[b'?' as usize] = true;
    t[0xE3] = true;
    t[0xEF] = true;
    t
};

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
    let b = text.as_bytes();
    // The character at byte `k` (a char boundary before the end) and its length.
    let char_at = |k: usize| {
        let len = utf8_len(b[k]);
        (decode_char(b, k, len), len)
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        // Only a newline, . ! ? and the lead bytes of 。！？； (E3, EF) can end a sentence. Other
        // bytes are skipped one at a time: continuation bytes are never one of those, so every
        // byte that stops the skip is at a char boundary.
        while i < b.len() && !SENTENCE_BYTE[b[i] as usize] {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let ends = match b[i] {
            b'\n' => {
                push(text, start, i, &mut out);
                start = i + 1;
                i += 1;
                continue;
            }
            b'.' | b'!' | b'?' => {
                i += 1;
                i == b.len() || char_at(i).0.is_whitespace()
            }
            0xE3 | 0xEF => {
                let (c, len) = char_at(i);
                i += len;
                matches!(c, '。' | '！' | '？' | '；')
            }
            // Not reached: SENTENCE_BYTE holds only the bytes above.
            _ => {
                i += 1;
                continue;
            }
        };
        if ends {
            // Absorb following terminators and closing quotes into this sentence.
            while i < b.len() {
                let (n, len) = char_at(i);
                if !matches!(n, '。' | '！' | '？' | '!' | '?' | '”' | '"' | '’' | '」' | '』' | ')' | '）') {
                    break;
                }
                i += len;
            }
            push(text, start, i, &mut out);
            start = i;
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

impl<'t> NegationIndex<'t> {
    /// An index over cues already found in `text`, e.g. as two groups of a [`PhraseGroups`] scan
    /// that also looks for the phrases to check, so that the text is read once. `before` and
    /// `after` must be what `PhraseSet::find_all` gives for the cue lists (sorted, not
    /// overlapping); the index then answers exactly like [`Negation::index`] with those lists.
    pub fn from_matches(text: &'t NormText<'_>, before: Vec<Match>, after: Vec<Match>, window_chars: usize) -> Self {
        NegationIndex { norm: text.as_str(), before, after, window_chars }
    }
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
    let mut out = Vec::with_capacity(norm.len() / 3);
    match lang {
        Lang::Zh => for_each_zh_token(norm, |s, len, _| out.push(&norm[s..s + len])),
        Lang::En => for_each_en_token(norm, |s, e| out.push(&norm[s..e])),
    }
    out
}

/// Calls `f(start, len, char)` for each `zh` token of `norm` (one letter or digit), in order.
#[inline(always)]
fn for_each_zh_token(norm: &str, mut f: impl FnMut(usize, usize, u32)) {
    let b = norm.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let lead = b[i];
        if lead < 0x80 {
            if lead.is_ascii_alphanumeric() {
                f(i, 1, lead as u32);
            }
            i += 1;
        } else if (0xE5..=0xE9).contains(&lead) {
            // U+5000..=U+9FFF: CJK ideographs, letters all.
            f(i, 3, decode_char(b, i, 3) as u32);
            i += 3;
        } else {
            let len = utf8_len(lead);
            let c = decode_char(b, i, len);
            if is_word_char(c) {
                f(i, len, c as u32);
            }
            i += len;
        }
    }
}

/// Calls `f(start, end)` for each `en` token of `norm` (a word, or a CJK character), in order.
#[inline(always)]
fn for_each_en_token(norm: &str, mut f: impl FnMut(usize, usize)) {
    let b = norm.as_bytes();
    let mut i = 0;
    let mut word_start: Option<usize> = None;
    // A letter or digit that is not CJK, starting at byte `k` (a word continues with it).
    let word_char_at = |k: usize| match b.get(k) {
        None => false,
        Some(&c) if c < 0x80 => c.is_ascii_alphanumeric(),
        Some(&c) => {
            let ch = decode_char(b, k, utf8_len(c));
            is_word_char(ch) && !is_cjk(ch)
        }
    };
    while i < b.len() {
        let lead = b[i];
        if lead.is_ascii_alphanumeric() {
            // The common case: a run of ASCII letters and digits, all in the word.
            word_start.get_or_insert(i);
            i += 1;
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            continue;
        }
        let len = utf8_len(lead);
        let (in_word, cjk) = if lead < 0x80 {
            // An apostrophe between two word characters belongs to the word.
            let in_word = lead == b'\'' && word_start.is_some() && word_char_at(i + 1);
            (in_word, false)
        } else {
            let c = decode_char(b, i, len);
            let cjk = is_cjk(c);
            (!cjk && is_word_char(c), cjk)
        };
        if in_word {
            word_start.get_or_insert(i);
        } else {
            if let Some(s) = word_start.take() {
                f(s, i);
            }
            if cjk {
                f(i, i + len);
            }
        }
        i += len;
    }
    if let Some(s) = word_start {
        f(s, b.len());
    }
}

/// What [`token_stats`] finds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenStats {
    /// Number of [`tokens`].
    pub count: usize,
    /// Where token number `nth` (from 0) starts in the normalised text, when there is one.
    pub nth_start: Option<usize>,
    /// [`ngram_stats_of`] the tokens.
    pub ngrams: NgramStats,
}

/// The number of [`tokens`] of an already normalised text, where token `nth` starts, and
/// [`ngram_stats_of`] them, in one pass that numbers the tokens as it finds them instead of
/// collecting them: the same figures as `tokens` and `ngram_stats_of`, for less work.
pub fn token_stats(norm: &str, lang: Lang, n: usize, nth: usize) -> TokenStats {
    let mut ids: Vec<u32> = Vec::with_capacity(norm.len() / 3);
    let mut nth_start = None;
    match lang {
        Lang::Zh => for_each_zh_token(norm, |s, _, c| {
            if ids.len() == nth {
                nth_start = Some(s);
            }
            ids.push(c);
        }),
        Lang::En => {
            let mut words = WordNumbers::default();
            let mut spans: Vec<(u32, u32)> = Vec::with_capacity(norm.len() / 4);
            for_each_en_token(norm, |s, e| {
                if ids.len() == nth {
                    nth_start = Some(s);
                }
                spans.push((s as u32, e as u32));
                ids.push(words.number(norm, s, e));
            });
            if words.gave_up {
                let toks: Vec<&str> = spans.iter().map(|&(s, e)| &norm[s as usize..e as usize]).collect();
                ids = number_words_by_sorting(&toks);
            }
        }
    }
    TokenStats { count: ids.len(), nth_start, ngrams: ngram_stats_of_ids(&ids, n) }
}

/// Numbers words as they come (0, 1, 2, … in order of first occurrence) in an open-addressing
/// table that grows as needed. Gives up (`gave_up`) when collisions pile up past
/// [`PROBE_BUDGET_PER_KEY`] probes per word, so that no input costs more than a sort.
#[derive(Default)]
struct WordNumbers {
    /// Each slot: a word's number plus one, 0 for empty.
    slots: Vec<u32>,
    /// For each number: the word's hash and its first span.
    hashes: Vec<u64>,
    firsts: Vec<(u32, u32)>,
    budget: usize,
    gave_up: bool,
}

impl WordNumbers {
    fn number(&mut self, norm: &str, s: usize, e: usize) -> u32 {
        if self.gave_up {
            return 0;
        }
        self.budget += PROBE_BUDGET_PER_KEY;
        let b = norm.as_bytes();
        let word = &b[s..e];
        let h = span_hash(b, s, e);
        if (self.hashes.len() + 1) * 3 > self.slots.len() * 2 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = (h >> (64 - self.slots.len().trailing_zeros())) as usize;
        loop {
            match self.slots[at] {
                0 => {
                    let id = self.hashes.len() as u32;
                    self.slots[at] = id + 1;
                    self.hashes.push(h);
                    self.firsts.push((s as u32, e as u32));
                    return id;
                }
                slot => {
                    let id = (slot - 1) as usize;
                    let (fs, fe) = self.firsts[id];
                    if self.hashes[id] == h && fe - fs == (e - s) as u32 {
                        let same = if e - s <= 8 {
                            // One masked load each: no call to compare a short word.
                            let word_bytes = u64::MAX >> (64 - 8 * (e - s));
                            (load8(b, fs as usize) ^ load8(b, s)) & word_bytes == 0
                        } else {
                            &b[fs as usize..fe as usize] == word
                        };
                        if same {
                            return id as u32;
                        }
                    }
                }
            }
            if self.budget == 0 {
                self.gave_up = true;
                return 0;
            }
            self.budget -= 1;
            at = (at + 1) & mask;
        }
    }

    /// Doubles the table (at least 64 slots) and puts every word back.
    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(64);
        let shift = 64 - cap.trailing_zeros();
        self.slots = vec![0; cap];
        for (id, &h) in self.hashes.iter().enumerate() {
            let mut at = (h >> shift) as usize;
            while self.slots[at] != 0 {
                at = (at + 1) & (cap - 1);
            }
            self.slots[at] = id as u32 + 1;
        }
    }
}

/// A fixed hash of a word's bytes (deterministic: no random state).
#[inline]
fn word_hash(b: &[u8]) -> u64 {
    span_hash(b, 0, b.len())
}

/// [`word_hash`] of `b[s..e]`, reading `b` eight bytes at a time (bytes past `e` are masked off).
#[inline(always)]
fn span_hash(b: &[u8], s: usize, e: usize) -> u64 {
    let mut h = ((e - s) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut k = s;
    while k + 8 <= e {
        h = (h ^ load8(b, k)).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29);
        k += 8;
    }
    if k < e {
        let tail = load8(b, k) & (u64::MAX >> (64 - 8 * (e - k)));
        h = (h ^ tail).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(29);
    }
    mix64(h)
}

/// A letter or digit (`char::is_alphanumeric`), with the common ASCII and CJK cases answered
/// without a Unicode table lookup.
fn is_word_char(c: char) -> bool {
    match c as u32 {
        0..=0x7F => c.is_ascii_alphanumeric(),
        0x3400..=0x4DBF | 0x4E00..=0x9FFF => true,
        // General punctuation (quotes, dashes, …) and CJK compatibility forms.
        0x2000..=0x206F | 0xFE30..=0xFE4F => false,
        // Full-width punctuation (outside normalised text, which folds it to ASCII).
        0xFF00..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65 => false,
        // CJK symbols and punctuation (。、【】「」…): the bits of the few letters and numerals
        // among them (々, 〇, the Hangzhou numerals, …).
        x @ 0x3000..=0x303F => (0x1f3e_03fe_0000_00e0u64 >> (x - 0x3000)) & 1 != 0,
        _ => c.is_alphanumeric(),
    }
}

/// Number of [`tokens`] in `text` (normalised first): Chinese characters for `zh`, words for `en`.
pub fn count_tokens(text: &str, lang: Lang) -> usize {
    tokens(&normalize(text), lang).len()
}

/// The low bit and the high bit of each byte of a 64-bit word.
const LO_BITS: u64 = 0x0101_0101_0101_0101;
const HI_BITS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` equal to `b`.
#[inline(always)]
fn byte_eq_mask(w: u64, b: u8) -> u64 {
    let x = w ^ (LO_BITS * b as u64);
    !(((x & !HI_BITS).wrapping_add(!HI_BITS)) | x | !HI_BITS)
}

/// For eight ASCII bytes (high bits clear): the high bit of each that is horizontal whitespace
/// (\t, \x0b, \x0c, \r or a space).
#[inline(always)]
fn ascii_hspace_mask(w: u64) -> u64 {
    let ge = |lo: u8| (w | HI_BITS).wrapping_sub(LO_BITS * lo as u64) & HI_BITS;
    let controls = ge(0x09) & !ge(0x0E) & !byte_eq_mask(w, b'\n');
    controls | byte_eq_mask(w, b' ')
}

/// For eight ASCII bytes (high bits clear): the high bit of each byte that is an ASCII letter or
/// digit.
#[inline]
fn ascii_alnum_mask(w: u64) -> u64 {
    // High bit set where the byte is >= `lo` (bytes below 0x80, `lo` at most 0x80).
    let ge = |lo: u8| (w | HI_BITS).wrapping_sub(LO_BITS * lo as u64) & HI_BITS;
    let digit = ge(b'0') & !ge(b'9' + 1);
    let upper = ge(b'A') & !ge(b'Z' + 1);
    let lower = ge(b'a') & !ge(b'z' + 1);
    digit | upper | lower
}

/// Number of letters and digits in `s` (whitespace, punctuation and symbols do not count).
pub fn count_content_chars(s: &str) -> usize {
    let b = s.as_bytes();
    let (mut n, mut i) = (0, 0);
    while i < b.len() {
        if i + 8 <= b.len() {
            let w = load8(b, i);
            if w & HI_BITS == 0 {
                // Eight ASCII bytes at once.
                n += ascii_alnum_mask(w).count_ones() as usize;
                i += 8;
                continue;
            }
        }
        if b[i] < 0x80 {
            n += b[i].is_ascii_alphanumeric() as usize;
            i += 1;
        } else if (0xE5..=0xE9).contains(&b[i]) {
            // U+5000..=U+9FFF: CJK ideographs, letters all.
            n += 1;
            i += 3;
        } else {
            let len = utf8_len(b[i]);
            n += is_word_char(decode_char(b, i, len)) as usize;
            i += len;
        }
    }
    n
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
    // character, its code point is its number; English words are numbered exactly (equal words,
    // equal numbers), from 0 up.
    let ids: Vec<u32> = match lang {
        Lang::Zh => toks.iter().map(|t| t.chars().next().map_or(0, |c| c as u32)).collect(),
        Lang::En => number_words(toks),
    };
    ngram_stats_of_ids(&ids, n)
}

/// [`NgramStats`] of a sequence of token numbers (equal tokens, equal numbers).
fn ngram_stats_of_ids(ids: &[u32], n: usize) -> NgramStats {
    if n == 0 || ids.len() < n {
        return NgramStats { total: 0, distinct: 0 };
    }
    let total = ids.len() - n + 1;
    let max_id = ids.iter().copied().max().unwrap_or(0);
    let bits = (32 - max_id.leading_zeros()).max(1) as usize;
    // Pack each n-gram into one integer key when it fits (Chinese 4-grams of BMP characters fit
    // 64 bits, English 3-grams too), rolling the window one token at a time, and count the
    // distinct keys.
    let distinct = if bits * n <= 64 {
        let mask = if bits * n == 64 { u64::MAX } else { (1u64 << (bits * n)) - 1 };
        let keys = || {
            let mut key = 0u64;
            ids.iter().enumerate().filter_map(move |(i, &id)| {
                key = ((key << bits) | id as u64) & mask;
                (i + 1 >= n).then_some(key)
            })
        };
        count_distinct(total, keys, u64::hash)
    } else if bits * n <= 128 {
        let mask = if bits * n == 128 { u128::MAX } else { (1u128 << (bits * n)) - 1 };
        let keys = || {
            let mut key = 0u128;
            ids.iter().enumerate().filter_map(move |(i, &id)| {
                key = ((key << bits) | id as u128) & mask;
                (i + 1 >= n).then_some(key)
            })
        };
        count_distinct(total, keys, u128::hash)
    } else {
        let gram = |start: usize| &ids[start..start + n];
        let mut starts: Vec<usize> = (0..total).collect();
        starts.sort_unstable_by(|&a, &b| gram(a).cmp(gram(b)));
        1 + starts.windows(2).filter(|w| gram(w[0]) != gram(w[1])).count()
    };
    NgramStats { total, distinct }
}

/// A fixed 64-bit finaliser (MurmurHash3's fmix64): every input bit affects every output bit, and
/// no state is random, so counts built on it are deterministic.
#[inline]
fn mix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Probes an open-addressing table may spend per key on average before the caller gives up on
/// hashing and sorts instead, so that no input (however its keys collide) costs more than a sort.
const PROBE_BUDGET_PER_KEY: usize = 8;

/// A key type for [`count_distinct`]: an integer with a value set aside to mark empty slots.
trait Key: Copy + Ord {
    const EMPTY: Self;
    fn hash(self) -> u64;
}

impl Key for u64 {
    const EMPTY: u64 = u64::MAX;
    fn hash(self) -> u64 {
        mix64(self)
    }
}

impl Key for u128 {
    const EMPTY: u128 = u128::MAX;
    fn hash(self) -> u64 {
        mix64(self as u64 ^ mix64((self >> 64) as u64))
    }
}

/// Number of distinct values among the `len` (at least one) that `keys()` yields. Counts them in
/// an open-addressing table (linear in the keys for any sane input); if collisions pile up past
/// [`PROBE_BUDGET_PER_KEY`] it sorts them instead. Either way the answer is exact.
fn count_distinct<K: Key, I: Iterator<Item = K>>(len: usize, keys: impl Fn() -> I, hash: impl Fn(K) -> u64) -> usize {
    // At most two thirds full.
    let cap = (len + len / 2 + 1).next_power_of_two().max(16);
    let shift = 64 - cap.trailing_zeros();
    let mut slots: Vec<K> = vec![K::EMPTY; cap];
    let mut budget = len * PROBE_BUDGET_PER_KEY;
    // The one value that cannot go in the table is counted on the side.
    let mut saw_empty = false;
    let mut distinct = 0;
    'keys: for k in keys() {
        if k == K::EMPTY {
            saw_empty = true;
            continue;
        }
        let mut s = (hash(k) >> shift) as usize;
        loop {
            let here = slots[s];
            if here == K::EMPTY {
                slots[s] = k;
                distinct += 1;
                continue 'keys;
            }
            if here == k {
                continue 'keys;
            }
            if budget == 0 {
                let mut all: Vec<K> = keys().collect();
                all.sort_unstable();
                return 1 + all.windows(2).filter(|w| w[0] != w[1]).count();
            }
            budget -= 1;
            s = (s + 1) & (cap - 1);
        }
    }
    distinct + saw_empty as usize
}

/// Numbers words exactly (equal words, equal numbers; 0, 1, 2, … in order of first occurrence),
/// through an open-addressing table keyed by a hash of the word; if collisions pile up it numbers
/// them by sorting instead.
fn number_words(toks: &[&str]) -> Vec<u32> {
    let hash = |t: &str| word_hash(t.as_bytes());
    let cap = (toks.len() + toks.len() / 2 + 1).next_power_of_two().max(16);
    let shift = 64 - cap.trailing_zeros();
    // Each slot: the index of the first token with that word, and its number.
    let mut slots: Vec<Option<(u32, u32)>> = vec![None; cap];
    let mut budget = toks.len() * PROBE_BUDGET_PER_KEY;
    let mut ids = Vec::with_capacity(toks.len());
    let mut next = 0u32;
    'toks: for (i, t) in toks.iter().enumerate() {
        let mut s = (hash(t) >> shift) as usize;
        loop {
            match slots[s] {
                None => {
                    slots[s] = Some((i as u32, next));
                    ids.push(next);
                    next += 1;
                    continue 'toks;
                }
                Some((first, id)) if toks[first as usize] == *t => {
                    ids.push(id);
                    continue 'toks;
                }
                Some(_) => {
                    if budget == 0 {
                        return number_words_by_sorting(toks);
                    }
                    budget -= 1;
                    s = (s + 1) & (cap - 1);
                }
            }
        }
    }
    ids
}

/// [`number_words`] by sorting: numbers by rank, 0 up, exact.
fn number_words_by_sorting(toks: &[&str]) -> Vec<u32> {
    let mut order: Vec<usize> = (0..toks.len()).collect();
    order.sort_unstable_by(|&a, &b| toks[a].cmp(toks[b]));
    let mut ids = vec![0u32; toks.len()];
    let mut id = 0u32;
    for k in 1..order.len() {
        if toks[order[k]] != toks[order[k - 1]] {
            id += 1;
        }
        ids[order[k]] = id;
    }
    ids
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

    /// The offset maps as first written: one entry per byte of each text, built character by
    /// character. `NormText` keeps them in pieces; both must agree on every offset.
    fn reference_maps(original: &str) -> (String, Vec<usize>, Vec<usize>) {
        let mut norm = String::new();
        let mut norm_to_orig = Vec::new();
        let mut orig_to_norm = vec![0usize; original.len() + 1];
        let mut in_space = false;
        for (i, c) in original.char_indices() {
            let at = norm.len();
            let folded = fold_width(c);
            if is_hspace(folded) {
                if in_space {
                    orig_to_norm[i..i + c.len_utf8()].fill(at - 1);
                    continue;
                }
                in_space = true;
                norm.push(' ');
            } else {
                in_space = false;
                norm.extend(folded.to_lowercase());
            }
            orig_to_norm[i..i + c.len_utf8()].fill(at);
            norm_to_orig.resize(norm.len(), i);
        }
        norm_to_orig.push(original.len());
        orig_to_norm[original.len()] = norm.len();
        (norm, norm_to_orig, orig_to_norm)
    }

    #[test]
    fn word_masks_match_bytes() {
        for b in 0..128u8 {
            for k in 0..8 {
                let mut bytes = [b'a'; 8];
                bytes[k] = b;
                let w = u64::from_le_bytes(bytes);
                let bit = |yes: bool| if yes { 0x80u64 << (8 * k) } else { 0 };
                let hs = |c: u8| (c as char) != '\n' && (c as char).is_whitespace();
                let others: u64 = (0..8).filter(|&j| j != k && hs(b'a')).map(|j| 0x80u64 << (8 * j)).sum();
                assert_eq!(ascii_hspace_mask(w), bit(hs(b)) | others, "byte {b} at {k}");
                assert_eq!(byte_eq_mask(w, b' '), bit(b == b' '), "byte {b} at {k}");
                let alnum: u64 = (0..8).filter(|&j| j != k).map(|j| 0x80u64 << (8 * j)).sum();
                assert_eq!(ascii_alnum_mask(w), alnum | bit(b.is_ascii_alphanumeric()), "byte {b} at {k}");
            }
        }
    }

    #[test]
    fn piecewise_maps_match_the_per_byte_maps() {
        let pieces = [
            "a",
            "A",
            " ",
            "  ",
            "\t",
            " \t\r",
            "\n",
            "\x0b",
            "\u{a0}",
            "\u{3000}",
            "\u{2003}",
            "\u{85}",
            "急",
            "诊",
            "【",
            "】",
            "。",
            "，",
            "（",
            "ＡＢ",
            "１２０",
            "É",
            "İ",
            "ẞ",
            "Σ",
            "ß",
            "’",
            "😀",
            "𠀀",
            "Ω",
            "ﬀ",
            "ǅ",
            "x1",
            "Call 911",
            "Don’t",
            "\u{1680}",
            "ﾊ",
            "ｶ",
            "\u{2028}",
            "Assessment: Take 2 TABLETS\tdaily",
            "abcdefgh ",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
            " x  y\r\nz",
            "long words without double spaces at all",
        ];
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut texts: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
        texts.push(String::new());
        for _ in 0..3000 {
            let mut t = String::new();
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            for k in 0..(rng % 12) {
                t.push_str(pieces[((rng >> (k * 5)) % pieces.len() as u64) as usize]);
            }
            texts.push(t);
        }
        for text in &texts {
            let t = NormText::new(text);
            let (norm, n2o, o2n) = reference_maps(text);
            assert_eq!(t.as_str(), norm, "{text:?}");
            for (x, &want) in n2o.iter().enumerate() {
                assert_eq!(t.to_orig(x), want, "norm offset {x} of {text:?}");
            }
            for (y, &want) in o2n.iter().enumerate() {
                assert_eq!(t.to_norm(y), want, "offset {y} of {text:?}");
            }
        }
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

    /// Leftmost-longest matching done the obvious way: at every char boundary, every phrase.
    fn reference_find_all(phrases: &[&str], text: &NormText<'_>) -> Vec<(usize, usize, usize)> {
        let norm = text.as_str();
        let b = norm.as_bytes();
        let phrases: Vec<String> = phrases.iter().map(|p| normalize(p)).collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < norm.len() {
            let mut best: Option<(usize, usize)> = None;
            for (k, p) in phrases.iter().enumerate() {
                let pb = p.as_bytes();
                if pb.is_empty() || !norm[i..].starts_with(p.as_str()) {
                    continue;
                }
                let end = i + pb.len();
                let before = if i > 0 { b.get(i - 1) } else { None };
                if joins(pb[0], before) || joins(pb[pb.len() - 1], b.get(end)) {
                    continue;
                }
                if best.is_none_or(|(_, e)| end > e) {
                    best = Some((k, end));
                }
            }
            match best {
                Some((k, end)) => {
                    out.push((k, i, end));
                    i = end;
                }
                None => i += norm[i..].chars().next().map_or(1, char::len_utf8),
            }
        }
        out
    }

    #[test]
    fn phrase_sets_match_the_obvious_matcher() {
        let vocab = [
            "a",
            "b",
            "ab",
            "ba",
            "abc",
            "mg",
            "g",
            "120",
            "打120",
            "拨打120",
            "急诊",
            "急",
            "诊科",
            "the er",
            "er",
            "#",
            "##",
            "## 分析",
            "【分析】",
            "分析",
            " ",
            "a b",
            "1",
            "12",
            "x1",
            "1x",
            "don't",
            "'",
            "不要",
            "不",
            "要",
            "abcdefghij",
            "abcdefghik",
            "(",
            "(第",
            "é",
            "𠀀",
            "𠀀a",
            "每日",
            "日",
            "/日",
            "/",
            "q6h",
            "6",
        ];
        let texts = [
            "a",
            "b",
            " ",
            "ab",
            "abc",
            "120",
            "1200",
            "打",
            "拨打",
            "急诊科",
            "the",
            "er",
            "error",
            "#",
            "【分析】",
            "分析",
            "x",
            "1",
            "2",
            "don't",
            "'",
            "不要",
            "要",
            "abcdefghij",
            "abcdefghik",
            "(",
            "第",
            "é",
            "𠀀",
            "每日",
            "/",
            "q6h",
            "mg",
            "g",
            ",",
            "。",
            "\n",
            "Ａ",
        ];
        let mut rng = 0xDEAD_BEEF_CAFE_F00Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..1500 {
            let phrases: Vec<&str> =
                (0..1 + next() % 8).map(|_| vocab[(next() % vocab.len() as u64) as usize]).collect();
            let set = PhraseSet::new(&phrases);
            let groups = PhraseGroups::new([phrases.clone(), vec!["a", "急"], phrases.clone()]);
            for _ in 0..6 {
                let text: String = (0..next() % 30)
                    .map(|_| texts[(next() % texts.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .concat();
                let t = NormText::new(&text);
                let want = reference_find_all(&phrases, &t);
                let got: Vec<(usize, usize, usize)> =
                    set.find_all(&t).iter().map(|m| (m.phrase, m.norm_start, m.norm_end)).collect();
                // Equal lengths: the earliest phrase in the list wins, as in the reference.
                assert_eq!(got, want, "{phrases:?} in {text:?}");
                let g = groups.find_all(&t);
                let got0: Vec<(usize, usize, usize)> =
                    g[0].iter().map(|m| (m.phrase, m.norm_start, m.norm_end)).collect();
                assert_eq!(got0, want, "group of {phrases:?} in {text:?}");
                assert_eq!(g[0], g[2]);
                assert_eq!(set.find_first(&t).map(|m| (m.phrase, m.norm_start, m.norm_end)), want.first().copied());
                // Ranges: the matches inside a window, boundaries judged on the whole text.
                let norm = t.as_str();
                let cut = (0..=norm.len()).filter(|&k| norm.is_char_boundary(k)).nth((next() % 5) as usize);
                if let Some(cut) = cut {
                    let inside: Vec<Match> = set.find_in(&t, cut..norm.len());
                    for m in &inside {
                        assert!(m.norm_start >= cut);
                    }
                }
                for phrase in &phrases {
                    let one = PhraseSet::new([phrase]).find_first(&t);
                    assert_eq!(find_phrase(&t, phrase), one, "{phrase:?} in {text:?}");
                }
            }
        }
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

    /// `sentences` as first written, character by character.
    fn reference_sentences(text: &str) -> Vec<(usize, usize)> {
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

    #[test]
    fn sentences_and_counts_match_the_obvious_versions() {
        let pieces = [
            "先休息",
            "。",
            "！",
            "？",
            "；",
            ".",
            "!",
            "?",
            " ",
            "\n",
            "”",
            "\"",
            "’",
            "」",
            "』",
            ")",
            "）",
            "3.5",
            "e.g.x",
            "\u{3000}",
            "\u{a0}",
            "ok",
            "Take",
            "，",
            "、",
            "々",
            "Ａ",
            "【",
            "】",
            "\u{85}",
            "𠀀",
            "é",
            "\t",
        ];
        let mut rng = 0x1234_5678_9ABC_DEF1u64;
        for _ in 0..4000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut text = String::new();
            let mut r = rng;
            for _ in 0..(rng % 40) {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                text.push_str(pieces[(r >> 33) as usize % pieces.len()]);
            }
            assert_eq!(sentences(&text), reference_sentences(&text), "{text:?}");
            assert_eq!(count_content_chars(&text), text.chars().filter(|c| c.is_alphanumeric()).count(), "{text:?}");
        }
    }

    #[test]
    fn sentences_map_to_normalised_ranges() {
        let t = NormText::new("Ａ。Ｂ！");
        let norm: Vec<&str> = t.sentences_norm().into_iter().map(|r| &t.as_str()[r]).collect();
        assert_eq!(norm, vec!["a。", "b!"]);
    }

    #[test]
    fn word_chars_are_the_alphanumeric_ones() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(is_word_char(c), c.is_alphanumeric(), "{c:?} U+{:04X}", c as u32);
        }
        let mixed = "Ａ1【建议】々〇、ok—“x”é\u{2070}";
        assert_eq!(count_content_chars(mixed), mixed.chars().filter(|c| c.is_alphanumeric()).count());
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

    /// `tokens` as first written, character by character.
    fn reference_tokens(norm: &str, lang: Lang) -> Vec<&str> {
        let mut out = Vec::new();
        match lang {
            Lang::Zh => {
                for (i, c) in norm.char_indices() {
                    if c.is_alphanumeric() {
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
                    } else if c.is_alphanumeric() {
                        true
                    } else if c == '\'' {
                        word_start.is_some() && chars.peek().is_some_and(|&(_, n)| n.is_alphanumeric() && !is_cjk(n))
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

    /// Distinct n-grams counted the slow, obvious way.
    fn reference_distinct(toks: &[&str], n: usize) -> usize {
        let grams: std::collections::BTreeSet<&[&str]> = toks.windows(n).collect();
        grams.len()
    }

    fn random_texts(count: usize, seed: u64) -> Vec<String> {
        let pieces = [
            "头",
            "痛",
            "头痛",
            "多喝水",
            "a",
            "b",
            "ab",
            "don't",
            "'",
            "x'",
            "'y",
            "1",
            "22",
            " ",
            "，",
            "。",
            "䷀",
            "㐀",
            "𠀀",
            "é",
            "ǅ",
            "rest",
            "and",
            "Rest",
            "water",
            "-",
            "\n",
            "它",
            "\u{4dc0}",
            "ｂ",
            "\u{2070}",
            "々",
        ];
        let mut rng = seed;
        (0..count)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let len = (rng % 60) as usize;
                let mut t = String::new();
                let mut r = rng;
                for _ in 0..len {
                    r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    t.push_str(pieces[(r >> 33) as usize % pieces.len()]);
                }
                t
            })
            .collect()
    }

    #[test]
    fn tokens_and_ngrams_match_the_obvious_versions() {
        for text in random_texts(3000, 0x9E37_79B9_7F4A_7C15) {
            let norm = normalize(&text);
            for lang in [Lang::Zh, Lang::En] {
                let toks = tokens(&norm, lang);
                assert_eq!(toks, reference_tokens(&norm, lang), "{lang:?} {text:?}");
                for n in 0..7 {
                    let want = if n == 0 || toks.len() < n { 0 } else { reference_distinct(&toks, n) };
                    assert_eq!(ngram_stats_of(&toks, lang, n).distinct, want, "{lang:?} n={n} {text:?}");
                    let nth = n * 3;
                    let stats = token_stats(&norm, lang, n, nth);
                    assert_eq!(stats.count, toks.len());
                    assert_eq!(stats.ngrams, ngram_stats_of(&toks, lang, n), "{lang:?} n={n} {text:?}");
                    let want_start = toks.get(nth).map(|t| t.as_ptr() as usize - norm.as_ptr() as usize);
                    assert_eq!(stats.nth_start, want_start);
                }
            }
        }
        // Many distinct words: ids need more bits, so long n-grams take the u128 and slice paths.
        let words: Vec<String> = (0..5000).map(|i| format!("w{}", i % 1700)).collect();
        let toks: Vec<&str> = words.iter().map(String::as_str).collect();
        let text = words.join(" ");
        for n in [1, 3, 5, 6, 12, 13] {
            assert_eq!(ngram_stats_of(&toks, Lang::En, n).distinct, reference_distinct(&toks, n), "n={n}");
            assert_eq!(token_stats(&text, Lang::En, n, 0).ngrams, ngram_stats_of(&toks, Lang::En, n), "n={n}");
        }
    }

    #[test]
    fn hash_counting_falls_back_to_sorting_when_keys_collide() {
        let mut keys: Vec<u64> = (0..500u64).map(|i| i % 137).collect();
        keys.push(u64::MAX);
        // Every key in the same slot: the probe budget runs out and sorting gives the count.
        assert_eq!(count_distinct(keys.len(), || keys.iter().copied(), |_| 0), 138);
        assert_eq!(count_distinct(keys.len(), || keys.iter().copied(), mix64), 138);
        let wide = [u128::MAX, 0, u128::MAX, 1 << 100];
        assert_eq!(count_distinct(wide.len(), || wide.iter().copied(), u128::hash), 3);
        let toks = ["b", "a", "b", "c", "a"];
        assert_eq!(number_words(&toks), vec![0, 1, 0, 2, 1]);
        assert_eq!(number_words_by_sorting(&toks), vec![1, 0, 1, 2, 0]);
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
