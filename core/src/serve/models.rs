//! The named models a server answers with, loaded once at start and shared (behind `Arc`) by
//! every request. Loading goes through [`Predictor`], the loader `medrl predict` and
//! `medrl eval` use, so an adapter is stacked here exactly as it is there.

use super::config::ModelSpec;
use crate::model::{Message, TokenizerError};
use crate::predict::{PredictError, Predictor};
use crate::rollout::{FinishReason, RolloutError, SamplingConfig, StopTokens, generate_observed};
use candle_core::Device;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

/// A model that failed to load, named by its `--model` flag.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("--model {name}: {source}")]
    Load { name: String, source: Box<PredictError> },
    #[error("--model {name}: {what} {path} does not exist; give the folder written by `medrl model init`, `medrl sft` or `medrl train`")]
    Missing { name: String, what: &'static str, path: std::path::PathBuf },
    #[error("--model {name} is given twice; give each model its own name")]
    Duplicate { name: String },
    #[error("no --model given; serve at least one, e.g. --model sft=runs/quickstart/sft/model")]
    None,
}

/// One loaded model.
pub struct ServedModel {
    pub spec: ModelSpec,
    pub predictor: Predictor,
    stop: StopTokens,
    /// `medrl-` and 16 hex digits of the sha256 of the weights' digests: the response's
    /// `system_fingerprint`, which changes whenever the model or an adapter does.
    fingerprint: String,
}

/// What one generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Response tokens, the stop token included (as `medrl predict` counts them).
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
}

impl ServedModel {
    /// Loads the model and its adapters through [`Predictor::load`] (one adapter, or none) or
    /// [`Predictor::load_stacked`] (adapters merged under the last).
    pub fn load(spec: &ModelSpec, device: &Device) -> Result<ServedModel, LoadError> {
        let missing = |what, path: &Path| LoadError::Missing { name: spec.name.clone(), what, path: path.to_path_buf() };
        if !spec.model_dir.is_dir() {
            return Err(missing("model folder", &spec.model_dir));
        }
        for dir in spec.merged.iter().chain(&spec.adapter) {
            if !dir.is_dir() {
                return Err(missing("adapter folder", dir));
            }
        }
        let loaded = if spec.merged.is_empty() {
            Predictor::load(&spec.model_dir, spec.adapter.as_deref(), device)
        } else {
            let merged: Vec<&Path> = spec.merged.iter().map(|p| p.as_path()).collect();
            Predictor::load_stacked(&spec.model_dir, &merged, spec.adapter.as_deref(), device)
        };
        let predictor = loaded.map_err(|source| LoadError::Load { name: spec.name.clone(), source: Box::new(source) })?;
        let stop = StopTokens::of(predictor.tokenizer.special());
        let weights = format!("{}+{}", predictor.model_sha256, predictor.adapter_sha256.as_deref().unwrap_or(""));
        let fingerprint = format!("medrl-{}", &crate::registry::hash::sha256_hex(weights.as_bytes())[..16]);
        Ok(ServedModel { spec: spec.clone(), predictor, stop, fingerprint })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The model's context length (`max_position_embeddings`).
    pub fn max_positions(&self) -> usize {
        self.predictor.model.config().max_position_embeddings
    }

    /// Token ids of a conversation under the model's chat template, the assistant's turn opened.
    /// A single user message gives the ids `medrl predict` gives that prompt.
    pub fn encode(&self, messages: &[Message]) -> Result<Vec<u32>, TokenizerError> {
        self.predictor.tokenizer.encode_chat(messages, true)
    }

    /// Text of response tokens, special tokens left out (as `medrl predict` writes answers).
    pub fn decode(&self, tokens: &[u32]) -> Result<String, TokenizerError> {
        self.predictor.tokenizer.decode(tokens, true)
    }

    /// Samples one answer to `prompt` on random stream 0 of `sampling.seed`: the same seed and
    /// request give the same tokens, and the same tokens `medrl predict` gives this prompt as
    /// the first (or only) line of its input. `observe` sees each token as it is drawn; its
    /// `Break` stops generation ([`RolloutError::Cancelled`]).
    pub fn generate(
        &self,
        prompt: &[u32],
        sampling: &SamplingConfig,
        observe: &mut dyn FnMut(u32) -> ControlFlow<()>,
    ) -> Result<Generated, RolloutError> {
        let mut step = |drawn: &[Option<u32>]| match drawn[0] {
            Some(token) => observe(token),
            None => ControlFlow::Continue(()),
        };
        let rollout =
            generate_observed(&self.predictor.model, &[prompt.to_vec()], &[0], &self.stop, sampling, self.predictor.lora_mode(), &mut step)?;
        Ok(Generated { tokens: rollout.responses[0].clone(), finish: rollout.finish[0] })
    }
}

// Requests on any worker thread share the loaded models.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<ServedModel>();
};

/// Every model of the server, in the order of the `--model` flags.
#[derive(Clone)]
pub struct Models {
    models: Vec<Arc<ServedModel>>,
}

impl Models {
    /// Loads every spec; names must be distinct.
    pub fn load(specs: &[ModelSpec], device: &Device, mut loaded: impl FnMut(&ServedModel)) -> Result<Models, LoadError> {
        if specs.is_empty() {
            return Err(LoadError::None);
        }
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(LoadError::Duplicate { name: spec.name.clone() });
            }
        }
        let mut models = Vec::with_capacity(specs.len());
        for spec in specs {
            let model = ServedModel::load(spec, device)?;
            loaded(&model);
            models.push(Arc::new(model));
        }
        Ok(Models { models })
    }

    pub fn get(&self, name: &str) -> Option<Arc<ServedModel>> {
        self.models.iter().find(|m| m.name() == name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.models.iter().map(|m| m.name().to_string()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ServedModel>> {
        self.models.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::testutil::tiny_model_dir;
    use crate::predict::{PredictOptions, PromptRecord};

    #[test]
    fn an_answer_is_the_one_predict_gives_and_a_seed_reproduces_it() {
        let spec: ModelSpec = format!("tiny={}", tiny_model_dir().display()).parse().unwrap();
        let models = Models::load(std::slice::from_ref(&spec), &Device::Cpu, |_| {}).unwrap();
        let model = models.get("tiny").unwrap();
        let prompt = "Can I take ibuprofen with a cold?";
        let ids = model.encode(&[Message::user(prompt)]).unwrap();
        let sampling = SamplingConfig { temperature: 0.9, top_p: 0.95, max_new_tokens: 12, seed: 11, ..SamplingConfig::default() };
        let mut seen = Vec::new();
        let a = model
            .generate(&ids, &sampling, &mut |t| {
                seen.push(t);
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(seen, a.tokens);
        let b = model.generate(&ids, &sampling, &mut |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(a, b);
        // `medrl predict` on the same prompt and settings writes the same text.
        let sample = crate::serve::ScoringContext::default().sample("p0", prompt, "");
        let opts = PredictOptions { batch_size: 1, sampling, system: None };
        let answers = model.predictor.predict(&[PromptRecord::labelled(sample)], &opts, |_| {}).unwrap();
        assert_eq!(answers[0].sample.response, model.decode(&a.tokens).unwrap());
        assert_eq!(answers[0].tokens, a.tokens.len());
    }

    #[test]
    fn missing_folders_and_repeated_names_are_refused_before_loading() {
        let tiny = tiny_model_dir().display().to_string();
        let specs = |s: &[&str]| s.iter().map(|x| x.parse::<ModelSpec>().unwrap()).collect::<Vec<_>>();
        let err = |s: &[&str]| Models::load(&specs(s), &Device::Cpu, |_| {}).err().unwrap().to_string();
        assert!(err(&["a=/no/such/model"]).contains("--model a: model folder /no/such/model does not exist"));
        assert!(err(&[&format!("a={tiny}:/no/adapter")]).contains("adapter folder /no/adapter does not exist"));
        assert!(err(&[&format!("a={tiny}"), &format!("a={tiny}")]).contains("--model a is given twice"));
        assert!(err(&[]).contains("no --model given"));
    }
}
