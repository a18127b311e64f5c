//! `medrl data …`: validate the prompt sets, build the trainer's prompts, render the data card,
//! score the reference answers.

use super::Globals;
use anyhow::bail;
use clap::{Args, Subcommand};
use medrl::data::build_prompts::{
    self, DEFAULT_HIGH_RISK_MIN, DEFAULT_MAX_REUSE, DEFAULT_N, DEFAULT_OUT, DEFAULT_ROUND_N, DEFAULT_SEED, RoundPlan, SamplingConfig, Strata,
};
use medrl::data::card::{self, CardInput, DEFAULT_CARD};
use medrl::data::item::{CATEGORIES, Split, parse_category};
use medrl::data::near_dup::DEFAULT_THRESHOLD;
use medrl::data::references::{reference_samples, summarize};
use medrl::data::sets::{DEFAULT_DIR, read_lines};
use medrl::data::stats::{Tally, percent};
use medrl::data::validate::{ItemRef, Validation};
use medrl::data::{DataError, DataSets, TrainingPrompt, validate};
use medrl::registry::VersionRef;
use medrl::reward::{ScoringSession, SessionError};
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
    /// with a high-risk floor and per-category quotas; prints the realised strata. With --round,
    /// one of the plan's PPO rounds: 2,000 prompts, fresh ones first, capped re-use of the
    /// previous round.
    BuildPrompts {
        #[command(flatten)]
        sets: SetsArgs,
        /// Where to write the prompts [default: rl/training_prompts.jsonl beside --dir; with --round N, rl/round-N.jsonl]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Prompts to draw [default: 512; with --round, 2000].
        #[arg(long)]
        n: Option<usize>,
        /// Draw round N of the plan; rounds before it must be built (rl/round-1.jsonl …).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        round: Option<u32>,
        /// With --round: most of the round's prompts that may repeat the previous round, a share.
        #[arg(long, default_value_t = DEFAULT_MAX_REUSE, requires = "round")]
        max_reuse: f64,
        /// With --round: prompts whose earlier answers were reviewed (review_samples.jsonl from
        /// `medrl review sample`, JSONL with `id`, or one id per line); re-used before the rest.
        #[arg(long, requires = "round")]
        reviewed: Vec<PathBuf>,
        /// Draw only from these pool files (names below --dir, e.g. pool.jsonl); repeatable. All
        /// pool files when left out.
        #[arg(long = "pool-file", value_name = "NAME")]
        pool_files: Vec<PathBuf>,
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
    /// Import a local file of an outside question set (JSONL with a field map, multiple-choice
    /// exam, dialogue) into the pool as `pool/<source>.jsonl`, with its licence and each item's
    /// origin; duplicates of existing items are refused, unplaceable records set aside for review.
    Import {
        /// The file's shape: jsonl, exam or dialogue.
        #[arg(long)]
        format: medrl::data::import::Format,
        /// The licence the set is used under, an SPDX expression (CC-BY-4.0, MIT, LicenseRef-…).
        #[arg(long)]
        licence: String,
        /// The set's name (lowercase letters, digits, `-`): each item's source and the pool file's name.
        #[arg(long)]
        source: String,
        /// Where a value is in each record, FIELD=PATH (dotted); FIELD is prompt, id, lang, category, risk or tags. Repeatable.
        #[arg(long = "field", value_name = "FIELD=PATH", value_parser = parse_field)]
        fields: Vec<(String, String)>,
        /// Data directory holding pool.jsonl and the pool/ folder.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Overwrite pool/<source>.jsonl from an earlier import of this source.
        #[arg(long)]
        replace: bool,
        /// Report what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Character 3-gram Jaccard similarity at or above which a record duplicates an existing item.
        #[arg(long, default_value_t = DEFAULT_THRESHOLD, value_parser = parse_threshold)]
        near_dup_threshold: f64,
        /// The local file (JSONL; CSV for --format exam).
        file: PathBuf,
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
            let prompts = built_prompt_files(&sets.dir, prompts)?;
            let data = DataSets::load(&sets.dir)?;
            let v = validate(&data, sets.near_dup_threshold, &prompts)?;
            print_summary(&data, &v);
            v.into_result(&data.dir)?;
            println!("ok: no problems");
            Ok(())
        }
        DataCommand::BuildPrompts { sets, out, n, round, max_reuse, reviewed, pool_files, seed, high_risk_min, quotas } => {
            if !(0.0..=1.0).contains(&max_reuse) {
                bail!("--max-reuse {max_reuse} is not a share between 0 and 1");
            }
            let n = n.unwrap_or(if round.is_some() { DEFAULT_ROUND_N } else { DEFAULT_N });
            let out = out.unwrap_or_else(|| beside(&sets.dir, &round.map_or(DEFAULT_OUT.to_string(), build_prompts::round_out)));
            let data = DataSets::load(&sets.dir)?;
            let v = validate(&data, sets.near_dup_threshold, &[])?;
            // Duplicates among training prompts are dropped by the sampler; anything else stops it.
            let blocking: Vec<_> = v.problems.into_iter().filter(|p| !p.is_training_duplicate()).collect();
            if !blocking.is_empty() {
                return Err(DataError::Invalid { dir: data.dir, problems: blocking }.into());
            }
            let plan = round.map(|r| round_plan(&sets.dir, r, max_reuse, &reviewed)).transpose()?;
            let cfg = SamplingConfig { n, seed, high_risk_min, quotas, dedup_threshold: sets.near_dup_threshold };
            let mut pool = data.split(Split::Pool).clone();
            if !pool_files.is_empty() {
                let wanted: Vec<PathBuf> = pool_files.iter().map(|f| sets.dir.join(f)).collect();
                if let Some(missing) = wanted.iter().find(|w| !pool.files.contains(w)) {
                    let known: Vec<String> = pool.files.iter().map(|f| f.display().to_string()).collect();
                    bail!("--pool-file {} is not a pool file; the pool files are: {}", missing.display(), known.join(", "));
                }
                pool.items.retain(|i| wanted.contains(&i.loc.file));
                pool.files = wanted;
            }
            let built = build_prompts::build(&pool, &cfg, plan.as_ref())?;
            build_prompts::write(&out, &built.prompts)?;
            println!(
                "drew {} of {} pool prompts with seed {seed}{} -> {}",
                built.prompts.len(),
                built.available.total() + built.dropped.len(),
                round.map(|r| format!(", round {r}")).unwrap_or_default(),
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
            if plan.as_ref().is_some_and(|p| p.round == 1) {
                println!("round 1: {} prompts, none drawn before", built.prompts.len());
            } else if let Some(plan) = &plan {
                let fresh = built.prompts.iter().filter(|p| !plan.earlier.contains(&p.id)).count();
                println!(
                    "round {}: {fresh} fresh, {} re-used from round {} ({}, cap {}: at most {}), {} of them reviewed",
                    plan.round,
                    built.reused,
                    plan.round.saturating_sub(1),
                    percent(medrl::data::stats::share(built.reused, built.prompts.len())),
                    percent(plan.max_reuse),
                    plan.reuse_cap(built.prompts.len()),
                    built.reused_reviewed
                );
            }
            Ok(())
        }
        DataCommand::Card { sets, prompts, out, check } => {
            let prompts = prompts.unwrap_or_else(|| beside(&sets.dir, DEFAULT_OUT));
            let out = out.unwrap_or_else(|| beside(&sets.dir, DEFAULT_CARD));
            let data = DataSets::load(&sets.dir)?;
            let round_files = round_files(&sets.dir)?;
            let mut checked = vec![prompts.clone()];
            checked.extend(round_files.iter().map(|(_, p)| p.clone()));
            let v = validate(&data, sets.near_dup_threshold, &checked)?;
            let lines = if prompts.exists() { Some(read_lines::<TrainingPrompt>(&prompts)?.0) } else { None };
            let mut rounds = Vec::new();
            for (_, path) in round_files {
                let lines = read_lines::<TrainingPrompt>(&path)?.0;
                rounds.push((path, lines));
            }
            let text = card::render(&CardInput {
                sets: &data,
                validation: &v,
                training_prompts: lines.as_deref().map(|l| (prompts.as_path(), l)),
                rounds: &rounds,
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
        DataCommand::Import { format, licence, source, fields, dir, replace, dry_run, near_dup_threshold, file } => {
            let opts = medrl::data::import::ImportOptions {
                format,
                file,
                source,
                licence,
                fields: fields.into_iter().collect(),
                threshold: near_dup_threshold,
            };
            import(&opts, &dir, replace, dry_run)
        }
        DataCommand::ScoreReferences { dir, ruleset, split, lowest, audit_log } => score_references(&dir, &ruleset, split, lowest, &audit_log, g),
    }
}

/// `medrl data import`: refuse before writing when the target exists (unless --replace), write
/// the pool file, then validate the whole data directory and put the old state back if the new
/// file brings any problem.
fn import(opts: &medrl::data::import::ImportOptions, dir: &Path, replace: bool, dry_run: bool) -> anyhow::Result<()> {
    use medrl::data::import;
    import::check_options(opts)?;
    let out = dir.join(medrl::data::sets::POOL_DIR).join(format!("{}.jsonl", opts.source));
    let side = |kind: &str| beside(dir, &format!("data/import/{}.{kind}.jsonl", opts.source));
    if out.exists() && !replace {
        bail!("{} exists from an earlier import of `{}`; pass --replace to import it again, or choose another --source", out.display(), opts.source);
    }
    let data = DataSets::load(dir)?;
    let before = validate(&data, DEFAULT_THRESHOLD, &[])?;
    let imported = import::import(opts, &data, replace.then_some(out.as_path()))?;
    println!(
        "{}: {} records (sha256 {}), format {}, licence {}",
        opts.file.display(),
        imported.records,
        imported.sha256,
        opts.format.as_str(),
        opts.licence
    );
    let tally = medrl::data::stats::Tally::of(
        &imported
            .items
            .iter()
            .map(|i| medrl::data::Located { loc: medrl::data::Loc { file: out.clone(), line: 0 }, value: i.clone() })
            .collect::<Vec<_>>(),
    );
    println!(
        "  imported {} ({} zh, {} en; {} high-risk), refused {}, set aside for review {}",
        imported.items.len(),
        tally.lang[0],
        tally.lang[1],
        tally.strata.high(),
        imported.refused.len(),
        imported.review.len()
    );
    for (ci, c) in CATEGORIES.iter().enumerate().filter(|(ci, _)| tally.strata.category(*ci) > 0) {
        println!("    {:<14} {:>5} ({} high-risk)", c.as_str(), tally.strata.category(ci), tally.strata.0[ci][0]);
    }
    for s in &imported.refused {
        println!("  refused {}:{}: {}", opts.file.display(), s.line, s.reason);
    }
    for s in &imported.review {
        println!("  review  {}:{}: {}", opts.file.display(), s.line, s.reason);
    }
    if dry_run {
        println!("dry run: nothing written");
        return Ok(());
    }
    if imported.items.is_empty() {
        bail!("nothing to import from {}: every record was refused or set aside (listed above)", opts.file.display());
    }
    let previous = std::fs::read(&out).ok();
    import::write_items(&out, &imported.items).map_err(|source| DataError::Write { path: out.clone(), source })?;
    let after = DataSets::load(dir).and_then(|d| validate(&d, DEFAULT_THRESHOLD, &[]));
    let new_problems: Vec<String> = match &after {
        Ok(v) => v.problems.iter().filter(|p| !before.problems.contains(p)).map(|p| p.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    };
    if !new_problems.is_empty() {
        match previous {
            Some(bytes) => std::fs::write(&out, bytes)?,
            None => std::fs::remove_file(&out)?,
        }
        bail!("the import would make the data invalid, so nothing was kept:\n  - {}", new_problems.join("\n  - "));
    }
    for (kind, list) in [("refused", &imported.refused), ("review", &imported.review)] {
        let path = side(kind);
        import::write_setbacks(&path, list).map_err(|source| DataError::Write { path: path.clone(), source })?;
        if !list.is_empty() {
            println!("  {kind}: {}", path.display());
        }
    }
    println!("wrote {} ({} items); run `medrl data card` to update the data card", out.display(), imported.items.len());
    Ok(())
}

fn parse_field(s: &str) -> Result<(String, String), String> {
    let (field, path) = s.split_once('=').ok_or_else(|| format!("`{s}` is not FIELD=PATH, e.g. prompt=data.question"))?;
    let field = field.trim();
    if !medrl::data::import::FIELDS.contains(&field) {
        return Err(format!("`{field}` is not one of {}", medrl::data::import::FIELDS.join(", ")));
    }
    Ok((field.to_string(), path.trim().to_string()))
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
    println!("  {:<8} {:>6} {:>5} {:>5} {:>8}", "all", total, zh, total - zh, percent(medrl::data::stats::share(zh, total)));
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
    let ids = v.problems.iter().filter(|p| matches!(p, medrl::data::Problem::DuplicateId { .. })).count();
    println!("duplicate ids: {ids}; exact duplicates: {}; near duplicates: {}; leakage: {}", s.exact_duplicates, s.near_duplicates, s.leaks);
    if v.training_prompts.is_empty() {
        println!("training prompts: not built (run `medrl data build-prompts`)");
    }
    for (path, n) in &v.training_prompts {
        let stale = v.problems.iter().filter(|p| matches!(p, medrl::data::Problem::StaleTrainingPrompt { loc, .. } if &loc.file == path)).count();
        println!("training prompts: {} ({n} lines, {stale} not matching the pool)", path.display());
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
    let session = ScoringSession::open(&g.registry, &reference, audit_log, g.threads)?;
    for notice in session.notices() {
        eprintln!("{notice}");
    }
    let scorer = &session.scorer;
    println!("rule set {} (revision {}, sha256 {})", scorer.ruleset.manifest.reference(), scorer.ruleset.manifest.revision, scorer.ruleset.sha256);
    let splits: Vec<Split> = match split {
        Some(s) => vec![s],
        None => Split::ALL.into_iter().filter(|s| s.has_answers()).collect(),
    };
    for split in splits {
        let samples = reference_samples(&data.split(split).items);
        let (scores, appended) = match session.score(&samples) {
            Ok(scored) => scored,
            Err(SessionError::Aborted { rule, sample, .. }) => {
                bail!("rule `{rule}` failed on reference `{sample}` and its on_error is `abort`; no means are reported")
            }
            Err(e) => return Err(e.into()),
        };
        let log = session.audit().expect("open attaches the log");
        eprintln!("audit: {split}: records {}-{} appended to {}", appended.first, appended.last, log.path().display());
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

/// The built prompt files `validate` checks: `--prompts` when given, else the default
/// `rl/training_prompts.jsonl` and every `rl/round-N.jsonl` beside the data directory.
fn built_prompt_files(dir: &Path, prompts: Option<PathBuf>) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(p) = prompts {
        return Ok(vec![p]);
    }
    let mut files = vec![beside(dir, DEFAULT_OUT)];
    files.extend(round_files(dir)?.into_iter().map(|(_, p)| p));
    Ok(files)
}

/// The built rounds beside the data directory, `rl/round-N.jsonl`, by round number.
fn round_files(dir: &Path) -> anyhow::Result<Vec<(u32, PathBuf)>> {
    let folder = beside(dir, "data/rl");
    let mut rounds = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&folder) {
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if let Some(n) = name.strip_prefix("round-").and_then(|r| r.strip_suffix(".jsonl")).and_then(|r| r.parse::<u32>().ok()) {
                rounds.push((n, path));
            }
        }
    }
    rounds.sort();
    Ok(rounds)
}

/// What round `round` needs of the rounds before it: their prompt ids (every earlier round must
/// be built) and the reviewed ids.
fn round_plan(dir: &Path, round: u32, max_reuse: f64, reviewed: &[PathBuf]) -> anyhow::Result<RoundPlan> {
    let mut plan = RoundPlan { round, max_reuse, ..RoundPlan::default() };
    for earlier in 1..round {
        let path = beside(dir, &build_prompts::round_out(earlier));
        if !path.exists() {
            return Err(DataError::MissingRound { round, previous: earlier, path }.into());
        }
        let (lines, bad) = read_lines::<TrainingPrompt>(&path)?;
        if let Some(problem) = bad.first() {
            bail!("{problem}");
        }
        let ids: std::collections::HashSet<String> = lines.into_iter().map(|l| l.value.id).collect();
        if earlier + 1 == round {
            plan.previous = ids.clone();
        }
        plan.earlier.extend(ids);
    }
    for file in reviewed {
        plan.reviewed.extend(build_prompts::read_reviewed_ids(file)?);
    }
    Ok(plan)
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
