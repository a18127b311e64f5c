//! The trainer's configuration: one TOML file, one serde struct per concern, unknown keys refused,
//! a doc line and a default on every field. `--set section.key=value` overrides any field from the
//! command line (parsed as TOML, so `--set ppo.cliprange=0.1` and `--set rules.ruleset="a@1.0.0"`
//! both work); the resolved config is what a run writes to its `config.toml`.

use super::kl::{KlEstimator, KlPlacement};
use super::kl_controller::KlControllerConfig;
use crate::reward::{RuleFlags, RuleSource};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("override `{given}` is not `section.key=value`; for example --set ppo.cliprange=0.1")]
    OverrideSyntax { given: String },
    #[error("override `{given}`: `{section}` is not a section; sections are run, model, rules, data, rollout, ppo, kl, lora")]
    OverrideSection { given: String, section: String },
    #[error("--set {given}: {message}")]
    Override { given: String, message: String },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

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
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { path: "runs/quickstart/model".into(), sft_adapter: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// The rule set, by exact `name@version` (default "medical-safety@1.0.0").
    pub ruleset: String,
    /// Registry root (default "data").
    pub registry: PathBuf,
    /// Keyring of trusted rule-set signers; when set, the rule set must verify (default none).
    pub keyring: Option<PathBuf>,
    /// The last accepted revision of each rule set; a lower one is refused (default with a
    /// keyring: ".medrl/trust-state.json", the file `medrl rules score` uses too).
    pub trust_state: Option<PathBuf>,
    /// Accept a revision lower than the last accepted one; logged (default false).
    pub allow_rollback: bool,
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
        }
    }

    /// Sets the trust settings from `source` (the rule set's name stays).
    pub fn set_source(&mut self, source: &RuleSource) {
        self.registry = source.registry.clone();
        self.keyring = source.keyring.clone();
        self.min_signatures = source.min_signatures;
        self.trust_state = source.trust_state.clone();
        self.allow_rollback = source.allow_rollback;
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
    /// Reads a TOML file (unknown keys refused, with their name) and applies `--set` overrides.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let (doc, origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                let doc: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse { path: p.to_path_buf(), message: e.to_string() })?;
                (doc, p.to_path_buf())
            }
            None => (toml::Table::new(), PathBuf::from("<defaults>")),
        };
        Self::from_doc(doc, origin, overrides)
    }

    /// These settings with `--set` overrides put over them (the quickstart's RL stage), checked
    /// as [`load`](Self::load) checks a file's.
    pub fn overridden(&self, overrides: &[String]) -> Result<Self, ConfigError> {
        let doc = toml::Table::try_from(self).map_err(|e| ConfigError::Parse { path: "<quickstart>".into(), message: e.to_string() })?;
        Self::from_doc(doc, PathBuf::from("<quickstart>"), overrides)
    }

    fn from_doc(mut doc: toml::Table, origin: PathBuf, overrides: &[String]) -> Result<Self, ConfigError> {
        // A mistake is blamed on where it was made: the file when the file alone does not parse,
        // else the `--set` flag whose key the message names (`--set ppo.clipange=0.1`), not the
        // file. Overrides are applied together, since some are only valid together
        // (`kl.controller.kind` with its `coef`).
        let parse = |doc: &toml::Table| toml::Value::Table(doc.clone()).try_into::<TrainConfig>().map_err(|e| one_line(&e.to_string()));
        parse(&doc).map_err(|message| ConfigError::Parse { path: origin, message })?;
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let config = parse(&doc).map_err(|message| {
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
            ConfigError::Override { given, message }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the combinations serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.rollout;
        let p = &self.ppo;
        if r.prompts_per_step == 0 || r.group_size == 0 || r.max_new_tokens == 0 {
            return Err(ConfigError::Invalid("rollout.prompts_per_step, group_size and max_new_tokens must be at least 1".into()));
        }
        if p.algorithm != Algorithm::Ppo && r.group_size < 2 {
            return Err(ConfigError::Invalid(format!("ppo.algorithm = {:?} needs rollout.group_size ≥ 2 (it is {})", p.algorithm, r.group_size)));
        }
        let batch = r.prompts_per_step * r.group_size;
        if p.mini_batch_size == 0 || !batch.is_multiple_of(p.mini_batch_size) {
            return Err(ConfigError::Invalid(format!("ppo.mini_batch_size {} must divide the batch of {batch} responses", p.mini_batch_size)));
        }
        if p.grad_accum_steps == 0 || !p.mini_batch_size.is_multiple_of(p.grad_accum_steps) {
            return Err(ConfigError::Invalid(format!(
                "ppo.grad_accum_steps {} must divide ppo.mini_batch_size {}",
                p.grad_accum_steps, p.mini_batch_size
            )));
        }
        if !(0.0..=1.0).contains(&p.lr_min_ratio) {
            return Err(ConfigError::Invalid(format!("ppo.lr_min_ratio must be in [0, 1] (it is {})", p.lr_min_ratio)));
        }
        if r.temperature.is_nan() || r.temperature <= 0.0 {
            return Err(ConfigError::Invalid(format!("rollout.temperature must be > 0 (it is {})", r.temperature)));
        }
        if self.run.save_every == 0 {
            return Err(ConfigError::Invalid("run.save_every must be at least 1".into()));
        }
        Ok(())
    }

    /// The resolved configuration as TOML, for the run's `config.toml`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config is plain data")
    }
}

fn apply_override(doc: &mut toml::Table, given: &str) -> Result<(), ConfigError> {
    let syntax = || ConfigError::OverrideSyntax { given: given.to_string() };
    let (key, value) = given.split_once('=').ok_or_else(syntax)?;
    let (section, field) = key.trim().split_once('.').ok_or_else(syntax)?;
    const SECTIONS: [&str; 8] = ["run", "model", "rules", "data", "rollout", "ppo", "kl", "lora"];
    if !SECTIONS.contains(&section) {
        return Err(ConfigError::OverrideSection { given: given.to_string(), section: section.to_string() });
    }
    // A value is TOML (numbers, booleans, quoted strings, arrays); a bare word is taken as a string.
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.trim().to_string()));
    let table = doc.entry(section.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let mut cursor = table.as_table_mut().ok_or_else(syntax)?;
    let parts: Vec<&str> = field.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        cursor = cursor.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new())).as_table_mut().ok_or_else(syntax)?;
    }
    cursor.insert(parts[parts.len() - 1].to_string(), parsed);
    Ok(())
}

/// toml's message on one line ("unknown field `x`, expected one of … in `ppo`").
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
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
        assert!(err.contains("must divide"), "{err}");
        let err = TrainConfig::load(None, &["ppo.lr_min_ratio=1.5".into()]).unwrap_err().to_string();
        assert!(err.contains("ppo.lr_min_ratio must be in [0, 1] (it is 1.5)"), "{err}");
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
}
