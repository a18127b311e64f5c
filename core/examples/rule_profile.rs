//! Profiling harness (not a benchmark): runs one rule of a rule set on the bench's 1 KB answers,
//! natively or in the sandbox, for `rounds` passes, so `perf record` / `valgrind --tool=callgrind`
//! see only the hot loop (`hot_native` / `hot_wasm`).
//!
//! `cargo run --release -p medrl --example rule_profile -- RULESET RULE native|wasm ROUNDS`

use medrl::bench::synthetic_samples;
use medrl::registry::Registry;
use medrl::reward::scorer::encode_sample;
use medrl::reward::{LoadedRule, Sandbox};

#[inline(never)]
fn hot_native(f: &dyn Fn(&[u8]) -> usize, samples: &[&[u8]], rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        for s in samples {
            n += f(s);
        }
    }
    n
}

#[inline(never)]
fn hot_wasm(rule: &LoadedRule, samples: &[&[u8]], rounds: usize) -> usize {
    let mut n = 0;
    for _ in 0..rounds {
        for run in samples.chunks(256) {
            n += rule.evaluate_many(run).iter().map(|e| e.fuel_used as usize).sum::<usize>();
        }
    }
    n
}

/// A rule compiled natively: sample JSON in, output length out.
type Native = Box<dyn Fn(&[u8]) -> usize>;

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (set, id, mode, rounds) = (&args[1], &args[2], &args[3], args[4].parse::<usize>().unwrap());
    let registry = Registry::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
    let sandbox = Sandbox::new(1).unwrap();
    let mut ruleset = registry.load_ruleset(&set.parse().unwrap()).unwrap();
    // MEDRL_PROFILE_MODULE=path.wasm swaps in another build of the rule (one with symbols).
    if let Some(path) = std::env::var_os("MEDRL_PROFILE_MODULE") {
        let rule = ruleset.rules.iter_mut().find(|r| &r.manifest.id == id).unwrap();
        rule.module = std::fs::read(path).unwrap();
    }
    // Only the rule under study is compiled, so the profile is the hot loop, not Cranelift.
    let verified = ruleset.rules.iter().find(|r| &r.manifest.id == id).unwrap();
    let rule = &LoadedRule::new(&sandbox, verified, 1.0, None).unwrap();
    let samples = synthetic_samples(256, 1024);
    let encoded: Vec<Vec<u8>> = samples.iter().map(encode_sample).collect();
    let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    if mode == "check" {
        // Cached runs (twice) must equal fresh instances, sample by sample, output and fuel.
        for pass in 0..2 {
            for (run, chunk) in slices.chunks(64).enumerate() {
                for (i, (cached, s)) in rule.evaluate_many(chunk).iter().zip(chunk).enumerate() {
                    let fresh = rule.evaluate_encoded(s);
                    assert_eq!(
                        (cached.outcome, &cached.output, cached.fuel_used),
                        (fresh.outcome, &fresh.output, fresh.fuel_used),
                        "pass {pass} run {run} sample {i}"
                    );
                }
            }
        }
        println!("{id}: cached == fresh on {} samples, twice", slices.len());
        return;
    }
    let cpu = medrl::bench::process_cpu_ns();
    let start = std::time::Instant::now();
    let n = match mode.as_str() {
        "native" => hot_native(&*native(rule), &slices, rounds),
        _ => hot_wasm(rule, &slices, rounds),
    };
    let us = start.elapsed().as_secs_f64() * 1e6 / (rounds * slices.len()) as f64;
    let cpu_us = match (cpu, medrl::bench::process_cpu_ns()) {
        (Some(a), Some(b)) => format!("{:.2}", (b - a) as f64 / 1e3 / (rounds * slices.len()) as f64),
        _ => "?".into(),
    };
    println!("{id} {mode}: {us:.1} µs/evaluation wall, {cpu_us} µs CPU (checksum {n})");
}
