//! Every measurement `medrl bench` and `cargo bench` print, in one place: rule-set throughput
//! ([`rules`]: synthetic answers, samples per second, CPU per evaluation), rollout throughput
//! ([`rollout`]: tokens per second, peak memory) and the load test of a running server
//! ([`serve`]: latency percentiles, errors, lost requests). The criterion benches and the profiling
//! harness in `core/benches/` and the `medrl bench` subcommands call these.

pub mod rollout;
pub mod rules;
pub mod serve;

pub use rules::{per_rule_micros, process_cpu_ns, samples_per_second, synthetic_samples};
