//! A data directory's four split files, read line by line. A line that does not parse becomes a
//! [`Problem::Malformed`] naming `file:line`, and reading goes on, so one run reports every bad
//! line instead of the first.
//!
//! The pool may span several files: `pool.jsonl` and, when the folder exists, every
//! `pool/*.jsonl` in name order (one file per source: `medrl data import` writes
//! `pool/<source>.jsonl`). A source can then be added, replaced or dropped as a whole, and each
//! item still names its own `file:line`.

use super::error::DataError;
use super::item::{Item, Loc, Located, Split};
use super::validate::Problem;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// The default data directory, relative to the repository root.
pub const DEFAULT_DIR: &str = "data/sets";

/// Folder beside `pool.jsonl` whose `*.jsonl` files extend the pool.
pub const POOL_DIR: &str = "pool";

/// One split and its parsed items, in file order. A split is one file, except the pool, which
/// may add the files of [`POOL_DIR`] (each item's [`Loc`] names its own file).
#[derive(Debug, Clone)]
pub struct SetFile {
    pub split: Split,
    /// The split's main file, `<dir>/<split>.jsonl`.
    pub path: PathBuf,
    /// Every file read, the main one first.
    pub files: Vec<PathBuf>,
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
            let mut paths = vec![path.clone()];
            if split == Split::Pool {
                paths.extend(extra_pool_files(dir)?);
            }
            let mut items = Vec::new();
            for p in &paths {
                let (read, bad) = read_lines::<Item>(p)?;
                items.extend(read);
                malformed.extend(bad);
            }
            files.push(SetFile { split, path, files: paths, items });
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

/// `<dir>/pool/*.jsonl`, sorted by name; none when the folder does not exist.
pub fn extra_pool_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let folder = dir.join(POOL_DIR);
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&folder).map_err(|source| DataError::Read { path: folder.clone(), source })?;
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "jsonl")).collect();
    files.sort();
    Ok(files)
}

/// Reads a JSONL file: blank lines are skipped, a line that does not parse as `T` is returned as a
/// [`Problem::Malformed`] with its 1-based line number. A BOM and bytes that are not UTF-8 stop
/// the command; an empty file is an empty split ([`crate::io::read_text_allow_empty`]).
pub fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<(Vec<Located<T>>, Vec<Problem>), DataError> {
    let text = crate::io::read_text_allow_empty(path)?;
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
    fn the_pool_adds_the_files_of_its_folder_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let line = |id: &str, prompt: &str| {
            format!(
                "{{\"id\":\"{id}\",\"lang\":\"en\",\"category\":\"general\",\"risk\":\"low\",\"tags\":[\"t\"],\"prompt\":\"{prompt}\",\"source\":\"s\",\"version\":\"1.0.0\",\"quality\":\"draft\"}}\n"
            )
        };
        std::fs::write(dir.path().join("pool.jsonl"), line("a", "first")).unwrap();
        for split in ["sft", "gold", "redteam"] {
            std::fs::write(dir.path().join(format!("{split}.jsonl")), "").unwrap();
        }
        std::fs::create_dir(dir.path().join(POOL_DIR)).unwrap();
        std::fs::write(dir.path().join("pool/b.jsonl"), line("c", "third")).unwrap();
        std::fs::write(dir.path().join("pool/a.jsonl"), format!("{}{}", line("b", "second"), "not json\n")).unwrap();
        std::fs::write(dir.path().join("pool/notes.txt"), "ignored").unwrap();
        let sets = DataSets::load(dir.path()).unwrap();
        let pool = sets.split(Split::Pool);
        let ids: Vec<&str> = pool.items.iter().map(|i| i.value.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(pool.items[1].loc, Loc { file: dir.path().join("pool/a.jsonl"), line: 1 });
        assert_eq!(pool.files.len(), 3);
        assert_eq!(sets.malformed.len(), 1);
        assert!(sets.malformed[0].to_string().starts_with(&format!("{}:2: ", dir.path().join("pool/a.jsonl").display())));
    }

    #[test]
    fn a_missing_split_file_names_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = DataSets::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pool.jsonl does not exist") && err.contains("redteam.jsonl"), "{err}");
    }
}
