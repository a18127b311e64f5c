//! `medrl data …`: validate the prompt sets, build the trainer's prompts, render the data card,
//! score the reference answers.

use super::Globals;
use crate::data::build_prompts::{self, DEFAULT_HIGH_RISK_MIN, DEFAULT_N, DEFAULT_OUT, DEFAULT_SEED, SamplingConfig, Strata};
use crate::data::card::{self, CardInput, DEFAULT_CARD};
use crate::data::item::{CATEGORIES, Split, parse_category};
use crate::data::near_dup::DEFAULT_THRESHOLD;
use crate::data::references::{reference_samples, summarize};
use crate::data::sets::{DEFAULT_DIR, read_lines};
use crate::data::stats::{Tally, percent};
use crate::data::validate::{ItemRef, Validation};
use crate::data::{DataError, DataSets, TrainingPrompt, validate};
use crate::reward::{Reward, RuleSetScorer, Sandbox, VersionRef};
use anyhow::bail;
use clap::{Args, Subcommand};
use medrl_sdk::Category;
use std::path::{Path, PathBuf};

/// Where the sets are and when two prompts count as near duplicates.
#[derive(Args)]
pub struct SetsArgs {
    /// Data directory holding pool.jsonl, sft.jsonl, gold.jsonl and redteam.jsonl.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// Character 3-gram Jaccard similarity at or above which two prompts are near duplicates.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD, value_parser = parse_threshold)]
    near_dup_threshold: f64,
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Check every item's schema, unique ids, exact and near duplicates, and leakage of gold or
    /// red-team prompts into the pool or SFT corpus; exit 1 on any problem.
    Validate {
        #[command(flatten)]
        sets: SetsArgs,
        /// Built prompts to check against the pool, when the file exists [default: rl/training_prompts.jsonl beside --dir]
        #[arg(long)]
        prompts: Option<PathBuf>,
    },
    /// Draw the RL trainer's prompts from the pool: seeded, stratified by category and risk,
    /// with a high-risk floor and per-category quotas; prints the realised strata.
    BuildPrompts {
        #[command(flatten)]
        sets: SetsArgs,
        /// Where to write the prompts [default: rl/training_prompts.jsonl beside --dir]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Prompts to draw.
        #[arg(long, default_value_t = DEFAULT_N)]
        n: usize,
        /// Sampling seed (ChaCha8).
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Least share of high-risk prompts, a hard floor.
        #[arg(long, default_value_t = DEFAULT_HIGH_RISK_MIN)]
        high_risk_min: f64,
        /// Least prompts of a category, CATEGORY=MIN; repeatable. Unnamed categories get ⌊N/16⌋.
        #[arg(long = "quota", value_name = "CATEGORY=MIN", value_parser = parse_quota)]
        quotas: Vec<(Category, usize)>,
    },
    /// Render the data card (counts, sources, dedup and leakage results, known gaps).
    Card {
        #[command(flatten)]
        sets: SetsArgs,
        /// Built prompts to describe, when the file exists [default: rl/training_prompts.jsonl beside --dir]
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// Where to write the card [default: DATA_CARD.md beside --dir]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write nothing; exit 1 if the file at --out differs from what would be written.
        #[arg(long)]
        check: bool,
    },
    /// Score the reference answers with a rule set: each rule's mean over the answers it applies
    /// to, and the mean reward.
    ScoreReferences {
        /// Data directory holding the split files.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Rule set, exact version: NAME@VERSION.
        #[arg(long)]
        ruleset: String,
        /// One split (sft, gold or redteam); all three when left out.
        #[arg(long, value_parser = parse_answer_split)]
        split: Option<Split>,
        /// How many of the lowest-rewarded answers to list per split.
        #[arg(long, default_value_t = 5)]
        lowest: usize,
        /// The hash-chained audit log every evaluation is appended to (see `rules score`).
        #[arg(long, env = "MEDRL_AUDIT_LOG", default_value = ".medrl/audit.jsonl")]
        audit_log: PathBuf,
    },
}

pub fn run(cmd: DataCommand, g: &Globals) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Validate { sets, prompts } => {
            let prompts = prompts.unwrap_or_else(|| beside(&sets.dir, DEFAULT_OUT));
            let data = DataSets::load(&sets.dir)?;
            let v = validate(&data, sets.near_dup_threshold, Some(&prompts))?;
            print_summary(&data, &v);
            v.into_result(&data.dir)?;
            println!("ok: no problems");
            Ok(())
        }
        DataCommand::BuildPrompts { sets, out, n, seed, high_risk_min, quotas } => {
            let out = out.unwrap_or_else(|| beside(&sets.dir, DEFAULT_OUT));
            let data = DataSets::load(&sets.dir)?;
            let v = validate(&data, sets.near_dup_threshold, None)?;
            // Duplicates among training prompts are dropped by the sampler; anything else stops it.
            let blocking: Vec<_> = v.problems.into_iter().filter(|p| !p.is_training_duplicate()).collect();
            if !blocking.is_empty() {
                return Err(DataError::Invalid { dir: data.dir, problems: blocking }.into());
            }
            let cfg = SamplingConfig { n, seed, high_risk_min, quotas, dedup_threshold: sets.near_dup_threshold };
            let pool = data.split(Split::Pool);
            let built = build_prompts::build(pool, &pool.path.display().to_string(), &cfg)?;
            build_prompts::write(&out, &built.prompts)?;
            println!(
                "drew {} of {} pool prompts with seed {seed} -> {}",
                built.prompts.len(),
                built.available.total() + built.dropped.len(),
                out.display()
            );
            println!("duplicates dropped from the pool before sampling: {}", built.dropped.len());
            for (dropped, kept) in &built.dropped {
                println!("  {dropped} (duplicate of {kept})");
            }
            print_strata(&built.available, &built.quotas, &built.realised);
            println!(
                "high-risk share: {} ({} of {}; floor {}: at least {})",
                percent(built.realised.high_share()),
                built.realised.high(),
                built.realised.total(),
                percent(high_risk_min),
                built.high_needed
            );
            Ok(())
        }
        DataCommand::Card { sets, prompts, out, check } => {
            let prompts = prompts.unwrap_or_else(|| beside(&sets.dir, DEFAULT_OUT));
            let out = out.unwrap_or_else(|| beside(&sets.dir, DEFAULT_CARD));
            let data = DataSets::load(&sets.dir)?;
            let v = validate(&data, sets.near_dup_threshold, Some(&prompts))?;
            let lines = if prompts.exists() { Some(read_lines::<TrainingPrompt>(&prompts)?.0) } else { None };
            let text = card::render(&CardInput {
                sets: &data,
                validation: &v,
                training_prompts: lines.as_deref().map(|l| (prompts.as_path(), l)),
            });
            if check {
                let current = std::fs::read_to_string(&out).unwrap_or_default();
                if current != text {
                    bail!("{} is out of date with the data; run `medrl data card` and commit the result", out.display());
                }
                println!("{} is up to date", out.display());
            } else {
                write_file(&out, &text)?;
                println!("wrote {} ({} lines)", out.display(), text.lines().count());
            }
            v.into_result(&data.dir)?;
            Ok(())
        }
        DataCommand::ScoreReferences { dir, ruleset, split, lowest, audit_log } => score_references(&dir, &ruleset, split, lowest, &audit_log, g),
    }
}

fn print_summary(data: &DataSets, v: &Validation) {
    let tallies: Vec<(Split, Tally)> = data.files.iter().map(|f| (f.split, Tally::of(&f.items))).collect();
    let total: usize = tallies.iter().map(|(_, t)| t.items).sum();
    println!("{}: {total} items in {} splits", data.dir.display(), tallies.len());
    println!(
        "  {:<8} {:>6} {:>5} {:>5} {:>8} {:>5} {:>10} {:>8} {:>16}",
        "split", "items", "zh", "en", "zh share", "high", "high share", "answers", "emergency signs"
    );
    for (split, t) in &tallies {
        println!(
            "  {:<8} {:>6} {:>5} {:>5} {:>8} {:>5} {:>10} {:>8} {:>16}",
            split.as_str(),
            t.items,
            t.lang[0],
            t.lang[1],
            percent(t.zh_share()),
            t.strata.high(),
            percent(t.strata.high_share()),
            t.with_answer,
            t.with_emergency_signs
        );
    }
    let zh: usize = tallies.iter().map(|(_, t)| t.lang[0]).sum();
    println!("  {:<8} {:>6} {:>5} {:>5} {:>8}", "all", total, zh, total - zh, percent(crate::data::stats::share(zh, total)));
    println!("  items per category ({}):", tallies.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(" / "));
    for (ci, c) in CATEGORIES.iter().enumerate() {
        let cells: Vec<String> = tallies.iter().map(|(_, t)| format!("{:>4}", t.strata.category(ci))).collect();
        println!("    {:<14} {}", c.as_str(), cells.join(" "));
    }
    let s = &v.similarity;
    let pair = |p: &Option<(ItemRef, ItemRef, f64)>| match p {
        Some((a, b, sim)) => format!("{sim:.3} ({} {}, {} {})", a.split, a.id, b.split, b.id),
        None => "-".into(),
    };
    println!("similarity: {} pairs compared (character 3-gram Jaccard, threshold {})", s.compared, s.threshold);
    println!("  most similar pair:                 {}", pair(&s.max_any));
    println!("  most similar evaluation/training:  {}", pair(&s.max_eval_train));
    let ids = v.problems.iter().filter(|p| matches!(p, crate::data::Problem::DuplicateId { .. })).count();
    println!(
        "duplicate ids: {ids}; exact duplicates: {}; near duplicates: {}; leakage: {}",
        s.exact_duplicates, s.near_duplicates, s.leaks
    );
    match &v.training_prompts {
        Some((path, n)) => {
            let stale = v.problems.iter().filter(|p| matches!(p, crate::data::Problem::StaleTrainingPrompt { .. })).count();
            println!("training prompts: {} ({n} lines, {stale} not matching the pool)", path.display());
        }
        None => println!("training prompts: not built (run `medrl data build-prompts`)"),
    }
}

fn print_strata(available: &Strata, quotas: &[usize; 8], realised: &Strata) {
    println!("  {:<14} {:>10} {:>10} {:>6} {:>6} {:>6} {:>6}", "category", "pool high", "pool low", "quota", "high", "low", "total");
    for (ci, c) in CATEGORIES.iter().enumerate() {
        println!(
            "  {:<14} {:>10} {:>10} {:>6} {:>6} {:>6} {:>6}",
            c.as_str(),
            available.0[ci][0],
            available.0[ci][1],
            quotas[ci],
            realised.0[ci][0],
            realised.0[ci][1],
            realised.category(ci)
        );
    }
    println!(
        "  {:<14} {:>10} {:>10} {:>6} {:>6} {:>6} {:>6}",
        "all",
        available.high(),
        available.total() - available.high(),
        quotas.iter().sum::<usize>(),
        realised.high(),
        realised.total() - realised.high(),
        realised.total()
    );
}

fn score_references(dir: &Path, reference: &str, split: Option<Split>, lowest: usize, audit_log: &Path, g: &Globals) -> anyhow::Result<()> {
    let reference: VersionRef = reference.parse().map_err(anyhow::Error::msg)?;
    let data = DataSets::load(dir)?;
    if !data.malformed.is_empty() {
        return Err(DataError::Invalid { dir: data.dir.clone(), problems: data.malformed.clone() }.into());
    }
    let log = crate::reward::AuditLog::open(audit_log)?;
    let accepted = g.registry.accept_ruleset(&reference, humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string())?;
    log.record_load(&accepted)?;
    let sandbox = Sandbox::new(g.threads)?;
    let scorer = RuleSetScorer::new(&sandbox, accepted.ruleset)?;
    println!(
        "rule set {} (revision {}, sha256 {})",
        scorer.ruleset.manifest.reference(),
        scorer.ruleset.manifest.revision,
        scorer.ruleset.sha256
    );
    let splits: Vec<Split> = match split {
        Some(s) => vec![s],
        None => Split::ALL.into_iter().filter(|s| s.has_answers()).collect(),
    };
    for split in splits {
        let samples = reference_samples(&data.split(split).items);
        let scores = scorer.score_batch(&samples);
        let appended = log.record_scores(&scorer, &samples, &scores)?;
        eprintln!("audit: {split}: records {}-{} appended to {}", appended.first, appended.last, log.path().display());
        if let Some((s, rule)) = scores.iter().find_map(|s| match &s.reward {
            Reward::Aborted { rule } => Some((s, rule)),
            _ => None,
        }) {
            bail!("rule `{rule}` failed on reference `{}` and its on_error is `abort`; no means are reported", s.sample_id);
        }
        let summary = summarize(&scores, lowest);
        println!("{split}: {} reference answers", summary.samples);
        println!("  {:<20} {:>8} {:>6} {:>7} {:>8}", "rule", "applied", "n/a", "failed", "mean");
        for r in &summary.rules {
            let mean = r.mean.map_or("-".to_string(), |m| format!("{m:.4}"));
            println!("  {:<20} {:>8} {:>6} {:>7} {:>8}", r.rule, r.applied, r.not_applicable, r.failed, mean);
        }
        let reward = summary.mean_reward.map_or("-".to_string(), |m| format!("{m:.4}"));
        println!("  mean reward {reward} over {} answers ({} without a reward)", summary.scored, summary.unrewarded);
        if !summary.lowest.is_empty() {
            let list: Vec<String> = summary.lowest.iter().map(|(id, r)| format!("{id} {r:.4}")).collect();
            println!("  lowest: {}", list.join(", "));
        }
    }
    Ok(())
}

/// A default output path from the data root: `data/rl/…` and `data/DATA_CARD.md` lie beside
/// `data/sets`, so `--dir some/sets` puts them in `some/`. The constants are spelt from the
/// repository root (`data/…`); the first component is replaced by the data directory's parent.
fn beside(dir: &Path, default_from_repo_root: &str) -> PathBuf {
    let rel = default_from_repo_root.strip_prefix("data/").expect("defaults lie under data/");
    match dir.parent() {
        Some(parent) => parent.join(rel),
        None => PathBuf::from(rel),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), DataError> {
    let err = |source| DataError::Write { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    std::fs::write(path, text).map_err(err)
}

fn parse_threshold(s: &str) -> Result<f64, String> {
    let t: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if t > 0.0 && t <= 1.0 { Ok(t) } else { Err(format!("{t} is not a similarity in (0, 1]")) }
}

fn parse_quota(s: &str) -> Result<(Category, usize), String> {
    let (category, min) = s.split_once('=').ok_or_else(|| format!("`{s}` is not CATEGORY=MIN, e.g. emergency=60"))?;
    let category = parse_category(category.trim())?;
    let min = min.trim().parse().map_err(|_| format!("`{min}` in `{s}` is not a whole number"))?;
    Ok((category, min))
}

fn parse_answer_split(s: &str) -> Result<Split, String> {
    let split: Split = s.parse()?;
    if split.has_answers() { Ok(split) } else { Err(format!("`{s}` has no reference answers; choose sft, gold or redteam")) }
}
