//! Batch prediction (`medrl predict`): prompts from a JSONL data file in, the chat template
//! applied, responses sampled in batches, one JSONL answer per prompt out, each carrying the
//! digests of the model and adapter that wrote it.
//!
//! Input lines are data items (`data/sets/*.jsonl`, [`Item`]), training prompts
//! (`data/rl/training_prompts.jsonl`, [`TrainingPrompt`], told apart by their `provenance`), or
//! plain prompts: `{"id", "prompt"}` or `{"id", "messages": [{"role", "content"}, …]}` (a line
//! with no other keys). A plain prompt's language is inferred from its text (the share of
//! Chinese characters, [`infer_lang`]); its category and risk are unknown.
//! An answer line is a rule [`Sample`] (so `medrl rules score --input answers.jsonl` scores it
//! as is) plus `tokens`, `finish_reason`, `model_sha256` and `adapter_sha256`; a plain prompt's
//! answer says `"category": "other"` and `"risk": null`, which no rule set scores until someone
//! labels it.
//!
//! The model is loaded with its adapter stack ([`Predictor::load_stacked`]): an adapter that
//! records what it was trained on (`stacked_on.json`, [`crate::model::stack`]) gets that SFT
//! adapter merged under it, and is refused on another base.
//!
//! Batches are formed after sorting the prompts by token length (less padding), and prompt `i`
//! of the file always draws from random stream `i`: the answers do not depend on the batch size
//! (up to the last bits of the arithmetic, which padding can change).

use crate::data::validate::infer_lang;
use crate::data::{Item, TrainingPrompt};
use crate::io::JsonlError;
use crate::model::digest::{adapter_sha256, model_sha256};
use crate::model::stack::plan_stack;
use crate::model::{CausalLm, LoraMode, Message, ModelError, Tokenizer, TokenizerError, default_dtype};
use crate::rollout::{FinishReason, RolloutError, SamplingConfig, StopTokens, generate_with_streams};
use candle_core::Device;
use medrl_sdk::Sample;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(transparent)]
    Input(#[from] JsonlError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    #[error(
        "prompt `{id}` is {tokens} tokens after the chat template; with {new} new tokens that exceeds the model's {max} positions; shorten it or lower --max-new-tokens"
    )]
    PromptTooLong { id: String, tokens: usize, new: usize, max: usize },
    #[error("batch size must be at least 1")]
    BatchSize,
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// One prompt to answer: the rule-facing fields of an [`Item`], a [`TrainingPrompt`] or a plain
/// prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRecord {
    /// The answer's fields with an empty `response`; for a plain prompt, `prompt` is its last
    /// user message.
    pub sample: Sample,
    /// The whole conversation of a `messages` line (the chat template renders all of it); `None`:
    /// `sample.prompt` is the one user message.
    pub messages: Option<Vec<Message>>,
    /// Whether `category` and `risk` come from the data set. A plain prompt's are unknown: its
    /// sample carries `Category::Other` and a placeholder `Risk::Low` that must not be scored
    /// (`medrl eval` refuses such prompts; answers write `"risk": null`).
    pub labelled: bool,
}

impl PromptRecord {
    /// A labelled prompt (a data item or training prompt) of one user message.
    pub fn labelled(sample: Sample) -> PromptRecord {
        PromptRecord { sample, messages: None, labelled: true }
    }
}

/// A plain prompts line: the keys a line may have to be read as one.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainPrompt {
    id: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Message>>,
}

const PLAIN_KEYS: [&str; 3] = ["id", "prompt", "messages"];
const SHAPES: &str = r#"a line is {"id", "prompt"}, {"id", "messages": [{"role", "content"}, …]} or a data item (docs/data.md)"#;

impl PlainPrompt {
    fn into_record(self) -> Result<PromptRecord, String> {
        if self.id.trim().is_empty() {
            return Err("`id` is empty; give every prompt an id".into());
        }
        let (prompt, messages) = match (self.prompt, self.messages) {
            (Some(_), Some(_)) => return Err("has both `prompt` and `messages`; give one".into()),
            (None, None) => return Err(format!("has neither `prompt` nor `messages`; {SHAPES}")),
            (Some(p), None) => (p, None),
            (None, Some(m)) => {
                if let Some((i, bad)) = m.iter().enumerate().find(|(_, m)| !["system", "user", "assistant"].contains(&m.role.as_str())) {
                    return Err(format!("message {} has role `{}`; roles are system, user and assistant", i + 1, bad.role));
                }
                match m.last() {
                    Some(last) if last.role == "user" => (last.content.clone(), Some(m)),
                    Some(last) => {
                        return Err(format!("the last message is the {}'s; the model answers the user, so end with a user message", last.role));
                    }
                    None => return Err("`messages` is empty; give at least one user message".into()),
                }
            }
        };
        if prompt.trim().is_empty() {
            return Err("the prompt is empty".into());
        }
        let sample = Sample {
            id: self.id,
            lang: infer_lang(&prompt),
            prompt,
            response: String::new(),
            category: medrl_sdk::Category::Other,
            risk: medrl_sdk::Risk::Low,
            tags: Vec::new(),
            expect: Default::default(),
        };
        Ok(PromptRecord { sample, messages, labelled: false })
    }
}

/// Reads the prompts of a file; a malformed line is reported with its file and line.
pub fn read_prompts(path: &Path) -> Result<Vec<PromptRecord>, PredictError> {
    // An empty file is refused here, with its path and the fix.
    let text = crate::io::read_text(path).map_err(JsonlError::from)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |msg: String| JsonlError::Line { path: path.into(), line: i + 1, msg };
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let object = value.as_object().ok_or_else(|| bad(format!("not a JSON object; {SHAPES}")))?;
        if object.keys().all(|k| PLAIN_KEYS.contains(&k.as_str())) {
            let plain: PlainPrompt = serde_json::from_value(value).map_err(|e| bad(format!("not a plain prompt: {e}; {SHAPES}")))?;
            out.push(plain.into_record().map_err(bad)?);
            continue;
        }
        let sample = if value.get("provenance").is_some() {
            let t: TrainingPrompt = serde_json::from_value(value).map_err(|e| bad(format!("not a training prompt: {e}")))?;
            Sample {
                id: t.id,
                prompt: t.prompt,
                response: String::new(),
                lang: t.lang,
                category: t.category,
                risk: t.risk,
                tags: t.tags,
                expect: t.expect,
            }
        } else {
            let item: Item = serde_json::from_value(value).map_err(|e| bad(format!("not a data item (docs/data.md): {e}")))?;
            item.to_sample(String::new())
        };
        out.push(PromptRecord::labelled(sample));
    }
    Ok(out)
}

/// How to answer.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Prompts per batch. Default 8.
    pub batch_size: usize,
    /// How tokens are drawn. Default greedy with 256 new tokens (reproducible evaluation).
    pub sampling: SamplingConfig,
    /// A system message before every prompt. Default none.
    pub system: Option<String>,
}

impl Default for PredictOptions {
    fn default() -> PredictOptions {
        PredictOptions { batch_size: 8, sampling: SamplingConfig::greedy(256), system: None }
    }
}

/// One line of the output.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// id, prompt, response, lang, category, risk, tags, expect: what a rule reads.
    #[serde(flatten)]
    pub sample: Sample,
    /// Response tokens, the stop token included.
    pub tokens: usize,
    pub finish_reason: FinishReason,
    /// Digest of the model folder ([`crate::model::digest`]).
    pub model_sha256: String,
    /// Digests of the adapters, `+`-joined in stacking order (merged SFT adapter first); null
    /// without one.
    pub adapter_sha256: Option<String>,
    /// Whether the prompt's category and risk are known ([`PromptRecord::labelled`]); an
    /// unlabelled answer is written with `"risk": null`.
    #[serde(skip)]
    pub labelled: bool,
}

/// A model (and adapter) ready to answer prompts.
pub struct Predictor {
    pub model: CausalLm,
    pub tokenizer: Tokenizer,
    pub model_sha256: String,
    /// Digests of the merged adapters and the adapter, `+`-joined in order; `None` without any.
    pub adapter_sha256: Option<String>,
    /// The adapters merged under the adapter, in order (given, or found from its
    /// `stacked_on.json`).
    pub merged: Vec<PathBuf>,
    lora: LoraMode,
}

impl Predictor {
    /// Loads the tokenizer, the model (in the device's default dtype) and, if given, a PEFT
    /// adapter on top, with the adapters it was trained over merged under it
    /// ([`Self::load_stacked`] with no `--merge`), and takes their digests.
    pub fn load(model_dir: &Path, adapter_dir: Option<&Path>, device: &Device) -> Result<Predictor, PredictError> {
        Self::load_stacked(model_dir, &[], adapter_dir, device)
    }

    /// Loads the model with `merged` adapters merged into the base (an SFT adapter under an RL
    /// adapter trained on the merged model) and `adapter_dir` on top. When the adapter records
    /// its stack (`stacked_on.json`), the base must be the one it was trained on, and `merged`
    /// must be its recorded adapters (by sha256, in order) or empty, in which case the recorded
    /// ones are merged ([`plan_stack`]). The adapter digest covers every adapter, in order.
    pub fn load_stacked(model_dir: &Path, merged: &[&Path], adapter_dir: Option<&Path>, device: &Device) -> Result<Predictor, PredictError> {
        let tokenizer = Tokenizer::load(model_dir)?;
        let mut model = CausalLm::load(model_dir, device, default_dtype(device))?;
        let model_digest = model_sha256(model_dir)?;
        model.set_base_sha256(model_digest.clone());
        let planned = match adapter_dir {
            Some(adapter) => plan_stack(model_dir, &model_digest, merged, adapter)?,
            None => merged.iter().map(|p| p.to_path_buf()).collect(),
        };
        let mut digests = Vec::new();
        for dir in &planned {
            model.merge_adapter(dir)?;
            digests.push(adapter_sha256(dir)?);
        }
        let lora = match adapter_dir {
            Some(dir) => {
                model.load_adapter(dir)?;
                digests.push(adapter_sha256(dir)?);
                LoraMode::Inference
            }
            None => LoraMode::Off,
        };
        let adapter_digest = (!digests.is_empty()).then(|| digests.join("+"));
        Ok(Predictor { model, tokenizer, model_sha256: model_digest, adapter_sha256: adapter_digest, merged: planned, lora })
    }

    /// How the adapter takes part when this predictor samples (off without one): what a caller
    /// that samples by itself (`medrl serve`, token by token) passes to the sampler.
    pub fn lora_mode(&self) -> LoraMode {
        self.lora
    }

    /// Token ids of a prompt under the chat template.
    pub fn encode(&self, prompt: &str, system: Option<&str>) -> Result<Vec<u32>, PredictError> {
        let mut messages = Vec::with_capacity(2);
        if let Some(s) = system {
            messages.push(Message::system(s));
        }
        messages.push(Message::user(prompt));
        Ok(self.tokenizer.encode_chat(&messages, true)?)
    }

    /// Token ids of a prompt record: its conversation, or its one user message, under the chat
    /// template; `system` goes first unless the conversation has its own system message.
    pub fn encode_record(&self, record: &PromptRecord, system: Option<&str>) -> Result<Vec<u32>, PredictError> {
        let Some(conversation) = &record.messages else {
            return self.encode(&record.sample.prompt, system);
        };
        let mut messages = Vec::with_capacity(conversation.len() + 1);
        if let Some(s) = system.filter(|_| conversation.first().is_none_or(|m| m.role != "system")) {
            messages.push(Message::system(s));
        }
        messages.extend(conversation.iter().cloned());
        Ok(self.tokenizer.encode_chat(&messages, true)?)
    }

    /// Answers every prompt, in input order. `progress` is called with the number of prompts
    /// answered so far after each batch.
    pub fn predict(&self, prompts: &[PromptRecord], opts: &PredictOptions, mut progress: impl FnMut(usize)) -> Result<Vec<Answer>, PredictError> {
        if opts.batch_size == 0 {
            return Err(PredictError::BatchSize);
        }
        let max = self.model.config().max_position_embeddings;
        let new = opts.sampling.max_new_tokens;
        let encoded = prompts
            .iter()
            .map(|p| {
                let ids = self.encode_record(p, opts.system.as_deref())?;
                if ids.len() + new > max {
                    return Err(PredictError::PromptTooLong { id: p.sample.id.clone(), tokens: ids.len(), new, max });
                }
                Ok(ids)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        let stop = StopTokens::of(self.tokenizer.special());
        let mut answers: Vec<Option<Answer>> = vec![None; prompts.len()];
        let mut done = 0;
        for batch in order.chunks(opts.batch_size) {
            let ids: Vec<Vec<u32>> = batch.iter().map(|&i| encoded[i].clone()).collect();
            let streams: Vec<u64> = batch.iter().map(|&i| i as u64).collect();
            let rollout = generate_with_streams(&self.model, &ids, &streams, &stop, &opts.sampling, self.lora)?;
            for (row, &i) in batch.iter().enumerate() {
                let response = self.tokenizer.decode(&rollout.responses[row], true)?;
                let mut sample = prompts[i].sample.clone();
                sample.response = response;
                answers[i] = Some(Answer {
                    sample,
                    tokens: rollout.responses[row].len(),
                    finish_reason: rollout.finish[row],
                    model_sha256: self.model_sha256.clone(),
                    adapter_sha256: self.adapter_sha256.clone(),
                    labelled: prompts[i].labelled,
                });
            }
            done += batch.len();
            progress(done);
        }
        Ok(answers.into_iter().map(|a| a.expect("every prompt is in exactly one batch")).collect())
    }
}

/// Writes the answers as JSONL.
pub fn write_answers(path: &Path, answers: &[Answer]) -> Result<(), PredictError> {
    let mut out = String::new();
    for a in answers {
        if a.labelled {
            out.push_str(&serde_json::to_string(a).expect("an answer serialises"));
        } else {
            let mut value = serde_json::to_value(a).expect("an answer serialises");
            value["risk"] = serde_json::Value::Null;
            out.push_str(&serde_json::to_string(&value).expect("a JSON value serialises"));
        }
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|source| PredictError::Write { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::testutil::tiny_model_dir;

    fn write_prompts(dir: &Path) -> PathBuf {
        let path = dir.join("prompts.jsonl");
        let sets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        let gold = std::fs::read_to_string(sets.join("sets/gold.jsonl")).unwrap();
        let training = std::fs::read_to_string(sets.join("rl/training_prompts.jsonl")).unwrap();
        let lines: Vec<&str> = gold.lines().take(3).chain(training.lines().take(2)).collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    #[test]
    fn answers_come_back_in_input_order_with_digests_and_do_not_depend_on_the_batch_size() {
        let dir = tempfile::tempdir().unwrap();
        let prompts = read_prompts(&write_prompts(dir.path())).unwrap();
        assert_eq!(prompts.len(), 5);
        let predictor = Predictor::load(tiny_model_dir(), None, &Device::Cpu).unwrap();
        let opts = PredictOptions { batch_size: 2, sampling: SamplingConfig { max_new_tokens: 6, ..SamplingConfig::default() }, system: None };
        let mut calls = Vec::new();
        let answers = predictor.predict(&prompts, &opts, |n| calls.push(n)).unwrap();
        assert_eq!(calls, [2, 4, 5]);
        for (a, p) in answers.iter().zip(&prompts) {
            assert_eq!(a.sample.id, p.sample.id);
            assert_eq!(a.sample.prompt, p.sample.prompt);
            assert!(a.tokens >= 1 && a.tokens <= 6);
            assert_eq!(a.model_sha256, model_sha256(tiny_model_dir()).unwrap());
            assert_eq!(a.adapter_sha256, None);
        }
        let one_batch = predictor.predict(&prompts, &PredictOptions { batch_size: 8, ..opts.clone() }, |_| {}).unwrap();
        let responses = |a: &[Answer]| a.iter().map(|a| a.sample.response.clone()).collect::<Vec<_>>();
        assert_eq!(responses(&answers), responses(&one_batch));
        // An answer line is a rule sample: it parses back as one.
        let path = dir.path().join("answers.jsonl");
        write_answers(&path, &answers).unwrap();
        let back: Vec<Sample> = crate::io::read_jsonl(&path).unwrap();
        assert_eq!(back[0].response, answers[0].sample.response);
    }

    #[test]
    fn an_adapter_changes_the_answers_and_its_digest_is_recorded() {
        use crate::model::LoraConfig;
        let dir = tempfile::tempdir().unwrap();
        let prompts = read_prompts(&write_prompts(dir.path())).unwrap();
        let adapter = dir.path().join("adapter");
        let mut model = CausalLm::load(tiny_model_dir(), &Device::Cpu, candle_core::DType::F32).unwrap();
        model.attach_lora(LoraConfig::default(), 1).unwrap();
        // A fresh adapter has B = 0 (PEFT's init) and changes nothing; give B weight.
        for (name, var) in model.named_trainable_vars() {
            if name.contains("lora_B") {
                var.set(&(var.ones_like().unwrap() * 0.5).unwrap()).unwrap();
            }
        }
        model.save_adapter(&adapter).unwrap();
        let opts = PredictOptions { sampling: SamplingConfig::greedy(6), ..PredictOptions::default() };
        let base = Predictor::load(tiny_model_dir(), None, &Device::Cpu).unwrap().predict(&prompts, &opts, |_| {}).unwrap();
        let adapted_predictor = Predictor::load(tiny_model_dir(), Some(&adapter), &Device::Cpu).unwrap();
        assert_eq!(adapted_predictor.adapter_sha256, Some(adapter_sha256(&adapter).unwrap()));
        let adapted = adapted_predictor.predict(&prompts, &opts, |_| {}).unwrap();
        assert!(adapted.iter().all(|a| a.adapter_sha256 == adapted_predictor.adapter_sha256));
        let responses = |a: &[Answer]| a.iter().map(|a| a.sample.response.clone()).collect::<Vec<_>>();
        assert_ne!(responses(&base), responses(&adapted));
    }

    /// Plain prompts: the language from the share of Chinese characters among the letters (30 %
    /// bar), category `other`, risk unknown; a conversation keeps every message and answers its
    /// last user message.
    #[test]
    fn plain_prompts_are_read_with_an_inferred_language() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.jsonl");
        // "布洛芬 ibuprofen": 3 Chinese of 12 letters = 25 % → en; "布洛芬和 aspirin": 4 of 11 = 36 % → zh.
        std::fs::write(
            &path,
            concat!(
                "{\"id\":\"a\",\"prompt\":\"布洛芬 ibuprofen\"}\n",
                "{\"id\":\"b\",\"prompt\":\"布洛芬和 aspirin\"}\n",
                "{\"id\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"},{\"role\":\"user\",\"content\":\"dose?\"}]}\n",
            ),
        )
        .unwrap();
        let p = read_prompts(&path).unwrap();
        assert_eq!(p.iter().map(|r| r.sample.lang).collect::<Vec<_>>(), [medrl_sdk::Lang::En, medrl_sdk::Lang::Zh, medrl_sdk::Lang::En]);
        assert!(p.iter().all(|r| !r.labelled && r.sample.category == medrl_sdk::Category::Other));
        assert_eq!(p[2].sample.prompt, "dose?");
        assert_eq!(p[2].messages.as_ref().unwrap().len(), 3);
        for (line, says) in [
            (r#"{"id":"x","prompt":"a","messages":[]}"#, "has both `prompt` and `messages`"),
            (r#"{"id":"x","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"#, "end with a user message"),
            (r#"{"id":"x","messages":[{"role":"tool","content":"a"}]}"#, "role `tool`"),
            (r#"{"id":"","prompt":"a"}"#, "`id` is empty"),
        ] {
            std::fs::write(&path, format!("{line}\n")).unwrap();
            let err = read_prompts(&path).unwrap_err().to_string();
            assert!(err.contains("plain.jsonl:1: ") && err.contains(says), "{line}: {err}");
        }
    }

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let good =
            r#"{"id":"a","lang":"en","category":"general","risk":"low","tags":["t"],"prompt":"hi","source":"s","version":"1.0.0","quality":"draft"}"#;
        std::fs::write(&path, format!("{good}\n\n{{\"id\": \"b\", \"prompt\": \"x\", \"lang\": \"en\"}}\n")).unwrap();
        let err = read_prompts(&path).unwrap_err().to_string();
        assert!(err.contains("p.jsonl:3: not a data item"), "{err}");
        std::fs::write(&path, format!("{good}\n{{\"id\": \"b\"}}\n")).unwrap();
        let err = read_prompts(&path).unwrap_err().to_string();
        assert!(err.contains("p.jsonl:2: has neither `prompt` nor `messages`"), "{err}");
        std::fs::write(&path, format!("{good}\nnot json\n")).unwrap();
        assert!(read_prompts(&path).unwrap_err().to_string().contains("p.jsonl:2:"));
        std::fs::write(&path, "\n").unwrap();
        let err = read_prompts(&path).unwrap_err().to_string();
        assert!(err.contains("p.jsonl is empty"), "{err}");
    }
}
