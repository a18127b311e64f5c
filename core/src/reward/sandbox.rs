//! The wasmtime host: one engine, modules validated and compiled once, each rule prepared once
//! per prepare document into a snapshot ([`Prepared`]), and every evaluation run in a fresh
//! instance restored to that snapshot, so no state can pass from one sample to the next;
//! memory and table limits, deterministic fuel, and a wall-clock backstop per guest call, all
//! within the operator's ceilings ([`HostLimits`]).
//!
//! Every failure of a rule (trap, fuel, deadline, size, bad output) comes back as a typed
//! [`Evaluation`], never as a panic or an error that stops the caller: one hostile module cannot
//! take the trainer or the other samples of a batch down with it. Every refusal at load names
//! the rule and its file.

use super::outcome::{Evaluation, OutcomeKind};
use crate::registry::limits::{HostLimits, LimitRefusal, SandboxLimits};
use medrl_sdk::RuleOutput;
use medrl_sdk::abi::{self, GuestError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{
    Config, Enabled, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker, Module, ModuleExport, PoolingAllocationConfig, ResourceLimiter,
    Store, Trap, TypedFunc, Val, ValType,
};

/// How often the epoch ticker advances the engine's epoch; deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Page size of the snapshot diff: the host's page, the unit the pool resets memory in.
const SNAPSHOT_CHUNK: usize = 4096;
/// Export name prefix under which the host exposes a module's mutable globals to itself (the
/// module's own exports cannot start with it).
const GLOBAL_EXPORT_PREFIX: &str = "medrl:snapshot-global:";

/// Why the engine cannot be built, or why a rule cannot be loaded (then naming the rule and
/// its file, with what to do).
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("the WebAssembly engine cannot be built: {0}")]
    Engine(String),
    #[error("rule `{rule}` ({}) is refused: {fault}", path.display())]
    Refused { rule: String, path: PathBuf, fault: ModuleFault },
}

impl ModuleError {
    /// What is wrong with the module, when a rule was refused.
    pub fn fault(&self) -> Option<&ModuleFault> {
        match self {
            ModuleError::Refused { fault, .. } => Some(fault),
            ModuleError::Engine(_) => None,
        }
    }
}

/// What is wrong with a module or its declared limits. Each variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ModuleFault {
    #[error("the module is {size} bytes, over the host's {max}-byte ceiling; shrink the rule (opt-level, fewer dependencies)")]
    TooLarge { size: usize, max: u64 },
    #[error("the module is not valid WebAssembly: {0}; rebuild it with `medrl rules build`")]
    Invalid(String),
    #[error("the module has no `{section}` custom section; build it with medrl-sdk's `export_rule!` macro", section = abi::ABI_SECTION)]
    MissingAbi,
    #[error("the module speaks ABI `{found}` but this host supports `{supported}`; rebuild the rule with a medrl-sdk of ABI major {major}", supported = abi::ABI_VERSION, major = abi::ABI_MAJOR)]
    AbiMismatch { found: String },
    #[error(
        "the module imports {imports}; rules must be pure and import nothing (no clock, randomness or I/O): remove the imports (build with medrl-sdk for wasm32-unknown-unknown, not WASI)"
    )]
    HasImports { imports: String },
    #[error("the module lacks the export `{name}` of type {expected}; build it with medrl-sdk's `export_rule!` macro")]
    MissingExport { name: &'static str, expected: &'static str },
    #[error("the module exports `{name}`, a name the host reserves; rename the export")]
    ReservedExport { name: String },
    #[error("the module {what}; rules must have one linear memory and at most 4 tables: rebuild it with medrl-sdk")]
    Shape { what: String },
    #[error(
        "the module's {what} starts at {initial}, over `limits.{limit}` ({allowed}); raise `limits.{limit}` in rule.toml (within the host's ceiling) or shrink the module's initial {what}"
    )]
    InitialOverLimit { what: &'static str, limit: &'static str, initial: u64, allowed: u64 },
    #[error("the manifest's {0}")]
    OverCeiling(LimitRefusal),
    #[error(
        "the module {what}; every evaluation starts from the state `medrl_prepare` leaves, and the host restores only memory and numeric globals: {fix}"
    )]
    Unrestorable { what: String, fix: &'static str },
}

/// Checks the module's size and `medrl:abi` section, and gathers what the host needs to know of
/// its shape: its mutable globals (to snapshot them) and any instruction that changes state the
/// host cannot restore.
fn inspect_module(bytes: &[u8], limits: &SandboxLimits, host: &HostLimits) -> Result<ModuleShape, ModuleFault> {
    if bytes.len() as u64 > host.max_module_bytes {
        return Err(ModuleFault::TooLarge { size: bytes.len(), max: host.max_module_bytes });
    }
    let invalid = |e: wasmparser::BinaryReaderError| ModuleFault::Invalid(e.to_string());
    let mut abi_found = None;
    let mut shape = ModuleShape { mutable_globals: Vec::new(), initial_memory: Some(Vec::new()) };
    let (mut memories, mut tables) = (0usize, 0usize);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            wasmparser::Payload::CustomSection(reader) if reader.name() == abi::ABI_SECTION => {
                abi_found = Some(String::from_utf8_lossy(reader.data()).into_owned());
            }
            wasmparser::Payload::ImportSection(reader) => {
                let mut names = Vec::new();
                for imports in reader {
                    for import in imports.map_err(invalid)? {
                        let (_, import) = import.map_err(invalid)?;
                        names.push(format!("`{}::{}`", import.module, import.name));
                    }
                }
                if !names.is_empty() {
                    return Err(ModuleFault::HasImports { imports: names.join(", ") });
                }
            }
            wasmparser::Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(invalid)?;
                    memories += 1;
                    if memory.memory64 || memory.shared {
                        return Err(ModuleFault::Shape { what: "declares a 64-bit or shared memory".into() });
                    }
                    if memory.initial > u64::from(limits.memory_pages) {
                        let (initial, allowed) = (memory.initial, limits.memory_pages.into());
                        return Err(ModuleFault::InitialOverLimit { what: "memory (in pages)", limit: "memory_pages", initial, allowed });
                    }
                }
            }
            wasmparser::Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(invalid)?;
                    tables += 1;
                    if table.ty.initial > u64::from(limits.table_elements) {
                        let (initial, allowed) = (table.ty.initial, limits.table_elements.into());
                        return Err(ModuleFault::InitialOverLimit { what: "table (in elements)", limit: "table_elements", initial, allowed });
                    }
                }
            }
            wasmparser::Payload::GlobalSection(reader) => {
                for (index, global) in reader.into_iter().enumerate() {
                    let ty = global.map_err(invalid)?.ty;
                    if !ty.mutable {
                        continue;
                    }
                    if !matches!(
                        ty.content_type,
                        wasmparser::ValType::I32 | wasmparser::ValType::I64 | wasmparser::ValType::F32 | wasmparser::ValType::F64
                    ) {
                        return Err(ModuleFault::Unrestorable {
                            what: format!("has a mutable global of type {}", ty.content_type),
                            fix: "keep mutable globals to i32, i64, f32 and f64 (as Rust does)",
                        });
                    }
                    shape.mutable_globals.push(index as u32);
                }
            }
            wasmparser::Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    if export.name.starts_with(GLOBAL_EXPORT_PREFIX) {
                        return Err(ModuleFault::ReservedExport { name: export.name.to_string() });
                    }
                }
            }
            wasmparser::Payload::StartSection { .. } => shape.initial_memory = None,
            wasmparser::Payload::DataSection(reader) => {
                for data in reader {
                    let data = data.map_err(invalid)?;
                    let wasmparser::DataKind::Active { offset_expr, .. } = data.kind else { continue };
                    let mut expr = offset_expr.get_operators_reader();
                    let offset = match (expr.read().map_err(invalid)?, expr.read().map_err(invalid)?) {
                        (wasmparser::Operator::I32Const { value }, wasmparser::Operator::End) => Some(value as u32 as usize),
                        _ => None,
                    };
                    match (offset, shape.initial_memory.as_mut()) {
                        (Some(offset), Some(image)) => {
                            let end = offset + data.data.len();
                            if image.len() < end {
                                image.resize(end, 0);
                            }
                            image[offset..end].copy_from_slice(data.data);
                        }
                        // An offset computed at instantiation: diff against a fresh instance.
                        _ => shape.initial_memory = None,
                    }
                }
            }
            wasmparser::Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().map_err(invalid)?;
                while !ops.eof() {
                    use wasmparser::Operator as Op;
                    let what = match ops.read().map_err(invalid)? {
                        Op::TableSet { .. } | Op::TableGrow { .. } | Op::TableFill { .. } | Op::TableCopy { .. } | Op::TableInit { .. } => {
                            "changes a table (table.set/grow/fill/copy/init)"
                        }
                        Op::ElemDrop { .. } => "drops an element segment (elem.drop)",
                        Op::DataDrop { .. } => "drops a data segment (data.drop)",
                        _ => continue,
                    };
                    return Err(ModuleFault::Unrestorable {
                        what: what.into(),
                        fix: "rules must not change tables or drop segments; build the rule with medrl-sdk",
                    });
                }
            }
            _ => {}
        }
    }
    if memories != 1 {
        return Err(ModuleFault::Shape { what: format!("defines {memories} memories") });
    }
    if tables > 4 {
        return Err(ModuleFault::Shape { what: format!("defines {tables} tables") });
    }
    let found = abi_found.ok_or(ModuleFault::MissingAbi)?;
    match abi::parse_abi_major(&found) {
        Some(major) if major == abi::ABI_MAJOR => Ok(shape),
        _ => Err(ModuleFault::AbiMismatch { found }),
    }
}

struct ModuleShape {
    /// Indices of the module's mutable globals (it imports nothing, so these index its own).
    mutable_globals: Vec<u32>,
    /// The low bytes of a fresh instance's memory (the active data segments; zero above), when
    /// the module has no start function and only constant segment offsets; else `None`.
    initial_memory: Option<Vec<u8>>,
}

/// The module with each mutable global exported as `medrl:snapshot-global:<index>`, so the host
/// can read a prepared instance's globals and set them in a fresh one. Only the export section
/// changes (no index shifts), so the code the module runs is the code it was signed with.
fn export_mutable_globals(bytes: &[u8], globals: &[u32]) -> Result<Vec<u8>, ModuleFault> {
    fn leb(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            out.push(if v == 0 { byte } else { byte | 0x80 });
            if v == 0 {
                return;
            }
        }
    }
    fn read_leb(bytes: &[u8], pos: &mut usize) -> Result<u64, ModuleFault> {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = *bytes.get(*pos).ok_or_else(|| ModuleFault::Invalid("truncated section header".into()))?;
            *pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(ModuleFault::Invalid("overlong LEB128 in a section header".into()));
            }
        }
    }
    let mut entries = Vec::new();
    for index in globals {
        let name = format!("{GLOBAL_EXPORT_PREFIX}{index}");
        leb(name.len() as u64, &mut entries);
        entries.extend_from_slice(name.as_bytes());
        entries.push(0x03); // export kind: global
        leb((*index).into(), &mut entries);
    }
    // The module was validated by wasmparser already; walk its sections (id, LEB size, body).
    let mut out = bytes[..8].to_vec();
    let mut pos = 8;
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        pos += 1;
        let size = read_leb(bytes, &mut pos)? as usize;
        let body = bytes.get(pos..pos + size).ok_or_else(|| ModuleFault::Invalid("section runs past the end".into()))?;
        pos += size;
        if id != 7 {
            out.extend_from_slice(&bytes[start..pos]);
            continue;
        }
        let mut at = 0;
        let count = read_leb(body, &mut at)?;
        let mut content = Vec::with_capacity(body.len() + entries.len() + 5);
        leb(count + globals.len() as u64, &mut content);
        content.extend_from_slice(&body[at..]);
        content.extend_from_slice(&entries);
        out.push(7);
        leb(content.len() as u64, &mut out);
        out.extend_from_slice(&content);
    }
    Ok(out)
}

/// Store state: the limiter, which also remembers whether a limit stopped the guest so that the
/// resulting trap is reported as `limit`, not as a plain trap.
struct StoreState {
    limiter: RuleLimiter,
}

struct RuleLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    /// What was refused, and the manifest key to raise.
    hit: Option<(String, &'static str)>,
}

impl ResourceLimiter for RuleLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            let msg = format!("memory grew from {current} to {desired} bytes, over the limit of {} bytes", self.max_memory_bytes);
            self.hit = Some((msg.clone(), "limits.memory_pages"));
            // An error (not `Ok(false)`) traps at once: a guest that ignores a failed
            // `memory.grow` would otherwise spin until its fuel runs out.
            return Err(wasmtime::Error::msg(msg));
        }
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements {
            let msg = format!("table grew from {current} to {desired} elements, over the limit of {}", self.max_table_elements);
            self.hit = Some((msg.clone(), "limits.table_elements"));
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

/// The engine every rule runs on, with its epoch ticker and the operator's ceilings.
pub struct Sandbox {
    engine: Engine,
    host: HostLimits,
}

/// Pool slots per worker thread: an evaluation in progress, a fresh instance being prepared
/// beside it, and room for callers outside the scorer.
const SLOTS_PER_THREAD: usize = 4;

impl Sandbox {
    /// [`Self::with_limits`] with the default [`HostLimits`].
    pub fn new(parallelism: usize) -> Result<Self, ModuleError> {
        Self::with_limits(parallelism, HostLimits::default())
    }

    /// Builds the engine: Cranelift, NaN canonicalisation on (bit-identical floats on every CPU),
    /// relaxed SIMD and memory64 off, and threads absent (wasmtime is built without its `threads`
    /// feature, so shared memories cannot even be compiled): sources of non-determinism or
    /// unbounded memory; fuel and epoch interruption on, and a pooling allocator sized for
    /// `parallelism` concurrent evaluations and for `host`'s memory and table ceilings, so that
    /// an instance is a slot reuse, not an mmap.
    pub fn with_limits(parallelism: usize, host: HostLimits) -> Result<Self, ModuleError> {
        let mut config = Config::new();
        config
            .strategy(wasmtime::Strategy::Cranelift)
            .cranelift_nan_canonicalization(true)
            .wasm_relaxed_simd(false)
            .wasm_memory64(false)
            .consume_fuel(true)
            .epoch_interruption(true)
            .memory_guard_size(0)
            .signals_based_traps(false);
        // The pool only reserves address space (the memory ceiling plus guard per slot); pages
        // are committed when touched. Every evaluation takes a fresh slot and gives it back, so
        // the pool resets memory once per evaluation: with `PAGEMAP_SCAN` (Linux 6.7+) it finds
        // the pages the evaluation touched and resets just those in place, which keeps them
        // resident and saves the page faults of the next evaluation in that slot.
        let slots = (parallelism.max(1) * SLOTS_PER_THREAD).max(16) as u32;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots * 4)
            .max_memory_size(host.max_memory_pages as usize * 65536)
            .table_elements(host.max_table_elements as usize)
            .max_tables_per_module(4)
            .max_memories_per_module(1)
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| ModuleError::Engine(format!("{e:#}")))?;

        // The ticker lives as long as the engine: a compiled rule keeps the engine, and so its
        // deadline, after the `Sandbox` that built it is gone (a rule outliving a stopped
        // ticker would have no deadline at all).
        let weak_engine = engine.weak();
        std::thread::Builder::new()
            .name("medrl-epoch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    match weak_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| ModuleError::Engine(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(Sandbox { engine, host })
    }

    /// The ceilings this sandbox enforces.
    pub fn host_limits(&self) -> HostLimits {
        self.host
    }

    /// The exact wasmtime version (wasmtime pins its `wasmtime-environ` to the same version);
    /// audit records write it as `wasmtime <version>`.
    pub fn engine_version() -> &'static str {
        wasmtime_environ::VERSION
    }

    /// Validates and compiles a module once; evaluations then instantiate it cheaply. `rule`
    /// (`id@version`) and `path` (the module file) name it in every refusal.
    pub fn compile(&self, rule: &str, path: &Path, bytes: &[u8], limits: SandboxLimits) -> Result<CompiledRule, ModuleError> {
        let refuse = |fault| ModuleError::Refused { rule: rule.to_string(), path: path.to_path_buf(), fault };
        self.host.check(&limits).map_err(|r| refuse(ModuleFault::OverCeiling(r)))?;
        let shape = inspect_module(bytes, &limits, &self.host).map_err(refuse)?;
        let instrumented = export_mutable_globals(bytes, &shape.mutable_globals).map_err(refuse)?;
        let module = Module::new(&self.engine, &instrumented).map_err(|e| refuse(ModuleFault::Invalid(format!("{e:#}"))))?;
        let func = |name: &'static str, params: &[ValType], results: &[ValType], expected: &'static str| {
            check_export_func(&module, name, params, results, expected).map_err(refuse)
        };
        func(abi::EXPORT_ALLOC, &[ValType::I32], &[ValType::I32], "(i32) -> i32")?;
        func(abi::EXPORT_PREPARE, &[ValType::I32, ValType::I32], &[ValType::I64], "(i32, i32) -> i64")?;
        func(abi::EXPORT_EVALUATE, &[ValType::I32, ValType::I32], &[ValType::I64], "(i32, i32) -> i64")?;
        if !matches!(module.get_export(abi::EXPORT_MEMORY), Some(wasmtime::ExternType::Memory(_))) {
            return Err(refuse(ModuleFault::MissingExport { name: abi::EXPORT_MEMORY, expected: "memory" }));
        }
        let index = |name: &str| module.get_export_index(name).expect("checked above: the module exports it");
        let exports = Arc::new(ExportIndices {
            memory: index(abi::EXPORT_MEMORY),
            alloc: index(abi::EXPORT_ALLOC),
            prepare: index(abi::EXPORT_PREPARE),
            evaluate: index(abi::EXPORT_EVALUATE),
            globals: shape.mutable_globals.iter().map(|i| index(&format!("{GLOBAL_EXPORT_PREFIX}{i}"))).collect(),
        });
        let linker: Linker<StoreState> = Linker::new(&self.engine);
        let pre = linker.instantiate_pre(&module).map_err(|e| refuse(ModuleFault::Invalid(format!("{e:#}"))))?;
        let initial_memory = shape.initial_memory.map(Arc::new);
        Ok(CompiledRule { engine: self.engine.clone(), pre, exports, limits, deadline: self.host.deadline(), rule: rule.to_string(), initial_memory })
    }

    /// How long `fuel` takes to burn in each of four tight loops (branches only, 64-bit
    /// division, memory load and store, calls), on this machine, in this engine: the calibration
    /// behind the default deadline ([`HostLimits::timeout_ms`]).
    pub fn calibrate_fuel(&self, fuel: u64) -> Vec<(&'static str, Duration)> {
        FUEL_PROBES
            .iter()
            .map(|(name, body)| {
                let module = Module::new(&self.engine, probe_module(body)).expect("the probe modules are valid WebAssembly");
                let mut store = Store::new(&self.engine, ());
                store.set_fuel(fuel).expect("fuel is enabled in the engine config");
                store.set_epoch_deadline(deadline_ticks(Duration::from_secs(3600)));
                store.epoch_deadline_trap();
                let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("the probe modules import nothing");
                let spin = instance.get_typed_func::<(), ()>(&mut store, "spin").expect("the probe modules export `spin`");
                let start = Instant::now();
                let ended = spin.call(&mut store, ()).err().and_then(|e| e.downcast_ref::<Trap>().copied());
                let elapsed = start.elapsed();
                assert_eq!(ended, Some(Trap::OutOfFuel), "the probe `{name}` loops until its fuel runs out");
                (*name, elapsed)
            })
            .collect()
    }
}

/// Bytes of linear memory per pool slot that are reset in place (where `PAGEMAP_SCAN` finds
/// which pages were touched) instead of being given back to the kernel: the prepared state plus
/// what an evaluation touches, for the shipped rules well under this.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Loop bodies of the fuel calibration, each `loop … br 0 end` in a function with one i64 local
/// and a one-page memory; function 1 is an empty function for the call probe.
const FUEL_PROBES: [(&str, &[u8]); 4] = [
    ("branch", &[0x03, 0x40, 0x0c, 0x00, 0x0b]),
    // local0 = -1 / (local0 + 3)
    ("i64.div_u", &[0x03, 0x40, 0x42, 0x7f, 0x20, 0x00, 0x42, 0x03, 0x7c, 0x80, 0x21, 0x00, 0x0c, 0x00, 0x0b]),
    // mem[0] = mem[0] + 1
    ("load/store", &[0x03, 0x40, 0x41, 0x00, 0x41, 0x00, 0x28, 0x02, 0x00, 0x41, 0x01, 0x6a, 0x36, 0x02, 0x00, 0x0c, 0x00, 0x0b]),
    ("call", &[0x03, 0x40, 0x10, 0x01, 0x0c, 0x00, 0x0b]),
];

/// A module exporting `spin`, whose body is `body`, beside an empty function 1.
fn probe_module(body: &[u8]) -> Vec<u8> {
    let mut m = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    m.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type 0: () -> ()
    m.extend_from_slice(&[0x03, 0x03, 0x02, 0x00, 0x00]); // functions 0 and 1 of type 0
    m.extend_from_slice(&[0x05, 0x03, 0x01, 0x00, 0x01]); // one memory of one page
    m.extend_from_slice(&[0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00]);
    let spin_len = 3 + body.len() + 1; // one local i64, the body, `end`
    let section_len = 1 + 1 + spin_len + 1 + 2;
    m.extend_from_slice(&[0x0a, section_len as u8, 0x02, spin_len as u8, 0x01, 0x01, 0x7e]);
    m.extend_from_slice(body);
    m.extend_from_slice(&[0x0b, 0x02, 0x00, 0x0b]);
    m
}

fn check_export_func(
    module: &Module,
    name: &'static str,
    params: &[ValType],
    results: &[ValType],
    expected: &'static str,
) -> Result<(), ModuleFault> {
    let ok = match module.get_export(name) {
        Some(wasmtime::ExternType::Func(f)) => {
            f.params().map(|p| p.to_string()).eq(params.iter().map(|p| p.to_string()))
                && f.results().map(|r| r.to_string()).eq(results.iter().map(|r| r.to_string()))
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(ModuleFault::MissingExport { name, expected }) }
}

/// Where the exports the host uses are in the module, looked up once at compile time.
struct ExportIndices {
    memory: ModuleExport,
    alloc: ModuleExport,
    prepare: ModuleExport,
    evaluate: ModuleExport,
    /// The mutable globals, in the order of [`Snapshot::globals`].
    globals: Vec<ModuleExport>,
}

/// A validated, compiled rule module with its limits.
#[derive(Clone)]
pub struct CompiledRule {
    engine: Engine,
    pre: InstancePre<StoreState>,
    exports: Arc<ExportIndices>,
    limits: SandboxLimits,
    /// The host's deadline for each guest call.
    deadline: Duration,
    /// `id@version`, for messages.
    rule: String,
    /// What a fresh instance's memory holds, for the snapshot diff (see [`ModuleShape`]).
    initial_memory: Option<Arc<Vec<u8>>>,
}

/// One live instance and its typed exports.
struct Live {
    store: Store<StoreState>,
    memory: wasmtime::Memory,
    alloc: TypedFunc<i32, i32>,
    prepare: TypedFunc<(i32, i32), i64>,
    evaluate: TypedFunc<(i32, i32), i64>,
    globals: Vec<wasmtime::Global>,
}

/// The state `medrl_prepare` left: memory size, the bytes that differ from a fresh instance's
/// memory, and every mutable global. A fresh instance restored to it is indistinguishable, to
/// the guest, from the instance that ran `medrl_prepare` (tables and segments cannot have
/// changed: modules that could change them are refused at load).
struct Snapshot {
    memory_pages: u64,
    /// `(offset, bytes)` runs of memory that differ from a fresh instance's.
    runs: Vec<(usize, Vec<u8>)>,
    globals: Vec<Val>,
}

/// A rule prepared with one prepare document: every [`Self::evaluate`] runs in a fresh instance
/// restored to the state `medrl_prepare` left, so evaluations cannot see each other.
#[derive(Clone)]
pub struct Prepared {
    rule: CompiledRule,
    snapshot: Arc<Snapshot>,
}

impl CompiledRule {
    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// A fresh instance with fuel and deadline armed (a start function runs under them).
    fn instantiate(&self) -> Result<Live, (RunError, Store<StoreState>)> {
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
        arm(&mut store, self.limits.fuel, self.deadline);
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err((RunError::Wasm(e), store)),
        };
        let e = &self.exports;
        let mut get = |index: &ModuleExport| instance.get_module_export(&mut store, index).expect("the export was found at compile time");
        let (memory, alloc, prepare, evaluate) = (get(&e.memory), get(&e.alloc), get(&e.prepare), get(&e.evaluate));
        let globals: Vec<wasmtime::Global> = e.globals.iter().map(|g| get(g).into_global().expect("exported as a global at compile time")).collect();
        let func = |f: Extern| f.into_func().expect("a function export, checked at compile time");
        Ok(Live {
            memory: memory.into_memory().expect("a memory export, checked at compile time"),
            alloc: func(alloc).typed(&store).expect("the type was checked at compile time"),
            prepare: func(prepare).typed(&store).expect("the type was checked at compile time"),
            evaluate: func(evaluate).typed(&store).expect("the type was checked at compile time"),
            globals,
            store,
        })
    }

    /// Instantiates a fresh instance and runs `medrl_prepare` with `prepare_input`
    /// (`{"abi", "params", "memory_pages"}`). A failure comes back as the evaluation every
    /// sample would have had.
    fn prepare_live(&self, prepare_input: &[u8]) -> Result<Live, Evaluation> {
        let start = Instant::now();
        let (result, store_fuel, hit) = match self.instantiate() {
            Err((e, store)) => (Err(e), store.get_fuel().unwrap_or(0), store.data().limiter.hit.clone()),
            Ok(mut live) => {
                arm(&mut live.store, self.limits.fuel, self.deadline);
                let result = call_with_input(&mut live, Phase::Prepare, prepare_input, self.limits)
                    .and_then(|packed| if packed == 0 { Ok(None) } else { read_output(&live, packed, self.limits).map(|b| Some(b.to_vec())) });
                let (fuel, hit) = (live.store.get_fuel().unwrap_or(0), live.store.data().limiter.hit.clone());
                match result {
                    Ok(None) => return Ok(live),
                    Ok(Some(error)) => (Ok(error), fuel, hit),
                    Err(e) => (Err(e), fuel, hit),
                }
            }
        };
        let fuel_used = self.limits.fuel.saturating_sub(store_fuel);
        let elapsed_us = start.elapsed().as_micros() as u64;
        Err(match result {
            Ok(error) => {
                let msg = match serde_json::from_slice::<GuestError>(&error) {
                    Ok(guest) => guest.error,
                    Err(_) => format!("medrl_prepare returned {:?}", String::from_utf8_lossy(&error[..error.len().min(80)])),
                };
                Evaluation::failed(OutcomeKind::RuleError, msg, fuel_used, elapsed_us)
            }
            Err(e) => {
                let (outcome, msg) = self.classify_error(&e, hit, fuel_used);
                Evaluation::failed(outcome, format!("while preparing: {msg}"), fuel_used, elapsed_us)
            }
        })
    }

    /// Prepares the rule with `prepare_input` and snapshots the state it leaves.
    pub fn prepare(&self, prepare_input: &[u8]) -> Result<Prepared, Evaluation> {
        // What a fresh instance's memory holds: from the data segments, or, for a module with a
        // start function or computed offsets, read from an instance nothing else has run in.
        let baseline = match &self.initial_memory {
            Some(image) => image.clone(),
            None => {
                let fresh = self.instantiate().map_err(|(e, store)| {
                    let (outcome, msg) = self.classify_error(&e, store.data().limiter.hit.clone(), 0);
                    Evaluation::failed(outcome, format!("while instantiating: {msg}"), 0, 0)
                })?;
                Arc::new(fresh.memory.data(&fresh.store).to_vec())
            }
        };
        let mut live = self.prepare_live(prepare_input)?;
        let memory = live.memory.data(&live.store);
        // Only pages the prepared instance has touched can differ from a fresh one; reading the
        // others would map them, and a slot's mapped pages slow every later instance in it.
        let touched = touched_pages(memory);
        let mut runs: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, chunk) in memory.chunks(SNAPSHOT_CHUNK).enumerate() {
            let offset = i * SNAPSHOT_CHUNK;
            if touched.as_ref().is_some_and(|t| !t.contains(offset)) {
                continue;
            }
            let before = baseline.get(offset..).unwrap_or(&[]);
            let before = &before[..before.len().min(chunk.len())];
            let same = chunk[..before.len()] == *before && chunk[before.len()..].iter().all(|b| *b == 0);
            if same {
                continue;
            }
            match runs.last_mut() {
                Some((start, bytes)) if *start + bytes.len() == offset => bytes.extend_from_slice(chunk),
                _ => runs.push((offset, chunk.to_vec())),
            }
        }
        let memory_pages = live.memory.size(&live.store);
        let globals = live.globals.clone().into_iter().map(|g| g.get(&mut live.store)).collect();
        Ok(Prepared { rule: self.clone(), snapshot: Arc::new(Snapshot { memory_pages, runs, globals }) })
    }

    /// Evaluates one sample in a fresh instance that runs `medrl_prepare` itself, then the
    /// sample: no snapshot involved, the reference every snapshot evaluation must equal.
    pub fn evaluate_one(&self, prepare_input: &[u8], sample_json: &[u8], output_range: [f64; 2]) -> Evaluation {
        match self.prepare_live(prepare_input) {
            Ok(mut live) => self.evaluate_live(&mut live, sample_json, output_range, Instant::now()),
            Err(failed) => failed,
        }
    }

    /// Evaluates samples in order: prepares once, then each sample in a fresh instance
    /// restored to the prepared state. Each result equals what [`Self::evaluate_one`] gives.
    pub fn evaluate_many(&self, prepare_input: &[u8], samples: &[&[u8]], output_range: [f64; 2]) -> Vec<Evaluation> {
        match self.prepare(prepare_input) {
            Ok(prepared) => samples.iter().map(|s| prepared.evaluate(s, output_range)).collect(),
            Err(failed) => samples.iter().map(|_| failed.clone()).collect(),
        }
    }

    /// Like [`Self::evaluate_many`], but prepares only when `cache` holds no snapshot yet, and
    /// leaves the snapshot there for later runs. The cache's snapshot must have been prepared
    /// with `prepare_input` (a [`crate::reward::LoadedRule`] owns one cache for its one
    /// document). A failed prepare is not kept: the next run tries again.
    pub fn evaluate_cached(&self, cache: &PreparedCache, prepare_input: &[u8], samples: &[&[u8]], output_range: [f64; 2]) -> Vec<Evaluation> {
        let kept = cache.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let prepared = match kept {
            Some(prepared) => prepared,
            None => match self.prepare(prepare_input) {
                Ok(prepared) => {
                    *cache.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(prepared.clone());
                    prepared
                }
                Err(failed) => return samples.iter().map(|_| failed.clone()).collect(),
            },
        };
        samples.iter().map(|s| prepared.evaluate(s, output_range)).collect()
    }

    /// An empty cache for this rule's prepared state.
    pub fn prepared_cache(&self) -> PreparedCache {
        PreparedCache { slot: Mutex::new(None) }
    }

    /// Fuel, deadline, input, `medrl_evaluate`, output: one sample in `live`.
    fn evaluate_live(&self, live: &mut Live, sample_json: &[u8], output_range: [f64; 2], start: Instant) -> Evaluation {
        let limits = self.limits;
        if sample_json.len() > limits.max_input_bytes as usize {
            let msg = format!(
                "rule `{}`: input is {} bytes, over `limits.max_input_bytes` ({}); shorten the sample or raise the limit in rule.toml",
                self.rule,
                sample_json.len(),
                limits.max_input_bytes
            );
            return Evaluation::failed(OutcomeKind::Limit, msg, 0, start.elapsed().as_micros() as u64);
        }
        arm(&mut live.store, limits.fuel, self.deadline);
        let result = call_with_input(live, Phase::Evaluate, sample_json, limits).and_then(|packed| read_output(live, packed, limits));
        let fuel_used = limits.fuel.saturating_sub(live.store.get_fuel().unwrap_or(0));
        let elapsed_us = start.elapsed().as_micros() as u64;
        match result {
            Ok(bytes) => classify_output(&self.rule, bytes, output_range, fuel_used, elapsed_us),
            Err(e) => {
                let (outcome, msg) = self.classify_error(&e, live.store.data().limiter.hit.clone(), fuel_used);
                Evaluation::failed(outcome, msg, fuel_used, elapsed_us)
            }
        }
    }

    fn classify_error(&self, e: &RunError, limit_hit: Option<(String, &'static str)>, fuel_used: u64) -> (OutcomeKind, String) {
        let (limits, rule) = (self.limits, &self.rule);
        match e {
            RunError::OutputTooLarge(n) => (
                OutcomeKind::Limit,
                format!(
                    "rule `{rule}`: output is {n} bytes, over `limits.max_output_bytes` ({}); return less or raise the limit in rule.toml",
                    limits.max_output_bytes
                ),
            ),
            RunError::Output(msg) => (OutcomeKind::InvalidOutput, format!("rule `{rule}`: {msg}")),
            RunError::InputTooLarge(n) => (
                OutcomeKind::Limit,
                format!(
                    "rule `{rule}`: input is {n} bytes, over `limits.max_input_bytes` ({}); raise the limit in rule.toml",
                    limits.max_input_bytes
                ),
            ),
            RunError::Wasm(_) if limit_hit.is_some() => {
                let (msg, key) = limit_hit.unwrap_or_default();
                (OutcomeKind::Limit, format!("rule `{rule}`: {msg}; raise `{key}` in rule.toml or use less"))
            }
            RunError::Wasm(err) => match err.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => (
                    OutcomeKind::OutOfFuel,
                    format!("rule `{rule}` ran out of fuel ({}); raise `limits.fuel` in rule.toml or simplify the rule", limits.fuel),
                ),
                Some(Trap::Interrupt) => (
                    OutcomeKind::Timeout,
                    format!(
                        "rule `{rule}` ran past the host's deadline of {} ms with at least {fuel_used} of its {} fuel used (wasmtime counts a loop's fuel only at its calls); fuel, not the clock, should end an evaluation: the machine stalled, or the rule loops over bulk-memory instructions that fuel does not price by length; simplify the rule",
                        self.deadline.as_millis(),
                        limits.fuel
                    ),
                ),
                Some(trap) => (OutcomeKind::Trap, format!("rule `{rule}` trapped: {trap}")),
                None => (OutcomeKind::Trap, format!("rule `{rule}`: {err:#}")),
            },
        }
    }
}

impl Prepared {
    /// Scores one sample (its JSON encoding) in a fresh instance restored to the prepared
    /// state. Fuel and deadline are per sample.
    pub fn evaluate(&self, sample_json: &[u8], output_range: [f64; 2]) -> Evaluation {
        let start = Instant::now();
        let rule = &self.rule;
        let mut live = match rule.instantiate() {
            Ok(live) => live,
            Err((e, store)) => {
                let (outcome, msg) = rule.classify_error(&e, store.data().limiter.hit.clone(), 0);
                return Evaluation::failed(outcome, format!("while instantiating: {msg}"), 0, start.elapsed().as_micros() as u64);
            }
        };
        if let Err(e) = self.restore(&mut live) {
            let msg = format!("rule `{}`: restoring the prepared state failed: {e:#}", rule.rule);
            return Evaluation::failed(OutcomeKind::Trap, msg, 0, start.elapsed().as_micros() as u64);
        }
        rule.evaluate_live(&mut live, sample_json, output_range, start)
    }

    /// Puts the snapshot into a fresh instance: memory size, the changed bytes, the globals.
    fn restore(&self, live: &mut Live) -> wasmtime::Result<()> {
        let s = &self.snapshot;
        let pages = live.memory.size(&live.store);
        if s.memory_pages > pages {
            live.memory.grow(&mut live.store, s.memory_pages - pages)?;
        }
        let memory = live.memory.data_mut(&mut live.store);
        for (offset, bytes) in &s.runs {
            memory[*offset..*offset + bytes.len()].copy_from_slice(bytes);
        }
        for (global, value) in live.globals.iter().zip(&s.globals) {
            global.set(&mut live.store, *value)?;
        }
        Ok(())
    }

    /// Bytes of memory the snapshot restores per evaluation (for the benchmark and tests).
    pub fn restored_bytes(&self) -> usize {
        self.snapshot.runs.iter().map(|(_, b)| b.len()).sum()
    }
}

/// A rule's prepared state for one prepare document, kept between runs so that a long-lived
/// scorer runs `medrl_prepare` once per rule instead of once per run (for the shipped `risk`,
/// preparing costs as much as dozens of evaluations). Only a successful prepare is kept.
pub struct PreparedCache {
    slot: Mutex<Option<Prepared>>,
}

impl PreparedCache {
    /// Whether a prepared state is kept.
    pub fn is_prepared(&self) -> bool {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// The host pages of `memory` that are mapped or swapped out, from `/proc/self/pagemap`: the
/// only ones whose bytes can differ from what the slot's original mapping gives (a fresh
/// instance's memory). `None` where the page map cannot be read; then every page is compared.
fn touched_pages(memory: &[u8]) -> Option<TouchedPages> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::FileExt;
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok().filter(|p| p.is_power_of_two())?;
        let start = memory.as_ptr() as usize / page;
        let count = memory.len().div_ceil(page);
        let mut entries = vec![0u8; count * 8];
        let file = std::fs::File::open("/proc/self/pagemap").ok()?;
        file.read_exact_at(&mut entries, (start * 8) as u64).ok()?;
        // Bit 63: present; bit 62: swapped (see the kernel's admin-guide/mm/pagemap.rst).
        let touched = entries.chunks_exact(8).map(|e| u64::from_le_bytes(e.try_into().expect("8 bytes")) & (0b11 << 62) != 0).collect();
        Some(TouchedPages { page, base: memory.as_ptr() as usize % page, touched })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = memory;
        None
    }
}

struct TouchedPages {
    page: usize,
    /// Offset of the memory's first byte within its host page.
    base: usize,
    touched: Vec<bool>,
}

impl TouchedPages {
    /// Whether the chunk of [`SNAPSHOT_CHUNK`] bytes at `offset` lies on a touched page.
    fn contains(&self, offset: usize) -> bool {
        let (first, last) = ((self.base + offset) / self.page, (self.base + offset + SNAPSHOT_CHUNK - 1) / self.page);
        (first..=last).any(|p| self.touched.get(p).copied().unwrap_or(true))
    }
}

/// Ticks of [`EPOCH_TICK`] in `deadline`, at least one, and saturating far below the epoch
/// counter's range (wasmtime adds it to the current epoch unchecked; a `u64::MAX` there would
/// wrap into an instant timeout).
fn deadline_ticks(deadline: Duration) -> u64 {
    let ticks = deadline.as_millis() / EPOCH_TICK.as_millis();
    u64::try_from(ticks).unwrap_or(u64::MAX).clamp(1, 1 << 48)
}

/// Gives the store a fresh fuel budget and deadline for one guest call.
fn arm(store: &mut Store<StoreState>, fuel: u64, deadline: Duration) {
    store.set_fuel(fuel).expect("fuel is enabled in the engine config");
    store.set_epoch_deadline(deadline_ticks(deadline));
}

#[derive(Clone, Copy)]
enum Phase {
    Prepare,
    Evaluate,
}

/// `medrl_alloc(len)`, copy `input` in, call the phase's function on `(ptr, len)`.
fn call_with_input(live: &mut Live, phase: Phase, input: &[u8], limits: SandboxLimits) -> Result<i64, RunError> {
    if input.len() > limits.max_input_bytes as usize {
        return Err(RunError::InputTooLarge(input.len()));
    }
    let len = input.len() as i32;
    let ptr = live.alloc.call(&mut live.store, len)?;
    live.memory
        .write(&mut live.store, ptr as u32 as usize, input)
        .map_err(|_| RunError::Output(format!("medrl_alloc returned {ptr}, outside memory for {len} bytes")))?;
    let func = match phase {
        Phase::Prepare => &live.prepare,
        Phase::Evaluate => &live.evaluate,
    };
    Ok(func.call(&mut live.store, (ptr, len))?)
}

/// The packed `(ptr << 32) | len` output, within the output cap, borrowed from guest memory
/// (the host parses it in place; nothing runs in the guest until the borrow ends).
fn read_output(live: &Live, packed: i64, limits: SandboxLimits) -> Result<&[u8], RunError> {
    let packed = packed as u64;
    let (out_ptr, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
    if out_len > limits.max_output_bytes as usize {
        return Err(RunError::OutputTooLarge(out_len));
    }
    live.memory
        .data(&live.store)
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

fn classify_output(rule: &str, bytes: &[u8], range: [f64; 2], fuel_used: u64, elapsed_us: u64) -> Evaluation {
    let invalid = |msg: String| Evaluation::failed(OutcomeKind::InvalidOutput, format!("rule `{rule}`: {msg}"), fuel_used, elapsed_us);
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
    //! Hostile modules, each ending in its typed outcome within its limit or refused at load
    //! (the end-to-end suite is `tests/e2e/hostile_modules.rs`).
    use super::*;
    use crate::reward::testutil::{constant_rule, return_data, wat_rule, wat_rule_with};

    fn limits() -> SandboxLimits {
        SandboxLimits { fuel: 5_000_000, memory_pages: 16, timeout_ms: 2_000, ..Default::default() }
    }

    const PREPARE: &[u8] = br#"{"abi":"medrl-rule/1","params":{}}"#;
    const PATH: &str = "rules/t/1.0.0/rule.wasm";

    fn compile(sandbox: &Sandbox, module: &[u8], limits: SandboxLimits) -> Result<CompiledRule, ModuleError> {
        sandbox.compile("t@1.0.0", Path::new(PATH), module, limits)
    }

    fn run(module: &[u8], limits: SandboxLimits) -> Evaluation {
        let sandbox = Sandbox::new(1).unwrap();
        compile(&sandbox, module, limits).unwrap().evaluate_one(PREPARE, br#"{"id":"s"}"#, [0.0, 1.0])
    }

    /// The refusal of `module`, checked to name the rule and its file.
    fn refusal(module: &[u8], limits: SandboxLimits) -> ModuleError {
        let err = compile(&Sandbox::new(1).unwrap(), module, limits).err().expect("refused at load");
        let msg = err.to_string();
        assert!(msg.contains("t@1.0.0") && msg.contains(PATH), "{msg}");
        err
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
        let msg = eval.error.unwrap();
        assert!(msg.contains("limits.fuel") && msg.contains("t@1.0.0"), "{msg}");
    }

    #[test]
    fn infinite_loop_with_ample_fuel_hits_the_host_deadline() {
        let host = HostLimits { max_fuel: u64::MAX, timeout_ms: 50, ..HostLimits::default() };
        let sandbox = Sandbox::with_limits(1, host).unwrap();
        let l = SandboxLimits { fuel: u64::MAX / 2, timeout_ms: 50, ..limits() };
        let rule = compile(&sandbox, &wat_rule("(loop $l br $l) unreachable", "", ""), l).unwrap();
        let eval = rule.evaluate_one(PREPARE, b"{}", [0.0, 1.0]);
        assert_eq!(eval.outcome, OutcomeKind::Timeout, "{eval:?}");
        // The deadline is a backstop, not a precise timer: far below the 5 s a hang would show.
        assert!(eval.elapsed_us < 5_000_000, "{eval:?}");
        assert!(eval.error.unwrap().contains("deadline of 50 ms"));
    }

    #[test]
    fn a_rule_keeps_its_deadline_after_the_sandbox_is_gone() {
        let host = HostLimits { max_fuel: u64::MAX, timeout_ms: 50, ..HostLimits::default() };
        let l = SandboxLimits { fuel: u64::MAX / 2, timeout_ms: 50, ..limits() };
        let rule = compile(&Sandbox::with_limits(1, host).unwrap(), &wat_rule("(loop $l br $l) unreachable", "", ""), l).unwrap();
        assert_eq!(rule.evaluate_one(PREPARE, b"{}", [0.0, 1.0]).outcome, OutcomeKind::Timeout);
    }

    #[test]
    fn deadline_arithmetic_saturates() {
        assert_eq!(deadline_ticks(Duration::ZERO), 1);
        assert_eq!(deadline_ticks(Duration::from_millis(1000)), 1000);
        assert_eq!(deadline_ticks(Duration::from_millis(u64::MAX)), 1 << 48);
        assert_eq!(deadline_ticks(Duration::MAX), 1 << 48);
    }

    #[test]
    fn a_host_deadline_of_u64_max_never_fires_early() {
        // An operator's "no deadline" must not wrap into an instant timeout: fuel ends it.
        let host = HostLimits { timeout_ms: u64::MAX, ..HostLimits::default() };
        let rule = compile(&Sandbox::with_limits(1, host).unwrap(), &wat_rule("(loop $l br $l) unreachable", "", ""), limits()).unwrap();
        assert_eq!(rule.evaluate_one(PREPARE, b"{}", [0.0, 1.0]).outcome, OutcomeKind::OutOfFuel);
    }

    #[test]
    fn limits_over_the_host_ceilings_are_refused_at_load_with_the_fix() {
        let module = constant_rule(r#"{"score":0.5,"applicable":true}"#);
        for (l, key) in [
            (SandboxLimits { fuel: 1 << 62, ..limits() }, "limits.fuel"),
            (SandboxLimits { timeout_ms: u64::MAX, ..limits() }, "limits.timeout_ms"),
            (SandboxLimits { max_output_bytes: u32::MAX, ..limits() }, "limits.max_output_bytes"),
        ] {
            let err = refusal(&module, l);
            let msg = err.to_string();
            assert!(matches!(err.fault(), Some(ModuleFault::OverCeiling(r)) if r.limit == key), "{msg}");
            assert!(msg.contains("ceiling") && msg.contains("rule.toml"), "{msg}");
        }
    }

    #[test]
    fn memory_grow_bomb_hits_the_limit() {
        let bomb = "(loop $l (drop (memory.grow (i32.const 16))) br $l) unreachable";
        let eval = run(&wat_rule(bomb, "", ""), limits());
        assert_eq!(eval.outcome, OutcomeKind::Limit, "{eval:?}");
        assert!(eval.error.unwrap().contains("limits.memory_pages"));
    }

    #[test]
    fn an_importing_module_is_refused_before_it_runs() {
        let module = wat_rule("i64.const 0", "", r#"(import "env" "clock" (func (result i64)))"#);
        let err = refusal(&module, limits());
        assert!(matches!(err.fault(), Some(ModuleFault::HasImports { .. })), "{err}");
        assert!(err.to_string().contains("`env::clock`"), "{err}");
    }

    #[test]
    fn initial_memory_and_tables_over_the_limits_are_refused_at_load() {
        let module = wat::parse_str(
            r#"(module (memory (export "memory") 17)
                 (func (export "medrl_alloc") (param i32) (result i32) i32.const 0)
                 (func (export "medrl_prepare") (param i32 i32) (result i64) i64.const 0)
                 (func (export "medrl_evaluate") (param i32 i32) (result i64) i64.const 0)
                 (@custom "medrl:abi" "medrl-rule/1"))"#,
        )
        .unwrap();
        let err = refusal(&module, limits());
        assert!(err.to_string().contains("starts at 17, over `limits.memory_pages` (16)"), "{err}");
        let table = wat_rule("i64.const 0", "", "(table 20000 funcref)");
        assert!(refusal(&table, limits()).to_string().contains("limits.table_elements"));
    }

    #[test]
    fn a_module_that_changes_tables_is_refused() {
        let module = wat_rule("(drop (table.grow (ref.null func) (i32.const 1))) i64.const 0", "", "(table 1 funcref)");
        let err = refusal(&module, limits());
        assert!(matches!(err.fault(), Some(ModuleFault::Unrestorable { .. })), "{err}");
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
        let l = SandboxLimits { max_input_bytes: 8, ..limits() };
        let rule = compile(&Sandbox::new(1).unwrap(), &constant_rule(r#"{"score":0.5,"applicable":true}"#), l).unwrap();
        let prepared = rule.prepare(b"{}").ok().unwrap();
        let eval = prepared.evaluate(&[b' '; 9], [0.0, 1.0]);
        assert_eq!((eval.outcome, eval.fuel_used), (OutcomeKind::Limit, 0));
        assert_eq!(prepared.evaluate(b"{}", [0.0, 1.0]).outcome, OutcomeKind::Ok);
    }

    #[test]
    fn a_trap_does_not_touch_the_next_sample() {
        // Traps when the sample is the single byte `T`, scores 0.5 otherwise.
        let body = "(if (i32.eq (i32.load8_u (local.get 0)) (i32.const 84)) (then unreachable)) i64.const 68719476767";
        let module = wat_rule(body, r#"{\"score\":0.5,\"applicable\":true}"#, "");
        let rule = compile(&Sandbox::new(1).unwrap(), &module, limits()).unwrap();
        let outcomes: Vec<OutcomeKind> = rule.evaluate_many(PREPARE, &[b"a", b"T", b"b", b"T", b"c"], [0.0, 1.0]).iter().map(|e| e.outcome).collect();
        use OutcomeKind::{Ok as Fine, Trap};
        assert_eq!(outcomes, [Fine, Trap, Fine, Trap, Fine]);
    }

    /// A deliberately stateful rule. `medrl_prepare` sets a counter in a global and one in
    /// memory to 10; each evaluation adds 1 to both and returns score 0.5 when both are then
    /// 11 (what an instance fresh from `medrl_prepare` sees) and 0.2 otherwise: on a kept
    /// instance, on one restored without the globals, or without the memory.
    pub(crate) fn counting_rule() -> Vec<u8> {
        let prepare = "(global.set $calls (i32.const 10)) (i32.store (i32.const 200) (i32.const 10)) i64.const 0";
        let evaluate = "(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
            (i32.store (i32.const 200) (i32.add (i32.load (i32.const 200)) (i32.const 1)))
            (if (result i64) (i32.and (i32.eq (global.get $calls) (i32.const 11)) (i32.eq (i32.load (i32.const 200)) (i32.const 11)))
              (then (i64.const 68719476767)) (else (i64.const 201863462943)))";
        // {"score":0.5,"applicable":true} at 16 and {"score":0.2,"applicable":true} at 47.
        let data = r#"{\"score\":0.5,\"applicable\":true}{\"score\":0.2,\"applicable\":true}"#;
        wat_rule_with(evaluate, data, "(global $calls (mut i32) (i32.const 0))", prepare)
    }

    fn scores(evals: &[Evaluation]) -> Vec<Option<f64>> {
        evals.iter().map(|e| e.output.as_ref().map(|o| o.score)).collect()
    }

    #[test]
    fn every_sample_scores_as_a_fresh_instance_would() {
        let rule = compile(&Sandbox::new(1).unwrap(), &counting_rule(), limits()).unwrap();
        let fresh = rule.evaluate_one(PREPARE, b"a", [0.0, 1.0]);
        assert_eq!(fresh.output.as_ref().map(|o| o.score), Some(0.5), "{fresh:?}");
        let samples: [&[u8]; 40] = [b"a"; 40];
        let many = rule.evaluate_many(PREPARE, &samples, [0.0, 1.0]);
        assert!(many.iter().all(|e| (e.outcome, &e.output, e.fuel_used) == (fresh.outcome, &fresh.output, fresh.fuel_used)), "{:?}", scores(&many));
        // Runs from a cache: prepared once, kept, and still fresh for every sample.
        let cache = rule.prepared_cache();
        assert!(!cache.is_prepared());
        for _ in 0..3 {
            assert_eq!(scores(&rule.evaluate_cached(&cache, PREPARE, &samples[..5], [0.0, 1.0])), [Some(0.5); 5]);
            assert!(cache.is_prepared());
        }
    }

    #[test]
    fn the_snapshot_holds_only_what_prepare_changed() {
        let rule = compile(&Sandbox::new(1).unwrap(), &counting_rule(), limits()).unwrap();
        // Two pages changed: the counter at 200 and the prepare document the host copied in at
        // 4096 (the allocator's start); the data at 16 was there already, the rest is zero.
        assert_eq!(rule.prepare(PREPARE).ok().unwrap().restored_bytes(), 2 * SNAPSHOT_CHUNK);
    }

    #[test]
    fn the_same_out_of_fuel_sample_ends_the_same_way_every_time() {
        let rule = compile(&Sandbox::new(1).unwrap(), &wat_rule("(loop $l br $l) unreachable", "", ""), SandboxLimits { fuel: 100_000, ..limits() })
            .unwrap();
        let samples: [&[u8]; 100] = [b"x"; 100];
        let evals = rule.evaluate_many(PREPARE, &samples, [0.0, 1.0]);
        assert!(evals.iter().all(|e| (e.outcome, e.fuel_used) == (OutcomeKind::OutOfFuel, 100_000)), "{evals:?}");
    }

    #[test]
    fn a_failed_prepare_fails_every_sample_with_its_reason() {
        let data = r#"{\"error\":\"invalid parameters: order_penalty must be in [0, 1]\"}"#;
        let module = wat_rule_with("unreachable", data, "", &return_data(data.len() - 10));
        let rule = compile(&Sandbox::new(1).unwrap(), &module, limits()).unwrap();
        let evals = rule.evaluate_many(PREPARE, &[b"a", b"b"], [0.0, 1.0]);
        assert!(evals.iter().all(|e| e.outcome == OutcomeKind::RuleError), "{evals:?}");
        assert!(evals[0].error.as_deref().unwrap().contains("order_penalty"), "{evals:?}");
        let trapping = wat_rule_with("i64.const 0", "", "", "unreachable");
        let rule = compile(&Sandbox::new(1).unwrap(), &trapping, limits()).unwrap();
        let eval = rule.evaluate_one(PREPARE, b"a", [0.0, 1.0]);
        assert_eq!(eval.outcome, OutcomeKind::Trap);
        assert!(eval.error.unwrap().starts_with("while preparing"));
    }

    #[test]
    fn abi_section_is_required_and_versioned() {
        let no_abi = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
        assert!(matches!(refusal(&no_abi, limits()).fault(), Some(ModuleFault::MissingAbi)));
        let v2 = wat::parse_str(r#"(module (memory 1) (@custom "medrl:abi" "medrl-rule/2"))"#).unwrap();
        let err = refusal(&v2, limits()).to_string();
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
        assert!(refusal(&module, limits()).to_string().contains("medrl_alloc"));
    }

    #[test]
    fn exporting_the_globals_changes_only_the_export_section() {
        let module = counting_rule();
        let shape = inspect_module(&module, &limits(), &HostLimits::default()).unwrap();
        // $calls is declared in `extra` before the allocator's $bump.
        assert_eq!(shape.mutable_globals, [0, 1]);
        let instrumented = export_mutable_globals(&module, &shape.mutable_globals).unwrap();
        let exports = |bytes: &[u8]| -> Vec<String> {
            let mut names = Vec::new();
            for payload in wasmparser::Parser::new(0).parse_all(bytes) {
                if let wasmparser::Payload::ExportSection(r) = payload.unwrap() {
                    names.extend(r.into_iter().map(|e| e.unwrap().name.to_string()));
                }
            }
            names
        };
        let (before, after) = (exports(&module), exports(&instrumented));
        assert_eq!(after[..before.len()], before[..]);
        assert_eq!(after[before.len()..], ["medrl:snapshot-global:0", "medrl:snapshot-global:1"]);
        assert_eq!(instrumented.len() - module.len(), after[before.len()..].iter().map(|n| n.len() + 3).sum::<usize>());
    }

    #[test]
    fn the_fuel_calibration_runs_each_probe_to_the_end_of_its_fuel() {
        let probes = Sandbox::new(1).unwrap().calibrate_fuel(100_000);
        assert_eq!(probes.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["branch", "i64.div_u", "load/store", "call"]);
        assert!(probes.iter().all(|(_, d)| *d > Duration::ZERO && *d < Duration::from_secs(5)), "{probes:?}");
    }
}
