//! The native plugin loader: the LLM judge (`medrl-judge/1`, defined in `medrl_sdk::plugin`),
//! loaded with `dlopen`, pinned by sha256 in the rule set like a rule module, and **not
//! sandboxed** (see `docs/judge.md`).
//!
//! Loading, in this order, so nothing of a library runs before it is trusted:
//! 1. the library's bytes (read and hashed by the registry) are checked against the pin, size
//!    then sha256; a changed library is refused here, naming the file and both hashes;
//! 2. exactly those bytes are written to a private temporary folder and that copy is opened,
//!    so the file cannot be swapped between the hash and the `dlopen`;
//! 3. the ABI version symbol is read first; a plugin of another version is refused, naming
//!    both versions, before any other symbol is looked up or called;
//! 4. the other four symbols, then `create` with the JSON config.
//!
//! Calls into one plugin are serialised by a mutex: the model inside is not assumed to be
//! thread safe (the ABI promises plugins one caller at a time). Everything a plugin returns is
//! checked before the host reads or allocates by it: the ABI version string is read at most
//! [`MAX_VERSION_BYTES`] far; a buffer's length must be at most [`MAX_OUTPUT_BYTES`] and its
//! pointer non-null when the length is not 0, or the buffer is not read at all (a length of 2^36
//! would otherwise be copied into a 64 GiB allocation, and the process would abort); the bytes
//! must be UTF-8 JSON of exactly `{score, explanation}`, the score finite in `[0, 1]`. The host
//! cannot check that a non-null pointer points to as many readable bytes as claimed: that
//! remains the plugin's word (it is native code, trusted by its pin, see `docs/judge.md`).
//! Every failure becomes an [`Evaluation`] with a typed outcome that the judge's `on_error`
//! turns into a reward decision, as for a rule.
//!
//! A loaded library is never unloaded (its handle is destroyed, freeing the model, but the code
//! stays mapped until the process exits): a Rust `cdylib` may leave threads (a thread pool of
//! its numeric kernels) parked in its own code, and unmapping that code under them would crash
//! the host later, far from the cause.

use super::outcome::{Evaluation, OutcomeKind};
use crate::registry::hash::{json_sha256, sha256_hex};
use crate::registry::ruleset::{JudgeEntry, PinnedLibrary};
use crate::registry::store::VerifiedJudge;
use medrl_sdk::RuleOutput;
use medrl_sdk::plugin::{
    AbiVersionFn, CreateFn, DestroyFn, FreeFn, JUDGE_ABI_VERSION, JudgeBuffer, JudgeConfig, JudgeOutput, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
    SYMBOL_ABI_VERSION, SYMBOL_CREATE, SYMBOL_DESTROY, SYMBOL_FREE, SYMBOL_SCORE, ScoreFn,
};
use std::mem::ManuallyDrop;
use std::os::raw::c_void;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The largest buffer (output or error) a judge may return for one call; a longer one is not
/// read, and is `limit`.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// How far the ABI version string is read looking for its NUL (`medrl-judge/1` is 13 bytes).
pub const MAX_VERSION_BYTES: usize = 64;

/// How the rule result of a judge is named in a [`super::scorer::SampleScore`]:
/// `judge:<id>@<version>`.
pub const JUDGE_RESULT_PREFIX: &str = "judge:";

/// Why a plugin was not loaded. Each message names the library file.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "{path}: size is {actual} bytes but {pinned_by} pins {expected}; the library changed after it was pinned and was not loaded: restore the pinned build, or pin the new one in a new rule-set version"
    )]
    SizeMismatch { path: PathBuf, expected: u64, actual: u64, pinned_by: String },
    #[error(
        "{path}: sha256 is {actual} but {pinned_by} pins {expected}; the library changed after it was pinned and was not loaded: restore the pinned build, or pin the new one in a new rule-set version"
    )]
    HashMismatch { path: PathBuf, expected: String, actual: String, pinned_by: String },
    #[error("cannot stage {path} for loading: {source}")]
    Stage { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a loadable native library: {msg}")]
    Load { path: PathBuf, msg: String },
    #[error(
        "{path} does not export `{symbol}` ({msg}); a judge plugin exports the {JUDGE_ABI_VERSION} symbols: write them with medrl_sdk::export_judge!"
    )]
    MissingSymbol { path: PathBuf, symbol: &'static str, msg: String },
    #[error("{path}: `{SYMBOL_ABI_VERSION}` returned {what}, not an ABI version like {JUDGE_ABI_VERSION}")]
    BadVersion { path: PathBuf, what: String },
    #[error(
        "{path} is a plugin for ABI {found}, but this medrl supports {supported}; rebuild the plugin against a medrl-sdk that speaks {supported}"
    )]
    AbiMismatch { path: PathBuf, found: String, supported: &'static str },
    #[error("judge {reference} ({path}) refused its config: {msg}")]
    Create { reference: String, path: PathBuf, msg: String },
}

/// Checks `bytes` against `pin`: sha256 (so the message of any change names both hashes),
/// then size. Called before anything opens the library.
pub fn check_pin(bytes: &[u8], pin: &PinnedLibrary, path: &Path, pinned_by: &str) -> Result<(), PluginError> {
    let actual = sha256_hex(bytes);
    if actual != pin.sha256 {
        return Err(PluginError::HashMismatch { path: path.into(), expected: pin.sha256.clone(), actual, pinned_by: pinned_by.into() });
    }
    if bytes.len() as u64 != pin.size {
        return Err(PluginError::SizeMismatch { path: path.into(), expected: pin.size, actual: bytes.len() as u64, pinned_by: pinned_by.into() });
    }
    Ok(())
}

/// A judge handle, moved between threads only under [`JudgePlugin`]'s mutex.
struct Handle(*mut c_void);
// SAFETY: the handle is only used while the mutex is held, so one thread at a time calls the
// plugin with it, which is what the ABI asks of the host.
unsafe impl Send for Handle {}

/// A loaded, created judge plugin.
pub struct JudgePlugin {
    handle: Mutex<Handle>,
    score_fn: ScoreFn,
    free_fn: FreeFn,
    destroy_fn: DestroyFn,
    /// `id@version`.
    pub reference: String,
    /// sha256 of the library that was loaded (equal to the pin).
    pub library_sha256: String,
    /// The ABI the plugin declared (always [`JUDGE_ABI_VERSION`] once loaded).
    pub abi: String,
    /// The library in the registry, for messages.
    pub path: PathBuf,
    /// Never unloaded (see the module doc).
    _library: ManuallyDrop<libloading::Library>,
    /// The private folder of the loaded copy.
    _staged: tempfile::TempDir,
}

impl std::fmt::Debug for JudgePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgePlugin")
            .field("reference", &self.reference)
            .field("library_sha256", &self.library_sha256)
            .field("path", &self.path)
            .finish()
    }
}

impl JudgePlugin {
    /// Loads a verified judge of a rule set with the entry's params.
    pub fn load(judge: &VerifiedJudge) -> Result<Self, PluginError> {
        let config = JudgeConfig {
            abi: JUDGE_ABI_VERSION.into(),
            plugin: judge.entry.reference(),
            params: serde_json::Value::Object(judge.entry.params.clone()),
            registry_root: absolute(&judge.registry_root).to_string_lossy().into_owned(),
        };
        Self::load_pinned(&judge.library, &judge.entry.library, &judge.path, "the rule set's `judge.library`", &config)
    }

    /// Loads the library `bytes` (read from `path`) if they match `pin`, and creates the judge
    /// with `config`. See the module doc for the order of the checks.
    pub fn load_pinned(bytes: &[u8], pin: &PinnedLibrary, path: &Path, pinned_by: &str, config: &JudgeConfig) -> Result<Self, PluginError> {
        check_pin(bytes, pin, path, pinned_by)?;
        let staged = tempfile::Builder::new().prefix("medrl-plugin-").tempdir().map_err(|source| PluginError::Stage { path: path.into(), source })?;
        let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "plugin".into());
        let copy = staged.path().join(name);
        std::fs::write(&copy, bytes).map_err(|source| PluginError::Stage { path: copy.clone(), source })?;
        // SAFETY: loading runs the library's initialisers. That is the trust decision this
        // module exists for: these are exactly the bytes whose sha256 the rule set pins.
        let library = unsafe { libloading::Library::new(&copy) }.map_err(|e| PluginError::Load { path: path.into(), msg: e.to_string() })?;
        let library = ManuallyDrop::new(library);

        let missing = |symbol: &'static str| move |e: libloading::Error| PluginError::MissingSymbol { path: path.into(), symbol, msg: e.to_string() };
        // The version first: nothing else of a plugin of another ABI is looked up or called.
        // SAFETY: the symbol's type is the ABI's; a library that exports the name with another
        // type breaks the ABI it claims by exporting it.
        let version_fn: AbiVersionFn = *unsafe { library.get::<AbiVersionFn>(SYMBOL_ABI_VERSION.as_bytes()) }.map_err(missing(SYMBOL_ABI_VERSION))?;
        // SAFETY: as above; the ABI says the result is a static NUL-terminated string.
        let raw = unsafe { version_fn() };
        if raw.is_null() {
            return Err(PluginError::BadVersion { path: path.into(), what: "a null pointer".into() });
        }
        // SAFETY: non-null and, by the ABI, a static NUL-terminated string; read byte by byte
        // and never past MAX_VERSION_BYTES, so a string without its NUL is not followed on.
        let version = unsafe { read_c_string(raw, MAX_VERSION_BYTES) };
        let abi = match version.map(String::from_utf8) {
            Some(Ok(s)) => s,
            Some(Err(_)) => return Err(PluginError::BadVersion { path: path.into(), what: "bytes that are not UTF-8".into() }),
            None => {
                return Err(PluginError::BadVersion {
                    path: path.into(),
                    what: format!("a string with no NUL in its first {MAX_VERSION_BYTES} bytes"),
                });
            }
        };
        if medrl_sdk::plugin::parse_judge_abi_major(&abi).is_none() {
            return Err(PluginError::BadVersion { path: path.into(), what: format!("`{abi}`") });
        }
        if abi != JUDGE_ABI_VERSION {
            return Err(PluginError::AbiMismatch { path: path.into(), found: abi, supported: JUDGE_ABI_VERSION });
        }
        // SAFETY: as for the version symbol.
        let (create_fn, score_fn, free_fn, destroy_fn) = unsafe {
            (
                *library.get::<CreateFn>(SYMBOL_CREATE.as_bytes()).map_err(missing(SYMBOL_CREATE))?,
                *library.get::<ScoreFn>(SYMBOL_SCORE.as_bytes()).map_err(missing(SYMBOL_SCORE))?,
                *library.get::<FreeFn>(SYMBOL_FREE.as_bytes()).map_err(missing(SYMBOL_FREE))?,
                *library.get::<DestroyFn>(SYMBOL_DESTROY.as_bytes()).map_err(missing(SYMBOL_DESTROY))?,
            )
        };

        let config_json = serde_json::to_vec(config).expect("a config always serialises");
        let mut handle: *mut c_void = std::ptr::null_mut();
        let mut out = JudgeBuffer::EMPTY;
        // SAFETY: the config bytes outlive the call; `handle` and `out` are writable (ABI).
        let status = unsafe { create_fn(config_json.as_ptr(), config_json.len(), &mut handle, &mut out) };
        // SAFETY: `out` was written by this plugin's create (ABI); taken once.
        let body = unsafe { take_buffer(&out, free_fn) };
        let body = match body {
            Ok(body) => body,
            Err(bad) => return Err(PluginError::Create { reference: config.plugin.clone(), path: path.into(), msg: format!("create {bad}") }),
        };
        if status != STATUS_OK || handle.is_null() {
            let msg = match status {
                STATUS_PANIC => format!("it panicked: {}", error_text(&body)),
                STATUS_OK => "it returned no handle".to_string(),
                _ => error_text(&body),
            };
            return Err(PluginError::Create { reference: config.plugin.clone(), path: path.into(), msg });
        }
        Ok(JudgePlugin {
            handle: Mutex::new(Handle(handle)),
            score_fn,
            free_fn,
            destroy_fn,
            reference: config.plugin.clone(),
            library_sha256: pin.sha256.clone(),
            abi,
            path: path.into(),
            _library: library,
            _staged: staged,
        })
    }

    /// Scores one sample (its JSON encoding). Serialised: one call at a time per plugin.
    pub fn score(&self, sample_json: &[u8]) -> Evaluation {
        let start = std::time::Instant::now();
        let (status, body) = {
            // A poisoned lock means a host-side panic while calling; the handle is still valid.
            let handle = self.handle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut out = JudgeBuffer::EMPTY;
            // SAFETY: live handle, under the mutex; the sample bytes outlive the call.
            let status = unsafe { (self.score_fn)(handle.0, sample_json.as_ptr(), sample_json.len(), &mut out) };
            // SAFETY: `out` was written by this plugin's score (ABI); taken once.
            (status, unsafe { take_buffer(&out, self.free_fn) })
        };
        let elapsed_us = start.elapsed().as_micros() as u64;
        let failed = |kind, msg: String| Evaluation::failed(kind, format!("judge {}: {msg}", self.reference), 0, elapsed_us);
        let body = match body {
            Ok(body) => body,
            Err(bad @ BadBuffer::TooLong { .. }) => return failed(OutcomeKind::Limit, format!("score {bad}")),
            Err(bad) => return failed(OutcomeKind::InvalidOutput, format!("score {bad}")),
        };
        match status {
            STATUS_OK => {}
            STATUS_ERROR => return failed(OutcomeKind::RuleError, error_text(&body)),
            STATUS_PANIC => return failed(OutcomeKind::Trap, format!("the plugin panicked: {}", error_text(&body))),
            other => return failed(OutcomeKind::InvalidOutput, format!("unknown status {other} (the ABI has 0, 1, 2)")),
        }
        if let Err(e) = std::str::from_utf8(&body) {
            return failed(
                OutcomeKind::InvalidOutput,
                format!("output is not UTF-8 (invalid byte at offset {}); a judge returns UTF-8 JSON", e.valid_up_to()),
            );
        }
        let output: JudgeOutput = match serde_json::from_slice(&body) {
            Ok(o) => o,
            Err(e) => return failed(OutcomeKind::InvalidOutput, format!("output is not {{\"score\", \"explanation\"}} JSON: {e}")),
        };
        if !(output.score.is_finite() && (0.0..=1.0).contains(&output.score)) {
            return failed(OutcomeKind::InvalidOutput, format!("score {} is not a finite number in [0, 1]", output.score));
        }
        Evaluation {
            outcome: OutcomeKind::Ok,
            output: Some(RuleOutput::score(output.score, output.explanation)),
            error: None,
            fuel_used: 0,
            elapsed_us,
        }
    }
}

impl Drop for JudgePlugin {
    fn drop(&mut self) {
        let handle = self.handle.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        // SAFETY: the live handle from create, destroyed once; the library stays loaded.
        unsafe { (self.destroy_fn)(handle.0) };
        handle.0 = std::ptr::null_mut();
    }
}

/// A buffer a plugin returned that the host does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadBuffer {
    /// Longer than [`MAX_OUTPUT_BYTES`].
    TooLong { len: usize },
    /// A null pointer with a length that is not 0.
    NullWithLength { len: usize },
}

impl std::fmt::Display for BadBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadBuffer::TooLong { len } => {
                write!(f, "returned a buffer of {len} bytes, over the {MAX_OUTPUT_BYTES}-byte limit; it was not read")
            }
            BadBuffer::NullWithLength { len } => write!(f, "returned a null pointer with a length of {len} bytes; it was not read"),
        }
    }
}

/// Copies a plugin buffer out and releases it with the plugin's own `free`, after checking its
/// length and pointer: a buffer over [`MAX_OUTPUT_BYTES`] or a null pointer with a length is
/// not read (nothing is allocated by its length). Each is still handed to `free` as returned:
/// the ABI has the plugin release what it gave, and the host cannot tell an honest large buffer
/// from a lie about its length.
///
/// # Safety
/// `buf` was written by a call of the plugin that `free` belongs to and is not taken twice.
unsafe fn take_buffer(buf: &JudgeBuffer, free: FreeFn) -> Result<Vec<u8>, BadBuffer> {
    let checked = if buf.ptr.is_null() {
        if buf.len == 0 { Ok(Vec::new()) } else { Err(BadBuffer::NullWithLength { len: buf.len }) }
    } else if buf.len > MAX_OUTPUT_BYTES {
        Err(BadBuffer::TooLong { len: buf.len })
    } else {
        // SAFETY: plugin-owned, `len` readable bytes (ABI contract); `len` is at most
        // MAX_OUTPUT_BYTES, so the copy is small whatever the plugin claims.
        Ok(unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }.to_vec())
    };
    if !buf.ptr.is_null() {
        // SAFETY: released once, by the allocator that made it.
        unsafe { free(buf.ptr, buf.len) };
    }
    checked
}

/// The bytes before the first NUL at `ptr`, reading at most `max` bytes; `None` when there is
/// no NUL among them.
///
/// # Safety
/// `ptr` is non-null and readable up to its NUL or `max` bytes, whichever comes first.
unsafe fn read_c_string(ptr: *const std::os::raw::c_char, max: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    for i in 0..max {
        // SAFETY: within the readable prefix (caller's contract); stops at the NUL.
        let b = unsafe { ptr.add(i).read() } as u8;
        if b == 0 {
            return Some(bytes);
        }
        bytes.push(b);
    }
    None
}

/// The `error` of a `{"error": …}` buffer, or the buffer as text.
fn error_text(body: &[u8]) -> String {
    match serde_json::from_slice::<medrl_sdk::abi::GuestError>(body) {
        Ok(e) => e.error,
        Err(_) => format!("(not an error document) {}", String::from_utf8_lossy(&body[..body.len().min(500)])),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether the judge scores the sample `sample_id`: the first 8 bytes of
/// `sha256("medrl-judge-select/1" ‖ 0 ‖ seed as 8 little-endian bytes ‖ sample_id)`, read as a
/// big-endian integer over 2^64, fall below `share`. A pure function of the seed and the id,
/// so every run, replay and evaluation of the same samples judges the same ones, and about
/// `share` of any set of distinct ids.
pub fn judge_selects(seed: u64, share: f64, sample_id: &str) -> bool {
    let mut bytes = b"medrl-judge-select/1\0".to_vec();
    bytes.extend_from_slice(&seed.to_le_bytes());
    bytes.extend_from_slice(sample_id.as_bytes());
    let digest = hex::decode(sha256_hex(&bytes)).expect("sha256_hex is hex");
    let u = u64::from_be_bytes(digest[..8].try_into().expect("a sha256 has 32 bytes"));
    (u as f64 / 18_446_744_073_709_551_616.0) < share
}

/// A rule set's judge, loaded: the plugin and the entry that decides where and how it counts.
#[derive(Debug)]
pub struct LoadedJudge {
    pub entry: JudgeEntry,
    /// sha256 of the canonical JSON of the params the plugin was created with.
    pub params_sha256: String,
    pub plugin: JudgePlugin,
}

impl LoadedJudge {
    pub fn load(judge: &VerifiedJudge) -> Result<Self, PluginError> {
        Ok(LoadedJudge {
            params_sha256: json_sha256(&serde_json::Value::Object(judge.entry.params.clone())),
            plugin: JudgePlugin::load(judge)?,
            entry: judge.entry.clone(),
        })
    }

    /// The name of its result in a sample score: `judge:<id>@<version>`.
    pub fn result_name(&self) -> String {
        format!("{JUDGE_RESULT_PREFIX}{}", self.entry.reference())
    }

    pub fn selects(&self, sample_id: &str) -> bool {
        judge_selects(self.entry.seed, self.entry.share, sample_id)
    }

    /// The judge's evaluation of a sample: the plugin's score on the judged share, "not
    /// applicable" (no call) elsewhere.
    pub fn evaluate(&self, sample_id: &str, sample_json: &[u8]) -> Evaluation {
        if !self.selects(sample_id) {
            let why = format!("not in the judged share ({} % of samples, seed {})", self.entry.share * 100.0, self.entry.seed);
            return Evaluation { outcome: OutcomeKind::Ok, output: Some(RuleOutput::not_applicable(why)), error: None, fuel_used: 0, elapsed_us: 0 };
        }
        self.plugin.score(sample_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_deterministic_and_close_to_the_share() {
        let ids: Vec<String> = (0..4000).map(|i| format!("p{i}#s3r{}", i % 4)).collect();
        let picked = ids.iter().filter(|id| judge_selects(0, 0.1, id)).count();
        // Binomial(4000, 0.1): mean 400, σ = √(4000·0.1·0.9) = 19; ±4σ ≈ ±76.
        assert!((324..=476).contains(&picked), "{picked}");
        assert!(ids.iter().all(|id| judge_selects(0, 0.1, id) == judge_selects(0, 0.1, id)));
        assert!(ids.iter().all(|id| judge_selects(7, 1.0, id)));
        assert!(!ids.iter().any(|id| judge_selects(7, 0.0, id)));
        // Another seed picks other samples.
        let other = ids.iter().filter(|id| judge_selects(0, 0.1, id) != judge_selects(1, 0.1, id)).count();
        assert!(other > 400, "{other}");
    }

    /// The `medrl-judge-liar-fixture` cdylib (a dev-dependency, so cargo builds it into the
    /// test binary's `deps/` folder first), loaded through the real loader with `params.lie`.
    fn liar(lie: &str) -> JudgePlugin {
        let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
        let name = format!("{}medrl_judge_liar_fixture{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
        let path = deps.join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; it is a dev-dependency of medrl (core/Cargo.toml)", path.display()));
        let pin = PinnedLibrary { file: "liar".into(), sha256: sha256_hex(&bytes), size: bytes.len() as u64 };
        let config = JudgeConfig {
            abi: JUDGE_ABI_VERSION.into(),
            plugin: format!("liar-{lie}@0.1.0"),
            params: serde_json::json!({ "lie": lie }),
            registry_root: "/".into(),
        };
        JudgePlugin::load_pinned(&bytes, &pin, &path, "the test's pin", &config).unwrap()
    }

    /// Issue 14 item 8: a plugin's returned length and pointer are checked before the host copies
    /// or allocates. A length of 2^36 aborted the process (`memory allocation of 68719476736
    /// bytes failed`); this test process must survive every lie and name plugin and value.
    #[test]
    fn a_plugin_that_lies_about_its_buffers_is_refused_and_the_host_survives() {
        let sample = br#"{"id":"a","prompt":"p","response":"r","lang":"en","category":"general","risk":"low"}"#;
        let honest = liar("honest").score(sample);
        assert_eq!((honest.outcome, honest.output.map(|o| o.score)), (OutcomeKind::Ok, Some(0.5)), "{:?}", honest.error);
        for (lie, outcome, says) in [
            (
                "huge_length",
                OutcomeKind::Limit,
                "judge liar-huge_length@0.1.0: score returned a buffer of 68719476736 bytes, over the 65536-byte limit; it was not read",
            ),
            (
                "huge_error",
                OutcomeKind::Limit,
                "judge liar-huge_error@0.1.0: score returned a buffer of 68719476736 bytes, over the 65536-byte limit",
            ),
            ("null_pointer", OutcomeKind::InvalidOutput, "judge liar-null_pointer@0.1.0: score returned a null pointer with a length of 31 bytes"),
            ("not_utf8", OutcomeKind::InvalidOutput, "judge liar-not_utf8@0.1.0: output is not UTF-8 (invalid byte at offset 28)"),
        ] {
            let eval = liar(lie).score(sample);
            assert_eq!(eval.outcome, outcome, "{lie}: {:?}", eval.error);
            assert!(eval.output.is_none(), "{lie}");
            let error = eval.error.unwrap_or_default();
            assert!(error.starts_with(says), "{lie}: {error}");
        }
    }

    #[test]
    fn a_changed_library_is_refused_by_size_or_hash() {
        let pin = PinnedLibrary { file: "libx.so".into(), sha256: sha256_hex(b"abc"), size: 3 };
        let path = Path::new("/reg/plugins/x/1.0.0/libx.so");
        check_pin(b"abc", &pin, path, "ruleset.json").unwrap();
        let longer = check_pin(b"abcd", &pin, path, "ruleset.json").unwrap_err().to_string();
        assert!(longer.contains(&format!("libx.so: sha256 is {} but ruleset.json pins {}", sha256_hex(b"abcd"), pin.sha256)), "{longer}");
        let inconsistent = PinnedLibrary { size: 4, ..pin.clone() };
        let size = check_pin(b"abc", &inconsistent, path, "ruleset.json").unwrap_err().to_string();
        assert!(size.contains("size is 3 bytes but ruleset.json pins 4"), "{size}");
        let flipped = check_pin(b"abd", &pin, path, "ruleset.json").unwrap_err().to_string();
        assert!(flipped.contains(&sha256_hex(b"abd")) && flipped.contains(&pin.sha256) && flipped.contains("was not loaded"), "{flipped}");
    }
}
