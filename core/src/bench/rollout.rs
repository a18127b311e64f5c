//! `medrl bench rollout`: new tokens per second and peak memory of [`generate`] on a random model
//! of a preset's shape, with random prompts of a fixed length and exactly `new_tokens` new
//! tokens per row (no stop ids), so runs are comparable.
//!
//! Peak memory: on the CPU, the process's peak resident set (`VmHWM`), reset just before the
//! timed run (`/proc/self/clear_refs`), so it covers the weights, the KV cache and the sampler,
//! not the writing of the random checkpoint. On CUDA, the device's used memory polled every
//! 20 ms by `nvidia-smi` during the timed run (the whole device: run it alone). That is the hook
//! to replace with candle's allocator statistics if candle grows them.

use crate::model::init::{CONFIG_FILE, Preset, WEIGHTS_FILE, WeightDtype, config_json, safetensors_bytes};
use crate::model::{CausalLm, LoraMode, ModelError};
use crate::rollout::config::SamplingConfig;
use crate::rollout::generate::{RolloutError, StopTokens, generate};
use candle_core::{DType, Device};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot write the random model to {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Init(#[from] crate::model::init::InitError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    #[error("batch, prompt length and new tokens must all be at least 1")]
    Empty,
}

/// What to measure. Defaults: the tiny preset, batch 8, prompts of 64 tokens, 64 new tokens.
#[derive(Debug, Clone)]
pub struct RolloutBench {
    pub preset: Preset,
    pub batch: usize,
    pub prompt_len: usize,
    pub new_tokens: usize,
    /// Seed of the weights, the prompts and the sampler.
    pub seed: u64,
}

impl Default for RolloutBench {
    fn default() -> RolloutBench {
        RolloutBench { preset: Preset::Tiny, batch: 8, prompt_len: 64, new_tokens: 64, seed: 0 }
    }
}

/// Where the peak memory figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySource {
    /// Peak resident set of the process during the timed run.
    ProcessRss,
    /// Peak resident set of the process since it started (clear_refs unavailable).
    ProcessRssSinceStart,
    /// Peak used memory of the GPU during the timed run, from `nvidia-smi`.
    GpuUsed,
    /// Nothing could be measured (no `/proc`, no `nvidia-smi`).
    Unavailable,
}

impl MemorySource {
    pub fn describe(self) -> &'static str {
        match self {
            MemorySource::ProcessRss => "peak process RSS during the run",
            MemorySource::ProcessRssSinceStart => "peak process RSS since start",
            MemorySource::GpuUsed => "peak GPU memory used during the run (nvidia-smi)",
            MemorySource::Unavailable => "peak memory unavailable",
        }
    }
}

/// The figures of one benchmark run.
#[derive(Debug, Clone)]
pub struct RolloutFigures {
    pub parameters: usize,
    pub dtype: DType,
    pub batch: usize,
    pub prompt_len: usize,
    pub new_tokens: usize,
    /// Wall time of the prefill alone (a run with one new token).
    pub prefill_seconds: f64,
    /// Wall time of the whole timed run (prefill and every decoding step).
    pub total_seconds: f64,
    pub peak_memory_bytes: Option<u64>,
    pub memory_source: MemorySource,
}

impl RolloutFigures {
    /// New tokens (batch × new tokens) per second of the whole run, prefill included.
    pub fn tokens_per_second(&self) -> f64 {
        (self.batch * self.new_tokens) as f64 / self.total_seconds
    }

    /// New tokens per second of the decoding steps alone (the whole run minus one prefill).
    pub fn decode_tokens_per_second(&self) -> Option<f64> {
        let decode = self.total_seconds - self.prefill_seconds;
        (self.new_tokens > 1 && decode > 0.0).then(|| (self.batch * (self.new_tokens - 1)) as f64 / decode)
    }
}

/// Writes a random checkpoint of the preset (weights in `dtype`) to a temporary folder, loads it
/// on `device`, warms up, and times one rollout.
pub fn run(bench: &RolloutBench, device: &Device, dtype: DType) -> Result<RolloutFigures, BenchError> {
    if bench.batch == 0 || bench.prompt_len == 0 || bench.new_tokens == 0 {
        return Err(BenchError::Empty);
    }
    let shape = bench.preset.shape();
    let dir = tempfile::tempdir().map_err(|source| BenchError::Write { path: std::env::temp_dir(), source })?;
    let file_dtype = if dtype == DType::F32 { WeightDtype::F32 } else { WeightDtype::Bf16 };
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).map_err(|source| BenchError::Write { path, source })
    };
    let config = serde_json::to_vec_pretty(&config_json(&shape, file_dtype, 0, 1)).expect("a JSON value serialises");
    write(CONFIG_FILE, &config)?;
    write(WEIGHTS_FILE, &safetensors_bytes(&shape, bench.seed, file_dtype)?)?;
    let model = CausalLm::load(dir.path(), device, dtype)?;
    drop(dir);

    let mut rng = ChaCha8Rng::seed_from_u64(bench.seed);
    let ids = shape.vocab_size.min(crate::model::init::TOKENIZER_VOCAB) as u32;
    let prompts: Vec<Vec<u32>> = (0..bench.batch).map(|_| (0..bench.prompt_len).map(|_| rng.next_u32() % ids).collect()).collect();
    // No stop ids: every row generates exactly `new_tokens`. The pad id is never drawn as input.
    let tokens = StopTokens { pad_id: 0, stop_ids: vec![] };
    let cfg = |n| SamplingConfig { max_new_tokens: n, seed: bench.seed, ..SamplingConfig::default() };

    // Warm-up: kernels compiled and loaded (CUDA), allocator and thread pool started.
    generate(&model, &prompts, &tokens, &cfg(2.min(bench.new_tokens)), LoraMode::Off)?;
    let start = Instant::now();
    generate(&model, &prompts, &tokens, &cfg(1), LoraMode::Off)?;
    let prefill_seconds = start.elapsed().as_secs_f64();

    let probe = MemoryProbe::start(device);
    let start = Instant::now();
    let rollout = generate(&model, &prompts, &tokens, &cfg(bench.new_tokens), LoraMode::Off)?;
    let total_seconds = start.elapsed().as_secs_f64();
    let (peak_memory_bytes, memory_source) = probe.finish();
    debug_assert_eq!(rollout.new_tokens(), bench.batch * bench.new_tokens);
    Ok(RolloutFigures {
        parameters: shape.parameters(),
        dtype,
        batch: bench.batch,
        prompt_len: bench.prompt_len,
        new_tokens: bench.new_tokens,
        prefill_seconds,
        total_seconds,
        peak_memory_bytes,
        memory_source,
    })
}

/// Peak memory over the timed run.
enum MemoryProbe {
    Rss { reset: bool },
    Gpu { stop: Arc<AtomicBool>, peak: Arc<AtomicU64>, thread: std::thread::JoinHandle<()> },
}

impl MemoryProbe {
    fn start(device: &Device) -> MemoryProbe {
        if device.is_cuda() {
            let stop = Arc::new(AtomicBool::new(false));
            let peak = Arc::new(AtomicU64::new(0));
            let (s, p) = (stop.clone(), peak.clone());
            let thread = std::thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(used) = gpu_memory_used_bytes() {
                        p.fetch_max(used, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            MemoryProbe::Gpu { stop, peak, thread }
        } else {
            // Writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
            MemoryProbe::Rss { reset: std::fs::write("/proc/self/clear_refs", "5").is_ok() }
        }
    }

    fn finish(self) -> (Option<u64>, MemorySource) {
        match self {
            MemoryProbe::Rss { reset } => match peak_rss_bytes() {
                Some(b) if reset => (Some(b), MemorySource::ProcessRss),
                Some(b) => (Some(b), MemorySource::ProcessRssSinceStart),
                None => (None, MemorySource::Unavailable),
            },
            MemoryProbe::Gpu { stop, peak, thread } => {
                stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
                match peak.load(Ordering::Relaxed) {
                    0 => (None, MemorySource::Unavailable),
                    b => (Some(b), MemorySource::GpuUsed),
                }
            }
        }
    }
}

/// `VmHWM` of `/proc/self/status` in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Used memory of GPU 0 in bytes, from `nvidia-smi` (MiB resolution); `None` without it.
pub fn gpu_memory_used_bytes() -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi").args(["--query-gpu=memory.used", "--format=csv,noheader,nounits", "--id=0"]).output().ok()?;
    let mib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some(mib * 1024 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_reports_consistent_figures() {
        let bench = RolloutBench { batch: 2, prompt_len: 8, new_tokens: 4, ..RolloutBench::default() };
        let f = run(&bench, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(f.parameters, Preset::Tiny.shape().parameters());
        assert!(f.total_seconds > 0.0 && f.tokens_per_second() > 0.0);
        assert_eq!(f.memory_source, MemorySource::ProcessRss);
        assert!(f.peak_memory_bytes.unwrap() > 1 << 20);
        assert!(matches!(run(&RolloutBench { batch: 0, ..bench }, &Device::Cpu, DType::F32), Err(BenchError::Empty)));
    }
}
