//! Checkpoints: everything a resumed run needs to continue exactly where an uninterrupted one
//! would be. `checkpoints/step-N/` holds the RL adapter in PEFT format (`adapter/`), the value head
//! (`value_head.safetensors`), the optimiser moments (`optimizer.safetensors`) and
//! `trainer_state.json` (written last, so a folder without it is an interrupted save and ignored).
//!
//! Randomness needs no saved generator state: every random draw of step `s` comes from ChaCha8
//! streams seeded by `(run.seed, s)` (sampling, mini-batch order, LoRA dropout), so the step number
//! is the RNG state.

use super::cursor::DataCursor;
use super::shaping::RunningMoments;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const TRAINER_STATE: &str = "trainer_state.json";
pub const ADAPTER_DIR: &str = "adapter";
pub const VALUE_HEAD: &str = "value_head.safetensors";
pub const OPTIMIZER: &str = "optimizer.safetensors";

/// The trainer's own state at the end of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    /// Format marker, `medrl.trainer_state/1`.
    pub format: String,
    /// Steps completed.
    pub step: u64,
    /// KL coefficient β after this step's update.
    pub kl_coef: f64,
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

pub const FORMAT: &str = "medrl.trainer_state/1";

impl TrainerState {
    pub fn read(dir: &Path) -> Result<Self, std::io::Error> {
        let path = dir.join(TRAINER_STATE);
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text).map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))
    }

    pub fn write(&self, dir: &Path) -> Result<(), std::io::Error> {
        let text = serde_json::to_string_pretty(self).expect("the state is plain data");
        // Write then rename, so the marker of a complete checkpoint appears atomically.
        let tmp = dir.join(format!("{TRAINER_STATE}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, dir.join(TRAINER_STATE))
    }
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

    #[test]
    fn state_round_trips_and_seeds_differ() {
        let dir = tempfile::tempdir().unwrap();
        let s = TrainerState {
            format: FORMAT.into(),
            step: 3,
            kl_coef: 0.051,
            reward_moments: RunningMoments { mean: 0.2, var: 0.01, count: 24.0 },
            cursor: DataCursor { epoch: 1, index: 4 },
            seed: 9,
            ruleset: "medical-safety@1.0.0".into(),
            ruleset_sha256: "ab".into(),
        };
        s.write(dir.path()).unwrap();
        assert_eq!(TrainerState::read(dir.path()).unwrap(), s);
        assert!(!dir.path().join("trainer_state.json.tmp").exists());
        assert_ne!(step_seed(9, 1, 1), step_seed(9, 2, 1));
        assert_ne!(step_seed(9, 1, 1), step_seed(9, 1, 2));
        assert_eq!(step_seed(9, 1, 1), step_seed(9, 1, 1));
    }
}
