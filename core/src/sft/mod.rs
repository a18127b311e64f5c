//! Supervised fine-tuning on the SFT corpus (prompt → reference answer), with the loss on the
//! answer tokens only, AdamW with warm-up and cosine decay, gradient accumulation and global-norm
//! clipping. Two modes:
//! - LoRA (default): checkpoints and the final adapter in PEFT format; RL merges it into the base,
//!   so "adapter off" is the SFT policy;
//! - full fine-tuning (`full = true`): every weight trained ([`crate::model::full`]); checkpoints
//!   and the final model are Hugging Face model folders, which RL uses as its base.

use crate::data::item::Item;
use crate::model::{CausalLm, LoraMode, Message, ModelError, Tokenizer, TokenizerError, default_dtype, position_ids_for};
use crate::rl::checkpoint::step_seed;
use crate::rollout::token_logprobs;
use crate::training::cursor::epoch_order;
use crate::training::masked::masked_mean;
use crate::training::optim::{AdamW, AdamWConfig, Grads, LrSchedule, clip_scale};
use crate::training::pick_device;
use crate::training::run_dir::{JsonlWriter, OpenMode, RunDir, RunDirError};
use crate::training::tfevents::{self, EventWriter};
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub mod config;

pub use config::SftConfig;

/// Why fine-tuning stopped.
#[derive(Debug, thiserror::Error)]
pub enum SftError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("cannot read the SFT corpus: {0}")]
    Data(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error(transparent)]
    Config(#[from] crate::training::SettingsError),
    #[error(transparent)]
    Events(#[from] crate::training::tfevents::EventsError),
}

/// One training sequence: the chat-formatted prompt and answer, and where the answer starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    /// Tokens before this index are the prompt (no loss).
    pub answer_start: usize,
}

/// Formats `prompt → answer` with the model's chat template. The prompt part is the template with
/// the generation prompt, so the answer tokens are exactly what the policy will later generate,
/// ending with the template's end-of-turn token (EOS).
pub fn example(tokenizer: &Tokenizer, prompt: &str, answer: &str, max_len: usize) -> Result<Example, SftError> {
    let prompt_ids = tokenizer.encode_chat(&[Message::user(prompt)], true)?;
    let mut ids = tokenizer.encode_chat(&[Message::user(prompt), Message::assistant(answer)], false)?;
    if !ids.starts_with(&prompt_ids) {
        return Err(SftError::Invalid(
            "the chat template renders the prompt differently with and without the answer; SFT needs the prompt to be a prefix".into(),
        ));
    }
    // A template may end the turn with a newline after EOS; train up to and including EOS.
    let eos = tokenizer.special().eos.id;
    if let Some(pos) = ids[prompt_ids.len()..].iter().position(|&t| t == eos) {
        ids.truncate(prompt_ids.len() + pos + 1);
    }
    ids.truncate(max_len);
    Ok(Example { answer_start: prompt_ids.len().min(ids.len()), ids })
}

/// One optimiser step, for the progress display.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SftStep {
    pub step: u64,
    /// Optimiser steps of the whole run.
    pub total: u64,
    pub loss: f32,
    pub lr: f64,
    /// Tokens through the model per second since the run started.
    pub tokens_per_s: f64,
}

/// What a finished SFT run reports.
#[derive(Debug, Clone, Serialize)]
pub struct SftSummary {
    pub examples: usize,
    pub optimizer_steps: u64,
    pub first_loss: f32,
    pub last_loss: f32,
    pub tokens_per_s: f64,
    /// Whether every weight was trained (then `output` is a model folder, else a PEFT adapter).
    pub full: bool,
    /// `<out>/adapter` (LoRA) or `<out>/model` (full fine-tuning).
    pub output: PathBuf,
}

/// Trains the adapter (or, with `full`, every weight) and writes it to `<out>/adapter` (or `<out>/model`), with the
/// resolved settings in `<out>/config.toml`. The settings are checked first ([`SftConfig::validate`]): a bad value
/// writes nothing. `on_step` sees every optimiser step (the CLI's progress display).
pub fn run(cfg: &SftConfig, overwrite: bool, mut on_step: impl FnMut(&SftStep)) -> Result<SftSummary, SftError> {
    // Every setting is checked before the model loads or anything is written.
    cfg.validate()?;
    if cfg.out.exists() && !overwrite {
        return Err(RunDirError::Exists(cfg.out.clone()).into());
    }
    let device = pick_device();
    let mut model = CausalLm::load(&cfg.model, &device, default_dtype(&device))?;
    let tokenizer = Tokenizer::load(&cfg.model)?;
    // read_jsonl refuses an empty file, so there is at least one item (and one example).
    let items: Vec<Item> = crate::io::read_jsonl(&cfg.data).map_err(|e| SftError::Data(e.to_string()))?;
    let examples: Vec<Example> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let answer = item.answer.as_deref().ok_or_else(|| {
                SftError::Data(format!("{}:{}: item `{}` has no `answer`; SFT needs reference answers", cfg.data.display(), i + 1, item.id))
            })?;
            example(&tokenizer, &item.prompt, answer, cfg.max_seq_len)
        })
        .collect::<Result<_, _>>()?;
    let out = RunDir::open(&cfg.out, if overwrite { OpenMode::Overwrite } else { OpenMode::Fresh })?;
    // The resolved settings, which `medrl sft --config <out>/config.toml` reads back.
    let config_path = cfg.out.join("config.toml");
    std::fs::write(&config_path, cfg.to_toml()).map_err(|source| SftError::Io { path: config_path.clone(), source })?;
    let mut metrics = JsonlWriter::append(&out.metrics())?;
    let mut events = EventWriter::append(&out.events(), tfevents::now())?;

    let vars = if cfg.full {
        model.unfreeze_all()?;
        model.named_full_vars()
    } else {
        model.attach_lora(cfg.lora.to_model(), cfg.seed)?;
        model.named_trainable_vars()
    };
    let mut opt = AdamW::new(vars, AdamWConfig::default())?;
    let save = |model: &CausalLm, dir: &Path| -> Result<PathBuf, SftError> {
        let path = dir.join(if cfg.full { "model" } else { "adapter" });
        if cfg.full {
            model.save_full(&path)?
        } else {
            model.save_adapter(&path)?
        }
        Ok(path)
    };
    let steps_per_epoch = examples.len().div_ceil(cfg.batch_size) as u64;
    let total = steps_per_epoch * cfg.epochs as u64;
    let schedule = LrSchedule { peak: cfg.learning_rate, warmup_steps: cfg.warmup_steps, total_steps: total, min_ratio: 0.1, cosine: true };
    let pad = tokenizer.special().pad.id;
    let micro = cfg.batch_size / cfg.grad_accum_steps;
    let (mut first_loss, mut last_loss, mut tokens) = (f32::NAN, f32::NAN, 0usize);
    let started = Instant::now();
    for epoch in 0..cfg.epochs {
        let order = epoch_order(examples.len(), cfg.seed, epoch as u64, true);
        let batches: Vec<Vec<usize>> = if cfg.group_by_length {
            length_grouped_batches(&order, |i| examples[i].ids.len(), cfg.batch_size)
        } else {
            order.chunks(cfg.batch_size).map(<[usize]>::to_vec).collect()
        };
        for batch in &batches {
            let step = opt.step_count() + 1;
            let mut grads: Option<Grads> = None;
            let mut loss_sum = 0f32;
            for (m, mc) in batch.chunks(micro).enumerate() {
                let exs: Vec<&Example> = mc.iter().map(|&i| &examples[i]).collect();
                let lora = if cfg.lora.dropout > 0.0 && !cfg.full {
                    LoraMode::Train { seed: step_seed(cfg.seed, step, 3) ^ m as u64 }
                } else {
                    LoraMode::On
                };
                let loss = answer_loss(&model, &exs, pad, &device, lora)?;
                let weighted = (loss * (mc.len() as f64 / batch.len() as f64))?;
                loss_sum += weighted.to_scalar::<f32>()?;
                tokens += exs.iter().map(|e| e.ids.len()).sum::<usize>();
                let g = opt.grads_of(&weighted.backward()?);
                match &mut grads {
                    Some(acc) => acc.add(g)?,
                    None => grads = Some(g),
                }
            }
            let grads = grads.expect("a batch has at least one example");
            let norm = grads.global_norm()?;
            let lr = schedule.at(opt.step_count());
            if loss_sum.is_finite() && norm.is_finite() {
                opt.step(&grads, lr, clip_scale(norm, cfg.max_grad_norm))?;
            } else {
                tracing::warn!(step, "skipped an SFT step with a non-finite loss or gradient");
            }
            if first_loss.is_nan() {
                first_loss = loss_sum;
            }
            last_loss = loss_sum;
            let tokens_per_s = tokens as f64 / started.elapsed().as_secs_f64();
            let row = serde_json::json!({"step": step, "epoch": epoch, "loss": loss_sum, "lr": lr, "grad_norm": norm, "tokens_per_s": tokens_per_s});
            metrics.write(&row)?;
            events.write_scalars(step, tfevents::now(), &crate::runs::scalars::sft_step(&row))?;
            on_step(&SftStep { step, total, loss: loss_sum, lr, tokens_per_s });
            if cfg.save_every > 0 && step % cfg.save_every == 0 {
                save(&model, &out.checkpoint(step))?;
            }
        }
    }
    let output = save(&model, &cfg.out)?;
    Ok(SftSummary {
        examples: examples.len(),
        optimizer_steps: opt.step_count(),
        first_loss,
        last_loss,
        tokens_per_s: tokens as f64 / started.elapsed().as_secs_f64(),
        full: cfg.full,
        output,
    })
}

/// Batches per sorted run in [`length_grouped_batches`]: long enough that neighbours in a run
/// have similar lengths, short enough that the epoch stays well mixed.
const BATCHES_PER_LENGTH_GROUP: usize = 32;

/// Cuts a shuffled order into batches of similar length: runs of `BATCHES_PER_LENGTH_GROUP`
/// batches are sorted by length (longest first, ties by position, so the result is a pure
/// function of the order) and cut into batches. Every index appears exactly once, and the batch
/// count is the same as plain chunking. The same idea as Hugging Face's `group_by_length`.
pub fn length_grouped_batches(order: &[usize], len: impl Fn(usize) -> usize, batch_size: usize) -> Vec<Vec<usize>> {
    let batch_size = batch_size.max(1);
    let mut batches = Vec::with_capacity(order.len().div_ceil(batch_size));
    for run in order.chunks(batch_size * BATCHES_PER_LENGTH_GROUP) {
        let mut run = run.to_vec();
        run.sort_by_key(|&i| std::cmp::Reverse(len(i)));
        batches.extend(run.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches
}

/// Mean negative log-likelihood of the answer tokens of right-padded examples.
pub fn answer_loss(model: &CausalLm, exs: &[&Example], pad: u32, device: &Device, lora: LoraMode) -> Result<Tensor, SftError> {
    let t = exs.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    if t < 2 {
        return Err(SftError::Invalid("an example needs at least two tokens".into()));
    }
    let b = exs.len();
    let mut ids = Vec::with_capacity(b * t);
    let mut mask_rows = Vec::with_capacity(b);
    let mut label_mask = Vec::with_capacity(b * (t - 1));
    for e in exs {
        let n = e.ids.len();
        ids.extend(e.ids.iter().copied().chain(std::iter::repeat_n(pad, t - n)));
        mask_rows.push([vec![1u8; n], vec![0u8; t - n]].concat());
        // Target at column j is token j + 1: counted when it is an answer token.
        label_mask.extend((1..t).map(|j| if j >= e.answer_start && j < n { 1f32 } else { 0f32 }));
    }
    let input = Tensor::from_vec(ids, (b, t), device)?;
    let positions = position_ids_for(&mask_rows, device)?;
    let mask = Tensor::from_vec(mask_rows.concat(), (b, t), device)?;
    let logits = model.forward(&input, &positions, &mask, None, lora)?;
    let lp = token_logprobs(&logits.narrow(1, 0, t - 1)?, &input.narrow(1, 1, t - 1)?, 1.0)?;
    let labels = Tensor::from_vec(label_mask, (b, t - 1), device)?;
    Ok(masked_mean(&lp, &labels)?.neg()?)
}

/// The final adapter of an SFT output folder.
pub fn adapter_dir(out: &Path) -> PathBuf {
    out.join("adapter")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_grouping_keeps_every_example_once_and_cuts_padding() {
        // 300 examples of pseudo-random lengths in a shuffled order.
        let lens: Vec<usize> = (0..300).map(|i| 20 + (i * 7919) % 361).collect();
        let order = epoch_order(lens.len(), 3, 0, true);
        let grouped = length_grouped_batches(&order, |i| lens[i], 8);
        let plain: Vec<Vec<usize>> = order.chunks(8).map(<[usize]>::to_vec).collect();
        assert_eq!(grouped.len(), plain.len());
        let mut seen: Vec<usize> = grouped.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        let padded = |bs: &[Vec<usize>]| bs.iter().map(|b| b.iter().map(|&i| lens[i]).max().unwrap() * b.len()).sum::<usize>();
        let real: usize = lens.iter().sum();
        let (p, g) = (padded(&plain) as f64 / real as f64, padded(&grouped) as f64 / real as f64);
        assert!(g < 1.1 && p > 1.3, "padded/real tokens: plain {p:.3}, grouped {g:.3}");
        // Within a run, batches go longest first.
        let first_max = grouped[0].iter().map(|&i| lens[i]).max().unwrap();
        let second_max = grouped[1].iter().map(|&i| lens[i]).max().unwrap();
        assert!(first_max >= second_max);
    }

    #[test]
    fn length_grouping_is_a_pure_function_of_the_order() {
        let lens = [5usize, 5, 9, 1, 9, 5];
        let order = [3usize, 0, 2, 5, 1, 4];
        // One run (2 × 32 ≥ 6): sorted longest first, ties in order position (2 before 4; 0, 5, 1).
        assert_eq!(length_grouped_batches(&order, |i| lens[i], 2), vec![vec![2, 4], vec![0, 5], vec![1, 3]]);
    }
}
