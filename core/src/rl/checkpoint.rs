//! Checkpoints: everything a resumed run needs to continue exactly where an uninterrupted one
//! would be. `checkpoints/step-N/` holds the RL adapter in PEFT format (`adapter/`), the value head
//! (`value_head.safetensors`), the optimiser moments (`optimizer.safetensors`) and
//! `trainer_state.json` (written last, so a folder without it is an interrupted save and ignored).
//!
//! `log_lengths.json` records the byte length of every append-only log of the run at the
//! checkpoint ([`crate::training::run_dir::LogLengths`]), so a resume cuts each back exactly.
//!
//! Every float is read back bit for bit: serde_json writes an f64 as its shortest decimal that
//! round-trips, but its default parser may land 1 ULP off on 17-digit numbers (β of an adaptive
//! controller), and a resumed run would then drift. The floats of `trainer_state.json` are
//! parsed with Rust's correctly rounded `f64::from_str` ([`exact_f64`]). The tensors (adapter,
//! value head, optimiser moments and step) are safetensors, exact by construction; the learning
//! rate is a function of the step.
//!
//! Randomness needs no saved generator state: every random draw of step `s` comes from ChaCha8
//! streams seeded by `(run.seed, s)` (sampling, mini-batch order, LoRA dropout), so the step number
//! is the RNG state.

use super::shaping::RunningMoments;
use crate::training::cursor::DataCursor;
use crate::training::run_dir::LogLengths;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const TRAINER_STATE: &str = "trainer_state.json";
/// The byte lengths of the run's logs at the checkpoint; absent in checkpoints written before it
/// existed (a resume then cuts logs by their `"step"` fields).
pub const LOG_LENGTHS: &str = "log_lengths.json";
pub const ADAPTER_DIR: &str = "adapter";
pub const VALUE_HEAD: &str = "value_head.safetensors";
pub const OPTIMIZER: &str = "optimizer.safetensors";
/// The format marker of `trainer_state.json`.
pub const FORMAT: &str = "medrl.trainer_state/1";

/// The trainer's own state at the end of a step. β is not part of it: the KL controller owns β,
/// and a checkpoint records the controller's value beside this state (`kl_coef` in
/// `trainer_state.json`, written by [`TrainerState::write`], read back by [`read_kl_coef`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerState {
    /// Format marker, `medrl.trainer_state/1`.
    pub format: String,
    /// Steps completed.
    pub step: u64,
    /// Running moments of the rule rewards (used when `ppo.normalize_rewards`).
    pub reward_moments: RunningMoments,
    /// Next prompt.
    pub cursor: DataCursor,
    /// The run's seed; step `s` draws from streams seeded by `(seed, s)`.
    pub seed: u64,
    /// The rule set the run was scored with, `name@version`, and its sha256: a resume with any
    /// other bytes is refused.
    pub ruleset: String,
    pub ruleset_sha256: String,
}

/// `trainer_state.json`: the [`TrainerState`] fields and β, in this order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: String,
    step: u64,
    /// KL coefficient β after this step's update.
    #[serde(with = "exact_f64")]
    kl_coef: f64,
    reward_moments: ExactMoments,
    cursor: DataCursor,
    seed: u64,
    ruleset: String,
    ruleset_sha256: String,
}

/// [`RunningMoments`] as `trainer_state.json` holds it: the same fields, read exactly.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExactMoments {
    #[serde(with = "exact_f64")]
    mean: f64,
    #[serde(with = "exact_f64")]
    var: f64,
    #[serde(with = "exact_f64")]
    count: f64,
}

impl From<RunningMoments> for ExactMoments {
    fn from(m: RunningMoments) -> Self {
        ExactMoments { mean: m.mean, var: m.var, count: m.count }
    }
}

impl From<ExactMoments> for RunningMoments {
    fn from(m: ExactMoments) -> Self {
        RunningMoments { mean: m.mean, var: m.var, count: m.count }
    }
}

/// An f64 written as serde_json writes it (the shortest decimal that round-trips) and read back
/// from its text with `f64::from_str`, which is correctly rounded, so the value comes back bit
/// for bit. serde_json's own parser is not (its `float_roundtrip` feature would fix that for
/// every document the host parses, rule outputs included, and so change the numbers of runs
/// that never resume).
mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(*x)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        raw.get().parse::<f64>().map_err(|e| serde::de::Error::custom(format!("`{}` is not a number: {e}", raw.get())))
    }
}

impl StateFile {
    fn read(dir: &Path) -> Result<Self, std::io::Error> {
        let path = dir.join(TRAINER_STATE);
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
    }
}

impl TrainerState {
    /// The state a checkpoint folder recorded (its β: [`read_kl_coef`]).
    pub fn read(dir: &Path) -> Result<Self, std::io::Error> {
        let f = StateFile::read(dir)?;
        Ok(TrainerState {
            format: f.format,
            step: f.step,
            reward_moments: f.reward_moments.into(),
            cursor: f.cursor,
            seed: f.seed,
            ruleset: f.ruleset,
            ruleset_sha256: f.ruleset_sha256,
        })
    }

    /// Writes `trainer_state.json` into `dir`, with `kl_coef`, the KL controller's β.
    pub fn write(&self, dir: &Path, kl_coef: f64) -> Result<(), std::io::Error> {
        let file = StateFile {
            format: self.format.clone(),
            step: self.step,
            kl_coef,
            reward_moments: self.reward_moments.into(),
            cursor: self.cursor,
            seed: self.seed,
            ruleset: self.ruleset.clone(),
            ruleset_sha256: self.ruleset_sha256.clone(),
        };
        let text = serde_json::to_string_pretty(&file).expect("the state is plain data");
        // Write then rename, so the marker of a complete checkpoint appears atomically.
        let tmp = dir.join(format!("{TRAINER_STATE}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, dir.join(TRAINER_STATE))
    }
}

/// Writes `log_lengths.json` into `dir` (before [`TrainerState::write`], whose file marks the
/// checkpoint complete).
pub fn write_log_lengths(dir: &Path, lengths: &LogLengths) -> Result<(), std::io::Error> {
    let text = serde_json::to_string_pretty(lengths).expect("lengths are plain data");
    std::fs::write(dir.join(LOG_LENGTHS), text)
}

/// The log lengths a checkpoint recorded; `None` for a checkpoint from before they were recorded.
pub fn read_log_lengths(dir: &Path) -> Result<Option<LogLengths>, std::io::Error> {
    let path = dir.join(LOG_LENGTHS);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let lengths: LogLengths = serde_json::from_str(&text).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
    if lengths.format != crate::training::run_dir::LOG_LENGTHS_FORMAT {
        return Err(std::io::Error::other(format!(
            "{}: format `{}`, this medrl reads `{}`",
            path.display(),
            lengths.format,
            crate::training::run_dir::LOG_LENGTHS_FORMAT
        )));
    }
    Ok(Some(lengths))
}

/// β as a checkpoint folder recorded it, for the KL controller of a resumed run.
pub fn read_kl_coef(dir: &Path) -> Result<f64, std::io::Error> {
    Ok(StateFile::read(dir)?.kl_coef)
}

/// The seed of the stream family for step `step` and purpose `salt` (1 sampling, 2 mini-batch order,
/// 3 dropout): a SplitMix64 finaliser over the run seed, the step and the salt, so neighbouring
/// steps get unrelated streams.
pub fn step_seed(seed: u64, step: u64, salt: u64) -> u64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0.010502989760945793 is the shortest decimal of its f64, and serde_json's default parser
    /// reads it 1 ULP low (…792): a β or a moment like it came back changed before the floats
    /// were read from their text.
    #[test]
    fn floats_come_back_bit_for_bit() {
        let x = 0.010502989760945793_f64;
        let text = serde_json::to_string(&x).unwrap();
        assert_eq!(text, "0.010502989760945793");
        let naive: f64 = serde_json::from_str(&text).unwrap();
        // The premise: this value exercises the bug (if serde_json's default parser becomes
        // exact, exact_f64 can go).
        assert_ne!(naive.to_bits(), x.to_bits(), "serde_json now parses {text} exactly");
        let exact = |x: f64| {
            let dir = tempfile::tempdir().unwrap();
            let s = TrainerState {
                format: FORMAT.into(),
                step: 1,
                reward_moments: RunningMoments { mean: x, var: x / 3.0, count: 7.0 },
                cursor: DataCursor::default(),
                seed: 0,
                ruleset: "r@1".into(),
                ruleset_sha256: "ab".into(),
            };
            s.write(dir.path(), x).unwrap();
            assert_eq!(TrainerState::read(dir.path()).unwrap(), s);
            assert_eq!(read_kl_coef(dir.path()).unwrap().to_bits(), x.to_bits());
        };
        exact(x);
        for bits in [0x3F84_0000_0000_0001u64, 0x3FE5_5555_5555_5555, 0x7FEF_FFFF_FFFF_FFFF, 1] {
            exact(f64::from_bits(bits));
        }
    }

    #[test]
    fn state_round_trips_and_seeds_differ() {
        let dir = tempfile::tempdir().unwrap();
        let s = TrainerState {
            format: FORMAT.into(),
            step: 3,
            reward_moments: RunningMoments { mean: 0.2, var: 0.01, count: 24.0 },
            cursor: DataCursor { epoch: 1, index: 4 },
            seed: 9,
            ruleset: "medical-safety@1.0.0".into(),
            ruleset_sha256: "ab".into(),
        };
        s.write(dir.path(), 0.051).unwrap();
        assert_eq!(TrainerState::read(dir.path()).unwrap(), s);
        assert_eq!(read_kl_coef(dir.path()).unwrap(), 0.051);
        assert!(!dir.path().join("trainer_state.json.tmp").exists());
        assert_ne!(step_seed(9, 1, 1), step_seed(9, 2, 1));
        assert_ne!(step_seed(9, 1, 1), step_seed(9, 1, 2));
        assert_eq!(step_seed(9, 1, 1), step_seed(9, 1, 1));
    }
}
