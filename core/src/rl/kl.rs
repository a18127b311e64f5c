//! Per-token KL estimators between the policy and the frozen reference, from John Schulman,
//! "Approximating KL Divergence" (http://joschu.net/blog/kl-approx.html). Tokens are sampled from the
//! policy `p`; with `log r = log q_ref − log p`:
//! `k1 = −log r` (unbiased, can be negative per token), `k2 = ½ (log r)²` (biased, low variance),
//! `k3 = (r − 1) − log r` (unbiased and never negative).

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// Which estimator turns per-token log-probabilities into a KL value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `log p − log q_ref`: TRL's default in the reward.
    #[default]
    K1,
    /// `½ (log p − log q_ref)²`.
    K2,
    /// `exp(log q_ref − log p) − 1 − (log q_ref − log p)`: GRPO's choice in the loss.
    K3,
}

/// Where the KL term acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KlPlacement {
    /// Subtracted from the per-token reward before GAE (PPO as in Ziegler et al. 2019); no gradient.
    #[default]
    Reward,
    /// Added to the policy loss as `β · masked_mean(kl)`, with gradient (GRPO, Shao et al. 2024).
    Loss,
}

/// The per-token KL estimate, shape of the inputs (`[batch, len]`).
pub fn kl_per_token(logprobs: &Tensor, ref_logprobs: &Tensor, estimator: KlEstimator) -> Result<Tensor> {
    let log_ratio = (ref_logprobs - logprobs)?; // log r = log q − log p
    match estimator {
        KlEstimator::K1 => log_ratio.neg(),
        KlEstimator::K2 => log_ratio.sqr()?.affine(0.5, 0.0),
        KlEstimator::K3 => (log_ratio.exp()? - 1.0)? - log_ratio,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn estimators_by_hand() {
        let d = Device::Cpu;
        // log p = −1, log q = −2: log r = −1.
        let p = Tensor::new(&[[-1f32]], &d).unwrap();
        let q = Tensor::new(&[[-2f32]], &d).unwrap();
        let v = |e| kl_per_token(&p, &q, e).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((v(KlEstimator::K1) - 1.0).abs() < 1e-6); // −log r = 1
        assert!((v(KlEstimator::K2) - 0.5).abs() < 1e-6); // ½·1
        // e^{−1} − 1 + 1 = 0.367879
        assert!((v(KlEstimator::K3) - 0.367_879_44).abs() < 1e-6);
    }

    #[test]
    fn k3_is_never_negative_and_zero_at_equality() {
        let d = Device::Cpu;
        let p = Tensor::new(&[[-0.1f32, -3.0, -1.0]], &d).unwrap();
        let q = Tensor::new(&[[-2.5f32, -0.2, -1.0]], &d).unwrap();
        let k3 = kl_per_token(&p, &q, KlEstimator::K3).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(k3.iter().all(|&k| k >= 0.0), "{k3:?}");
        assert!(k3[2].abs() < 1e-7);
        let k1 = kl_per_token(&p, &q, KlEstimator::K1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(k1[1] < 0.0, "k1 can be negative on a single token: {k1:?}");
    }
}
