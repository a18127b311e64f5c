//! The `medrl` command line: argument parsing, printing, and turning errors into exit codes.
//! Each subcommand lives in its own file and calls the library; none of them computes anything.

mod audit;
mod bench;
mod data;
mod model;
mod predict;
mod govern;
mod keys;
mod rules;
mod eval;
mod quickstart;
mod review;
mod sft;
mod train;

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
    /// Keyring of trusted public keys (TOML). When set, every rule-set load verifies signatures.
    #[arg(long, global = true, env = "MEDRL_KEYRING")]
    keyring: Option<PathBuf>,
    /// Require at least this many signatures (raises the keyring's `min_signatures`).
    #[arg(long, global = true, env = "MEDRL_MIN_SIGNATURES")]
    min_signatures: Option<usize>,
    /// File remembering the last accepted revision of each rule set (default with a keyring:
    /// .medrl/trust-state.json; without one, no revision check unless given).
    #[arg(long, global = true, env = "MEDRL_TRUST_STATE")]
    trust_state: Option<PathBuf>,
    /// Accept a rule-set revision lower than the last accepted one (logged as a rollback).
    #[arg(long, global = true)]
    allow_rollback: bool,
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
    /// Ed25519 keys for signing rule sets.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check audit logs.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Supervised fine-tuning of a LoRA adapter on the SFT corpus.
    Sft(sft::SftArgs),
    /// Reinforcement learning (PPO, GRPO, RLOO) with rewards from a rule set.
    Train(train::TrainArgs),
    /// Compare model variants (SFT vs RL) on the gold and red-team sets with the same rules.
    Eval(eval::EvalArgs),
    /// The whole pipeline on the shipped defaults: tiny model, SFT, PPO, evaluation.
    Quickstart(quickstart::QuickstartArgs),
    /// Clinician review sheets: sample answers for a spot check, ingest the filled sheet.
    #[command(subcommand)]
    Review(review::ReviewCommand),
}

/// Default trust-state file when a keyring is configured and no `--trust-state` is given.
pub const DEFAULT_TRUST_STATE: &str = ".medrl/trust-state.json";

/// An error that ends the command with a specific exit code (e.g. `rules verify`'s classes).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    pub code: u8,
    pub message: String,
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
    let policy = match trust_policy(cli.keyring, cli.min_signatures, cli.trust_state, cli.allow_rollback) {
        Ok(policy) => policy,
        Err(e) => return render_error(&e, 1),
    };
    let globals = Globals { registry: crate::reward::Registry::new(cli.registry).with_trust(policy), threads };
    let result = match cli.command {
        Command::Rules(cmd) => rules::run(cmd, &globals),
        Command::Bench(cmd) => bench::run(cmd, &globals),
        Command::Data(cmd) => data::run(cmd, &globals),
        Command::Model(cmd) => model::run(cmd),
        Command::Predict(args) => predict::run(args),
        Command::Keys(cmd) => keys::run(cmd, &globals),
        Command::Audit(cmd) => audit::run(cmd, &globals),
        Command::Sft(args) => sft::run(args),
        Command::Train(args) => train::run(args, &globals),
        Command::Eval(args) => eval::run(args, &globals),
        Command::Quickstart(args) => quickstart::run(args, &globals),
        Command::Review(cmd) => review::run(cmd, &globals),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<ExitError>().map_or(1, |x| x.code);
            render_error(&e, code)
        }
    }
}

fn trust_policy(
    keyring: Option<PathBuf>,
    min_signatures: Option<usize>,
    trust_state: Option<PathBuf>,
    allow_rollback: bool,
) -> anyhow::Result<crate::reward::TrustPolicy> {
    let keyring = keyring.map(|p| crate::reward::Keyring::read(&p)).transpose()?;
    let state = trust_state.or_else(|| keyring.as_ref().map(|_| PathBuf::from(DEFAULT_TRUST_STATE)));
    Ok(crate::reward::TrustPolicy { keyring, min_signatures, state, allow_rollback })
}

/// One renderer for every error: `error:`, then each cause as `Caused by:`.
fn render_error(e: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  Caused by: {cause}");
    }
    ExitCode::from(code)
}
