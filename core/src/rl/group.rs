//! Critic-free advantages over groups of responses to the same prompt.
//! GRPO: Shao et al. 2024, "DeepSeekMath" (https://arxiv.org/abs/2402.03300), §4.1.2: outcome
//! supervision `A_i = (r_i − mean(r)) / std(r)`. RLOO: Ahmadian et al. 2024, "Back to Basics"
//! (https://arxiv.org/abs/2402.14740): `A_i = r_i − mean_{j≠i} r_j`.
//! `rewards` holds `groups` consecutive runs of `group_size` responses (one run per prompt).

/// GRPO's group-normalised advantage; `scale_by_std = false` gives Dr. GRPO's unscaled variant
/// (Liu et al. 2025, https://arxiv.org/abs/2503.20783). The std is the sample std (n − 1) plus 1e-4, so
/// a group of identical rewards gets advantage 0, not NaN.
pub fn grpo_advantages(rewards: &[f32], group_size: usize, scale_by_std: bool) -> Vec<f32> {
    assert!(group_size > 0 && rewards.len().is_multiple_of(group_size), "rewards come in whole groups");
    rewards
        .chunks(group_size)
        .flat_map(|g| {
            let n = g.len() as f32;
            let mean = g.iter().sum::<f32>() / n;
            let std = if g.len() > 1 { (g.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / (n - 1.0)).sqrt() } else { 0.0 };
            g.iter().map(move |r| if scale_by_std { (r - mean) / (std + 1e-4) } else { r - mean })
        })
        .collect()
}

/// RLOO's leave-one-out baseline. Needs `group_size ≥ 2`.
pub fn rloo_advantages(rewards: &[f32], group_size: usize) -> Vec<f32> {
    assert!(group_size >= 2 && rewards.len().is_multiple_of(group_size), "RLOO needs whole groups of at least 2");
    rewards
        .chunks(group_size)
        .flat_map(|g| {
            let sum: f32 = g.iter().sum();
            let k = g.len() as f32;
            g.iter().map(move |r| r - (sum - r) / (k - 1.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpo_by_hand() {
        // group [1, 0, 0, 1]: mean 0.5, sample std sqrt(1/3) = 0.57735 → ±0.5/0.57745 = ±0.86588
        let a = grpo_advantages(&[1., 0., 0., 1., 0.3, 0.3, 0.3, 0.3], 4, true);
        assert!((a[0] - 0.865_88).abs() < 1e-4, "{a:?}");
        assert!((a[1] + 0.865_88).abs() < 1e-4);
        assert!(a[4..].iter().all(|x| x.abs() < 1e-6), "identical rewards give 0: {a:?}");
        assert_eq!(grpo_advantages(&[1., 0.], 2, false), vec![0.5, -0.5]);
    }

    #[test]
    fn rloo_by_hand() {
        // [3, 1, 2]: 3 − (1+2)/2 = 1.5; 1 − (3+2)/2 = −1.5; 2 − (3+1)/2 = 0
        assert_eq!(rloo_advantages(&[3., 1., 2.], 3), vec![1.5, -1.5, 0.0]);
    }
}
