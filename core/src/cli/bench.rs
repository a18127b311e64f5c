//! `medrl bench …`: throughput measurements that print figures.

use super::Globals;
use clap::Subcommand;
use medrl::bench::rules::fuel_calibration;
use medrl::bench::{per_rule_micros, samples_per_second, synthetic_samples};
use medrl::registry::VersionRef;
use medrl::reward::{RuleSetScorer, Sandbox};

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
    /// New tokens per second and peak memory of batched sampling on a random model.
    Rollout {
        /// `tiny`, or `qwen2.5-0.5b-shape` (the GPU benchmark: --batch 64 --prompt-len 64 --new-tokens 256).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Rows sampled together.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Tokens per (random) prompt.
        #[arg(long, default_value_t = 64)]
        prompt_len: usize,
        /// New tokens per row, exactly (no stop token).
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// `cpu`, `cuda` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Weights' dtype: f32 or bf16 (default: bf16 on CUDA, f32 on CPU).
        #[arg(long)]
        dtype: Option<String>,
        /// Seed of the weights, prompts and sampler.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Load test of a running `medrl serve` (loopback only): latency percentiles, tokens/s,
    /// errors and lost requests.
    Serve(ServeBenchArgs),
}

#[derive(clap::Args)]
pub struct ServeBenchArgs {
    /// The server, as `medrl serve` printed it (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The served model to ask.
    #[arg(long)]
    model: String,
    /// Requests in all.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Requests in flight at once (client threads).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// max_tokens of every request.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// Sampling temperature of every request (request i uses seed i).
    #[arg(long, default_value_t = 0.7)]
    temperature: f64,
    /// Prompts, used in turn: a data file (data/sets/*.jsonl) or training prompts.
    #[arg(long, default_value = "data/sets/gold.jsonl")]
    prompts: std::path::PathBuf,
    /// Seconds before a request without an answer counts as lost.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
}

pub fn run(cmd: BenchCommand, g: &Globals) -> anyhow::Result<()> {
    let (ruleset, samples, bytes, rounds) = match cmd {
        BenchCommand::Rules { ruleset, samples, bytes, rounds } => (ruleset, samples, bytes, rounds),
        BenchCommand::Rollout { preset, batch, prompt_len, new_tokens, device, dtype, seed } => {
            return rollout(preset, batch, prompt_len, new_tokens, &device, dtype.as_deref(), seed);
        }
        BenchCommand::Serve(args) => return serve(args),
    };
    let reference: VersionRef = ruleset.parse().map_err(anyhow::Error::msg)?;
    let sandbox = Sandbox::with_limits(g.threads, g.registry.host_limits())?;
    let scorer = RuleSetScorer::new(&sandbox, g.registry.load_ruleset(&reference)?)?;
    let batch = synthetic_samples(samples, bytes);
    println!("rule set {reference}: {} rules, {samples} samples of ~{bytes} bytes, best of {rounds}", scorer.rules.len());
    for cost in per_rule_micros(&scorer, &batch[..batch.len().min(500)], rounds) {
        println!("  {:<20} {:>8.1} µs/evaluation (CPU), {:>5.0} µs/prepare (1 thread, WebAssembly)", cost.rule, cost.evaluate_us, cost.prepare_us);
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
    let fuel = fuel_calibration(&sandbox, 100_000_000);
    let probes: Vec<String> = fuel.ns_per_fuel.iter().map(|(name, ns)| format!("{name} {ns:.2}")).collect();
    println!(
        "  fuel: the host ceiling of {} burns in {:.0} ms in the slowest tight loop (ns/fuel: {}); deadline {} ms, {:.1}× that",
        fuel.max_fuel,
        fuel.worst_ms,
        probes.join(", "),
        fuel.deadline_ms,
        fuel.margin()
    );
    Ok(())
}

fn rollout(preset: String, batch: usize, prompt_len: usize, new_tokens: usize, device: &str, dtype: Option<&str>, seed: u64) -> anyhow::Result<()> {
    use medrl::bench::rollout::{RolloutBench, run};
    let device = super::predict::parse_device(device)?;
    let dtype = match dtype {
        None => medrl::model::default_dtype(&device),
        Some("f32") => candle_core::DType::F32,
        Some("bf16") => candle_core::DType::BF16,
        Some(other) => anyhow::bail!("unknown dtype `{other}`; use f32 or bf16"),
    };
    let bench = RolloutBench { preset: preset.parse()?, batch, prompt_len, new_tokens, seed };
    let f = run(&bench, &device, dtype)?;
    println!(
        "rollout on {preset} ({:.1} M parameters, {:?}, {}): batch {batch}, prompts of {prompt_len} tokens, {new_tokens} new tokens per row",
        f.parameters as f64 / 1e6,
        f.dtype,
        if device.is_cuda() { "cuda" } else { "cpu" },
    );
    println!(
        "  new tokens per second: {:>10.1}  ({} tokens in {:.2} s, prefill included)",
        f.tokens_per_second(),
        batch * new_tokens,
        f.total_seconds
    );
    if let Some(decode) = f.decode_tokens_per_second() {
        println!("  decoding only:         {decode:>10.1}  (prefill of the batch {:.3} s)", f.prefill_seconds);
    }
    match f.peak_memory_bytes {
        Some(b) => println!("  peak memory:           {:>10.1} MiB ({})", b as f64 / (1024.0 * 1024.0), f.memory_source.describe()),
        None => println!("  peak memory: {}", f.memory_source.describe()),
    }
    Ok(())
}

fn serve(a: ServeBenchArgs) -> anyhow::Result<()> {
    use medrl::bench::serve::{LoadPlan, run_load};
    let prompts: Vec<String> = medrl::predict::read_prompts(&a.prompts)?.into_iter().map(|p| p.sample.prompt).collect();
    let plan = LoadPlan {
        base_url: a.url,
        model: a.model,
        prompts,
        requests: a.requests,
        concurrency: a.concurrency,
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        timeout: std::time::Duration::from_secs(a.timeout_s),
    };
    let r = run_load(&plan)?;
    println!(
        "serve load on {} ({}): {} requests, {} concurrent, max_tokens {}, loopback",
        plan.base_url, plan.model, r.requests, r.concurrency, plan.max_tokens
    );
    println!("  ok {}  errors {}  malformed {}  lost {}", r.ok, r.errors.values().sum::<usize>(), r.malformed, r.lost);
    for (status, n) in &r.errors {
        println!("    status {status}: {n}");
    }
    println!("  latency p50 {:.0} ms  p95 {:.0} ms  max {:.0} ms", r.p50_ms, r.p95_ms, r.max_ms);
    println!(
        "  {} completion tokens in {:.1} s: {:.1} tokens/s, {:.2} requests/s",
        r.completion_tokens, r.wall_s, r.tokens_per_second, r.requests_per_second
    );
    let errors = r.errors.values().sum::<usize>() + r.malformed;
    if errors > 0 || r.lost > 0 {
        return Err(super::ExitError { code: 3, message: format!("{errors} requests failed and {} were lost", r.lost) }.into());
    }
    Ok(())
}
