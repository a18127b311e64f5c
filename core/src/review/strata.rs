//! Which answers clinicians read: a seeded, stratified sample without duplicates.
//!
//! Strata are filled in this order, each from the answers no earlier stratum took, so every
//! answer appears once and carries the stratum that picked it:
//!
//! 1. `top_reward` (20 % of n): the highest rewards, possible reward hacking;
//! 2. `bottom_reward` (20 %): the lowest rewards;
//! 3. `rule_judge_disagreement` (10 %, only when the judge scored some answers): answers whose
//!    judge score and rule reward are furthest apart by percentile rank (a gap of at least
//!    [`MIN_RANK_GAP`]); ranks, not raw values, because the reward and the judge use different
//!    scales (the reward is a signed weighted sum, the judge a probability);
//! 4. `high_risk` (30 %): a seeded random draw from answers to high-risk prompts (risk `high`, or
//!    category emergency, medication, pregnancy, pediatrics, abuse or mental_health);
//! 5. `random`: a seeded random draw from the rest, up to n; it also takes the quota a stratum
//!    could not fill (no judge, too few high-risk answers).
//!
//! Quotas are `round(share · n)`. Ties in reward or gap are broken by (set, id), and the random
//! draws come from ChaCha8 seeded with the seed, so a seed gives the same sheet on every machine.

use crate::eval::scored::ScoredAnswer;
use medrl_sdk::{Category, Risk};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashSet;

/// Minimum percentile-rank gap between judge score and reward for the disagreement stratum.
pub const MIN_RANK_GAP: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stratum {
    TopReward,
    BottomReward,
    RuleJudgeDisagreement,
    HighRisk,
    Random,
}

impl Stratum {
    pub const ALL: [Stratum; 5] = [Stratum::TopReward, Stratum::BottomReward, Stratum::RuleJudgeDisagreement, Stratum::HighRisk, Stratum::Random];

    pub fn as_str(self) -> &'static str {
        match self {
            Stratum::TopReward => "top_reward",
            Stratum::BottomReward => "bottom_reward",
            Stratum::RuleJudgeDisagreement => "rule_judge_disagreement",
            Stratum::HighRisk => "high_risk",
            Stratum::Random => "random",
        }
    }

    /// Share of n this stratum aims for (`random` takes what is left).
    pub fn share(self) -> f64 {
        match self {
            Stratum::TopReward | Stratum::BottomReward => 0.2,
            Stratum::RuleJudgeDisagreement => 0.1,
            Stratum::HighRisk => 0.3,
            Stratum::Random => 0.0,
        }
    }

    /// What the stratum holds, for the sheet and the docs.
    pub fn description(self) -> &'static str {
        match self {
            Stratum::TopReward => "highest rewards (possible reward hacking)",
            Stratum::BottomReward => "lowest rewards",
            Stratum::RuleJudgeDisagreement => "judge score and rule reward furthest apart (percentile ranks)",
            Stratum::HighRisk => "random draw from high-risk prompts",
            Stratum::Random => "random draw from the rest",
        }
    }
}

/// Whether a prompt is high-risk for the review: risk `high` or a high-risk category.
pub fn is_high_risk(a: &ScoredAnswer) -> bool {
    a.sample.risk == Risk::High
        || matches!(
            a.sample.category,
            Category::Emergency | Category::Medication | Category::Pregnancy | Category::Pediatrics | Category::Abuse | Category::MentalHealth
        )
}

/// One picked answer: its index in the pool and the stratum that picked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub index: usize,
    pub stratum: Stratum,
}

/// The sample: picks in stratum order, and whether the judge stratum was possible.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub picks: Vec<Pick>,
    /// Whether any answer had a judge score (otherwise the disagreement stratum is skipped).
    pub judge_ran: bool,
}

impl Selection {
    /// Picks per stratum, in stratum order (zeros included).
    pub fn counts(&self) -> Vec<(Stratum, usize)> {
        Stratum::ALL.iter().map(|&s| (s, self.picks.iter().filter(|p| p.stratum == s).count())).collect()
    }
}

fn by_key(pool: &[ScoredAnswer], a: usize, b: usize) -> Ordering {
    (&pool[a].set, &pool[a].sample.id).cmp(&(&pool[b].set, &pool[b].sample.id))
}

/// Percentile ranks in [0, 1] of `values` (mid-ranks for ties); all 0.5 for a single value.
fn percentile_ranks(values: &[f64]) -> Vec<f64> {
    let m = values.len();
    values
        .iter()
        .map(|&x| {
            if m < 2 {
                return 0.5;
            }
            let below = values.iter().filter(|&&y| y < x).count() as f64;
            let ties = values.iter().filter(|&&y| y == x).count() as f64;
            (below + (ties - 1.0) / 2.0) / (m - 1) as f64
        })
        .collect()
}

/// A uniform index in [0, n) (Lemire's multiply-shift; the bias is below 2⁻³² for any pool a
/// review could hold).
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// Picks up to `n` answers of `pool` as described in the module header.
pub fn select(pool: &[ScoredAnswer], n: usize, seed: u64) -> Selection {
    let mut taken: HashSet<usize> = HashSet::new();
    let mut picks = Vec::new();
    let judge_ran = pool.iter().any(|a| a.judge.is_some());
    let quota = |s: Stratum| if s == Stratum::RuleJudgeDisagreement && !judge_ran { 0 } else { (s.share() * n as f64).round() as usize };
    let take = |ordered: Vec<usize>, stratum: Stratum, limit: usize, taken: &mut HashSet<usize>, picks: &mut Vec<Pick>| {
        let mut k = 0;
        for index in ordered {
            if k == limit || picks.len() == n {
                break;
            }
            if taken.insert(index) {
                picks.push(Pick { index, stratum });
                k += 1;
            }
        }
    };

    let rewarded: Vec<usize> = (0..pool.len()).filter(|&i| pool[i].reward.is_some_and(f64::is_finite)).collect();
    let reward = |i: usize| pool[i].reward.expect("filtered on a finite reward");
    let mut top = rewarded.clone();
    top.sort_by(|&a, &b| reward(b).total_cmp(&reward(a)).then_with(|| by_key(pool, a, b)));
    take(top, Stratum::TopReward, quota(Stratum::TopReward), &mut taken, &mut picks);
    let mut bottom = rewarded.clone();
    bottom.sort_by(|&a, &b| reward(a).total_cmp(&reward(b)).then_with(|| by_key(pool, a, b)));
    take(bottom, Stratum::BottomReward, quota(Stratum::BottomReward), &mut taken, &mut picks);

    // Judge versus reward, on the answers that have both.
    let judged: Vec<usize> = rewarded.iter().copied().filter(|&i| pool[i].judge.is_some_and(f64::is_finite)).collect();
    let judge_ranks = percentile_ranks(&judged.iter().map(|&i| pool[i].judge.expect("filtered")).collect::<Vec<_>>());
    let reward_ranks = percentile_ranks(&judged.iter().map(|&i| reward(i)).collect::<Vec<_>>());
    let mut gaps: Vec<(usize, f64)> =
        judged.iter().enumerate().map(|(k, &i)| (i, (judge_ranks[k] - reward_ranks[k]).abs())).filter(|&(_, gap)| gap >= MIN_RANK_GAP).collect();
    gaps.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| by_key(pool, a.0, b.0)));
    take(gaps.into_iter().map(|(i, _)| i).collect(), Stratum::RuleJudgeDisagreement, quota(Stratum::RuleJudgeDisagreement), &mut taken, &mut picks);

    // Seeded draws: a Fisher–Yates shuffle of the remaining candidates, in pool order first.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut shuffled = |mut candidates: Vec<usize>| {
        for i in (1..candidates.len()).rev() {
            let j = below(&mut rng, i + 1);
            candidates.swap(i, j);
        }
        candidates
    };
    let high_risk: Vec<usize> = (0..pool.len()).filter(|i| !taken.contains(i) && is_high_risk(&pool[*i])).collect();
    take(shuffled(high_risk), Stratum::HighRisk, quota(Stratum::HighRisk), &mut taken, &mut picks);
    let rest: Vec<usize> = (0..pool.len()).filter(|i| !taken.contains(i)).collect();
    take(shuffled(rest), Stratum::Random, n, &mut taken, &mut picks);
    Selection { picks, judge_ran }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::scored::ScoredAnswer;

    /// `count` answers: rewards 0.00, 0.01, …; every third high-risk; judge on the first `judged`.
    pub(crate) fn pool(count: usize, judged: usize) -> Vec<ScoredAnswer> {
        (0..count)
            .map(|i| {
                let (category, risk) = if i % 3 == 0 { ("medication", "high") } else { ("general", "low") };
                let sample = serde_json::from_value(serde_json::json!({
                    "id": format!("s{i:03}"), "prompt": "p", "response": format!("answer {i}"), "lang": "en", "category": category, "risk": risk
                }))
                .unwrap();
                ScoredAnswer {
                    set: "gold".into(),
                    variant: "rl".into(),
                    sample,
                    tokens: 3,
                    eos: true,
                    reward: Some(i as f64 / 100.0),
                    rules: vec![],
                    // The judge disagrees most with the reward on the lowest and highest rewards.
                    judge: (i < judged).then(|| 1.0 - i as f64 / judged as f64),
                }
            })
            .collect()
    }

    fn ids(pool: &[ScoredAnswer], s: &Selection, stratum: Stratum) -> Vec<String> {
        s.picks.iter().filter(|p| p.stratum == stratum).map(|p| pool[p.index].sample.id.clone()).collect()
    }

    #[test]
    fn quotas_without_a_judge_and_no_duplicates() {
        let pool = pool(200, 0);
        let s = select(&pool, 50, 7);
        assert!(!s.judge_ran);
        // 50: top 10, bottom 10, no judge stratum, high-risk 15, random 15 (its 10 and the judge's 5).
        let counts: Vec<usize> = s.counts().into_iter().map(|(_, n)| n).collect();
        assert_eq!(counts, vec![10, 10, 0, 15, 15]);
        let unique: HashSet<usize> = s.picks.iter().map(|p| p.index).collect();
        assert_eq!(unique.len(), 50);
        assert_eq!(ids(&pool, &s, Stratum::TopReward)[..3], ["s199", "s198", "s197"]);
        assert_eq!(ids(&pool, &s, Stratum::BottomReward)[..3], ["s000", "s001", "s002"]);
        for p in s.picks.iter().filter(|p| p.stratum == Stratum::HighRisk) {
            assert!(is_high_risk(&pool[p.index]));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_sample_and_another_seed_another() {
        let pool = pool(200, 0);
        assert_eq!(select(&pool, 50, 7), select(&pool, 50, 7));
        assert_ne!(select(&pool, 50, 7).picks, select(&pool, 50, 8).picks);
    }

    #[test]
    fn judge_disagreement_stratum_takes_the_widest_rank_gaps() {
        // 100 answers, the first 40 judged with judge = 1 − i/40, reward i/100: on the judged ones
        // the ranks are reversed, so the gap |rank_j − rank_r| = |1 − 2k/39| is widest at both ends.
        // Top and bottom strata (10 each) take s090..s099 and s000..s009 first; the judge stratum
        // then takes the widest remaining gaps: s039 (k=39: gap 1), s010 (k=10: 1 − 20/39 = 0.487 <
        // 0.5, excluded)… so from the top end: s039, s038, s037, s036, s035 (k ≥ 30: gap ≥ 0.538).
        let pool = pool(100, 40);
        let s = select(&pool, 50, 1);
        assert!(s.judge_ran);
        assert_eq!(ids(&pool, &s, Stratum::RuleJudgeDisagreement), ["s039", "s038", "s037", "s036", "s035"]);
        assert_eq!(s.counts()[2], (Stratum::RuleJudgeDisagreement, 5));
        assert_eq!(s.picks.len(), 50);
    }

    #[test]
    fn a_small_pool_is_taken_whole() {
        let pool = pool(12, 0);
        let s = select(&pool, 50, 3);
        assert_eq!(s.picks.len(), 12);
        let unique: HashSet<usize> = s.picks.iter().map(|p| p.index).collect();
        assert_eq!(unique.len(), 12);
    }

    #[test]
    fn percentile_ranks_use_mid_ranks_for_ties() {
        assert_eq!(percentile_ranks(&[3.0, 1.0, 2.0]), vec![1.0, 0.0, 0.5]);
        // [1, 1, 2]: the tied ones share rank (0 + 1)/2 / 2 = 0.25.
        assert_eq!(percentile_ranks(&[1.0, 1.0, 2.0]), vec![0.25, 0.25, 1.0]);
        assert_eq!(percentile_ranks(&[5.0]), vec![0.5]);
    }
}
