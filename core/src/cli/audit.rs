//! `medrl audit …`: check an audit log's hash chain.

use super::Globals;
use clap::Subcommand;
use medrl::governance::audit::verify_chain;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain: finds an edited, removed, inserted or reordered line.
    Verify {
        file: PathBuf,
        /// The head hash recorded elsewhere (e.g. in a checkpoint): also finds records removed from the end.
        #[arg(long)]
        head: Option<String>,
    },
}

pub fn run(cmd: AuditCommand, _g: &Globals) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { file, head } => {
            let (report, _) = verify_chain(&file, head.as_deref())?;
            println!(
                "{}: {} records ({} evaluations, {} rule-set loads), hash chain intact; head {}",
                file.display(),
                report.records,
                report.evaluations,
                report.loads,
                report.head
            );
            Ok(())
        }
    }
}
