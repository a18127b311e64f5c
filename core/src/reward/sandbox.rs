//! The wasmtime host: one engine, modules validated and compiled once, instances prepared once
//! and reused for many evaluations (kept idle between runs, see [`InstanceCache`]), memory and
//! table limits, deterministic fuel and an epoch deadline per evaluation.
//!
//! Every failure of a rule (trap, fuel, deadline, size, bad output) comes back as a typed
//! [`Evaluation`], never as a panic or an error that stops the caller: one hostile module cannot
//! take the trainer or the other samples of a batch down with it.

use super::outcome::{Evaluation, OutcomeKind};
use crate::registry::limits::SandboxLimits;
use medrl_sdk::RuleOutput;
use medrl_sdk::abi::{self, GuestError};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, PoolingAllocationConfig, ResourceLimiter, Store, Trap, TypedFunc,
    ValType,
};

/// How often the epoch ticker advances the engine's epoch; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Why a module cannot be used as a rule. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("module is {size} bytes, over the {max}-byte cap; shrink the rule (opt-level, fewer dependencies)")]
    TooLarge { size: usize, max: usize },
    #[error("module is not valid WebAssembly: {0}")]
    Invalid(String),
    #[error("module has no `{section}` custom section; build it with medrl-sdk's `export_rule!` macro", section = abi::ABI_SECTION)]
    MissingAbi,
    #[error("module speaks ABI `{found}` but this host supports `{supported}`; rebuild the rule with a medrl-sdk of ABI major {major}", supported = abi::ABI_VERSION, major = abi::ABI_MAJOR)]
    AbiMismatch { found: String },
    #[error("module imports {imports}; rules must be pure and import nothing (no clock, randomness or I/O)")]
    HasImports { imports: String },
    #[error("module lacks the export `{name}` of type {expected}; build it with medrl-sdk's `export_rule!` macro")]
    MissingExport { name: &'static str, expected: &'static str },
    #[error("memory_pages {pages} is over the host's ceiling of {max}; lower `limits.memory_pages`")]
    MemoryCeiling { pages: u32, max: u32 },
}

/// Cheap checks on raw bytes before compiling: size cap and the `medrl:abi` section.
pub fn check_abi_section(bytes: &[u8]) -> Result<(), ModuleError> {
    if bytes.len() > SandboxLimits::MAX_MODULE_BYTES {
        return Err(ModuleError::TooLarge { size: bytes.len(), max: SandboxLimits::MAX_MODULE_BYTES });
    }
    let mut found = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| ModuleError::Invalid(e.to_string()))?;
        if let wasmparser::Payload::CustomSection(reader) = payload
            && reader.name() == abi::ABI_SECTION
        {
            found = Some(String::from_utf8_lossy(reader.data()).into_owned());
        }
    }
    let found = found.ok_or(ModuleError::MissingAbi)?;
    match abi::parse_abi_major(&found) {
        Some(major) if major == abi::ABI_MAJOR => Ok(()),
        _ => Err(ModuleError::AbiMismatch { found }),
    }
}

/// Store state: the limiter, which also remembers whether a limit stopped the guest so that the
/// resulting trap is reported as `limit`, not as a plain trap.
struct StoreState {
    limiter: RuleLimiter,
}

struct RuleLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    hit: Option<String>,
}

impl ResourceLimiter for RuleLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            let msg = format!("memory grew from {current} to {desired} bytes, over the limit of {} bytes", self.max_memory_bytes);
            self.hit = Some(msg.clone());
            // An error (not `Ok(false)`) traps at once: a guest that ignores a failed
            // `memory.grow` would otherwise spin until its fuel runs out.
            return Err(wasmtime::Error::msg(msg));
        }
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            let msg = format!("table grew from {current} to {desired} elements, over the limit of {}", self.max_table_elements);
            self.hit = Some(msg.clone());
            return Err(wasmtime::Error::msg(msg));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }
    fn memories(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        4
    }
}

/// The engine every rule runs on, with its epoch ticker.
pub struct Sandbox {
    engine: Engine,
    ticker_stop: Arc<AtomicBool>,
    /// Pool slots that idle prepared instances may hold (see [`InstanceCache`]).
    idle_budget: Arc<AtomicUsize>,
}

/// Pool slots per worker thread for instances in use: an evaluation in progress, a fresh
/// instance beside it in the isolation check, and room for callers outside the scorer.
const IN_USE_SLOTS_PER_THREAD: usize = 4;
/// Pool slots per worker thread for idle prepared instances: one per rule per thread for rule
/// sets of up to this many rules (beyond it, the extra instances are simply not kept).
const IDLE_SLOTS_PER_THREAD: usize = 8;

impl Sandbox {
    /// Builds the engine: Cranelift, NaN canonicalisation on (bit-identical floats on every CPU),
    /// relaxed SIMD and memory64 off, and threads absent (wasmtime is built without its `threads`
    /// feature, so shared memories cannot even be compiled): sources of non-determinism or
    /// unbounded memory,
    /// fuel and epoch interruption on, and a pooling allocator sized for `parallelism` concurrent
    /// evaluations so instantiation is a slot reuse, not an mmap.
    pub fn new(parallelism: usize) -> Result<Self, ModuleError> {
        let mut config = Config::new();
        config
            .strategy(wasmtime::Strategy::Cranelift)
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            .wasm_memory64(false)
            .consume_fuel(true)
            .epoch_interruption(true);
        // The pool only reserves address space (4 GiB plus guard per memory slot); pages are
        // committed when touched. Slots held by idle instances come on top of those in use, so
        // keeping instances can never starve an evaluation of a slot.
        let in_use = (parallelism.max(1) * IN_USE_SLOTS_PER_THREAD).max(16);
        let idle = parallelism.max(1) * IDLE_SLOTS_PER_THREAD;
        let slots = (in_use + idle) as u32;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots * 4)
            .max_memory_size(SandboxLimits::MAX_MEMORY_PAGES as usize * 65536)
            .table_elements(100_000)
            .max_tables_per_module(4)
            .max_memories_per_module(1);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| ModuleError::Invalid(format!("engine: {e}")))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (weak_engine, stop) = (engine.weak(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("medrl-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch ticker thread");
        Ok(Sandbox { engine, ticker_stop, idle_budget: Arc::new(AtomicUsize::new(idle)) })
    }

    /// The exact wasmtime version (wasmtime pins its `wasmtime-environ` to the same version);
    /// audit records write it as `wasmtime <version>`.
    pub fn engine_version() -> &'static str {
        wasmtime_environ::VERSION
    }

    /// Validates and compiles a module once; evaluations then instantiate it cheaply.
    pub fn compile(&self, bytes: &[u8], limits: SandboxLimits) -> Result<CompiledRule, ModuleError> {
        check_abi_section(bytes)?;
        if limits.memory_pages > SandboxLimits::MAX_MEMORY_PAGES {
            return Err(ModuleError::MemoryCeiling { pages: limits.memory_pages, max: SandboxLimits::MAX_MEMORY_PAGES });
        }
        let module = Module::new(&self.engine, bytes).map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        let imports: Vec<String> = module.imports().map(|i| format!("`{}::{}`", i.module(), i.name())).collect();
        if !imports.is_empty() {
            return Err(ModuleError::HasImports { imports: imports.join(", ") });
        }
        check_export_func(&module, abi::EXPORT_ALLOC, &[ValType::I32], &[ValType::I32], "(i32) -> i32")?;
        check_export_func(&module, abi::EXPORT_PREPARE, &[ValType::I32, ValType::I32], &[ValType::I64], "(i32, i32) -> i64")?;
        check_export_func(&module, abi::EXPORT_EVALUATE, &[ValType::I32, ValType::I32], &[ValType::I64], "(i32, i32) -> i64")?;
        if !matches!(module.get_export(abi::EXPORT_MEMORY), Some(wasmtime::ExternType::Memory(_))) {
            return Err(ModuleError::MissingExport { name: abi::EXPORT_MEMORY, expected: "memory" });
        }
        let linker: Linker<StoreState> = Linker::new(&self.engine);
        let pre = linker.instantiate_pre(&module).map_err(|e| ModuleError::Invalid(format!("{e:#}")))?;
        Ok(CompiledRule { engine: self.engine.clone(), pre, limits, idle_budget: self.idle_budget.clone() })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn check_export_func(
    module: &Module,
    name: &'static str,
    params: &[ValType],
    results: &[ValType],
    expected: &'static str,
) -> Result<(), ModuleError> {
    let ok = match module.get_export(name) {
        Some(wasmtime::ExternType::Func(f)) => {
            f.params().map(|p| p.to_string()).eq(params.iter().map(|p| p.to_string()))
                && f.results().map(|r| r.to_string()).eq(results.iter().map(|r| r.to_string()))
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(ModuleError::MissingExport { name, expected }) }
}

/// A validated, compiled rule module with its limits.
#[derive(Clone)]
pub struct CompiledRule {
    engine: Engine,
    pre: InstancePre<StoreState>,
    limits: SandboxLimits,
    idle_budget: Arc<AtomicUsize>,
}

/// The typed exports of one live instance.
struct Exports {
    memory: wasmtime::Memory,
    alloc: TypedFunc<i32, i32>,
    prepare: TypedFunc<(i32, i32), i64>,
    evaluate: TypedFunc<(i32, i32), i64>,
}

/// One instance after a successful `medrl_prepare`, ready to evaluate samples one by one.
/// After a failed evaluation that trapped, it must not be used again ([`Self::usable`]).
pub struct PreparedInstance {
    limits: SandboxLimits,
    store: Store<StoreState>,
    exports: Exports,
    usable: bool,
}

impl CompiledRule {
    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    fn new_store(&self) -> Store<StoreState> {
        let mut store = Store::new(
            &self.engine,
            StoreState {
                limiter: RuleLimiter {
                    max_memory_bytes: self.limits.memory_bytes(),
                    max_table_elements: self.limits.table_elements as usize,
                    hit: None,
                },
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store
    }

    /// A fresh instance, prepared with `prepare_input` (`{"abi", "params", "memory_pages"}`).
    /// A failure comes back as the evaluation every sample of this instance would have had.
    pub fn prepare(&self, prepare_input: &[u8]) -> Result<PreparedInstance, Evaluation> {
        let start = Instant::now();
        let mut store = self.new_store();
        arm(&mut store, self.limits);
        let result = (|| -> Result<(Exports, Option<Vec<u8>>), RunError> {
            let instance = self.pre.instantiate(&mut store)?;
            let exports = Exports {
                memory: instance.get_memory(&mut store, abi::EXPORT_MEMORY).expect("validated at compile time: the module exports `memory`"),
                alloc: instance.get_typed_func(&mut store, abi::EXPORT_ALLOC)?,
                prepare: instance.get_typed_func(&mut store, abi::EXPORT_PREPARE)?,
                evaluate: instance.get_typed_func(&mut store, abi::EXPORT_EVALUATE)?,
            };
            let packed = call_with_input(&mut store, &exports, &exports.prepare, prepare_input, self.limits)?;
            let error = if packed == 0 { None } else { Some(read_output(&store, &exports, packed, self.limits)?.to_vec()) };
            Ok((exports, error))
        })();
        let fuel_used = self.limits.fuel - store.get_fuel().unwrap_or(0);
        let elapsed_us = start.elapsed().as_micros() as u64;
        match result {
            Ok((exports, None)) => Ok(PreparedInstance { limits: self.limits, store, exports, usable: true }),
            Ok((_, Some(error))) => {
                let msg = match serde_json::from_slice::<GuestError>(&error) {
                    Ok(guest) => guest.error,
                    Err(_) => format!("medrl_prepare returned {:?}", String::from_utf8_lossy(&error[..error.len().min(80)])),
                };
                Err(Evaluation::failed(OutcomeKind::RuleError, msg, fuel_used, elapsed_us))
            }
            Err(e) => {
                let (outcome, msg) = classify_error(&e, store.data().limiter.hit.as_deref(), self.limits);
                Err(Evaluation::failed(outcome, format!("while preparing: {msg}"), fuel_used, elapsed_us))
            }
        }
    }

    /// Evaluates one sample in a fresh instance (replays and golden vectors).
    pub fn evaluate_one(&self, prepare_input: &[u8], sample_json: &[u8], output_range: [f64; 2]) -> Evaluation {
        match self.prepare(prepare_input) {
            Ok(mut instance) => instance.evaluate(sample_json, output_range),
            Err(failed) => failed,
        }
    }

    /// Evaluates samples in order, reusing one prepared instance and replacing it after any
    /// evaluation that trapped. Each result equals what [`Self::evaluate_one`] gives.
    pub fn evaluate_many(&self, prepare_input: &[u8], samples: &[&[u8]], output_range: [f64; 2]) -> Vec<Evaluation> {
        self.evaluate_run(&mut None, prepare_input, samples, output_range)
    }

    /// Like [`Self::evaluate_many`], but starts from an idle instance of `cache` when it has
    /// one and leaves the instance there afterwards. The cache's instances must all have been
    /// prepared with `prepare_input` (a [`crate::reward::LoadedRule`] owns one cache for its
    /// one document). Each result still equals what [`Self::evaluate_one`] gives: reuse across
    /// runs is the same as reuse within a run, which every load verifies.
    pub fn evaluate_cached(&self, cache: &InstanceCache, prepare_input: &[u8], samples: &[&[u8]], output_range: [f64; 2]) -> Vec<Evaluation> {
        let mut instance = cache.take();
        let results = self.evaluate_run(&mut instance, prepare_input, samples, output_range);
        if let Some(instance) = instance {
            cache.put(instance);
        }
        results
    }

    /// An empty cache of idle instances for this rule, drawing on the sandbox's idle budget.
    pub fn instance_cache(&self) -> InstanceCache {
        InstanceCache { idle: Mutex::new(Vec::new()), budget: self.idle_budget.clone() }
    }

    fn evaluate_run(
        &self,
        instance: &mut Option<PreparedInstance>,
        prepare_input: &[u8],
        samples: &[&[u8]],
        output_range: [f64; 2],
    ) -> Vec<Evaluation> {
        let mut results = Vec::with_capacity(samples.len());
        for sample in samples {
            if instance.as_ref().is_none_or(|i| !i.usable) {
                match self.prepare(prepare_input) {
                    Ok(fresh) => *instance = Some(fresh),
                    Err(failed) => {
                        results.push(failed);
                        *instance = None;
                        continue;
                    }
                }
            }
            let live = instance.as_mut().expect("prepared above");
            results.push(live.evaluate(sample, output_range));
        }
        if instance.as_ref().is_some_and(|i| !i.usable) {
            *instance = None;
        }
        results
    }
}

/// Gives the store a fresh fuel budget and deadline for one guest call.
fn arm(store: &mut Store<StoreState>, limits: SandboxLimits) {
    store.set_fuel(limits.fuel).expect("fuel is enabled in the engine config");
    store.set_epoch_deadline(limits.timeout_ms.max(1) / EPOCH_TICK.as_millis() as u64);
}

/// Idle prepared instances of one rule with one prepare document, kept between runs so that a
/// long-lived scorer prepares each rule once per worker thread instead of once per run (for
/// the shipped `risk`, preparing costs as much as dozens of evaluations).
///
/// Only usable instances are kept (never one that trapped or hit a limit). How many instances
/// all caches of a sandbox hold together is bounded by pool slots set aside for them when the
/// sandbox was built; when they are all taken, an instance is dropped instead of kept.
pub struct InstanceCache {
    idle: Mutex<Vec<PreparedInstance>>,
    budget: Arc<AtomicUsize>,
}

impl InstanceCache {
    fn take(&self) -> Option<PreparedInstance> {
        let instance = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        self.budget.fetch_add(1, Ordering::AcqRel);
        Some(instance)
    }

    fn put(&self, instance: PreparedInstance) {
        if !instance.usable {
            return;
        }
        let reserved = self.budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
        if reserved {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(instance);
        }
    }

    /// Instances kept now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for InstanceCache {
    fn drop(&mut self) {
        let held = self.idle.get_mut().unwrap_or_else(|e| e.into_inner()).len();
        self.budget.fetch_add(held, Ordering::AcqRel);
    }
}

impl PreparedInstance {
    /// Whether the instance can take another sample (false after a trap or a limit).
    pub fn usable(&self) -> bool {
        self.usable
    }

    /// Scores one sample (its JSON encoding). Fuel and deadline are per sample.
    pub fn evaluate(&mut self, sample_json: &[u8], output_range: [f64; 2]) -> Evaluation {
        let start = Instant::now();
        let limits = self.limits;
        if sample_json.len() > limits.max_input_bytes as usize {
            let msg = format!("input is {} bytes, over `limits.max_input_bytes` ({})", sample_json.len(), limits.max_input_bytes);
            return Evaluation::failed(OutcomeKind::Limit, msg, 0, start.elapsed().as_micros() as u64);
        }
        arm(&mut self.store, limits);
        let result = call_with_input(&mut self.store, &self.exports, &self.exports.evaluate, sample_json, limits)
            .and_then(|packed| read_output(&self.store, &self.exports, packed, limits));
        let fuel_used = limits.fuel - self.store.get_fuel().unwrap_or(0);
        let elapsed_us = start.elapsed().as_micros() as u64;
        match result {
            Ok(bytes) => classify_output(bytes, output_range, fuel_used, elapsed_us),
            Err(e) => {
                // A trap can leave the guest's heap or globals half-updated: never reuse it.
                if matches!(e, RunError::Wasm(_)) {
                    self.usable = false;
                }
                let (outcome, msg) = classify_error(&e, self.store.data().limiter.hit.as_deref(), limits);
                Evaluation::failed(outcome, msg, fuel_used, elapsed_us)
            }
        }
    }
}

/// `medrl_alloc(len)`, copy `input` in, call `func(ptr, len)`.
fn call_with_input(
    store: &mut Store<StoreState>,
    exports: &Exports,
    func: &TypedFunc<(i32, i32), i64>,
    input: &[u8],
    limits: SandboxLimits,
) -> Result<i64, RunError> {
    if input.len() > limits.max_input_bytes as usize {
        return Err(RunError::InputTooLarge(input.len()));
    }
    let len = input.len() as i32;
    let ptr = exports.alloc.call(&mut *store, len)?;
    exports
        .memory
        .write(&mut *store, ptr as u32 as usize, input)
        .map_err(|_| RunError::Output(format!("medrl_alloc returned {ptr}, outside memory for {len} bytes")))?;
    Ok(func.call(&mut *store, (ptr, len))?)
}

/// The packed `(ptr << 32) | len` output, within the output cap, borrowed from guest memory
/// (the host parses it in place; nothing runs in the guest until the borrow ends).
fn read_output<'s>(store: &'s Store<StoreState>, exports: &Exports, packed: i64, limits: SandboxLimits) -> Result<&'s [u8], RunError> {
    let packed = packed as u64;
    let (out_ptr, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
    if out_len > limits.max_output_bytes as usize {
        return Err(RunError::OutputTooLarge(out_len));
    }
    exports
        .memory
        .data(store)
        .get(out_ptr..out_ptr.saturating_add(out_len))
        .ok_or_else(|| RunError::Output(format!("output [{out_ptr}, +{out_len}) lies outside the module's memory")))
}

enum RunError {
    Wasm(wasmtime::Error),
    InputTooLarge(usize),
    OutputTooLarge(usize),
    Output(String),
}

impl From<wasmtime::Error> for RunError {
    fn from(e: wasmtime::Error) -> Self {
        RunError::Wasm(e)
    }
}

fn classify_error(e: &RunError, limit_hit: Option<&str>, limits: SandboxLimits) -> (OutcomeKind, String) {
    match e {
        RunError::OutputTooLarge(n) => {
            (OutcomeKind::Limit, format!("output is {n} bytes, over `limits.max_output_bytes` ({})", limits.max_output_bytes))
        }
        RunError::Output(msg) => (OutcomeKind::InvalidOutput, msg.clone()),
        RunError::InputTooLarge(n) => (OutcomeKind::Limit, format!("input is {n} bytes, over `limits.max_input_bytes` ({})", limits.max_input_bytes)),
        RunError::Wasm(_) if limit_hit.is_some() => {
            (OutcomeKind::Limit, format!("{}; raise `limits.memory_pages` or use less memory", limit_hit.unwrap_or_default()))
        }
        RunError::Wasm(err) => match err.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => {
                (OutcomeKind::OutOfFuel, format!("ran out of fuel ({}); raise `limits.fuel` in rule.json or simplify the rule", limits.fuel))
            }
            Some(Trap::Interrupt) => {
                (OutcomeKind::Timeout, format!("ran past its deadline of {} ms; raise `limits.timeout_ms` or simplify the rule", limits.timeout_ms))
            }
            Some(trap) => (OutcomeKind::Trap, format!("trapped: {trap}")),
            // Instantiation failures (a memory declared over the pool's ceiling) are limits.
            None if err.to_string().contains("memory") => (OutcomeKind::Limit, format!("{err:#}")),
            None => (OutcomeKind::Trap, format!("{err:#}")),
        },
    }
}

fn classify_output(bytes: &[u8], range: [f64; 2], fuel_used: u64, elapsed_us: u64) -> Evaluation {
    let invalid = |msg: String| Evaluation::failed(OutcomeKind::InvalidOutput, msg, fuel_used, elapsed_us);
    let output: RuleOutput = match serde_json::from_slice(bytes) {
        Ok(out) => out,
        Err(parse_err) => {
            if let Ok(guest) = serde_json::from_slice::<GuestError>(bytes) {
                return Evaluation::failed(OutcomeKind::RuleError, guest.error, fuel_used, elapsed_us);
            }
            let preview: String = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
            return invalid(format!("output is not a rule output ({parse_err}); it begins {preview:?}"));
        }
    };
    if output.applicable {
        if !output.score.is_finite() {
            return invalid(format!("score {} is not finite", output.score));
        }
        if output.score < range[0] || output.score > range[1] {
            return invalid(format!("score {} is outside output_range [{}, {}]", output.score, range[0], range[1]));
        }
    }
    Evaluation { outcome: OutcomeKind::Ok, output: Some(output), error: None, fuel_used, elapsed_us }
}

#[cfg(test)]
mod tests {
    //! Hostile modules, each ending in its typed outcome within its limit.
    use super::*;
    use crate::reward::testutil::{constant_rule, return_data, wat_rule};

    fn limits() -> SandboxLimits {
        SandboxLimits { fuel: 5_000_000, memory_pages: 16, timeout_ms: 2_000, ..Default::default() }
    }

    const PREPARE: &[u8] = br#"{"abi":"medrl-rule/1","params":{}}"#;

    fn run(module: &[u8], limits: SandboxLimits) -> Evaluation {
        let sandbox = Sandbox::new(1).unwrap();
        let rule = sandbox.compile(module, limits).unwrap();
        rule.evaluate_one(PREPARE, br#"{"id":"s"}"#, [0.0, 1.0])
    }

    #[test]
    fn a_good_module_scores() {
        let eval = run(&constant_rule(r#"{"score":0.5,"applicable":true,"explanation":"ok"}"#), limits());
        assert_eq!(eval.outcome, OutcomeKind::Ok, "{eval:?}");
        assert_eq!(eval.output.unwrap().score, 0.5);
        assert!(eval.fuel_used > 0);
    }

    #[test]
    fn infinite_loop_runs_out_of_fuel() {
        let eval = run(&wat_rule("(loop $l br $l) unreachable", "", ""), limits());
        assert_eq!(eval.outcome, OutcomeKind::OutOfFuel, "{eval:?}");
        assert_eq!(eval.fuel_used, limits().fuel);
        assert!(eval.error.unwrap().contains("limits.fuel"));
    }

    #[test]
    fn infinite_loop_with_ample_fuel_times_out() {
        let l = SandboxLimits { fuel: u64::MAX / 2, timeout_ms: 50, ..limits() };
        let eval = run(&wat_rule("(loop $l br $l) unreachable", "", ""), l);
        assert_eq!(eval.outcome, OutcomeKind::Timeout, "{eval:?}");
        // The deadline is a backstop, not a precise timer: far below the 5 s a hang would show.
        assert!(eval.elapsed_us < 5_000_000, "{eval:?}");
    }

    #[test]
    fn memory_grow_bomb_hits_the_limit() {
        let bomb = "(loop $l (drop (memory.grow (i32.const 16))) br $l) unreachable";
        let eval = run(&wat_rule(bomb, "", ""), limits());
        assert_eq!(eval.outcome, OutcomeKind::Limit, "{eval:?}");
        assert!(eval.error.unwrap().contains("memory"));
    }

    #[test]
    fn an_importing_module_is_refused_before_it_runs() {
        let module = wat_rule("i64.const 0", "", r#"(import "env" "clock" (func (result i64)))"#);
        let sandbox = Sandbox::new(1).unwrap();
        let err = sandbox.compile(&module, limits()).err().expect("import refused");
        assert!(matches!(err, ModuleError::HasImports { .. }), "{err}");
        assert!(err.to_string().contains("`env::clock`"), "{err}");
    }

    #[test]
    fn a_100_mb_output_hits_the_output_limit() {
        let body = format!("i64.const {}", 100_000_000i64);
        let eval = run(&wat_rule(&body, "", ""), limits());
        assert_eq!(eval.outcome, OutcomeKind::Limit, "{eval:?}");
        assert!(eval.error.unwrap().contains("max_output_bytes"));
    }

    #[test]
    fn output_outside_memory_is_invalid() {
        let body = format!("i64.const {}", (70_000i64 << 32) | 100);
        let eval = run(&wat_rule(&body, "", ""), limits());
        assert_eq!(eval.outcome, OutcomeKind::InvalidOutput, "{eval:?}");
    }

    #[test]
    fn output_that_is_not_json_is_invalid() {
        let eval = run(&wat_rule(&return_data(5), "hello", ""), limits());
        assert_eq!(eval.outcome, OutcomeKind::InvalidOutput, "{eval:?}");
        assert!(eval.error.unwrap().contains("hello"));
    }

    #[test]
    fn nan_and_out_of_range_scores_are_invalid() {
        for json in [r#"{"score":NaN,"applicable":true}"#, r#"{"score":1e999,"applicable":true}"#] {
            let eval = run(&constant_rule(json), limits());
            assert_eq!(eval.outcome, OutcomeKind::InvalidOutput, "{json}: {eval:?}");
        }
        let eval = run(&constant_rule(r#"{"score":7,"applicable":true}"#), limits());
        assert_eq!(eval.outcome, OutcomeKind::InvalidOutput);
        assert!(eval.error.unwrap().contains("outside output_range"));
        // A rule that does not apply may leave its score at anything finite.
        let eval = run(&constant_rule(r#"{"score":7,"applicable":false}"#), limits());
        assert_eq!(eval.outcome, OutcomeKind::Ok);
    }

    #[test]
    fn a_trap_is_a_trap() {
        let eval = run(&wat_rule("unreachable", "", ""), limits());
        assert_eq!(eval.outcome, OutcomeKind::Trap, "{eval:?}");
        let div = "(drop (i32.div_s (i32.const 1) (i32.const 0))) i64.const 0";
        assert_eq!(run(&wat_rule(div, "", ""), limits()).outcome, OutcomeKind::Trap);
    }

    #[test]
    fn a_guest_error_is_a_rule_error() {
        let eval = run(&constant_rule(r#"{"error":"unknown field `x`"}"#), limits());
        assert_eq!(eval.outcome, OutcomeKind::RuleError);
        assert_eq!(eval.error.as_deref(), Some("unknown field `x`"));
    }

    #[test]
    fn oversize_input_is_refused_without_running() {
        let sandbox = Sandbox::new(1).unwrap();
        let l = SandboxLimits { max_input_bytes: 8, ..limits() };
        let rule = sandbox.compile(&constant_rule(r#"{"score":0.5,"applicable":true}"#), l).unwrap();
        let mut instance = rule.prepare(b"{}").ok().unwrap();
        let eval = instance.evaluate(&[b' '; 9], [0.0, 1.0]);
        assert_eq!((eval.outcome, eval.fuel_used), (OutcomeKind::Limit, 0));
        assert!(instance.usable(), "nothing ran, the instance is intact");
    }

    #[test]
    fn a_reused_instance_is_replaced_after_a_trap() {
        // Traps when the sample is the single byte `T`, scores 0.5 otherwise.
        let body = "(if (i32.eq (i32.load8_u (local.get 0)) (i32.const 84)) (then unreachable)) i64.const 68719476767";
        let module = crate::reward::testutil::wat_rule(body, r#"{\"score\":0.5,\"applicable\":true}"#, "");
        let rule = Sandbox::new(1).unwrap().compile(&module, limits()).unwrap();
        let outcomes: Vec<OutcomeKind> = rule.evaluate_many(PREPARE, &[b"a", b"T", b"b", b"T", b"c"], [0.0, 1.0]).iter().map(|e| e.outcome).collect();
        use OutcomeKind::{Ok as Fine, Trap};
        assert_eq!(outcomes, [Fine, Trap, Fine, Trap, Fine]);
    }

    /// A deliberately stateful rule: scores 0.5 on the first evaluation of an instance and 0.2
    /// after that, so a test can see whether a run got a fresh or a kept instance. It traps on
    /// the sample `T`.
    fn first_call_rule() -> Vec<u8> {
        let body = "(if (i32.eq (i32.load8_u (local.get 0)) (i32.const 84)) (then unreachable))
            (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
            (if (result i64) (i32.eq (global.get $calls) (i32.const 1))
              (then (i64.const 68719476767)) (else (i64.const 201863462943)))";
        // {"score":0.5,"applicable":true} at 16 and {"score":0.2,"applicable":true} at 47.
        let data = r#"{\"score\":0.5,\"applicable\":true}{\"score\":0.2,\"applicable\":true}"#;
        crate::reward::testutil::wat_rule(body, data, "(global $calls (mut i32) (i32.const 0))")
    }

    fn scores(evals: &[Evaluation]) -> Vec<Option<f64>> {
        evals.iter().map(|e| e.output.as_ref().map(|o| o.score)).collect()
    }

    #[test]
    fn idle_instances_carry_over_between_runs_but_never_after_a_trap() {
        let rule = Sandbox::new(1).unwrap().compile(&first_call_rule(), limits()).unwrap();
        let cache = rule.instance_cache();
        let run = |samples: &[&[u8]]| scores(&rule.evaluate_cached(&cache, PREPARE, samples, [0.0, 1.0]));
        assert_eq!(run(&[b"a", b"b"]), [Some(0.5), Some(0.2)]);
        assert_eq!(cache.idle(), 1);
        // The second run continues in the kept instance.
        assert_eq!(run(&[b"c"]), [Some(0.2)]);
        // A trap replaces the instance within the run, and a run that ends on a trap keeps none.
        assert_eq!(run(&[b"T", b"d", b"T"]), [None, Some(0.5), None]);
        assert_eq!(cache.idle(), 0);
        assert_eq!(run(&[b"e"]), [Some(0.5)]);
        // Without a cache every run starts fresh.
        assert_eq!(scores(&rule.evaluate_many(PREPARE, &[b"f"], [0.0, 1.0])), [Some(0.5)]);
    }

    #[test]
    fn idle_instances_stay_within_the_slots_set_aside_for_them() {
        let sandbox = Sandbox::new(1).unwrap();
        let rule = sandbox.compile(&first_call_rule(), limits()).unwrap();
        let caches: Vec<InstanceCache> = (0..=IDLE_SLOTS_PER_THREAD).map(|_| rule.instance_cache()).collect();
        for cache in &caches {
            rule.evaluate_cached(cache, PREPARE, &[b"a"], [0.0, 1.0]);
        }
        let kept: Vec<usize> = caches.iter().map(InstanceCache::idle).collect();
        assert_eq!(kept.iter().sum::<usize>(), IDLE_SLOTS_PER_THREAD, "{kept:?}");
        assert_eq!(kept[IDLE_SLOTS_PER_THREAD], 0, "the last cache found no slot left");
        // Dropping a cache gives its slot back.
        let mut caches = caches;
        caches.remove(0);
        let last = caches.last().unwrap();
        rule.evaluate_cached(last, PREPARE, &[b"a"], [0.0, 1.0]);
        assert_eq!(last.idle(), 1);
    }

    #[test]
    fn a_failed_prepare_fails_every_sample_with_its_reason() {
        let data = r#"{\"error\":\"invalid parameters: order_penalty must be in [0, 1]\"}"#;
        let module = crate::reward::testutil::wat_rule_with("unreachable", data, "", &return_data(data.len() - 10));
        let rule = Sandbox::new(1).unwrap().compile(&module, limits()).unwrap();
        let evals = rule.evaluate_many(PREPARE, &[b"a", b"b"], [0.0, 1.0]);
        assert!(evals.iter().all(|e| e.outcome == OutcomeKind::RuleError), "{evals:?}");
        assert!(evals[0].error.as_deref().unwrap().contains("order_penalty"), "{evals:?}");
        let trapping = crate::reward::testutil::wat_rule_with("i64.const 0", "", "", "unreachable");
        let rule = Sandbox::new(1).unwrap().compile(&trapping, limits()).unwrap();
        let eval = rule.evaluate_one(PREPARE, b"a", [0.0, 1.0]);
        assert_eq!(eval.outcome, OutcomeKind::Trap);
        assert!(eval.error.unwrap().starts_with("while preparing"));
    }

    #[test]
    fn abi_section_is_required_and_versioned() {
        let no_abi = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
        assert!(matches!(check_abi_section(&no_abi), Err(ModuleError::MissingAbi)));
        let v2 = wat::parse_str(r#"(module (@custom "medrl:abi" "medrl-rule/2"))"#).unwrap();
        let err = check_abi_section(&v2).unwrap_err().to_string();
        assert!(err.contains("medrl-rule/2") && err.contains("medrl-rule/1"), "{err}");
    }

    #[test]
    fn wrong_export_types_are_refused() {
        let module = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                 (func (export "medrl_alloc") (param i64) (result i32) i32.const 0)
                 (func (export "medrl_evaluate") (param i32 i32) (result i64) i64.const 0)
                 (@custom "medrl:abi" "medrl-rule/1"))"#,
        )
        .unwrap();
        let err = Sandbox::new(1).unwrap().compile(&module, limits()).err().unwrap();
        assert!(err.to_string().contains("medrl_alloc"), "{err}");
    }
}
