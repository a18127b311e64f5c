//! Percentile bootstrap intervals over prompts: for one variant's metric, and for the paired
//! difference between two variants answering the same prompts.
//!
//! A resample draws `n` prompt indices with replacement; a metric is the mean of its per-prompt
//! values over the drawn prompts that have one (a prompt the emergency rule does not apply to
//! has none), so a metric over "applicable prompts only" is resampled as the ratio it is. The
//! interval is the `(1 − confidence)/2` and `(1 + confidence)/2` quantiles of the resampled
//! statistic (Efron & Tibshirani 1993, ch. 13, the percentile interval), with linear
//! interpolation between order statistics (Hyndman & Fan 1996, definition 7).
//!
//! Paired differences resample prompts jointly: the same drawn indices pick both variants'
//! answers, so the prompt-to-prompt variation both share cancels and the interval is that of
//! the difference itself, not of two independent means. The indices come from one ChaCha8
//! stream per set seeded by `seed`, so the same inputs and seed give the same intervals on every
//! machine, and every metric and variant of a set sees the same resamples.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How intervals are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Resamples per set (default 2000).
    pub resamples: usize,
    /// Coverage of the interval (default 0.95).
    pub confidence: f64,
    /// Seed of the resampling stream (default 0).
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig { resamples: 2000, confidence: 0.95, seed: 0 }
    }
}

/// A point estimate and its interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// The prompt indices of every resample of one set, drawn once and shared by all its metrics.
#[derive(Debug, Clone)]
pub struct Resamples {
    n: usize,
    confidence: f64,
    /// `resamples × n` indices, one resample after another.
    indices: Vec<u32>,
}

impl Resamples {
    /// Draws `config.resamples` resamples of `n` prompts.
    pub fn draw(n: usize, config: &BootstrapConfig) -> Resamples {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let indices = if n == 0 { Vec::new() } else { (0..config.resamples * n).map(|_| uniform_below(&mut rng, n as u64) as u32).collect() };
        Resamples { n, confidence: config.confidence, indices }
    }

    fn each(&self) -> impl Iterator<Item = &[u32]> {
        self.indices.chunks_exact(self.n.max(1))
    }

    /// The metric (mean over prompts with a value) and its interval; `None` when no prompt has a value.
    pub fn interval(&self, values: &[Option<f64>]) -> Option<Estimate> {
        assert_eq!(values.len(), self.n, "one value slot per prompt");
        let value = mean_over(values, 0..values.len())?;
        let stats: Vec<f64> = self.each().filter_map(|draw| mean_over(values, draw.iter().map(|&i| i as usize))).collect();
        Some(self.estimate(value, stats))
    }

    /// Any statistic of the items (precision, F1, …): `stat` over all `n` items is the point
    /// estimate, over each resample's drawn items (with repeats) one bootstrap replicate. A
    /// resample where `stat` is undefined (no item the ratio needs was drawn) is left out, as
    /// [`Self::interval`] leaves out a resample with no value; `None` when it is undefined on
    /// all items.
    pub fn interval_by(&self, stat: impl Fn(&mut dyn Iterator<Item = usize>) -> Option<f64>) -> Option<Estimate> {
        let value = stat(&mut (0..self.n))?;
        let stats: Vec<f64> = self.each().filter_map(|draw| stat(&mut draw.iter().map(|&i| i as usize))).collect();
        Some(self.estimate(value, stats))
    }

    /// The paired difference `metric(b) − metric(a)`, prompt `i` of `a` paired with prompt `i` of
    /// `b`, and its interval. A resample in which either side has no value is left out.
    pub fn paired_difference(&self, a: &[Option<f64>], b: &[Option<f64>]) -> Option<Estimate> {
        assert_eq!(a.len(), self.n, "one value slot per prompt");
        assert_eq!(b.len(), self.n, "one value slot per prompt");
        let value = mean_over(b, 0..self.n)? - mean_over(a, 0..self.n)?;
        let stats: Vec<f64> = self
            .each()
            .filter_map(|draw| {
                let idx = || draw.iter().map(|&i| i as usize);
                Some(mean_over(b, idx())? - mean_over(a, idx())?)
            })
            .collect();
        Some(self.estimate(value, stats))
    }

    fn estimate(&self, value: f64, mut stats: Vec<f64>) -> Estimate {
        if stats.is_empty() {
            // Zero resamples requested: the interval degenerates to the point.
            return Estimate { value, lo: value, hi: value };
        }
        stats.sort_by(f64::total_cmp);
        let tail = (1.0 - self.confidence) / 2.0;
        Estimate { value, lo: quantile(&stats, tail), hi: quantile(&stats, 1.0 - tail) }
    }
}

/// Mean of the values at `idx` that are present.
fn mean_over(values: &[Option<f64>], idx: impl Iterator<Item = usize>) -> Option<f64> {
    let (sum, count) = idx.filter_map(|i| values[i]).fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / count as f64)
}

/// Quantile `q` of sorted data, linear between order statistics: position `q·(m−1)`.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (below, frac) = (pos.floor() as usize, pos.fract());
    match sorted.get(below + 1) {
        Some(next) => sorted[below] + frac * (next - sorted[below]),
        None => sorted[below],
    }
}

/// A uniform integer in `[0, bound)` without modulo bias (Lemire's multiply-and-reject).
fn uniform_below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(bound);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(xs: &[f64]) -> Vec<Option<f64>> {
        xs.iter().copied().map(Some).collect()
    }

    #[test]
    fn quantile_interpolates_between_order_statistics() {
        // Positions q·(m−1) on [1, 2, 3, 4, 5]: 0.25 → 2.0; 0.1 → 1.4; 0.975 → 4.9.
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&s, 0.25), 2.0);
        assert!((quantile(&s, 0.1) - 1.4).abs() < 1e-12);
        assert!((quantile(&s, 0.975) - 4.9).abs() < 1e-12);
        assert_eq!(quantile(&s, 1.0), 5.0);
        assert_eq!(quantile(&[7.0], 0.5), 7.0);
    }

    #[test]
    fn the_interval_contains_the_mean_and_narrows_with_more_prompts() {
        let cfg = BootstrapConfig::default();
        let values: Vec<f64> = (0..40).map(|i| ((i * 37) % 11) as f64 / 10.0).collect();
        let r = Resamples::draw(values.len(), &cfg);
        let e = r.interval(&some(&values)).unwrap();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((e.value - mean).abs() < 1e-12);
        assert!(e.lo < mean && mean < e.hi, "{e:?}");
        // The same values four times over: the standard error halves, so does the width (±20 %).
        let more: Vec<f64> = values.iter().cycle().take(160).copied().collect();
        let wide = Resamples::draw(more.len(), &cfg).interval(&some(&more)).unwrap();
        let ratio = (wide.hi - wide.lo) / (e.hi - e.lo);
        assert!((0.4..0.6).contains(&ratio), "width ratio {ratio}");
    }

    #[test]
    fn a_binary_metric_gets_about_the_normal_interval() {
        // 30 of 100 prompts risky: normal approximation 0.3 ± 1.96·√(0.3·0.7/100) = [0.210, 0.390].
        let values: Vec<f64> = (0..100).map(|i| if i % 10 < 3 { 1.0 } else { 0.0 }).collect();
        let e = Resamples::draw(100, &BootstrapConfig::default()).interval(&some(&values)).unwrap();
        assert!((e.lo - 0.21).abs() < 0.03 && (e.hi - 0.39).abs() < 0.03, "{e:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_interval_and_another_seed_another() {
        let values = some(&[0.1, 0.9, 0.4, 0.4, 0.0, 1.0, 0.7, 0.2]);
        let cfg = BootstrapConfig::default();
        let a = Resamples::draw(8, &cfg).interval(&values).unwrap();
        let b = Resamples::draw(8, &cfg).interval(&values).unwrap();
        assert_eq!(a, b);
        let c = Resamples::draw(8, &BootstrapConfig { seed: 1, ..cfg }).interval(&values).unwrap();
        assert_ne!((a.lo, a.hi), (c.lo, c.hi));
    }

    #[test]
    fn the_paired_difference_of_identical_answers_is_exactly_zero() {
        let values = some(&[0.1, 0.9, 0.4, 0.4, 0.0, 1.0, 0.7, 0.2]);
        let d = Resamples::draw(8, &BootstrapConfig::default()).paired_difference(&values, &values).unwrap();
        assert_eq!(d, Estimate { value: 0.0, lo: 0.0, hi: 0.0 });
    }

    #[test]
    fn pairing_removes_the_variation_both_variants_share() {
        // b = a + 0.1 on every prompt, a widely spread: the paired interval is [0.1, 0.1] (up to
        // rounding), while the interval of either mean alone is wide.
        let a: Vec<f64> = (0..30).map(|i| (i % 7) as f64 / 7.0).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 0.1).collect();
        let r = Resamples::draw(30, &BootstrapConfig::default());
        let d = r.paired_difference(&some(&a), &some(&b)).unwrap();
        assert!((d.value - 0.1).abs() < 1e-12 && (d.lo - 0.1).abs() < 1e-12 && (d.hi - 0.1).abs() < 1e-12, "{d:?}");
        let alone = r.interval(&some(&a)).unwrap();
        assert!(alone.hi - alone.lo > 0.1, "{alone:?}");
    }

    #[test]
    fn prompts_without_a_value_are_left_out_not_counted_as_zero() {
        // Emergency coverage over the two applicable prompts: (1 + 0.5) / 2.
        let values = vec![Some(1.0), None, Some(0.5), None];
        let e = Resamples::draw(4, &BootstrapConfig::default()).interval(&values).unwrap();
        assert_eq!(e.value, 0.75);
        assert!(e.lo >= 0.5 && e.hi <= 1.0, "{e:?}");
        assert_eq!(Resamples::draw(2, &BootstrapConfig::default()).interval(&[None, None]), None);
    }

    #[test]
    fn a_statistic_by_items_is_the_mean_interval_when_it_is_a_mean() {
        // The mean as a statistic over drawn items gives exactly the mean's interval.
        let values = [0.1, 0.9, 0.4, 0.4, 0.0, 1.0, 0.7, 0.2];
        let r = Resamples::draw(8, &BootstrapConfig::default());
        let by = r.interval_by(|idx| {
            let (s, c) = idx.fold((0.0, 0usize), |(s, c), i| (s + values[i], c + 1));
            (c > 0).then(|| s / c as f64)
        });
        assert_eq!(by, r.interval(&some(&values)));
        // A ratio undefined on every item is None; undefined on some resamples, they are left out.
        assert_eq!(r.interval_by(|_| None), None);
        let only_first = r.interval_by(|idx| {
            let drawn: Vec<usize> = idx.collect();
            drawn.contains(&0).then_some(values[0])
        });
        assert_eq!(only_first, Some(Estimate { value: 0.1, lo: 0.1, hi: 0.1 }));
    }

    #[test]
    fn uniform_indices_cover_the_range_evenly() {
        // 3 × 30 000 draws from [0, 3): each count within 2 % of 30 000 (σ ≈ 0.27 %).
        let r = Resamples::draw(3, &BootstrapConfig { resamples: 30_000, ..BootstrapConfig::default() });
        let mut counts = [0usize; 3];
        for &i in &r.indices {
            counts[i as usize] += 1;
        }
        for c in counts {
            assert!((c as f64 - 30_000.0).abs() < 600.0, "{counts:?}");
        }
    }
}
