//! The trainer's configuration: one TOML file, one serde struct per concern, unknown keys refused,
//! a doc line and a default on every field. `--set section.key=value` overrides any field from the
//! command line (parsed as TOML, so `--set ppo.cliprange=0.1` and `--set rules.ruleset="a@1.0.0"`
//! both work); the resolved config is what a run writes to its `config.toml`.

use super::kl::{KlEstimator, KlPlacement};
use super::kl_controller::KlControllerConfig;
use crate::reward::{RuleFlags, RuleSource};
use crate::training::settings::{self, Interval, OverrideShape, Problems, SettingsError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How `medrl train --set` keys look: `section.key`, the section one of the config's tables.
const OVERRIDES: OverrideShape = OverrideShape {
    shape: "section.key=value",
    example: "ppo.cliprange=0.1",
    sections: &["run", "model", "rules", "data", "rollout", "ppo", "kl", "lora"],
};

/// Which policy-gradient method a run uses over the same rollouts and rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// PPO with a value head and GAE (default).
    #[default]
    Ppo,
    /// Critic-free, group-normalised advantages (needs `rollout.group_size ≥ 2`).
    Grpo,
    /// Critic-free, leave-one-out baseline (needs `rollout.group_size ≥ 2`).
    Rloo,
}

/// How the learning rate falls from its peak after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    /// Half a cosine from the peak down to `lr_min_ratio · peak` (default).
    #[default]
    Cosine,
    /// A straight line from the peak down to `lr_min_ratio · peak`.
    Linear,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub run: RunConfig,
    pub model: ModelConfig,
    pub rules: RulesConfig,
    pub data: DataConfig,
    pub rollout: RolloutConfig,
    pub ppo: PpoConfig,
    pub kl: KlConfig,
    pub lora: LoraSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Run name: outputs go to `<out_dir>/<name>/` (default "ppo").
    pub name: String,
    /// Folder holding runs (default "runs").
    pub out_dir: PathBuf,
    /// Seed for data order, sampling and LoRA init (default 0).
    pub seed: u64,
    /// PPO steps (rollout + update) to run (default 40).
    pub steps: u64,
    /// Checkpoint every this many steps, and always at the end (default 10).
    pub save_every: u64,
    /// Samples written to `samples.jsonl` per step (default 4).
    pub log_samples_per_step: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { name: "ppo".into(), out_dir: "runs".into(), seed: 0, steps: 40, save_every: 10, log_samples_per_step: 4 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The base model folder (Hugging Face layout) (default "runs/quickstart/model").
    pub path: PathBuf,
    /// An SFT LoRA adapter merged into the base at load, so "adapter off" is the SFT policy (default none).
    pub sft_adapter: Option<PathBuf>,
    /// An earlier RL adapter the policy starts from (a second round); it must have been trained
    /// on the same base and SFT adapter, with the same `[lora]` shape. The KL reference stays the
    /// SFT policy (adapter off), and the value head starts at zero (default none: a fresh adapter).
    pub init_adapter: Option<PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { path: "runs/quickstart/model".into(), sft_adapter: None, init_adapter: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// The rule set, by exact `name@version` (default "medical-safety@1.0.0").
    pub ruleset: String,
    /// Registry root (default "data").
    pub registry: PathBuf,
    /// Keyring of trusted rule-set signers; the rule set must verify against it (default: the
    /// registry's own, `<registry>/keys/keyring.toml`).
    pub keyring: Option<PathBuf>,
    /// Every accepted revision of each rule set; a lower one is refused (default: the
    /// registry's own, `<registry>/trust-state.jsonl`, the file `medrl rules score` uses too).
    pub trust_state: Option<PathBuf>,
    /// Accept a revision lower than the last accepted one; logged (default false).
    pub allow_rollback: bool,
    /// Score a rule set that cannot be verified (no keyring, too few signatures); printed as a
    /// warning and recorded here and in the audit log (default false).
    pub allow_unsigned: bool,
    /// The operator's ceilings on rule limits, a TOML file (default none: the host's defaults).
    pub host_limits: Option<PathBuf>,
    /// Raises the keyring's `min_signatures` (default none: the keyring's own).
    pub min_signatures: Option<usize>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            ruleset: "medical-safety@1.0.0".into(),
            registry: "data".into(),
            keyring: None,
            trust_state: None,
            allow_rollback: false,
            allow_unsigned: false,
            host_limits: None,
            min_signatures: None,
        }
    }
}

impl RulesConfig {
    /// Where the rule set comes from and how it must be trusted.
    pub fn source(&self) -> RuleSource {
        RuleSource {
            registry: self.registry.clone(),
            keyring: self.keyring.clone(),
            min_signatures: self.min_signatures,
            trust_state: self.trust_state.clone(),
            allow_rollback: self.allow_rollback,
            allow_unsigned: self.allow_unsigned,
            host_limits: self.host_limits.clone(),
        }
    }

    /// Sets the trust settings from `source` (the rule set's name stays).
    pub fn set_source(&mut self, source: &RuleSource) {
        self.registry = source.registry.clone();
        self.keyring = source.keyring.clone();
        self.min_signatures = source.min_signatures;
        self.trust_state = source.trust_state.clone();
        self.allow_rollback = source.allow_rollback;
        self.allow_unsigned = source.allow_unsigned;
        self.host_limits = source.host_limits.clone();
    }

    /// Puts every trust flag given on the command line over this configuration.
    pub fn apply(&mut self, flags: &RuleFlags) {
        let merged = self.source().overridden_by(flags);
        self.set_source(&merged);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Training prompts, JSONL (default "data/rl/training_prompts.jsonl").
    pub prompts: PathBuf,
    /// Reshuffle the prompts each epoch with the run's seed (default true).
    pub shuffle: bool,
    /// Prompts longer than this many tokens are cut from the left (default 256).
    pub max_prompt_tokens: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { prompts: "data/rl/training_prompts.jsonl".into(), shuffle: true, max_prompt_tokens: 256 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Prompts per step (default 8).
    pub prompts_per_step: usize,
    /// Responses per prompt: 1 for PPO, ≥ 2 for GRPO and RLOO (default 1).
    pub group_size: usize,
    /// New tokens per response at most (default 96).
    pub max_new_tokens: usize,
    /// Sampling temperature; logprobs are always recomputed at the same temperature (default 1.0).
    pub temperature: f64,
    /// Keep the k most likely tokens; 0 disables (default 0).
    pub top_k: usize,
    /// Nucleus sampling mass; 1.0 disables (default 1.0).
    pub top_p: f64,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig { prompts_per_step: 8, group_size: 1, max_new_tokens: 96, temperature: 1.0, top_k: 0, top_p: 1.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// PPO, GRPO or RLOO (default "ppo").
    pub algorithm: Algorithm,
    /// Passes over each rollout batch (default 2).
    pub ppo_epochs: usize,
    /// Responses per optimiser step; the batch is split into `batch / mini_batch` updates (default 8).
    pub mini_batch_size: usize,
    /// Micro-batches accumulated into one mini-batch's gradient (default 1).
    pub grad_accum_steps: usize,
    /// Policy ratio clip ε (default 0.2).
    pub cliprange: f64,
    /// Value prediction clip around the rollout's value (default 0.2).
    pub cliprange_value: f64,
    /// Weight of the value loss (default 0.1).
    pub vf_coef: f64,
    /// Discount γ (default 1.0: an episode is one response).
    pub gamma: f32,
    /// GAE λ (default 0.95).
    pub lam: f32,
    /// Whiten advantages over the batch (default true).
    pub whiten_advantages: bool,
    /// Normalise rule rewards with running moments before shaping (default false).
    pub normalize_rewards: bool,
    /// Clip (normalised) rule rewards to ±this (default 5.0).
    pub reward_clip: f32,
    /// Subtracted from the score of a response without EOS (default 0.5).
    pub missing_eos_penalty: f32,
    /// Global gradient-norm clip (default 1.0).
    pub max_grad_norm: f64,
    /// Peak learning rate (default 2e-4: LoRA).
    pub learning_rate: f64,
    /// Warm-up optimiser steps (default 2).
    pub warmup_steps: u64,
    /// Decay after warm-up over the run's planned optimiser steps, `"cosine"` or `"linear"`
    /// (default "cosine").
    pub lr_schedule: LrDecay,
    /// The rate at the end of the decay, as a share of `learning_rate`, in [0, 1] (default 0.1).
    pub lr_min_ratio: f64,
    /// Steps at the start that train only the value head (default 1).
    pub critic_warmup_steps: u64,
    /// Stop a step's update epochs early when the policy's own KL exceeds this (default 0.1).
    pub target_policy_kl: f64,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            algorithm: Algorithm::Ppo,
            ppo_epochs: 2,
            mini_batch_size: 8,
            grad_accum_steps: 1,
            cliprange: 0.2,
            cliprange_value: 0.2,
            vf_coef: 0.1,
            gamma: 1.0,
            lam: 0.95,
            whiten_advantages: true,
            normalize_rewards: false,
            reward_clip: 5.0,
            missing_eos_penalty: 0.5,
            max_grad_norm: 1.0,
            learning_rate: 2e-4,
            warmup_steps: 2,
            lr_schedule: LrDecay::Cosine,
            lr_min_ratio: 0.1,
            critic_warmup_steps: 1,
            target_policy_kl: 0.1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KlConfig {
    /// k1, k2 or k3 (default k1).
    pub estimator: KlEstimator,
    /// "reward" (PPO) or "loss" (GRPO style) (default reward).
    pub placement: KlPlacement,
    /// Fixed or adaptive β (default adaptive: β₀ 0.05, 0.02 nats/token, horizon 10,000).
    pub controller: KlControllerConfig,
    /// The band mean KL per token is reported against: a step outside `[0, band_max_per_token]` is
    /// flagged in `kl_metrics.jsonl` (default 0.2).
    pub band_max_per_token: f64,
}

impl Default for KlConfig {
    fn default() -> Self {
        KlConfig { estimator: KlEstimator::K1, placement: KlPlacement::Reward, controller: KlControllerConfig::default(), band_max_per_token: 0.2 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank r (default 8).
    pub r: usize,
    /// Scaling α (default 16).
    pub alpha: f64,
    /// Dropout on the LoRA input (default 0.0; dropout makes rescoring differ from sampling).
    pub dropout: f64,
    /// Module names to adapt (default all linear layers of attention and MLP).
    pub target_modules: Vec<String>,
    /// Scale by α/√r instead of α/r (default false).
    pub use_rslora: bool,
}

impl Default for LoraSettings {
    fn default() -> Self {
        LoraSettings {
            r: 8,
            alpha: 16.0,
            dropout: 0.0,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"].map(String::from).to_vec(),
            use_rslora: false,
        }
    }
}

impl LoraSettings {
    /// Checks the adapter's settings under `lora.`; `needs_modules` when a LoRA adapter will be
    /// trained (a full fine-tune uses none).
    pub(crate) fn check(&self, p: &mut Problems, needs_modules: bool, d: &LoraSettings) {
        p.at_least(self.r as u64, 1, "lora.r", d.r as u64);
        p.range(self.alpha, "lora.alpha", Interval::above(0.0), d.alpha);
        p.range(self.dropout, "lora.dropout", Interval::closed_open(0.0, 1.0), d.dropout);
        p.need(
            needs_modules && self.target_modules.is_empty(),
            "lora.target_modules",
            "[]",
            "at least one module name for a LoRA run",
            toml::Value::from(d.target_modules.clone()),
        );
    }

    /// The model's adapter configuration.
    pub fn to_model(&self) -> crate::model::LoraConfig {
        crate::model::LoraConfig {
            r: self.r,
            alpha: self.alpha,
            dropout: self.dropout,
            target_modules: self.target_modules.clone(),
            use_rslora: self.use_rslora,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file (unknown keys refused, with their name), applies `--set` overrides
    /// and checks every value before anything is written.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, SettingsError> {
        let (doc, origin) = settings::read_document(path)?;
        Self::from_doc(doc, origin, overrides)
    }

    /// These settings with a file of changes (`--rl-config`) and then `--set` overrides put over
    /// them (the quickstart's RL stage), checked as [`load`](Self::load) checks a file's.
    pub fn overridden(&self, changes: Option<&Path>, overrides: &[String]) -> Result<Self, SettingsError> {
        let (doc, origin) = settings::document_of(self, changes)?;
        Self::from_doc(doc, origin, overrides)
    }

    fn from_doc(mut doc: toml::Table, origin: PathBuf, overrides: &[String]) -> Result<Self, SettingsError> {
        // A mistake is blamed on where it was made: the file when the file alone does not parse,
        // else the `--set` flag whose key the message names (`--set ppo.clipange=0.1`), not the
        // file. Overrides are applied together, since some are only valid together
        // (`kl.controller.kind` with its `coef`).
        settings::parse::<TrainConfig>(&doc).map_err(|message| SettingsError::Parse { path: origin, message })?;
        for o in overrides {
            settings::apply_override(&mut doc, o, &OVERRIDES)?;
        }
        let config: TrainConfig = settings::parse(&doc).map_err(|message| {
            let key = |o: &String| o.split_once('=').map_or(o.as_str(), |(k, _)| k.trim()).to_string();
            let quoted = |name: &str| message.contains(&format!("`{name}`"));
            // The flag whose own key the message is about (its first quoted name: "unknown field
            // `clipange`, expected one of …"), else one whose section it names (`kl.controller`).
            let subject = message.split('`').nth(1).unwrap_or_default();
            let own = overrides.iter().rev().find(|o| key(o).rsplit('.').next() == Some(subject));
            let section = || {
                overrides.iter().rev().find(|o| {
                    let k = key(o);
                    let parts: Vec<&str> = k.split('.').collect();
                    (1..parts.len()).any(|n| quoted(&parts[..n].join(".")))
                })
            };
            let given = own.or_else(section).cloned().unwrap_or_else(|| overrides.join(" --set "));
            SettingsError::Override { given, message }
        })?;
        config.problems().into_result(overrides)?;
        Ok(config)
    }

    /// Checks every numeric setting (finite, in range) and the combinations serde cannot, naming
    /// each problem with its fix. [`Trainer::start`](crate::rl::Trainer::start) calls it before
    /// the run folder exists.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.problems().into_result(&[])
    }

    fn problems(&self) -> Problems {
        let d = TrainConfig::default();
        let mut p = Problems::default();
        let (run, r, o, k) = (&self.run, &self.rollout, &self.ppo, &self.kl);
        p.need(run.name.trim().is_empty() || run.name.contains(['/', '\\']), "run.name", format!("{:?}", run.name), "a folder name", "\"ppo\"");
        p.at_least(run.steps, 1, "run.steps", d.run.steps);
        p.at_least(run.save_every, 1, "run.save_every", d.run.save_every);
        p.at_least(self.data.max_prompt_tokens as u64, 1, "data.max_prompt_tokens", d.data.max_prompt_tokens as u64);
        p.at_least(r.prompts_per_step as u64, 1, "rollout.prompts_per_step", d.rollout.prompts_per_step as u64);
        p.at_least(r.group_size as u64, 1, "rollout.group_size", d.rollout.group_size as u64);
        p.need(
            o.algorithm != Algorithm::Ppo && r.group_size == 1,
            "rollout.group_size",
            r.group_size,
            "at least 2 for GRPO and RLOO (their baseline is the group)",
            4,
        );
        p.at_least(r.max_new_tokens as u64, 1, "rollout.max_new_tokens", d.rollout.max_new_tokens as u64);
        p.range(r.temperature, "rollout.temperature", Interval::above(0.0), d.rollout.temperature);
        p.range(r.top_p, "rollout.top_p", Interval::open_closed(0.0, 1.0), d.rollout.top_p);
        p.at_least(o.ppo_epochs as u64, 1, "ppo.ppo_epochs", d.ppo.ppo_epochs as u64);
        let batch = r.prompts_per_step * r.group_size;
        p.need(
            batch > 0 && (o.mini_batch_size == 0 || !batch.is_multiple_of(o.mini_batch_size)),
            "ppo.mini_batch_size",
            o.mini_batch_size,
            &format!("a divisor of the batch of {batch} responses (rollout.prompts_per_step × rollout.group_size)"),
            largest_divisor_up_to(batch, o.mini_batch_size.max(1)),
        );
        p.need(
            o.grad_accum_steps == 0 || (o.mini_batch_size > 0 && !o.mini_batch_size.is_multiple_of(o.grad_accum_steps)),
            "ppo.grad_accum_steps",
            o.grad_accum_steps,
            &format!("a divisor of ppo.mini_batch_size ({})", o.mini_batch_size),
            largest_divisor_up_to(o.mini_batch_size.max(1), o.grad_accum_steps.max(1)),
        );
        p.range(o.cliprange, "ppo.cliprange", Interval::above(0.0), d.ppo.cliprange);
        p.range(o.cliprange_value, "ppo.cliprange_value", Interval::above(0.0), d.ppo.cliprange_value);
        p.range(o.vf_coef, "ppo.vf_coef", Interval::at_least(0.0), d.ppo.vf_coef);
        p.range(o.gamma as f64, "ppo.gamma", Interval::closed(0.0, 1.0), d.ppo.gamma as f64);
        p.range(o.lam as f64, "ppo.lam", Interval::closed(0.0, 1.0), d.ppo.lam as f64);
        p.range(o.reward_clip as f64, "ppo.reward_clip", Interval::above(0.0), d.ppo.reward_clip as f64);
        p.range(o.missing_eos_penalty as f64, "ppo.missing_eos_penalty", Interval::at_least(0.0), d.ppo.missing_eos_penalty as f64);
        p.range(o.max_grad_norm, "ppo.max_grad_norm", Interval::above(0.0), d.ppo.max_grad_norm);
        p.range(o.learning_rate, "ppo.learning_rate", Interval::open_closed(0.0, 1.0), d.ppo.learning_rate);
        p.range(o.lr_min_ratio, "ppo.lr_min_ratio", Interval::closed(0.0, 1.0), d.ppo.lr_min_ratio);
        p.range(o.target_policy_kl, "ppo.target_policy_kl", Interval::above(0.0), d.ppo.target_policy_kl);
        p.range(k.band_max_per_token, "kl.band_max_per_token", Interval::at_least(0.0), d.kl.band_max_per_token);
        match k.controller {
            KlControllerConfig::Fixed { coef } => p.range(coef, "kl.controller.coef", Interval::at_least(0.0), 0.05),
            KlControllerConfig::Adaptive { init_coef, kl_target_per_token, horizon_samples } => {
                p.range(init_coef, "kl.controller.init_coef", Interval::at_least(0.0), 0.05);
                p.range(kl_target_per_token, "kl.controller.kl_target_per_token", Interval::above(0.0), 0.02);
                p.range(horizon_samples, "kl.controller.horizon_samples", Interval::above(0.0), 10_000.0);
            }
        }
        self.lora.check(&mut p, true, &d.lora);
        p
    }

    /// The resolved configuration as TOML, for the run's `config.toml`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config is plain data")
    }
}

/// The largest divisor of `n` that is at most `k` (at least 1).
pub(crate) fn largest_divisor_up_to(n: usize, k: usize) -> usize {
    (1..=k.min(n).max(1)).rev().find(|d| n.is_multiple_of(*d)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = TrainConfig::load(None, &[]).unwrap();
        assert_eq!(c, TrainConfig::default());
        let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    /// A config file written before the schedule settings existed still loads, with the schedule
    /// the trainer had then: cosine down to 10 % of the peak.
    #[test]
    fn the_schedule_defaults_to_cosine_down_to_a_tenth() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.toml");
        std::fs::write(&path, "[ppo]\nlearning_rate = 1e-3\nwarmup_steps = 0\n").unwrap();
        let c = TrainConfig::load(Some(&path), &[]).unwrap();
        assert_eq!((c.ppo.lr_schedule, c.ppo.lr_min_ratio), (LrDecay::Cosine, 0.1));
        let c = TrainConfig::load(None, &["ppo.lr_schedule=\"linear\"".into(), "ppo.lr_min_ratio=0".into()]).unwrap();
        assert_eq!((c.ppo.lr_schedule, c.ppo.lr_min_ratio), (LrDecay::Linear, 0.0));
    }

    #[test]
    fn overrides_set_any_field() {
        let c = TrainConfig::load(
            None,
            &["ppo.cliprange=0.1".into(), "rules.ruleset=\"x@2.0.0\"".into(), "kl.controller.kind=\"fixed\"".into(), "kl.controller.coef=0.3".into()],
        )
        .unwrap();
        assert_eq!(c.ppo.cliprange, 0.1);
        assert_eq!(c.rules.ruleset, "x@2.0.0");
        assert_eq!(c.kl.controller, KlControllerConfig::Fixed { coef: 0.3 });
        let bare = TrainConfig::load(None, &["run.name=my-run".into()]).unwrap();
        assert_eq!(bare.run.name, "my-run");
    }

    #[test]
    fn a_typo_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.toml");
        std::fs::write(&path, "[ppo]\nclip_range = 0.1\n").unwrap();
        let err = TrainConfig::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(err.contains("clip_range") && err.contains("train.toml"), "{err}");
        let err = TrainConfig::load(None, &["ppo.cliprnage=0.1".into()]).unwrap_err().to_string();
        assert!(err.contains("cliprnage"), "{err}");
        let err = TrainConfig::load(None, &["pop.cliprange=0.1".into()]).unwrap_err().to_string();
        assert!(err.contains("`pop` is not a section"), "{err}");
    }

    #[test]
    fn combinations_are_checked() {
        let err = TrainConfig::load(None, &["ppo.algorithm=\"grpo\"".into()]).unwrap_err().to_string();
        assert!(err.contains("group_size"), "{err}");
        let err = TrainConfig::load(None, &["ppo.mini_batch_size=3".into()]).unwrap_err().to_string();
        assert!(err.contains("`ppo.mini_batch_size` must be a divisor of the batch of 8 responses"), "{err}");
        let err = TrainConfig::load(None, &["ppo.lr_min_ratio=1.5".into()]).unwrap_err().to_string();
        assert!(err.contains("`ppo.lr_min_ratio` must be a finite number in [0, 1] (it is 1.5, from --set ppo.lr_min_ratio=1.5)"), "{err}");
    }

    #[test]
    fn a_typo_in_an_override_is_blamed_on_the_flag_and_one_in_the_file_on_the_file() {
        let err = TrainConfig::load(None, &["ppo.clipange=0.1".into()]).unwrap_err().to_string();
        assert!(err.starts_with("--set ppo.clipange=0.1: unknown field `clipange`, expected one of"), "{err}");
        assert!(err.ends_with("in `ppo`") && !err.contains('\n'), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[ppo]\nclipange = 0.1\n").unwrap();
        let err = TrainConfig::load(Some(&file), &["ppo.cliprange=0.1".into()]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: unknown field `clipange`", file.display())), "{err}");
        // The typo is found among good overrides of the same section.
        let err = TrainConfig::load(None, &["ppo.clipange=0.1".into(), "ppo.cliprange=0.1".into()]).unwrap_err().to_string();
        assert!(err.starts_with("--set ppo.clipange=0.1: "), "{err}");
        // A good override after a good file still applies.
        std::fs::write(&file, "[ppo]\ncliprange = 0.3\n").unwrap();
        assert_eq!(TrainConfig::load(Some(&file), &["ppo.cliprange=0.1".into()]).unwrap().ppo.cliprange, 0.1);
    }

    /// Every numeric setting is checked (finite, in range) with its fix, before a run folder
    /// exists: the operator mistakes a red-team pass found accepted.
    #[test]
    fn every_numeric_setting_is_checked_with_its_fix() {
        for (given, says) in [
            (
                "ppo.learning_rate=nan",
                "`ppo.learning_rate` must be a finite number in (0, 1] (it is nan, from --set ppo.learning_rate=nan); for example --set ppo.learning_rate=0.0002",
            ),
            ("ppo.learning_rate=-1e-4", "`ppo.learning_rate` must be a finite number in (0, 1] (it is -0.0001"),
            ("ppo.cliprange=-0.2", "`ppo.cliprange` must be a finite number > 0 (it is -0.2"),
            ("ppo.cliprange_value=inf", "`ppo.cliprange_value` must be a finite number > 0 (it is inf"),
            ("ppo.ppo_epochs=0", "`ppo.ppo_epochs` must be at least 1 (it is 0, from --set ppo.ppo_epochs=0); for example --set ppo.ppo_epochs=2"),
            ("lora.alpha=-16", "`lora.alpha` must be a finite number > 0 (it is -16.0"),
            ("lora.r=0", "`lora.r` must be at least 1"),
            ("lora.dropout=1", "`lora.dropout` must be a finite number in [0, 1) (it is 1.0"),
            ("run.steps=0", "`run.steps` must be at least 1 (it is 0, from --set run.steps=0); for example --set run.steps=40"),
            ("run.save_every=0", "`run.save_every` must be at least 1"),
            ("rollout.top_p=5", "`rollout.top_p` must be a finite number in (0, 1] (it is 5.0"),
            ("rollout.top_p=0", "`rollout.top_p` must be a finite number in (0, 1] (it is 0.0"),
            ("rollout.temperature=0", "`rollout.temperature` must be a finite number > 0"),
            ("rollout.temperature=nan", "`rollout.temperature` must be a finite number > 0 (it is nan"),
            ("rollout.max_new_tokens=0", "`rollout.max_new_tokens` must be at least 1"),
            ("ppo.vf_coef=-0.1", "`ppo.vf_coef` must be a finite number ≥ 0"),
            ("ppo.gamma=1.5", "`ppo.gamma` must be a finite number in [0, 1]"),
            ("ppo.lam=-0.5", "`ppo.lam` must be a finite number in [0, 1]"),
            ("ppo.max_grad_norm=0", "`ppo.max_grad_norm` must be a finite number > 0"),
            ("ppo.reward_clip=0", "`ppo.reward_clip` must be a finite number > 0"),
            ("ppo.missing_eos_penalty=nan", "`ppo.missing_eos_penalty` must be a finite number ≥ 0"),
            ("ppo.target_policy_kl=-1", "`ppo.target_policy_kl` must be a finite number > 0"),
            ("kl.band_max_per_token=nan", "`kl.band_max_per_token` must be a finite number ≥ 0"),
            ("data.max_prompt_tokens=0", "`data.max_prompt_tokens` must be at least 1"),
            ("run.name=\"../x\"", "`run.name` must be a folder name"),
            (
                "ppo.grad_accum_steps=3",
                "`ppo.grad_accum_steps` must be a divisor of ppo.mini_batch_size (8) (it is 3, from --set ppo.grad_accum_steps=3); for example --set ppo.grad_accum_steps=2",
            ),
        ] {
            let err = TrainConfig::load(None, &[given.to_string()]).unwrap_err();
            assert!(matches!(err, SettingsError::Invalid(_)), "{given}: {err}");
            assert!(err.to_string().contains(says), "{given}: {err}");
        }
        // Several problems are all named.
        let err = TrainConfig::load(None, &["run.steps=0".into(), "ppo.cliprange=-1".into()]).unwrap_err().to_string();
        assert!(err.contains("`run.steps`") && err.contains("`ppo.cliprange`"), "{err}");
        // The fixed controller's β too.
        let err = TrainConfig::load(None, &["kl.controller.kind=\"fixed\"".into(), "kl.controller.coef=nan".into()]).unwrap_err().to_string();
        assert!(err.contains("`kl.controller.coef` must be a finite number ≥ 0 (it is nan"), "{err}");
    }
}
