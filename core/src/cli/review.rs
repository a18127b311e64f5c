//! `medrl review sample`, `ingest` and `labels`: the clinician spot check, and its verdicts as
//! labels for `medrl rules eval`.

use clap::{Args, Subcommand};
use medrl::review::{IngestOptions, SampleOptions};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Pick answers from an evaluation folder into a sheet for clinicians (CSV, HTML, manifest).
    Sample(SampleArgs),
    /// Read a filled sheet and report agreement between clinicians and each rule.
    Ingest(IngestArgs),
    /// Turn a filled sheet's verdicts into labelled answers for `medrl rules eval`
    /// (data/rules-eval/FORMAT.md), so each review round grows the test set.
    Labels(LabelsArgs),
}

#[derive(Args)]
pub struct LabelsArgs {
    /// The filled sheet (CSV).
    sheet: PathBuf,
    /// The sheet's manifest (default: review_manifest.json beside the sheet).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The labels file to write, named answers….jsonl (e.g. data/rules-eval/test/answers-review-r1.jsonl); never overwritten.
    #[arg(long)]
    out: PathBuf,
    /// Who judged (the lines' `author`; default: "clinician review, round N").
    #[arg(long)]
    author: Option<String>,
}

#[derive(Args)]
pub struct SampleArgs {
    /// Evaluation folder holding scored-<set>-<variant>.jsonl (written by `medrl eval`).
    #[arg(long = "eval")]
    eval_dir: PathBuf,
    /// Model variant to review.
    #[arg(long, default_value = "rl")]
    variant: String,
    /// Review round, written on every row.
    #[arg(long, default_value_t = 1)]
    round: u32,
    /// Answers on the sheet.
    #[arg(short = 'n', default_value_t = 50)]
    n: usize,
    /// Seed of the random strata (default: the round number).
    #[arg(long)]
    seed: Option<u64>,
    /// Rule set the answers were scored with (default: the `ruleset` of the folder's report.json).
    #[arg(long)]
    ruleset: Option<String>,
    /// Folder for the sheet.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct IngestArgs {
    /// The filled sheet (CSV).
    sheet: PathBuf,
    /// The sheet's manifest (default: review_manifest.json beside the sheet).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Rule set whose parameters the report points at (default: the one in the manifest).
    #[arg(long)]
    ruleset: Option<String>,
    /// Folder for review_report.md and review_report.json (default: the sheet's folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the verdicts as labelled answers for `medrl rules eval` (as `review labels --out`).
    #[arg(long)]
    labels_out: Option<PathBuf>,
    /// With --labels-out: who judged (default: "clinician review, round N").
    #[arg(long, requires = "labels_out")]
    author: Option<String>,
}

pub fn run(cmd: ReviewCommand, g: &super::Globals) -> anyhow::Result<()> {
    match cmd {
        ReviewCommand::Sample(a) => {
            let opts = SampleOptions {
                seed: a.seed.unwrap_or(u64::from(a.round)),
                eval_dir: a.eval_dir,
                variant: a.variant,
                round: a.round,
                n: a.n,
                ruleset: a.ruleset,
                out: a.out,
            };
            let m = medrl::review::sample(&opts)?;
            println!("round {}, variant {}: {} answers from {} file(s), seed {}", m.round, m.variant, m.n, m.files.len(), m.seed);
            for s in &m.strata {
                println!("  {:<24} {:>3}  {}", s.stratum.as_str(), s.count, s.description);
            }
            if !m.judge_ran {
                println!("  (no judge scores in the folder: the rule/judge disagreement stratum is skipped)");
            }
            println!("wrote {}", opts.out.join(medrl::review::SHEET_CSV).display());
            println!("wrote {}", opts.out.join(medrl::review::SHEET_HTML).display());
            println!("wrote {}", opts.out.join(medrl::review::SHEET_MANIFEST).display());
            Ok(())
        }
        ReviewCommand::Ingest(a) => {
            let out = a.out.clone().unwrap_or_else(|| a.sheet.parent().map(PathBuf::from).unwrap_or_default());
            let labels_opts =
                a.labels_out.map(|out| medrl::review::LabelsOptions { sheet: a.sheet.clone(), manifest: a.manifest.clone(), out, author: a.author });
            let opts = IngestOptions { sheet: a.sheet, manifest: a.manifest, ruleset: a.ruleset, out: a.out };
            let r = medrl::review::ingest(&opts, &g.registry)?;
            println!("round {}, variant {}: {} rows compared, {} with problems", r.round, r.variant, r.rows_compared, r.integrity.problems.len());
            for a in &r.rules {
                let kappa = a.kappa.value.map_or_else(|| "undefined".to_string(), |k| format!("{k:.3}"));
                let accuracy = a.accuracy.map_or_else(|| "–".to_string(), |x| format!("{x:.3}"));
                println!(
                    "  {:<10} {:<20} n {:>3}  accuracy {accuracy}  kappa {kappa}  FP {}  FN {}",
                    a.rule, a.column, a.compared, a.confusion.fp, a.confusion.fn_
                );
            }
            println!("wrote {}", out.join(medrl::review::REPORT_MD).display());
            println!("wrote {}", out.join(medrl::review::REPORT_JSON).display());
            if let Some(opts) = labels_opts {
                print_labels(&medrl::review::labels(&opts)?);
            }
            Ok(())
        }
        ReviewCommand::Labels(a) => {
            let opts = medrl::review::LabelsOptions { sheet: a.sheet, manifest: a.manifest, out: a.out, author: a.author };
            print_labels(&medrl::review::labels(&opts)?);
            Ok(())
        }
    }
}

fn print_labels(s: &medrl::review::LabelsSummary) {
    let verdicts: Vec<String> = s.verdicts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("wrote {} labelled answers to {} (verdicts: {})", s.answers, s.out.display(), verdicts.join(", "));
    if s.unjudged_rows + s.integrity_problems + s.dropped_na > 0 {
        println!(
            "  left out: {} rows without a verdict, {} rows with integrity problems (see the ingest report), {} `na` verdicts on chain or verbosity (no such label)",
            s.unjudged_rows, s.integrity_problems, s.dropped_na
        );
    }
    println!("next: check it with `medrl rules eval --ruleset NAME@VERSION --labels {}`", s.out.display());
}
