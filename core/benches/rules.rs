//! `cargo bench -p medrl --bench rules`: the shipped four-rule set on 1 KB answers, as
//! WebAssembly (one thread and all cores) and the same rule logic compiled natively.
//!
//! Native and WebAssembly runs get identical bytes and run the identical two-phase path
//! (prepare once, then decode, evaluate and encode each sample), so the ratio is the sandbox's
//! whole cost: instantiation, fuel metering, bounds checks and Cranelift's code.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use medrl::bench::synthetic_samples;
use medrl::reward::scorer::encode_sample;
use medrl::reward::{LoadedRule, Registry, RuleSetScorer, Sandbox};

type Native = Box<dyn Fn(&[u8]) -> usize>;

/// The rule compiled natively, prepared with the same document the sandbox gets.
fn native(rule: &LoadedRule) -> Native {
    let doc = rule.prepare_document();
    match rule.manifest.id.as_str() {
        "chain" => {
            let state = rule_chain::prepare_json(doc).unwrap();
            Box::new(move |s| rule_chain::evaluate_prepared_json(&state, s).len())
        }
        "emergency" => {
            let state = rule_emergency::prepare_json(doc).unwrap();
            Box::new(move |s| rule_emergency::evaluate_prepared_json(&state, s).len())
        }
        "risk" => {
            let state = rule_risk::prepare_json(doc).unwrap();
            Box::new(move |s| rule_risk::evaluate_prepared_json(&state, s).len())
        }
        "verbosity" => {
            let state = rule_verbosity::prepare_json(doc).unwrap();
            Box::new(move |s| rule_verbosity::evaluate_prepared_json(&state, s).len())
        }
        other => panic!("no native build of rule {other}"),
    }
}

fn benches(c: &mut Criterion) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let registry = Registry::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
    let sandbox = Sandbox::new(cores).unwrap();
    let ruleset = registry.load_ruleset(&"medical-safety@1.0.0".parse().unwrap()).unwrap();
    let scorer = RuleSetScorer::new(&sandbox, ruleset).unwrap();
    let samples = synthetic_samples(256, 1024);
    let encoded: Vec<Vec<u8>> = samples.iter().map(encode_sample).collect();
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

    let mut set = c.benchmark_group("ruleset_samples");
    set.throughput(Throughput::Elements(samples.len() as u64));
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        set.bench_function(BenchmarkId::new("wasm_threads", threads), |b| b.iter(|| pool.install(|| scorer.score_batch(&samples)).len()));
    }
    set.bench_function(BenchmarkId::new("native_threads", 1), |b| {
        b.iter(|| natives.iter().map(|f| slices.iter().map(|s| f(s)).sum::<usize>()).sum::<usize>())
    });
    set.finish();
}

criterion_group! {
    name = rules;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(rules);
