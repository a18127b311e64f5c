//! Ed25519 keys and detached rule-set signatures: the key file, the signature file, signing the
//! canonical bytes of a `ruleset.json`, and checking one signature against a public key.
//!
//! Which keys are trusted, and how many signatures a rule set needs, is [`super::trust`]'s.
//!
//! Formats (all JSON, one document per file):
//! - key file `NAME.key` (`medrl-key/1`): the secret and public key, hex; written mode 0600.
//! - signature file `<key_id>.sig` (`medrl-sig/1`) beside `ruleset.json`: the key id, the rule
//!   set it signs and the sha256 of its canonical bytes, and the 64-byte signature, hex.
//!
//! The signed message is exactly the canonical bytes of `ruleset.json` (sorted keys, no
//! whitespace, [`super::hash::canonical_json`]), the same bytes the rule set's sha256 is taken
//! over, so reformatting the file changes neither its hash nor the validity of its signatures.

use super::hash::sha256_hex;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const KEY_FORMAT: &str = "medrl-key/1";
pub const SIG_FORMAT: &str = "medrl-sig/1";
pub const ALGORITHM: &str = "ed25519";
/// File extension of a signature beside `ruleset.json`.
pub const SIG_EXTENSION: &str = "sig";

/// What went wrong with a key or signature file.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid {what}: {msg}")]
    Parse { path: PathBuf, what: &'static str, msg: String },
    #[error("{path} exists; refusing to overwrite a key (pick another --name or --out)")]
    Exists { path: PathBuf },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// A key id: the first 16 hex digits of the sha256 of the 32-byte public key. Derived from the
/// key, so two distinct keys never share an id and an id cannot be claimed by another key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        KeyId(sha256_hex(key.as_bytes())[..16].to_string())
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A private key file (`medrl-key/1`). Keep it out of the repository (the shipped demo key is
/// the one exception, and says so in its name and `note`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Always `medrl-key/1`.
    pub format: String,
    /// Always `ed25519`.
    pub algorithm: String,
    pub key_id: KeyId,
    /// Who holds the key, in words (e.g. "Dr. Li, clinical safety lead").
    pub name: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// 32 bytes, hex.
    pub public_key: String,
    /// 32-byte Ed25519 seed, hex.
    pub secret_key: String,
    /// Free text; the demo key's says it must never sign a production rule set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl KeyFile {
    /// A fresh key from the operating system's random source.
    pub fn generate(name: &str, created_at: String, note: String) -> Result<Self, SigningError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SigningError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        let public = key.verifying_key();
        Ok(KeyFile {
            format: KEY_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: KeyId::of(&public),
            name: name.to_string(),
            created_at,
            public_key: hex::encode(public.as_bytes()),
            secret_key: hex::encode(seed),
            note,
        })
    }

    pub fn read(path: &Path) -> Result<Self, SigningError> {
        let text = std::fs::read_to_string(path).map_err(|source| SigningError::Io { path: path.into(), source })?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| parse(path, "key file", e))?;
        if file.format != KEY_FORMAT || file.algorithm != ALGORITHM {
            return Err(parse(
                path,
                "key file",
                format!("format {} / algorithm {} (expected {KEY_FORMAT} / {ALGORITHM})", file.format, file.algorithm),
            ));
        }
        let key = file.signing_key().map_err(|msg| parse(path, "key file", msg))?;
        if hex::encode(key.verifying_key().as_bytes()) != file.public_key || KeyId::of(&key.verifying_key()) != file.key_id {
            return Err(parse(path, "key file", "public_key or key_id does not belong to secret_key"));
        }
        Ok(file)
    }

    /// Writes the key file, refusing to overwrite one; on Unix only the owner may read it.
    pub fn write_new(&self, path: &Path) -> Result<(), SigningError> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => SigningError::Exists { path: path.into() },
            _ => SigningError::Io { path: path.into(), source },
        })?;
        let mut json = serde_json::to_vec_pretty(self).expect("a key file always serialises");
        json.push(b'\n');
        file.write_all(&json).map_err(|source| SigningError::Io { path: path.into(), source })
    }

    pub fn signing_key(&self) -> Result<SigningKey, String> {
        let seed: [u8; 32] = decode_fixed(&self.secret_key).ok_or("secret_key is not 32 bytes of hex")?;
        Ok(SigningKey::from_bytes(&seed))
    }
}

/// A detached signature file (`medrl-sig/1`), `<key_id>.sig` in the rule-set folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// Always `medrl-sig/1`.
    pub format: String,
    /// Always `ed25519`.
    pub algorithm: String,
    pub key_id: KeyId,
    /// The key holder's name as the key file gives it (informational; trust comes from the keyring).
    pub signer: String,
    /// `name@version` of the rule set signed.
    pub ruleset: String,
    /// sha256 of the canonical bytes signed (the rule set's sha256).
    pub ruleset_sha256: String,
    /// RFC 3339 UTC.
    pub signed_at: String,
    /// 64 bytes, hex: Ed25519 over the canonical bytes of `ruleset.json`.
    pub signature: String,
}

impl SignatureFile {
    /// Signs `canonical` (the canonical bytes of `ruleset.json`) with `key`.
    pub fn sign(key: &KeyFile, ruleset: &str, canonical: &[u8], signed_at: String) -> Result<Self, String> {
        let signing = key.signing_key()?;
        let signature = signing.sign(canonical);
        Ok(SignatureFile {
            format: SIG_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: key.key_id.clone(),
            signer: key.name.clone(),
            ruleset: ruleset.to_string(),
            ruleset_sha256: sha256_hex(canonical),
            signed_at,
            signature: hex::encode(signature.to_bytes()),
        })
    }

    pub fn read(path: &Path) -> Result<Self, SigningError> {
        let text = std::fs::read_to_string(path).map_err(|source| SigningError::Io { path: path.into(), source })?;
        let sig: SignatureFile = serde_json::from_str(&text).map_err(|e| parse(path, "signature file", e))?;
        if sig.format != SIG_FORMAT || sig.algorithm != ALGORITHM {
            return Err(parse(
                path,
                "signature file",
                format!("format {} / algorithm {} (expected {SIG_FORMAT} / {ALGORITHM})", sig.format, sig.algorithm),
            ));
        }
        Ok(sig)
    }

    pub fn write(&self, path: &Path) -> Result<(), SigningError> {
        let mut json = serde_json::to_vec_pretty(self).expect("a signature always serialises");
        json.push(b'\n');
        std::fs::write(path, json).map_err(|source| SigningError::Io { path: path.into(), source })
    }

    /// The file name this signature must have: `<key_id>.sig`.
    pub fn file_name(&self) -> String {
        format!("{}.{SIG_EXTENSION}", self.key_id)
    }

    /// Checks the signature over `canonical` with the (trusted) public key `public_hex`.
    pub fn verify(&self, public_hex: &str, canonical: &[u8]) -> Result<(), String> {
        let public: [u8; 32] = decode_fixed(public_hex).ok_or("the keyring's public_key is not 32 bytes of hex")?;
        let key = VerifyingKey::from_bytes(&public).map_err(|e| format!("the keyring's public_key is not a valid Ed25519 key: {e}"))?;
        let bytes: [u8; 64] = decode_fixed(&self.signature).ok_or("`signature` is not 64 bytes of hex")?;
        key.verify(canonical, &Signature::from_bytes(&bytes)).map_err(|_| "the signature does not verify against the signed bytes".to_string())
    }
}

/// The key id of a hex public key, or why it is not one.
pub fn key_id_of_public(public_hex: &str) -> Result<KeyId, String> {
    let public: [u8; 32] = decode_fixed(public_hex).ok_or("public_key is not 32 bytes of hex")?;
    let key = VerifyingKey::from_bytes(&public).map_err(|e| format!("public_key is not a valid Ed25519 key: {e}"))?;
    Ok(KeyId::of(&key))
}

fn decode_fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex::decode(text).ok()?.try_into().ok()
}

fn parse(path: &Path, what: &'static str, msg: impl std::fmt::Display) -> SigningError {
    SigningError::Parse { path: path.into(), what, msg: msg.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8032_test_vector_1_signs_and_verifies() {
        // RFC 8032 §7.1, TEST 1: the empty message.
        let key = KeyFile {
            format: KEY_FORMAT.into(),
            algorithm: ALGORITHM.into(),
            key_id: KeyId(String::new()),
            name: "rfc".into(),
            created_at: String::new(),
            public_key: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".into(),
            secret_key: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60".into(),
            note: String::new(),
        };
        let sig = SignatureFile::sign(&key, "t@1.0.0", b"", String::new()).unwrap();
        assert_eq!(
            sig.signature,
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        sig.verify(&key.public_key, b"").unwrap();
        assert!(sig.verify(&key.public_key, b"x").unwrap_err().contains("does not verify"));
    }

    #[test]
    fn generated_keys_round_trip_and_ids_follow_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = KeyFile::generate("a", "2026-12-01T00:00:00Z".into(), String::new()).unwrap();
        let b = KeyFile::generate("b", "2026-12-01T00:00:00Z".into(), String::new()).unwrap();
        assert_ne!(a.key_id, b.key_id);
        assert_eq!(key_id_of_public(&a.public_key).unwrap(), a.key_id);
        let path = dir.path().join("a.key");
        a.write_new(&path).unwrap();
        assert!(matches!(a.write_new(&path), Err(SigningError::Exists { .. })));
        let back = KeyFile::read(&path).unwrap();
        assert_eq!(back.secret_key, a.secret_key);
        // A key file whose public half was swapped is refused.
        let mut forged = a.clone();
        forged.public_key = b.public_key.clone();
        let forged_path = dir.path().join("forged.key");
        forged.write_new(&forged_path).unwrap();
        assert!(KeyFile::read(&forged_path).unwrap_err().to_string().contains("does not belong"));
        // A signature by `a` does not verify under `b`.
        let sig = SignatureFile::sign(&a, "t@1.0.0", b"{}", String::new()).unwrap();
        assert!(sig.verify(&b.public_key, b"{}").is_err());
        sig.verify(&a.public_key, b"{}").unwrap();
    }
}
