//! `medrl bench …`: throughput measurements that print figures.

use super::Globals;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Samples per second of a rule set on synthetic 1 KB answers, one thread and all cores.
    Rules {
        #[arg(long, default_value = "medical-safety@1.0.0")]
        ruleset: String,
        #[arg(long, default_value_t = 2000)]
        samples: usize,
    },
}

pub fn run(cmd: BenchCommand, g: &Globals) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Rules { ruleset, samples } => {
            let _ = (ruleset, samples, g);
            anyhow::bail!("not yet")
        }
    }
}
