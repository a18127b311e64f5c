//! A test fixture, not a judge to use: a plugin that declares the host's ABI
//! (`medrl-judge/1`) and then lies in the buffers it returns, written against the raw symbols
//! (the SDK's macro would never produce these buffers). The host must refuse each lie with an
//! error naming the plugin and the value, without reading or allocating what the lie asks for
//! (`core/src/reward/plugin.rs` tests).
//!
//! `params.lie` (from the rule set's `judge.params`) picks what `score` returns:
//! - `"honest"`: a valid `{"score": 0.5, …}` (the control: the host accepts it);
//! - `"huge_length"`: status OK, a real 31-byte buffer, and a length of 2^36;
//! - `"null_pointer"`: status OK, a null pointer with a length of 31;
//! - `"not_utf8"`: status OK, JSON whose explanation holds the bytes FF FE;
//! - `"huge_error"`: status ERROR, the error buffer with a length of 2^36.
//!
//! Every buffer is static, so `free` has nothing to release whatever length comes back.

use medrl_sdk::plugin::{JUDGE_ABI_VERSION, JudgeBuffer, JudgeConfig, STATUS_ERROR, STATUS_OK};
use std::os::raw::{c_char, c_void};

static HONEST: &[u8] = br#"{"score":0.5,"explanation":"x"}"#;
static NOT_UTF8: &[u8] = b"{\"score\":0.5,\"explanation\":\"\xFF\xFE\"}";
static ERROR: &[u8] = br#"{"error":"a lie"}"#;
/// 2^36: a length no 64 KiB output limit allows, and whose copy would need 64 GiB.
const HUGE: usize = 1 << 36;

#[derive(Clone, Copy)]
enum Lie {
    Honest,
    HugeLength,
    NullPointer,
    NotUtf8,
    HugeError,
}

fn buffer(bytes: &'static [u8], len: usize) -> JudgeBuffer {
    JudgeBuffer { ptr: bytes.as_ptr() as *mut u8, len }
}

#[unsafe(no_mangle)]
pub extern "C" fn medrl_judge_abi_version() -> *const c_char {
    // The host's own version, NUL-terminated.
    static VERSION: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| std::ffi::CString::new(JUDGE_ABI_VERSION).expect("no NUL in the version")).as_ptr()
}

/// # Safety
/// The host's side of the ABI: `config` readable for `config_len` bytes, `handle` and `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medrl_judge_create(config: *const u8, config_len: usize, handle: *mut *mut c_void, out: *mut JudgeBuffer) -> i32 {
    // SAFETY: ABI contract, as above.
    let bytes = unsafe { std::slice::from_raw_parts(config, config_len) };
    let config: JudgeConfig = serde_json::from_slice(bytes).expect("the host sends a JudgeConfig");
    let lie = match config.params["lie"].as_str() {
        Some("honest") => Lie::Honest,
        Some("huge_length") => Lie::HugeLength,
        Some("null_pointer") => Lie::NullPointer,
        Some("not_utf8") => Lie::NotUtf8,
        Some("huge_error") => Lie::HugeError,
        other => panic!("unknown lie {other:?}"),
    };
    // SAFETY: ABI contract, as above.
    unsafe {
        handle.write(Box::into_raw(Box::new(lie)) as *mut c_void);
        out.write(JudgeBuffer::EMPTY);
    }
    STATUS_OK
}

/// # Safety
/// `handle` came from `medrl_judge_create`; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medrl_judge_score(handle: *mut c_void, _sample: *const u8, _sample_len: usize, out: *mut JudgeBuffer) -> i32 {
    // SAFETY: a live handle from create.
    let lie = unsafe { *(handle as *const Lie) };
    let (status, buf) = match lie {
        Lie::Honest => (STATUS_OK, buffer(HONEST, HONEST.len())),
        Lie::HugeLength => (STATUS_OK, buffer(HONEST, HUGE)),
        Lie::NullPointer => (STATUS_OK, JudgeBuffer { ptr: std::ptr::null_mut(), len: HONEST.len() }),
        Lie::NotUtf8 => (STATUS_OK, buffer(NOT_UTF8, NOT_UTF8.len())),
        Lie::HugeError => (STATUS_ERROR, buffer(ERROR, HUGE)),
    };
    // SAFETY: `out` is writable (ABI contract).
    unsafe { out.write(buf) };
    status
}

/// Every buffer is static: nothing to release.
#[unsafe(no_mangle)]
pub extern "C" fn medrl_judge_free(_ptr: *mut u8, _len: usize) {}

/// # Safety
/// `handle` came from `medrl_judge_create` and is destroyed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn medrl_judge_destroy(handle: *mut c_void) {
    if !handle.is_null() {
        // SAFETY: made by Box::into_raw in create.
        drop(unsafe { Box::from_raw(handle as *mut Lie) });
    }
}
