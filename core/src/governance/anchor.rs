//! Anchoring a run's audit log outside the log: the head a checkpoint saw, and the run's final
//! manifest (optionally signed by the operator).
//!
//! A hash chain finds an edited, removed or reordered line, but not records cut from the end, or
//! a log rewritten from some record on and re-hashed. Both need the head kept elsewhere:
//! - `checkpoints/step-N/audit_head.json` (`medrl-audit-head/1`): the record count and last hash
//!   when the checkpoint was written; a later log must still hold that record with that hash.
//! - `final/run_manifest.json` for a training run, `run_manifest.json` in an evaluation's folder
//!   (`medrl-run-manifest/1`): the rule set, the log's head at the end, and the sha256 of the
//!   run's result files (`rewards.csv`; `report.json` and the scored files for an evaluation).
//!   The log must end exactly there.
//! - `run_manifest.sig` beside it (`medrl-run-sig/1`) when an operator key is configured:
//!   Ed25519 over the manifest's canonical JSON, with a key in the `medrl keys generate` format.
//!   Without a signature, whoever can rewrite the log can rewrite the manifest too; with one,
//!   they also need the operator's key.

use super::audit::{AuditHead, GENESIS, verify_chain};
use crate::registry::hash::{canonical_json, sha256_hex};
use crate::registry::signing::{ALGORITHM, KeyFile, KeyId, key_id_of_public};
use crate::registry::trust::Keyring;
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const HEAD_FILE: &str = "audit_head.json";
pub const HEAD_FORMAT: &str = "medrl-audit-head/1";
pub const MANIFEST_FILE: &str = "run_manifest.json";
pub const MANIFEST_FORMAT: &str = "medrl-run-manifest/1";
pub const MANIFEST_SIG_FILE: &str = "run_manifest.sig";
pub const MANIFEST_SIG_FORMAT: &str = "medrl-run-sig/1";

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid {what}: {msg}")]
    Parse { path: PathBuf, what: &'static str, msg: String },
    #[error("cannot sign with {path}: {msg}")]
    Key { path: PathBuf, msg: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AnchorError + '_ {
    move |source| AnchorError::Io { path: path.to_path_buf(), source }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, AnchorError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| AnchorError::Parse { path: path.into(), what, msg: e.to_string() })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), AnchorError> {
    let mut text = serde_json::to_vec_pretty(value).expect("plain data");
    text.push(b'\n');
    std::fs::write(path, text).map_err(io(path))
}

/// `audit_head.json` in a checkpoint folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadFile {
    /// Always `medrl-audit-head/1`.
    pub format: String,
    /// The log, relative to the run folder (`audit.jsonl`).
    pub log: String,
    #[serde(flatten)]
    pub head: AuditHead,
}

impl HeadFile {
    pub fn new(log: &str, head: AuditHead) -> Self {
        HeadFile { format: HEAD_FORMAT.into(), log: log.into(), head }
    }

    pub fn write(&self, dir: &Path) -> Result<(), AnchorError> {
        write_json(&dir.join(HEAD_FILE), self)
    }

    pub fn read(dir: &Path) -> Result<Self, AnchorError> {
        let path = dir.join(HEAD_FILE);
        let file: HeadFile = read_json(&path, "audit head")?;
        if file.format != HEAD_FORMAT {
            return Err(AnchorError::Parse { path, what: "audit head", msg: format!("format {} (expected {HEAD_FORMAT})", file.format) });
        }
        Ok(file)
    }
}

/// `run_manifest.json`: what a finished run (training or evaluation) produced and where its
/// audit log ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunManifest {
    /// Always `medrl-run-manifest/1`.
    pub format: String,
    /// `train` or `eval`.
    pub kind: String,
    /// `name@version` of the rule set every reward came from, and its sha256.
    pub ruleset: String,
    pub ruleset_sha256: String,
    /// The log (relative to the run folder) and its head when the run finished.
    pub audit: HeadFile,
    /// sha256 of each result file, by path relative to the run folder.
    pub files: BTreeMap<String, String>,
    /// RFC 3339 UTC.
    pub written_at: String,
    /// A training run's policy: the base model and its digest, the SFT adapter merged into it,
    /// the adapter a second round started from. Absent for evaluations and in manifests
    /// written before it existed (their bytes, and so their signatures, are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<crate::model::stack::StackRecord>,
}

impl RunManifest {
    /// The manifest with the training run's policy record.
    pub fn with_policy(mut self, policy: crate::model::stack::StackRecord) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The manifest of the run in `root`, hashing `files` (relative to `root`).
    pub fn new(kind: &str, ruleset: String, ruleset_sha256: String, audit: HeadFile, root: &Path, files: &[String]) -> Result<Self, AnchorError> {
        let mut hashes = BTreeMap::new();
        for f in files {
            let path = root.join(f);
            hashes.insert(f.clone(), sha256_hex(&std::fs::read(&path).map_err(io(&path))?));
        }
        let written_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        Ok(RunManifest { format: MANIFEST_FORMAT.into(), kind: kind.into(), ruleset, ruleset_sha256, audit, files: hashes, written_at, policy: None })
    }

    /// The bytes a signature covers: the canonical JSON of the manifest.
    pub fn canonical(&self) -> Vec<u8> {
        canonical_json(&serde_json::to_value(self).expect("plain data"))
    }

    /// Writes `run_manifest.json` into `dir`, and with `key` its signature `run_manifest.sig`
    /// (an old signature is removed first, so a manifest never sits beside another's signature).
    pub fn write(&self, dir: &Path, key: Option<(&KeyFile, &Path)>) -> Result<(), AnchorError> {
        let sig_path = dir.join(MANIFEST_SIG_FILE);
        if sig_path.exists() {
            std::fs::remove_file(&sig_path).map_err(io(&sig_path))?;
        }
        write_json(&dir.join(MANIFEST_FILE), self)?;
        if let Some((key, key_path)) = key {
            let signing = key.signing_key().map_err(|msg| AnchorError::Key { path: key_path.into(), msg })?;
            let canonical = self.canonical();
            let sig = ManifestSignature {
                format: MANIFEST_SIG_FORMAT.into(),
                algorithm: ALGORITHM.into(),
                key_id: key.key_id.clone(),
                signer: key.name.clone(),
                manifest_sha256: sha256_hex(&canonical),
                signed_at: self.written_at.clone(),
                signature: hex::encode(signing.sign(&canonical).to_bytes()),
            };
            write_json(&sig_path, &sig)?;
        }
        Ok(())
    }

    pub fn read(dir: &Path) -> Result<Self, AnchorError> {
        let path = dir.join(MANIFEST_FILE);
        let m: RunManifest = read_json(&path, "run manifest")?;
        if m.format != MANIFEST_FORMAT {
            return Err(AnchorError::Parse { path, what: "run manifest", msg: format!("format {} (expected {MANIFEST_FORMAT})", m.format) });
        }
        Ok(m)
    }
}

/// `run_manifest.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSignature {
    /// Always `medrl-run-sig/1`.
    pub format: String,
    /// Always `ed25519`.
    pub algorithm: String,
    pub key_id: KeyId,
    /// The key holder's name as the key file gives it (informational: trust is the keyring's).
    pub signer: String,
    /// sha256 of the canonical manifest bytes signed.
    pub manifest_sha256: String,
    pub signed_at: String,
    /// 64 bytes, hex.
    pub signature: String,
}

/// One check of a run folder, in words, and whether it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCheck {
    pub ok: bool,
    pub what: String,
}

/// Checks a run folder's anchors against its log, whose chain must already verify with head
/// `log_head` (`records` records): each complete checkpoint's head is a record of the log; the
/// final manifest (when the run finished) is where the log ends, and its files' sha256 match;
/// with `operator_keyring`, the manifest's signature verifies against a key in it. Returns every
/// check, passed or not, so the caller can print them all.
pub fn check_run(root: &Path, log_hashes: &[String], operator_keyring: Option<&Keyring>) -> Vec<RunCheck> {
    let mut out = Vec::new();
    let mut push = |ok: bool, what: String| out.push(RunCheck { ok, what });
    let records = log_hashes.len() as u64;
    let head_ok = |h: &AuditHead| -> Result<(), String> {
        if h.records == 0 {
            return if h.hash == GENESIS { Ok(()) } else { Err("0 records with a non-genesis hash".into()) };
        }
        match log_hashes.get(h.records as usize - 1) {
            None => {
                Err(format!("it recorded {} records, the log has {records}: {} record(s) were removed from the end", h.records, h.records - records))
            }
            Some(hash) if *hash != h.hash => Err(format!(
                "record {} has hash {}, it recorded {}: the log was rewritten from record {} on or before",
                h.records,
                &hash[..16],
                &h.hash[..16.min(h.hash.len())],
                h.records
            )),
            Some(_) => Ok(()),
        }
    };

    // Checkpoints, in step order; only complete ones (an interrupted save is not a checkpoint).
    let mut steps: Vec<(u64, PathBuf)> = std::fs::read_dir(root.join("checkpoints"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let step = p.file_name()?.to_str()?.strip_prefix("step-")?.parse::<u64>().ok()?;
            p.join("trainer_state.json").exists().then_some((step, p))
        })
        .collect();
    steps.sort();
    for (step, dir) in &steps {
        match HeadFile::read(dir) {
            Ok(h) => match head_ok(&h.head) {
                Ok(()) => {
                    push(true, format!("checkpoint step-{step}: the log still holds its head, record {} ({})", h.head.records, &h.head.hash[..16]))
                }
                Err(why) => push(false, format!("checkpoint step-{step} ({}): {why}", dir.join(HEAD_FILE).display())),
            },
            Err(e) => push(
                false,
                format!(
                    "checkpoint step-{step}: {e}; a checkpoint without its audit head cannot anchor the log (a run from before heads were recorded: verify its log alone with `medrl audit verify {}`)",
                    root.join("audit.jsonl").display()
                ),
            ),
        }
    }

    // The final manifest: `final/` for training, the folder itself for an evaluation.
    let manifest_dir = if root.join("final").is_dir() { root.join("final") } else { root.to_path_buf() };
    if !manifest_dir.join(MANIFEST_FILE).exists() {
        if root.join("final").is_dir() || root.join("report.json").exists() {
            push(
                false,
                format!(
                    "{} is missing: a finished run writes it; without it the end of the log is not anchored",
                    manifest_dir.join(MANIFEST_FILE).display()
                ),
            );
        } else {
            push(
                true,
                format!(
                    "no final manifest: the run has not finished; records after the last checkpoint ({}) are not anchored",
                    steps.last().map_or("none".into(), |(s, _)| format!("step-{s}"))
                ),
            );
        }
        return out;
    }
    let manifest = match RunManifest::read(&manifest_dir) {
        Ok(m) => m,
        Err(e) => {
            push(false, e.to_string());
            return out;
        }
    };
    let h = &manifest.audit.head;
    match head_ok(h) {
        Ok(()) if h.records == records => {
            push(true, format!("final manifest: the log ends at its head, record {records} ({})", &h.hash[..16.min(h.hash.len())]))
        }
        Ok(()) => push(
            false,
            format!(
                "final manifest: the log has {} record(s) after its head (record {}): records were appended after the run finished",
                records - h.records,
                h.records
            ),
        ),
        Err(why) => push(false, format!("final manifest: {why}")),
    }
    for (file, sha) in &manifest.files {
        let path = root.join(file);
        match std::fs::read(&path) {
            Ok(bytes) if sha256_hex(&bytes) == *sha => push(true, format!("final manifest: {file} sha256 {}", &sha[..16])),
            Ok(bytes) => push(
                false,
                format!(
                    "final manifest: {file} has sha256 {}, the manifest says {}: the file changed after the run",
                    &sha256_hex(&bytes)[..16],
                    &sha[..16]
                ),
            ),
            Err(e) => push(false, format!("final manifest: cannot read {}: {e}", path.display())),
        }
    }
    let sig_path = manifest_dir.join(MANIFEST_SIG_FILE);
    match (sig_path.exists(), operator_keyring) {
        (false, None) => push(true, "final manifest: not signed (no operator key was configured)".into()),
        (false, Some(_)) => push(
            false,
            format!(
                "final manifest: {} is missing, but an operator keyring was given: the run was not signed, or its signature was removed",
                sig_path.display()
            ),
        ),
        (true, None) => push(true, format!("final manifest: signed ({}), signature not checked: pass --operator-keyring FILE", sig_path.display())),
        (true, Some(ring)) => match verify_signature(&sig_path, &manifest, ring) {
            Ok(who) => push(true, format!("final manifest: signature by {who}: valid")),
            Err(why) => push(false, format!("final manifest: {}: {why}", sig_path.display())),
        },
    }
    out
}

pub fn verify_signature(path: &Path, manifest: &RunManifest, ring: &Keyring) -> Result<String, String> {
    let sig: ManifestSignature = read_json(path, "run manifest signature").map_err(|e| e.to_string())?;
    if sig.format != MANIFEST_SIG_FORMAT || sig.algorithm != ALGORITHM {
        return Err(format!("format {} / algorithm {} (expected {MANIFEST_SIG_FORMAT} / {ALGORITHM})", sig.format, sig.algorithm));
    }
    let key = ring.keys.iter().find(|k| key_id_of_public(&k.public_key).is_ok_and(|id| id == sig.key_id)).ok_or_else(|| {
        format!(
            "signed by key {} ({}), which the operator keyring does not trust; add its public key to the keyring if it should",
            sig.key_id, sig.signer
        )
    })?;
    let canonical = manifest.canonical();
    let public: [u8; 32] =
        hex::decode(&key.public_key).ok().and_then(|b| b.try_into().ok()).ok_or("the keyring's public_key is not 32 bytes of hex")?;
    let public = VerifyingKey::from_bytes(&public).map_err(|e| format!("the keyring's public_key is not an Ed25519 key: {e}"))?;
    let bytes: [u8; 64] = hex::decode(&sig.signature).ok().and_then(|b| b.try_into().ok()).ok_or("`signature` is not 64 bytes of hex")?;
    public.verify(&canonical, &Signature::from_bytes(&bytes)).map_err(|_| {
        format!("the signature by {} does not verify over run_manifest.json: the manifest was changed after it was signed", sig.key_id)
    })?;
    Ok(format!("{} ({})", sig.key_id, key.name))
}

/// Every record hash of a log whose chain verifies, in order (what [`check_run`] compares heads with).
pub fn record_hashes(log: &Path) -> Result<Vec<String>, super::audit::AuditError> {
    let (_, records) = verify_chain(log, None)?;
    Ok(records.into_iter().map(|r| r.hash).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_manifest_verifies_and_an_edit_or_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("rewards.csv"), "step,total\n1,0.5\n").unwrap();
        std::fs::write(root.join("report.json"), "{}").unwrap();
        let key = KeyFile::generate("operator", "2026-12-08T00:00:00Z".into(), String::new()).unwrap();
        let hashes = vec!["a".repeat(64), "b".repeat(64)];
        let head = HeadFile::new("audit.jsonl", AuditHead { records: 2, hash: hashes[1].clone() });
        let m = RunManifest::new("eval", "r@1.0.0".into(), "c".repeat(64), head, root, &["rewards.csv".into()]).unwrap();
        m.write(root, Some((&key, Path::new("op.key")))).unwrap();
        let ring_text = format!("[[keys]]\nid = \"{}\"\nname = \"op\"\npublic_key = \"{}\"\n", key.key_id, key.public_key);
        std::fs::write(root.join("ring.toml"), ring_text).unwrap();
        let ring = Keyring::read(&root.join("ring.toml")).unwrap();
        let all_ok = |checks: &[RunCheck]| checks.iter().all(|c| c.ok);
        assert!(all_ok(&check_run(root, &hashes, Some(&ring))), "{:?}", check_run(root, &hashes, Some(&ring)));
        // The log cut by one record.
        let cut = check_run(root, &hashes[..1], Some(&ring));
        assert!(cut.iter().any(|c| !c.ok && c.what.contains("1 record(s) were removed from the end")), "{cut:?}");
        // The manifest edited after signing.
        let text = std::fs::read_to_string(root.join(MANIFEST_FILE)).unwrap().replace("r@1.0.0", "r@1.0.1");
        std::fs::write(root.join(MANIFEST_FILE), text).unwrap();
        let edited = check_run(root, &hashes, Some(&ring));
        assert!(edited.iter().any(|c| !c.ok && c.what.contains("does not verify")), "{edited:?}");
        // Signed by a key the keyring does not hold.
        let other = KeyFile::generate("other", "2026-12-08T00:00:00Z".into(), String::new()).unwrap();
        m.write(root, Some((&other, Path::new("other.key")))).unwrap();
        let untrusted = check_run(root, &hashes, Some(&ring));
        assert!(untrusted.iter().any(|c| !c.ok && c.what.contains("does not trust")), "{untrusted:?}");
        // Unsigned, but a keyring was given: fail closed.
        m.write(root, None).unwrap();
        assert!(check_run(root, &hashes, Some(&ring)).iter().any(|c| !c.ok && c.what.contains("is missing")));
    }
}
