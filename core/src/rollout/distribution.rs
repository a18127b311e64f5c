//! One draw from one row of logits: temperature, top-k, top-p, greedy, and the logprob of the
//! drawn token. Pure functions over `&[f32]`, on the host, in f64.
//!
//! The logprob is that of the drawn token under the temperature-scaled *full* distribution,
//! `log softmax(logits / T)[token]`, not under the top-k/top-p truncated one: the trainer
//! recomputes logprobs by a forward pass over the whole vocabulary divided by the same `T`, and
//! PPO's ratio and the KL estimate need both sides computed the same way (truncating on one side
//! only is one way trainers end up with negative KL). Truncation changes which tokens can be
//! drawn, not how a drawn token is scored.
//!
//! Order of the truncations (as in transformers' logits warpers): temperature, then top-k, then
//! top-p over the top-k tokens renormalised. Ties in a logit go to the lower token id.

use super::config::SamplingConfig;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::Rng;
use std::cmp::Ordering;

/// A drawn token and its logprob under `softmax(logits / T)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draw {
    pub token: u32,
    pub logprob: f32,
}

/// A row's logits hold NaN or +∞ (a broken model or an overflow in low precision).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the logits hold a non-finite value ({value}) at token {token}")]
pub struct NonFiniteLogits {
    pub token: usize,
    pub value: f32,
}

/// Candidates of the top-p search before falling back to sorting the whole row: a nucleus
/// rarely holds more than a few hundred tokens, and selecting 1,024 of 152k is linear.
const NUCLEUS_PREFETCH: usize = 1024;

/// Higher logit first, then lower id: the order of every truncation and of greedy's tie-break.
fn by_logit_desc(logits: &[f32]) -> impl Fn(&u32, &u32) -> Ordering + '_ {
    move |&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b))
}

/// The row's log-sum-exp of `logits / t` and its max scaled logit.
fn log_sum_exp(logits: &[f32], inv_t: f64) -> Result<(f64, f64), NonFiniteLogits> {
    let mut max = f32::NEG_INFINITY;
    for (token, &value) in logits.iter().enumerate() {
        if value.is_nan() || value == f32::INFINITY {
            return Err(NonFiniteLogits { token, value });
        }
        max = max.max(value);
    }
    let m = max as f64 * inv_t;
    let sum: f64 = logits.iter().map(|&l| (l as f64 * inv_t - m).exp()).sum();
    Ok((m + sum.ln(), m))
}

/// `log softmax(logits / temperature)[token]`, in f64 then rounded to f32.
pub fn logprob(logits: &[f32], temperature: f64, token: u32) -> Result<f32, NonFiniteLogits> {
    let inv_t = 1.0 / temperature;
    let (lse, _) = log_sum_exp(logits, inv_t)?;
    Ok((logits[token as usize] as f64 * inv_t - lse) as f32)
}

/// The tokens sampling may draw and their unnormalised weights `exp(logit/T − max)`, in the
/// order the inverse CDF walks them; `None` when nothing is truncated (every token, id order).
pub fn kept_tokens(logits: &[f32], cfg: &SamplingConfig) -> Option<Vec<(u32, f64)>> {
    let v = logits.len();
    let top_k = if cfg.top_k == 0 || cfg.top_k >= v { None } else { Some(cfg.top_k) };
    let top_p = (cfg.top_p < 1.0).then_some(cfg.top_p);
    if top_k.is_none() && top_p.is_none() {
        return None;
    }
    let inv_t = 1.0 / cfg.logprob_temperature();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64 * inv_t;
    let weight = |id: u32| (logits[id as usize] as f64 * inv_t - max).exp();
    let order = by_logit_desc(logits);
    let mut ids: Vec<u32> = (0..v as u32).collect();
    let Some(p) = top_p else {
        let k = top_k.expect("one of the truncations is on");
        ids.select_nth_unstable_by(k - 1, &order);
        ids.truncate(k);
        ids.sort_unstable_by(&order);
        return Some(ids.into_iter().map(|id| (id, weight(id))).collect());
    };
    // Top-p over the top-k tokens (or the whole row) renormalised: the mass it must reach.
    let pool = top_k.unwrap_or(v);
    let total: f64 = match top_k {
        Some(k) => {
            ids.select_nth_unstable_by(k - 1, &order);
            ids.truncate(k);
            ids.iter().map(|&id| weight(id)).sum()
        }
        None => logits.iter().map(|&l| (l as f64 * inv_t - max).exp()).sum(),
    };
    let pool_len = ids.len();
    let nucleus = |sorted: &[u32]| -> Option<Vec<(u32, f64)>> {
        let mut kept = Vec::new();
        let mut cum = 0.0;
        for &id in sorted {
            // Keep a token while the mass before it is short of p: the smallest set reaching p.
            if cum >= p * total {
                return Some(kept);
            }
            let w = weight(id);
            cum += w;
            kept.push((id, w));
        }
        // The whole pool always reaches p; a prefix of it may not.
        (sorted.len() == pool_len).then_some(kept)
    };
    if pool > NUCLEUS_PREFETCH {
        let mut head = ids.clone();
        head.select_nth_unstable_by(NUCLEUS_PREFETCH - 1, &order);
        head.truncate(NUCLEUS_PREFETCH);
        head.sort_unstable_by(&order);
        if let Some(kept) = nucleus(&head) {
            return Some(kept);
        }
    }
    ids.sort_unstable_by(&order);
    Some(nucleus(&ids).expect("the whole pool reaches any p ≤ 1"))
}

/// A uniform number in [0, 1) from 53 random bits.
fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Draws the next token of one row. Greedy (temperature 0) takes the argmax and does not touch
/// `rng`; otherwise exactly one uniform number is drawn, so a row's stream does not depend on
/// the other rows or on the truncation settings' outcome.
pub fn draw(logits: &[f32], cfg: &SamplingConfig, rng: &mut ChaCha8Rng) -> Result<Draw, NonFiniteLogits> {
    let t = cfg.logprob_temperature();
    let inv_t = 1.0 / t;
    let (lse, max) = log_sum_exp(logits, inv_t)?;
    let token = if cfg.is_greedy() {
        let order = by_logit_desc(logits);
        (0..logits.len() as u32).min_by(|a, b| order(a, b)).expect("a row of logits is not empty")
    } else {
        let u = uniform(rng);
        match kept_tokens(logits, cfg) {
            Some(kept) => {
                let total: f64 = kept.iter().map(|(_, w)| w).sum();
                pick(kept.iter().copied(), u * total)
            }
            None => {
                let total = (lse - max).exp();
                pick(logits.iter().enumerate().map(|(id, &l)| (id as u32, (l as f64 * inv_t - max).exp())), u * total)
            }
        }
    };
    Ok(Draw { token, logprob: (logits[token as usize] as f64 * inv_t - lse) as f32 })
}

/// Inverse CDF: the first token whose cumulative weight exceeds `target`; if rounding leaves
/// `target` past the end, the last token with any weight.
fn pick(weights: impl Iterator<Item = (u32, f64)>, target: f64) -> u32 {
    let mut cum = 0.0;
    let mut last = None;
    for (id, w) in weights {
        if w > 0.0 {
            cum += w;
            last = Some(id);
            if cum > target {
                return id;
            }
        }
    }
    last.expect("the max logit has weight 1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn cfg(temperature: f64, top_k: usize, top_p: f64) -> SamplingConfig {
        SamplingConfig { temperature, top_k, top_p, ..SamplingConfig::default() }
    }

    fn frequencies(logits: &[f32], c: &SamplingConfig, n: usize) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..n {
            counts[draw(logits, c, &mut rng).unwrap().token as usize] += 1;
        }
        counts.into_iter().map(|k| k as f64 / n as f64).collect()
    }

    #[test]
    fn logprobs_are_log_softmax_of_the_scaled_logits() {
        let l = [1.0, 2.0, 3.0];
        // T = 1: lse = ln(e + e² + e³) = 3.4076060; log p = l − lse.
        assert!((logprob(&l, 1.0, 2).unwrap() - -0.407_606).abs() < 1e-6);
        assert!((logprob(&l, 1.0, 0).unwrap() - -2.407_606).abs() < 1e-6);
        // T = 2: z = (0.5, 1, 1.5), lse = 2.1802697; log p(0) = 0.5 − 2.1802697.
        assert!((logprob(&l, 2.0, 0).unwrap() - -1.680_270).abs() < 1e-6);
        // The draw reports the same number for whatever token it drew, truncated or not.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for c in [cfg(2.0, 0, 1.0), cfg(2.0, 2, 1.0), cfg(2.0, 0, 0.5)] {
            let d = draw(&l, &c, &mut rng).unwrap();
            assert_eq!(d.logprob, logprob(&l, 2.0, d.token).unwrap());
        }
    }

    #[test]
    fn greedy_takes_the_argmax_with_ties_to_the_lower_id_and_scores_at_temperature_one() {
        let l = [0.5, 3.0, -1.0, 3.0];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let before = rng.clone();
        let d = draw(&l, &SamplingConfig::greedy(1), &mut rng).unwrap();
        assert_eq!(d.token, 1);
        assert_eq!(d.logprob, logprob(&l, 1.0, 1).unwrap());
        assert_eq!(rng, before, "greedy draws no random number");
    }

    #[test]
    fn plain_sampling_follows_the_softmax() {
        // p = (0.5, 0.3, 0.2) from logits ln p; 20,000 draws land within 0.015 of each.
        let l = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let f = frequencies(&l, &cfg(1.0, 0, 1.0), 20_000);
        for (got, want) in f.iter().zip([0.5, 0.3, 0.2]) {
            assert!((got - want).abs() < 0.015, "{f:?}");
        }
        // T = 2 flattens: p ∝ √p = (0.4138, 0.3205, 0.2617).
        let f = frequencies(&l, &cfg(2.0, 0, 1.0), 20_000);
        for (got, want) in f.iter().zip([0.4138, 0.3205, 0.2617]) {
            assert!((got - want).abs() < 0.015, "{f:?}");
        }
    }

    #[test]
    fn top_k_keeps_only_the_k_most_likely_renormalised() {
        // p = (0.1, 0.4, 0.2, 0.3); top-2 keeps ids 1 and 3 with 0.4/0.7 and 0.3/0.7.
        let l = [0.1f32.ln(), 0.4f32.ln(), 0.2f32.ln(), 0.3f32.ln()];
        let kept: Vec<u32> = kept_tokens(&l, &cfg(1.0, 2, 1.0)).unwrap().into_iter().map(|(id, _)| id).collect();
        assert_eq!(kept, [1, 3]);
        let f = frequencies(&l, &cfg(1.0, 2, 1.0), 20_000);
        assert_eq!((f[0], f[2]), (0.0, 0.0));
        assert!((f[1] - 4.0 / 7.0).abs() < 0.015, "{f:?}");
        assert_eq!(kept_tokens(&l, &cfg(1.0, 4, 1.0)), None, "k ≥ vocabulary is no truncation");
        assert_eq!(frequencies(&l, &cfg(1.0, 1, 1.0), 100)[1], 1.0, "top-1 is greedy");
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // p = (0.5, 0.3, 0.15, 0.05) in shuffled id order 2, 0, 3, 1.
        let l = [0.3f32.ln(), 0.05f32.ln(), 0.5f32.ln(), 0.15f32.ln()];
        let ids = |c: SamplingConfig| kept_tokens(&l, &c).unwrap().into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(cfg(1.0, 0, 0.4)), [2], "0.5 ≥ 0.4 already");
        assert_eq!(ids(cfg(1.0, 0, 0.7)), [2, 0], "0.5 < 0.7 ≤ 0.8");
        assert_eq!(ids(cfg(1.0, 0, 0.9)), [2, 0, 3], "0.8 < 0.9 ≤ 0.95");
        assert_eq!(ids(cfg(1.0, 0, 0.99)), [2, 0, 3, 1]);
        // After top-2, renormalised: (0.625, 0.375); p = 0.6 keeps only the first.
        assert_eq!(ids(cfg(1.0, 2, 0.6)), [2]);
        let f = frequencies(&l, &cfg(1.0, 0, 0.7), 20_000);
        assert_eq!((f[1], f[3]), (0.0, 0.0));
        assert!((f[2] - 0.625).abs() < 0.015, "{f:?}");
    }

    #[test]
    fn a_nucleus_wider_than_the_prefetch_falls_back_to_a_full_sort() {
        // 5,000 equally likely tokens: p = 0.9 needs 4,500 of them, beyond the 1,024 prefetched.
        let l = vec![0.0f32; 5000];
        assert_eq!(kept_tokens(&l, &cfg(1.0, 0, 0.9)).unwrap().len(), 4500);
        // A peaked row finds its nucleus in the prefetch.
        let mut peaked = vec![-20.0f32; 5000];
        peaked[4321] = 0.0;
        assert_eq!(kept_tokens(&peaked, &cfg(1.0, 0, 0.9)).unwrap(), [(4321, 1.0)]);
    }

    #[test]
    fn the_same_stream_gives_the_same_draws_and_bad_logits_are_refused() {
        let l: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20).map(|_| draw(&l, &cfg(0.8, 10, 0.9), &mut rng).unwrap().token).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let err = draw(&[0.0, f32::NAN], &cfg(1.0, 0, 1.0), &mut rng).unwrap_err();
        assert_eq!(err.token, 1);
        // −∞ is a legitimate "never" (a masked token).
        assert_eq!(draw(&[f32::NEG_INFINITY, 0.0], &cfg(1.0, 0, 1.0), &mut rng).unwrap().token, 1);
    }
}
