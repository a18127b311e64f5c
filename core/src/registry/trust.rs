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
//!   `min_signatures` is read wherever it stands: TOML puts a key written after `[[keys]]` into
//!   the last key's table, and it is taken from there.
//! - trust state (JSON lines, `medrl-trust-state/2`): one line per acceptance (rule-set name,
//!   `revision`, `version`, `sha256`, `accepted_at`, `rollback`), each carrying the sha256 of the
//!   line before it and its own, so an edited, reordered or removed line is found on the next
//!   read. The last line of a name is its accepted revision; every line of a name is checked
//!   when a revision number comes back, so a reused number never passes, even after a rollback.
//!   By default it lives with the registry (`<registry>/trust-state.jsonl`).

use super::signing::{KeyId, SIG_EXTENSION, SignatureFile, key_id_of_public};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const STATE_FORMAT: &str = "medrl-trust-state/2";

/// The trust state's file name in a registry root, its default place.
pub const STATE_FILE: &str = "trust-state.jsonl";

/// The keyring's place in a registry root: the default keyring of every rule-set load.
pub const REGISTRY_KEYRING: &str = "keys/keyring.toml";

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
    #[error(
        "rule set {reference} cannot be verified: no keyring is configured and the registry has none ({registry_keyring} is missing); pass --keyring FILE (or MEDRL_KEYRING), add one with `medrl keys generate --add-to {registry_keyring}`, or pass --allow-unsigned to score unsigned rule sets (it is printed and recorded in the run and the audit log)"
    )]
    NoKeyring { reference: String, registry_keyring: PathBuf },
    #[error("{path}:{line}: {msg}; the trust state is append-only and hash-chained: restore it from a backup, never edit it by hand")]
    StateTampered { path: PathBuf, line: usize, msg: String },
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
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        // `min_signatures` written after a `[[keys]]` header lands in that key's table: take it
        // from there, so the threshold counts wherever it stands in the file.
        let mut found: Vec<toml::Value> = doc.get("min_signatures").cloned().into_iter().collect();
        if let Some(toml::Value::Array(keys)) = doc.get_mut("keys") {
            for key in keys.iter_mut().filter_map(toml::Value::as_table_mut) {
                found.extend(key.remove("min_signatures"));
            }
        }
        if found.len() > 1 {
            let values: Vec<String> = found.iter().map(toml::Value::to_string).collect();
            return Err(bad(format!(
                "min_signatures is given {} times ({}); give it once, before the first [[keys]]",
                found.len(),
                values.join(", ")
            )));
        }
        if let Some(m) = found.pop() {
            doc.insert("min_signatures".into(), m);
        }
        let mut ring: Keyring = toml::Value::Table(doc).try_into().map_err(|e: toml::de::Error| bad(e.to_string()))?;
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

    /// Adds `key` to the keyring file at `path`, creating it with `min_signatures` written out
    /// when it does not exist (an existing file's threshold is kept), and reads the result back.
    pub fn add_key(path: &Path, key: &TrustedKey, min_signatures_if_new: usize) -> Result<Keyring, TrustError> {
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(TrustError::Io { path: path.into(), source: e }),
        };
        if existing.is_some() {
            let ring = Keyring::read(path)?;
            if ring.get(&key.id).is_some() {
                return Err(TrustError::Parse { path: path.into(), what: "keyring", msg: format!("key `{}` is already in it", key.id) });
            }
        }
        let mut entry = toml::Table::new();
        entry.insert("keys".into(), toml::Value::Array(vec![toml::Value::try_from(key).expect("a key is plain data")]));
        let entry = toml::to_string(&entry).expect("a key is plain data");
        let text = match existing {
            Some(mut text) => {
                if !text.ends_with('\n') && !text.is_empty() {
                    text.push('\n');
                }
                text + "\n" + &entry
            }
            None => format!(
                "# Public keys trusted to sign rule sets, and how many distinct trusted signatures each\n# rule set needs.\nmin_signatures = {}\n\n{entry}",
                min_signatures_if_new.max(1)
            ),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        // Checked before it replaces the old file, so a bad result leaves the keyring as it was.
        let ring = Keyring::read(&tmp).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(Keyring { path: path.to_path_buf(), ..ring })
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

/// One acceptance of a rule-set revision: a line of the trust state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedRevision {
    /// The rule set's name.
    pub name: String,
    pub revision: u64,
    pub version: semver::Version,
    /// sha256 of the canonical `ruleset.json`.
    pub sha256: String,
    /// RFC 3339 UTC.
    pub accepted_at: String,
    /// Accepted below the previous revision by `--allow-rollback`.
    #[serde(default)]
    pub rollback: bool,
}

/// A line of the state file: the acceptance, the hash of the line before it (64 zeros for the
/// first) and its own hash over both.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateLine {
    format: String,
    #[serde(flatten)]
    accepted: AcceptedRevision,
    prev: String,
    hash: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl StateLine {
    fn new(accepted: AcceptedRevision, prev: String) -> Self {
        let hash = Self::digest(&accepted, &prev);
        StateLine { format: STATE_FORMAT.into(), accepted, prev, hash }
    }

    /// sha256 over the previous hash and the acceptance's canonical JSON.
    fn digest(accepted: &AcceptedRevision, prev: &str) -> String {
        let body = serde_json::to_string(accepted).expect("an acceptance is plain data");
        super::hash::sha256_hex(format!("{prev}\n{body}").as_bytes())
    }
}

/// The trust state: every acceptance in order, its chain checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustState {
    pub accepted: Vec<AcceptedRevision>,
    /// Hash of the last line (64 zeros when empty).
    pub head: String,
}

impl TrustState {
    /// Reads the state and checks its chain; a missing file is an empty state (nothing accepted
    /// yet).
    pub fn read(path: &Path) -> Result<Self, TrustError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TrustState { accepted: Vec::new(), head: GENESIS.into() }),
            Err(e) => return Err(TrustError::Io { path: path.into(), source: e }),
        };
        let tampered = |line: usize, msg: String| TrustError::StateTampered { path: path.into(), line, msg };
        if text.trim_start().starts_with('{') && text.contains("\"medrl-trust-state/1\"") {
            return Err(TrustError::Parse {
                path: path.into(),
                what: "trust state",
                msg: format!(
                    "it is a {} file, which could be edited unnoticed; move it aside: the next load starts a hash-chained {STATE_FORMAT} state there",
                    "medrl-trust-state/1"
                ),
            });
        }
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(tampered(text.lines().count(), "the last line is incomplete (a crash or a full disk while it was written?)".into()));
        }
        let mut state = TrustState { accepted: Vec::new(), head: GENESIS.into() };
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let parsed: StateLine = serde_json::from_str(line).map_err(|e| tampered(n, format!("not a trust-state line: {e}")))?;
            if parsed.format != STATE_FORMAT {
                return Err(tampered(n, format!("format `{}`, expected {STATE_FORMAT}", parsed.format)));
            }
            if parsed.prev != state.head {
                return Err(tampered(
                    n,
                    format!("it follows {} but the line before it hashes to {}: a line was removed or reordered", parsed.prev, state.head),
                ));
            }
            let expected = StateLine::digest(&parsed.accepted, &parsed.prev);
            if parsed.hash != expected {
                return Err(tampered(n, format!("its hash is {} but its content hashes to {expected}: it was edited", parsed.hash)));
            }
            state.head = parsed.hash;
            state.accepted.push(parsed.accepted);
        }
        Ok(state)
    }

    /// The last accepted revision of `name`.
    pub fn last(&self, name: &str) -> Option<&AcceptedRevision> {
        self.accepted.iter().rev().find(|a| a.name == name)
    }

    /// Appends one acceptance to the file at `path` (one write of one line, then fsync).
    fn append(&mut self, path: &Path, accepted: AcceptedRevision) -> Result<(), TrustError> {
        use std::io::Write;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let line = StateLine::new(accepted, self.head.clone());
        let mut bytes = serde_json::to_vec(&line).expect("a state line is plain data");
        bytes.push(b'\n');
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io(path))?;
        file.write_all(&bytes).and_then(|_| file.sync_data()).map_err(io(path))?;
        self.head = line.hash;
        self.accepted.push(line.accepted);
        Ok(())
    }
}

/// Records `accepted` in the state at `path` as it is, without the revision checks: for tools
/// and tests that set a state up (`medrl` itself records through [`check_and_record_revision`]).
pub fn record_accepted(path: &Path, accepted: AcceptedRevision) -> Result<(), TrustError> {
    TrustState::read(path)?.append(path, accepted)
}

/// How rule sets are trusted: attached to a registry.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    /// Trusted keys. `None`: a load is refused unless `allow_unsigned`.
    pub keyring: Option<Keyring>,
    /// Overrides the keyring's `min_signatures` when set (it may only raise it).
    pub min_signatures: Option<usize>,
    /// The file that remembers the last accepted revision per rule-set name. `None`: no
    /// rollback check. The trainer keeps it in its run state.
    pub state: Option<PathBuf>,
    /// Accept a revision lower than the last accepted one (logged as a rollback).
    pub allow_rollback: bool,
    /// Score a rule set whose signatures cannot be checked (no keyring) or that carries too few
    /// (`--allow-unsigned`): the operator's explicit, recorded opt-out. A signature that does not
    /// verify, or one over other bytes, is refused all the same.
    pub allow_unsigned: bool,
}

impl TrustPolicy {
    /// No keyring and no trust state, unsigned rule sets accepted: integrity is checked (every
    /// pin), authenticity is not. For tools that only read rule sets (inspect, diff, doc) and
    /// for tests and benchmarks; scoring goes through [`crate::reward::RuleSource`].
    pub fn integrity_only() -> Self {
        TrustPolicy { allow_unsigned: true, ..TrustPolicy::default() }
    }

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

/// Checks `revision` of `name` against the state at `state_path` and records it as accepted:
/// a lower revision than the last accepted one is refused unless `allow_rollback`; a revision
/// number that any earlier acceptance of `name` recorded with other content is always refused.
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
    if let Some(reused) = state.accepted.iter().find(|a| a.name == name && a.revision == revision && a.sha256 != sha256) {
        return Err(TrustError::RevisionReused {
            reference,
            revision,
            accepted: format!("{} with sha256 {} (accepted {})", reused.version, reused.sha256, reused.accepted_at),
            actual: sha256.into(),
            state: state_path.into(),
        });
    }
    let previous = state.last(name).cloned();
    let mut rollback = false;
    if let Some(prev) = &previous
        && revision < prev.revision
    {
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
    let unchanged = previous.as_ref().is_some_and(|p| p.revision == revision);
    if !unchanged {
        let accepted = AcceptedRevision { name: name.into(), revision, version: version.clone(), sha256: sha256.into(), accepted_at: now, rollback };
        state.append(state_path, accepted)?;
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
        assert_eq!(TrustState::read(&state).unwrap().last("ms").unwrap().accepted_at, "t1");
        let err = check_and_record_revision(&state, false, "ms", &v("1.0.0"), 1, "a", "t3".into()).unwrap_err();
        assert!(err.to_string().contains("lower than revision 2") && err.to_string().contains("--allow-rollback"), "{err}");
        let reused = check_and_record_revision(&state, false, "ms", &v("1.2.0"), 2, "c", "t3".into()).unwrap_err();
        assert!(matches!(reused, TrustError::RevisionReused { .. }), "{reused}");
        let rolled = check_and_record_revision(&state, true, "ms", &v("1.0.0"), 1, "a", "t4".into()).unwrap();
        assert!(rolled.rollback);
        assert_eq!(rolled.previous.unwrap().revision, 2);
        assert_eq!(TrustState::read(&state).unwrap().last("ms").unwrap().revision, 1);
        // After the rollback, revision 2 with other content is still a reused number; with its
        // own content it may come back.
        let reused = check_and_record_revision(&state, false, "ms", &v("1.3.0"), 2, "d", "t5".into()).unwrap_err();
        assert!(reused.to_string().contains("a revision number was reused"), "{reused}");
        check_and_record_revision(&state, false, "ms", &v("1.1.0"), 2, "b", "t6".into()).unwrap();
        // Other names are independent.
        check_and_record_revision(&state, false, "other", &v("0.1.0"), 1, "z", "t7".into()).unwrap();
        let read = TrustState::read(&state).unwrap();
        assert_eq!(read.accepted.iter().map(|a| (a.revision, a.rollback)).collect::<Vec<_>>(), [(2, false), (1, true), (2, false), (1, false)]);
    }

    #[test]
    fn an_edited_removed_or_torn_state_line_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.jsonl");
        let v = |s: &str| s.parse::<semver::Version>().unwrap();
        for (rev, sha) in [(1, "a"), (2, "b"), (3, "c")] {
            check_and_record_revision(&state, false, "ms", &v("1.0.0"), rev, sha, "t".into()).unwrap();
        }
        let good = std::fs::read_to_string(&state).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let cases = [
            ("edited", good.replacen("\"revision\":3", "\"revision\":1", 1), ":3: its hash is"),
            ("removed", format!("{}\n{}\n", lines[0], lines[2]), "a line was removed or reordered"),
            ("cut", format!("{}\n", lines[0]) + &lines[1][..20], "the last line is incomplete"),
        ];
        for (what, text, says) in cases {
            std::fs::write(&state, text).unwrap();
            let err = TrustState::read(&state).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("restore it from a backup"), "{what}: {err}");
            let err = check_and_record_revision(&state, false, "ms", &v("1.0.0"), 3, "c", "t".into()).unwrap_err();
            assert!(matches!(err, TrustError::StateTampered { .. }), "{what}: {err}");
        }
        // Dropping the newest lines keeps a valid chain: the file itself cannot show it, which is
        // why the audit log records each load's revision check too (docs/audit.md).
        std::fs::write(&state, format!("{}\n", lines[0])).unwrap();
        assert_eq!(TrustState::read(&state).unwrap().accepted.len(), 1);
        // A v1 state is named, with what to do.
        std::fs::write(&state, "{\"format\":\"medrl-trust-state/1\",\"rulesets\":{}}\n").unwrap();
        let err = TrustState::read(&state).unwrap_err().to_string();
        assert!(err.contains("medrl-trust-state/1 file") && err.contains("move it aside"), "{err}");
    }

    #[test]
    fn min_signatures_counts_wherever_it_stands_and_add_key_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = |n: &str| {
            let k = super::super::signing::KeyFile::generate(n, String::new(), String::new()).unwrap();
            TrustedKey { id: k.key_id, name: n.into(), public_key: k.public_key, role: String::new(), added: String::new() }
        };
        let (a, b) = (key("a"), key("b"));
        let entry = |k: &TrustedKey| format!("[[keys]]\nid = \"{}\"\nname = \"{}\"\npublic_key = \"{}\"\n", k.id, k.name, k.public_key);
        let p = dir.path().join("ring.toml");
        for text in [format!("min_signatures = 2\n{}{}", entry(&a), entry(&b)), format!("{}{}min_signatures = 2\n", entry(&a), entry(&b))] {
            std::fs::write(&p, &text).unwrap();
            let ring = Keyring::read(&p).unwrap();
            assert_eq!((ring.min_signatures, ring.keys.len()), (2, 2), "{text}");
        }
        std::fs::write(&p, format!("min_signatures = 1\n{}min_signatures = 2\n", entry(&a))).unwrap();
        assert!(Keyring::read(&p).unwrap_err().to_string().contains("min_signatures is given 2 times"));
        // A new keyring gets the threshold written out; a second key keeps it.
        let new = dir.path().join("new/ring.toml");
        assert_eq!(Keyring::add_key(&new, &a, 2).unwrap().min_signatures, 2);
        assert!(std::fs::read_to_string(&new).unwrap().contains("min_signatures = 2\n"));
        let ring = Keyring::add_key(&new, &b, 1).unwrap();
        assert_eq!((ring.min_signatures, ring.keys.len()), (2, 2));
        assert!(Keyring::add_key(&new, &b, 1).unwrap_err().to_string().contains("already in it"));
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
