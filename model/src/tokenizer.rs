//! The tokenizer of a model folder: `tokenizer.json` (Hugging Face `tokenizers`, run offline with a
//! pure-Rust regex engine), the special tokens of `tokenizer_config.json`, the stop tokens of
//! `generation_config.json`, and the chat template (see [`super::chat`]).
//!
//! Special tokens are resolved once, at load, into ids the sampler and the trainer use:
//! - `eos` ends an answer; the sampler stops a row on it (and on any other id of
//!   `generation_config.json`'s `eos_token_id`, which may be a list).
//! - `pad` fills left-padded prompts and finished rows. It must differ from `eos`: with pad = EOS a
//!   trainer that looks for "the real last token" by id cannot tell an answer that ended from
//!   padding ("The N implementation details of RLHF with PPO", detail on pad ≠ EOS). Base models
//!   often ship pad = EOS or no pad at all; then the first other special token is used and a warning
//!   names it (its id is never attended to: the masks say which positions are real).
//! - `bos` is optional (Qwen has none); templates that want it write `{{ bos_token }}` themselves.

use super::chat::{ChatTemplate, Message};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Everything that can go wrong loading or using a tokenizer or its chat template.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "the model folder {dir} has no {file}; a model folder needs tokenizer.json and tokenizer_config.json beside config.json (make one with `medrl model init`)"
    )]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{path} is not a tokenizer the `tokenizers` crate can load: {msg}")]
    Load { path: PathBuf, msg: String },
    #[error("{path}: `{field}` must be a string or an object with a `content` string, found {found}")]
    BadSpecialToken { path: PathBuf, field: &'static str, found: String },
    #[error("{path} names no `eos_token`; set it to the token that ends an answer (for a ChatML model, \"<|im_end|>\")")]
    NoEos { path: PathBuf },
    #[error("{path}: {field} `{token}` is not in the vocabulary of tokenizer.json")]
    UnknownToken { path: PathBuf, field: &'static str, token: String },
    #[error(
        "{path}: pad_token is missing or equal to eos_token `{eos}` and no other special token can pad; add a pad_token different from eos_token"
    )]
    NoPad { path: PathBuf, eos: String },
    #[error("{path}: `eos_token_id` must be an integer or a list of integers, found {found}")]
    BadStopIds { path: PathBuf, found: String },
    #[error("{path} has no `chat_template`; add one (a Jinja template over `messages`) or pass prompts that are already formatted")]
    NoChatTemplate { path: PathBuf },
    #[error("the chat template of {path} does not compile: {msg}")]
    TemplateSyntax { path: PathBuf, msg: String },
    #[error("rendering the chat template failed: {msg}")]
    TemplateRender { msg: String },
    #[error("encoding failed: {msg}")]
    Encode { msg: String },
    #[error("decoding failed: {msg}")]
    Decode { msg: String },
}

/// A special token: its text and its id in the vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    pub text: String,
    pub id: u32,
}

/// The special tokens a sampler and a trainer need, resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence, if the model has one.
    pub bos: Option<SpecialToken>,
    /// End of an answer.
    pub eos: SpecialToken,
    /// Padding; never equal to `eos`.
    pub pad: SpecialToken,
    /// Every id that ends generation: `eos` plus `generation_config.json`'s `eos_token_id`, sorted.
    pub stop_ids: Vec<u32>,
}

/// A model folder's tokenizer, its special tokens and its chat template.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
    chat: Option<ChatTemplate>,
    config_path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .field("chat_template", &self.chat.is_some())
            .finish()
    }
}

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

impl Tokenizer {
    /// Loads `tokenizer.json`, `tokenizer_config.json` and (if present) `generation_config.json`
    /// from a model folder.
    pub fn load(dir: &Path) -> Result<Tokenizer, TokenizerError> {
        let tokenizer_path = existing(dir, TOKENIZER_FILE)?;
        let config_path = existing(dir, TOKENIZER_CONFIG_FILE)?;
        let bytes = std::fs::read(&tokenizer_path).map_err(|source| TokenizerError::Io { path: tokenizer_path.clone(), source })?;
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizerError::Load { path: tokenizer_path.clone(), msg: e.to_string() })?;
        let config = read_json(&config_path)?;
        let generation_path = dir.join(GENERATION_CONFIG_FILE);
        let generation = if generation_path.is_file() { Some(read_json(&generation_path)?) } else { None };
        Self::from_parts(inner, &config, &config_path, generation.as_ref().map(|g| (g, generation_path.as_path())))
    }

    /// Builds a tokenizer from an already parsed `tokenizer.json` and `tokenizer_config.json`
    /// (`config_path` only names the file in errors).
    pub fn from_parts(
        inner: tokenizers::Tokenizer,
        config: &Value,
        config_path: &Path,
        generation: Option<(&Value, &Path)>,
    ) -> Result<Tokenizer, TokenizerError> {
        let path = config_path.to_path_buf();
        let lookup = |field: &'static str| -> Result<Option<SpecialToken>, TokenizerError> {
            let Some(text) = special_token_text(config, field, &path)? else { return Ok(None) };
            let id = inner.token_to_id(&text).ok_or_else(|| TokenizerError::UnknownToken { path: path.clone(), field, token: text.clone() })?;
            Ok(Some(SpecialToken { text, id }))
        };
        let bos = lookup("bos_token")?;
        let eos = lookup("eos_token")?.ok_or_else(|| TokenizerError::NoEos { path: path.clone() })?;
        let unk = lookup("unk_token")?;
        let pad = match lookup("pad_token")? {
            Some(pad) if pad.id != eos.id => pad,
            declared => {
                let pad =
                    fallback_pad(&inner, &eos, bos.as_ref()).ok_or_else(|| TokenizerError::NoPad { path: path.clone(), eos: eos.text.clone() })?;
                tracing::warn!(
                    file = %path.display(),
                    declared = declared.map(|t| t.text).as_deref().unwrap_or("none"),
                    pad = %pad.text,
                    "pad_token missing or equal to eos_token; padding with another special token"
                );
                pad
            }
        };
        let mut stop_ids = BTreeSet::from([eos.id]);
        if let Some((generation, generation_path)) = generation {
            stop_ids.extend(generation_stop_ids(generation, generation_path)?);
        }
        // A stop id equal to pad would end every finished row's padding as a new "answer".
        stop_ids.remove(&pad.id);
        let chat = match config.get("chat_template") {
            None | Some(Value::Null) => None,
            Some(source) => {
                let text = chat_template_text(source).ok_or_else(|| TokenizerError::TemplateSyntax {
                    path: path.clone(),
                    msg: "`chat_template` must be a string or a list of {name, template}".into(),
                })?;
                let specials = [("bos_token", bos.as_ref()), ("eos_token", Some(&eos)), ("pad_token", Some(&pad)), ("unk_token", unk.as_ref())]
                    .into_iter()
                    .filter_map(|(k, t)| t.map(|t| (k, t.text.clone())))
                    .collect();
                Some(ChatTemplate::new(text, specials).map_err(|msg| TokenizerError::TemplateSyntax { path: path.clone(), msg })?)
            }
        };
        let special = SpecialTokens { bos, eos, pad, stop_ids: stop_ids.into_iter().collect() };
        Ok(Tokenizer { inner, special, chat, config_path: path })
    }

    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Token ids of `text`. With `add_special_tokens`, the tokenizer's post-processor adds what it
    /// adds (a BOS for Llama); prompts rendered from a chat template are encoded without.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self.inner.encode(text, add_special_tokens).map_err(|e| TokenizerError::Encode { msg: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, without special tokens when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| TokenizerError::Decode { msg: e.to_string() })
    }

    /// Whether the folder's `tokenizer_config.json` carries a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat.is_some()
    }

    /// The conversation rendered by the chat template, as Hugging Face's `apply_chat_template`
    /// (`tokenize=False`) renders it.
    pub fn apply_chat_template(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, TokenizerError> {
        let chat = self.chat.as_ref().ok_or_else(|| TokenizerError::NoChatTemplate { path: self.config_path.clone() })?;
        chat.render(messages, add_generation_prompt).map_err(|msg| TokenizerError::TemplateRender { msg })
    }

    /// Token ids of the rendered conversation. The template writes every special token itself, so
    /// the text is encoded without adding any (as `apply_chat_template(tokenize=True)` does).
    pub fn encode_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>, TokenizerError> {
        self.encode(&self.apply_chat_template(messages, add_generation_prompt)?, false)
    }
}

fn existing(dir: &Path, file: &'static str) -> Result<PathBuf, TokenizerError> {
    let path = dir.join(file);
    if path.is_file() { Ok(path) } else { Err(TokenizerError::MissingFile { dir: dir.to_path_buf(), file }) }
}

fn read_json(path: &Path) -> Result<Value, TokenizerError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|source| TokenizerError::Json { path: path.into(), source })
}

/// `tokenizer_config.json` writes a special token as a string, as an `AddedToken` object
/// (`{"content": "<s>", "__type": "AddedToken", …}`), or as null.
fn special_token_text(config: &Value, field: &'static str, path: &Path) -> Result<Option<String>, TokenizerError> {
    match config.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(TokenizerError::BadSpecialToken { path: path.into(), field, found: Value::Object(o.clone()).to_string() }),
        },
        Some(other) => Err(TokenizerError::BadSpecialToken { path: path.into(), field, found: other.to_string() }),
    }
}

/// The lowest-id special added token that is neither EOS nor BOS.
fn fallback_pad(inner: &tokenizers::Tokenizer, eos: &SpecialToken, bos: Option<&SpecialToken>) -> Option<SpecialToken> {
    let mut added: Vec<(u32, tokenizers::AddedToken)> = inner.get_added_tokens_decoder().into_iter().collect();
    added.sort_by_key(|(id, _)| *id);
    added
        .into_iter()
        .find(|(id, t)| t.special && *id != eos.id && bos.is_none_or(|b| b.id != *id))
        .map(|(id, t)| SpecialToken { text: t.content, id })
}

fn generation_stop_ids(generation: &Value, path: &Path) -> Result<Vec<u32>, TokenizerError> {
    let bad = |v: &Value| TokenizerError::BadStopIds { path: path.into(), found: v.to_string() };
    let as_id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| bad(v));
    match generation.get("eos_token_id") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(ids)) => ids.iter().map(as_id).collect(),
        Some(v) => Ok(vec![as_id(v)?]),
    }
}

/// `chat_template` is a string, or (newer configs) a list of named templates of which we use
/// `default`, else the first.
fn chat_template_text(source: &Value) -> Option<String> {
    match source {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let named = |name: &str| list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(name));
            named("default").or_else(|| list.first())?.get("template")?.as_str().map(str::to_string)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testutil::tiny_tokenizer_dir;

    #[test]
    fn round_trips_chinese_and_english_text() {
        let tok = Tokenizer::load(tiny_tokenizer_dir()).unwrap();
        for text in [
            "我妈67岁，晚饭后说心口痛，一阵一阵的。",
            "Chest pain and sweating: call 911 now, do not drive yourself.",
            "混合 mixed 文本 with 数字 0.5 mg/kg ×3 次/日 🙂",
            "  leading spaces\nand\ttabs  ",
        ] {
            let ids = tok.encode(text, false).unwrap();
            assert!(!ids.is_empty());
            assert_eq!(tok.decode(&ids, false).unwrap(), text, "ids {ids:?}");
        }
        // Trained on the shipped corpus: common Chinese medical words are single tokens or close,
        // far fewer than the 3 bytes per character a byte-level tokenizer starts from.
        let zh = "请立即拨打120，胸痛持续不缓解时必须立即就医。";
        assert!(tok.encode(zh, false).unwrap().len() * 2 < zh.len(), "{:?}", tok.encode(zh, false));
    }

    #[test]
    fn special_tokens_are_single_ids_and_pad_differs_from_eos() {
        let tok = Tokenizer::load(tiny_tokenizer_dir()).unwrap();
        let s = tok.special();
        assert_eq!(s.eos.text, "<|im_end|>");
        assert_eq!(s.pad.text, "<|endoftext|>");
        assert_ne!(s.pad.id, s.eos.id);
        assert_eq!(s.bos, None);
        assert!(s.stop_ids.contains(&s.eos.id) && !s.stop_ids.contains(&s.pad.id));
        let ids = tok.encode("<|im_start|>user\n你好<|im_end|>", false).unwrap();
        assert_eq!(ids[0], tok.inner().token_to_id("<|im_start|>").unwrap());
        assert_eq!(*ids.last().unwrap(), s.eos.id);
        assert_eq!(tok.decode(&ids, true).unwrap(), "user\n你好");
    }

    fn with_config(edit: impl FnOnce(&mut Value)) -> Result<Tokenizer, TokenizerError> {
        let dir = tiny_tokenizer_dir();
        let inner = tokenizers::Tokenizer::from_file(dir.join(TOKENIZER_FILE)).unwrap();
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(TOKENIZER_CONFIG_FILE)).unwrap()).unwrap();
        edit(&mut config);
        Tokenizer::from_parts(inner, &config, Path::new("tokenizer_config.json"), None)
    }

    #[test]
    fn pad_equal_to_eos_falls_back_to_another_special_token() {
        let tok = with_config(|c| {
            c["eos_token"] = "<|endoftext|>".into();
            c["pad_token"] = "<|endoftext|>".into();
        })
        .unwrap();
        assert_eq!(tok.special().eos.text, "<|endoftext|>");
        assert_eq!(tok.special().pad.text, "<|im_start|>");
        let tok = with_config(|c| c["pad_token"] = Value::Null).unwrap();
        assert_ne!(tok.special().pad.id, tok.special().eos.id);
    }

    #[test]
    fn added_token_objects_and_generation_stop_lists_are_read() {
        let dir = tiny_tokenizer_dir();
        let inner = tokenizers::Tokenizer::from_file(dir.join(TOKENIZER_FILE)).unwrap();
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(TOKENIZER_CONFIG_FILE)).unwrap()).unwrap();
        config["eos_token"] = serde_json::json!({"__type": "AddedToken", "content": "<|im_end|>", "lstrip": false});
        let endoftext = inner.token_to_id("<|endoftext|>").unwrap();
        let im_start = inner.token_to_id("<|im_start|>").unwrap();
        let generation = serde_json::json!({"eos_token_id": [im_start, endoftext]});
        let tok = Tokenizer::from_parts(inner, &config, Path::new("t.json"), Some((&generation, Path::new("g.json")))).unwrap();
        // pad (<|endoftext|>) is removed from the stop ids even when generation_config lists it.
        let mut want = vec![tok.special().eos.id, im_start];
        want.sort();
        assert_eq!(tok.special().stop_ids, want);
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let err = with_config(|c| c["eos_token"] = Value::Null).unwrap_err().to_string();
        assert!(err.contains("names no `eos_token`"), "{err}");
        let err = with_config(|c| c["eos_token"] = "<|nope|>".into()).unwrap_err().to_string();
        assert!(err.contains("eos_token `<|nope|>` is not in the vocabulary"), "{err}");
        let err = with_config(|c| c["pad_token"] = 7.into()).unwrap_err().to_string();
        assert!(err.contains("`pad_token` must be a string"), "{err}");
        let err = with_config(|c| c["chat_template"] = "{% for m in messages %}".into()).unwrap_err().to_string();
        assert!(err.contains("chat template of tokenizer_config.json does not compile"), "{err}");
        let tok = with_config(|c| c["chat_template"] = Value::Null).unwrap();
        let err = tok.apply_chat_template(&[Message::user("hi")], true).unwrap_err().to_string();
        assert!(err.contains("has no `chat_template`"), "{err}");
    }

    #[test]
    fn a_missing_tokenizer_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKENIZER_CONFIG_FILE), "{}").unwrap();
        let err = Tokenizer::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no tokenizer.json"), "{err}");
        std::fs::copy(tiny_tokenizer_dir().join(TOKENIZER_FILE), dir.path().join(TOKENIZER_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(TOKENIZER_CONFIG_FILE)).unwrap();
        let err = Tokenizer::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no tokenizer_config.json"), "{err}");
    }
}
