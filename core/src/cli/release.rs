//! `medrl release RUN --out DIR` and `medrl release verify DIR`: the v1.0-rl package of a
//! finished run (docs/release.md).

use super::{ExitError, Globals};
use clap::{Args, Subcommand};
use medrl::registry::signing::KeyFile;
use medrl::registry::trust::Keyring;
use medrl::release::{ReleaseOptions, verify_release, write_release};
use std::path::PathBuf;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    command: Option<ReleaseCommand>,
    /// The finished training run (runs/NAME) to package.
    #[arg(required = true)]
    run: Option<PathBuf>,
    /// The release folder to create; it must not exist or be empty.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// An evaluation of the run's adapter (`medrl eval --out DIR`): report, plots and the model
    /// card's metrics.
    #[arg(long, value_name = "DIR")]
    eval: Option<PathBuf>,
    /// The data card to include.
    #[arg(long, default_value = "data/DATA_CARD.md")]
    data_card: PathBuf,
    /// Also copy the base model's weights (a tiny or locally trained base); by default `model/`
    /// holds its config and tokenizer only.
    #[arg(long)]
    with_base_weights: bool,
    /// Sign SHA256SUMS with this Ed25519 key (`medrl keys generate`) [default: --operator-key].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Operator keyring: the run's (and evaluation's) manifest signature must verify against it.
    #[arg(long, value_name = "FILE")]
    operator_keyring: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Check a release: every file against SHA256SUMS (changed, missing, extra), its signature,
    /// the adapters' digests, the copied rule set and its signatures (against --keyring, default
    /// the registry's), the audit head.
    Verify {
        /// The release folder.
        dir: PathBuf,
        /// Operator keyring: SHA256SUMS must be signed by one of its keys.
        #[arg(long, value_name = "FILE")]
        operator_keyring: Option<PathBuf>,
    },
}

pub fn run(a: ReleaseArgs, g: &Globals) -> anyhow::Result<()> {
    if let Some(ReleaseCommand::Verify { dir, operator_keyring }) = a.command {
        return verify(&dir, operator_keyring, g);
    }
    let (run, out) = (a.run.expect("clap requires RUN"), a.out.expect("clap requires --out"));
    let key = match a.key {
        Some(path) => Some((KeyFile::read(&path)?, path)),
        None => g.operator_key()?,
    };
    let operator_keyring = a.operator_keyring.as_deref().map(Keyring::read).transpose()?;
    let opts = ReleaseOptions {
        run,
        out,
        eval: a.eval,
        data_card: a.data_card,
        with_base_weights: a.with_base_weights,
        key,
        operator_keyring,
        keyring_path: g.flags.source().keyring_path(),
    };
    let s = write_release(&opts, &g.registry)?;
    let m = &s.manifest;
    println!("wrote release {} ({} files in SHA256SUMS)", s.dir.display(), s.files);
    println!("  adapter   sha256 {}", m.adapter.sha256);
    if let Some(sft) = &m.sft_adapter {
        println!("  sft       sha256 {} (merged under the adapter)", sft.sha256);
    }
    println!("  base      {} sha256 {}", m.base_model.trained_on, m.base_model.sha256);
    let signers: Vec<String> = m.ruleset.signers.iter().map(|x| format!("{} ({})", x.name, x.key_id)).collect();
    println!("  rule set  {}@{} sha256 {} signed by {}", m.ruleset.name, m.ruleset.version, m.ruleset.sha256, signers.join(", "));
    if let Some(e) = &m.eval {
        println!("  eval      {} vs {}: gates {}", e.candidate, e.baseline, if e.gates_passed { "passed" } else { "FAILED" });
    }
    match &s.signed_by {
        Some(who) => println!("  SHA256SUMS signed by {who}"),
        None => println!("  SHA256SUMS not signed (pass --key or --operator-key to sign it)"),
    }
    println!("check it with: medrl release verify {}", s.dir.display());
    Ok(())
}

fn verify(dir: &std::path::Path, operator_keyring: Option<PathBuf>, g: &Globals) -> anyhow::Result<()> {
    let Some(keyring_path) = g.flags.source().keyring_path() else {
        anyhow::bail!(
            "no keyring to check the rule set's signatures against; pass --keyring FILE with the keys you trust ({} is the keyring the releaser used)",
            dir.join("ruleset/keys/keyring.toml").display()
        );
    };
    let keyring = Keyring::read(&keyring_path)?;
    let operator = operator_keyring.as_deref().map(Keyring::read).transpose()?;
    let checks = verify_release(dir, &keyring, operator.as_ref())?;
    for c in &checks {
        println!("{} {}", if c.ok { "ok      " } else { "FAILED  " }, c.what);
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        return Err(ExitError {
            code: 1,
            message: format!("{failed} check(s) of the release {} failed (above): do not use it; get it again from its source", dir.display()),
        }
        .into());
    }
    println!("{}: the release verifies", dir.display());
    Ok(())
}
