//! Reading JSONL: one JSON document per line, blank lines skipped, and every error naming the
//! file and the 1-based line so nothing is lost silently.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {msg}; fix or remove that line")]
    Line { path: PathBuf, line: usize, msg: String },
}

/// Reads every line of `path` as a `T`.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, JsonlError> {
    let text = std::fs::read_to_string(path).map_err(|source| JsonlError::Io { path: path.into(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| JsonlError::Line { path: path.into(), line: i + 1, msg: e.to_string() }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        std::fs::write(&path, "{\"a\":1}\n\n{\"a\":2\n").unwrap();
        let err = read_jsonl::<serde_json::Value>(&path).unwrap_err().to_string();
        assert!(err.contains("s.jsonl:3:"), "{err}");
        std::fs::write(&path, "{\"a\":1}\n\n{\"a\":2}\n").unwrap();
        assert_eq!(read_jsonl::<serde_json::Value>(&path).unwrap().len(), 2);
    }
}
