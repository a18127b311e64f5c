//! The `medrl` command line: argument parsing, printing, and turning errors into exit codes.
//! Each subcommand lives in its own file and calls the library; none of them computes anything.

mod bench;
mod data;
mod model;
mod predict;
mod rules;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "medrl", version, about = "Rule-governed reinforcement learning for medical LLMs")]
struct Cli {
    /// Registry root holding `rules/` and `rulesets/`.
    #[arg(long, global = true, env = "MEDRL_REGISTRY", default_value = "data")]
    registry: PathBuf,
    /// Worker threads for scoring (default: all cores).
    #[arg(long, global = true, env = "MEDRL_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Author, build, test and score with reward rules.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Validate the prompt sets, build the training prompts, render the data card.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Make model folders (`medrl model init --preset tiny --out DIR`).
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Answer a JSONL file of prompts with a model (and adapter).
    Predict(predict::PredictArgs),
}

/// Settings every subcommand may need, resolved from the global flags.
pub struct Globals {
    pub registry: crate::reward::Registry,
    pub threads: usize,
}

/// Runs the CLI: exit 0 on success, 1 when the user's input or files are wrong, 2 on an internal error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MEDRL_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global() {
        return render_error(&anyhow::anyhow!("cannot start {threads} worker threads: {e}"), 2);
    }
    let globals = Globals { registry: crate::reward::Registry::new(cli.registry), threads };
    let result = match cli.command {
        Command::Rules(cmd) => rules::run(cmd, &globals),
        Command::Bench(cmd) => bench::run(cmd, &globals),
        Command::Data(cmd) => data::run(cmd, &globals),
        Command::Model(cmd) => model::run(cmd),
        Command::Predict(args) => predict::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => render_error(&e, 1),
    }
}

/// One renderer for every error: `error:`, then each cause as `Caused by:`.
fn render_error(e: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  Caused by: {cause}");
    }
    ExitCode::from(code)
}
