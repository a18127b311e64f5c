//! `medrl rules …`: scaffold, build, test, publish and score with rules, and measure them against
//! clinician labels (`rules eval`); sign, inspect, verify, diff, document and replay them
//! (handlers of the governance commands are in `govern.rs`).

use super::{ExitError, Globals, govern};
use anyhow::{Context, bail};
use clap::Subcommand;
use medrl::eval::BootstrapConfig;
use medrl::governance::AuditLog;
use medrl::governance::author::{self, RULE_SOURCE};
use medrl::governance::publish::{BumpPart, RuleSetSpec, bump_ruleset, create_ruleset};
use medrl::governance::rules_eval::{self, EvalOptions};
use medrl::io::read_jsonl;
use medrl::registry::store::{RULESET_MANIFEST, read_json};
use medrl::registry::trust::signature_files;
use medrl::registry::{RuleSetManifest, VersionRef};
use medrl::reward::{Decision, LoadedRule, OutcomeKind, Reward, Sandbox, ScoringSession, SessionError};
use medrl_sdk::Sample;
use medrl_sdk::vectors::parse_vectors;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Scaffold a rule crate that builds and passes its vectors as generated.
    New {
        /// Rule id: lowercase letters, digits and `-`.
        name: String,
        /// Where to create the crate (default: rules-wasm/NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path to medrl-sdk, for a rule crate outside the medrl repository.
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// `score` (credited; on_error zero) or `penalty` (subtracted; on_error max_penalty).
        #[arg(long, value_parser = ["score", "penalty"], default_value = "score")]
        kind: String,
    },
    /// Build a rule crate for wasm32, validate it, run its vectors, and publish it to the registry.
    /// Cargo.lock is never changed (`--locked`).
    Build {
        /// Rule crate folders (with rule.toml).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Build, validate and run the vectors, and say what publishing would do; write nothing
        /// in the registry.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run every published rule's golden vectors in the sandbox (or only the given id@version).
    Test {
        rules: Vec<String>,
        /// Also score the labelled answers that name each rule (data/rules-eval/FORMAT.md: a
        /// corpus root, a split folder or one file) and print its agreement per split.
        #[arg(long)]
        labels: Option<PathBuf>,
    },
    /// Measure a rule set against clinician labels: per rule agreement, precision, recall, F1
    /// with bootstrap intervals, by language, category and class, the disagreements, and how
    /// the reward orders good-vs-hack pairs (docs/rules_eval.md). Exit 3 when a --gate fails.
    Eval(EvalArgs),
    /// List rule sets and rules in the registry.
    List,
    /// Score samples with a rule set: a per-sample breakdown with explanations.
    Score {
        /// Rule set, exact version: NAME@VERSION.
        #[arg(long)]
        ruleset: String,
        /// JSONL of samples (id, prompt, response, lang, category, risk, tags, expect).
        #[arg(long)]
        input: PathBuf,
        /// One JSON object per sample instead of the table.
        #[arg(long)]
        json: bool,
        /// The hash-chained audit log to append every evaluation to (inputs go to
        /// `<stem>.samples.jsonl` beside it).
        #[arg(long, env = "MEDRL_AUDIT_LOG", default_value = ".medrl/audit.jsonl")]
        audit_log: PathBuf,
    },
    /// Rule-set versions.
    #[command(subcommand)]
    Ruleset(RulesetCommand),
    /// Sign a rule set: a detached Ed25519 signature `<key_id>.sig` beside its ruleset.json.
    Sign {
        /// NAME@VERSION.
        ruleset: String,
        /// Private key file (from `medrl keys generate`).
        #[arg(long)]
        key: PathBuf,
        /// Signing time to record, RFC 3339 (default: now).
        #[arg(long)]
        signed_at: Option<String>,
    },
    /// What a rule set contains: revision, approvals, signatures, rules with hashes, files.
    Inspect {
        ruleset: String,
        #[arg(long)]
        json: bool,
    },
    /// Check every hash, file and signature of a rule set. Exit codes: 0 verified, 1 usage,
    /// 3 content (hash, size, pin), 4 files (extra or missing), 5 signatures, 6 rebuild.
    Verify {
        ruleset: String,
        /// Also rebuild each rule from its recorded source and compare the module sha256.
        #[arg(long)]
        rebuild: bool,
        /// Root the rules' recorded `build.source_path` is relative to (default: current folder).
        #[arg(long, default_value = ".")]
        source_root: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// What changed between two rule-set versions.
    Diff {
        from: String,
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Write reward_rules.md for a rule set, generated from its manifests.
    Doc {
        ruleset: String,
        /// Output file, `-` for stdout.
        #[arg(long, default_value = "reward_rules.md")]
        out: PathBuf,
    },
    /// Re-run logged evaluations from an audit log and check outcome, output and fuel match.
    Replay {
        /// The audit log (`.medrl/audit.jsonl` by default for `rules score`).
        file: PathBuf,
        /// The line of one evaluation record.
        #[arg(long, conflicts_with = "all")]
        line: Option<u64>,
        /// Every evaluation record.
        #[arg(long)]
        all: bool,
    },
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Rule set, exact version: NAME@VERSION.
    #[arg(long)]
    ruleset: String,
    /// The labels: a corpus root holding dev/ and test/, one split folder, or one
    /// answers*.jsonl / pairs*.jsonl file.
    #[arg(long)]
    labels: PathBuf,
    /// Only this split of a corpus root (default: every split present, side by side).
    #[arg(long)]
    split: Option<String>,
    /// Write the report as JSON (`medrl.rules-eval/1`) to this file (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the full Markdown report to this file (`-` for stdout); the summary is printed either way.
    #[arg(long)]
    md: Option<PathBuf>,
    /// A threshold the evaluation must meet, e.g. `risk.recall>=0.95`,
    /// `test:risk.precision[lang=zh]>=0.95`, `pairs.ordered>=1`. Repeatable; a failed gate exits 3.
    #[arg(long = "gate", value_name = "[SPLIT:]RULE.METRIC[BY=VALUE] OP X")]
    gates: Vec<String>,
    /// The score at which a rule says yes (credits or penalises): RULE=X. Default 0.5, chain 1.0.
    #[arg(long = "threshold", value_name = "RULE=X")]
    thresholds: Vec<String>,
    /// A pair counts as ordered when the good answer's reward exceeds the hack's by at least this.
    #[arg(long, default_value_t = medrl::governance::rules_eval::DEFAULT_MARGIN)]
    margin: f64,
    /// Bootstrap resamples per interval.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    /// Seed of the bootstrap resamples (the same seed gives the same intervals).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The hash-chained audit log every evaluation is appended to.
    #[arg(long, env = "MEDRL_AUDIT_LOG", default_value = ".medrl/audit.jsonl")]
    audit_log: PathBuf,
}

#[derive(Subcommand)]
pub enum RulesetCommand {
    /// Publish a new rule-set version from a TOML spec.
    New {
        spec: PathBuf,
        /// Creation time to record, RFC 3339 (default: now).
        #[arg(long)]
        created_at: Option<String>,
    },
    /// Publish the spec as the next version after the latest one of its name.
    Bump {
        spec: PathBuf,
        /// Which part of the latest version to raise.
        #[arg(long, value_parser = ["major", "minor", "patch"], default_value = "minor")]
        part: String,
        /// Creation time to record, RFC 3339 (default: now).
        #[arg(long)]
        created_at: Option<String>,
    },
}

pub fn run(cmd: RulesCommand, g: &Globals) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::New { name, dir, sdk, kind } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("rules-wasm").join(&name));
            let kind = if kind == "penalty" { author::ScaffoldKind::Penalty } else { author::ScaffoldKind::Score };
            author::scaffold_kind(&name, &dir, sdk.as_deref(), kind)?;
            println!("created rule `{name}` in {} (its Cargo.lock entry included: commit it with the crate)", dir.display());
            println!(
                "next: edit {d}/src/lib.rs, {d}/{RULE_SOURCE} and {d}/vectors.jsonl; `cargo test --manifest-path {d}/Cargo.toml` runs the vectors natively, `medrl rules build --dry-run {d}` in the sandbox, `medrl rules build {d}` publishes",
                d = dir.display()
            );
            Ok(())
        }
        RulesCommand::Build { dirs, dry_run: true } => {
            let sandbox = Sandbox::with_limits(1, g.registry.host_limits())?;
            for dir in dirs {
                let dry = author::build_dry_run(&dir, &g.registry, &sandbox).with_context(|| format!("building the rule in {}", dir.display()))?;
                let r = &dry.report;
                let verdict = match dry.outcome {
                    author::DryRunOutcome::WouldPublish => format!("would be published to {}", r.dir.display()),
                    author::DryRunOutcome::Unchanged => format!("is already published in {} with these exact bytes", r.dir.display()),
                    author::DryRunOutcome::WouldBeRefused => format!(
                        "would be REFUSED: {} holds this version with other content; bump `version` in rule.toml and Cargo.toml",
                        r.dir.display()
                    ),
                };
                println!(
                    "dry run: {} builds (sha256 {}, {} bytes) and passes its {} vectors; it {verdict}; nothing was written",
                    r.reference, r.module_sha256, r.module_size, r.vectors
                );
            }
            Ok(())
        }
        RulesCommand::Build { dirs, dry_run: false } => {
            let sandbox = Sandbox::with_limits(1, g.registry.host_limits())?;
            for dir in dirs {
                let report = author::build(&dir, &g.registry, &sandbox).with_context(|| format!("building the rule in {}", dir.display()))?;
                let verb = if report.written { "published" } else { "unchanged" };
                println!(
                    "{verb} {} -> {} (sha256 {}, {} bytes, {} vectors pass)",
                    report.reference,
                    report.dir.display(),
                    report.module_sha256,
                    report.module_size,
                    report.vectors
                );
            }
            Ok(())
        }
        RulesCommand::Test { rules, labels } => test(rules, labels.as_deref(), g),
        RulesCommand::Eval(args) => eval(args, g),
        RulesCommand::List => list(g),
        RulesCommand::Score { ruleset, input, json, audit_log } => score(&ruleset, &input, json, &audit_log, g),
        RulesCommand::Ruleset(RulesetCommand::New { spec, created_at }) => {
            let parsed = RuleSetSpec::read(&spec)?;
            let m = create_ruleset(&g.registry, &parsed, &spec, created_at.unwrap_or_else(govern::now))?;
            published(&m, g);
            Ok(())
        }
        RulesCommand::Ruleset(RulesetCommand::Bump { spec, part, created_at }) => {
            let parsed = RuleSetSpec::read(&spec)?;
            let part = match part.as_str() {
                "major" => BumpPart::Major,
                "patch" => BumpPart::Patch,
                _ => BumpPart::Minor,
            };
            let m = bump_ruleset(&g.registry, &parsed, part, &spec, created_at.unwrap_or_else(govern::now))?;
            published(&m, g);
            if let Some(p) = &m.previous {
                govern::diff_cmd(&format!("{}@{}", m.name, p.version), &m.reference(), false, &plain(g))?;
            }
            Ok(())
        }
        RulesCommand::Sign { ruleset, key, signed_at } => govern::sign(&ruleset, &key, signed_at, g),
        RulesCommand::Inspect { ruleset, json } => govern::inspect(&ruleset, json, g),
        RulesCommand::Verify { ruleset, rebuild, source_root, json } => govern::verify(&ruleset, rebuild, &source_root, json, g),
        RulesCommand::Diff { from, to, json } => govern::diff_cmd(&from, &to, json, g),
        RulesCommand::Doc { ruleset, out } => govern::doc_cmd(&ruleset, &out, g),
        RulesCommand::Replay { file, line, all } => govern::replay(&file, line, all, g),
    }
}

/// The same registry without a keyring: a just-published version has no signature yet.
fn plain(g: &Globals) -> Globals {
    Globals {
        registry: medrl::registry::Registry::integrity_only(g.registry.root()),
        flags: medrl::reward::RuleFlags::default(),
        threads: g.threads,
        operator_key: None,
    }
}

fn published(m: &RuleSetManifest, g: &Globals) {
    println!(
        "published rule set {} (revision {}, {} rules, {} pinned files) in {}",
        m.reference(),
        m.revision,
        m.rules.len(),
        m.files.len(),
        g.registry.ruleset_dir(&m.name, &m.version).display()
    );
    println!("next: review it with `medrl rules inspect {}`, then sign it with `medrl rules sign {} --key KEY`", m.reference(), m.reference());
}

fn eval(a: EvalArgs, g: &Globals) -> anyhow::Result<()> {
    let reference: VersionRef = a.ruleset.parse().map_err(anyhow::Error::msg)?;
    let dash = |p: &Option<PathBuf>| p.as_deref() == Some(std::path::Path::new("-"));
    if dash(&a.json) && dash(&a.md) {
        bail!("--json - and --md - both ask for stdout; write one of them to a file");
    }
    let stdout_taken = dash(&a.json) || dash(&a.md);
    let opts = EvalOptions {
        thresholds: a.thresholds.iter().map(|t| rules_eval::parse_threshold(t)).collect::<Result<_, _>>()?,
        margin: a.margin,
        bootstrap: BootstrapConfig { resamples: a.resamples, seed: a.seed, ..BootstrapConfig::default() },
        gates: a.gates.iter().map(|x| x.parse::<rules_eval::Gate>()).collect::<Result<_, _>>()?,
    };
    // Labels, rule set, thresholds and gates are all checked before the audit log is touched.
    let corpus = rules_eval::labels::read(&a.labels, a.split.as_deref())?;
    let mut session = ScoringSession::accept(&g.registry, &reference, g.threads)?;
    rules_eval::prepare(&session, &corpus, &opts)?;
    session.log_to(AuditLog::open(&a.audit_log)?)?;
    for notice in session.notices() {
        eprintln!("{notice}");
    }
    let report = rules_eval::evaluate(&session, &corpus, &a.labels, &opts)?;
    let write = |path: &std::path::Path, text: &str| -> anyhow::Result<()> {
        if path == std::path::Path::new("-") {
            print!("{text}");
        } else {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    };
    if let Some(path) = &a.json {
        write(path, &(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    if let Some(path) = &a.md {
        write(path, &rules_eval::markdown::render(&report))?;
    }
    // The summary goes to stdout unless a report does; then to stderr, so `--json -` pipes clean.
    let summary = rules_eval::markdown::render_summary(&report);
    if stdout_taken {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    let failed: Vec<String> =
        report.failed_gates().map(|x| format!("`{}` on {} ({})", x.expression, x.split, x.reason.clone().unwrap_or_default())).collect();
    if !failed.is_empty() {
        return Err(ExitError { code: GATE_FAILED, message: format!("{} gate(s) failed: {}", failed.len(), failed.join("; ")) }.into());
    }
    Ok(())
}

/// Exit code of `medrl rules eval` when a gate failed (as `medrl eval`'s; the reports are written first).
const GATE_FAILED: u8 = 3;

fn test(selected: Vec<String>, labels: Option<&std::path::Path>, g: &Globals) -> anyhow::Result<()> {
    let refs: Vec<VersionRef> = if selected.is_empty() {
        g.registry
            .names("rules")
            .into_iter()
            .flat_map(|id| g.registry.versions("rules", &id).into_iter().map(move |version| VersionRef { name: id.clone(), version }))
            .collect()
    } else {
        selected.iter().map(|s| s.parse().map_err(anyhow::Error::msg)).collect::<anyhow::Result<_>>()?
    };
    if refs.is_empty() {
        bail!("no rules in {}; build one with `medrl rules build DIR`", g.registry.root().display());
    }
    let corpus = labels.map(|p| rules_eval::labels::read(p, None)).transpose()?;
    let sandbox = Sandbox::with_limits(1, g.registry.host_limits())?;
    let mut failed = 0;
    for r in refs {
        let rule = g.registry.load_rule(&r)?;
        let loaded = LoadedRule::new(&sandbox, &rule, 1.0, None)?;
        let path = rule.dir.join(&rule.manifest.vectors.file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let vectors = parse_vectors(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut failures: Vec<String> = loaded.vector_failures(&vectors).into_iter().map(|f| format!("    {f}")).collect();
        let samples: Vec<Sample> = vectors.iter().map(|v| v.sample.clone()).collect();
        let isolated = loaded.check_isolation(&samples);
        println!(
            "{r}: {}/{} vectors pass; {}",
            vectors.len() - failures.len(),
            vectors.len(),
            if isolated.is_ok() { "no state kept between evaluations" } else { "KEEPS STATE between evaluations" }
        );
        if let Err(e) = isolated {
            failures.push(format!("    {e}"));
        }
        for f in &failures {
            println!("{f}");
        }
        failed += failures.len();
        if let Some(corpus) = &corpus {
            for (split, report) in rules_eval::rule_alone(&loaded, corpus, &EvalOptions::default()) {
                match report {
                    None => println!("    eval labels ({split}): none name `{}`", r.name),
                    Some(x) => {
                        let f = &x.overall;
                        let share = |e: Option<medrl::eval::Estimate>| e.map_or("–".to_string(), |e| format!("{:.3}", e.value));
                        println!(
                            "    eval labels ({split}): agreement {}/{} = {}; precision {}, recall {}, F1 {} at score ≥ {} ({} disagreements)",
                            f.agreed,
                            f.n,
                            share(f.agreement),
                            share(f.precision),
                            share(f.recall),
                            share(f.f1),
                            rules_eval::metrics::default_threshold(&r.name),
                            x.disagreements.len()
                        );
                    }
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} golden vectors fail");
    }
    Ok(())
}

fn list(g: &Globals) -> anyhow::Result<()> {
    println!("rule sets in {}:", g.registry.root().display());
    for name in g.registry.names("rulesets") {
        for version in g.registry.versions("rulesets", &name) {
            let dir = g.registry.ruleset_dir(&name, &version);
            let sigs = signature_files(&dir).map(|f| f.len()).unwrap_or(0);
            let described = match read_json::<RuleSetManifest>(&dir.join(RULESET_MANIFEST), "rule set manifest") {
                Ok((m, sha)) => format!("revision {:<3} {} rules  {sigs} signature(s)  sha256 {sha}", m.revision, m.rules.len()),
                Err(e) => format!("unreadable: {e}"),
            };
            println!("  {:<28} {described}", format!("{name}@{version}"));
        }
    }
    println!("rules:");
    for id in g.registry.names("rules") {
        let versions: Vec<String> = g.registry.versions("rules", &id).iter().map(|v| v.to_string()).collect();
        println!("  {id:<24} {}", versions.join(", "));
    }
    Ok(())
}

fn score(reference: &str, input: &std::path::Path, json: bool, audit_log: &std::path::Path, g: &Globals) -> anyhow::Result<()> {
    let reference: VersionRef = reference.parse().map_err(anyhow::Error::msg)?;
    let samples: Vec<Sample> = read_jsonl(input)?;
    let session = ScoringSession::open(&g.registry, &reference, audit_log, g.threads)?;
    for notice in session.notices() {
        eprintln!("{notice}");
    }
    let log = session.audit().expect("open attaches the log");
    // An aborted batch is still printed (every rule's outcome says why), then the command fails.
    let (scores, appended, aborted) = match session.score(&samples) {
        Ok((scores, appended)) => (scores, appended, None),
        Err(SessionError::Aborted { rule, sample, scores, appended }) => (scores, appended, Some((rule, sample))),
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "audit: {} evaluation and {} aggregate records appended to {} (lines {}-{}, head {}); inputs in {}",
        scores.iter().map(|s| s.rules.len()).sum::<usize>(),
        scores.len(),
        log.path().display(),
        appended.first,
        appended.last,
        &appended.head[..16],
        log.samples_path().display()
    );
    let scorer = &session.scorer;
    if json {
        for s in &scores {
            println!("{}", serde_json::to_string(s)?);
        }
    } else {
        // With a judge, its column comes last, as its result does.
        let ids: Vec<&str> = scorer.rules.iter().map(|r| r.manifest.id.as_str()).chain(scorer.judge.as_ref().map(|j| j.entry.id.as_str())).collect();
        println!(
            "rule set {} (revision {}, sha256 {})",
            scorer.ruleset.manifest.reference(),
            scorer.ruleset.manifest.revision,
            scorer.ruleset.sha256
        );
        print!("{:<24} {:>8}", "sample", "reward");
        for id in &ids {
            print!(" {id:>12}");
        }
        println!();
        for s in &scores {
            let total = match &s.reward {
                Reward::Scored { total, .. } => format!("{total:.4}"),
                Reward::Skipped { .. } => "skipped".into(),
                Reward::Aborted { .. } => "ABORTED".into(),
            };
            print!("{:<24} {total:>8}", truncate(&s.sample_id, 24));
            for r in &s.rules {
                let cell = match (r.evaluation.outcome, r.decision) {
                    (_, Decision::NotApplicable) => "n/a".to_string(),
                    (OutcomeKind::Ok, Decision::Counted { score }) => format!("{score:.4}"),
                    (outcome, _) => outcome.as_str().to_string(),
                };
                print!(" {cell:>12}");
            }
            println!();
            for (id, r) in ids.iter().zip(&s.rules) {
                let why = match (&r.evaluation.output, &r.evaluation.error) {
                    (Some(out), _) => out.explanation.clone(),
                    (None, Some(err)) => format!("{}: {err}", r.evaluation.outcome.as_str()),
                    (None, None) => String::new(),
                };
                if !why.is_empty() {
                    println!("    {id}: {why}");
                }
            }
            if let Reward::Scored { gates_fired, .. } = &s.reward
                && !gates_fired.is_empty()
            {
                println!("    gates fired: {}", gates_fired.join(", "));
            }
        }
    }
    if let Some((rule, sample)) = aborted {
        bail!("rule `{rule}` failed on sample `{sample}` and its on_error is `abort`; the batch's rewards must not be used");
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}
