//! Turning one response's rule reward into per-token PPO rewards, per "The N Implementation Details
//! of RLHF with PPO": the score lands on the real last token of the response (not a pad), the KL
//! penalty on every token, a response that never emitted EOS can be penalised (TRL's
//! `missing_eos_penalty`), and scores are normalised with running moments and clipped.

use serde::{Deserialize, Serialize};

/// `r_t = −β·kl_t` for every response token, plus `score` on the last one. An empty response gets
/// no tokens, so no reward (the caller excludes it from the update).
pub fn token_rewards(score: f32, kl: &[f32], kl_coef: f32) -> Vec<f32> {
    let mut rewards: Vec<f32> = kl.iter().map(|k| -kl_coef * k).collect();
    if let Some(last) = rewards.last_mut() {
        *last += score;
    }
    rewards
}

/// Subtracts `penalty` from the score of a response that hit the length limit without EOS, so
/// truncated rambling is never rewarded for what it happened to contain.
pub fn apply_missing_eos(score: f32, ended_with_eos: bool, penalty: f32) -> f32 {
    if ended_with_eos { score } else { score - penalty }
}

/// Running mean and variance of rule rewards over the whole run (Chan et al.'s parallel update, as
/// TRL's `RunningMoments`). Kept in the trainer state so a resumed run normalises identically.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct RunningMoments {
    pub mean: f64,
    pub var: f64,
    pub count: f64,
}

impl RunningMoments {
    /// Folds a batch in.
    pub fn update(&mut self, xs: &[f32]) {
        if xs.is_empty() {
            return;
        }
        let n = xs.len() as f64;
        let batch_mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let batch_var = xs.iter().map(|&x| (f64::from(x) - batch_mean).powi(2)).sum::<f64>() / n;
        let delta = batch_mean - self.mean;
        let total = self.count + n;
        let m2 = self.var * self.count + batch_var * n + delta * delta * self.count * n / total;
        self.mean += delta * n / total;
        self.var = m2 / total;
        self.count = total;
    }

    /// `(x − mean) / std`, then clipped to `±clip`; identity scaling until two values are seen.
    pub fn normalize(&self, x: f32, clip: f32) -> f32 {
        let std = if self.count > 1.0 { self.var.sqrt().max(1e-6) } else { 1.0 };
        (((f64::from(x) - self.mean) / std) as f32).clamp(-clip, clip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_lands_on_last_token() {
        // kl = [0.1, 0.2, 0.3], β = 0.5: [−0.05, −0.1, −0.15 + 1]
        let r = token_rewards(1.0, &[0.1, 0.2, 0.3], 0.5);
        let want = [-0.05, -0.1, 0.85];
        assert!(r.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{r:?}");
        assert!(token_rewards(1.0, &[], 0.5).is_empty());
    }

    #[test]
    fn missing_eos_penalised() {
        assert_eq!(apply_missing_eos(0.5, true, 1.0), 0.5);
        assert_eq!(apply_missing_eos(0.5, false, 1.0), -0.5);
    }

    #[test]
    fn running_moments_match_the_whole_population() {
        // Two batches [1, 2] and [3, 4, 5] equal one batch [1..5]: mean 3, population var 2.
        let mut m = RunningMoments::default();
        m.update(&[1., 2.]);
        m.update(&[3., 4., 5.]);
        assert!((m.mean - 3.0).abs() < 1e-12 && (m.var - 2.0).abs() < 1e-12 && m.count == 5.0);
        // (5 − 3)/√2 = 1.414, clipped to 1.
        assert_eq!(m.normalize(5.0, 1.0), 1.0);
        assert!((m.normalize(4.0, 5.0) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    }
}
