//! `medrl bench …`: throughput measurements that print figures.

use super::Globals;
use crate::bench::{per_rule_micros, samples_per_second, synthetic_samples};
use crate::reward::{RuleSetScorer, Sandbox, VersionRef};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Samples per second of a rule set on synthetic answers, one thread and all cores.
    Rules {
        #[arg(long, default_value = "medical-safety@1.0.0")]
        ruleset: String,
        /// Samples per batch.
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Answer length in UTF-8 bytes.
        #[arg(long, default_value_t = 1024)]
        bytes: usize,
        /// Timed rounds; the best is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

pub fn run(cmd: BenchCommand, g: &Globals) -> anyhow::Result<()> {
    let BenchCommand::Rules { ruleset, samples, bytes, rounds } = cmd;
    let reference: VersionRef = ruleset.parse().map_err(anyhow::Error::msg)?;
    let sandbox = Sandbox::new(g.threads)?;
    let scorer = RuleSetScorer::new(&sandbox, g.registry.load_ruleset(&reference)?)?;
    let batch = synthetic_samples(samples, bytes);
    println!("rule set {reference}: {} rules, {samples} samples of ~{bytes} bytes, best of {rounds}", scorer.rules.len());
    for cost in per_rule_micros(&scorer, &batch[..batch.len().min(500)], rounds) {
        println!(
            "  {:<20} {:>8.1} µs/evaluation (CPU), {:>5.0} µs/prepare (1 thread, WebAssembly)",
            cost.rule, cost.evaluate_us, cost.prepare_us
        );
    }
    for threads in [1, g.threads] {
        let t = samples_per_second(&scorer, &batch, threads, rounds)?;
        let label = if threads == 1 { "1 thread: ".to_string() } else { format!("{threads} threads:") };
        match t.cpu_us_per_sample {
            Some(cpu) => println!(
                "  {label} {:>10.0} samples/s   (CPU {cpu:.1} µs/sample: {:.0} samples/s on {threads} free core{})",
                t.samples_per_second,
                threads as f64 * 1e6 / cpu,
                if threads == 1 { "" } else { "s" }
            ),
            None => println!("  {label} {:>10.0} samples/s", t.samples_per_second),
        }
    }
    Ok(())
}
