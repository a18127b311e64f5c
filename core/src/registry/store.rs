//! The on-disk registry: `rules/<id>/<version>/{rule.json, rule.wasm, vectors.jsonl}` and
//! `rulesets/<name>/<version>/{ruleset.json, *.sig}` under one root (`data/` in this repository).
//!
//! Every load checks every byte: each file's sha256 and size against the manifest that pins it,
//! each rule manifest against the rule set's pin, and that no folder holds an extra or lacks a
//! file. A tampered registry is refused here, before any rule runs.
//!
//! A rule set with an LLM judge also pins its native library, `plugins/<id>/<version>/<file>`
//! (sha256 and size, in the judge entry and in `files`), checked here like a rule module.
//!
//! A registry carries a [`TrustPolicy`]: with a keyring, every rule-set load also checks the
//! detached signatures beside `ruleset.json`, and [`Registry::accept_ruleset`] (the scoring
//! path) refuses a revision lower than the last accepted one.

use super::hash::{canonical_json, sha256_hex};
use super::limits::HostLimits;
use super::manifest::{RuleKind, RuleManifest};
use super::ruleset::{FileEntry, JudgeEntry, RuleSetManifest, VersionRef};
use super::trust::{REGISTRY_KEYRING, RevisionCheck, Signer, TrustError, TrustPolicy, check_and_record_revision, verify_signatures};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const RULE_MANIFEST: &str = "rule.json";
pub const RULE_MODULE: &str = "rule.wasm";
pub const RULE_VECTORS: &str = "vectors.jsonl";
pub const RULESET_MANIFEST: &str = "ruleset.json";
/// Native plugins: `plugins/<id>/<version>/<library file>` under the registry root.
pub const PLUGINS_DIR: &str = "plugins";

/// What is wrong with the registry, naming the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid {what}: {msg}")]
    Parse { path: PathBuf, what: &'static str, msg: String },
    #[error("no {kind} named `{name}` in {root}; known: {known}")]
    UnknownName { kind: &'static str, name: String, root: PathBuf, known: String },
    #[error("{kind} `{name}@{version}` does not exist; versions of `{name}`: {versions}")]
    UnknownVersion { kind: &'static str, name: String, version: semver::Version, versions: String },
    #[error("{path}: sha256 is {actual} but {pinned_by} pins {expected}; the file changed after it was pinned: restore it, or publish a new version")]
    HashMismatch { path: PathBuf, expected: String, actual: String, pinned_by: String },
    #[error("{path}: size is {actual} bytes but {pinned_by} pins {expected}")]
    SizeMismatch { path: PathBuf, expected: u64, actual: u64, pinned_by: String },
    #[error("{path} is not part of {owner}; remove it (a pinned folder holds exactly its listed files)")]
    ExtraFile { path: PathBuf, owner: String },
    #[error("{path} is missing; {owner} lists it")]
    MissingFile { path: PathBuf, owner: String },
    #[error("{path}: {msg}")]
    Inconsistent { path: PathBuf, msg: String },
    /// Boxed: trust errors carry several paths and hashes, and every `Result` of the registry
    /// would otherwise grow to their size.
    #[error(transparent)]
    Trust(Box<TrustError>),
}

impl From<TrustError> for RegistryError {
    fn from(e: TrustError) -> Self {
        RegistryError::Trust(Box::new(e))
    }
}

impl RegistryError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
        move |source| RegistryError::Io { path: path.to_path_buf(), source }
    }
}

/// A rule version whose files all match its manifest.
#[derive(Debug, Clone)]
pub struct VerifiedRule {
    pub manifest: RuleManifest,
    /// sha256 of the canonical bytes of `rule.json`.
    pub manifest_sha256: String,
    pub module: Vec<u8>,
    pub dir: PathBuf,
}

impl VerifiedRule {
    /// The samples of the rule's golden vectors (none for a rule without a vectors file on disk).
    pub fn vector_samples(&self) -> Result<Vec<medrl_sdk::Sample>, String> {
        let path = self.dir.join(&self.manifest.vectors.file);
        if !path.is_file() {
            return Ok(Vec::new());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let vectors = medrl_sdk::vectors::parse_vectors(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(vectors.into_iter().map(|v| v.sample).collect())
    }
}

/// A judge plugin whose library matches the rule set's pin.
#[derive(Debug, Clone)]
pub struct VerifiedJudge {
    pub entry: JudgeEntry,
    /// The library's bytes, as hashed: the loader loads exactly these (`reward::plugin`).
    pub library: Vec<u8>,
    /// Where the library lies in the registry (for messages).
    pub path: PathBuf,
    /// The registry root, where the plugin resolves relative paths of its params.
    pub registry_root: PathBuf,
}

/// A rule set whose manifest, rules and files all verify.
#[derive(Debug, Clone)]
pub struct VerifiedRuleSet {
    pub manifest: RuleSetManifest,
    /// sha256 of the canonical bytes of `ruleset.json`.
    pub sha256: String,
    /// In the order of `manifest.rules`.
    pub rules: Vec<VerifiedRule>,
    /// The judge, when `manifest.judge` names one.
    pub judge: Option<VerifiedJudge>,
}

/// A rule set accepted for scoring: verified, its signers (when a keyring is configured), and
/// the revision check against the trust state (when one is configured).
#[derive(Debug, Clone)]
pub struct AcceptedRuleSet {
    pub ruleset: VerifiedRuleSet,
    /// `None` when signatures were not checked or too few were found, which only the
    /// operator's `--allow-unsigned` permits (and the audit log records).
    pub signers: Option<Vec<Signer>>,
    /// Whether the operator's `--allow-unsigned` was in force for this load.
    pub allow_unsigned: bool,
    /// Signatures the policy required (0 without a keyring).
    pub required_signatures: usize,
    /// `None` when no trust state is configured (revisions were not checked).
    pub revision: Option<RevisionCheck>,
}

/// The registry rooted at one folder.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
    trust: Arc<TrustPolicy>,
    /// The operator's ceilings on what a rule's manifest may ask for; every sandbox that runs
    /// this registry's rules enforces them.
    host_limits: HostLimits,
}

impl Registry {
    /// A registry with no keyring yet: every rule-set load is refused until a policy with a
    /// keyring (or an explicit `allow_unsigned`) is attached with [`Self::with_trust`]. Commands
    /// get theirs from [`crate::reward::RuleSource::registry`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Registry { root: root.into(), trust: Arc::new(TrustPolicy::default()), host_limits: HostLimits::default() }
    }

    /// A registry that checks integrity (every pin) but not authenticity: for tools that only
    /// read rule sets, and for tests and benchmarks ([`TrustPolicy::integrity_only`]).
    pub fn integrity_only(root: impl Into<PathBuf>) -> Self {
        Registry::new(root).with_trust(TrustPolicy::integrity_only())
    }

    /// The same registry, trusting by `policy`.
    pub fn with_trust(mut self, policy: TrustPolicy) -> Self {
        self.trust = Arc::new(policy);
        self
    }

    /// The same registry, with the operator's ceilings on rule limits.
    pub fn with_host_limits(mut self, host_limits: HostLimits) -> Self {
        self.host_limits = host_limits;
        self
    }

    /// The ceilings a sandbox running this registry's rules enforces.
    pub fn host_limits(&self) -> HostLimits {
        self.host_limits
    }

    pub fn trust(&self) -> &TrustPolicy {
        &self.trust
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn rule_dir(&self, id: &str, version: &semver::Version) -> PathBuf {
        self.root.join("rules").join(id).join(version.to_string())
    }

    pub fn ruleset_dir(&self, name: &str, version: &semver::Version) -> PathBuf {
        self.root.join("rulesets").join(name).join(version.to_string())
    }

    pub fn plugin_dir(&self, id: &str, version: &semver::Version) -> PathBuf {
        self.root.join(PLUGINS_DIR).join(id).join(version.to_string())
    }

    /// Reads a judge's library and checks it against the entry's pin (size, then sha256) and
    /// that its folder holds nothing else; checks the entry's weight and share. `pinned_by`
    /// is the `ruleset.json` (or spec) that names the judge.
    pub fn load_judge(&self, entry: &JudgeEntry, pinned_by: &Path) -> Result<VerifiedJudge, RegistryError> {
        let inconsistent = |msg: String| RegistryError::Inconsistent { path: pinned_by.to_path_buf(), msg };
        if !(entry.weight.is_finite() && entry.weight >= 0.0) {
            return Err(inconsistent(format!("judge `{}` has weight {}; it is counted as a score and needs a weight >= 0", entry.id, entry.weight)));
        }
        if !(0.0..=1.0).contains(&entry.share) {
            return Err(inconsistent(format!(
                "judge `{}` has share {}; the share of judged samples is in [0, 1] (0.1 = 10 %)",
                entry.id, entry.share
            )));
        }
        let file = Path::new(&entry.library.file);
        if file.components().count() != 1 || file.file_name().is_none() {
            return Err(inconsistent(format!(
                "judge library `{}` must be a file name inside {}",
                entry.library.file,
                self.plugin_dir(&entry.id, &entry.version).display()
            )));
        }
        let dir = self.plugin_dir(&entry.id, &entry.version);
        let owner = format!("{}", pinned_by.display());
        expect_exact_files(&dir, &[entry.library.file.as_str()], &owner)?;
        let path = dir.join(&entry.library.file);
        let library = std::fs::read(&path).map_err(RegistryError::io(&path))?;
        // The hash first, so that any change to the library (one appended byte too) is reported
        // with both hashes; then the size.
        let actual = sha256_hex(&library);
        if actual != entry.library.sha256 {
            return Err(RegistryError::HashMismatch { path, expected: entry.library.sha256.clone(), actual, pinned_by: owner });
        }
        if library.len() as u64 != entry.library.size {
            return Err(RegistryError::SizeMismatch { path, expected: entry.library.size, actual: library.len() as u64, pinned_by: owner });
        }
        Ok(VerifiedJudge { entry: entry.clone(), library, path, registry_root: self.root.clone() })
    }

    /// The `files` list of a rule set: its rules' files ([`Self::file_entries`]) and, with a
    /// judge, its library; sorted by path.
    pub fn ruleset_files(&self, rules: &[VerifiedRule], judge: Option<&JudgeEntry>) -> Result<Vec<FileEntry>, RegistryError> {
        let mut files = self.file_entries(rules)?;
        if let Some(judge) = judge {
            let path = self.plugin_dir(&judge.id, &judge.version).join(&judge.library.file);
            let bytes = std::fs::read(&path).map_err(RegistryError::io(&path))?;
            files.push(self.library_file_entry(&path, &sha256_hex(&bytes), bytes.len() as u64));
            files.sort_by(|a, b| a.path.cmp(&b.path));
        }
        Ok(files)
    }

    fn library_file_entry(&self, path: &Path, sha256: &str, size: u64) -> FileEntry {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        FileEntry { path: rel.to_string_lossy().replace('\\', "/"), sha256: sha256.to_string(), size }
    }

    /// Names under `rules/` or `rulesets/`, sorted.
    pub fn names(&self, kind: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join(kind))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// Versions of one rule (`kind = "rules"`) or rule set (`"rulesets"`), ascending.
    pub fn versions(&self, kind: &str, name: &str) -> Vec<semver::Version> {
        let mut versions: Vec<semver::Version> = std::fs::read_dir(self.root.join(kind).join(name))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|v| v.parse().ok()))
            .collect();
        versions.sort();
        versions
    }

    fn ensure_exists(&self, kind: &'static str, dir_kind: &str, r: &VersionRef) -> Result<(), RegistryError> {
        let versions = self.versions(dir_kind, &r.name);
        if versions.contains(&r.version) {
            return Ok(());
        }
        if versions.is_empty() {
            let known = self.names(dir_kind);
            return Err(RegistryError::UnknownName {
                kind,
                name: r.name.clone(),
                root: self.root.clone(),
                known: if known.is_empty() { "none".into() } else { known.join(", ") },
            });
        }
        Err(RegistryError::UnknownVersion {
            kind,
            name: r.name.clone(),
            version: r.version.clone(),
            versions: versions.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
        })
    }

    /// Reads and parses `rule.json` (unknown fields refused) and checks it names its folder.
    pub fn read_rule_manifest(&self, r: &VersionRef) -> Result<(RuleManifest, String), RegistryError> {
        self.ensure_exists("rule", "rules", r)?;
        let path = self.rule_dir(&r.name, &r.version).join(RULE_MANIFEST);
        let (manifest, sha) = read_json::<RuleManifest>(&path, "rule manifest")?;
        if manifest.id != r.name || manifest.version != r.version {
            return Err(RegistryError::Inconsistent { path, msg: format!("declares {} but lies in the folder of {r}", manifest.reference()) });
        }
        Ok((manifest, sha))
    }

    /// Loads a rule version and checks every file against its manifest.
    pub fn load_rule(&self, r: &VersionRef) -> Result<VerifiedRule, RegistryError> {
        let (manifest, manifest_sha256) = self.read_rule_manifest(r)?;
        let dir = self.rule_dir(&r.name, &r.version);
        let pinned_by = format!("{}", dir.join(RULE_MANIFEST).display());
        expect_exact_files(&dir, &[RULE_MANIFEST, &manifest.module.file, &manifest.vectors.file], &pinned_by)?;
        let module = read_pinned(&dir.join(&manifest.module.file), &manifest.module.sha256, Some(manifest.module.size), &pinned_by)?;
        read_pinned(&dir.join(&manifest.vectors.file), &manifest.vectors.sha256, None, &pinned_by)?;
        Ok(VerifiedRule { manifest, manifest_sha256, module, dir })
    }

    /// Loads a rule set by exact version and verifies it end to end: every file, every pin, and,
    /// with a keyring, its signatures.
    pub fn load_ruleset(&self, r: &VersionRef) -> Result<VerifiedRuleSet, RegistryError> {
        self.load_ruleset_signed(r).map(|(ruleset, _)| ruleset)
    }

    /// Loads a rule set for scoring: [`Self::load_ruleset`], then, with a trust state, the
    /// revision check (a lower revision than the last accepted one is refused unless the policy
    /// allows a rollback, which is logged), and records it as the last accepted revision.
    /// `now` is RFC 3339 UTC.
    pub fn accept_ruleset(&self, r: &VersionRef, now: String) -> Result<AcceptedRuleSet, RegistryError> {
        let (ruleset, signers) = self.load_ruleset_signed(r)?;
        let revision = match &self.trust.state {
            Some(state) => Some(check_and_record_revision(
                state,
                self.trust.allow_rollback,
                &ruleset.manifest.name,
                &ruleset.manifest.version,
                ruleset.manifest.revision,
                &ruleset.sha256,
                now,
            )?),
            None => None,
        };
        Ok(AcceptedRuleSet { ruleset, signers, allow_unsigned: self.trust.allow_unsigned, required_signatures: self.trust.required(), revision })
    }

    /// Loads the rule set a run was pinned to at its step 0, for its resume: signatures and every
    /// pin are checked as for any load, and its sha256 must be `pinned`; the revision guard is
    /// not consulted, so revisions accepted since (by anyone) do not stop the run, and nothing is
    /// recorded in the trust state.
    pub fn accept_pinned(&self, r: &VersionRef, pinned: &str) -> Result<AcceptedRuleSet, RegistryError> {
        let (ruleset, signers) = self.load_ruleset_signed(r)?;
        if ruleset.sha256 != pinned {
            let path = self.ruleset_dir(&r.name, &r.version).join(RULESET_MANIFEST);
            return Err(RegistryError::HashMismatch {
                path,
                expected: pinned.to_string(),
                actual: ruleset.sha256,
                pinned_by: "the run's checkpoint (a run is scored by the rule set it started with)".into(),
            });
        }
        Ok(AcceptedRuleSet {
            ruleset,
            signers,
            allow_unsigned: self.trust.allow_unsigned,
            required_signatures: self.trust.required(),
            revision: None,
        })
    }

    /// The refusal of a load that has no keyring to verify `r` against, naming the registry's
    /// own keyring path (what a load and `rules verify` both say).
    pub fn no_keyring(&self, r: &VersionRef) -> TrustError {
        TrustError::NoKeyring { reference: r.to_string(), registry_keyring: self.root.join(REGISTRY_KEYRING) }
    }

    /// [`Self::load_ruleset`] with the signers it verified (`None` without a keyring).
    pub fn load_ruleset_signed(&self, r: &VersionRef) -> Result<(VerifiedRuleSet, Option<Vec<Signer>>), RegistryError> {
        self.ensure_exists("rule set", "rulesets", r)?;
        let dir = self.ruleset_dir(&r.name, &r.version);
        let path = dir.join(RULESET_MANIFEST);
        let (manifest, sha256, canonical) = read_json_canonical::<RuleSetManifest>(&path, "rule set manifest")?;
        if manifest.name != r.name || manifest.version != r.version {
            return Err(RegistryError::Inconsistent { path, msg: format!("declares {} but lies in the folder of {r}", manifest.reference()) });
        }
        // The rule-set folder holds the manifest and detached signatures, nothing else.
        for entry in std::fs::read_dir(&dir).map_err(RegistryError::io(&dir))? {
            let entry = entry.map_err(RegistryError::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != RULESET_MANIFEST && !name.ends_with(".sig") {
                return Err(RegistryError::ExtraFile { path: entry.path(), owner: format!("rule set {r}") });
            }
        }
        // Authenticity of the root before any of its pins is trusted.
        // Fail closed: without a keyring, or with too few signatures, only the operator's
        // explicit `allow_unsigned` lets it through; a signature that does not verify never does.
        let signers = match &self.trust.keyring {
            Some(keyring) => match verify_signatures(keyring, self.trust.required(), &r.to_string(), &dir, &path, &canonical, &sha256) {
                Ok(signers) => Some(signers),
                Err(e @ (TrustError::Unsigned { .. } | TrustError::TooFewSignatures { .. })) if self.trust.allow_unsigned => {
                    tracing::warn!(ruleset = %r, "accepted without enough signatures by --allow-unsigned: {e}");
                    None
                }
                Err(e) => return Err(e.into()),
            },
            None if self.trust.allow_unsigned => {
                tracing::debug!(ruleset = %r, "no keyring and --allow-unsigned: signatures not checked");
                None
            }
            None => return Err(self.no_keyring(r).into()),
        };
        let owner = format!("{}", path.display());
        let mut rules = Vec::with_capacity(manifest.rules.len());
        for entry in &manifest.rules {
            let rule = self.load_rule(&VersionRef { name: entry.id.clone(), version: entry.version.clone() })?;
            if rule.manifest_sha256 != entry.manifest_sha256 {
                return Err(RegistryError::HashMismatch {
                    path: rule.dir.join(RULE_MANIFEST),
                    expected: entry.manifest_sha256.clone(),
                    actual: rule.manifest_sha256.clone(),
                    pinned_by: owner.clone(),
                });
            }
            check_weight_sign(&path, &entry.id, rule.manifest.kind, entry.weight)?;
            rules.push(rule);
        }
        let judge = manifest.judge.as_ref().map(|entry| self.load_judge(entry, &path)).transpose()?;
        // The declared file list must be exactly the files of the rules (and judge) it uses.
        let mut actual = self.file_entries(&rules)?;
        if let Some(j) = &judge {
            // Just hashed by load_judge: not read a second time.
            actual.push(self.library_file_entry(&j.path, &j.entry.library.sha256, j.library.len() as u64));
            actual.sort_by(|a, b| a.path.cmp(&b.path));
        }
        if actual != manifest.files {
            let declared: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
            let found: Vec<&str> = actual.iter().map(|f| f.path.as_str()).collect();
            return Err(RegistryError::Inconsistent {
                path,
                msg: format!("`files` does not match the rules' files (declared {declared:?}, found {found:?}); re-create the rule set"),
            });
        }
        Ok((VerifiedRuleSet { manifest, sha256, rules, judge }, signers))
    }

    /// The `files` list a rule set over `rules` must declare, sorted by path.
    pub fn file_entries(&self, rules: &[VerifiedRule]) -> Result<Vec<FileEntry>, RegistryError> {
        let mut files = Vec::new();
        for rule in rules {
            for name in [RULE_MANIFEST, rule.manifest.module.file.as_str(), rule.manifest.vectors.file.as_str()] {
                let path = rule.dir.join(name);
                let bytes = std::fs::read(&path).map_err(RegistryError::io(&path))?;
                let rel = path.strip_prefix(&self.root).unwrap_or(&path);
                files.push(FileEntry { path: rel.to_string_lossy().replace('\\', "/"), sha256: sha256_hex(&bytes), size: bytes.len() as u64 });
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup();
        Ok(files)
    }
}

/// A penalty needs a negative weight, a score a positive one, a gate zero: a sign error would
/// silently reward what the rule punishes.
pub fn check_weight_sign(path: &Path, id: &str, kind: RuleKind, weight: f64) -> Result<(), RegistryError> {
    let ok = weight.is_finite()
        && match kind {
            RuleKind::Score => weight >= 0.0,
            RuleKind::Penalty => weight <= 0.0,
            RuleKind::Gate => weight == 0.0,
        };
    if ok {
        return Ok(());
    }
    let want = match kind {
        RuleKind::Score => "a weight >= 0",
        RuleKind::Penalty => "a weight <= 0 (penalties subtract: write -0.2, not 0.2)",
        RuleKind::Gate => "weight 0 (gates act through `aggregation.gates`)",
    };
    Err(RegistryError::Inconsistent {
        path: path.to_path_buf(),
        msg: format!("rule `{id}` is a {} and has weight {weight}; it needs {want}", kind.as_str()),
    })
}

/// Parses a JSON file strictly and returns it with the sha256 of its canonical bytes.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<(T, String), RegistryError> {
    read_json_canonical(path, what).map(|(parsed, sha, _)| (parsed, sha))
}

/// [`read_json`], also returning the canonical bytes (what signatures are made over), all from
/// one read of the file.
pub fn read_json_canonical<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<(T, String, Vec<u8>), RegistryError> {
    let text = std::fs::read_to_string(path).map_err(RegistryError::io(path))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| RegistryError::Parse { path: path.to_path_buf(), what, msg: e.to_string() })?;
    let canonical = canonical_json(&value);
    let sha = sha256_hex(&canonical);
    let parsed = serde_json::from_value(value).map_err(|e| RegistryError::Parse { path: path.to_path_buf(), what, msg: e.to_string() })?;
    Ok((parsed, sha, canonical))
}

fn read_pinned(path: &Path, sha256: &str, size: Option<u64>, pinned_by: &str) -> Result<Vec<u8>, RegistryError> {
    let bytes = std::fs::read(path).map_err(RegistryError::io(path))?;
    if let Some(size) = size
        && bytes.len() as u64 != size
    {
        return Err(RegistryError::SizeMismatch {
            path: path.to_path_buf(),
            expected: size,
            actual: bytes.len() as u64,
            pinned_by: pinned_by.to_string(),
        });
    }
    let actual = sha256_hex(&bytes);
    if actual != sha256 {
        return Err(RegistryError::HashMismatch { path: path.to_path_buf(), expected: sha256.to_string(), actual, pinned_by: pinned_by.to_string() });
    }
    Ok(bytes)
}

fn expect_exact_files(dir: &Path, expected: &[&str], owner: &str) -> Result<(), RegistryError> {
    for name in expected {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(RegistryError::MissingFile { path, owner: owner.to_string() });
        }
    }
    for entry in std::fs::read_dir(dir).map_err(RegistryError::io(dir))? {
        let entry = entry.map_err(RegistryError::io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !expected.contains(&name.as_str()) {
            return Err(RegistryError::ExtraFile { path: entry.path(), owner: owner.to_string() });
        }
    }
    Ok(())
}
