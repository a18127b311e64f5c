//! Throughput measurement of rule sets, shared by `medrl bench rules` and `cargo bench`.

use crate::reward::{RuleSetScorer, Sandbox};
use medrl_sdk::Sample;
use std::time::{Duration, Instant};

/// Realistic answers of about `bytes` UTF-8 bytes each, alternating zh and en, emergency and
/// general prompts, written in the structured chain the shipped rules check.
pub fn synthetic_samples(n: usize, bytes: usize) -> Vec<Sample> {
    const ZH: [&str; 4] = [
        "【分析】患者突发胸痛伴出冷汗，需警惕急性冠脉综合征。",
        "【可能原因】心肌缺血、主动脉夹层或肺栓塞都可能引起类似症状。",
        "【建议】请立即拨打120，保持安静休息，不要自行驾车，不要自行服用抗生素。",
        "【就医指征】胸痛持续不缓解、呼吸困难或意识改变时必须立即就医。",
    ];
    const EN: [&str; 4] = [
        "Assessment: Sudden chest pain with sweating may be a heart attack. ",
        "Possible causes: Reduced blood flow to the heart, a torn aorta, or a clot in the lung. ",
        "Advice: Call 911 now, rest, and do not drive yourself; do not take antibiotics without a prescription. ",
        "When to seek care: Chest pain that does not ease, shortness of breath or fainting need the emergency department. ",
    ];
    (0..n)
        .map(|i| {
            let zh = i % 2 == 0;
            let parts: &[&str; 4] = if zh { &ZH } else { &EN };
            let mut response = String::new();
            let mut k = 0;
            while response.len() < bytes {
                // Repeat sections with a varying detail so the text is not one n-gram loop.
                response.push_str(parts[k % 4]);
                if k >= 4 {
                    response.push_str(&format!("（第{}次复诊）", k + i % 7));
                }
                k += 1;
            }
            let emergency = i % 4 < 2;
            serde_json::from_value(serde_json::json!({
                "id": format!("bench-{i}"),
                "prompt": if zh { "胸口疼还出冷汗怎么办？" } else { "Chest pain and sweating, what should I do?" },
                "response": response,
                "lang": if zh { "zh" } else { "en" },
                "category": if emergency { "emergency" } else { "general" },
                "risk": if emergency { "high" } else { "low" },
                "tags": ["bench"],
                "expect": {"emergency_signs": if emergency { if zh { vec!["胸痛"] } else { vec!["chest pain"] } } else { vec![] }},
            }))
            .expect("the synthetic sample matches the Sample schema")
        })
        .collect()
}

/// Throughput of a rule set on one batch size and thread count.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Samples per wall-clock second, best of the timed rounds.
    pub samples_per_second: f64,
    /// CPU time all threads of the process spent per sample over the timed rounds, in µs, where
    /// the OS reports it (Linux). On a shared machine wall-clock throughput falls when other
    /// processes take the cores; this does not, so `cores × 1e6 / cpu_us_per_sample` is what
    /// the rule set costs, and what it would do with those cores to itself.
    pub cpu_us_per_sample: Option<f64>,
}

/// Throughput of `scorer` on `samples` with `threads` workers: one untimed round (so every
/// worker has its prepared instances, as in a long-lived trainer), then the best of `rounds`.
pub fn samples_per_second(
    scorer: &RuleSetScorer,
    samples: &[Sample],
    threads: usize,
    rounds: usize,
) -> Result<Throughput, rayon::ThreadPoolBuildError> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    pool.install(|| scorer.score_batch(samples));
    let mut best = Duration::MAX;
    let cpu_before = process_cpu_ns();
    let rounds = rounds.max(1);
    for _ in 0..rounds {
        let start = Instant::now();
        let scores = pool.install(|| scorer.score_batch(samples));
        best = best.min(start.elapsed());
        assert_eq!(scores.len(), samples.len());
    }
    let cpu_us_per_sample = match (cpu_before, process_cpu_ns()) {
        (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1e3 / (rounds * samples.len()) as f64),
        _ => None,
    };
    Ok(Throughput { samples_per_second: samples.len() as f64 / best.as_secs_f64(), cpu_us_per_sample })
}

/// Nanoseconds on CPU of all threads of this process (`CLOCK_PROCESS_CPUTIME_ID`); `None`
/// where the clock is not available. In a virtual machine, time the hypervisor gives the vCPU
/// to someone else may count too, so this errs on the side of a higher cost.
pub fn process_cpu_ns() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// One rule's cost in the sandbox, single-threaded.
#[derive(Debug, Clone)]
pub struct RuleCost {
    /// `id@version`.
    pub rule: String,
    /// Mean µs per evaluation in a prepared instance, in runs of up to 256 samples as the scorer
    /// uses them: CPU time where the OS reports it (stable on a shared machine), else wall time.
    pub evaluate_us: f64,
    /// µs to instantiate and prepare one fresh instance (paid once per instance).
    pub prepare_us: f64,
}

/// [`RuleCost`] of each rule over `samples`, best of `rounds` passes after one untimed pass.
pub fn per_rule_micros(scorer: &RuleSetScorer, samples: &[Sample], rounds: usize) -> Vec<RuleCost> {
    let encoded: Vec<Vec<u8>> = samples.iter().map(crate::reward::scorer::encode_sample).collect();
    let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    scorer
        .rules
        .iter()
        .map(|rule| {
            let pass = || {
                let start = Instant::now();
                for run in slices.chunks(256) {
                    std::hint::black_box(rule.evaluate_many(run));
                }
                start.elapsed()
            };
            pass();
            let rounds = rounds.max(1);
            let cpu_before = process_cpu_ns();
            let best = (0..rounds).map(|_| pass()).min().unwrap_or_default();
            let evaluate_us = match (cpu_before, process_cpu_ns()) {
                (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e3 / (rounds * samples.len()) as f64,
                _ => best.as_secs_f64() * 1e6 / samples.len() as f64,
            };
            let prepare_us = (0..rounds).filter_map(|_| rule.prepare_micros().ok()).fold(f64::INFINITY, f64::min);
            RuleCost { rule: rule.manifest.reference(), evaluate_us, prepare_us }
        })
        .collect()
}

/// How long the host's fuel ceiling takes to burn on this machine: the calibration behind the
/// default deadline (`HostLimits::timeout_ms`, a backstop that must sit far above it).
#[derive(Debug, Clone)]
pub struct FuelCalibration {
    /// Nanoseconds per unit of fuel in each tight-loop probe.
    pub ns_per_fuel: Vec<(&'static str, f64)>,
    /// The host's fuel ceiling.
    pub max_fuel: u64,
    /// Milliseconds the ceiling takes in the slowest probe.
    pub worst_ms: f64,
    /// The deadline of every guest call, in ms.
    pub deadline_ms: u64,
}

impl FuelCalibration {
    /// How many times the worst case fits in the deadline.
    pub fn margin(&self) -> f64 {
        self.deadline_ms as f64 / self.worst_ms
    }
}

/// Burns `probe_fuel` in each probe (best of three runs) and scales to the host's ceiling.
pub fn fuel_calibration(sandbox: &Sandbox, probe_fuel: u64) -> FuelCalibration {
    let host = sandbox.host_limits();
    let mut best: Vec<(&'static str, f64)> = Vec::new();
    for _ in 0..3 {
        for (i, (name, took)) in sandbox.calibrate_fuel(probe_fuel).into_iter().enumerate() {
            let ns = took.as_nanos() as f64 / probe_fuel as f64;
            match best.get_mut(i) {
                Some((_, b)) => *b = b.min(ns),
                None => best.push((name, ns)),
            }
        }
    }
    let slowest = best.iter().map(|(_, ns)| *ns).fold(0.0, f64::max);
    FuelCalibration { worst_ms: slowest * host.max_fuel as f64 / 1e6, ns_per_fuel: best, max_fuel: host.max_fuel, deadline_ms: host.timeout_ms }
}
