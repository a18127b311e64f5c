//! The KL coefficient β: fixed, or adapted toward a per-token target as in Ziegler et al. 2019,
//! "Fine-Tuning Language Models from Human Preferences" (https://arxiv.org/abs/1909.08593), §2.2:
//! `e_t = clip(KL_t / KL_target − 1, −0.2, 0.2)`, `β_{t+1} = β_t · (1 + K_β · e_t)` with
//! `K_β = n_steps / horizon`.

use serde::{Deserialize, Serialize};

/// How β is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum KlControllerConfig {
    /// β stays at `coef`.
    Fixed {
        /// The KL coefficient β.
        coef: f64,
    },
    /// β moves toward the value that keeps the mean per-token KL at `kl_target_per_token`.
    Adaptive {
        /// Initial β (TRL's default 0.2 is for full-size models; 0.05 suits LoRA).
        init_coef: f64,
        /// Target KL per response token, in nats.
        kl_target_per_token: f64,
        /// Samples over which the error is corrected (Ziegler et al.: 10,000).
        horizon_samples: f64,
    },
}

impl Default for KlControllerConfig {
    /// Adaptive, β₀ = 0.05, 0.02 nats per token, horizon 10,000 samples.
    fn default() -> Self {
        KlControllerConfig::Adaptive { init_coef: 0.05, kl_target_per_token: 0.02, horizon_samples: 10_000.0 }
    }
}

/// The controller and its state, β: the one owner of β in a run. A checkpoint records β
/// ([`Self::coef`]) and a resumed run gives it back ([`Self::resumed`]), so it continues exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KlController {
    pub config: KlControllerConfig,
    coef: f64,
}

impl KlController {
    /// β starts at the configured `coef` (fixed) or `init_coef` (adaptive).
    pub fn new(config: KlControllerConfig) -> Self {
        let coef = match config {
            KlControllerConfig::Fixed { coef } => coef,
            KlControllerConfig::Adaptive { init_coef, .. } => init_coef,
        };
        KlController { config, coef }
    }

    /// The controller of a resumed run, at the β its checkpoint recorded.
    pub fn resumed(config: KlControllerConfig, coef: f64) -> Self {
        KlController { config, coef }
    }

    /// The current β.
    pub fn coef(&self) -> f64 {
        self.coef
    }

    /// Updates β after a step whose mean per-token KL was `kl_per_token` over `n_samples` responses.
    /// A non-finite KL leaves β unchanged (that step is skipped anyway).
    pub fn update(&mut self, kl_per_token: f64, n_samples: usize) {
        if let KlControllerConfig::Adaptive { kl_target_per_token, horizon_samples, .. } = self.config {
            if !kl_per_token.is_finite() {
                return;
            }
            let proportional_error = (kl_per_token / kl_target_per_token - 1.0).clamp(-0.2, 0.2);
            let mult = 1.0 + proportional_error * n_samples as f64 / horizon_samples;
            self.coef *= mult;
        }
    }

    /// The per-token target, when adaptive.
    pub fn target(&self) -> Option<f64> {
        match self.config {
            KlControllerConfig::Fixed { .. } => None,
            KlControllerConfig::Adaptive { kl_target_per_token, .. } => Some(kl_target_per_token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_by_hand() {
        let mut c = KlController::new(KlControllerConfig::Adaptive { init_coef: 0.1, kl_target_per_token: 0.02, horizon_samples: 1000.0 });
        // KL 0.03 vs 0.02: error 0.5 clipped to 0.2; mult = 1 + 0.2·100/1000 = 1.02 → β = 0.102.
        c.update(0.03, 100);
        assert!((c.coef() - 0.102).abs() < 1e-12);
        // KL 0.019: error −0.05; mult = 1 − 0.05·100/1000 = 0.995 → β = 0.10149.
        c.update(0.019, 100);
        assert!((c.coef() - 0.102 * 0.995).abs() < 1e-12);
        c.update(f64::NAN, 100);
        assert!((c.coef() - 0.102 * 0.995).abs() < 1e-12);
    }

    #[test]
    fn fixed_never_moves() {
        let mut c = KlController::new(KlControllerConfig::Fixed { coef: 0.05 });
        c.update(10.0, 64);
        assert_eq!(c.coef(), 0.05);
        assert_eq!(c.target(), None);
    }
}
