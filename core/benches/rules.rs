//! `cargo bench -p medrl --bench rules`: the shipped four-rule set on 1 KB answers, as
//! WebAssembly (one thread and all cores) and the same rule logic compiled natively.
//!
//! Native and WebAssembly runs get identical bytes and run the identical two-phase path
//! (prepare once, then decode, evaluate and encode each sample), so the ratio is the sandbox's
//! whole cost per evaluation: fuel metering, epoch checks, the copy in and out, the host's
//! validation of the output, and Cranelift's code. As in the trainer, the WebAssembly side
//! evaluates in prepared instances kept between runs (the first iteration prepares them).
//!
//! The per-evaluation group is measured in CPU time of the process (`CpuTime`), not wall time:
//! on a shared machine, time the benchmark spends descheduled says nothing about either side,
//! and the ratio is what this group is for. The rule-set group is wall time, as samples per
//! second of a batch should be.

mod common;

use common::{Native, native};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use medrl::bench::synthetic_samples;
use medrl::registry::Registry;
use medrl::reward::scorer::encode_sample;
use medrl::reward::{RuleSetScorer, Sandbox};

/// CPU time of the whole process (all threads), in ns ([`medrl::bench::process_cpu_ns`]).
struct CpuTime;

fn process_cpu_ns() -> u64 {
    medrl::bench::process_cpu_ns().expect("the process CPU-time clock exists on this OS")
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        process_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        process_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuTimeFormatter
    }
}

/// Prints CPU time like criterion prints durations, with a `cpu` tag so it is not read as wall time.
struct CpuTimeFormatter;

impl ValueFormatter for CpuTimeFormatter {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical_ns {
            t if t < 1e3 => (1.0, "ns cpu"),
            t if t < 1e6 => (1e-3, "µs cpu"),
            t if t < 1e9 => (1e-6, "ms cpu"),
            _ => (1e-9, "s cpu"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, typical_ns: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let per_iteration = match throughput {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => *n as f64,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => *n as f64,
            Throughput::Bits(n) => *n as f64,
        };
        // Per CPU-second; scaled to thousands like criterion's own elem/s.
        let _ = typical_ns;
        values.iter_mut().for_each(|v| *v = per_iteration * 1e9 / *v / 1e3);
        "K/cpu-s"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

struct Fixture {
    scorer: RuleSetScorer,
    samples: Vec<medrl_sdk::Sample>,
    encoded: Vec<Vec<u8>>,
    cores: usize,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let registry = Registry::integrity_only(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
        // The sandbox lives as long as the process, as in the trainer.
        let sandbox: &'static Sandbox = Box::leak(Box::new(Sandbox::new(cores).unwrap()));
        let ruleset = registry.load_ruleset(&"medical-safety@1.0.0".parse().unwrap()).unwrap();
        let scorer = RuleSetScorer::new(sandbox, ruleset).unwrap();
        let samples = synthetic_samples(256, 1024);
        let encoded = samples.iter().map(encode_sample).collect();
        Fixture { scorer, samples, encoded, cores }
    })
}

fn per_evaluation(c: &mut Criterion<CpuTime>) {
    let Fixture { scorer, encoded, .. } = fixture();
    let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let natives: Vec<Native> = scorer.rules.iter().map(native).collect();

    let mut per_eval = c.benchmark_group("per_evaluation");
    per_eval.throughput(Throughput::Elements(encoded.len() as u64));
    for (rule, f) in scorer.rules.iter().zip(&natives) {
        per_eval.bench_function(BenchmarkId::new("native", &rule.manifest.id), |b| b.iter(|| slices.iter().map(|s| f(s)).sum::<usize>()));
        per_eval.bench_function(BenchmarkId::new("wasm", &rule.manifest.id), |b| {
            b.iter(|| slices.chunks(64).map(|run| rule.evaluate_many(run).len()).sum::<usize>())
        });
    }
    per_eval.finish();
}

fn ruleset_samples(c: &mut Criterion) {
    let Fixture { scorer, samples, encoded, cores } = fixture();
    let cores = *cores;
    let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let natives: Vec<Native> = scorer.rules.iter().map(native).collect();

    let mut set = c.benchmark_group("ruleset_samples");
    set.throughput(Throughput::Elements(samples.len() as u64));
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        set.bench_function(BenchmarkId::new("wasm_threads", threads), |b| b.iter(|| pool.install(|| scorer.score_batch(samples)).len()));
    }
    set.bench_function(BenchmarkId::new("native_threads", 1), |b| {
        b.iter(|| natives.iter().map(|f| slices.iter().map(|s| f(s)).sum::<usize>()).sum::<usize>())
    });
    set.finish();
}

criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(CpuTime).sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = per_evaluation
}
criterion_group! {
    name = wall;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = ruleset_samples
}
criterion_main!(cpu, wall);
