//! The rule author's workflow: scaffold a rule crate, and build one into the registry.
//!
//! A build is reproducible: the `rule` cargo profile (LTO, one codegen unit, no symbols), the
//! pinned toolchain, and path prefixes remapped (`--remap-path-prefix`) so the same source gives
//! the same `rule.wasm` bytes in any checkout path, on any machine.

use crate::registry::hash::sha256_hex;
use crate::registry::limits::SandboxLimits;
use crate::registry::manifest::{BuildProvenance, ChangelogEntry, PinnedFile, RuleKind, RuleManifest, VectorsRef, valid_id};
use crate::registry::store::{RULE_MANIFEST, RULE_MODULE, RULE_VECTORS, Registry, VerifiedRule};
use crate::reward::outcome::OnError;
use crate::reward::sandbox::{ModuleError, Sandbox};
use crate::reward::scorer::LoadedRule;
use medrl_sdk::vectors::parse_vectors;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
pub const RULE_PROFILE: &str = "rule";
pub const RULE_SOURCE: &str = "rule.toml";
const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
const TOOLCHAIN_FILE: &str = include_str!("../../../rust-toolchain.toml");

/// What went wrong while scaffolding or building a rule.
#[derive(Debug, thiserror::Error)]
pub enum AuthorError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid rule source: {msg}")]
    Source { path: PathBuf, msg: String },
    #[error("`{name}` is not a valid rule id: use lowercase letters, digits and `-`, starting with a letter")]
    BadId { name: String },
    #[error("{path} already exists; pick another name or remove it")]
    Exists { path: PathBuf },
    #[error("cannot find medrl-sdk: run this inside the medrl repository or pass `--sdk PATH/TO/sdk`")]
    NoSdk,
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("the build produced no .wasm for package `{package}`; is `crate-type = [\"cdylib\", \"rlib\"]` set in its Cargo.toml?")]
    NoArtifact { package: String },
    #[error("the built module is not a valid rule: {0}")]
    Module(#[from] ModuleError),
    #[error("{failed} of {total} golden vectors fail, so the rule is not published:\n{details}")]
    Vectors { failed: usize, total: usize, details: String },
    #[error("{0}")]
    Isolation(String),
    #[error(
        "{existing} already holds {reference} with different content; a published version is immutable: bump `version` in rule.toml and Cargo.toml"
    )]
    Immutable { existing: PathBuf, reference: String },
    /// The toolchain that builds the crate has no standard library for the rule target.
    #[error(
        "the {target} target is not installed for {rustc} (no {libdir}); install it with `rustup target add {target}` (run it in {dir}, so rustup adds it to the toolchain rust-toolchain.toml pins there), then build again"
    )]
    MissingTarget { target: String, rustc: String, libdir: PathBuf, dir: PathBuf },
    /// Building would have changed Cargo.lock, which a rule build never does.
    #[error(
        "{lock} does not lock this crate's dependencies as they are now (a new rule crate, or changed [dependencies]), and a rule build never changes it: update it on purpose with `cargo update --workspace --offline` in {dir} (a new member) or `cargo update -p CRATE` (a changed dependency), review the diff and commit it, then build again"
    )]
    LockOutdated { lock: PathBuf, dir: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuthorError + '_ {
    move |source| AuthorError::Io { path: path.to_path_buf(), source }
}

/// `rule.toml`: what the author writes; `medrl rules build` turns it into `rule.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSource {
    pub id: String,
    pub version: semver::Version,
    pub kind: RuleKind,
    pub description: String,
    #[serde(default)]
    pub owners: Vec<String>,
    pub output_range: [f64; 2],
    pub on_error: OnError,
    #[serde(default)]
    pub limits: SandboxLimits,
    #[serde(default)]
    pub changelog: Vec<ChangelogEntry>,
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl RuleSource {
    pub fn read(dir: &Path) -> Result<Self, AuthorError> {
        let path = dir.join(RULE_SOURCE);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let source: RuleSource = toml::from_str(&text).map_err(|e| AuthorError::Source { path: path.clone(), msg: e.to_string() })?;
        if !valid_id(&source.id) {
            return Err(AuthorError::BadId { name: source.id });
        }
        let [lo, hi] = source.output_range;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(AuthorError::Source { path, msg: format!("output_range [{lo}, {hi}] is not a finite, ordered range") });
        }
        Ok(source)
    }
}

/// Where a new rule crate gets `medrl-sdk` from.
#[derive(Debug, Clone)]
enum SdkLink {
    /// A member of the medrl workspace (`rules-wasm/<name>`): workspace dependencies.
    Workspace,
    /// A crate of its own, with its own `[workspace]`, profile and toolchain file.
    Path(PathBuf),
}

/// What the scaffolded rule measures: a `score` (credited, higher is better) or a `penalty`
/// (subtracted, higher is worse). Each gets a matching example, vectors and `on_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaffoldKind {
    /// on_error `zero`: a rule that fails gives no credit.
    Score,
    /// on_error `max_penalty`: a rule that fails costs its worst penalty, so a failure is never
    /// cheaper for the policy than the text it failed on.
    Penalty,
}

/// Scaffolds a rule crate at `dir` that builds, and passes its vectors, as generated.
pub fn scaffold(name: &str, dir: &Path, sdk: Option<&Path>) -> Result<(), AuthorError> {
    scaffold_kind(name, dir, sdk, ScaffoldKind::Score)
}

/// [`scaffold`] of a rule of `kind`: `rule.toml`, `src/lib.rs` with the rule and a native test
/// that runs `vectors.jsonl` against it (`cargo test -p rule-<name>`, as the shipped rules do),
/// the vectors and `Cargo.toml`. Inside the medrl workspace the new member is added to the
/// workspace's `Cargo.lock` (that crate's entry only, offline); a crate of its own gets its own
/// lock file. Commit the lock file with the crate: `medrl rules build` builds with `--locked`.
pub fn scaffold_kind(name: &str, dir: &Path, sdk: Option<&Path>, kind: ScaffoldKind) -> Result<(), AuthorError> {
    if !valid_id(name) {
        return Err(AuthorError::BadId { name: name.to_string() });
    }
    if dir.exists() {
        return Err(AuthorError::Exists { path: dir.to_path_buf() });
    }
    let link = match sdk {
        Some(sdk) => SdkLink::Path(std::fs::canonicalize(sdk).map_err(io_err(sdk))?),
        None => find_sdk_link(dir)?,
    };
    std::fs::create_dir_all(dir.join("src")).map_err(io_err(dir))?;
    let (rule_toml, lib_rs, vectors) = match kind {
        ScaffoldKind::Score => (SCAFFOLD_RULE_TOML, SCAFFOLD_LIB_RS, SCAFFOLD_VECTORS),
        ScaffoldKind::Penalty => (SCAFFOLD_PENALTY_RULE_TOML, SCAFFOLD_PENALTY_LIB_RS, SCAFFOLD_PENALTY_VECTORS),
    };
    let files = [
        ("Cargo.toml", scaffold_cargo_toml(name, &link)),
        (RULE_SOURCE, rule_toml.replace("{name}", name)),
        ("src/lib.rs", format!("{lib_rs}{SCAFFOLD_NATIVE_TEST}")),
        (RULE_VECTORS, vectors.to_string()),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io_err(&path))?;
    }
    if let SdkLink::Path(_) = link {
        let path = dir.join("rust-toolchain.toml");
        std::fs::write(&path, TOOLCHAIN_FILE).map_err(io_err(&path))?;
    }
    lock_new_crate(dir, &link)
}

/// Records a new crate in the lock file its builds will be `--locked` to: `cargo metadata`
/// resolves the workspace keeping every locked version and adds what is missing (the new member;
/// for a crate of its own, its whole lock file). Offline inside the medrl workspace, where every
/// dependency of the scaffold is already locked.
fn lock_new_crate(dir: &Path, link: &SdkLink) -> Result<(), AuthorError> {
    let dir = &std::path::absolute(dir).map_err(io_err(dir))?;
    let mut cmd = Command::new("cargo");
    cmd.args(["tree", "--depth", "0", "--manifest-path"]).arg(dir.join("Cargo.toml")).current_dir(dir);
    if let SdkLink::Workspace = link {
        cmd.arg("--offline");
    }
    run_capture(&mut cmd).map(|_| ())
}

/// Inside the medrl repository, `rules-wasm/<name>` is a workspace member; elsewhere the crate
/// stands alone and points at the repository's `sdk/` if it can find one above it.
fn find_sdk_link(dir: &Path) -> Result<SdkLink, AuthorError> {
    let abs = std::path::absolute(dir).map_err(io_err(dir))?;
    let parent = abs.parent().ok_or(AuthorError::NoSdk)?;
    for ancestor in parent.ancestors() {
        let sdk = ancestor.join("sdk").join("Cargo.toml");
        if sdk.is_file() && ancestor.join("Cargo.toml").is_file() {
            return Ok(if parent == ancestor.join("rules-wasm") { SdkLink::Workspace } else { SdkLink::Path(ancestor.join("sdk")) });
        }
    }
    Err(AuthorError::NoSdk)
}

fn scaffold_cargo_toml(name: &str, link: &SdkLink) -> String {
    let head = format!("[package]\nname = \"rule-{name}\"\nversion = \"0.1.0\"\npublish = false\n");
    let lib =
        "\n[lib]\n# cdylib is the WebAssembly module; rlib lets native tests and benchmarks call the rule.\ncrate-type = [\"cdylib\", \"rlib\"]\n";
    match link {
        SdkLink::Workspace => format!(
            "{head}edition.workspace = true\nrust-version.workspace = true\nlicense.workspace = true\n{lib}\n[dependencies]\nmedrl-sdk = {{ workspace = true }}\nserde = {{ workspace = true }}\nserde_json = {{ workspace = true }}\n\n[dev-dependencies]\n# The native test reads the defaults from rule.toml.\ntoml = {{ workspace = true }}\n"
        ),
        SdkLink::Path(sdk) => format!(
            "{head}edition = \"2024\"\n{lib}\n[dependencies]\nmedrl-sdk = {{ path = {sdk:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\nserde_json = \"1\"\n\n[dev-dependencies]\n# The native test reads the defaults from rule.toml.\ntoml = \"1\"\n\n# A crate of its own, not a member of any enclosing workspace.\n[workspace]\n\n# The reproducible profile `medrl rules build` uses.\n[profile.rule]\ninherits = \"release\"\nopt-level = 3\nlto = true\ncodegen-units = 1\npanic = \"abort\"\nstrip = true\ndebug = false\nincremental = false\n",
            sdk = sdk.display().to_string()
        ),
    }
}

const SCAFFOLD_RULE_TOML: &str = r#"# The manifest source of this rule. `medrl rules build` compiles the crate, runs vectors.jsonl
# against the module, and writes rule.json next to rule.wasm in the registry.
id = "{name}"
version = "0.1.0"
kind = "score"            # score | penalty | gate
description = "Scores 1 when the response mentions one of the keywords for its language, else 0."
owners = ["rule-author"]
output_range = [0.0, 1.0]
on_error = "zero"         # abort | zero | max_penalty | skip_sample

[limits]
fuel = 50000000
memory_pages = 64
timeout_ms = 500

[[changelog]]
version = "0.1.0"
date = "2026-01-01"
notes = "Scaffolded by medrl rules new."

[params]
keywords_zh = ["医生"]
keywords_en = ["doctor"]
"#;

const SCAFFOLD_LIB_RS: &str = r#"//! A medrl rule: one pure function from a sample and parameters to a score.

use medrl_sdk::text::{NormText, PhraseSet};
use medrl_sdk::{Hit, Lang, RuleOutput, Sample};
use serde::Deserialize;

/// Parameters; defaults live in rule.toml, rule sets may override them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    keywords_zh: Vec<String>,
    keywords_en: Vec<String>,
}

fn evaluate(sample: &Sample, params: &Params) -> RuleOutput {
    let keywords = match sample.lang {
        Lang::Zh => &params.keywords_zh,
        Lang::En => &params.keywords_en,
    };
    // Width- and case-folded matching; spans point into the original response.
    let response = NormText::new(&sample.response);
    match PhraseSet::new(keywords).find_first(&response) {
        Some(m) => {
            let keyword = &keywords[m.phrase];
            let mut out = RuleOutput::score(1.0, format!("mentions {keyword:?}"));
            out.hits.push(Hit::new("keyword", keyword.clone()).with_span(m.start, m.end));
            out
        }
        None => RuleOutput::score(0.0, "mentions none of the keywords"),
    }
}

medrl_sdk::export_rule!(evaluate, Params);
"#;

const SCAFFOLD_VECTORS: &str = concat!(
    r#"{"name":"zh-mentions","sample":{"id":"v1","prompt":"头疼","response":"请咨询医生。","lang":"zh","category":"general","risk":"low"},"expect":{"score":1.0,"applicable":true,"hit_codes":["keyword"]}}"#,
    "\n",
    r#"{"name":"en-mentions-any-case","sample":{"id":"v2","prompt":"headache","response":"Please see a DOCTOR.","lang":"en","category":"general","risk":"low"},"expect":{"score":1.0,"hit_codes":["keyword"]}}"#,
    "\n",
    r#"{"name":"en-silent","sample":{"id":"v3","prompt":"headache","response":"Rest and drink water.","lang":"en","category":"general","risk":"low"},"expect":{"score":0.0,"hit_codes":[]}}"#,
    "\n",
    r#"{"name":"zh-param-override","sample":{"id":"v4","prompt":"头疼","response":"去药房问问。","lang":"zh","category":"general","risk":"low"},"params":{"keywords_zh":["药房"]},"expect":{"score":1.0}}"#,
    "\n",
);

const SCAFFOLD_PENALTY_RULE_TOML: &str = r#"# The manifest source of this rule. `medrl rules build` compiles the crate, runs vectors.jsonl
# against the module, and writes rule.json next to rule.wasm in the registry.
id = "{name}"
version = "0.1.0"
kind = "penalty"          # score | penalty | gate; a rule set gives a penalty a negative weight
description = "Penalty 1 when the response makes one of the promises listed for its language (e.g. a guaranteed cure), else 0."
owners = ["rule-author"]
output_range = [0.0, 1.0]
# A penalty rule that fails counts at its worst (1.0), so a text that breaks the rule is never
# cheaper for the policy than the text the rule would have penalised.
on_error = "max_penalty"  # abort | zero | max_penalty | skip_sample

[limits]
fuel = 50000000
memory_pages = 64
timeout_ms = 500

[[changelog]]
version = "0.1.0"
date = "2026-01-01"
notes = "Scaffolded by medrl rules new --kind penalty."

[params]
phrases_zh = ["包治百病", "保证治愈"]
phrases_en = ["guaranteed cure", "cures everything"]
"#;

const SCAFFOLD_PENALTY_LIB_RS: &str = r#"//! A medrl penalty rule: one pure function from a sample and parameters to a penalty in [0, 1]
//! (0 = nothing wrong found); the rule set subtracts it with a negative weight.

use medrl_sdk::text::{NormText, PhraseSet};
use medrl_sdk::{Hit, Lang, RuleOutput, Sample};
use serde::Deserialize;

/// Parameters; defaults live in rule.toml, rule sets may override them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    phrases_zh: Vec<String>,
    phrases_en: Vec<String>,
}

fn evaluate(sample: &Sample, params: &Params) -> RuleOutput {
    let phrases = match sample.lang {
        Lang::Zh => &params.phrases_zh,
        Lang::En => &params.phrases_en,
    };
    // Width- and case-folded matching; spans point into the original response.
    let response = NormText::new(&sample.response);
    match PhraseSet::new(phrases).find_first(&response) {
        Some(m) => {
            let phrase = &phrases[m.phrase];
            let mut out = RuleOutput::score(1.0, format!("promises {phrase:?}; penalty 1"));
            out.hits.push(Hit::new("false-promise", phrase.clone()).with_span(m.start, m.end));
            out
        }
        None => RuleOutput::score(0.0, "makes none of the listed promises; penalty 0"),
    }
}

medrl_sdk::export_rule!(evaluate, Params);
"#;

const SCAFFOLD_PENALTY_VECTORS: &str = concat!(
    r#"{"name":"zh-promise","sample":{"id":"v1","prompt":"胃痛","response":"这个偏方包治百病。","lang":"zh","category":"general","risk":"low"},"expect":{"score":1.0,"applicable":true,"hit_codes":["false-promise"]}}"#,
    "\n",
    r#"{"name":"en-promise-any-case","sample":{"id":"v2","prompt":"back pain","response":"This tea is a GUARANTEED CURE.","lang":"en","category":"general","risk":"low"},"expect":{"score":1.0,"hit_codes":["false-promise"]}}"#,
    "\n",
    r#"{"name":"en-careful","sample":{"id":"v3","prompt":"back pain","response":"Most back pain settles within weeks; see a doctor if it does not.","lang":"en","category":"general","risk":"low"},"expect":{"score":0.0,"hit_codes":[]}}"#,
    "\n",
    r#"{"name":"zh-param-override","sample":{"id":"v4","prompt":"胃痛","response":"吃了马上好。","lang":"zh","category":"general","risk":"low"},"params":{"phrases_zh":["马上好"]},"expect":{"score":1.0}}"#,
    "\n",
);

/// The native test every scaffolded rule gets, as the shipped rules have: each golden vector
/// through the rule's own `evaluate_json`, with the defaults of rule.toml (`cargo test`).
const SCAFFOLD_NATIVE_TEST: &str = r#"
#[cfg(test)]
mod tests {
    use medrl_sdk::RuleOutput;
    use medrl_sdk::vectors::{check, merge_params, parse_vectors};

    /// The `[params]` table of rule.toml, as JSON: the defaults every vector starts from.
    fn default_params() -> serde_json::Value {
        let manifest: toml::Table = toml::from_str(include_str!("../rule.toml")).expect("rule.toml parses");
        serde_json::to_value(&manifest["params"]).expect("params convert to JSON")
    }

    #[test]
    fn golden_vectors() {
        let defaults = default_params();
        let vectors = parse_vectors(include_str!("../vectors.jsonl")).expect("vectors.jsonl parses");
        assert!(!vectors.is_empty(), "vectors.jsonl has no vectors");
        let mut failures = Vec::new();
        for v in &vectors {
            let input = serde_json::json!({
                "abi": medrl_sdk::ABI_VERSION,
                "sample": v.sample,
                "params": merge_params(&defaults, v.params.as_ref()),
            });
            let raw = super::evaluate_json(&serde_json::to_vec(&input).expect("input encodes"));
            match serde_json::from_slice::<RuleOutput>(&raw) {
                Ok(out) => {
                    if let Err(e) = check(&v.expect, &out) {
                        failures.push(format!("{}: {e}", v.name));
                    }
                }
                Err(_) => failures.push(format!("{}: {}", v.name, String::from_utf8_lossy(&raw))),
            }
        }
        assert!(failures.is_empty(), "{} of {} vectors fail:\n{}", failures.len(), vectors.len(), failures.join("\n"));
    }
}
"#;

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub reference: String,
    pub dir: PathBuf,
    pub module_sha256: String,
    pub module_size: u64,
    pub vectors: usize,
    /// `false` when the registry already held these exact bytes.
    pub written: bool,
}

/// Builds the rule crate at `crate_dir` for wasm32, validates the module, runs every golden
/// vector in the sandbox, and writes the rule version into the registry.
pub fn build(crate_dir: &Path, registry: &Registry, sandbox: &Sandbox) -> Result<BuildReport, AuthorError> {
    let crate_dir = std::fs::canonicalize(crate_dir).map_err(io_err(crate_dir))?;
    let source = RuleSource::read(&crate_dir)?;
    let metadata = cargo_metadata(&crate_dir)?;
    let package = metadata.package_at(&crate_dir)?;
    if package.version != source.version {
        return Err(AuthorError::Source {
            path: crate_dir.join("Cargo.toml"),
            msg: format!("package version {} differs from rule.toml's {}; keep them equal", package.version, source.version),
        });
    }
    let rustc = run_capture(Command::new("rustc").arg("-V").current_dir(&crate_dir))?.trim().to_string();
    let module = cargo_build_wasm(&crate_dir, &metadata, &package)?;

    let vectors_path = crate_dir.join(RULE_VECTORS);
    let vectors_bytes = std::fs::read(&vectors_path).map_err(io_err(&vectors_path))?;
    let vectors = parse_vectors(&String::from_utf8_lossy(&vectors_bytes)).map_err(|msg| AuthorError::Source { path: vectors_path.clone(), msg })?;

    let source_path = crate_dir.strip_prefix(&metadata.workspace_root).map(|p| p.to_string_lossy().replace('\\', "/")).unwrap_or_else(|_| ".".into());
    let source_path = if source_path.is_empty() { ".".to_string() } else { source_path };
    let (source_commit, source_dirty) = git_state(&crate_dir);
    let manifest = RuleManifest {
        id: source.id.clone(),
        version: source.version.clone(),
        kind: source.kind,
        abi: medrl_sdk::ABI_VERSION.to_string(),
        description: source.description.clone(),
        owners: source.owners.clone(),
        module: PinnedFile { file: RULE_MODULE.into(), sha256: sha256_hex(&module), size: module.len() as u64 },
        params: source.params.clone(),
        output_range: source.output_range,
        limits: source.limits,
        on_error: source.on_error,
        build: BuildProvenance {
            sdk_version: package.sdk_version.clone().unwrap_or_else(|| SDK_VERSION.to_string()),
            rustc,
            target: WASM_TARGET.into(),
            profile: RULE_PROFILE.into(),
            source_path,
            source_sha256: source_tree_sha256(&crate_dir)?,
            source_commit,
            source_dirty,
        },
        vectors: VectorsRef { file: RULE_VECTORS.into(), sha256: sha256_hex(&vectors_bytes), count: vectors.len() },
        changelog: source.changelog.clone(),
    };

    // Validates and compiles the module once; every golden vector must then pass in the sandbox
    // before anything is published.
    let verified = VerifiedRule { manifest: manifest.clone(), manifest_sha256: String::new(), module: module.clone(), dir: crate_dir.clone() };
    let loaded = LoadedRule::new(sandbox, &verified, 1.0, None)?;
    let failures: Vec<String> = loaded.vector_failures(&vectors).into_iter().map(|f| format!("  {f}")).collect();
    if !failures.is_empty() {
        return Err(AuthorError::Vectors { failed: failures.len(), total: vectors.len(), details: failures.join("\n") });
    }
    let samples: Vec<medrl_sdk::Sample> = vectors.iter().map(|v| v.sample.clone()).collect();
    loaded.check_isolation(&samples).map_err(AuthorError::Isolation)?;

    let out_dir = registry.rule_dir(&manifest.id, &manifest.version);
    let reference = manifest.reference();
    if out_dir.exists() {
        let existing_path = out_dir.join(RULE_MANIFEST);
        let same = std::fs::read(&existing_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<RuleManifest>(&b).ok())
            .is_some_and(|old| same_published_content(&old, &manifest));
        let same_files = std::fs::read(out_dir.join(RULE_MODULE)).is_ok_and(|b| b == module)
            && std::fs::read(out_dir.join(RULE_VECTORS)).is_ok_and(|b| b == vectors_bytes);
        if same && same_files {
            return Ok(BuildReport {
                reference,
                dir: out_dir,
                module_sha256: manifest.module.sha256,
                module_size: manifest.module.size,
                vectors: vectors.len(),
                written: false,
            });
        }
        return Err(AuthorError::Immutable { existing: out_dir, reference });
    }
    std::fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = out_dir.join(name);
        std::fs::write(&path, bytes).map_err(io_err(&path))
    };
    write(RULE_MODULE, &module)?;
    write(RULE_VECTORS, &vectors_bytes)?;
    let mut json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
    json.push(b'\n');
    write(RULE_MANIFEST, &json)?;
    Ok(BuildReport {
        reference,
        dir: out_dir,
        module_sha256: manifest.module.sha256,
        module_size: manifest.module.size,
        vectors: vectors.len(),
        written: true,
    })
}

/// Two manifests publish the same rule when everything but the build provenance's checkout
/// details (commit, dirty flag) is equal.
fn same_published_content(a: &RuleManifest, b: &RuleManifest) -> bool {
    let strip = |m: &RuleManifest| {
        let mut m = m.clone();
        m.build.source_commit = None;
        m.build.source_dirty = false;
        m
    };
    strip(a) == strip(b)
}

struct Metadata {
    workspace_root: PathBuf,
    packages: Vec<serde_json::Value>,
}

struct PackageInfo {
    name: String,
    version: semver::Version,
    sdk_version: Option<String>,
    sdk_dir: Option<PathBuf>,
}

impl Metadata {
    fn package_at(&self, crate_dir: &Path) -> Result<PackageInfo, AuthorError> {
        let manifest = crate_dir.join("Cargo.toml");
        let package = self.packages.iter().find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path())).ok_or_else(|| {
            AuthorError::Source { path: manifest.clone(), msg: "cargo metadata does not list this crate; is it a member of its workspace?".into() }
        })?;
        let name = package["name"].as_str().unwrap_or_default().to_string();
        let version = package["version"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| AuthorError::Source { path: manifest.clone(), msg: "package has no valid version".into() })?;
        let sdk = self.packages.iter().find(|p| p["name"] == "medrl-sdk");
        Ok(PackageInfo {
            name,
            version,
            sdk_version: sdk.and_then(|p| p["version"].as_str()).map(str::to_string),
            sdk_dir: sdk.and_then(|p| p["manifest_path"].as_str()).and_then(|m| Path::new(m).parent().map(Path::to_path_buf)),
        })
    }
}

fn cargo_metadata(crate_dir: &Path) -> Result<Metadata, AuthorError> {
    // --locked: a build reads Cargo.lock and never writes it (see `locked`).
    let out = locked(
        crate_dir,
        run_capture(
            Command::new("cargo")
                .args(["metadata", "--locked", "--format-version", "1", "--filter-platform", WASM_TARGET, "--manifest-path"])
                .arg(crate_dir.join("Cargo.toml"))
                .current_dir(crate_dir),
        ),
    )?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| AuthorError::Command { command: "cargo metadata".into(), detail: e.to_string() })?;
    let path = |key: &str| PathBuf::from(v[key].as_str().unwrap_or_default());
    Ok(Metadata { workspace_root: path("workspace_root"), packages: v["packages"].as_array().cloned().unwrap_or_default() })
}

/// The reproducible build: fixed profile and target, and every local path prefix remapped.
fn cargo_build_wasm(crate_dir: &Path, metadata: &Metadata, info: &PackageInfo) -> Result<Vec<u8>, AuthorError> {
    let package = info.name.as_str();
    let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    // rustc applies the last matching remap, so the most specific prefixes come last.
    let mut remaps = Vec::new();
    if let Some(home) = cargo_home {
        remaps.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    remaps.push(format!("--remap-path-prefix={}=/workspace", metadata.workspace_root.display()));
    if let Some(sdk) = &info.sdk_dir {
        remaps.push(format!("--remap-path-prefix={}=/medrl-sdk", sdk.display()));
    }
    check_target_installed(crate_dir, WASM_TARGET)?;
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--locked", "--profile", RULE_PROFILE, "--target", WASM_TARGET, "--message-format=json-render-diagnostics", "-p", package])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .current_dir(crate_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", remaps.join("\x1f"))
        .env_remove("RUSTFLAGS")
        .stderr(std::process::Stdio::inherit());
    let out = locked(crate_dir, run_capture(&mut cmd))?;
    let wanted = package.replace('-', "_");
    let artifact = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"].as_str() == Some(wanted.as_str()))
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or_else(|| AuthorError::NoArtifact { package: package.to_string() })?;
    std::fs::read(&artifact).map_err(io_err(&artifact))
}

fn run_capture(cmd: &mut Command) -> Result<String, AuthorError> {
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| AuthorError::Command { command: command.clone(), detail: e.to_string() })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(AuthorError::Command { command, detail: format!("{}\n{}", out.status, tail.join("\n")) });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Turns cargo's refusal to update the lock file under `--locked` into [`AuthorError::LockOutdated`].
///
/// A rule build never changes `Cargo.lock`: the module's bytes must follow from the committed
/// source and lock file alone (`rules verify --rebuild` rebuilds from them), and an author's
/// build must not leave an unrelated diff in the workspace. cargo refuses before it writes.
fn locked(crate_dir: &Path, result: Result<String, AuthorError>) -> Result<String, AuthorError> {
    match result {
        Err(AuthorError::Command { detail, .. }) if detail.contains("--locked was passed") => {
            let lock =
                detail.split_whitespace().find(|w| w.ends_with("Cargo.lock")).map(PathBuf::from).unwrap_or_else(|| crate_dir.join("Cargo.lock"));
            let dir = lock.parent().map(Path::to_path_buf).unwrap_or_else(|| crate_dir.to_path_buf());
            Err(AuthorError::LockOutdated { lock, dir })
        }
        other => other,
    }
}

/// Checks that the toolchain `crate_dir` builds with (its rust-toolchain.toml, through rustup)
/// has the standard library for `target`, so a missing target is one clear error with the
/// command that installs it, not a page of "can't find crate for `core`".
pub fn check_target_installed(crate_dir: &Path, target: &str) -> Result<(), AuthorError> {
    let libdir = run_capture(Command::new("rustc").args(["--print", "target-libdir", "--target", target]).current_dir(crate_dir))?;
    let libdir = PathBuf::from(libdir.trim());
    if libdir.is_dir() {
        return Ok(());
    }
    let rustc = run_capture(Command::new("rustc").arg("-V").current_dir(crate_dir)).map(|v| v.trim().to_string()).unwrap_or_else(|_| "rustc".into());
    Err(AuthorError::MissingTarget { target: target.to_string(), rustc, libdir, dir: crate_dir.to_path_buf() })
}

/// What `medrl rules build --dry-run` found: the build and its vectors, and what publishing it
/// would do to the registry.
#[derive(Debug, Clone)]
pub struct DryRun {
    pub report: BuildReport,
    pub outcome: DryRunOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DryRunOutcome {
    /// The registry has no such version: a build would publish it.
    WouldPublish,
    /// The registry holds these exact bytes: a build would change nothing.
    Unchanged,
    /// The registry holds this version with other content: a build would be refused.
    WouldBeRefused,
}

/// Builds the crate, validates the module and runs its vectors and the isolation check exactly
/// as [`build`] does, into a scratch registry that is deleted afterwards (as `rules verify
/// --rebuild` does); nothing is written in `registry`, which is only read to say what a real
/// build would do.
pub fn build_dry_run(crate_dir: &Path, registry: &Registry, sandbox: &Sandbox) -> Result<DryRun, AuthorError> {
    let scratch = tempfile::tempdir().map_err(io_err(Path::new("a temporary folder")))?;
    let mut report = build(crate_dir, &Registry::integrity_only(scratch.path()), sandbox)?;
    let built = report.dir.clone();
    let rel = built.strip_prefix(scratch.path()).expect("the build wrote into the scratch registry").to_path_buf();
    let target = registry.root().join(&rel);
    let outcome = if !target.exists() {
        DryRunOutcome::WouldPublish
    } else {
        let manifest = |dir: &Path| std::fs::read(dir.join(RULE_MANIFEST)).ok().and_then(|b| serde_json::from_slice::<RuleManifest>(&b).ok());
        let same_manifest = manifest(&built).zip(manifest(&target)).is_some_and(|(a, b)| same_published_content(&a, &b));
        let same_file = |name: &str| std::fs::read(built.join(name)).ok().is_some_and(|b| std::fs::read(target.join(name)).is_ok_and(|t| t == b));
        if same_manifest && same_file(RULE_MODULE) && same_file(RULE_VECTORS) { DryRunOutcome::Unchanged } else { DryRunOutcome::WouldBeRefused }
    };
    report.dir = target;
    report.written = false;
    Ok(DryRun { report, outcome })
}

/// sha256 over the crate's source: every file except build output and VCS folders, in sorted
/// relative-path order, each as `path\0len\0bytes`.
pub fn source_tree_sha256(dir: &Path) -> Result<String, AuthorError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), AuthorError> {
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "target" || name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                out.push((rel, path));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut all = Vec::new();
    for (rel, path) in files {
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        all.extend_from_slice(rel.as_bytes());
        all.push(0);
        all.extend_from_slice(bytes.len().to_string().as_bytes());
        all.push(0);
        all.extend_from_slice(&bytes);
    }
    Ok(sha256_hex(&all))
}

fn git_state(dir: &Path) -> (Option<String>, bool) {
    let git = |args: &[&str]| Command::new("git").args(args).current_dir(dir).output().ok().filter(|o| o.status.success());
    let commit = git(&["rev-parse", "HEAD"]).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let dirty = git(&["status", "--porcelain", "--", "."]).is_some_and(|o| !o.stdout.is_empty());
    (commit, dirty)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rule.toml` of a template as the build reads it.
    fn source(template: &str) -> RuleSource {
        toml::from_str(&template.replace("{name}", "probe")).expect("the template parses")
    }

    #[test]
    fn each_scaffold_kind_has_its_matching_on_error_and_vectors() {
        let score = source(SCAFFOLD_RULE_TOML);
        assert_eq!((score.kind, score.on_error), (RuleKind::Score, OnError::Zero));
        let penalty = source(SCAFFOLD_PENALTY_RULE_TOML);
        assert_eq!((penalty.kind, penalty.on_error), (RuleKind::Penalty, OnError::MaxPenalty));
        assert_eq!(penalty.output_range, [0.0, 1.0]);
        assert_eq!(penalty.params["phrases_en"][0], "guaranteed cure");
        // The penalty vectors expect 1 on the two promises, 0 on the careful answer.
        let vectors = parse_vectors(SCAFFOLD_PENALTY_VECTORS).unwrap();
        let expected: Vec<(String, Option<f64>)> = vectors.iter().map(|v| (v.name.clone(), v.expect.score)).collect();
        assert_eq!(
            expected,
            [
                ("zh-promise".into(), Some(1.0)),
                ("en-promise-any-case".into(), Some(1.0)),
                ("en-careful".into(), Some(0.0)),
                ("zh-param-override".into(), Some(1.0))
            ]
        );
        // Both kinds get the native golden-vector test reading rule.toml's defaults.
        assert!(SCAFFOLD_NATIVE_TEST.contains("fn golden_vectors()") && SCAFFOLD_NATIVE_TEST.contains("include_str!(\"../rule.toml\")"));
        for link in [SdkLink::Workspace, SdkLink::Path("/sdk".into())] {
            assert!(
                scaffold_cargo_toml("probe", &link).contains("[dev-dependencies]\n# The native test reads the defaults from rule.toml.\ntoml = ")
            );
        }
    }

    #[test]
    fn a_lock_file_cargo_would_update_is_refused_with_the_fix() {
        let refused = Err(AuthorError::Command {
            command: "cargo metadata --locked".into(),
            detail: "exit status: 101\nerror: the lock file /work/x/Cargo.lock needs to be updated but --locked was passed to prevent this\nIf you want to try to generate the lock file without accessing the network, remove the --locked flag and use --offline instead.".into(),
        });
        let err = locked(Path::new("/work/x/rules-wasm/probe"), refused).unwrap_err();
        let AuthorError::LockOutdated { lock, dir } = &err else { panic!("{err}") };
        assert_eq!((lock.as_path(), dir.as_path()), (Path::new("/work/x/Cargo.lock"), Path::new("/work/x")));
        assert!(
            err.to_string().contains("a rule build never changes it: update it on purpose with `cargo update --workspace --offline` in /work/x"),
            "{err}"
        );
        // Any other failure passes through.
        let other = locked(Path::new("."), Err(AuthorError::NoSdk)).unwrap_err();
        assert!(matches!(other, AuthorError::NoSdk));
        assert_eq!(locked(Path::new("."), Ok("out".into())).unwrap(), "out");
    }

    #[test]
    fn a_target_without_its_standard_library_gives_the_rustup_command() {
        // A real target of rustc that no rule uses; its standard library is not installed here.
        let target = "riscv32imac-unknown-none-elf";
        let dir = std::env::current_dir().unwrap();
        match check_target_installed(&dir, target) {
            Ok(()) => panic!("{target} is installed on this machine; pick another uninstalled target for this test"),
            Err(e) => {
                let text = e.to_string();
                assert!(text.starts_with(&format!("the {target} target is not installed for rustc 1.")), "{text}");
                assert!(text.contains(&format!("install it with `rustup target add {target}`")), "{text}");
            }
        }
    }
}
