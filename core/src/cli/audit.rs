//! `medrl audit …`: check an audit log (chain, decisions, totals) or a whole run folder against
//! its anchors, and explain one rewards.csv number.

use super::{ExitError, Globals};
use clap::Subcommand;
use medrl::governance::anchor::{check_run, record_hashes};
use medrl::governance::audit::verify_chain;
use medrl::governance::explain::{Target, explain, render};
use medrl::governance::replay::check_log;
use medrl::registry::trust::Keyring;
use medrl::reward::sandbox::Sandbox;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify a log: the hash chain (an edited, removed, inserted or reordered line), and every
    /// decision and reward recomputed from the registry's rule set. Given a run folder, also
    /// checks the log against the heads its checkpoints and final manifest recorded (a log cut at
    /// the end or rewritten after a checkpoint) and the manifest's signature.
    Verify {
        /// An audit log, or a run folder (training run or evaluation output) holding `audit.jsonl`.
        path: PathBuf,
        /// The head hash recorded elsewhere: also finds records removed from the end.
        #[arg(long)]
        head: Option<String>,
        /// Check the hash chain only (no registry needed; decisions and totals are not checked).
        #[arg(long)]
        chain_only: bool,
        /// Keyring (TOML, the `--keyring` format) of operator keys: the run's final manifest must
        /// carry a valid signature by one of them.
        #[arg(long, value_name = "FILE")]
        operator_keyring: Option<PathBuf>,
    },
    /// Explain one rewards.csv number of a training run: rule set, each rule's module, params,
    /// output and decision, the aggregation to the total, and a live replay of each rule.
    Explain {
        /// The run folder (holding rewards.csv and audit.jsonl).
        run: PathBuf,
        /// A data row of rewards.csv, from 1 (the header is not a row).
        #[arg(required_unless_present = "sample", conflicts_with = "sample")]
        row: Option<usize>,
        /// The sample id instead of a row (its last row).
        #[arg(long, value_name = "ID")]
        sample: Option<String>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: AuditCommand, g: &Globals) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { path, head, chain_only, operator_keyring } => {
            let run_dir = path.is_dir().then(|| path.clone());
            let file = run_dir.as_ref().map_or(path.clone(), |d| d.join("audit.jsonl"));
            if chain_only {
                let (report, _) = verify_chain(&file, head.as_deref())?;
                println!(
                    "{}: {} records ({} evaluations, {} aggregates, {} rule-set loads), hash chain intact (decisions and totals not checked: --chain-only); head {}",
                    file.display(),
                    report.records,
                    report.evaluations,
                    report.aggregates,
                    report.loads,
                    report.head
                );
            } else {
                let (check, _) = check_log(&file, &g.registry, head.as_deref())?;
                let r = &check.chain;
                println!(
                    "{}: {} records ({} evaluations, {} aggregates, {} rule-set loads), hash chain intact; {} decisions and {} totals recomputed from {}: all equal; head {}",
                    file.display(),
                    r.records,
                    r.evaluations,
                    r.aggregates,
                    r.loads,
                    check.decisions,
                    check.totals,
                    g.registry.root().display(),
                    r.head
                );
                if check.v1_evaluations > 0 {
                    println!(
                        "note: {} evaluations are {} records (written before rewards were logged): no total to check for them",
                        check.v1_evaluations,
                        medrl::governance::audit::AUDIT_FORMAT_V1
                    );
                }
            }
            let Some(dir) = run_dir else {
                if operator_keyring.is_some() {
                    anyhow::bail!("--operator-keyring checks a run's final manifest: pass the run folder, not its log");
                }
                return Ok(());
            };
            let ring = operator_keyring.as_deref().map(Keyring::read).transpose()?;
            let checks = check_run(&dir, &record_hashes(&file)?, ring.as_ref());
            for c in &checks {
                println!("{} {}", if c.ok { "ok      " } else { "FAILED  " }, c.what);
            }
            let failed = checks.iter().filter(|c| !c.ok).count();
            if failed > 0 {
                return Err(ExitError {
                    code: 1,
                    message: format!(
                        "{failed} check(s) of {} against its anchors failed (above): the log or the run's files were changed after they were recorded; do not use its rewards, restore them from a copy you trust",
                        dir.display()
                    ),
                }
                .into());
            }
            println!("{}: the log agrees with every anchor of the run", dir.display());
            Ok(())
        }
        AuditCommand::Explain { run, row, sample, json } => {
            let target = match (row, sample) {
                (Some(n), None) => Target::Row(n),
                (None, Some(id)) => Target::Sample(id),
                _ => anyhow::bail!("pass a ROW number or --sample ID"),
            };
            let sandbox = Sandbox::with_limits(g.threads, g.registry.host_limits())?;
            let e = explain(&run, &target, &g.registry, &sandbox)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e).expect("plain data"));
            } else {
                print!("{}", render(&e));
            }
            if !e.ok() {
                anyhow::bail!(
                    "row {} of {} is not reproduced by its audit trail (see MISMATCH above): do not trust this reward; run `medrl audit verify {}`",
                    e.row,
                    run.join("rewards.csv").display(),
                    run.display()
                );
            }
            Ok(())
        }
    }
}
