//! The run directory (`runs/<name>/`) and its append-only logs: `config.toml`, `rewards.csv`,
//! `kl_metrics.jsonl`, `metrics.jsonl`, `samples.jsonl`, `failures.jsonl`, `audit.jsonl`,
//! `checkpoints/step-N/` and `final/`.
//!
//! A run folder that exists is never overwritten unless asked (`--overwrite`) and never appended to
//! except by a resume, which first cuts every log back to the checkpoint's step so the resumed rows
//! are exactly those a run without the interruption would have written.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Why a run folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("run folder {0} already exists; pass --resume {0} to continue it or --overwrite to start it again")]
    Exists(PathBuf),
    #[error("run folder {0} does not exist, so there is nothing to resume; start it without --resume")]
    Missing(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Corrupt { path: PathBuf, line: usize, message: String },
}

/// How to open a run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// It must not exist.
    Fresh,
    /// Delete whatever is there first.
    Overwrite,
    /// It must exist; logs are cut back to `step` (the checkpoint's).
    Resume { step: u64 },
}

/// The files of one run.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Io { path: path.to_path_buf(), source }
}

impl RunDir {
    pub fn open(root: &Path, mode: OpenMode) -> Result<Self, RunDirError> {
        let dir = RunDir { root: root.to_path_buf() };
        match mode {
            OpenMode::Fresh if root.exists() => return Err(RunDirError::Exists(root.to_path_buf())),
            OpenMode::Overwrite if root.exists() => std::fs::remove_dir_all(root).map_err(io(root))?,
            OpenMode::Resume { .. } if !root.exists() => return Err(RunDirError::Missing(root.to_path_buf())),
            _ => {}
        }
        std::fs::create_dir_all(dir.checkpoints()).map_err(io(root))?;
        if let OpenMode::Resume { step } = mode {
            for log in [dir.rewards_csv(), dir.kl_metrics(), dir.metrics(), dir.samples(), dir.failures()] {
                truncate_after_step(&log, step)?;
            }
        }
        Ok(dir)
    }

    pub fn config_toml(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn rewards_csv(&self) -> PathBuf {
        self.root.join("rewards.csv")
    }
    pub fn kl_metrics(&self) -> PathBuf {
        self.root.join("kl_metrics.jsonl")
    }
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn samples(&self) -> PathBuf {
        self.root.join("samples.jsonl")
    }
    pub fn failures(&self) -> PathBuf {
        self.root.join("failures.jsonl")
    }
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit.jsonl")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(format!("step-{step}"))
    }
    pub fn final_dir(&self) -> PathBuf {
        self.root.join("final")
    }

    /// The newest complete checkpoint (`step-N` holding `trainer_state.json`), if any.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, PathBuf)>, RunDirError> {
        let dir = self.checkpoints();
        if !dir.exists() {
            return Ok(None);
        }
        let mut best = None;
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            let step = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("step-")).and_then(|n| n.parse::<u64>().ok());
            if let Some(step) = step
                && path.join("trainer_state.json").exists()
                && best.as_ref().is_none_or(|(s, _)| step > *s)
            {
                best = Some((step, path));
            }
        }
        Ok(best)
    }
}

/// Appends JSON lines, flushed per record so a crash loses at most the line being written.
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
}

impl JsonlWriter {
    pub fn append(path: &Path) -> Result<Self, RunDirError> {
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io(path))?;
        Ok(JsonlWriter { path: path.to_path_buf(), file })
    }

    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<(), RunDirError> {
        let mut line = serde_json::to_vec(record).expect("log records are plain data");
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&self.path))
    }
}

/// `rewards.csv`: one row per sample per step: `step, sample_id, category, <one column per rule>,
/// total`. A rule that did not apply (or failed and was skipped) leaves its cell empty.
pub struct RewardsCsv {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl RewardsCsv {
    /// Opens `path` for appending; a new or empty file gets the header, with `rule_ids` as the
    /// rule columns in the order [`Self::write`] gets their scores.
    pub fn append(path: &Path, rule_ids: Vec<String>) -> Result<Self, RunDirError> {
        let fresh = std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true);
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io(path))?;
        let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(file);
        if fresh {
            let header = ["step", "sample_id", "category"].into_iter().map(String::from).chain(rule_ids.iter().cloned()).chain(["total".to_string()]);
            writer.write_record(header).map_err(|e| csv_err(path, e))?;
            writer.flush().map_err(io(path))?;
        }
        Ok(RewardsCsv { path: path.to_path_buf(), writer })
    }

    /// One row; `scores[i]` belongs to the header's `i`-th rule column.
    pub fn write(&mut self, step: u64, sample_id: &str, category: &str, scores: &[Option<f64>], total: Option<f64>) -> Result<(), RunDirError> {
        let cell = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
        let row =
            [step.to_string(), sample_id.to_string(), category.to_string()].into_iter().chain(scores.iter().map(|s| cell(*s))).chain([cell(total)]);
        self.writer.write_record(row).map_err(|e| csv_err(&self.path, e))?;
        self.writer.flush().map_err(io(&self.path))
    }
}

fn csv_err(path: &Path, e: csv::Error) -> RunDirError {
    RunDirError::Io { path: path.to_path_buf(), source: std::io::Error::other(e.to_string()) }
}

/// Cuts a log back to the rows of steps `≤ step`: for `.csv` the first column is the step (the
/// header stays); for `.jsonl` each line's `"step"` field. A missing file is fine.
pub fn truncate_after_step(path: &Path, step: u64) -> Result<(), RunDirError> {
    let Ok(file) = File::open(path) else { return Ok(()) };
    let is_csv = path.extension().is_some_and(|e| e == "csv");
    let mut kept = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.is_empty() {
            continue;
        }
        let row_step = if is_csv {
            if i == 0 {
                kept.push(line);
                continue;
            }
            line.split(',').next().and_then(|s| s.parse::<u64>().ok())
        } else {
            serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v.get("step").and_then(|s| s.as_u64()))
        };
        let row_step =
            row_step.ok_or_else(|| RunDirError::Corrupt { path: path.to_path_buf(), line: i + 1, message: "no step on this line".into() })?;
        if row_step <= step {
            kept.push(line);
        }
    }
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_run_is_never_overwritten_silently() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        RunDir::open(&root, OpenMode::Fresh).unwrap();
        std::fs::write(root.join("config.toml"), "x").unwrap();
        let err = RunDir::open(&root, OpenMode::Fresh).unwrap_err().to_string();
        assert!(err.contains("--resume") && err.contains("--overwrite"), "{err}");
        assert!(root.join("config.toml").exists());
        RunDir::open(&root, OpenMode::Overwrite).unwrap();
        assert!(!root.join("config.toml").exists());
        let missing = RunDir::open(&dir.path().join("nope"), OpenMode::Resume { step: 1 }).unwrap_err().to_string();
        assert!(missing.contains("nothing to resume"), "{missing}");
    }

    #[test]
    fn resume_cuts_logs_back_to_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let run = RunDir::open(&root, OpenMode::Fresh).unwrap();
        let mut csv = RewardsCsv::append(&run.rewards_csv(), vec!["chain".into(), "risk".into()]).unwrap();
        let mut metrics = JsonlWriter::append(&run.metrics()).unwrap();
        for step in 1..=3 {
            csv.write(step, &format!("s{step}"), "general", &[Some(0.5), None], Some(0.2)).unwrap();
            metrics.write(&serde_json::json!({"step": step, "loss": 1.0})).unwrap();
        }
        drop((csv, metrics));
        let run = RunDir::open(&root, OpenMode::Resume { step: 2 }).unwrap();
        let text = std::fs::read_to_string(run.rewards_csv()).unwrap();
        assert_eq!(text, "step,sample_id,category,chain,risk,total\n1,s1,general,0.500000,,0.200000\n2,s2,general,0.500000,,0.200000\n");
        assert_eq!(std::fs::read_to_string(run.metrics()).unwrap().lines().count(), 2);
        // Appending after a resume does not repeat the header.
        let mut csv = RewardsCsv::append(&run.rewards_csv(), vec!["chain".into(), "risk".into()]).unwrap();
        csv.write(3, "s3", "general", &[None, Some(1.0)], None).unwrap();
        assert!(std::fs::read_to_string(run.rewards_csv()).unwrap().ends_with("2,s2,general,0.500000,,0.200000\n3,s3,general,,1.000000,\n"));
    }

    #[test]
    fn latest_checkpoint_needs_a_trainer_state() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(&dir.path().join("r"), OpenMode::Fresh).unwrap();
        assert!(run.latest_checkpoint().unwrap().is_none());
        for s in [2, 10, 4] {
            std::fs::create_dir_all(run.checkpoint(s)).unwrap();
            std::fs::write(run.checkpoint(s).join("trainer_state.json"), "{}").unwrap();
        }
        std::fs::create_dir_all(run.checkpoint(12)).unwrap(); // interrupted while saving
        assert_eq!(run.latest_checkpoint().unwrap().unwrap().0, 10);
    }
}
