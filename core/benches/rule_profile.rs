//! Profiling harness (not a benchmark): runs one rule of a rule set on the bench's 1 KB answers,
//! natively or in the sandbox, for `rounds` passes, so `perf record` / `valgrind --tool=callgrind`
//! see only the hot loop (`hot_native` / `hot_wasm`).
//!
//! `cargo bench -p medrl --bench rule_profile -- RULESET RULE native|wasm|check ROUNDS`
//! (a plain `cargo bench` runs it without arguments: it then says how to use it and exits 0).

mod common;

use common::native;
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

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.len() < 5 {
        println!(
            "rule_profile: profiling harness, not a benchmark; run `cargo bench -p medrl --bench rule_profile -- RULESET RULE native|wasm|check ROUNDS`"
        );
        return;
    }
    let (set, id, mode, rounds) = (&args[1], &args[2], &args[3], args[4].parse::<usize>().unwrap());
    let registry = Registry::integrity_only(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
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
