//! `cargo bench -p medrl --bench rules`: the shipped four-rule set on 1 KB answers, as
//! WebAssembly (one thread and all cores) and the same rule logic compiled natively.
//!
//! Native and WebAssembly evaluations get the identical input bytes and run the identical
//! `run_json` path (decode, evaluate, encode), so the ratio is the sandbox's whole cost:
//! instantiation, fuel metering and Cranelift code.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use medrl::bench::synthetic_samples;
use medrl::reward::scorer::encode_sample;
use medrl::reward::{Registry, RuleSetScorer, Sandbox};

fn registry() -> Registry {
    Registry::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"))
}

fn native(id: &str) -> fn(&[u8]) -> Vec<u8> {
    match id {
        "chain" => rule_chain::evaluate_json,
        "emergency" => rule_emergency::evaluate_json,
        "risk" => rule_risk::evaluate_json,
        "verbosity" => rule_verbosity::evaluate_json,
        other => panic!("no native build of rule {other}"),
    }
}

fn benches(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sandbox = Sandbox::new(cores).unwrap();
    let ruleset = registry().load_ruleset(&"medical-safety@1.0.0".parse().unwrap()).unwrap();
    let scorer = RuleSetScorer::new(&sandbox, ruleset).unwrap();
    let samples = synthetic_samples(256, 1024);
    let encoded: Vec<Vec<u8>> = samples.iter().map(encode_sample).collect();

    let mut per_eval = c.benchmark_group("per_evaluation");
    per_eval.throughput(Throughput::Elements(encoded.len() as u64));
    for rule in &scorer.rules {
        let inputs: Vec<Vec<u8>> = encoded.iter().map(|s| rule.input_for(s)).collect();
        let f = native(&rule.manifest.id);
        per_eval.bench_with_input(BenchmarkId::new("native", &rule.manifest.id), &inputs, |b, inputs| {
            b.iter(|| inputs.iter().map(|i| f(i).len()).sum::<usize>())
        });
        per_eval.bench_with_input(BenchmarkId::new("wasm", &rule.manifest.id), &encoded, |b, encoded| {
            b.iter(|| encoded.iter().map(|s| rule.evaluate_encoded(s).fuel_used).sum::<u64>())
        });
    }
    per_eval.finish();

    let mut set = c.benchmark_group("ruleset_samples");
    set.throughput(Throughput::Elements(samples.len() as u64));
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        set.bench_function(BenchmarkId::new("wasm_threads", threads), |b| b.iter(|| pool.install(|| scorer.score_batch(&samples)).len()));
    }
    let inputs: Vec<Vec<Vec<u8>>> = scorer.rules.iter().map(|r| encoded.iter().map(|s| r.input_for(s)).collect()).collect();
    let fns: Vec<fn(&[u8]) -> Vec<u8>> = scorer.rules.iter().map(|r| native(&r.manifest.id)).collect();
    set.bench_function(BenchmarkId::new("native_threads", 1), |b| {
        b.iter(|| fns.iter().zip(&inputs).map(|(f, ins)| ins.iter().map(|i| f(i).len()).sum::<usize>()).sum::<usize>())
    });
    set.finish();
}

criterion_group! {
    name = rules;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(rules);
