//! sha256 digests of model and adapter folders, for provenance: every `medrl predict` line (and
//! later every run) records which exact weights and tokenizer produced it.
//!
//! A folder's digest is the sha256 of a manifest listing, one line per file that decides the
//! model's outputs, sorted by name: `<sha256 of the file>  <file name>\n` (`sha256sum`'s format,
//! so `sha256sum config.json … | sort -k2 | sha256sum` reproduces it). Other files in the folder
//! (READMEs, optimizer state) do not change it.
//! - model: `config.json`, `generation_config.json` if present, `tokenizer.json`,
//!   `tokenizer_config.json`, the safetensors checkpoint (one file, or the index and its shards).
//! - adapter: `adapter_config.json`, `adapter_model.safetensors`, and `stacked_on.json` when
//!   present (what it was trained on, [`super::stack`]).

use super::peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use super::weights::{INDEX_FILE, checkpoint_files};
use super::{ModelError, tokenizer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// sha256 of bytes, as lowercase hex (the form every digest in medrl takes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String, ModelError> {
    let io = |source| ModelError::Io { path: path.into(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The digest of the listed files of `dir` (see the module doc).
fn manifest_sha256(dir: &Path, files: &[PathBuf]) -> Result<String, ModelError> {
    let mut lines = Vec::with_capacity(files.len());
    for path in files {
        let name = path.strip_prefix(dir).unwrap_or(path).to_string_lossy().into_owned();
        lines.push(format!("{}  {name}\n", file_sha256(path)?));
    }
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    Ok(crate::digest::sha256_hex(lines.concat().as_bytes()))
}

fn required(dir: &Path, file: &str, kind: &'static str, hint: &'static str) -> Result<PathBuf, ModelError> {
    let path = dir.join(file);
    if path.is_file() { Ok(path) } else { Err(ModelError::MissingFile { kind, dir: dir.into(), file: file.into(), hint }) }
}

/// The digest of a model folder.
pub fn model_sha256(dir: &Path) -> Result<String, ModelError> {
    let hint = "a model folder holds config.json, tokenizer.json, tokenizer_config.json and the safetensors checkpoint";
    let mut files = vec![
        required(dir, "config.json", "model", hint)?,
        required(dir, tokenizer::TOKENIZER_FILE, "model", hint)?,
        required(dir, tokenizer::TOKENIZER_CONFIG_FILE, "model", hint)?,
    ];
    let generation = dir.join(tokenizer::GENERATION_CONFIG_FILE);
    if generation.is_file() {
        files.push(generation);
    }
    let index = dir.join(INDEX_FILE);
    if index.is_file() {
        files.push(index);
    }
    files.extend(checkpoint_files(dir)?);
    manifest_sha256(dir, &files)
}

/// The digest of a PEFT adapter folder.
pub fn adapter_sha256(dir: &Path) -> Result<String, ModelError> {
    let hint = "a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors";
    let mut files = vec![required(dir, ADAPTER_CONFIG, "adapter", hint)?, required(dir, ADAPTER_WEIGHTS, "adapter", hint)?];
    let stack = dir.join(super::stack::STACK_FILE);
    if stack.is_file() {
        files.push(stack);
    }
    manifest_sha256(dir, &files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testutil::tiny_model_dir;

    #[test]
    fn the_digest_is_sha256sum_of_the_sorted_listing_and_ignores_other_files() {
        let src = tiny_model_dir();
        let dir = tempfile::tempdir().unwrap();
        for f in std::fs::read_dir(src).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
        let digest = model_sha256(dir.path()).unwrap();
        assert_eq!(digest, model_sha256(src).unwrap());
        let mut names = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"];
        names.sort();
        let listing: String = names.iter().map(|n| format!("{}  {n}\n", file_sha256(&dir.path().join(n)).unwrap())).collect();
        assert_eq!(digest, crate::digest::sha256_hex(listing.as_bytes()));
        std::fs::write(dir.path().join("README.md"), "notes").unwrap();
        assert_eq!(model_sha256(dir.path()).unwrap(), digest);
        std::fs::write(dir.path().join("generation_config.json"), "{}").unwrap();
        assert_ne!(model_sha256(dir.path()).unwrap(), digest);
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        let err = model_sha256(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no `tokenizer.json`"), "{err}");
        let err = adapter_sha256(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no `adapter_config.json`"), "{err}");
    }
}
