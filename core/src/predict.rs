//! Batch prediction (`medrl predict`): prompts from a JSONL data file in, the chat template
//! applied, responses sampled in batches, one JSONL answer per prompt out, each carrying the
//! digests of the model and adapter that wrote it.
//!
//! Input lines are data items (`data/sets/*.jsonl`, [`Item`]) or training prompts
//! (`data/rl/training_prompts.jsonl`, [`TrainingPrompt`], told apart by their `provenance`).
//! An answer line is a rule [`Sample`] (so `medrl rules score --input answers.jsonl` scores it
//! as is) plus `tokens`, `finish_reason`, `model_sha256` and `adapter_sha256`.
//!
//! Batches are formed after sorting the prompts by token length (less padding), and prompt `i`
//! of the file always draws from random stream `i`: the answers do not depend on the batch size
//! (up to the last bits of the arithmetic, which padding can change).

use crate::data::{Item, TrainingPrompt};
use crate::io::JsonlError;
use crate::model::digest::{adapter_sha256, model_sha256};
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

/// One prompt to answer: the rule-facing fields of an [`Item`] or a [`TrainingPrompt`].
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRecord {
    /// The answer's fields with an empty `response`.
    pub sample: Sample,
}

/// Reads the prompts of a data file; a malformed line is reported with its file and line.
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
        out.push(PromptRecord { sample });
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
    /// Digest of the adapter folder; null without one.
    pub adapter_sha256: Option<String>,
}

/// A model (and adapter) ready to answer prompts.
pub struct Predictor {
    pub model: CausalLm,
    pub tokenizer: Tokenizer,
    pub model_sha256: String,
    pub adapter_sha256: Option<String>,
    lora: LoraMode,
}

impl Predictor {
    /// Loads the tokenizer, the model (in the device's default dtype) and, if given, a PEFT
    /// adapter on top, and takes their digests.
    pub fn load(model_dir: &Path, adapter_dir: Option<&Path>, device: &Device) -> Result<Predictor, PredictError> {
        let tokenizer = Tokenizer::load(model_dir)?;
        let mut model = CausalLm::load(model_dir, device, default_dtype(device))?;
        let model_digest = model_sha256(model_dir)?;
        let (adapter_digest, lora) = match adapter_dir {
            Some(dir) => {
                model.load_adapter(dir)?;
                (Some(adapter_sha256(dir)?), LoraMode::Inference)
            }
            None => (None, LoraMode::Off),
        };
        Ok(Predictor { model, tokenizer, model_sha256: model_digest, adapter_sha256: adapter_digest, lora })
    }

    /// Like [`Predictor::load`], with adapters merged into the base first (an SFT adapter under an
    /// RL adapter trained on the merged model). The adapter digest then covers every adapter,
    /// in order.
    pub fn load_stacked(model_dir: &Path, merged: &[&Path], adapter_dir: Option<&Path>, device: &Device) -> Result<Predictor, PredictError> {
        let mut p = Predictor::load(model_dir, None, device)?;
        let mut digests = Vec::new();
        for dir in merged {
            p.model.merge_adapter(dir)?;
            digests.push(adapter_sha256(dir)?);
        }
        if let Some(dir) = adapter_dir {
            p.model.load_adapter(dir)?;
            p.lora = LoraMode::On;
            digests.push(adapter_sha256(dir)?);
        }
        p.adapter_sha256 = (!digests.is_empty()).then(|| digests.join("+"));
        Ok(p)
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
                let ids = self.encode(&p.sample.prompt, opts.system.as_deref())?;
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
        out.push_str(&serde_json::to_string(a).expect("an answer serialises"));
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

    #[test]
    fn malformed_lines_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let good =
            r#"{"id":"a","lang":"en","category":"general","risk":"low","tags":["t"],"prompt":"hi","source":"s","version":"1.0.0","quality":"draft"}"#;
        std::fs::write(&path, format!("{good}\n\n{{\"id\": \"b\", \"prompt\": \"x\"}}\n")).unwrap();
        let err = read_prompts(&path).unwrap_err().to_string();
        assert!(err.contains("p.jsonl:3: not a data item"), "{err}");
        std::fs::write(&path, format!("{good}\nnot json\n")).unwrap();
        assert!(read_prompts(&path).unwrap_err().to_string().contains("p.jsonl:2:"));
        std::fs::write(&path, "\n").unwrap();
        let err = read_prompts(&path).unwrap_err().to_string();
        assert!(err.contains("p.jsonl is empty"), "{err}");
    }
}
