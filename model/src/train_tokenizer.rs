//! Training the byte-level BPE tokenizer of the tiny model on the shipped corpus.
//!
//! The result is an ordinary Hugging Face `tokenizer.json` laid out as Qwen2's is: NFC
//! normalisation, a regex split into words, byte-level mapping (so every UTF-8 text, Chinese
//! included, has an encoding and decodes back exactly), BPE merges, byte-level decoding; the
//! special tokens are added after the learned vocabulary, as Qwen's are.
//!
//! Training is deterministic: the trainer's alphabet is sorted and ties between equally frequent
//! pairs are broken by pair id, so the same texts give the same merges whatever the hash seeds or
//! the thread count (the unit test trains twice and compares the JSON).

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::{NormalizerWrapper, unicode::NFC};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// How text is cut into words before BPE: English contractions, a run of letters with at most
/// one leading non-letter (a space or punctuation mark, as GPT-style tokenizers do), single digits
/// (so doses like "0.25 mg" split the same way wherever they occur), runs of other symbols with
/// their trailing newlines, newlines, and whitespace. A run of Chinese characters is one "word";
/// BPE learns its frequent sub-words.
pub const SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug, thiserror::Error)]
#[error("training the tokenizer failed: {msg}")]
pub struct TrainError {
    pub msg: String,
}

fn train_error(e: impl std::fmt::Display) -> TrainError {
    TrainError { msg: e.to_string() }
}

/// Trains a byte-level BPE tokenizer of `vocab_size` tokens in all: the learned vocabulary
/// (256 byte symbols and merges) followed by `special_tokens`, in that order.
pub fn train_byte_level_bpe<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
    special_tokens: &[&str],
) -> Result<Tokenizer, TrainError> {
    let learned = vocab_size.checked_sub(special_tokens.len()).filter(|&n| n > 256).ok_or_else(|| {
        train_error(format!(
            "vocab_size {vocab_size} leaves no room for merges beyond the 256 byte symbols and {} special tokens",
            special_tokens.len()
        ))
    })?;
    let split = Split::new(SplitPattern::Regex(SPLIT_PATTERN.into()), SplitDelimiterBehavior::Isolated, false).map_err(train_error)?;
    // The split already cut words; byte-level only maps bytes to symbols (use_regex = false).
    let byte_level = ByteLevel::new(false, false, false);
    let pre = Sequence::new(vec![PreTokenizerWrapper::Split(split), PreTokenizerWrapper::ByteLevel(byte_level)]);
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer
        .with_normalizer(Some(NormalizerWrapper::NFC(NFC)))
        .map_err(train_error)?
        .with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)))
        .with_post_processor(Some(PostProcessorWrapper::ByteLevel(byte_level)))
        .with_decoder(Some(DecoderWrapper::ByteLevel(byte_level)));
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(learned)
        .min_frequency(2)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::from(trainer);
    tokenizer.train(&mut trainer, texts).map_err(train_error)?;
    let trained = tokenizer.get_vocab_size(false);
    if trained != learned {
        // The corpus ran out of pairs seen twice before the vocabulary filled up.
        return Err(train_error(format!(
            "the corpus yields only {trained} tokens, fewer than the {learned} asked for; give it more text or lower vocab_size"
        )));
    }
    let specials: Vec<AddedToken> = special_tokens.iter().map(|t| AddedToken::from(*t, true)).collect();
    tokenizer.add_special_tokens(specials).map_err(train_error)?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXTS: [&str; 6] = [
        "胸痛持续不缓解时请立即拨打120。",
        "胸痛伴出冷汗，请立即就医。",
        "Chest pain that does not ease needs the emergency department.",
        "Chest pain with sweating: call 911.",
        "不要自行服用抗生素。Do not take antibiotics without a prescription.",
        "每次 0.5 mg，每日 3 次。",
    ];

    fn train() -> Tokenizer {
        let texts = TEXTS.iter().cycle().take(60).copied();
        train_byte_level_bpe(texts, 300, &["<|endoftext|>", "<|im_start|>", "<|im_end|>"]).unwrap()
    }

    #[test]
    fn training_is_deterministic_and_specials_come_last() {
        let a = train();
        let b = train();
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
        assert_eq!(a.get_vocab_size(true), 300);
        assert_eq!(a.token_to_id("<|endoftext|>"), Some(297));
        assert_eq!(a.token_to_id("<|im_end|>"), Some(299));
        // Saved and reloaded as a tokenizer.json, it encodes the same.
        let reloaded = Tokenizer::from_bytes(a.to_string(false).unwrap()).unwrap();
        let text = "胸痛请立即就医 chest pain";
        assert_eq!(a.encode(text, false).unwrap().get_ids(), reloaded.encode(text, false).unwrap().get_ids());
    }

    #[test]
    fn the_split_keeps_digits_single_and_words_whole() {
        let tok = train();
        let enc = tok.encode("Take 120 mg", false).unwrap();
        let tokens = enc.get_tokens().join("|");
        // Ġ is the byte-level symbol of a space.
        assert!(tokens.contains("1|2|0"), "{tokens}");
    }

    #[test]
    fn a_vocabulary_too_small_for_the_bytes_is_refused() {
        let err = train_byte_level_bpe(TEXTS.iter().copied(), 200, &["<|im_end|>"]).unwrap_err().to_string();
        assert!(err.contains("leaves no room"), "{err}");
        let err = train_byte_level_bpe(TEXTS.iter().copied(), 100_000, &[]).unwrap_err().to_string();
        assert!(err.contains("fewer than the"), "{err}");
    }
}
