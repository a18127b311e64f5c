//! The guest side of the ABI: the JSON work around a rule author's functions, the guest heap,
//! and [`export_rule!`](crate::export_rule), which emits the exports and the `medrl:abi` section.
//!
//! A rule has two phases. `prepare` turns the parameters into whatever the rule wants to reuse
//! (parsed tables, normalised keyword sets) once per instance; `evaluate` scores one sample
//! against that state. The host reuses an instance for a run of samples, and the heap is reset
//! to the mark left by `prepare` before each sample, so every evaluation starts from the same
//! memory state: its output and its fuel are the same whether it runs first in a fresh instance
//! or hundredth in a reused one (the host checks this on every load, see `docs/sandbox.md`).
//!
//! The same functions run natively (the rule crate's tests and the native benchmark) and inside
//! WebAssembly, so a golden vector that passes natively passes in the sandbox too.

use crate::abi::{ABI_VERSION, GuestError, RuleInput, RuleOutput, Sample};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The document the host passes to `medrl_prepare`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareInput<P> {
    /// Always [`ABI_VERSION`].
    pub abi: String,
    /// Manifest defaults merged with the rule set's overrides.
    pub params: P,
    /// The rule's memory limit in 64 KiB pages; the guest reserves its heap up to it once, so
    /// evaluations never grow memory (and never differ in fuel because an earlier one did).
    #[serde(default)]
    pub memory_pages: u32,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialising plain structs of strings and numbers cannot fail")
}

/// An encoded [`GuestError`].
pub fn error_json(error: String) -> Vec<u8> {
    encode(&GuestError { error })
}

fn check_abi(abi: &str) -> Result<(), String> {
    if abi == ABI_VERSION {
        Ok(())
    } else {
        Err(format!("input speaks ABI `{abi}`, this rule speaks `{ABI_VERSION}`"))
    }
}

/// Decodes a [`PrepareInput`] and runs the rule's `prepare`; the error is an encoded [`GuestError`].
pub fn prepare_json<P, S, F>(input: &[u8], prepare: F) -> Result<(S, u32), Vec<u8>>
where
    P: DeserializeOwned,
    F: FnOnce(P) -> Result<S, String>,
{
    let input: PrepareInput<P> =
        serde_json::from_slice(input).map_err(|e| error_json(format!("cannot decode the rule parameters: {e}")))?;
    check_abi(&input.abi).map_err(error_json)?;
    let state = prepare(input.params).map_err(|e| error_json(format!("invalid parameters: {e}")))?;
    Ok((state, input.memory_pages))
}

/// Decodes one [`Sample`] and scores it against the prepared state.
pub fn evaluate_prepared_json<S, F>(state: &S, sample: &[u8], evaluate: F) -> Vec<u8>
where
    F: FnOnce(&Sample, &S) -> RuleOutput,
{
    // One UTF-8 check of the whole document, then a `&str` reader that does not re-check each
    // string: measured at ~13 % of a cheap rule's instructions inside WebAssembly otherwise.
    let decoded = std::str::from_utf8(sample)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str::<Sample>(text).map_err(|e| e.to_string()));
    match decoded {
        Ok(sample) => encode(&evaluate(&sample, state)),
        Err(e) => error_json(format!("cannot decode the sample: {e}")),
    }
}

/// One-shot: decodes a whole [`RuleInput`] (`abi`, `params`, `sample`), prepares and evaluates.
/// Golden-vector tests use this path.
pub fn run_json<P, S, FP, FE>(input: &[u8], prepare: FP, evaluate: FE) -> Vec<u8>
where
    P: DeserializeOwned,
    FP: FnOnce(P) -> Result<S, String>,
    FE: FnOnce(&Sample, &S) -> RuleOutput,
{
    let input: RuleInput<P> = match serde_json::from_slice(input) {
        Ok(input) => input,
        Err(e) => return error_json(format!("cannot decode the rule input: {e}")),
    };
    if let Err(e) = check_abi(&input.abi) {
        return error_json(e);
    }
    match prepare(input.params) {
        Ok(state) => encode(&evaluate(&input.sample, &state)),
        Err(e) => error_json(format!("invalid parameters: {e}")),
    }
}

/// The identity `prepare`, for rules that use their parameters as they are.
pub fn keep_params<P>(params: P) -> Result<P, String> {
    Ok(params)
}

/// A value the guest keeps between calls. WebAssembly guests are single-threaded, so a plain
/// cell is enough; the `Sync` claim is sound only there, which is why this type is wasm-only.
#[cfg(target_arch = "wasm32")]
pub struct GuestCell<T>(core::cell::UnsafeCell<T>);

#[cfg(target_arch = "wasm32")]
unsafe impl<T> Sync for GuestCell<T> {}

#[cfg(target_arch = "wasm32")]
impl<T: Copy> GuestCell<T> {
    pub const fn new(value: T) -> Self {
        GuestCell(core::cell::UnsafeCell::new(value))
    }
    pub fn get(&self) -> T {
        // SAFETY: single-threaded guest; no reference to the contents ever escapes.
        unsafe { *self.0.get() }
    }
    pub fn set(&self, value: T) {
        // SAFETY: as above.
        unsafe { *self.0.get() = value }
    }
}

/// The guest heap: a bump allocator that `prepare` marks and every `medrl_alloc` resets to the
/// mark, so each evaluation starts from identical allocator state. It is also faster than a
/// general allocator for a short-lived evaluation that frees everything at the end.
#[cfg(target_arch = "wasm32")]
pub mod heap {
    use super::GuestCell;
    use core::alloc::{GlobalAlloc, Layout};
    use core::arch::wasm32;

    const PAGE: usize = 65536;
    static NEXT: GuestCell<usize> = GuestCell::new(0);
    static END: GuestCell<usize> = GuestCell::new(0);
    static MARK: GuestCell<usize> = GuestCell::new(0);

    /// Grows memory so that `END >= need`; false when the host refuses.
    fn grow_to(need: usize) -> bool {
        if NEXT.get() == 0 {
            let start = wasm32::memory_size(0) * PAGE;
            NEXT.set(start);
            END.set(start);
        }
        if need <= END.get() {
            return true;
        }
        let pages = (need - END.get()).div_ceil(PAGE);
        if wasm32::memory_grow(0, pages) == usize::MAX {
            return false;
        }
        END.set(END.get() + pages * PAGE);
        true
    }

    /// Reserves memory up to `pages` in total (called once by `medrl_prepare`).
    pub fn reserve_total_pages(pages: usize) {
        let have = wasm32::memory_size(0);
        if pages > have {
            grow_to(END.get().max(have * PAGE) + (pages - have) * PAGE);
        }
    }

    /// Everything allocated so far (the prepared state) stays; later allocations start here.
    pub fn set_mark() {
        if NEXT.get() == 0 {
            grow_to(0);
        }
        MARK.set(NEXT.get());
    }

    /// Frees everything allocated since the mark. A no-op before `prepare` set one.
    pub fn reset_to_mark() {
        if MARK.get() != 0 {
            NEXT.set(MARK.get());
        }
    }

    pub struct Heap;

    unsafe impl GlobalAlloc for Heap {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if NEXT.get() == 0 && !grow_to(0) {
                return core::ptr::null_mut();
            }
            let start = NEXT.get().next_multiple_of(layout.align());
            let end = start + layout.size();
            if !grow_to(end) {
                return core::ptr::null_mut();
            }
            NEXT.set(end);
            start as *mut u8
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // Memory below END may hold an earlier evaluation's bytes: zero it explicitly.
            let ptr = unsafe { self.alloc(layout) };
            if !ptr.is_null() {
                unsafe { core::ptr::write_bytes(ptr, 0, layout.size()) };
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // Only the most recent allocation can be given back.
            if ptr as usize + layout.size() == NEXT.get() {
                NEXT.set(ptr as usize);
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // Growing the most recent allocation happens in place (a growing Vec or String).
            if ptr as usize + layout.size() == NEXT.get() {
                let end = ptr as usize + new_size;
                if grow_to(end) {
                    NEXT.set(end);
                    return ptr;
                }
                return core::ptr::null_mut();
            }
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            }
            new
        }
    }
}

/// Turns a rule into a `medrl-rule/1` module.
///
/// ```ignore
/// // Parameters used as they are:
/// fn evaluate(sample: &medrl_sdk::Sample, params: &Params) -> medrl_sdk::RuleOutput { … }
/// medrl_sdk::export_rule!(evaluate, Params);
///
/// // Or with a prepare step that builds reusable state once per instance:
/// fn prepare(params: Params) -> Result<State, String> { … }
/// fn evaluate(sample: &medrl_sdk::Sample, state: &State) -> medrl_sdk::RuleOutput { … }
/// medrl_sdk::export_rule!(evaluate, Params, prepare, State);
/// ```
///
/// On every target this defines `evaluate_json` (one-shot `{abi, params, sample}` → output),
/// `prepare_json` and `evaluate_prepared_json` (the two phases, for native benchmarks). On
/// `wasm32` it also installs the guest heap, exports `medrl_alloc`, `medrl_prepare` and
/// `medrl_evaluate`, and writes the `medrl:abi` custom section.
#[macro_export]
macro_rules! export_rule {
    ($evaluate:path, $params:ty) => {
        $crate::export_rule!($evaluate, $params, $crate::guest::keep_params::<$params>, $params);
    };
    ($evaluate:path, $params:ty, $prepare:path, $state:ty) => {
        /// One-shot evaluation of a JSON `RuleInput` (`abi`, `params`, `sample`).
        pub fn evaluate_json(input: &[u8]) -> ::std::vec::Vec<u8> {
            $crate::guest::run_json::<$params, $state, _, _>(input, $prepare, $evaluate)
        }

        /// Phase one: decode `{abi, params, memory_pages}` and prepare the rule's state.
        pub fn prepare_json(input: &[u8]) -> ::std::result::Result<$state, ::std::vec::Vec<u8>> {
            $crate::guest::prepare_json::<$params, $state, _>(input, $prepare).map(|(state, _)| state)
        }

        /// Phase two: score one JSON `Sample` against a prepared state.
        pub fn evaluate_prepared_json(state: &$state, sample: &[u8]) -> ::std::vec::Vec<u8> {
            $crate::guest::evaluate_prepared_json(state, sample, $evaluate)
        }

        #[cfg(target_arch = "wasm32")]
        mod __medrl_rule_exports {
            #[allow(unused_imports)]
            use super::*;
            use $crate::guest::{GuestCell, heap};

            #[global_allocator]
            static HEAP: heap::Heap = heap::Heap;

            #[used]
            #[unsafe(link_section = "medrl:abi")]
            static MEDRL_ABI: [u8; 12] = *b"medrl-rule/1";

            /// Address of the leaked prepared state; 0 until `medrl_prepare` succeeds.
            static STATE: GuestCell<usize> = GuestCell::new(0);

            fn pack(out: ::std::vec::Vec<u8>) -> i64 {
                let (ptr, len) = (out.as_ptr() as u32, out.len() as u32);
                ::std::mem::forget(out);
                ((ptr as i64) << 32) | len as i64
            }

            /// Resets the heap to the mark (after `medrl_prepare`) and reserves `len` bytes.
            #[unsafe(no_mangle)]
            pub extern "C" fn medrl_alloc(len: i32) -> i32 {
                heap::reset_to_mark();
                let mut buf = ::std::vec::Vec::<u8>::with_capacity(len.max(0) as usize);
                let ptr = buf.as_mut_ptr();
                ::std::mem::forget(buf);
                ptr as i32
            }

            /// Returns 0 on success, else a packed `{"error": …}`.
            #[unsafe(no_mangle)]
            pub extern "C" fn medrl_prepare(ptr: i32, len: i32) -> i64 {
                // SAFETY: the host wrote `len` bytes at `ptr`, from `medrl_alloc(len)`.
                let input = unsafe { ::std::slice::from_raw_parts(ptr as *const u8, len as usize) };
                match $crate::guest::prepare_json::<$params, $state, _>(input, $prepare) {
                    Ok((state, memory_pages)) => {
                        STATE.set(::std::boxed::Box::into_raw(::std::boxed::Box::new(state)) as usize);
                        heap::reserve_total_pages(memory_pages as usize);
                        heap::set_mark();
                        0
                    }
                    Err(error) => pack(error),
                }
            }

            #[unsafe(no_mangle)]
            pub extern "C" fn medrl_evaluate(ptr: i32, len: i32) -> i64 {
                // SAFETY: as in `medrl_prepare`.
                let input = unsafe { ::std::slice::from_raw_parts(ptr as *const u8, len as usize) };
                let out = match STATE.get() {
                    0 => $crate::guest::error_json("medrl_evaluate called before medrl_prepare".into()),
                    addr => {
                        // SAFETY: `addr` is the leaked Box<$state> built by `medrl_prepare`; it
                        // lives as long as the instance and is never mutated.
                        let state: &$state = unsafe { &*(addr as *const $state) };
                        super::evaluate_prepared_json(state, input)
                    }
                };
                pack(out)
            }
        }
    };
}

// The section literal in `export_rule!` must match the ABI constant; a compile-time check keeps
// the two from drifting.
const _: () = {
    let a = ABI_VERSION.as_bytes();
    let b = b"medrl-rule/1";
    assert!(a.len() == b.len());
    let mut i = 0;
    while i < a.len() {
        assert!(a[i] == b[i]);
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(sample: &Sample, params: &serde_json::Value) -> RuleOutput {
        RuleOutput::score(params["s"].as_f64().unwrap_or(0.0), sample.id.clone())
    }

    const SAMPLE: &str = r#"{"id":"x","prompt":"","response":"","lang":"en","category":"general","risk":"low"}"#;

    #[test]
    fn one_shot_round_trip_and_errors() {
        let input = format!(r#"{{"abi":"medrl-rule/1","sample":{SAMPLE},"params":{{"s":0.5}}}}"#);
        let out: RuleOutput = serde_json::from_slice(&run_json(input.as_bytes(), keep_params, echo)).unwrap();
        assert_eq!((out.score, out.explanation.as_str()), (0.5, "x"));

        let wrong_abi = format!(r#"{{"abi":"medrl-rule/2","sample":{SAMPLE},"params":{{}}}}"#);
        let err: GuestError = serde_json::from_slice(&run_json(wrong_abi.as_bytes(), keep_params, echo)).unwrap();
        assert!(err.error.contains("medrl-rule/2"), "{}", err.error);

        let err: GuestError = serde_json::from_slice(&run_json(b"not json", keep_params, echo)).unwrap();
        assert!(err.error.starts_with("cannot decode"), "{}", err.error);
    }

    #[test]
    fn two_phases_match_one_shot() {
        let (state, pages) =
            prepare_json::<serde_json::Value, _, _>(br#"{"abi":"medrl-rule/1","params":{"s":0.25},"memory_pages":16}"#, keep_params).unwrap();
        assert_eq!(pages, 16);
        let out: RuleOutput = serde_json::from_slice(&evaluate_prepared_json(&state, SAMPLE.as_bytes(), echo)).unwrap();
        assert_eq!(out.score, 0.25);
        let failing = |_: serde_json::Value| -> Result<(), String> { Err("threshold must be positive".into()) };
        let err = prepare_json(br#"{"abi":"medrl-rule/1","params":{}}"#, failing).err().unwrap();
        let err: GuestError = serde_json::from_slice(&err).unwrap();
        assert_eq!(err.error, "invalid parameters: threshold must be positive");
    }
}
