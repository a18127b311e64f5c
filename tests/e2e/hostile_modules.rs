//! Hostile rule modules (issue 14): each written in WAT, compiled here, written to a real
//! registry-shaped folder and loaded from there into the real wasmtime sandbox, and each either
//! contained (a typed outcome, the rule named in the message, the next sample untouched) or
//! refused at load (the rule, its file and the fix named). Small fuel ceilings keep the suite
//! to seconds.

use medrl::registry::limits::{HostLimits, SandboxLimits};
use medrl::reward::sandbox::{CompiledRule, ModuleError};
use medrl::reward::{Evaluation, OutcomeKind, Sandbox};
use std::path::PathBuf;

const PREPARE: &[u8] = br#"{"abi":"medrl-rule/1","params":{},"memory_pages":16}"#;
const RANGE: [f64; 2] = [0.0, 1.0];
/// `{"score":0.5,"applicable":true}`, 31 bytes at address 16: what a well-behaved call returns.
const OK_OUTPUT: &str = "i64.const 68719476767";

/// The ceilings of this suite: a small fuel ceiling so every runaway ends in milliseconds.
fn host() -> HostLimits {
    HostLimits { max_fuel: 10_000_000, timeout_ms: 10_000, ..HostLimits::default() }
}

fn limits() -> SandboxLimits {
    SandboxLimits { fuel: 2_000_000, memory_pages: 16, timeout_ms: 1_000, ..SandboxLimits::default() }
}

/// Bodies of a module's three ABI functions, its extra declarations and its memory.
struct Wat<'a> {
    alloc: &'a str,
    prepare: &'a str,
    evaluate: &'a str,
    extra: &'a str,
    memory: &'a str,
}

impl Default for Wat<'_> {
    fn default() -> Self {
        Wat { alloc: "i32.const 4096", prepare: "i64.const 0", evaluate: OK_OUTPUT, extra: "", memory: "1" }
    }
}

impl Wat<'_> {
    fn module(&self) -> Vec<u8> {
        let Wat { alloc, prepare, evaluate, extra, memory } = self;
        let text = format!(
            r#"(module
  {extra}
  (memory (export "memory") {memory})
  (data (i32.const 16) "{{\"score\":0.5,\"applicable\":true}}")
  (func (export "medrl_alloc") (param i32) (result i32) {alloc})
  (func (export "medrl_prepare") (param i32 i32) (result i64) {prepare})
  (func (export "medrl_evaluate") (param i32 i32) (result i64) {evaluate})
  (@custom "medrl:abi" "medrl-rule/1"))"#
        );
        wat::parse_str(&text).unwrap_or_else(|e| panic!("bad WAT: {e}\n{text}"))
    }
}

/// A registry-shaped folder holding one module file per rule.
struct Registry {
    dir: tempfile::TempDir,
}

impl Registry {
    fn new() -> Self {
        Registry { dir: tempfile::tempdir().unwrap() }
    }

    /// Writes `module` to `rules/<id>/1.0.0/rule.wasm` and loads it from there.
    fn load(&self, id: &str, module: &[u8], limits: SandboxLimits) -> (Result<CompiledRule, ModuleError>, PathBuf) {
        let path = self.dir.path().join(format!("rules/{id}/1.0.0/rule.wasm"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, module).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let sandbox = Sandbox::with_limits(1, host()).unwrap();
        (sandbox.compile(&format!("{id}@1.0.0"), &path, &bytes, limits), path)
    }

    /// Loads and asserts the module is contained: it loads, `outcome` ends the evaluation with
    /// the rule named, and a well-behaved sample of the same run is unaffected.
    fn contained(&self, id: &str, wat: &Wat, outcome: OutcomeKind) -> Evaluation {
        let (rule, _) = self.load(id, &wat.module(), limits());
        let rule = rule.unwrap_or_else(|e| panic!("{id} must load: {e}"));
        let eval = rule.evaluate_one(PREPARE, b"{}", RANGE);
        assert_eq!(eval.outcome, outcome, "{id}: {eval:?}");
        let msg = eval.error.clone().unwrap_or_default();
        assert!(msg.contains(&format!("{id}@1.0.0")), "{id}: the message names the rule: {msg}");
        eval
    }

    /// Loads and asserts the module is refused at load, naming the rule, its file and `fix`.
    fn refused(&self, id: &str, module: &[u8], limits: SandboxLimits, fix: &str) -> String {
        let (rule, path) = self.load(id, module, limits);
        let msg = rule.err().unwrap_or_else(|| panic!("{id} must be refused")).to_string();
        for needle in [format!("{id}@1.0.0"), path.display().to_string(), fix.to_string()] {
            assert!(msg.contains(&needle), "{id}: the refusal lacks `{needle}`: {msg}");
        }
        msg
    }
}

const LOOP: &str = "(loop $l br $l) unreachable";

#[test]
fn infinite_loops_in_every_export_run_out_of_fuel() {
    let reg = Registry::new();
    for (id, wat) in [
        ("loop-evaluate", Wat { evaluate: LOOP, ..Wat::default() }),
        ("loop-prepare", Wat { prepare: LOOP, ..Wat::default() }),
        ("loop-alloc", Wat { alloc: LOOP, ..Wat::default() }),
    ] {
        let eval = reg.contained(id, &wat, OutcomeKind::OutOfFuel);
        assert_eq!(eval.fuel_used, limits().fuel, "{id}: out of fuel uses exactly the budget");
        assert!(eval.error.unwrap().contains("limits.fuel"), "{id}: the fix");
    }
    // A start function runs at instantiation, under the same fuel.
    let start = Wat { extra: "(func $spin (loop $l br $l)) (start $spin)", ..Wat::default() };
    reg.contained("loop-start", &start, OutcomeKind::OutOfFuel);
}

#[test]
fn an_out_of_fuel_sample_ends_the_same_way_a_hundred_times() {
    let reg = Registry::new();
    let (rule, _) = reg.load("loop", &Wat { evaluate: LOOP, ..Wat::default() }.module(), limits());
    let samples: Vec<&[u8]> = vec![b"{}"; 100];
    let evals = rule.unwrap().evaluate_many(PREPARE, &samples, RANGE);
    assert!(evals.iter().all(|e| (e.outcome, e.fuel_used) == (OutcomeKind::OutOfFuel, limits().fuel)), "{evals:?}");
}

#[test]
fn deep_recursion_traps_on_the_stack_limit() {
    let wat = Wat { extra: "(func $down (call $down))", evaluate: "call $down unreachable", ..Wat::default() };
    let eval = Registry::new().contained("recursion", &wat, OutcomeKind::Trap);
    assert!(eval.error.unwrap().contains("stack"), "a stack overflow, not another trap");
}

#[test]
fn a_loop_that_fuel_does_not_price_hits_the_host_deadline() {
    // memory.fill costs one unit of fuel whatever its length: with fuel to spare, only the
    // wall-clock backstop stops it.
    let reg = Registry::new();
    let fill = "(loop $l (memory.fill (i32.const 0) (i32.const 0) (i32.const 65536)) br $l) unreachable";
    let module = Wat { evaluate: fill, ..Wat::default() }.module();
    let path = reg.dir.path().join("fill.wasm");
    std::fs::write(&path, &module).unwrap();
    let host = HostLimits { max_fuel: u64::MAX, timeout_ms: 200, ..HostLimits::default() };
    let l = SandboxLimits { fuel: 1 << 50, timeout_ms: 200, ..limits() };
    let rule = Sandbox::with_limits(1, host).unwrap().compile("fill@1.0.0", &path, &module, l).unwrap();
    let eval = rule.evaluate_one(PREPARE, b"{}", RANGE);
    assert_eq!(eval.outcome, OutcomeKind::Timeout, "{eval:?}");
    assert!(eval.elapsed_us < 5_000_000, "the backstop fired near its 200 ms: {eval:?}");
    assert!(eval.error.unwrap().contains("fill@1.0.0"));
}

#[test]
fn memory_bombs_are_contained_or_refused() {
    let reg = Registry::new();
    let grow = Wat { evaluate: "(loop $l (drop (memory.grow (i32.const 1))) br $l) unreachable", ..Wat::default() };
    let eval = reg.contained("grow-loop", &grow, OutcomeKind::Limit);
    assert!(eval.error.unwrap().contains("limits.memory_pages"));
    // A declared maximum far above the limit is only a ceiling the limiter never lets it reach.
    let huge_max = Wat { memory: "1 65536", evaluate: "(drop (memory.grow (i32.const 1000))) unreachable", ..Wat::default() };
    reg.contained("huge-max", &huge_max, OutcomeKind::Limit);
    // An initial memory over the limit could never run: refused before anything runs.
    let huge_initial = Wat { memory: "60000", ..Wat::default() };
    reg.refused("huge-initial", &huge_initial.module(), limits(), "raise `limits.memory_pages`");
}

#[test]
fn table_bombs_are_refused() {
    let reg = Registry::new();
    let big = Wat { extra: "(table 5000000 funcref)", ..Wat::default() };
    reg.refused("big-table", &big.module(), limits(), "raise `limits.table_elements`");
    let growing =
        Wat { extra: "(table 1 funcref)", evaluate: "(drop (table.grow (ref.null func) (i32.const 100000))) unreachable", ..Wat::default() };
    reg.refused("table-grow", &growing.module(), limits(), "must not change tables");
}

#[test]
fn modules_with_any_import_are_refused() {
    let reg = Registry::new();
    for (id, import) in [
        ("wasi", r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#),
        ("clock", r#"(import "env" "now" (func (result i64)))"#),
        ("global-import", r#"(import "env" "seed" (global i64))"#),
    ] {
        let msg = reg.refused(id, &Wat { extra: import, ..Wat::default() }.module(), limits(), "remove the imports");
        assert!(msg.contains("import nothing"), "{msg}");
    }
}

#[test]
fn bad_outputs_are_contained() {
    let reg = Registry::new();
    let at_16 = |len: usize| format!("i64.const {}", (16i64 << 32) | len as i64);
    // Invalid UTF-8: write 0xff 0xfe over the output's first bytes.
    let utf8 = format!("(i32.store16 (i32.const 16) (i32.const 0xfeff)) {}", at_16(31));
    reg.contained("invalid-utf8", &Wat { evaluate: &utf8, ..Wat::default() }, OutcomeKind::InvalidOutput);
    // Not JSON: the first 9 bytes, `{"score":`.
    reg.contained("not-json", &Wat { evaluate: &at_16(9), ..Wat::default() }, OutcomeKind::InvalidOutput);
    // Out of range: `0.5` becomes `7.5`.
    let range = format!("(i32.store8 (i32.const 25) (i32.const 55)) {OK_OUTPUT}");
    let eval = reg.contained("out-of-range", &Wat { evaluate: &range, ..Wat::default() }, OutcomeKind::InvalidOutput);
    assert!(eval.error.unwrap().contains("outside output_range"));
    // A span that points past the end of memory.
    let outside = format!("i64.const {}", (65530i64 << 32) | 100);
    reg.contained("outside-memory", &Wat { evaluate: &outside, ..Wat::default() }, OutcomeKind::InvalidOutput);
    // A length of 4 GiB − 1: over the output cap, refused before a byte is read.
    let huge = format!("i64.const {}", (16i64 << 32) | 0xffff_ffff);
    let eval = reg.contained("huge-length", &Wat { evaluate: &huge, ..Wat::default() }, OutcomeKind::Limit);
    assert!(eval.error.unwrap().contains("max_output_bytes"));
}

#[test]
fn traps_are_contained() {
    let reg = Registry::new();
    reg.contained("unreachable", &Wat { evaluate: "unreachable", ..Wat::default() }, OutcomeKind::Trap);
    let div = format!("(drop (i32.div_u (i32.const 1) (i32.const 0))) {OK_OUTPUT}");
    reg.contained("div-zero", &Wat { evaluate: &div, ..Wat::default() }, OutcomeKind::Trap);
    let oob = format!("(drop (i32.load (i32.const 70000))) {OK_OUTPUT}");
    reg.contained("out-of-bounds", &Wat { evaluate: &oob, ..Wat::default() }, OutcomeKind::Trap);
}

#[test]
fn state_kept_in_globals_or_memory_never_reaches_the_next_sample() {
    // Each evaluation adds 1 to a counter in a global and one in memory, which `medrl_prepare`
    // set to 10, and scores 0.5 only when both read 11 (a fresh, prepared instance); else the
    // 5 becomes a 2. The red team's rule changed its scores after a few calls this way.
    let evaluate = r#"(global.set $n (i32.add (global.get $n) (i32.const 1)))
        (i32.store (i32.const 200) (i32.add (i32.load (i32.const 200)) (i32.const 1)))
        (if (i32.eqz (i32.and (i32.eq (global.get $n) (i32.const 11)) (i32.eq (i32.load (i32.const 200)) (i32.const 11))))
          (then (i32.store8 (i32.const 27) (i32.const 50))))
        i64.const 68719476767"#;
    let wat = Wat {
        extra: "(global $n (mut i32) (i32.const 0))",
        prepare: "(global.set $n (i32.const 10)) (i32.store (i32.const 200) (i32.const 10)) i64.const 0",
        evaluate,
        ..Wat::default()
    };
    let (rule, _) = Registry::new().load("counter", &wat.module(), limits());
    let rule = rule.unwrap();
    let fresh = rule.evaluate_one(PREPARE, b"{}", RANGE);
    assert_eq!(fresh.output.as_ref().map(|o| o.score), Some(0.5), "{fresh:?}");
    let samples: Vec<&[u8]> = vec![b"{}"; 40];
    let run = rule.evaluate_many(PREPARE, &samples, RANGE);
    let differ = run.iter().filter(|e| (e.outcome, &e.output, e.fuel_used) != (fresh.outcome, &fresh.output, fresh.fuel_used)).count();
    assert_eq!(differ, 0, "every sample of the run scores as a fresh instance would: {run:?}");
}

#[test]
fn limits_over_the_host_ceilings_are_refused_at_load() {
    let reg = Registry::new();
    let module = Wat::default().module();
    for (id, l, asked) in [
        ("fuel-2-62", SandboxLimits { fuel: 1 << 62, ..limits() }, "`limits.fuel` = 4611686018427387904"),
        ("timeout-max", SandboxLimits { timeout_ms: u64::MAX, ..limits() }, "`limits.timeout_ms` = 18446744073709551615"),
        ("output-4gib", SandboxLimits { max_output_bytes: u32::MAX, ..limits() }, "`limits.max_output_bytes` = 4294967295"),
    ] {
        let msg = reg.refused(id, &module, l, "in rule.toml");
        assert!(msg.contains(asked) && msg.contains("over the host's ceiling"), "{msg}");
    }
}

#[test]
fn malformed_modules_are_refused_naming_the_rule_and_file() {
    let reg = Registry::new();
    let no_abi = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
    reg.refused("no-abi", &no_abi, limits(), "export_rule!");
    let wrong = Wat { extra: r#"(func (export "medrl:snapshot-global:0"))"#, ..Wat::default() };
    reg.refused("reserved-export", &wrong.module(), limits(), "rename the export");
    reg.refused("not-wasm", b"\0asm\x01\0\0\0garbage", limits(), "medrl rules build");
    let big = vec![0u8; (HostLimits::default().max_module_bytes + 1) as usize];
    reg.refused("too-big", &big, limits(), "shrink the rule");
}
