//! The `medrl` command line: argument parsing, printing, and turning errors into exit codes.
//! Each subcommand lives in its own file and calls the library; none of them computes anything.

mod audit;
mod bench;
mod data;
mod eval;
mod govern;
mod keys;
mod model;
mod predict;
mod progress;
mod quickstart;
mod release;
mod review;
mod rules;
mod runs;
mod serve;
mod sft;
mod train;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "medrl", version, about = "Rule-governed reinforcement learning for medical LLMs")]
struct Cli {
    /// Registry root holding `rules/` and `rulesets/` [default: data; for `train --resume`, the run's].
    #[arg(long, global = true, env = "MEDRL_REGISTRY")]
    registry: Option<PathBuf>,
    /// Worker threads for scoring (default: all cores).
    #[arg(long, global = true, env = "MEDRL_THREADS")]
    threads: Option<usize>,
    /// Keyring of trusted public keys (TOML) every rule-set load verifies against [default: the
    /// registry's own, REGISTRY/keys/keyring.toml].
    #[arg(long, global = true, env = "MEDRL_KEYRING")]
    keyring: Option<PathBuf>,
    /// Require at least this many signatures (raises the keyring's `min_signatures`).
    #[arg(long, global = true, env = "MEDRL_MIN_SIGNATURES")]
    min_signatures: Option<usize>,
    /// Hash-chained record of every accepted rule-set revision; a lower or reused revision is
    /// refused [default: the registry's own, REGISTRY/trust-state.jsonl].
    #[arg(long, global = true, env = "MEDRL_TRUST_STATE")]
    trust_state: Option<PathBuf>,
    /// Accept a rule-set revision lower than the last accepted one (logged as a rollback).
    #[arg(long, global = true)]
    allow_rollback: bool,
    /// Score rule sets that cannot be verified (no keyring, too few signatures). Printed as a
    /// warning and recorded in the run's settings and the audit log; a signature that does not
    /// verify is refused all the same.
    #[arg(long, global = true)]
    allow_unsigned: bool,
    /// The operator's ceilings on what a rule's manifest may ask for (TOML: max_fuel, timeout_ms,
    /// max_memory_pages, max_table_elements, max_input_bytes, max_output_bytes,
    /// max_module_bytes); a rule asking for more is refused at load [default: the host's].
    #[arg(long, global = true, env = "MEDRL_HOST_LIMITS")]
    host_limits: Option<PathBuf>,
    /// The operator's Ed25519 key file (`medrl keys generate` format): `train` and `eval` sign
    /// their run's final manifest with it (`audit verify --operator-keyring` checks it).
    #[arg(long, global = true, env = "MEDRL_OPERATOR_KEY")]
    operator_key: Option<PathBuf>,
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
    /// Make model folders (`medrl model init --preset tiny --out DIR`), export merged ones
    /// (`medrl model export --merge`).
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
    /// The v1.0-rl package of a finished run (`medrl release RUN --out DIR`), and its check
    /// (`medrl release verify DIR`).
    Release(release::ReleaseArgs),
    /// Clinician review sheets: sample answers for a spot check, ingest the filled sheet.
    #[command(subcommand)]
    Review(review::ReviewCommand),
    /// Serve models behind an OpenAI-compatible API and a demo page, every answer scored by the
    /// rule set (loopback by default).
    Serve(serve::ServeArgs),
    /// Watch and compare runs: plots, TensorBoard event files, two runs side by side.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
}

/// An error that ends the command with a specific exit code (e.g. `rules verify`'s classes).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitError {
    pub code: u8,
    pub message: String,
}

/// Settings every subcommand may need, resolved from the global flags.
pub struct Globals {
    /// The registry with the trust policy the flags give (over the defaults).
    pub registry: medrl::registry::Registry,
    /// The trust flags as given, for commands that also read a configuration (`train`,
    /// `quickstart`): a flag overrides the configuration's value, an absent one leaves it.
    pub flags: medrl::reward::RuleFlags,
    pub threads: usize,
    /// `--operator-key`, unread: only the commands that sign read it.
    pub operator_key: Option<PathBuf>,
}

impl Globals {
    /// The operator's key, read and checked, when one is configured.
    pub fn operator_key(&self) -> anyhow::Result<Option<(medrl::registry::signing::KeyFile, PathBuf)>> {
        self.operator_key.as_ref().map(|p| Ok((medrl::registry::signing::KeyFile::read(p)?, p.clone()))).transpose()
    }
}

/// Runs the CLI: exit 0 on success, 1 when the user's input or files are wrong, 2 on an internal error.
pub fn main() -> ExitCode {
    // `medrl … | head`: a closed pipe ends the process quietly, as it does a C tool, instead of
    // making `println!` panic on EPIPE.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("MEDRL_LOG")).with_writer(std::io::stderr).init();
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global() {
        return render_error(&anyhow::anyhow!("cannot start {threads} worker threads: {e}"), 2);
    }
    let flags = medrl::reward::RuleFlags {
        registry: cli.registry,
        keyring: cli.keyring,
        min_signatures: cli.min_signatures,
        trust_state: cli.trust_state,
        allow_rollback: cli.allow_rollback,
        allow_unsigned: cli.allow_unsigned,
        host_limits: cli.host_limits,
    };
    if flags.allow_unsigned {
        eprintln!("warning: --allow-unsigned: rule sets that cannot be verified will be scored; every such load is recorded in the audit log");
    }
    let registry = match flags.source().registry() {
        Ok(registry) => registry,
        Err(e) => return render_error(&e.into(), 1),
    };
    let globals = Globals { registry, flags, threads, operator_key: cli.operator_key };
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
        Command::Serve(args) => serve::run(args, &globals),
        Command::Release(args) => release::run(args, &globals),
        Command::Runs(cmd) => runs::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => render_error(&e, exit_code(&e)),
    }
}

/// Exit code of a failed command: the code an [`ExitError`] carries; 2 for an internal error (a
/// tensor computation that failed: a bug or the machine, not the user's input); else 1, the
/// user's input or files are wrong and the message says what to change.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(x) = e.downcast_ref::<ExitError>() {
        return x.code;
    }
    if e.chain().any(|c| c.downcast_ref::<candle_core::Error>().is_some()) {
        return 2;
    }
    1
}

/// The lines the renderer prints: `error: …`, then each cause that adds something as
/// `Caused by: …` (error types that quote their source in their own message would otherwise say
/// it twice), and a `hint:` where one is known.
fn render_lines(e: &anyhow::Error, code: u8) -> Vec<String> {
    let mut lines = vec![format!("error: {e}")];
    let mut said = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        lines.push(format!("  Caused by: {text}"));
        said.push_str(&text);
    }
    if code == 2 {
        lines
            .push("hint: this is an internal error, not a problem with your input; rerun with MEDRL_LOG=debug and report it with the command".into());
    }
    lines
}

fn render_error(e: &anyhow::Error, code: u8) -> ExitCode {
    for line in render_lines(e, code) {
        eprintln!("{line}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("rule set: {0}")]
    struct Quoting(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("no rule set named `x`")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot load the model")]
    struct Terse(#[source] Inner);

    #[test]
    fn a_cause_is_printed_once() {
        let lines = render_lines(&anyhow::Error::new(Quoting(Inner)), 1);
        assert_eq!(lines, ["error: rule set: no rule set named `x`"]);
        let lines = render_lines(&anyhow::Error::new(Terse(Inner)), 1);
        assert_eq!(lines, ["error: cannot load the model", "  Caused by: no rule set named `x`"]);
    }

    #[test]
    fn exit_codes_separate_the_users_errors_from_internal_ones() {
        assert_eq!(exit_code(&anyhow::anyhow!("bad input")), 1);
        assert_eq!(exit_code(&ExitError { code: 3, message: "gate failed".into() }.into()), 3);
        let internal = anyhow::Error::new(candle_core::Error::Msg("shape mismatch".into())).context("training step");
        assert_eq!(exit_code(&internal), 2);
        assert!(render_lines(&internal, 2).last().unwrap().starts_with("hint: this is an internal error"));
    }
}
