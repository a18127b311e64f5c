//! `medrl runs`: a run folder's curves as SVG, its TensorBoard event file rebuilt, and two runs
//! compared (docs/runs.md). Everything is read from the run's files, while it trains or after.

use clap::Subcommand;
use medrl::runs::RunScalars;
use medrl::training::run_dir::EVENTS_FILE;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum RunsCommand {
    /// SVG plots of a run's curves: reward (total and per rule), KL and β, losses, entropy,
    /// response length and EOS rate over steps (an SFT output: loss and learning rate).
    Plot {
        /// The run folder (`medrl train`'s runs/<name>, or a `medrl sft` output).
        run: PathBuf,
        /// Where the SVG files go [default: RUN/plots].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Two runs side by side: final and mean-of-last-K values per metric, B − A, the resolved
    /// settings that differ; printed as Markdown.
    Compare {
        /// Run A (the baseline of the differences).
        a: PathBuf,
        /// Run B.
        b: PathBuf,
        /// K: the steps the "mean of the last K" covers.
        #[arg(long, default_value_t = 10)]
        last: usize,
        /// Also write the Markdown page here.
        #[arg(long, value_name = "FILE")]
        md: Option<PathBuf>,
        /// Write the comparison as JSON here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Write the two runs' reward curves, overlaid, as SVG here.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
    /// Write a run's TensorBoard event file from its logs (runs since this version write it as
    /// they train; this is for older runs, or a lost file).
    Events {
        run: PathBuf,
        /// The folder of the event file [default: the run folder].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Replace an existing event file.
        #[arg(long)]
        overwrite: bool,
    },
}

pub fn run(cmd: RunsCommand) -> anyhow::Result<()> {
    match cmd {
        RunsCommand::Plot { run, out } => {
            let scalars = RunScalars::read(&run)?;
            let out = out.unwrap_or_else(|| run.join("plots"));
            let files = medrl::runs::plot::write(&scalars, &out)?;
            println!("{} ({:?}, {} steps): {} plots in {}", run.display(), scalars.kind, scalars.last_step(), files.len(), out.display());
            for f in files {
                println!("  {}", f.display());
            }
        }
        RunsCommand::Compare { a, b, last, md, json, svg } => {
            let (ra, rb) = (RunScalars::read(&a)?, RunScalars::read(&b)?);
            let comparison = medrl::runs::compare(&ra, &rb, last)?;
            let page = medrl::runs::compare::markdown(&comparison);
            print!("{page}");
            if let Some(path) = md {
                write(&path, page.as_bytes())?;
            }
            if let Some(path) = json {
                write(&path, (serde_json::to_string_pretty(&comparison)? + "\n").as_bytes())?;
            }
            if let Some(path) = svg {
                write(&path, medrl::runs::compare::reward_overlay(&ra, &rb)?.as_bytes())?;
            }
        }
        RunsCommand::Events { run, out, overwrite } => {
            let scalars = RunScalars::read(&run)?;
            let path = out.unwrap_or_else(|| run.clone()).join(EVENTS_FILE);
            if path.exists() && !overwrite {
                anyhow::bail!("{} exists; pass --overwrite to replace it, or --out DIR to write the rebuilt file elsewhere", path.display());
            }
            let steps = medrl::runs::events::rebuild(&scalars, &path)?;
            println!("wrote {steps} steps of {} scalars to {}", scalars.series.len(), path.display());
            println!("  view: tensorboard --logdir {}", path.parent().unwrap_or(Path::new(".")).display());
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The run's curves into `<run>/plots/`, as `medrl runs plot RUN` writes them, at the end of
/// `train` and `sft`; returns the folder and the number of files. The training is done and its
/// files are complete either way, so a figure that cannot be drawn is a warning that says how to
/// retry (and `None`), not a failed command.
pub fn write_plots_after_training(root: &Path) -> Option<(PathBuf, usize)> {
    let out = root.join("plots");
    match RunScalars::read(root).map_err(anyhow::Error::from).and_then(|s| Ok(medrl::runs::plot::write(&s, &out)?)) {
        Ok(files) => Some((out, files.len())),
        Err(e) => {
            eprintln!("warning: the run finished but its plots were not written: {e}; retry with `medrl runs plot {}`", root.display());
            None
        }
    }
}
