//! A data directory's four split files, read line by line. A line that does not parse becomes a
//! [`Problem::Malformed`] naming `file:line`, and reading goes on, so one run reports every bad
//! line instead of the first.

use super::error::DataError;
use super::item::{Item, Loc, Located, Split};
use super::validate::Problem;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// The default data directory, relative to the repository root.
pub const DEFAULT_DIR: &str = "data/sets";

/// One split file and its parsed items, in file order.
#[derive(Debug, Clone)]
pub struct SetFile {
    pub split: Split,
    pub path: PathBuf,
    pub items: Vec<Located<Item>>,
}

/// All four splits of a data directory.
#[derive(Debug, Clone)]
pub struct DataSets {
    pub dir: PathBuf,
    /// In [`Split::ALL`] order.
    pub files: Vec<SetFile>,
    /// Lines that did not parse, in file and line order.
    pub malformed: Vec<Problem>,
}

impl DataSets {
    /// Reads `<dir>/{pool,sft,gold,redteam}.jsonl`. A missing or unreadable file is an error; a
    /// malformed line is recorded in [`DataSets::malformed`].
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let mut files = Vec::new();
        let mut malformed = Vec::new();
        for split in Split::ALL {
            let path = dir.join(split.file_name());
            if !path.exists() {
                return Err(DataError::MissingSplit { path });
            }
            let (items, bad) = read_lines::<Item>(&path)?;
            files.push(SetFile { split, path, items });
            malformed.extend(bad);
        }
        Ok(DataSets { dir: dir.to_path_buf(), files, malformed })
    }

    pub fn split(&self, split: Split) -> &SetFile {
        self.files.iter().find(|f| f.split == split).expect("DataSets::load reads every split")
    }

    /// Every item with its split, in split then file order.
    pub fn items(&self) -> impl Iterator<Item = (Split, &Located<Item>)> {
        self.files.iter().flat_map(|f| f.items.iter().map(move |i| (f.split, i)))
    }
}

/// Reads a JSONL file: blank lines are skipped, a line that does not parse as `T` is returned as a
/// [`Problem::Malformed`] with its 1-based line number.
pub fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<(Vec<Located<T>>, Vec<Problem>), DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Read { path: path.to_path_buf(), source })?;
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let loc = Loc { file: path.to_path_buf(), line: i + 1 };
        match serde_json::from_str::<T>(line) {
            Ok(value) => values.push(Located { loc, value }),
            Err(e) => problems.push(Problem::Malformed { loc, msg: strip_serde_position(&e.to_string()) }),
        }
    }
    Ok((values, problems))
}

/// serde_json ends its messages with " at line 1 column 57"; on a one-line document only the
/// column says anything, so keep it as "(column 57)".
fn strip_serde_position(msg: &str) -> String {
    match msg.rsplit_once(" at line 1 column ") {
        Some((head, col)) => format!("{head} (column {col})"),
        None => msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_line_is_reported_with_its_number_and_the_good_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        std::fs::write(&path, "{\"a\":1}\n\n{\"a\":\n{\"a\":3}\n[]\n").unwrap();
        let (values, problems) = read_lines::<serde_json::Map<String, serde_json::Value>>(&path).unwrap();
        assert_eq!(values.iter().map(|v| v.loc.line).collect::<Vec<_>>(), [1, 4]);
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(&format!("{}:3: ", path.display())), "{}", lines[0]);
        assert!(lines[1].starts_with(&format!("{}:5: ", path.display())), "{}", lines[1]);
        assert!(!lines[0].contains("at line 1"), "{}", lines[0]);
    }

    #[test]
    fn a_missing_split_file_names_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = DataSets::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pool.jsonl does not exist") && err.contains("redteam.jsonl"), "{err}");
    }
}
