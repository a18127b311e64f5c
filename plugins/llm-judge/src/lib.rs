//! The LLM judge: a `medrl-judge/1` plugin that rates the communication quality of an answer
//! (tone, clarity), what rules cannot see, with a local model on the CPU.
//!
//! The model reads a rubric (system message) and the question and answer (user message) under
//! its chat template; the judge does not sample a reply, it reads the next-token distribution
//! at the start of the reply. Over the rating tokens (`"1"` … `"5"` by default) renormalised,
//! the expected rating `E[r] = Σ p_i · r_i` is mapped to `[0, 1]` by `(E[r] − 1) / (n − 1)`;
//! the explanation gives the distribution and how much of the whole next-token mass the rating
//! tokens hold (a small mass means the model does not take the rubric's format, and the score
//! says little). The same model, prompt and answer always give the same score: no sampling.
//!
//! Parameters (`judge.params` in `ruleset.json`, unknown keys refused):
//! - `model` (required): the model folder (Hugging Face layout), absolute or relative to the
//!   registry root.
//! - `model_sha256`: the folder's digest (`medrl_model::digest::model_sha256`, printed by
//!   `medrl predict` in every answer); when set, a different model is refused at load.
//! - `rubric`: the system message. Default [`DEFAULT_RUBRIC`].
//! - `template`: the user message; `{prompt}`, `{response}`, `{min}`, `{max}` are replaced.
//!   Default [`DEFAULT_TEMPLATE`].
//! - `ratings`: the rating tokens, lowest first, each one token of the tokenizer. Default 1…5.
//! - `max_response_chars`: longer answers are cut to this many characters (the judge rates
//!   the beginning, and the cut is said in the explanation). Default 4000.

use candle_core::{DType, Device, Tensor};
use medrl_model::{CausalLm, LoraMode, Message, Tokenizer, default_dtype, position_ids_for};
use medrl_sdk::Sample;
use medrl_sdk::plugin::{Judge, JudgeConfig, JudgeOutput};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_RUBRIC: &str = "You rate how well a medical answer communicates: a calm, respectful tone; clear, plain language; a structure a worried patient can follow; no condescension, no alarmism, no filler. You do not rate medical correctness. Reply with one digit.";
pub const DEFAULT_TEMPLATE: &str =
    "Question:\n{prompt}\n\nAnswer:\n{response}\n\nRate the answer's communication from {min} (poor) to {max} (excellent). Reply with one digit.";

/// `judge.params`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeParams {
    pub model: String,
    #[serde(default)]
    pub model_sha256: Option<String>,
    #[serde(default = "default_rubric")]
    pub rubric: String,
    #[serde(default = "default_template")]
    pub template: String,
    #[serde(default = "default_ratings")]
    pub ratings: Vec<String>,
    #[serde(default = "default_max_response_chars")]
    pub max_response_chars: usize,
}

fn default_rubric() -> String {
    DEFAULT_RUBRIC.into()
}
fn default_template() -> String {
    DEFAULT_TEMPLATE.into()
}
fn default_ratings() -> Vec<String> {
    (1..=5).map(|r| r.to_string()).collect()
}
fn default_max_response_chars() -> usize {
    4000
}

/// A loaded judge: the model, its tokenizer, and the token id of each rating.
pub struct LlmJudge {
    model: CausalLm,
    tokenizer: Tokenizer,
    params: JudgeParams,
    rating_ids: Vec<u32>,
}

impl LlmJudge {
    /// Loads the model folder named by `params` (relative paths against `registry_root`).
    pub fn load(params: JudgeParams, registry_root: &Path) -> Result<Self, String> {
        let dir = resolve(&params.model, registry_root);
        if params.ratings.len() < 2 {
            return Err(format!("`ratings` needs at least two rating tokens, got {:?}", params.ratings));
        }
        if let Some(expected) = &params.model_sha256 {
            let actual = medrl_model::digest::model_sha256(&dir).map_err(|e| e.to_string())?;
            if &actual != expected {
                return Err(format!(
                    "model folder {} has digest {actual} but the rule set pins model_sha256 {expected}; restore that model or publish a rule set that pins this one",
                    dir.display()
                ));
            }
        }
        let tokenizer = Tokenizer::load(&dir).map_err(|e| e.to_string())?;
        let device = Device::Cpu;
        let model = CausalLm::load(&dir, &device, default_dtype(&device)).map_err(|e| e.to_string())?;
        let mut rating_ids = Vec::with_capacity(params.ratings.len());
        for rating in &params.ratings {
            let ids = tokenizer.encode(rating, false).map_err(|e| e.to_string())?;
            match ids.as_slice() {
                [id] if !rating_ids.contains(id) => rating_ids.push(*id),
                _ => {
                    return Err(format!(
                        "rating `{rating}` is {} tokens ({ids:?}) in the tokenizer of {}; each rating must be one distinct token: choose other `ratings`",
                        ids.len(),
                        dir.display()
                    ));
                }
            }
        }
        Ok(LlmJudge { model, tokenizer, params, rating_ids })
    }

    /// The chat-templated token ids the model reads for `sample`, and whether the response was cut.
    pub fn encode(&self, sample: &Sample) -> Result<(Vec<u32>, bool), String> {
        let cut = sample.response.chars().count() > self.params.max_response_chars;
        let response: String = if cut { sample.response.chars().take(self.params.max_response_chars).collect() } else { sample.response.clone() };
        let ratings = &self.params.ratings;
        let user = fill(
            &self.params.template,
            &[("prompt", &sample.prompt), ("response", &response), ("min", &ratings[0]), ("max", &ratings[ratings.len() - 1])],
        );
        let messages = [Message::system(&self.params.rubric), Message::user(&user)];
        let ids = self.tokenizer.encode_chat(&messages, true).map_err(|e| e.to_string())?;
        Ok((ids, cut))
    }

    /// The probabilities of the rating tokens (renormalised over them) and their share of the
    /// whole next-token mass.
    pub fn rating_distribution(&self, ids: &[u32]) -> Result<(Vec<f64>, f64), String> {
        let max = self.model.config().max_position_embeddings;
        if ids.len() > max {
            return Err(format!(
                "the rubric prompt is {} tokens, more than the judge model's {max} positions; lower `max_response_chars`",
                ids.len()
            ));
        }
        let run = || -> candle_core::Result<Vec<f32>> {
            let device = self.model.device();
            let t = ids.len();
            let input = Tensor::from_vec(ids.to_vec(), (1, t), device)?;
            let mask = vec![vec![1u8; t]];
            let positions = position_ids_for(&mask, device).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let mask = Tensor::from_vec(mask.concat(), (1, t), device)?;
            let logits =
                self.model.forward_last(&input, &positions, &mask, None, LoraMode::Off).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            logits.squeeze(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()
        };
        let logits = run().map_err(|e| format!("the judge model failed: {e}"))?;
        Ok(distribution(&logits, &self.rating_ids))
    }
}

/// Softmax restricted to `ids` (in f64, max-subtracted), and the share of the full softmax
/// mass those ids hold. A non-finite logit gives NaNs, which the host refuses as output.
pub fn distribution(logits: &[f32], ids: &[u32]) -> (Vec<f64>, f64) {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let all: f64 = logits.iter().map(|&l| (l as f64 - top).exp()).sum();
    let picked: Vec<f64> = ids.iter().map(|&i| (logits[i as usize] as f64 - top).exp()).collect();
    let sum: f64 = picked.iter().sum();
    (picked.iter().map(|p| p / sum).collect(), sum / all)
}

/// `(E[r] − 1) / (n − 1)` for ratings 1…n with probabilities `p`: `Σ p_i · i / (n − 1)`, i from 0.
pub fn expected_score(p: &[f64]) -> f64 {
    let n = p.len();
    p.iter().enumerate().map(|(i, p)| p * i as f64).sum::<f64>() / (n - 1) as f64
}

fn resolve(path: &str, root: &Path) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { root.join(p) }
}

/// Replaces `{name}` for each pair in one pass, so text inside a value (a prompt that contains
/// "{response}") is never substituted again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match values.iter().find(|(k, _)| after.starts_with(k) && after[k.len()..].starts_with('}')) {
            Some((k, v)) => {
                out.push_str(v);
                rest = &after[k.len() + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl Judge for LlmJudge {
    fn create(config: &JudgeConfig) -> Result<Self, String> {
        let params: JudgeParams = serde_json::from_value(config.params.clone())
            .map_err(|e| format!("{}: `judge.params` are not valid llm-judge parameters: {e}", config.plugin))?;
        LlmJudge::load(params, Path::new(&config.registry_root))
    }

    fn score(&mut self, sample: &Sample) -> Result<JudgeOutput, String> {
        let (ids, cut) = self.encode(sample)?;
        let (p, mass) = self.rating_distribution(&ids)?;
        let score = expected_score(&p);
        let n = p.len();
        let expected = 1.0 + score * (n - 1) as f64;
        let dist: Vec<String> = self.params.ratings.iter().zip(&p).map(|(r, p)| format!("{r}:{p:.3}")).collect();
        let mut explanation = format!(
            "rating distribution {} → expected rating {expected:.2} of {} (score {score:.3}); the rating tokens hold {:.2}% of the next-token mass",
            dist.join(" "),
            self.params.ratings[n - 1],
            mass * 100.0
        );
        if cut {
            explanation.push_str(&format!("; the answer was cut to its first {} characters", self.params.max_response_chars));
        }
        Ok(JudgeOutput { score, explanation })
    }
}

medrl_sdk::export_judge!(LlmJudge);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_and_expected_score_by_hand() {
        // logits 0, ln 3 at the two rating ids, ln 4 elsewhere: exp = 1, 3, 4 → total 8;
        // ratings hold 4/8 = 0.5 of the mass; renormalised p = [0.25, 0.75];
        // n = 2: score = 0.25·0 + 0.75·1 = 0.75.
        let logits = [0.0f32, 3f32.ln(), 4f32.ln()];
        let (p, mass) = distribution(&logits, &[0, 1]);
        assert!((p[0] - 0.25).abs() < 1e-6 && (p[1] - 0.75).abs() < 1e-6, "{p:?}");
        assert!((mass - 0.5).abs() < 1e-6, "{mass}");
        assert!((expected_score(&p) - 0.75).abs() < 1e-6);
        // Five ratings, uniform: E[r] = 3 → (3 − 1) / 4 = 0.5; all on "5" → 1; all on "1" → 0.
        assert!((expected_score(&[0.2; 5]) - 0.5).abs() < 1e-12);
        assert_eq!(expected_score(&[0.0, 0.0, 0.0, 0.0, 1.0]), 1.0);
        assert_eq!(expected_score(&[1.0, 0.0, 0.0, 0.0, 0.0]), 0.0);
    }

    #[test]
    fn fill_substitutes_once() {
        let out =
            fill("Q: {prompt} A: {response} {other} {min}-{max}", &[("prompt", "says {response}"), ("response", "fine"), ("min", "1"), ("max", "5")]);
        assert_eq!(out, "Q: says {response} A: fine {other} 1-5");
    }

    #[test]
    fn unknown_params_are_refused() {
        let config = JudgeConfig {
            abi: medrl_sdk::plugin::JUDGE_ABI_VERSION.into(),
            plugin: "llm-judge@0.1.0".into(),
            params: serde_json::json!({"model": "m", "temperature": 0.7}),
            registry_root: "/".into(),
        };
        let err = LlmJudge::create(&config).err().unwrap();
        assert!(err.contains("unknown field `temperature`") && err.contains("llm-judge@0.1.0"), "{err}");
    }
}
