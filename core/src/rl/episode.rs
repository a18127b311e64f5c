//! One rollout's responses as tensors the policy, the reference and the value head can rescore.
//!
//! Layout: prompts left-padded to the batch's longest prompt `P`, responses right-padded to the
//! longest response `R`, so every row's first response token sits at column `P` and the logits
//! that predict response token `j` are at column `P − 1 + j` for every row alike. Position ids
//! count from each row's first real token, as the sampler's did, so rescoring sees exactly the
//! inputs sampling saw (implementation detail: "rescoring identical to sampling").

use crate::model::{CausalLm, LoraMode, ModelError, position_ids_for};
use crate::rl::value_head::ValueHead;
use crate::rollout::token_logprobs;
use candle_core::{DType, Device, Tensor};

/// One sampled response to one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Index of the prompt in the training set.
    pub prompt_index: usize,
    /// The prompt as the model saw it (chat template applied, no padding).
    pub prompt_ids: Vec<u32>,
    /// The sampled tokens, up to and including EOS when one was sampled; no padding.
    pub response_ids: Vec<u32>,
    /// The sampler's log-probability of each response token (temperature-scaled).
    pub sampler_logprobs: Vec<f32>,
    /// Whether the response ended with EOS (false: cut at `max_new_tokens`).
    pub ended_with_eos: bool,
}

/// A batch of episodes laid out for rescoring.
pub struct Packed {
    /// `[b, P + R]` u32.
    pub input_ids: Tensor,
    /// `[b, P + R]` u8, 1 on real prompt and response tokens.
    pub attention_mask: Tensor,
    /// `[b, P + R]` i64.
    pub position_ids: Tensor,
    /// `[b, R]` u32, the response tokens (pad where a response is shorter).
    pub response_tokens: Tensor,
    /// `[b, R]` f32, 1.0 on real response tokens.
    pub response_mask: Tensor,
    pub prompt_width: usize,
    pub response_width: usize,
}

/// Lays out `episodes` (at least one, each with at least one response token).
pub fn pack(episodes: &[&Episode], pad_id: u32, device: &Device) -> Result<Packed, ModelError> {
    let b = episodes.len();
    let p = episodes.iter().map(|e| e.prompt_ids.len()).max().unwrap_or(0);
    let r = episodes.iter().map(|e| e.response_ids.len()).max().unwrap_or(0);
    if b == 0 || p == 0 || r == 0 {
        return Err(ModelError::BadInput(format!("cannot pack {b} episodes with prompt width {p} and response width {r}")));
    }
    let mut ids = Vec::with_capacity(b * (p + r));
    let mut mask_rows = Vec::with_capacity(b);
    let mut resp = Vec::with_capacity(b * r);
    let mut resp_mask = Vec::with_capacity(b * r);
    for e in episodes {
        let lp = p - e.prompt_ids.len();
        let rp = r - e.response_ids.len();
        ids.extend(
            std::iter::repeat_n(pad_id, lp)
                .chain(e.prompt_ids.iter().copied())
                .chain(e.response_ids.iter().copied())
                .chain(std::iter::repeat_n(pad_id, rp)),
        );
        let mut row = vec![0u8; lp];
        row.extend(std::iter::repeat_n(1u8, e.prompt_ids.len() + e.response_ids.len()));
        row.extend(std::iter::repeat_n(0u8, rp));
        mask_rows.push(row);
        resp.extend(e.response_ids.iter().copied().chain(std::iter::repeat_n(pad_id, rp)));
        resp_mask.extend(std::iter::repeat_n(1f32, e.response_ids.len()).chain(std::iter::repeat_n(0f32, rp)));
    }
    let position_ids = position_ids_for(&mask_rows, device)?;
    let flat_mask: Vec<u8> = mask_rows.concat();
    Ok(Packed {
        input_ids: Tensor::from_vec(ids, (b, p + r), device)?,
        attention_mask: Tensor::from_vec(flat_mask, (b, p + r), device)?,
        position_ids,
        response_tokens: Tensor::from_vec(resp, (b, r), device)?,
        response_mask: Tensor::from_vec(resp_mask, (b, r), device)?,
        prompt_width: p,
        response_width: r,
    })
}

/// What one forward over a packed batch's response positions gives the trainer.
pub struct ResponseForward {
    /// `[b, R]` log-probabilities of the response tokens at the sampling temperature.
    pub logprobs: Tensor,
    /// `[b, R]` value estimates before each response token (when a value head is given).
    pub values: Option<Tensor>,
    /// `[b, R, vocab]` temperature-scaled logits of the response positions (for entropy), f32.
    pub logits: Tensor,
}

/// Log-probabilities (and values, and logits) of a packed batch's responses: the policy
/// (`LoraMode::On`), the reference (`LoraMode::Off`), or the training forward with gradient
/// (`On` or `Train`). The language-model head runs on the response positions only.
pub fn forward_logprobs(
    model: &CausalLm,
    head: Option<&ValueHead>,
    packed: &Packed,
    temperature: f64,
    lora: LoraMode,
) -> Result<ResponseForward, ModelError> {
    let hidden = model.forward_hidden(&packed.input_ids, &packed.position_ids, &packed.attention_mask, None, lora)?;
    let h = hidden.narrow(1, packed.prompt_width - 1, packed.response_width)?;
    let logits = model.lm_head(&h)?;
    let logprobs = token_logprobs(&logits, &packed.response_tokens, temperature)?;
    let values = match head {
        Some(head) => Some(head.forward(&h.to_dtype(DType::F32)?)?),
        None => None,
    };
    Ok(ResponseForward { logprobs, values, logits: (logits / temperature)? })
}

/// Row `i` of a `[b, R]` tensor, cut to the first `len` entries, as host floats.
pub fn row(t: &Tensor, i: usize, len: usize) -> Result<Vec<f32>, ModelError> {
    Ok(t.get(i)?.narrow(0, 0, len)?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::testutil::tiny_model_dir;
    use crate::model::{Message, Tokenizer};
    use crate::rollout::{Rollout, SamplingConfig, StopTokens, generate};

    fn ep(p: &[u32], r: &[u32]) -> Episode {
        Episode { prompt_index: 0, prompt_ids: p.to_vec(), response_ids: r.to_vec(), sampler_logprobs: vec![0.0; r.len()], ended_with_eos: true }
    }

    #[test]
    fn layout_puts_every_response_at_the_same_column() {
        let d = Device::Cpu;
        let (a, b) = (ep(&[5, 6, 7], &[8]), ep(&[9], &[10, 11, 12]));
        let p = pack(&[&a, &b], 0, &d).unwrap();
        assert_eq!((p.prompt_width, p.response_width), (3, 3));
        assert_eq!(p.input_ids.to_vec2::<u32>().unwrap(), vec![vec![5, 6, 7, 8, 0, 0], vec![0, 0, 9, 10, 11, 12]]);
        assert_eq!(p.attention_mask.to_vec2::<u8>().unwrap(), vec![vec![1, 1, 1, 1, 0, 0], vec![0, 0, 1, 1, 1, 1]]);
        assert_eq!(p.position_ids.to_vec2::<i64>().unwrap(), vec![vec![0, 1, 2, 3, 0, 0], vec![0, 0, 0, 1, 2, 3]]);
        assert_eq!(p.response_tokens.to_vec2::<u32>().unwrap(), vec![vec![8, 0, 0], vec![10, 11, 12]]);
        assert_eq!(p.response_mask.to_vec2::<f32>().unwrap(), vec![vec![1., 0., 0.], vec![1., 1., 1.]]);
        assert!(pack(&[&ep(&[1], &[])], 0, &d).is_err());
    }

    /// max |Δ| between the sampler's logprobs and [`forward_logprobs`] at `temperature`, over the
    /// real response tokens, with the rollout laid out as the trainer lays it out ([`pack`]).
    fn parity_gap(model: &CausalLm, prompts: &[Vec<u32>], pad_id: u32, rollout: &Rollout, temperature: f64) -> f32 {
        let episodes: Vec<Episode> = (0..prompts.len())
            .map(|k| Episode {
                prompt_index: k,
                prompt_ids: prompts[k].clone(),
                response_ids: rollout.responses[k].clone(),
                sampler_logprobs: rollout.response_logprobs[k].clone(),
                ended_with_eos: false,
            })
            .collect();
        let packed = pack(&episodes.iter().collect::<Vec<_>>(), pad_id, &Device::Cpu).unwrap();
        let out = forward_logprobs(model, None, &packed, temperature, LoraMode::On).unwrap();
        let mut gap = 0f32;
        for (j, e) in episodes.iter().enumerate() {
            for (a, b) in row(&out.logprobs, j, e.response_ids.len()).unwrap().iter().zip(&e.sampler_logprobs) {
                gap = gap.max((a - b).abs());
            }
        }
        gap
    }

    /// The trainer's rescoring reproduces the sampler's logprobs, which is what makes PPO's first
    /// ratio 1 and the KL estimate start at 0: three chat prompts of different lengths (so the
    /// batch is left-padded), at temperature 1, at 0.7 with top-k and top-p, and greedy.
    #[test]
    fn forward_logprobs_reproduces_the_sampler_logprobs() {
        let model = CausalLm::load(tiny_model_dir(), &Device::Cpu, DType::F32).unwrap();
        let tokenizer = Tokenizer::load(tiny_model_dir()).unwrap();
        let stop = StopTokens::of(tokenizer.special());
        let prompts: Vec<Vec<u32>> =
            ["胸口痛，出冷汗，怎么办？", "Can I take ibuprofen with a cold?", "我孩子三岁，发烧到39度，已经两天了，还精神不好，需要马上去医院吗？"]
                .iter()
                .map(|q| tokenizer.encode_chat(&[Message::user(q)], true).unwrap())
                .collect();
        let sample = |cfg: SamplingConfig| generate(&model, &prompts, &stop, &cfg, LoraMode::On).unwrap();
        // Temperature 1, no truncation: the PPO setting.
        let rollout = sample(SamplingConfig { max_new_tokens: 24, seed: 11, ..SamplingConfig::default() });
        assert_eq!(rollout.response_len(), 24);
        let at_1 = parity_gap(&model, &prompts, stop.pad_id, &rollout, 1.0);
        assert!(at_1 < 1e-4, "max |Δ logprob| at T = 1: {at_1}");
        // Another temperature with truncation: logprobs are still log softmax(logits / T) of the
        // full vocabulary, and the rescoring divides by the same T.
        let rollout = sample(SamplingConfig { temperature: 0.7, top_k: 50, top_p: 0.9, max_new_tokens: 16, seed: 3 });
        let at_07 = parity_gap(&model, &prompts, stop.pad_id, &rollout, 0.7);
        assert!(at_07 < 1e-4, "max |Δ logprob| at T = 0.7: {at_07}");
        // The check can fail: rescoring without dividing by the temperature is far off.
        let wrong = parity_gap(&model, &prompts, stop.pad_id, &rollout, 1.0);
        assert!(wrong > 1e-2, "{wrong}");
        // Greedy: the sampler reports logprobs at T = 1, and every token it chose is the argmax of
        // the rescoring's distribution at its position.
        let greedy = sample(SamplingConfig::greedy(10));
        let at_greedy = parity_gap(&model, &prompts, stop.pad_id, &greedy, greedy.logprob_temperature);
        assert!(at_greedy < 1e-4, "max |Δ logprob| greedy: {at_greedy}");
        let episodes: Vec<Episode> =
            (0..prompts.len()).map(|k| Episode { prompt_ids: prompts[k].clone(), ..ep(&[], &greedy.responses[k]) }).collect();
        let packed = pack(&episodes.iter().collect::<Vec<_>>(), stop.pad_id, &Device::Cpu).unwrap();
        let argmax = forward_logprobs(&model, None, &packed, 1.0, LoraMode::On).unwrap().logits.argmax(candle_core::D::Minus1).unwrap();
        for (k, e) in episodes.iter().enumerate() {
            assert_eq!(argmax.get(k).unwrap().narrow(0, 0, e.response_ids.len()).unwrap().to_vec1::<u32>().unwrap(), e.response_ids, "row {k}");
        }
        eprintln!("max |Δ logprob|: {at_1:e} at T = 1, {at_07:e} at T = 0.7, {at_greedy:e} greedy; {wrong:e} when the rescoring forgets T");
    }
}
