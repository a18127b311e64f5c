//! `medrl data build-prompts`: the RL trainer's prompts, drawn from the pool by seeded, stratified
//! sampling, with a hard floor on the high-risk share (the plan's ≥ 40 %) and a floor per category.
//!
//! Strata are (category, risk), 16 of them. The allocation ([`allocate`]) is deterministic and
//! pure: it starts from each stratum's proportional share of `n`, fills the category quotas
//! first, then the high-risk floor, then the rest, always taking from the stratum furthest below
//! its proportional share. Which items fill a stratum's count is the seeded part: each stratum
//! is shuffled with ChaCha8 seeded by `--seed` (a fixed, documented stream, so a seed gives the
//! same prompts on every machine and every version of this crate's dependencies), and the final
//! list is shuffled once more so categories mix within a batch.
//!
//! Before sampling, exact and near duplicates within the pool are dropped (the first by file
//! order is kept). Every output line records where it came from: the pool file, line, id,
//! source, version, quality and licence of its item, the seed and, for a round, its number.
//!
//! **Rounds** (the plan's 2,000 prompts per PPO round): a [`RoundPlan`] names the round and the
//! prompts earlier rounds drew. The allocation is the same; within each stratum the shuffled
//! items are then ordered fresh first (never drawn), then drawn in a round before the previous
//! one, then the previous round's reviewed prompts (their answers were read by clinicians, so a
//! second look at them is the most informative re-use), then the rest of the previous round. A
//! round that would still re-use more of the previous round than its cap allows is refused.

use super::error::DataError;
use super::item::{CATEGORIES, Item, Located, Quality, RISKS, category_index, expect_is_empty, known_category, risk_index, strict_expect};
use super::near_dup::{self, Shingles};
use super::sets::SetFile;
use medrl_sdk::{Category, Expect, Lang, Risk};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// Default output, relative to the repository root.
pub const DEFAULT_OUT: &str = "data/rl/training_prompts.jsonl";
/// Default number of prompts: 512 of the shipped pool's 672, so the quotas and the high-risk floor
/// decide something and a later round can draw a different 512 with another seed.
pub const DEFAULT_N: usize = 512;
/// Default seed.
pub const DEFAULT_SEED: u64 = 17;
/// Default floor on the high-risk share (the plan, stage A step 1: ≥ 40 %).
pub const DEFAULT_HIGH_RISK_MIN: f64 = 0.4;
/// Prompts per round (the plan: 2,000 per PPO round).
pub const DEFAULT_ROUND_N: usize = 2000;
/// Default cap on the share of a round's prompts that the previous round already drew.
pub const DEFAULT_MAX_REUSE: f64 = 0.5;

/// A round's output file, relative to the repository root: `data/rl/round-N.jsonl`.
pub fn round_out(round: u32) -> String {
    format!("data/rl/round-{round}.jsonl")
}

/// The ids in a file of reviewed prompts: `review_samples.jsonl` from `medrl review sample`
/// (each line's `answer.sample.id`), any JSONL whose lines carry `id` or `sample_id`, or plain
/// text with one id per line. Blank lines and `#` comments are skipped.
pub fn read_reviewed_ids(path: &Path) -> Result<HashSet<String>, DataError> {
    let text = crate::io::read_text(path)?;
    let mut ids = HashSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let id = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::String(s)) => Some(s),
            Ok(v @ serde_json::Value::Object(_)) => ["/id", "/sample_id", "/answer/sample/id", "/sample/id"]
                .iter()
                .find_map(|ptr| v.pointer(ptr).and_then(|x| x.as_str()).map(str::to_string)),
            Ok(_) => None,
            Err(_) => Some(line.to_string()),
        };
        ids.insert(id.ok_or_else(|| DataError::ReviewedWithoutId { path: path.to_path_buf(), line: line.chars().take(60).collect() })?);
    }
    Ok(ids)
}

/// What a round knows of the rounds before it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundPlan {
    /// 1 for the first round.
    pub round: u32,
    /// Ids the previous round drew (empty for round 1).
    pub previous: HashSet<String>,
    /// Ids any earlier round drew, the previous one included.
    pub earlier: HashSet<String>,
    /// Ids whose answers were reviewed: re-used before the rest of the previous round.
    pub reviewed: HashSet<String>,
    /// Most of the round's prompts that may come from the previous round, as a share of `n`.
    pub max_reuse: f64,
}

impl RoundPlan {
    /// How an item ranks within its stratum: fresh first, the previous round's unreviewed last.
    fn rank(&self, id: &str) -> u8 {
        if !self.earlier.contains(id) {
            0
        } else if !self.previous.contains(id) {
            1
        } else if self.reviewed.contains(id) {
            2
        } else {
            3
        }
    }

    /// The most prompts of `n` that may repeat the previous round: ⌊max_reuse · n⌋.
    pub fn reuse_cap(&self, n: usize) -> usize {
        let x = self.max_reuse * n as f64;
        let r = x.round();
        if (x - r).abs() < 1e-9 { r as usize } else { x.floor() as usize }
    }
}

/// How to sample. Quotas not given default to [`default_quota`].
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// Prompts to draw. Default [`DEFAULT_N`].
    pub n: usize,
    /// ChaCha8 seed. Default [`DEFAULT_SEED`].
    pub seed: u64,
    /// Least share of high-risk prompts, in [0, 1]. Default [`DEFAULT_HIGH_RISK_MIN`].
    pub high_risk_min: f64,
    /// Least number of prompts per category, overriding the default for the categories named.
    pub quotas: Vec<(Category, usize)>,
    /// Pool prompts at or above this 3-gram Jaccard similarity to an earlier one are dropped.
    /// Default [`near_dup::DEFAULT_THRESHOLD`].
    pub dedup_threshold: f64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            n: DEFAULT_N,
            seed: DEFAULT_SEED,
            high_risk_min: DEFAULT_HIGH_RISK_MIN,
            quotas: Vec::new(),
            dedup_threshold: near_dup::DEFAULT_THRESHOLD,
        }
    }
}

/// A category's quota when none is given: half its equal share, ⌊n / 16⌋, so no category can be
/// crowded out while the proportional allocation still follows the pool.
pub fn default_quota(n: usize) -> usize {
    n / (2 * CATEGORIES.len())
}

/// Counts per (category, risk) stratum, indexed `[category_index][risk_index]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Strata(pub [[usize; 2]; 8]);

impl Strata {
    pub fn of(rows: impl IntoIterator<Item = (Category, Risk)>) -> Self {
        let mut s = Strata::default();
        for (c, r) in rows {
            if let Some(ci) = category_index(c) {
                s.0[ci][risk_index(r)] += 1;
            }
        }
        s
    }

    pub fn total(&self) -> usize {
        self.0.iter().flatten().sum()
    }

    pub fn high(&self) -> usize {
        self.0.iter().map(|c| c[0]).sum()
    }

    pub fn category(&self, ci: usize) -> usize {
        self.0[ci][0] + self.0[ci][1]
    }

    /// Share of high-risk items; 0 when empty.
    pub fn high_share(&self) -> f64 {
        if self.total() == 0 { 0.0 } else { self.high() as f64 / self.total() as f64 }
    }
}

/// Least number of high-risk prompts among `n` for a floor `share`: ⌈share · n⌉, computed so that
/// 0.4 · 512 = 204.8 gives 205 and 0.5 · 512 = 256 gives 256 despite floating-point error.
pub fn high_risk_needed(share: f64, n: usize) -> usize {
    let x = share * n as f64;
    let r = x.round();
    if (x - r).abs() < 1e-9 { r as usize } else { x.ceil() as usize }
}

/// How many prompts each stratum gives (see the module docs). `quotas[c]` is category `c`'s
/// floor; `high_share` the floor on the share of high-risk prompts.
pub fn allocate(available: &Strata, n: usize, quotas: &[usize; 8], high_share: f64) -> Result<Strata, DataError> {
    if n == 0 || n > available.total() {
        return Err(DataError::SampleSize { n, available: available.total() });
    }
    if !(0.0..=1.0).contains(&high_share) {
        return Err(DataError::HighRiskShare { value: high_share });
    }
    let total_available = available.total();
    for (ci, &q) in quotas.iter().enumerate() {
        if q > available.category(ci) {
            return Err(DataError::QuotaAboveAvailable { category: CATEGORIES[ci], min: q, available: available.category(ci) });
        }
    }
    let quota_sum: usize = quotas.iter().sum();
    if quota_sum > n {
        return Err(DataError::QuotasAboveN { total: quota_sum, n });
    }
    let high_needed = high_risk_needed(high_share, n);
    let target = |ci: usize, ri: usize| n as f64 * available.0[ci][ri] as f64 / total_available as f64;
    let mut alloc = Strata::default();
    // The stratum among `candidates` furthest below its proportional share that still has items;
    // the first in (category, risk) order on a tie.
    let pick = |alloc: &Strata, candidates: &mut dyn Iterator<Item = (usize, usize)>| {
        candidates
            .filter(|&(ci, ri)| alloc.0[ci][ri] < available.0[ci][ri])
            .map(|(ci, ri)| ((ci, ri), target(ci, ri) - alloc.0[ci][ri] as f64))
            .fold(None::<((usize, usize), f64)>, |best, (s, deficit)| match best {
                Some((_, d)) if d >= deficit => best,
                _ => Some((s, deficit)),
            })
            .map(|(s, _)| s)
    };
    // 1. Category quotas.
    for (ci, &q) in quotas.iter().enumerate() {
        while alloc.category(ci) < q {
            let (ci, ri) = pick(&alloc, &mut (0..2).map(|ri| (ci, ri))).expect("quota ≤ available was checked");
            alloc.0[ci][ri] += 1;
        }
    }
    // 2. The high-risk floor, by adding high-risk prompts while there is room.
    while alloc.high() < high_needed && alloc.total() < n {
        let Some((ci, ri)) = pick(&alloc, &mut (0..8).map(|ci| (ci, 0))) else { break };
        alloc.0[ci][ri] += 1;
    }
    // 3. Then by swapping a low-risk prompt for a high-risk one of the same category, which
    //    leaves every category's count, and so its quota, as it was.
    while alloc.high() < high_needed {
        let swappable = (0..8).filter(|&ci| alloc.0[ci][1] > 0);
        let Some((ci, _)) = pick(&alloc, &mut swappable.map(|ci| (ci, 0))) else {
            let reachable = alloc.high();
            return Err(DataError::HighRiskUnreachable { share: high_share, needed: high_needed, n, reachable, available: available.high() });
        };
        alloc.0[ci][1] -= 1;
        alloc.0[ci][0] += 1;
    }
    // 4. The rest, proportionally.
    while alloc.total() < n {
        let (ci, ri) = pick(&alloc, &mut (0..8).flat_map(|ci| (0..2).map(move |ri| (ci, ri)))).expect("n ≤ available was checked");
        alloc.0[ci][ri] += 1;
    }
    Ok(alloc)
}

/// Where a training prompt came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The pool file, as given to `build-prompts`.
    pub file: String,
    /// 1-based line of the item in that file.
    pub line: usize,
    /// The item's id in the pool.
    pub id: String,
    pub source: String,
    pub version: String,
    pub quality: Quality,
    /// The item's licence (SPDX), for imported items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// The sampling seed.
    pub seed: u64,
    /// The round that drew it, for `build-prompts --round`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
}

/// One line of `training_prompts.jsonl`: what the trainer needs to build a [`medrl_sdk::Sample`]
/// around a sampled response, and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingPrompt {
    pub id: String,
    pub lang: Lang,
    #[serde(deserialize_with = "known_category")]
    pub category: Category,
    pub risk: Risk,
    pub tags: Vec<String>,
    pub prompt: String,
    #[serde(default, deserialize_with = "strict_expect", skip_serializing_if = "expect_is_empty")]
    pub expect: Expect,
    pub provenance: Provenance,
}

impl TrainingPrompt {
    /// The line for pool item `item`, drawn with `seed` (in `round`, if any).
    pub fn new(item: &Located<Item>, seed: u64, round: Option<u32>) -> Self {
        let i = &item.value;
        TrainingPrompt {
            id: i.id.clone(),
            lang: i.lang,
            category: i.category,
            risk: i.risk,
            tags: i.tags.clone(),
            prompt: i.prompt.clone(),
            expect: i.expect.clone(),
            provenance: Provenance {
                file: item.loc.file.display().to_string(),
                line: item.loc.line,
                id: i.id.clone(),
                source: i.source.clone(),
                version: i.version.clone(),
                quality: i.quality,
                licence: i.licence.clone(),
                seed,
                round,
            },
        }
    }

    /// What differs from the pool item it claims to copy (at pool line `line`), if anything.
    pub fn differs_from(&self, item: &Item, line: usize) -> Option<String> {
        let p = &self.provenance;
        let differs: Vec<&str> = [
            ("id", self.id != item.id),
            ("lang", self.lang != item.lang),
            ("category", self.category != item.category),
            ("risk", self.risk != item.risk),
            ("tags", self.tags != item.tags),
            ("prompt", self.prompt != item.prompt),
            ("expect", self.expect != item.expect),
            ("provenance.line", p.line != line),
            ("provenance.source", p.source != item.source),
            ("provenance.version", p.version != item.version),
            ("provenance.quality", p.quality != item.quality),
            ("provenance.licence", p.licence != item.licence),
        ]
        .into_iter()
        .filter_map(|(field, d)| d.then_some(field))
        .collect();
        let verb = if differs.len() == 1 { "differs" } else { "differ" };
        (!differs.is_empty()).then(|| format!("{} {verb} from `{}` in the pool", differs.join(", "), item.id))
    }
}

/// The sample and what was decided on the way.
#[derive(Debug, Clone)]
pub struct Built {
    pub prompts: Vec<TrainingPrompt>,
    /// The deduplicated pool.
    pub available: Strata,
    pub quotas: [usize; 8],
    pub high_needed: usize,
    pub realised: Strata,
    /// Pool items dropped as duplicates: (dropped id, the kept id it duplicates).
    pub dropped: Vec<(String, String)>,
    /// Prompts the previous round also drew, and how many of those were reviewed.
    pub reused: usize,
    pub reused_reviewed: usize,
}

/// Draws `cfg.n` prompts from `pool`; with a `round`, as that round (see the module docs).
pub fn build(pool: &SetFile, cfg: &SamplingConfig, round: Option<&RoundPlan>) -> Result<Built, DataError> {
    let (kept, dropped) = dedup(&pool.items, cfg.dedup_threshold);
    let available = Strata::of(kept.iter().map(|i| (i.value.category, i.value.risk)));
    let mut quotas = [default_quota(cfg.n); 8];
    for &(c, q) in &cfg.quotas {
        let ci = category_index(c).expect("quotas name one of the eight categories");
        quotas[ci] = q;
    }
    let alloc = allocate(&available, cfg.n, &quotas, cfg.high_risk_min)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut chosen: Vec<&Located<Item>> = Vec::with_capacity(cfg.n);
    for (ci, &category) in CATEGORIES.iter().enumerate() {
        for (ri, &risk) in RISKS.iter().enumerate() {
            let mut stratum: Vec<&Located<Item>> = kept.iter().copied().filter(|i| i.value.category == category && i.value.risk == risk).collect();
            shuffle(&mut stratum, &mut rng);
            if let Some(plan) = round {
                // Stable: within a rank the seeded order stands.
                stratum.sort_by_key(|i| plan.rank(&i.value.id));
            }
            chosen.extend(stratum.into_iter().take(alloc.0[ci][ri]));
        }
    }
    shuffle(&mut chosen, &mut rng);
    let (mut reused, mut reused_reviewed) = (0, 0);
    if let Some(plan) = round {
        reused = chosen.iter().filter(|i| plan.previous.contains(&i.value.id)).count();
        reused_reviewed = chosen.iter().filter(|i| plan.previous.contains(&i.value.id) && plan.reviewed.contains(&i.value.id)).count();
        let cap = plan.reuse_cap(cfg.n);
        if reused > cap {
            return Err(DataError::TooMuchReuse {
                round: plan.round,
                reused,
                n: cfg.n,
                cap,
                max_reuse: plan.max_reuse,
                fresh: kept.iter().filter(|i| !plan.earlier.contains(&i.value.id)).count(),
            });
        }
    }
    let round_no = round.map(|r| r.round);
    let prompts: Vec<TrainingPrompt> = chosen.iter().map(|i| TrainingPrompt::new(i, cfg.seed, round_no)).collect();
    let realised = Strata::of(prompts.iter().map(|p| (p.category, p.risk)));
    Ok(Built { prompts, available, quotas, high_needed: high_risk_needed(cfg.high_risk_min, cfg.n), realised, dropped, reused, reused_reviewed })
}

/// Keeps the first of every group of exact or near duplicates, in file order.
fn dedup(items: &[Located<Item>], threshold: f64) -> (Vec<&Located<Item>>, Vec<(String, String)>) {
    let shingles: Vec<Shingles> = items.iter().map(|i| Shingles::new(&i.value.prompt)).collect();
    let scan = near_dup::scan(&shingles, threshold, 1, |_, _| Some(0));
    let mut dropped_by: Vec<Option<usize>> = vec![None; items.len()];
    for p in &scan.similar {
        // Pairs come in (i, j) order; j goes unless i itself was dropped earlier.
        if dropped_by[p.i].is_none() && dropped_by[p.j].is_none() {
            dropped_by[p.j] = Some(p.i);
        }
    }
    let kept = items.iter().zip(&dropped_by).filter(|(_, d)| d.is_none()).map(|(i, _)| i).collect();
    let dropped = items.iter().zip(&dropped_by).filter_map(|(i, d)| d.map(|k| (i.value.id.clone(), items[k].value.id.clone()))).collect();
    (kept, dropped)
}

/// A uniform integer in `[0, n)`, `n ≥ 1`, by rejection (no modulo bias): draws at or above the
/// largest multiple of `n` that fits in a `u64` are redrawn.
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let limit = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < limit {
            return x % n;
        }
    }
}

/// Fisher–Yates (Durstenfeld): for i from the end, swap with a uniform j ≤ i. Written here rather
/// than taken from `rand` so the order for a seed cannot change with a dependency's version.
pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Writes the prompts as JSONL, creating the folder.
pub fn write(path: &Path, prompts: &[TrainingPrompt]) -> Result<(), DataError> {
    let err = |source| DataError::Write { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut text = String::new();
    for p in prompts {
        text.push_str(&serde_json::to_string(p).expect("a TrainingPrompt always serialises"));
        text.push('\n');
    }
    std::fs::write(path, text).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::item::Loc;
    use crate::data::validate::tests::item;
    use std::path::PathBuf;

    /// A pool with `per[ci] = (high, low)` items per category, each prompt distinct.
    fn pool(per: [(usize, usize); 8]) -> SetFile {
        let path = PathBuf::from("d/pool.jsonl");
        let mut items = Vec::new();
        for (ci, &(high, low)) in per.iter().enumerate() {
            for (risk, count) in [(Risk::High, high), (Risk::Low, low)] {
                for k in 0..count {
                    let id = format!("p-{ci}-{}-{k}", if risk == Risk::High { "h" } else { "l" });
                    let prompt = random_letters(items.len() as u64);
                    let line = items.len() + 1;
                    items.push(Located { loc: Loc { file: path.clone(), line }, value: item(&id, CATEGORIES[ci], risk, &prompt, None) });
                }
            }
        }
        SetFile { split: crate::data::item::Split::Pool, files: vec![path.clone()], path, items }
    }

    /// 40 pseudo-random letters: two such prompts share almost no 3-gram, so none is a near duplicate.
    fn random_letters(seed: u64) -> String {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..40).map(|_| (b'a' + below(&mut rng, 26) as u8) as char).collect()
    }

    fn strata(per: [(usize, usize); 8]) -> Strata {
        Strata(per.map(|(h, l)| [h, l]))
    }

    #[test]
    fn high_risk_needed_is_the_ceiling_without_float_noise() {
        // 0.4 · 512 = 204.8 → 205; 0.5 · 512 = 256 exactly; 0.3 · 10 = 3.0000000000000004 → 3.
        assert_eq!(high_risk_needed(0.4, 512), 205);
        assert_eq!(high_risk_needed(0.5, 512), 256);
        assert_eq!(high_risk_needed(0.3, 10), 3);
        assert_eq!(high_risk_needed(0.0, 10), 0);
        assert_eq!(high_risk_needed(1.0, 10), 10);
    }

    #[test]
    fn allocation_is_proportional_when_no_floor_binds() {
        // 8 categories × (10 high, 10 low), n = 80: each stratum's share is exactly 5.
        let a = allocate(&strata([(10, 10); 8]), 80, &[0; 8], 0.4).unwrap();
        assert_eq!(a, strata([(5, 5); 8]));
    }

    #[test]
    fn allocation_meets_the_high_risk_floor_and_every_quota() {
        // 22 of 164 items are high-risk: proportionally 50 · 22/164 ≈ 6.7 would be; the floor
        // ⌈0.4 · 50⌉ = 20 binds, and the quotas for medication (6) and general (4) still hold.
        let avail = strata([(10, 2), (0, 20), (2, 20), (2, 20), (2, 20), (2, 20), (2, 20), (2, 20)]);
        let quotas = [0, 6, 0, 0, 0, 0, 0, 4];
        let a = allocate(&avail, 50, &quotas, 0.4).unwrap();
        assert_eq!((a.total(), a.high()), (50, 20));
        assert!(a.category(1) >= 6 && a.category(7) >= 4, "{a:?}");
        for ci in 0..8 {
            assert!(a.0[ci][0] <= avail.0[ci][0] && a.0[ci][1] <= avail.0[ci][1], "{a:?}");
        }
    }

    #[test]
    fn allocation_refuses_an_unreachable_floor_with_the_numbers() {
        let avail = strata([(10, 2), (0, 20), (2, 20), (2, 20), (2, 20), (2, 20), (2, 20), (2, 20)]);
        let err = allocate(&avail, 50, &[0; 8], 0.6).unwrap_err().to_string();
        assert!(err.contains("needs 30 of the 50 prompts to be high-risk, but at most 22 can be"), "{err}");
        let err = allocate(&avail, 50, &[0, 21, 0, 0, 0, 0, 0, 0], 0.4).unwrap_err().to_string();
        assert!(err.contains("quota medication=21 asks for more than the 20 `medication` prompts"), "{err}");
        let err = allocate(&avail, 40, &[6; 8], 0.4).unwrap_err().to_string();
        assert!(err.contains("the category quotas add up to 48, more than --n 40"), "{err}");
        let err = allocate(&avail, 40, &[0; 8], 1.5).unwrap_err().to_string();
        assert!(err.contains("--high-risk-min 1.5 is not a share"), "{err}");
    }

    #[test]
    fn a_binding_high_risk_floor_swaps_within_categories_so_quotas_hold() {
        // 4 high of 40 per category, 8 high in total wanted among 16 with 2 per category required:
        // proportional would give 10 % high; the floor needs 8 and every category keeps its 2.
        let avail = strata([(4, 36); 8]);
        let a = allocate(&avail, 16, &[2; 8], 0.5).unwrap();
        assert_eq!((a.total(), a.high()), (16, 8));
        for ci in 0..8 {
            assert!(a.category(ci) >= 2, "{a:?}");
        }
    }

    #[test]
    fn sampling_meets_quotas_and_the_high_risk_share() {
        let p = pool([(30, 10), (20, 20), (20, 20), (2, 38), (5, 35), (5, 35), (5, 35), (1, 39)]);
        let cfg = SamplingConfig { n: 100, quotas: vec![(Category::General, 20)], high_risk_min: 0.5, ..SamplingConfig::default() };
        let b = build(&p, &cfg, None).unwrap();
        assert_eq!(b.prompts.len(), 100);
        assert!(b.realised.high() >= 50, "{:?}", b.realised);
        assert!(b.realised.category(7) >= 20, "{:?}", b.realised);
        for ci in 0..7 {
            assert!(b.realised.category(ci) >= default_quota(100), "{:?}", b.realised);
        }
        let ids: std::collections::HashSet<&str> = b.prompts.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids.len(), 100, "no prompt twice");
        assert_eq!(b.realised, Strata::of(b.prompts.iter().map(|p| (p.category, p.risk))));
    }

    #[test]
    fn a_seed_gives_the_same_prompts_in_the_same_order_and_another_seed_does_not() {
        let p = pool([(20, 20); 8]);
        let run = |seed| build(&p, &SamplingConfig { n: 64, seed, ..SamplingConfig::default() }, None).unwrap().prompts;
        let (a, b, c) = (run(7), run(7), run(8));
        assert_eq!(a, b);
        assert_ne!(a.iter().map(|p| &p.id).collect::<Vec<_>>(), c.iter().map(|p| &p.id).collect::<Vec<_>>());
        // Strata counts do not depend on the seed, only which items fill them.
        assert_eq!(Strata::of(a.iter().map(|p| (p.category, p.risk))), Strata::of(c.iter().map(|p| (p.category, p.risk))));
    }

    #[test]
    fn the_chacha8_stream_for_a_seed_is_pinned() {
        // If this changes, every shipped training_prompts.jsonl changes with it: the stream is part
        // of the provenance contract. First draws of ChaCha8Rng::seed_from_u64(17), shuffled 0..10.
        let mut rng = ChaCha8Rng::seed_from_u64(DEFAULT_SEED);
        let mut v: Vec<u32> = (0..10).collect();
        shuffle(&mut v, &mut rng);
        let mut again = ChaCha8Rng::seed_from_u64(DEFAULT_SEED);
        let mut w: Vec<u32> = (0..10).collect();
        shuffle(&mut w, &mut again);
        assert_eq!(v, w);
        assert_eq!(v, PINNED_SHUFFLE, "the shuffle for seed 17 changed: {v:?}");
    }

    const PINNED_SHUFFLE: [u32; 10] = [7, 1, 2, 0, 6, 9, 8, 5, 4, 3];

    #[test]
    fn every_line_records_its_provenance_and_round_trips() {
        let p = pool([(3, 3); 8]);
        let b = build(&p, &SamplingConfig { n: 16, seed: 3, ..SamplingConfig::default() }, None).unwrap();
        for tp in &b.prompts {
            let src = p.items.iter().find(|i| i.value.id == tp.provenance.id).unwrap();
            assert_eq!(tp.provenance.line, src.loc.line);
            assert_eq!((tp.provenance.file.as_str(), tp.provenance.seed), ("d/pool.jsonl", 3));
            assert_eq!(tp.differs_from(&src.value, src.loc.line), None);
            let back: TrainingPrompt = serde_json::from_str(&serde_json::to_string(tp).unwrap()).unwrap();
            assert_eq!(&back, tp);
        }
        let mut edited = p.items[0].value.clone();
        edited.prompt.push('?');
        let tp = TrainingPrompt::new(&p.items[0], 3, None);
        assert_eq!(tp.differs_from(&edited, 1).unwrap(), format!("prompt differs from `{}` in the pool", edited.id));
    }

    #[test]
    fn a_round_takes_fresh_prompts_first_then_the_reviewed_and_respects_the_reuse_cap() {
        // 8 categories × (10 high, 10 low) = 160; round 1 draws 100, round 2 another 100: only 60
        // are fresh, so 40 must repeat round 1, and the reviewed ones among those come first.
        let p = pool([(10, 10); 8]);
        let cfg = SamplingConfig { n: 100, high_risk_min: 0.4, ..SamplingConfig::default() };
        let r1 = build(&p, &cfg, Some(&RoundPlan { round: 1, max_reuse: 0.5, ..RoundPlan::default() })).unwrap();
        assert_eq!((r1.prompts.len(), r1.reused), (100, 0));
        assert!(r1.prompts.iter().all(|tp| tp.provenance.round == Some(1)));
        let previous: HashSet<String> = r1.prompts.iter().map(|tp| tp.id.clone()).collect();
        // Review 30 of round 1's prompts, 2 per stratum where the stratum has them.
        let reviewed: HashSet<String> = r1.prompts.iter().step_by(3).take(30).map(|tp| tp.id.clone()).collect();
        let plan = RoundPlan { round: 2, previous: previous.clone(), earlier: previous.clone(), reviewed: reviewed.clone(), max_reuse: 0.5 };
        let r2 = build(&p, &cfg, Some(&plan)).unwrap();
        let ids2: HashSet<&str> = r2.prompts.iter().map(|tp| tp.id.as_str()).collect();
        let fresh = p.items.iter().filter(|i| !previous.contains(&i.value.id)).count();
        assert_eq!(fresh, 60);
        // Every fresh prompt is taken (each stratum's 5 fresh before any repeat) …
        assert!(p.items.iter().filter(|i| !previous.contains(&i.value.id)).all(|i| ids2.contains(i.value.id.as_str())));
        assert_eq!(r2.reused, 40);
        // … and within each stratum a reviewed prompt is re-used before an unreviewed one.
        for item in p.items.iter().filter(|i| previous.contains(&i.value.id)) {
            if ids2.contains(item.value.id.as_str()) || !reviewed.contains(&item.value.id) {
                continue;
            }
            let same = |i: &&Located<Item>| i.value.category == item.value.category && i.value.risk == item.value.risk;
            let unreviewed_taken = p
                .items
                .iter()
                .filter(same)
                .any(|i| ids2.contains(i.value.id.as_str()) && previous.contains(&i.value.id) && !reviewed.contains(&i.value.id));
            assert!(!unreviewed_taken, "reviewed {} left out while an unreviewed one was re-used", item.value.id);
        }
        // Per stratum, the reviewed re-used are as many as the stratum's reviewed and its re-use allow.
        let mut expected = 0;
        for &category in &CATEGORIES {
            for &risk in &RISKS {
                let in_stratum = |id: &str| p.items.iter().any(|i| i.value.id == id && i.value.category == category && i.value.risk == risk);
                let reviewed_here = reviewed.iter().filter(|id| in_stratum(id)).count();
                let reused_here = r2.prompts.iter().filter(|tp| tp.category == category && tp.risk == risk && previous.contains(&tp.id)).count();
                expected += reviewed_here.min(reused_here);
            }
        }
        assert_eq!(r2.reused_reviewed, expected);
        assert!(expected > 0);
        // A cap of 30 % cannot hold with 60 fresh prompts for 100.
        let err = build(&p, &cfg, Some(&RoundPlan { max_reuse: 0.3, ..plan })).unwrap_err().to_string();
        assert!(err.contains("round 2 would re-use 40 of the previous round's prompts among its 100, more than the cap of 30"), "{err}");
        assert!(err.contains("the pool has 60 prompts no earlier round drew"), "{err}");
    }

    #[test]
    fn the_reuse_cap_is_the_floor_without_float_noise() {
        let plan = RoundPlan { max_reuse: 0.5, ..RoundPlan::default() };
        assert_eq!(plan.reuse_cap(2000), 1000);
        assert_eq!(plan.reuse_cap(101), 50);
        assert_eq!(RoundPlan { max_reuse: 0.3, ..RoundPlan::default() }.reuse_cap(10), 3);
    }

    #[test]
    fn near_duplicates_in_the_pool_are_dropped_before_sampling() {
        let mut p = pool([(2, 2); 8]);
        let mut copy = p.items[0].clone();
        copy.value.id = "copy".into();
        copy.value.prompt = format!("{}!", copy.value.prompt);
        copy.loc.line = 33;
        p.items.push(copy);
        let b = build(&p, &SamplingConfig { n: 32, ..SamplingConfig::default() }, None).unwrap();
        assert_eq!(b.dropped, [("copy".to_string(), p.items[0].value.id.clone())]);
        assert_eq!(b.available.total(), 32);
        let err = build(&p, &SamplingConfig { n: 33, ..SamplingConfig::default() }, None).unwrap_err().to_string();
        assert!(err.contains("--n 33 is out of range: the pool has 32 distinct prompts; ask for 1 to 32"), "{err}");
    }
}
