//! Trust: which public keys may sign rule sets (the keyring), how many distinct trusted
//! signatures a rule set needs, and the state file that remembers the last accepted revision
//! of each rule set so a lower one is refused unless the operator allows a rollback.
//!
//! A [`TrustPolicy`] is attached to a [`super::Registry`]; once it carries a keyring, every
//! rule-set load verifies signatures: there is no unsigned path around it.
//!
//! Formats:
//! - keyring (TOML): `min_signatures = N` (default 1) and `[[keys]]` with `id`, `name`,
//!   `public_key` (hex), optional `role` and `added`. The id must be the key's derived id.
//! - trust state (JSON, `medrl-trust-state/1`): per rule-set name, the last accepted
//!   `revision`, `version`, `sha256` and `accepted_at`.

use super::signing::{KeyId, SIG_EXTENSION, SignatureFile, key_id_of_public};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STATE_FORMAT: &str = "medrl-trust-state/1";

/// Why a rule set is not trusted. Each variant names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid {what}: {msg}")]
    Parse { path: PathBuf, what: &'static str, msg: String },
    #[error(
        "rule set {reference} is not signed: {dir} holds no *.sig file, and a keyring is configured ({keyring}), so every rule set must carry {required} signature(s) by trusted keys; sign it with `medrl rules sign {reference} --key KEY`"
    )]
    Unsigned { reference: String, dir: PathBuf, keyring: PathBuf, required: usize },
    #[error(
        "{path}: invalid signature by trusted key {key_id} ({signer}): {reason}; the rule set or the signature was altered: restore both from the publisher, or re-sign"
    )]
    BadSignature { path: PathBuf, key_id: KeyId, signer: String, reason: String },
    /// `signed` and `actual` are `name@version (sha256 …)`.
    #[error("{path}: signs {signed} but {manifest} is {actual}; ruleset.json changed after signing: restore it or re-sign")]
    WrongRuleSet { path: PathBuf, signed: String, manifest: PathBuf, actual: String },
    #[error("{path}: named {found} but signed by key {key_id}; a signature file is named <key_id>.sig")]
    Misnamed { path: PathBuf, found: String, key_id: KeyId },
    #[error("rule set {reference} has {found} valid signature(s) by distinct trusted keys; the policy ({keyring}) requires {required}.{details}")]
    TooFewSignatures { reference: String, found: usize, required: usize, keyring: PathBuf, details: String },
    #[error(
        "rule set {reference} is revision {revision}, lower than revision {accepted} ({accepted_version}) accepted before according to {state}; refusing a rollback: pass --allow-rollback if it is intended (it is logged)"
    )]
    Rollback { reference: String, revision: u64, accepted: u64, accepted_version: String, state: PathBuf },
    /// `accepted` is `version with sha256 …` as the state records it.
    #[error(
        "rule set {reference} claims revision {revision}, which {state} records as {accepted}, but its sha256 is {actual}; a revision number was reused: publish a new version instead"
    )]
    RevisionReused { reference: String, revision: u64, accepted: String, actual: String, state: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError + '_ {
    move |source| TrustError::Io { path: path.to_path_buf(), source }
}

/// One trusted public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    /// The key's derived id (first 16 hex digits of sha256 of the public key).
    pub id: KeyId,
    /// Who holds it.
    pub name: String,
    /// 32 bytes, hex.
    pub public_key: String,
    /// What the holder signs as (e.g. "clinical-safety", "compliance"); default empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// When it was added (YYYY-MM-DD); default empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub added: String,
}

fn one() -> usize {
    1
}

/// The keyring file: trusted keys and the signature threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyring {
    /// Valid signatures by distinct trusted keys every rule set needs. Default 1.
    #[serde(default = "one")]
    pub min_signatures: usize,
    /// The trusted keys. Default none (then nothing verifies).
    #[serde(default)]
    pub keys: Vec<TrustedKey>,
    /// Where it was read from, for messages.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Keyring {
    /// Reads and checks a keyring: every id matches its key, no key twice, threshold ≥ 1.
    pub fn read(path: &Path) -> Result<Self, TrustError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let bad = |msg: String| TrustError::Parse { path: path.into(), what: "keyring", msg };
        let mut ring: Keyring = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        ring.path = path.to_path_buf();
        if ring.min_signatures == 0 {
            return Err(bad("min_signatures is 0; a keyring that requires no signature would trust anything; use 1 or more".into()));
        }
        for (i, key) in ring.keys.iter().enumerate() {
            let derived = key_id_of_public(&key.public_key).map_err(|e| bad(format!("key `{}`: {e}", key.id)))?;
            if derived != key.id {
                return Err(bad(format!("key `{}` ({}) has the public key of id {derived}; ids are derived from the key", key.id, key.name)));
            }
            if ring.keys[..i].iter().any(|k| k.id == key.id) {
                return Err(bad(format!("key `{}` is listed twice", key.id)));
            }
        }
        Ok(ring)
    }

    pub fn get(&self, id: &KeyId) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| &k.id == id)
    }
}

/// A valid signature by a trusted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signer {
    pub key_id: KeyId,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    pub signed_at: String,
}

/// The signature files in a rule-set folder, sorted by name.
pub fn signature_files(dir: &Path) -> Result<Vec<PathBuf>, TrustError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == SIG_EXTENSION) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Checks the signatures in `dir` over `canonical` (the canonical bytes of `manifest_path`,
/// whose sha256 is `sha256`) against `keyring`. A signature by a key not in the keyring does
/// not count (another organisation may have co-signed); a signature by a trusted key that does
/// not verify, or one over other bytes, is an error at once: something was altered.
pub fn verify_signatures(
    keyring: &Keyring,
    min_signatures: usize,
    reference: &str,
    dir: &Path,
    manifest_path: &Path,
    canonical: &[u8],
    sha256: &str,
) -> Result<Vec<Signer>, TrustError> {
    let files = signature_files(dir)?;
    if files.is_empty() {
        return Err(TrustError::Unsigned { reference: reference.into(), dir: dir.into(), keyring: keyring.path.clone(), required: min_signatures });
    }
    let mut signers: Vec<Signer> = Vec::new();
    let mut not_counted = Vec::new();
    for path in files {
        let sig = SignatureFile::read(&path).map_err(|e| TrustError::Parse { path: path.clone(), what: "signature file", msg: e.to_string() })?;
        let found = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if found != sig.file_name() {
            return Err(TrustError::Misnamed { path, found, key_id: sig.key_id });
        }
        if sig.ruleset != reference || sig.ruleset_sha256 != sha256 {
            return Err(TrustError::WrongRuleSet {
                path,
                signed: format!("{} (sha256 {})", sig.ruleset, sig.ruleset_sha256),
                manifest: manifest_path.into(),
                actual: format!("{reference} with sha256 {sha256}"),
            });
        }
        let Some(key) = keyring.get(&sig.key_id) else {
            not_counted.push(format!(
                "\n  {}: signed by key {} ({}), which is not in the keyring {}",
                path.display(),
                sig.key_id,
                sig.signer,
                keyring.path.display()
            ));
            continue;
        };
        sig.verify(&key.public_key, canonical).map_err(|reason| TrustError::BadSignature {
            path: path.clone(),
            key_id: sig.key_id.clone(),
            signer: key.name.clone(),
            reason,
        })?;
        if !signers.iter().any(|s| s.key_id == key.id) {
            signers.push(Signer { key_id: key.id.clone(), name: key.name.clone(), role: key.role.clone(), signed_at: sig.signed_at.clone() });
        }
    }
    if signers.len() < min_signatures {
        let mut details: String = not_counted.concat();
        if !signers.is_empty() {
            let ids: Vec<String> = signers.iter().map(|s| format!("{} ({})", s.key_id, s.name)).collect();
            details.push_str(&format!("\n  counted: {}", ids.join(", ")));
        }
        details.push_str(&format!("\n  add signatures with `medrl rules sign {reference} --key KEY` by other trusted keys"));
        return Err(TrustError::TooFewSignatures {
            reference: reference.into(),
            found: signers.len(),
            required: min_signatures,
            keyring: keyring.path.clone(),
            details,
        });
    }
    if !not_counted.is_empty() {
        tracing::warn!(ruleset = reference, "signatures by keys outside the keyring were not counted:{}", not_counted.concat());
    }
    Ok(signers)
}

/// The last accepted revision of one rule-set name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedRevision {
    pub revision: u64,
    pub version: semver::Version,
    pub sha256: String,
    /// RFC 3339 UTC.
    pub accepted_at: String,
}

/// The trust state file (`medrl-trust-state/1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustState {
    /// Always `medrl-trust-state/1`.
    pub format: String,
    /// By rule-set name.
    #[serde(default)]
    pub rulesets: BTreeMap<String, AcceptedRevision>,
}

impl TrustState {
    /// Reads the state; a missing file is an empty state (nothing accepted yet).
    pub fn read(path: &Path) -> Result<Self, TrustError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(TrustState { format: STATE_FORMAT.into(), rulesets: BTreeMap::new() });
            }
            Err(e) => return Err(TrustError::Io { path: path.into(), source: e }),
        };
        let state: TrustState =
            serde_json::from_str(&text).map_err(|e| TrustError::Parse { path: path.into(), what: "trust state", msg: e.to_string() })?;
        if state.format != STATE_FORMAT {
            return Err(TrustError::Parse {
                path: path.into(),
                what: "trust state",
                msg: format!("format `{}`, expected {STATE_FORMAT}", state.format),
            });
        }
        Ok(state)
    }

    /// Writes the state atomically (a temporary file renamed over the old one).
    pub fn write(&self, path: &Path) -> Result<(), TrustError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut json = serde_json::to_vec_pretty(self).expect("the state always serialises");
        json.push(b'\n');
        std::fs::write(&tmp, json).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }
}

/// How rule sets are trusted: attached to a registry.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    /// Trusted keys. `None`: signatures are not checked (and every load says so in the log).
    pub keyring: Option<Keyring>,
    /// Overrides the keyring's `min_signatures` when set (it may only raise it).
    pub min_signatures: Option<usize>,
    /// The file that remembers the last accepted revision per rule-set name. `None`: no
    /// rollback check. The trainer keeps it in its run state.
    pub state: Option<PathBuf>,
    /// Accept a revision lower than the last accepted one (logged as a rollback).
    pub allow_rollback: bool,
}

impl TrustPolicy {
    /// The signature threshold in force.
    pub fn required(&self) -> usize {
        let base = self.keyring.as_ref().map_or(0, |k| k.min_signatures);
        self.min_signatures.map_or(base, |m| m.max(base))
    }
}

/// The outcome of the revision check for one accepted rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionCheck {
    /// The last revision accepted before this one, if any.
    pub previous: Option<AcceptedRevision>,
    /// Whether this acceptance went below `previous` by the operator's `--allow-rollback`.
    pub rollback: bool,
}

/// Checks `revision` of `name` against the state at `state_path` and records it as accepted.
#[allow(clippy::too_many_arguments)]
pub fn check_and_record_revision(
    state_path: &Path,
    allow_rollback: bool,
    name: &str,
    version: &semver::Version,
    revision: u64,
    sha256: &str,
    now: String,
) -> Result<RevisionCheck, TrustError> {
    let mut state = TrustState::read(state_path)?;
    let reference = format!("{name}@{version}");
    let previous = state.rulesets.get(name).cloned();
    let mut rollback = false;
    if let Some(prev) = &previous {
        if revision == prev.revision && sha256 != prev.sha256 {
            return Err(TrustError::RevisionReused {
                reference,
                revision,
                accepted: format!("{} with sha256 {}", prev.version, prev.sha256),
                actual: sha256.into(),
                state: state_path.into(),
            });
        }
        if revision < prev.revision {
            if !allow_rollback {
                return Err(TrustError::Rollback {
                    reference,
                    revision,
                    accepted: prev.revision,
                    accepted_version: prev.version.to_string(),
                    state: state_path.into(),
                });
            }
            rollback = true;
            tracing::warn!(
                ruleset = %reference,
                revision,
                from_revision = prev.revision,
                from_version = %prev.version,
                state = %state_path.display(),
                "rule-set rollback accepted by --allow-rollback"
            );
        }
    }
    let unchanged = previous.as_ref().is_some_and(|p| p.revision == revision);
    if !unchanged {
        state.rulesets.insert(name.to_string(), AcceptedRevision { revision, version: version.clone(), sha256: sha256.into(), accepted_at: now });
        state.write(state_path)?;
    }
    Ok(RevisionCheck { previous, rollback })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_only_go_up_unless_a_rollback_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let v = |s: &str| s.parse::<semver::Version>().unwrap();
        let first = check_and_record_revision(&state, false, "ms", &v("1.1.0"), 2, "b", "t1".into()).unwrap();
        assert_eq!(first, RevisionCheck { previous: None, rollback: false });
        // The same revision again is fine and leaves the state as it was.
        check_and_record_revision(&state, false, "ms", &v("1.1.0"), 2, "b", "t2".into()).unwrap();
        assert_eq!(TrustState::read(&state).unwrap().rulesets["ms"].accepted_at, "t1");
        let err = check_and_record_revision(&state, false, "ms", &v("1.0.0"), 1, "a", "t3".into()).unwrap_err();
        assert!(err.to_string().contains("lower than revision 2") && err.to_string().contains("--allow-rollback"), "{err}");
        let reused = check_and_record_revision(&state, false, "ms", &v("1.2.0"), 2, "c", "t3".into()).unwrap_err();
        assert!(matches!(reused, TrustError::RevisionReused { .. }), "{reused}");
        let rolled = check_and_record_revision(&state, true, "ms", &v("1.0.0"), 1, "a", "t4".into()).unwrap();
        assert!(rolled.rollback);
        assert_eq!(rolled.previous.unwrap().revision, 2);
        assert_eq!(TrustState::read(&state).unwrap().rulesets["ms"].revision, 1);
        // Other names are independent.
        check_and_record_revision(&state, false, "other", &v("0.1.0"), 1, "z", "t5".into()).unwrap();
    }

    #[test]
    fn keyrings_refuse_wrong_ids_duplicates_and_a_zero_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let key = super::super::signing::KeyFile::generate("k", String::new(), String::new()).unwrap();
        let write = |body: &str| {
            let p = dir.path().join("ring.toml");
            std::fs::write(&p, body).unwrap();
            Keyring::read(&p)
        };
        let entry = format!("[[keys]]\nid = \"{}\"\nname = \"k\"\npublic_key = \"{}\"\n", key.key_id, key.public_key);
        let ring = write(&entry).unwrap();
        assert_eq!(ring.min_signatures, 1);
        assert!(write(&format!("{entry}{entry}")).unwrap_err().to_string().contains("twice"));
        assert!(write(&format!("min_signatures = 0\n{entry}")).unwrap_err().to_string().contains("min_signatures is 0"));
        let wrong = entry.replace(&key.key_id.0, "0000000000000000");
        assert!(write(&wrong).unwrap_err().to_string().contains("derived"));
    }
}
