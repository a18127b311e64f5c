//! Batched generation: left-padded prompts, one prefill pass into a preallocated KV cache, then
//! one token per row per step until every row has stopped or `max_new_tokens` is reached.
//!
//! Layout of a [`Rollout`] (P = longest prompt, R = steps run ≤ `max_new_tokens`):
//!
//! ```text
//! tokens          [b, P + R]  pad … pad p₀ … p_k | r₀ r₁ … r_stop pad … pad
//! attention_mask  [b, P + R]    0 …   0  1 …  1 |  1  1 …   1     0  …   0
//! response_mask   [b, R]                        |  1  1 …   1     0  …   0
//! logprobs        [b, R]                        | ℓ₀ ℓ₁ …  ℓ_stop 0  …   0
//! ```
//!
//! The stop token is part of the response (masked in, scored, its logprob kept): the reward is
//! given on the real last token, and the trainer needs the logprob of having stopped. Rows that
//! never stop end with [`FinishReason::Length`].
//!
//! Sampling happens on the host: each step copies the last position's logits `[b, vocab]` (f32)
//! to the CPU and draws every row in parallel (rayon), each row from its own ChaCha8 stream.
//! On CUDA that is one device-to-host copy per step (64 × 151,936 × 4 B = 39 MB for the 0.5B
//! benchmark); sampling on the device would need a seeded device RNG and a sort of the whole
//! vocabulary, which candle does not provide for rows this long.

use super::config::SamplingConfig;
use super::distribution::{NonFiniteLogits, draw};
use crate::model::{CausalLm, LoraMode, ModelError, position_ids_for};
use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use rayon::prelude::*;
use std::ops::ControlFlow;

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("invalid sampling settings: {0}")]
    Config(String),
    #[error("no prompts to sample from")]
    EmptyBatch,
    #[error("prompt {row} has no tokens")]
    EmptyPrompt { row: usize },
    #[error("token id {id} ({what}) is outside the model's vocabulary of {vocab}")]
    OutOfVocab { id: u32, what: &'static str, vocab: usize },
    #[error(
        "prompt of {prompt} tokens plus {new} new tokens exceeds the model's {max} positions (max_position_embeddings); shorten the prompt or lower max_new_tokens"
    )]
    TooLong { prompt: usize, new: usize, max: usize },
    #[error("row {row}, step {step}: {source}")]
    NonFinite { row: usize, step: usize, source: NonFiniteLogits },
    /// The observer of [`generate_observed`] asked to stop (its reader went away).
    #[error("generation cancelled at step {step} by its observer")]
    Cancelled { step: usize },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// It drew a stop token (EOS).
    Stop,
    /// It reached `max_new_tokens` without one.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// The ids generation needs besides the prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopTokens {
    /// Fills left padding and finished rows; must not be a stop id.
    pub pad_id: u32,
    /// Ids that end a row (EOS and friends); empty = always generate `max_new_tokens`.
    pub stop_ids: Vec<u32>,
}

impl StopTokens {
    /// The pad and stop ids of a model's tokenizer.
    pub fn of(special: &crate::model::SpecialTokens) -> StopTokens {
        StopTokens { pad_id: special.pad.id, stop_ids: special.stop_ids.clone() }
    }
}

/// A sampled batch. Tensors live on the model's device; the host copies are the same numbers.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// `[b, P + R]` u32: left-padded prompts, then responses padded after their stop.
    pub tokens: Tensor,
    /// `[b, P + R]` u8: 1 on prompt tokens and on response tokens up to and including the stop.
    pub attention_mask: Tensor,
    /// `[b, R]` u8: 1 on the response tokens that count (up to and including the stop).
    pub response_mask: Tensor,
    /// `[b, R]` f32: the sampler's `log softmax(logits / T)` of each drawn token; 0 where masked.
    /// T is the sampling temperature, or 1 when greedy.
    pub logprobs: Tensor,
    /// P: columns of left-padded prompt.
    pub prompt_len: usize,
    /// Each row's prompt length (real tokens).
    pub prompt_lens: Vec<usize>,
    /// Each row's response tokens, stop token included.
    pub responses: Vec<Vec<u32>>,
    /// Each row's logprobs, aligned with `responses`.
    pub response_logprobs: Vec<Vec<f32>>,
    /// Why each row stopped.
    pub finish: Vec<FinishReason>,
    /// The temperature `logprobs` are taken at (what the trainer must divide by).
    pub logprob_temperature: f64,
}

impl Rollout {
    /// R: columns of response.
    pub fn response_len(&self) -> usize {
        self.response_mask.dim(1).unwrap_or(0)
    }

    /// New tokens generated over all rows (masked-in response tokens).
    pub fn new_tokens(&self) -> usize {
        self.responses.iter().map(Vec::len).sum()
    }
}

/// Samples a response for every prompt. `prompts` are token ids without padding (any lengths);
/// the batch is every prompt at once, so the caller picks the batch size. Row `r` draws from
/// random stream `r` of `cfg.seed`. `lora`: `On` or `Inference` sample the adapted policy
/// (without an autograd graph either way), `Off` the base; `Train` (dropout) is refused.
pub fn generate(model: &CausalLm, prompts: &[Vec<u32>], tokens: &StopTokens, cfg: &SamplingConfig, lora: LoraMode) -> Result<Rollout, RolloutError> {
    let streams: Vec<u64> = (0..prompts.len() as u64).collect();
    generate_with_streams(model, prompts, &streams, tokens, cfg, lora)
}

/// [`generate`] with the random stream of each row given: a prompt's sample then depends on
/// `(cfg.seed, its stream)` and not on which batch or row it landed in (give each prompt of a
/// data set its index). Equal streams in one batch give equal draws for equal prompts.
pub fn generate_with_streams(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    streams: &[u64],
    tokens: &StopTokens,
    cfg: &SamplingConfig,
    lora: LoraMode,
) -> Result<Rollout, RolloutError> {
    generate_observed(model, prompts, streams, tokens, cfg, lora, &mut |_| ControlFlow::Continue(()))
}

/// [`generate_with_streams`] that shows every step's draws to `observe` as they are made: entry
/// `r` is row `r`'s new token, `None` once the row has stopped. A server streams them to its
/// client; returning [`ControlFlow::Break`] (the client went away) ends generation at once with
/// [`RolloutError::Cancelled`]. Observing changes no draw: the tokens are those of
/// [`generate_with_streams`].
pub fn generate_observed(
    model: &CausalLm,
    prompts: &[Vec<u32>],
    streams: &[u64],
    tokens: &StopTokens,
    cfg: &SamplingConfig,
    lora: LoraMode,
    observe: &mut dyn FnMut(&[Option<u32>]) -> ControlFlow<()>,
) -> Result<Rollout, RolloutError> {
    cfg.validate().map_err(RolloutError::Config)?;
    let lora = sampling_mode(lora)?;
    let b = prompts.len();
    if b == 0 {
        return Err(RolloutError::EmptyBatch);
    }
    if streams.len() != b {
        return Err(RolloutError::Config(format!("{} random streams for {b} prompts", streams.len())));
    }
    let mc = model.config();
    let vocab = mc.vocab_size;
    check_ids(prompts, tokens, vocab)?;
    let p = prompts.iter().map(Vec::len).max().expect("the batch is not empty");
    if p + cfg.max_new_tokens > mc.max_position_embeddings {
        return Err(RolloutError::TooLong { prompt: p, new: cfg.max_new_tokens, max: mc.max_position_embeddings });
    }
    let device = model.device();
    let mut cache = model.new_cache(b, p + cfg.max_new_tokens)?;

    // Left padding: every row's newest token sits in the last column, so the last position's
    // logits are every row's next-token distribution.
    let mut mask: Vec<Vec<u8>> = prompts.iter().map(|q| pad_left(&vec![1u8; q.len()], p, 0)).collect();
    let ids: Vec<u32> = prompts.iter().flat_map(|q| pad_left(q, p, tokens.pad_id)).collect();
    let input = Tensor::from_vec(ids, (b, p), device)?;
    let positions = position_ids_for(&mask, device)?;
    let mut logits = model.forward_last(&input, &positions, &mask_tensor(&mask, device)?, Some(&mut cache), lora)?;

    let mut rngs: Vec<ChaCha8Rng> = streams
        .iter()
        .map(|&stream| {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            rng.set_stream(stream);
            rng
        })
        .collect();
    let mut next_pos: Vec<i64> = prompts.iter().map(|q| q.len() as i64).collect();
    let mut responses: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut response_logprobs: Vec<Vec<f32>> = vec![Vec::new(); b];
    let mut finish: Vec<Option<FinishReason>> = vec![None; b];
    let mut steps = 0;
    for step in 0..cfg.max_new_tokens {
        let rows: Vec<Vec<f32>> = logits.to_vec2::<f32>()?;
        let draws: Vec<Option<super::distribution::Draw>> = rows
            .par_iter()
            .zip(rngs.par_iter_mut())
            .zip(finish.par_iter())
            .enumerate()
            .map(|(row, ((l, rng), done))| match done {
                Some(_) => Ok(None),
                None => draw(l, cfg, rng).map(Some).map_err(|source| RolloutError::NonFinite { row, step, source }),
            })
            .collect::<Result<_, _>>()?;
        steps = step + 1;
        let mut column = Vec::with_capacity(b);
        let mut col_mask = Vec::with_capacity(b);
        for (row, d) in draws.into_iter().enumerate() {
            match d {
                Some(d) => {
                    responses[row].push(d.token);
                    response_logprobs[row].push(d.logprob);
                    if tokens.stop_ids.contains(&d.token) {
                        finish[row] = Some(FinishReason::Stop);
                    }
                    column.push(d.token);
                    col_mask.push(1u8);
                }
                None => {
                    column.push(tokens.pad_id);
                    col_mask.push(0u8);
                }
            }
        }
        for (m, c) in mask.iter_mut().zip(&col_mask) {
            m.push(*c);
        }
        let drawn: Vec<Option<u32>> = column.iter().zip(&col_mask).map(|(&t, &m)| (m == 1).then_some(t)).collect();
        if observe(&drawn).is_break() {
            return Err(RolloutError::Cancelled { step });
        }
        if finish.iter().all(Option::is_some) || step + 1 == cfg.max_new_tokens {
            break;
        }
        let input = Tensor::from_vec(column, (b, 1), device)?;
        let positions = Tensor::from_vec(next_pos.clone(), (b, 1), device)?;
        for (pos, c) in next_pos.iter_mut().zip(&col_mask) {
            *pos += i64::from(*c);
        }
        logits = model.forward_last(&input, &positions, &mask_tensor(&mask, device)?, Some(&mut cache), lora)?;
    }
    let finish: Vec<FinishReason> = finish.into_iter().map(|f| f.unwrap_or(FinishReason::Length)).collect();
    assemble(prompts, p, steps, tokens.pad_id, responses, response_logprobs, finish, mask, cfg.logprob_temperature(), device)
}

/// Sampling never needs gradients: the adapter runs detached ([`LoraMode::Inference`], the same
/// values as `On` without recording a graph). Dropout has no place in sampling: PPO's rescoring
/// must reproduce the sampler's logprobs, and a dropout mask would make them differ.
fn sampling_mode(lora: LoraMode) -> Result<LoraMode, RolloutError> {
    match lora {
        LoraMode::On | LoraMode::Inference => Ok(LoraMode::Inference),
        LoraMode::Off => Ok(LoraMode::Off),
        LoraMode::Train { .. } => Err(RolloutError::Config("sampling runs without LoRA dropout; pass LoraMode::On, Inference or Off".into())),
    }
}

fn check_ids(prompts: &[Vec<u32>], tokens: &StopTokens, vocab: usize) -> Result<(), RolloutError> {
    let out = |id: u32, what| RolloutError::OutOfVocab { id, what, vocab };
    if tokens.pad_id as usize >= vocab {
        return Err(out(tokens.pad_id, "pad"));
    }
    if let Some(&id) = tokens.stop_ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(out(id, "stop"));
    }
    if tokens.stop_ids.contains(&tokens.pad_id) {
        return Err(RolloutError::Config(format!("the pad id {} is also a stop id; padding must differ from EOS", tokens.pad_id)));
    }
    for (row, q) in prompts.iter().enumerate() {
        if q.is_empty() {
            return Err(RolloutError::EmptyPrompt { row });
        }
        if let Some(&id) = q.iter().find(|&&id| id as usize >= vocab) {
            return Err(out(id, "prompt"));
        }
    }
    Ok(())
}

fn pad_left<T: Copy>(row: &[T], width: usize, pad: T) -> Vec<T> {
    let mut out = vec![pad; width - row.len()];
    out.extend_from_slice(row);
    out
}

fn mask_tensor(mask: &[Vec<u8>], device: &Device) -> candle_core::Result<Tensor> {
    let (b, l) = (mask.len(), mask[0].len());
    Tensor::from_vec(mask.concat(), (b, l), device)
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    prompts: &[Vec<u32>],
    p: usize,
    r: usize,
    pad: u32,
    responses: Vec<Vec<u32>>,
    response_logprobs: Vec<Vec<f32>>,
    finish: Vec<FinishReason>,
    mask: Vec<Vec<u8>>,
    logprob_temperature: f64,
    device: &Device,
) -> Result<Rollout, RolloutError> {
    let b = prompts.len();
    let mut tokens = Vec::with_capacity(b * (p + r));
    let mut response_mask = Vec::with_capacity(b * r);
    let mut logprobs = Vec::with_capacity(b * r);
    for ((q, resp), lps) in prompts.iter().zip(&responses).zip(&response_logprobs) {
        tokens.extend(pad_left(q, p, pad));
        tokens.extend(resp.iter().copied().chain(std::iter::repeat(pad)).take(r));
        response_mask.extend((0..r).map(|j| u8::from(j < resp.len())));
        logprobs.extend(lps.iter().copied().chain(std::iter::repeat(0.0)).take(r));
    }
    // The decoding mask has one column per step; it equals the response mask after the prompt.
    debug_assert!(mask.iter().all(|m| m.len() == p + r));
    Ok(Rollout {
        tokens: Tensor::from_vec(tokens, (b, p + r), device)?,
        attention_mask: mask_tensor(&mask, device)?,
        response_mask: Tensor::from_vec(response_mask, (b, r), device)?,
        logprobs: Tensor::from_vec(logprobs, (b, r), device)?,
        prompt_len: p,
        prompt_lens: prompts.iter().map(Vec::len).collect(),
        responses,
        response_logprobs,
        finish,
        logprob_temperature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::testutil::tiny_model_dir;
    use crate::model::{Message, Tokenizer};
    use candle_core::DType;
    use std::sync::OnceLock;

    fn model() -> &'static CausalLm {
        static M: OnceLock<CausalLm> = OnceLock::new();
        M.get_or_init(|| CausalLm::load(tiny_model_dir(), &Device::Cpu, DType::F32).unwrap())
    }

    fn tokenizer() -> &'static Tokenizer {
        static T: OnceLock<Tokenizer> = OnceLock::new();
        T.get_or_init(|| Tokenizer::load(tiny_model_dir()).unwrap())
    }

    /// Three chat prompts of different lengths, so the batch is left-padded.
    fn prompts() -> Vec<Vec<u32>> {
        ["胸口痛，出冷汗，怎么办？", "Can I take ibuprofen with a cold?", "我孩子三岁，发烧到39度，已经两天了，还精神不好，需要马上去医院吗？"]
            .iter()
            .map(|q| tokenizer().encode_chat(&[Message::user(q)], true).unwrap())
            .collect()
    }

    fn stop() -> StopTokens {
        StopTokens::of(tokenizer().special())
    }

    fn sample(cfg: SamplingConfig) -> Rollout {
        generate(model(), &prompts(), &stop(), &cfg, LoraMode::On).unwrap()
    }

    #[test]
    fn layout_of_tokens_and_masks() {
        let rollout = sample(SamplingConfig { max_new_tokens: 8, ..SamplingConfig::default() });
        let (p, r) = (rollout.prompt_len, rollout.response_len());
        let prompts = prompts();
        assert_eq!(p, prompts.iter().map(Vec::len).max().unwrap());
        let tokens = rollout.tokens.to_vec2::<u32>().unwrap();
        let mask = rollout.attention_mask.to_vec2::<u8>().unwrap();
        let resp_mask = rollout.response_mask.to_vec2::<u8>().unwrap();
        let pad = stop().pad_id;
        for (row, q) in prompts.iter().enumerate() {
            let lead = p - q.len();
            assert!(tokens[row][..lead].iter().all(|&t| t == pad));
            assert_eq!(&tokens[row][lead..p], &q[..]);
            assert!(mask[row][..lead].iter().all(|&m| m == 0) && mask[row][lead..p].iter().all(|&m| m == 1));
            assert_eq!(&mask[row][p..], &resp_mask[row][..]);
            let n = rollout.responses[row].len();
            assert_eq!(&tokens[row][p..p + n], &rollout.responses[row][..]);
            assert_eq!(resp_mask[row].iter().map(|&m| m as usize).sum::<usize>(), n);
            assert!(tokens[row][p + n..].iter().all(|&t| t == pad));
            assert_eq!(rollout.response_logprobs[row].len(), n);
        }
        assert_eq!(r, 8);
    }

    #[test]
    fn rows_stop_at_their_first_stop_token_and_others_run_to_the_limit() {
        // Greedy with no stop ids: every row runs 12 steps.
        let free = StopTokens { pad_id: stop().pad_id, stop_ids: vec![] };
        let cfg = SamplingConfig::greedy(12);
        let base = generate(model(), &prompts(), &free, &cfg, LoraMode::On).unwrap();
        assert!(base.finish.iter().all(|&f| f == FinishReason::Length));
        assert!(base.responses.iter().all(|r| r.len() == 12));
        // Make row 0's fourth token a stop token: row 0 stops there (inclusive), every row stops
        // at its own first occurrence of it, rows without it run to the limit.
        let stop_id = base.responses[0][3];
        let stopping = StopTokens { pad_id: free.pad_id, stop_ids: vec![stop_id] };
        let run = generate(model(), &prompts(), &stopping, &cfg, LoraMode::On).unwrap();
        for (row, full) in base.responses.iter().enumerate() {
            match full.iter().position(|&t| t == stop_id) {
                Some(i) => {
                    assert_eq!(run.responses[row], full[..=i], "row {row}");
                    assert_eq!(run.finish[row], FinishReason::Stop);
                }
                None => {
                    assert_eq!(&run.responses[row], full);
                    assert_eq!(run.finish[row], FinishReason::Length);
                }
            }
        }
        assert!(run.responses[0].len() <= 4);
        // When every row stopped, generation ends early: R is the longest response.
        let longest = run.responses.iter().map(Vec::len).max().unwrap();
        assert_eq!(run.response_len(), longest);
    }

    #[test]
    fn greedy_follows_the_argmax_and_top_1_is_greedy() {
        let greedy = sample(SamplingConfig::greedy(10));
        let top1 = sample(SamplingConfig { top_k: 1, max_new_tokens: 10, seed: 99, ..SamplingConfig::default() });
        assert_eq!(greedy.responses, top1.responses);
        // That each greedy token is the argmax of the training forward's distribution is checked
        // with the trainer's rescoring: `rl::episode::tests::forward_logprobs_reproduces_the_sampler_logprobs`.
        let lp = greedy.response_logprobs.iter().flatten().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        assert!(lp <= 0.0);
    }

    #[test]
    fn a_seed_reproduces_a_rollout_and_streams_follow_the_prompt() {
        let cfg = SamplingConfig { max_new_tokens: 10, seed: 42, ..SamplingConfig::default() };
        let a = sample(cfg);
        let b = sample(cfg);
        assert_eq!(a.responses, b.responses);
        assert_eq!(a.response_logprobs, b.response_logprobs);
        let c = sample(SamplingConfig { seed: 43, ..cfg });
        assert_ne!(a.responses, c.responses);
        // The last prompt alone, on its batch stream (2), draws what it drew in the batch.
        let alone = generate_with_streams(model(), &prompts()[2..], &[2], &stop(), &cfg, LoraMode::On).unwrap();
        assert_eq!(alone.responses[0], a.responses[2]);
    }

    #[test]
    fn an_observer_sees_every_draw_as_made_and_can_stop_generation() {
        let cfg = SamplingConfig { max_new_tokens: 10, seed: 7, ..SamplingConfig::default() };
        let streams = [0, 1, 2];
        let plain = generate_with_streams(model(), &prompts(), &streams, &stop(), &cfg, LoraMode::On).unwrap();
        let mut seen: Vec<Vec<u32>> = vec![Vec::new(); 3];
        let observed = generate_observed(model(), &prompts(), &streams, &stop(), &cfg, LoraMode::On, &mut |step| {
            for (row, t) in step.iter().enumerate() {
                seen[row].extend(t);
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        // Watching changes nothing, and the draws seen are each row's response, stop included.
        assert_eq!(observed.responses, plain.responses);
        assert_eq!(seen, plain.responses);
        assert!(plain.responses.iter().any(|r| r.len() >= 3), "some row must run three steps for the next check");
        // Stopping after the third step ends generation with the step that was refused.
        let mut steps = 0;
        let err = generate_observed(model(), &prompts(), &streams, &stop(), &cfg, LoraMode::On, &mut |_| {
            steps += 1;
            if steps == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap_err();
        assert!(matches!(err, RolloutError::Cancelled { step: 2 }), "{err}");
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let cfg = SamplingConfig::greedy(4);
        let err = |prompts: &[Vec<u32>], tokens: &StopTokens, cfg: &SamplingConfig| {
            generate(model(), prompts, tokens, cfg, LoraMode::On).unwrap_err().to_string()
        };
        assert!(err(&[], &stop(), &cfg).contains("no prompts"));
        assert!(err(&[vec![1], vec![]], &stop(), &cfg).contains("prompt 1 has no tokens"));
        assert!(err(&[vec![5000]], &stop(), &cfg).contains("token id 5000 (prompt) is outside the model's vocabulary of 4096"));
        let same = StopTokens { pad_id: 7, stop_ids: vec![7] };
        assert!(err(&[vec![1]], &same, &cfg).contains("padding must differ from EOS"));
        let long = SamplingConfig::greedy(2048);
        assert!(err(&[vec![1, 2]], &stop(), &long).contains("exceeds the model's 2048 positions"));
        let bad = SamplingConfig { top_p: 0.0, ..cfg };
        assert!(err(&[vec![1]], &stop(), &bad).contains("top_p must be in (0, 1]"));
        let dropout = generate(model(), &[vec![1]], &stop(), &cfg, LoraMode::Train { seed: 0 }).unwrap_err().to_string();
        assert!(dropout.contains("without LoRA dropout"), "{dropout}");
    }
}
