//! Generalised advantage estimation and whitening, per "The N Implementation Details of RLHF with
//! PPO" (Huang et al., 2024, https://iclr-blogposts.github.io/2024/blog/the-n-implementation-details-of-rlhf-with-ppo/)
//! and Schulman et al. 2016 (https://arxiv.org/abs/1506.02438).

/// GAE over one response of `T` tokens.
///
/// `rewards[t]` is the per-token reward (KL penalty on every token, the rule score added on the last
/// real token), `values[t]` the value head's estimate before token `t`. With `gamma = 1` (RLHF
/// episodes are one response) and `lam` the GAE λ:
/// `delta_t = r_t + γ·V_{t+1} − V_t` (with `V_T = 0`),
/// `A_t = delta_t + γλ·A_{t+1}`, and the value targets `returns_t = A_t + V_t`.
/// Returns `(advantages, returns)`, each of length `T`.
pub fn gae(rewards: &[f32], values: &[f32], gamma: f32, lam: f32) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(rewards.len(), values.len(), "one value per reward");
    let t_len = rewards.len();
    let mut advantages = vec![0f32; t_len];
    let mut lastgaelam = 0f32;
    for t in (0..t_len).rev() {
        let nextvalues = if t + 1 < t_len { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * nextvalues - values[t];
        lastgaelam = delta + gamma * lam * lastgaelam;
        advantages[t] = lastgaelam;
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    (advantages, returns)
}

/// Whitens `xs` over the whole batch: `(x − mean) / sqrt(var + 1e-8)` with the unbiased variance,
/// as TRL's `masked_whiten`. With `shift_mean = false` the mean is added back (used for rewards,
/// whose sign carries meaning). Fewer than two values are returned centred only (no variance to
/// divide by).
pub fn whiten(xs: &[f32], shift_mean: bool) -> Vec<f32> {
    let n = xs.len();
    if n == 0 {
        return Vec::new();
    }
    let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
    let scale = if n > 1 {
        let var = xs.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        1.0 / (var + 1e-8).sqrt()
    } else {
        1.0
    };
    let back = if shift_mean { 0.0 } else { mean };
    xs.iter().map(|&x| ((f64::from(x) - mean) * scale + back) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn gae_by_hand() {
        // r = [0, 0, 1], V = [0.5, 0.5, 0.5], γ = 1, λ = 0.5
        // t=2: δ = 1 + 0 − 0.5 = 0.5;            A2 = 0.5
        // t=1: δ = 0 + 0.5 − 0.5 = 0;            A1 = 0 + 0.5·0.5 = 0.25
        // t=0: δ = 0 + 0.5 − 0.5 = 0;            A0 = 0 + 0.5·0.25 = 0.125
        // returns = A + V = [0.625, 0.75, 1.0]
        let (a, r) = gae(&[0., 0., 1.], &[0.5, 0.5, 0.5], 1.0, 0.5);
        close(&a, &[0.125, 0.25, 0.5]);
        close(&r, &[0.625, 0.75, 1.0]);
    }

    #[test]
    fn gae_with_lambda_one_is_monte_carlo() {
        // γ = λ = 1: A_t = Σ_{k≥t} r_k − V_t, so returns are the reward-to-go.
        let (a, r) = gae(&[0.1, -0.2, 1.0], &[0.3, 0.1, 0.7], 1.0, 1.0);
        close(&r, &[0.9, 0.8, 1.0]);
        close(&a, &[0.6, 0.7, 0.3]);
    }

    #[test]
    fn whiten_by_hand() {
        // xs = [1, 2, 3]: mean 2, unbiased var 1, so whitened = [−1, 0, 1] (to 1e-8).
        close(&whiten(&[1., 2., 3.], true), &[-1., 0., 1.]);
        // Without shifting the mean: [1, 2, 3].
        close(&whiten(&[1., 2., 3.], false), &[1., 2., 3.]);
        close(&whiten(&[4.], true), &[0.]);
        assert!(whiten(&[], true).is_empty());
    }
}
