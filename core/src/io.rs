//! Reading input text and JSONL: one JSON document per line, blank lines skipped, and every
//! error naming the file (and the 1-based line where there is one) and the fix, so nothing is
//! lost silently.
//!
//! Every reader of the data, prompt and sample files (`train`, `sft`, `predict`, `eval`, `data`,
//! `rules score`) goes through [`read_text`], which refuses what a line-by-line reader would
//! otherwise misread: a file that is empty (a wrong path or an export that failed, which would
//! "succeed" with nothing to do), a UTF-8 byte order mark (invisible, and it makes the first line
//! a parse error or an id with a hidden character), and bytes that are not UTF-8.

use std::path::{Path, PathBuf};

/// A parser's message on one line, its lines trimmed and joined by spaces (toml's "unknown
/// field `x`, expected one of … in `ppo`" spans several), so an error stays one line.
pub fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Why an input file cannot be read as text.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file has no bytes, or only whitespace.
    #[error("{path} is empty: it holds no records; check the path, or write or regenerate the file (one JSON record per line)")]
    Empty { path: PathBuf },
    /// The file starts with the UTF-8 byte order mark EF BB BF.
    #[error(
        "{path} starts with a UTF-8 byte order mark (bytes EF BB BF); save it as UTF-8 without a BOM, e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' {path}`"
    )]
    Bom { path: PathBuf },
    /// A byte sequence that is not UTF-8.
    #[error(
        "{path}:{line}: not UTF-8 (invalid byte 0x{byte:02X} at byte offset {offset}); convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`"
    )]
    NotUtf8 { path: PathBuf, line: usize, offset: usize, byte: u8 },
}

#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("{path}:{line}: {msg}; fix or remove that line")]
    Line { path: PathBuf, line: usize, msg: String },
}

/// The text of an input file, refusing an empty one, a BOM and bytes that are not UTF-8.
pub fn read_text(path: &Path) -> Result<String, TextError> {
    let text = read_text_allow_empty(path)?;
    if text.trim().is_empty() {
        return Err(TextError::Empty { path: path.into() });
    }
    Ok(text)
}

/// [`read_text`] for files that may hold no records: the splits of a data folder (a new folder
/// has an empty `redteam.jsonl`). A BOM and bytes that are not UTF-8 are still refused.
pub fn read_text_allow_empty(path: &Path) -> Result<String, TextError> {
    let bytes = std::fs::read(path).map_err(|source| TextError::Io { path: path.into(), source })?;
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(TextError::Bom { path: path.into() });
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
        TextError::NotUtf8 { path: path.into(), line, offset, byte: bytes[offset] }
    })
}

/// Reads every line of `path` as a `T` (through [`read_text`]: an empty file is refused).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, JsonlError> {
    let text = read_text(path)?;
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

    #[test]
    fn empty_bom_and_non_utf8_files_are_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        for empty in ["", "\n \n\t\n"] {
            std::fs::write(&path, empty).unwrap();
            let err = read_jsonl::<serde_json::Value>(&path).unwrap_err();
            assert!(matches!(err, JsonlError::Text(TextError::Empty { .. })), "{err:?}");
            assert!(err.to_string().contains("p.jsonl is empty") && err.to_string().contains("check the path"), "{err}");
        }
        // A data split may be empty; the other checks hold for it too.
        assert_eq!(read_text_allow_empty(&path).unwrap(), "\n \n\t\n");
        std::fs::write(&path, b"\xEF\xBB\xBF{\"a\":1}\n").unwrap();
        let err = read_jsonl::<serde_json::Value>(&path).unwrap_err().to_string();
        assert!(err.contains("p.jsonl starts with a UTF-8 byte order mark") && err.contains("without a BOM"), "{err}");
        assert!(matches!(read_text_allow_empty(&path), Err(TextError::Bom { .. })));
        // Latin-1 "é" (0xE9) on line 2, after `{"a":1}\n` (8 bytes) and `{"a":"caf` (9): offset 17.
        std::fs::write(&path, b"{\"a\":1}\n{\"a\":\"caf\xE9\"}\n").unwrap();
        let err = read_jsonl::<serde_json::Value>(&path).unwrap_err();
        assert!(matches!(err, JsonlError::Text(TextError::NotUtf8 { line: 2, offset: 17, byte: 0xE9, .. })), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("p.jsonl:2: not UTF-8 (invalid byte 0xE9 at byte offset 17)") && msg.contains("iconv"), "{msg}");
    }
}
