//! PPO's clipped losses and the diagnostics that go with them. Names follow cleanrl's `ppo.py` and
//! Schulman et al. 2017 (https://arxiv.org/abs/1707.06347); the value clipping and the ½ factor follow
//! TRL's PPO trainer as described in "The N Implementation Details of RLHF with PPO" (details 9 and 10).
//! All inputs are `[batch, len]` with `mask` 1.0 on response tokens.

use crate::training::masked::masked_mean;
use candle_core::{D, DType, Result, Tensor};

/// The clipped surrogate objective and its clip fraction.
pub struct PolicyLoss {
    /// `masked_mean(max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)))`, a scalar with gradient.
    pub loss: Tensor,
    /// Share of tokens where clipping changed the loss.
    pub clipfrac: f32,
}

/// `ρ = exp(logprobs − old_logprobs)`, `pg_loss1 = −A·ρ`, `pg_loss2 = −A·clip(ρ, 1−ε, 1+ε)`,
/// loss = `masked_mean(max(pg_loss1, pg_loss2))`.
pub fn pg_loss(logprobs: &Tensor, old_logprobs: &Tensor, advantages: &Tensor, mask: &Tensor, cliprange: f64) -> Result<PolicyLoss> {
    let ratio = (logprobs - old_logprobs)?.exp()?;
    let neg_adv = advantages.neg()?;
    let pg_loss1 = neg_adv.mul(&ratio)?;
    let pg_loss2 = neg_adv.mul(&ratio.clamp(1.0 - cliprange, 1.0 + cliprange)?)?;
    let loss = masked_mean(&pg_loss1.maximum(&pg_loss2)?, mask)?;
    let clipped = pg_loss2.gt(&pg_loss1)?.to_dtype(DType::F32)?;
    let clipfrac = masked_mean(&clipped, mask)?.to_scalar::<f32>()?;
    Ok(PolicyLoss { loss, clipfrac })
}

/// The clipped value loss and its clip fraction.
pub struct ValueLoss {
    /// `½ · masked_mean(max((V − R)², (clip(V, V_old ± ε_v) − R)²))`, a scalar with gradient.
    pub loss: Tensor,
    pub clipfrac: f32,
}

/// Value loss with the new prediction kept within `cliprange_value` of the rollout's.
pub fn value_loss(vpred: &Tensor, old_values: &Tensor, returns: &Tensor, mask: &Tensor, cliprange_value: f64) -> Result<ValueLoss> {
    let lo = old_values.affine(1.0, -cliprange_value)?;
    let hi = old_values.affine(1.0, cliprange_value)?;
    let vpredclipped = vpred.maximum(&lo)?.minimum(&hi)?;
    let vf_losses1 = (vpred - returns)?.sqr()?;
    let vf_losses2 = (vpredclipped - returns)?.sqr()?;
    let loss = masked_mean(&vf_losses1.maximum(&vf_losses2)?, mask)?.affine(0.5, 0.0)?;
    let clipped = vf_losses2.gt(&vf_losses1)?.to_dtype(DType::F32)?;
    let clipfrac = masked_mean(&clipped, mask)?.to_scalar::<f32>()?;
    Ok(ValueLoss { loss, clipfrac })
}

/// The policy's own drift during the update epochs, the k3 estimate of KL(old ‖ new) as in cleanrl:
/// `masked_mean((ρ − 1) − log ρ)`. Used for the early stop on policy KL, not as a penalty.
pub fn approx_kl(logprobs: &Tensor, old_logprobs: &Tensor, mask: &Tensor) -> Result<f32> {
    let logratio = (logprobs - old_logprobs)?;
    let k3 = ((logratio.exp()? - 1.0)? - &logratio)?;
    masked_mean(&k3, mask)?.to_scalar::<f32>()
}

/// Entropy of the (temperature-scaled) next-token distribution at each position:
/// `logsumexp(z) − Σ softmax(z)·z`, `[batch, len, vocab] → [batch, len]`.
pub fn entropy_from_logits(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&max)?;
    let exp = shifted.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    let lse = (sum.log()? + &max)?;
    let p = exp.broadcast_div(&sum)?;
    let expected = p.mul(logits)?.sum_keepdim(D::Minus1)?;
    (lse - expected)?.squeeze(D::Minus1)
}

/// `1 − Var(returns − values) / Var(returns)`: 1 is a perfect critic, ≤ 0 no better than a constant.
/// NaN when the returns do not vary (cleanrl's convention).
pub fn explained_variance(values: &[f32], returns: &[f32]) -> f32 {
    let var = |xs: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = xs.collect();
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n
    };
    let var_y = var(&mut returns.iter().map(|&r| f64::from(r)));
    if var_y == 0.0 {
        return f32::NAN;
    }
    let var_diff = var(&mut returns.iter().zip(values).map(|(&r, &v)| f64::from(r) - f64::from(v)));
    (1.0 - var_diff / var_y) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
    }

    #[test]
    fn pg_loss_by_hand() {
        // Two tokens, ε = 0.2.
        // token 0: logp − old = ln 1.5 → ρ = 1.5, A = 1: max(−1.5, −1.2) = −1.2 (clipped)
        // token 1: ρ = 1 (equal), A = −2: max(2, 2) = 2 (not clipped)
        // loss = (−1.2 + 2) / 2 = 0.4, clipfrac = 1/2
        let logp = t(&[1.5f32.ln(), -1.0]);
        let old = t(&[0.0, -1.0]);
        let adv = t(&[1.0, -2.0]);
        let mask = t(&[1.0, 1.0]);
        let out = pg_loss(&logp, &old, &adv, &mask, 0.2).unwrap();
        assert!((out.loss.to_scalar::<f32>().unwrap() - 0.4).abs() < 1e-6);
        assert_eq!(out.clipfrac, 0.5);
    }

    #[test]
    fn pg_loss_gradient_is_zero_where_clipped() {
        use candle_core::Var;
        let logp = Var::from_tensor(&t(&[1.5f32.ln(), 0.0])).unwrap();
        let old = t(&[0.0, 0.0]);
        let adv = t(&[1.0, 1.0]);
        let mask = t(&[1.0, 1.0]);
        let out = pg_loss(logp.as_tensor(), &old, &adv, &mask, 0.2).unwrap();
        let grads = out.loss.backward().unwrap();
        let g = grads.get(logp.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Clipped token: no gradient. Unclipped: d(−A·e^{x})/dx / 2 = −1·1/2 = −0.5.
        assert!(g[0].abs() < 1e-7, "{g:?}");
        assert!((g[1] + 0.5).abs() < 1e-6, "{g:?}");
    }

    #[test]
    fn value_loss_by_hand() {
        // ε_v = 0.2. token 0: V = 1.0, V_old = 0.5, R = 0 → unclipped 1.0, clipped (0.7)² = 0.49 → 1.0
        // token 1: V = 0.0, V_old = 0.5, R = 1 → unclipped 1.0, clipped (0.3−1)² = 0.49 → 1.0
        // token 2: V = 0.6, V_old = 0.5, R = 1 → unclipped 0.16, clipped = same → 0.16
        // loss = ½·(1 + 1 + 0.16)/3 = 0.36; clipfrac 0
        let out = value_loss(&t(&[1.0, 0.0, 0.6]), &t(&[0.5, 0.5, 0.5]), &t(&[0.0, 1.0, 1.0]), &t(&[1., 1., 1.]), 0.2).unwrap();
        assert!((out.loss.to_scalar::<f32>().unwrap() - 0.36).abs() < 1e-6);
        assert_eq!(out.clipfrac, 0.0);
        // V = 1.0, V_old = 0.5, R = 2: unclipped 1.0, clipped (0.7−2)² = 1.69 → clipped counts.
        let out = value_loss(&t(&[1.0]), &t(&[0.5]), &t(&[2.0]), &t(&[1.]), 0.2).unwrap();
        assert!((out.loss.to_scalar::<f32>().unwrap() - 0.845).abs() < 1e-6);
        assert_eq!(out.clipfrac, 1.0);
    }

    #[test]
    fn approx_kl_by_hand() {
        // logratio = [ln 2, 0]: k3 = (2 − 1 − ln 2, 0) → mean = (1 − 0.693147)/2 = 0.153426
        let v = approx_kl(&t(&[2f32.ln(), -1.0]), &t(&[0.0, -1.0]), &t(&[1., 1.])).unwrap();
        assert!((v - 0.153_426).abs() < 1e-5);
    }

    #[test]
    fn entropy_of_uniform_and_peaked() {
        let d = Device::Cpu;
        let logits = Tensor::new(&[[[0f32, 0., 0., 0.], [100., 0., 0., 0.]]], &d).unwrap();
        let h = entropy_from_logits(&logits).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((h[0] - 4f32.ln()).abs() < 1e-5, "{h:?}");
        assert!(h[1].abs() < 1e-4, "{h:?}");
    }

    #[test]
    fn explained_variance_by_hand() {
        assert_eq!(explained_variance(&[1., 2., 3.], &[1., 2., 3.]), 1.0);
        // returns [1, 2, 3] (var 2/3), values 0: var(diff) = 2/3 → 0
        assert!(explained_variance(&[0., 0., 0.], &[1., 2., 3.]).abs() < 1e-6);
        assert!(explained_variance(&[0.], &[1.]).is_nan());
    }
}
