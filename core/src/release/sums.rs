//! `SHA256SUMS` of a release folder and its detached signature `SHA256SUMS.sig`.
//!
//! `SHA256SUMS` is `sha256sum`'s format, one `<sha256>  <path>` line per file, sorted by path,
//! paths relative to the release folder with `/`: every file of the folder except the two files
//! themselves, so `sha256sum -c SHA256SUMS` checks a release without medrl. The signature
//! (`medrl-release-sig/1`) is Ed25519 over the exact bytes of `SHA256SUMS`, by a key in the
//! `medrl keys generate` format; it carries the public key so that a damaged or forged signature
//! is found without a keyring, and a keyring then says whether the signer is trusted.

use super::ReleaseError;
use crate::registry::hash::sha256_hex;
use crate::registry::signing::{ALGORITHM, KeyFile, KeyId, key_id_of_public};
use crate::registry::trust::Keyring;
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const SUMS_FILE: &str = "SHA256SUMS";
pub const SUMS_SIG_FILE: &str = "SHA256SUMS.sig";
pub const SUMS_SIG_FORMAT: &str = "medrl-release-sig/1";

/// Every regular file under `root`, as sorted `/`-separated relative paths, except the sums and
/// their signature. A link or other non-file entry is an error: a release holds plain files.
pub fn list_files(root: &Path) -> Result<Vec<String>, ReleaseError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), ReleaseError> {
        for entry in std::fs::read_dir(dir).map_err(ReleaseError::io(dir))? {
            let entry = entry.map_err(ReleaseError::io(dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(ReleaseError::io(&path))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                let rel = path.strip_prefix(root).expect("walked from root").to_string_lossy().replace('\\', "/");
                if rel != SUMS_FILE && rel != SUMS_SIG_FILE {
                    out.push(rel);
                }
            } else {
                return Err(ReleaseError::Invalid(format!(
                    "{} is not a plain file or folder (a link?); a release holds plain files",
                    path.display()
                )));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// The text of `SHA256SUMS` for the files of `root`.
pub fn compute(root: &Path) -> Result<String, ReleaseError> {
    let mut text = String::new();
    for rel in list_files(root)? {
        let path = root.join(&rel);
        let bytes = std::fs::read(&path).map_err(ReleaseError::io(&path))?;
        text.push_str(&format!("{}  {rel}\n", sha256_hex(&bytes)));
    }
    Ok(text)
}

/// Parses `SHA256SUMS`: path → sha256. Refuses a malformed line, an absolute path or `..`, a
/// path given twice.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("{SUMS_FILE}:{}: {why}", i + 1);
        let (sha, path) = line.split_once("  ").ok_or_else(|| bad("not `<sha256>  <path>`"))?;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the digest is not 64 hex digits"));
        }
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(bad(&format!("`{path}` is not a relative path inside the release")));
        }
        if out.insert(path.to_string(), sha.to_string()).is_some() {
            return Err(bad(&format!("`{path}` is listed twice")));
        }
    }
    Ok(out)
}

/// `SHA256SUMS.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SumsSignature {
    /// Always `medrl-release-sig/1`.
    pub format: String,
    /// Always `ed25519`.
    pub algorithm: String,
    pub key_id: KeyId,
    /// The key holder's name as the key file gives it (trust is the keyring's).
    pub signer: String,
    /// 32 bytes, hex.
    pub public_key: String,
    /// sha256 of the `SHA256SUMS` bytes signed.
    pub sums_sha256: String,
    pub signed_at: String,
    /// 64 bytes, hex.
    pub signature: String,
}

impl SumsSignature {
    pub fn sign(key: &KeyFile, key_path: &Path, sums: &[u8], signed_at: String) -> Result<Self, ReleaseError> {
        let signing = key.signing_key().map_err(|msg| ReleaseError::Invalid(format!("cannot sign with {}: {msg}", key_path.display())))?;
        Ok(SumsSignature {
            format: SUMS_SIG_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: key.key_id.clone(),
            signer: key.name.clone(),
            public_key: key.public_key.clone(),
            sums_sha256: sha256_hex(sums),
            signed_at,
            signature: hex::encode(signing.sign(sums).to_bytes()),
        })
    }

    /// Checks the signature over `sums` with its own public key, and, with a keyring, that the
    /// key is one of it. Returns who signed, in words.
    pub fn verify(&self, sums: &[u8], keyring: Option<&Keyring>) -> Result<String, String> {
        if self.format != SUMS_SIG_FORMAT || self.algorithm != ALGORITHM {
            return Err(format!("format {} / algorithm {} (expected {SUMS_SIG_FORMAT} / {ALGORITHM})", self.format, self.algorithm));
        }
        if key_id_of_public(&self.public_key)? != self.key_id {
            return Err(format!("key id {} is not the id of the public key it carries", self.key_id));
        }
        if self.sums_sha256 != sha256_hex(sums) {
            return Err(format!(
                "it signs SHA256SUMS with sha256 {}, the file has {}: SHA256SUMS changed after signing",
                &self.sums_sha256,
                sha256_hex(sums)
            ));
        }
        let public: [u8; 32] = hex::decode(&self.public_key).ok().and_then(|b| b.try_into().ok()).ok_or("the public key is not 32 bytes of hex")?;
        let key = VerifyingKey::from_bytes(&public).map_err(|e| format!("bad public key: {e}"))?;
        let sig: [u8; 64] = hex::decode(&self.signature).ok().and_then(|b| b.try_into().ok()).ok_or("the signature is not 64 bytes of hex")?;
        key.verify(sums, &Signature::from_bytes(&sig))
            .map_err(|_| "the signature does not verify: SHA256SUMS or its signature was altered".to_string())?;
        match keyring {
            None => Ok(format!("{} (key {}; not checked against a keyring: pass --operator-keyring)", self.signer, self.key_id)),
            Some(ring) => match ring.keys.iter().find(|k| k.public_key.eq_ignore_ascii_case(&self.public_key)) {
                Some(k) => Ok(format!("{} (key {}, trusted by {})", k.name, self.key_id, ring.path.display())),
                None => Err(format!(
                    "signed by key {} ({}), which {} does not trust; add its public key if it should",
                    self.key_id,
                    self.signer,
                    ring.path.display()
                )),
            },
        }
    }
}
