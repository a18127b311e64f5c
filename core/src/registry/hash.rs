//! sha256 helpers: file and byte digests as lowercase hex, and the canonical JSON bytes that
//! manifest hashes (and, later, signatures) are taken over.

use sha2::{Digest, Sha256};
use std::path::Path;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    Ok(sha256_hex(&std::fs::read(path)?))
}

/// Canonical JSON: object keys sorted (serde_json's default map is a BTreeMap), no whitespace.
/// Two semantically equal documents give the same bytes, whatever their formatting on disk.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("a serde_json::Value always serialises")
}

/// sha256 of the canonical form of a JSON value.
pub fn json_sha256(value: &serde_json::Value) -> String {
    sha256_hex(&canonical_json(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_key_order_independence() {
        // sha256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "a": [1, 2], "b": 1 }"#).unwrap();
        assert_eq!(json_sha256(&a), json_sha256(&b));
        assert_eq!(canonical_json(&a), br#"{"a":[1,2],"b":1}"#);
    }
}
