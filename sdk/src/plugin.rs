//! The native judge plugin ABI (`medrl-judge/1`), shared by the host loader
//! (`medrl::reward::plugin`) and every judge plugin (a `cdylib` loaded with `dlopen`).
//!
//! A judge scores what rules cannot see (tone, clarity) with a model, so it cannot be a pure,
//! import-free WebAssembly rule: it is a native library, trusted by its sha256 pin in the rule
//! set, not by a sandbox. Only C types and UTF-8 JSON cross the boundary, never a Rust type, so
//! a plugin built with another rustc or another version of this crate stays loadable as long as
//! it speaks the same ABI version.
//!
//! # Exported symbols
//!
//! | symbol | signature | what |
//! |---|---|---|
//! | [`SYMBOL_ABI_VERSION`] | `fn() -> *const c_char` | the ABI the plugin speaks, e.g. `medrl-judge/1` |
//! | [`SYMBOL_CREATE`] | `fn(config, config_len, *mut handle, *mut JudgeBuffer) -> i32` | build a judge from a [`JudgeConfig`] |
//! | [`SYMBOL_SCORE`] | `fn(handle, sample, sample_len, *mut JudgeBuffer) -> i32` | score one [`Sample`] → [`JudgeOutput`] |
//! | [`SYMBOL_FREE`] | `fn(ptr, len)` | release a buffer the plugin returned |
//! | [`SYMBOL_DESTROY`] | `fn(handle)` | release a judge |
//!
//! The host reads the ABI version first, before looking up any other symbol, and refuses a
//! plugin of another version with a message naming both.
//!
//! # Status codes
//!
//! `create` and `score` return [`STATUS_OK`], [`STATUS_ERROR`] (the plugin reported a failure:
//! the buffer holds `{"error": "…"}`) or [`STATUS_PANIC`] (the plugin panicked; the panic was
//! caught on the plugin's side and the buffer holds `{"error": "panic: …"}`). A panic never
//! unwinds across the boundary: [`export_judge!`] wraps every entry point in `catch_unwind`.
//! (So a plugin must be built with `panic = "unwind"`, the default; with `abort` a panic ends
//! the host process.)
//!
//! # Buffer ownership
//!
//! - The version string is a static of the plugin, NUL-terminated; valid while the library is
//!   loaded; the host never frees it.
//! - `config` and `sample` bytes belong to the host and are valid only during the call; the
//!   plugin copies what it keeps.
//! - The `handle` written by a successful `create` belongs to the plugin. The host passes it to
//!   `score` (never from two threads at once: the host serialises calls, so a plugin need not be
//!   thread safe) and releases it with exactly one `destroy`, before unloading the library.
//! - Every [`JudgeBuffer`] `create` or `score` writes (output or error) was allocated by the
//!   plugin, holds UTF-8 JSON, and must be released exactly once with that same plugin's
//!   `free(ptr, len)`; never with the host's allocator. `free(null, 0)` does nothing.

use crate::Sample;
use serde::{Deserialize, Serialize};
use std::ffi::CStr;
use std::os::raw::{c_char, c_void};

/// The ABI this SDK speaks.
pub const JUDGE_ABI_VERSION: &str = "medrl-judge/1";
/// [`JUDGE_ABI_VERSION`] as the NUL-terminated string the version symbol returns.
pub const JUDGE_ABI_VERSION_C: &CStr = c"medrl-judge/1";

pub const SYMBOL_ABI_VERSION: &str = "medrl_judge_abi_version";
pub const SYMBOL_CREATE: &str = "medrl_judge_create";
pub const SYMBOL_SCORE: &str = "medrl_judge_score";
pub const SYMBOL_FREE: &str = "medrl_judge_free";
pub const SYMBOL_DESTROY: &str = "medrl_judge_destroy";

/// The call succeeded; the buffer (if the call writes one) holds its output.
pub const STATUS_OK: i32 = 0;
/// The plugin reported a failure; the buffer holds `{"error": "…"}`.
pub const STATUS_ERROR: i32 = 1;
/// The plugin panicked (caught on its side); the buffer holds `{"error": "panic: …"}`.
pub const STATUS_PANIC: i32 = 2;

/// A byte buffer allocated by the plugin (see the module doc for who frees it).
#[repr(C)]
#[derive(Debug)]
pub struct JudgeBuffer {
    pub ptr: *mut u8,
    pub len: usize,
}

impl JudgeBuffer {
    pub const EMPTY: JudgeBuffer = JudgeBuffer { ptr: std::ptr::null_mut(), len: 0 };
}

pub type AbiVersionFn = unsafe extern "C" fn() -> *const c_char;
pub type CreateFn = unsafe extern "C" fn(config: *const u8, config_len: usize, handle: *mut *mut c_void, out: *mut JudgeBuffer) -> i32;
pub type ScoreFn = unsafe extern "C" fn(handle: *mut c_void, sample: *const u8, sample_len: usize, out: *mut JudgeBuffer) -> i32;
pub type FreeFn = unsafe extern "C" fn(ptr: *mut u8, len: usize);
pub type DestroyFn = unsafe extern "C" fn(handle: *mut c_void);

/// Parses `medrl-judge/<major>` into its major version.
pub fn parse_judge_abi_major(version: &str) -> Option<u32> {
    version.strip_prefix("medrl-judge/")?.parse().ok()
}

/// The document `create` receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// Always [`JUDGE_ABI_VERSION`].
    pub abi: String,
    /// `id@version` of the plugin as the rule set names it.
    pub plugin: String,
    /// The rule set's `judge.params`, as written there.
    pub params: serde_json::Value,
    /// Absolute path of the registry root: where relative paths in `params` are resolved.
    pub registry_root: String,
}

/// What `score` returns for one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeOutput {
    /// Finite, in `[0, 1]`; higher is better.
    pub score: f64,
    /// Why, in words (for the judge of this repository: the rating distribution).
    pub explanation: String,
}

/// A judge: one trait impl and [`export_judge!`] make a plugin.
///
/// The host calls [`Judge::score`] on one judge from one thread at a time, so an
/// implementation may keep mutable, non-thread-safe state (a model, a cache).
pub trait Judge: Sized {
    /// Builds the judge (loads its model); `Err` names what is wrong with the config.
    fn create(config: &JudgeConfig) -> Result<Self, String>;
    /// Scores one sample.
    fn score(&mut self, sample: &Sample) -> Result<JudgeOutput, String>;
}

/// The glue [`export_judge!`] expands to; not for direct use.
#[doc(hidden)]
pub mod guest {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
        match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(payload) => payload.downcast::<&'static str>().map(|s| s.to_string()).unwrap_or_else(|_| "(no message)".into()),
        }
    }

    /// Hands `bytes` to the host as a plugin-owned buffer (released by [`free`]).
    fn give(bytes: Vec<u8>, out: *mut JudgeBuffer) {
        let boxed: Box<[u8]> = bytes.into_boxed_slice();
        let len = boxed.len();
        let ptr = Box::into_raw(boxed) as *mut u8;
        if !out.is_null() {
            // SAFETY: the host passes a valid, writable JudgeBuffer (ABI contract).
            unsafe { out.write(JudgeBuffer { ptr, len }) };
        } else {
            // Nobody to hand it to: release it at once.
            // SAFETY: ptr/len come from Box::into_raw of a boxed slice just above.
            unsafe { free(ptr, len) };
        }
    }

    fn error_json(msg: &str) -> Vec<u8> {
        serde_json::to_vec(&crate::abi::GuestError { error: msg.to_string() }).expect("a string always serialises")
    }

    /// Runs `f`, catching a panic; returns the status and the bytes for the buffer.
    fn guarded(f: impl FnOnce() -> Result<Vec<u8>, String>) -> (i32, Vec<u8>) {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(bytes)) => (STATUS_OK, bytes),
            Ok(Err(msg)) => (STATUS_ERROR, error_json(&msg)),
            Err(payload) => (STATUS_PANIC, error_json(&format!("panic: {}", panic_message(payload)))),
        }
    }

    /// # Safety
    /// `config` points to `config_len` readable bytes; `handle` and `out` are writable.
    pub unsafe fn create<J: Judge>(config: *const u8, config_len: usize, handle: *mut *mut c_void, out: *mut JudgeBuffer) -> i32 {
        // SAFETY: guaranteed by the caller (ABI contract); an empty config is a null pointer.
        let bytes: &[u8] = if config.is_null() { &[] } else { unsafe { std::slice::from_raw_parts(config, config_len) } };
        let mut made: Option<*mut c_void> = None;
        let (status, body) = guarded(|| {
            let config: JudgeConfig =
                serde_json::from_slice(bytes).map_err(|e| format!("the judge config is not a {JUDGE_ABI_VERSION} config document: {e}"))?;
            if config.abi != JUDGE_ABI_VERSION {
                return Err(format!("the host sent a config for ABI {}, this plugin speaks {JUDGE_ABI_VERSION}", config.abi));
            }
            let judge = J::create(&config)?;
            made = Some(Box::into_raw(Box::new(judge)) as *mut c_void);
            Ok(Vec::new())
        });
        if let Some(ptr) = made {
            // SAFETY: the host passes a writable handle slot (ABI contract).
            unsafe { handle.write(ptr) };
        }
        if status != STATUS_OK {
            give(body, out);
        } else if !out.is_null() {
            // SAFETY: as above.
            unsafe { out.write(JudgeBuffer::EMPTY) };
        }
        status
    }

    /// # Safety
    /// `handle` came from [`create`] with the same `J` and is not used concurrently; `sample`
    /// points to `sample_len` readable bytes; `out` is writable.
    pub unsafe fn score<J: Judge>(handle: *mut c_void, sample: *const u8, sample_len: usize, out: *mut JudgeBuffer) -> i32 {
        // SAFETY: guaranteed by the caller (ABI contract).
        let bytes: &[u8] = if sample.is_null() { &[] } else { unsafe { std::slice::from_raw_parts(sample, sample_len) } };
        let (status, body) = guarded(|| {
            if handle.is_null() {
                return Err("score called with a null handle".into());
            }
            // SAFETY: a live handle from `create::<J>`, used from one thread at a time.
            let judge = unsafe { &mut *(handle as *mut J) };
            let sample: Sample = serde_json::from_slice(bytes).map_err(|e| format!("the sample is not a medrl sample document: {e}"))?;
            let output = judge.score(&sample)?;
            Ok(serde_json::to_vec(&output).expect("an output always serialises"))
        });
        give(body, out);
        status
    }

    /// # Safety
    /// `ptr`/`len` came from a buffer this plugin returned, released once; or null.
    pub unsafe fn free(ptr: *mut u8, len: usize) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: `ptr`/`len` are a boxed slice made by `give` (ABI contract).
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
    }

    /// # Safety
    /// `handle` came from [`create`] with the same `J`, is destroyed once and not used after.
    pub unsafe fn destroy<J: Judge>(handle: *mut c_void) {
        if handle.is_null() {
            return;
        }
        // A panicking Drop must not unwind into the host either.
        // SAFETY: a live handle from `create::<J>`.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(handle as *mut J) })));
    }
}

/// Exports a [`Judge`] implementation as a `medrl-judge/1` plugin: the five C symbols of the
/// module doc. Put it once in the plugin crate (crate-type `cdylib`).
///
/// ```ignore
/// struct Polite;
/// impl medrl_sdk::plugin::Judge for Polite { /* create, score */ }
/// medrl_sdk::export_judge!(Polite);
/// ```
#[macro_export]
macro_rules! export_judge {
    ($judge:ty) => {
        $crate::export_judge!(@abi $crate::plugin::JUDGE_ABI_VERSION_C, $judge);
    };
    // Stamps another ABI version into the library: only for the host's tests of its refusal
    // of other ABI versions (a plugin that claims a version must speak it).
    (@abi $abi:expr, $judge:ty) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn medrl_judge_abi_version() -> *const ::std::os::raw::c_char {
            let abi: &'static ::std::ffi::CStr = $abi;
            abi.as_ptr()
        }

        /// # Safety
        /// See the `medrl-judge/1` ABI in `medrl_sdk::plugin`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn medrl_judge_create(
            config: *const u8,
            config_len: usize,
            handle: *mut *mut ::std::os::raw::c_void,
            out: *mut $crate::plugin::JudgeBuffer,
        ) -> i32 {
            unsafe { $crate::plugin::guest::create::<$judge>(config, config_len, handle, out) }
        }

        /// # Safety
        /// See the `medrl-judge/1` ABI in `medrl_sdk::plugin`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn medrl_judge_score(
            handle: *mut ::std::os::raw::c_void,
            sample: *const u8,
            sample_len: usize,
            out: *mut $crate::plugin::JudgeBuffer,
        ) -> i32 {
            unsafe { $crate::plugin::guest::score::<$judge>(handle, sample, sample_len, out) }
        }

        /// # Safety
        /// See the `medrl-judge/1` ABI in `medrl_sdk::plugin`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn medrl_judge_free(ptr: *mut u8, len: usize) {
            unsafe { $crate::plugin::guest::free(ptr, len) }
        }

        /// # Safety
        /// See the `medrl-judge/1` ABI in `medrl_sdk::plugin`.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn medrl_judge_destroy(handle: *mut ::std::os::raw::c_void) {
            unsafe { $crate::plugin::guest::destroy::<$judge>(handle) }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c_string_is_the_version() {
        assert_eq!(JUDGE_ABI_VERSION_C.to_str().unwrap(), JUDGE_ABI_VERSION);
        assert_eq!(parse_judge_abi_major(JUDGE_ABI_VERSION), Some(1));
        assert_eq!(parse_judge_abi_major("medrl-rule/1"), None);
    }

    /// Scores by response length; panics on a response of "panic".
    struct Len;
    impl Judge for Len {
        fn create(config: &JudgeConfig) -> Result<Self, String> {
            if config.params.get("fail").is_some() { Err("asked to fail".into()) } else { Ok(Len) }
        }
        fn score(&mut self, sample: &Sample) -> Result<JudgeOutput, String> {
            if sample.response == "panic" {
                panic!("boom");
            }
            Ok(JudgeOutput { score: (sample.response.len() as f64 / 10.0).min(1.0), explanation: "length".into() })
        }
    }

    fn take(buf: &JudgeBuffer) -> String {
        let text = unsafe { String::from_utf8_lossy(std::slice::from_raw_parts(buf.ptr, buf.len)).into_owned() };
        unsafe { guest::free(buf.ptr, buf.len) };
        text
    }

    #[test]
    fn the_glue_returns_outputs_errors_and_caught_panics() {
        let config = |params: serde_json::Value| {
            serde_json::to_vec(&JudgeConfig { abi: JUDGE_ABI_VERSION.into(), plugin: "len@1.0.0".into(), params, registry_root: "/".into() }).unwrap()
        };
        let mut handle: *mut c_void = std::ptr::null_mut();
        let mut out = JudgeBuffer::EMPTY;
        let bad = config(serde_json::json!({"fail": true}));
        assert_eq!(unsafe { guest::create::<Len>(bad.as_ptr(), bad.len(), &mut handle, &mut out) }, STATUS_ERROR);
        assert!(handle.is_null());
        assert_eq!(take(&out), r#"{"error":"asked to fail"}"#);

        let good = config(serde_json::json!({}));
        assert_eq!(unsafe { guest::create::<Len>(good.as_ptr(), good.len(), &mut handle, &mut out) }, STATUS_OK);
        assert!(!handle.is_null() && out.ptr.is_null());
        let sample = |response: &str| {
            serde_json::to_vec(&serde_json::json!({"id":"a","prompt":"p","response":response,"lang":"en","category":"general","risk":"low"})).unwrap()
        };
        let s = sample("hello");
        assert_eq!(unsafe { guest::score::<Len>(handle, s.as_ptr(), s.len(), &mut out) }, STATUS_OK);
        assert_eq!(take(&out), r#"{"score":0.5,"explanation":"length"}"#);
        let s = sample("panic");
        assert_eq!(unsafe { guest::score::<Len>(handle, s.as_ptr(), s.len(), &mut out) }, STATUS_PANIC);
        assert_eq!(take(&out), r#"{"error":"panic: boom"}"#);
        let s = b"not json";
        assert_eq!(unsafe { guest::score::<Len>(handle, s.as_ptr(), s.len(), &mut out) }, STATUS_ERROR);
        assert!(take(&out).contains("not a medrl sample document"));
        unsafe { guest::destroy::<Len>(handle) };
    }
}
