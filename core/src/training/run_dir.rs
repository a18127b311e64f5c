//! The run directory (`runs/<name>/`) and its append-only logs: `config.toml`, `rewards.csv`,
//! `kl_metrics.jsonl`, `metrics.jsonl`, `samples.jsonl`, `failures.jsonl`, `audit.jsonl`,
//! `events.out.tfevents.medrl` (TensorBoard), `checkpoints/step-N/` and `final/`.
//!
//! A run folder that exists is never overwritten unless asked (`--overwrite`) and never appended to
//! except by a resume, which first cuts every log back to the byte length the checkpoint recorded
//! ([`LogLengths`]), so the resumed rows are exactly those a run without the interruption would
//! have written, and a line torn by a crash or a full disk is dropped rather than refused.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
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
    /// A log holds fewer bytes than the checkpoint recorded: rows the run had written are gone.
    #[error(
        "{path} is {actual} bytes, but checkpoint step-{step} recorded {recorded}: rows the run had written before that checkpoint are lost; restore the file from a backup, or start the run again with --overwrite"
    )]
    Shorter { path: PathBuf, step: u64, recorded: u64, actual: u64 },
}

/// The name of a run's TensorBoard event file. Fixed rather than TensorFlow's
/// `events.out.tfevents.<time>.<host>`, so a checkpoint can record its length and a resume cut it.
pub const EVENTS_FILE: &str = "events.out.tfevents.medrl";

/// How a resume treats bytes of a log written after the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// The trainer's own rows (rewards, KL, metrics, samples, failures): cut back to the
    /// checkpoint, since the resumed run writes the same steps again.
    Rows,
    /// The audit log and its samples: every complete record is kept (those evaluations happened,
    /// and the hash chain continues from the last one); only a torn last line is dropped.
    Audit,
    /// The TensorBoard event file: binary records, cut like the rows (by length, or for an old
    /// checkpoint by the steps of its events).
    Events,
}

/// The byte length of every append-only log of a run at a checkpoint (`log_lengths.json` in the
/// checkpoint folder), by file name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLengths {
    /// Format marker, `medrl.log_lengths/1`.
    pub format: String,
    /// File name (in the run folder) → bytes.
    pub files: BTreeMap<String, u64>,
}

/// The format marker of `log_lengths.json`.
pub const LOG_LENGTHS_FORMAT: &str = "medrl.log_lengths/1";

/// What a resume removed from one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCut {
    pub path: PathBuf,
    /// Bytes removed from the end.
    pub dropped_bytes: u64,
    /// Of those, the bytes of a last line without its newline (torn by a crash or a full disk).
    pub torn_bytes: u64,
}

impl std::fmt::Display for LogCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: dropped {} bytes written after the checkpoint", self.path.display(), self.dropped_bytes)?;
        if self.torn_bytes > 0 {
            write!(f, " ({} of them a torn last line)", self.torn_bytes)?;
        }
        Ok(())
    }
}

/// How to open a run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// It must not exist.
    Fresh,
    /// Delete whatever is there first.
    Overwrite,
    /// It must exist; logs are cut back to `step` (the checkpoint's) by their `"step"` fields:
    /// for checkpoints written before `log_lengths.json` existed ([`RunDir::resume`] is exact).
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
            for (log, kind) in dir.logs() {
                match kind {
                    LogKind::Rows => truncate_after_step(&log, step)?,
                    LogKind::Audit => drop_torn_tail(&log, 0).map(|_| ())?,
                    LogKind::Events => crate::training::tfevents::truncate_after_step(&log, step).map_err(|e| events_err(&log, e))?,
                }
            }
        }
        Ok(dir)
    }

    /// Opens an existing run to resume it from checkpoint `step`, which recorded `lengths`:
    /// every [`LogKind::Rows`] and [`LogKind::Events`] log is cut to its recorded length, every [`LogKind::Audit`] log
    /// loses only a torn last line. A log shorter than recorded is refused ([`RunDirError::Shorter`]):
    /// continuing would leave a run whose files disagree with its checkpoint. Nothing is cut until
    /// every log has been checked. Returns what was cut.
    pub fn resume(root: &Path, step: u64, lengths: &LogLengths) -> Result<(Self, Vec<LogCut>), RunDirError> {
        if !root.exists() {
            return Err(RunDirError::Missing(root.to_path_buf()));
        }
        let dir = RunDir { root: root.to_path_buf() };
        let mut plan = Vec::new();
        for (path, kind) in dir.logs() {
            let name = file_name(&path);
            // A log the checkpoint does not list did not exist then.
            let recorded = lengths.files.get(&name).copied().unwrap_or(0);
            let actual = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(io(&path)(e)),
            };
            if actual < recorded {
                return Err(RunDirError::Shorter { path, step, recorded, actual });
            }
            plan.push((path, kind, recorded, actual));
        }
        let mut cuts = Vec::new();
        for (path, kind, recorded, actual) in plan {
            if actual == recorded {
                continue;
            }
            let cut = match kind {
                LogKind::Rows => {
                    let torn = torn_tail_len(&path, actual)?;
                    set_len(&path, recorded)?;
                    LogCut { path, dropped_bytes: actual - recorded, torn_bytes: torn.min(actual - recorded) }
                }
                LogKind::Events => {
                    let torn = events_torn_len(&path)?;
                    set_len(&path, recorded)?;
                    LogCut { path, dropped_bytes: actual - recorded, torn_bytes: torn.min(actual - recorded) }
                }
                LogKind::Audit => match drop_torn_tail(&path, recorded)? {
                    Some(cut) => cut,
                    None => continue,
                },
            };
            tracing::warn!(%cut, "resume");
            cuts.push(cut);
        }
        std::fs::create_dir_all(dir.checkpoints()).map_err(io(root))?;
        Ok((dir, cuts))
    }

    /// Every append-only log of a run, and how a resume treats it.
    pub fn logs(&self) -> Vec<(PathBuf, LogKind)> {
        let audit = self.audit();
        let audit_samples = crate::governance::audit::samples_path_for(&audit);
        vec![
            (self.rewards_csv(), LogKind::Rows),
            (self.kl_metrics(), LogKind::Rows),
            (self.metrics(), LogKind::Rows),
            (self.samples(), LogKind::Rows),
            (self.failures(), LogKind::Rows),
            (self.events(), LogKind::Events),
            (audit, LogKind::Audit),
            (audit_samples, LogKind::Audit),
        ]
    }

    /// The byte length of every log now (a missing one is 0), for a checkpoint to record.
    pub fn log_lengths(&self) -> Result<LogLengths, RunDirError> {
        let mut files = BTreeMap::new();
        for (path, _) in self.logs() {
            let len = match std::fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(io(&path)(e)),
            };
            files.insert(file_name(&path), len);
        }
        Ok(LogLengths { format: LOG_LENGTHS_FORMAT.into(), files })
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
    /// The TensorBoard event file (TensorBoard reads any file whose name holds `tfevents`).
    pub fn events(&self) -> PathBuf {
        self.root.join(EVENTS_FILE)
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

fn events_err(path: &Path, e: crate::training::tfevents::EventsError) -> RunDirError {
    use crate::training::tfevents::EventsError;
    match e {
        EventsError::Io { path, source } => RunDirError::Io { path, source },
        EventsError::Corrupt { record, message, .. } => {
            RunDirError::Corrupt { path: path.to_path_buf(), line: record + 1, message: format!("event record {}: {message}", record + 1) }
        }
    }
}

/// The bytes after an event file's last complete record (0 for a missing file; a corrupt
/// record is the resume's later problem, not this count's).
fn events_torn_len(path: &Path) -> Result<u64, RunDirError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(path)(e)),
    };
    Ok(crate::training::tfevents::parse(path, &bytes).map_or(0, |(_, complete)| bytes.len() as u64 - complete))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn set_len(path: &Path, len: u64) -> Result<(), RunDirError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io(path))?;
    file.set_len(len).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// The number of bytes after the last newline of the file's first `len` bytes (0 when it ends
/// in one or is empty).
fn torn_tail_len(path: &Path, len: u64) -> Result<u64, RunDirError> {
    if len == 0 {
        return Ok(0);
    }
    let mut file = File::open(path).map_err(io(path))?;
    let mut torn = 0u64;
    let mut end = len;
    // Read backwards in chunks: a torn line is short, a whole file may not be.
    while end > 0 {
        let start = end.saturating_sub(64 * 1024);
        let mut buf = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(io(path))?;
        file.read_exact(&mut buf).map_err(io(path))?;
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(pos) => return Ok(torn + (buf.len() - pos - 1) as u64),
            None => torn += buf.len() as u64,
        }
        end = start;
    }
    Ok(torn)
}

/// Drops a last line without its newline (a write torn by a crash or a full disk), never
/// cutting below `keep` bytes. A missing file is fine.
fn drop_torn_tail(path: &Path, keep: u64) -> Result<Option<LogCut>, RunDirError> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let torn = torn_tail_len(path, len)?.min(len.saturating_sub(keep));
    if torn == 0 {
        return Ok(None);
    }
    set_len(path, len - torn)?;
    Ok(Some(LogCut { path: path.to_path_buf(), dropped_bytes: torn, torn_bytes: torn }))
}

/// Cuts a log back to the rows of steps `≤ step`: for `.csv` the first column is the step (the
/// header stays); for `.jsonl` each line's `"step"` field. A last line without its newline was
/// torn by a crash and is dropped. A missing file is fine. Only for checkpoints without
/// `log_lengths.json`; [`RunDir::resume`] cuts by length, exactly.
pub fn truncate_after_step(path: &Path, step: u64) -> Result<(), RunDirError> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    // Bytes, not text: a torn line may end inside a UTF-8 sequence.
    if bytes.last() != Some(&b'\n') {
        bytes.truncate(bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        RunDirError::Corrupt { path: path.to_path_buf(), line, message: "not UTF-8".into() }
    })?;
    let is_csv = path.extension().is_some_and(|e| e == "csv");
    let mut kept = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.to_string();
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

    /// A checkpoint's lengths, then a crash: more rows, a torn half line in every log. The
    /// resume cuts the row logs to exactly the recorded bytes, keeps the audit log's complete
    /// records and drops only its torn line, and says how many bytes went.
    #[test]
    fn resume_cuts_each_log_to_the_recorded_length_and_drops_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let run = RunDir::open(&root, OpenMode::Fresh).unwrap();
        let row = |step: u64| format!("{{\"step\":{step},\"kl\":0.1}}\n");
        std::fs::write(run.kl_metrics(), row(1) + &row(2)).unwrap();
        std::fs::write(run.audit(), "{\"seq\":1}\n").unwrap();
        let lengths = run.log_lengths().unwrap();
        assert_eq!(lengths.files["kl_metrics.jsonl"], 2 * row(1).len() as u64);
        assert_eq!((lengths.files["audit.jsonl"], lengths.files["samples.jsonl"]), (10, 0));
        assert_eq!(lengths.files.len(), 8, "{lengths:?}");
        let at_checkpoint = std::fs::read(run.kl_metrics()).unwrap();
        // The crash: step 3 wrote a row and an audit record, then lines were torn mid-write
        // (the samples log mid-way through a UTF-8 character).
        let mut f = OpenOptions::new().append(true).open(run.kl_metrics()).unwrap();
        f.write_all(format!("{}{{\"step\":4,\"k", row(3)).as_bytes()).unwrap();
        std::fs::write(run.audit(), "{\"seq\":1}\n{\"seq\":2}\n{\"se").unwrap();
        std::fs::write(run.samples(), b"{\"step\":3,\"text\":\"\xC3").unwrap();
        let (_, cuts) = RunDir::resume(&root, 2, &lengths).unwrap();
        assert_eq!(std::fs::read(run.kl_metrics()).unwrap(), at_checkpoint);
        assert_eq!(std::fs::read_to_string(run.audit()).unwrap(), "{\"seq\":1}\n{\"seq\":2}\n");
        assert_eq!(std::fs::read(run.samples()).unwrap(), b"");
        let shown: Vec<String> = cuts.iter().map(|c| c.to_string()).collect();
        assert_eq!(shown.len(), 3, "{shown:?}");
        // Step 3's row is 20 bytes, the torn `{"step":4,"k` 12; the torn sample 18 + 1.
        assert!(shown[0].ends_with("kl_metrics.jsonl: dropped 32 bytes written after the checkpoint (12 of them a torn last line)"), "{shown:?}");
        assert!(shown[1].ends_with("samples.jsonl: dropped 19 bytes written after the checkpoint (19 of them a torn last line)"), "{shown:?}");
        assert!(shown[2].ends_with("audit.jsonl: dropped 4 bytes written after the checkpoint (4 of them a torn last line)"), "{shown:?}");
        // Resuming again changes nothing.
        assert!(RunDir::resume(&root, 2, &lengths).unwrap().1.is_empty());
    }

    /// The event file is cut like the rows: to its recorded length after a crash (here one more
    /// step and 9 bytes of a torn record), or for an old checkpoint by the steps of its events.
    #[test]
    fn resume_cuts_the_event_file_by_length_or_by_step() {
        use crate::training::tfevents::{EventWriter, read};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let run = RunDir::open(&root, OpenMode::Fresh).unwrap();
        let mut w = EventWriter::append(&run.events(), 1.0).unwrap();
        for step in 1..=2 {
            w.write_scalars(step, 1.0, &[("reward/total".into(), 0.5)]).unwrap();
        }
        let lengths = run.log_lengths().unwrap();
        let at_checkpoint = std::fs::read(run.events()).unwrap();
        w.write_scalars(3, 1.0, &[("reward/total".into(), 0.5)]).unwrap();
        drop(w);
        let step3 = std::fs::read(run.events()).unwrap().len() - at_checkpoint.len();
        let mut f = OpenOptions::new().append(true).open(run.events()).unwrap();
        f.write_all(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        drop(f);
        let (_, cuts) = RunDir::resume(&root, 2, &lengths).unwrap();
        assert_eq!(std::fs::read(run.events()).unwrap(), at_checkpoint);
        assert_eq!((cuts.len(), cuts[0].dropped_bytes, cuts[0].torn_bytes), (1, step3 as u64 + 9, 9));
        RunDir::open(&root, OpenMode::Resume { step: 1 }).unwrap();
        assert_eq!(read(&run.events()).unwrap().iter().map(|e| e.step).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_log_shorter_than_the_checkpoint_recorded_is_refused_and_nothing_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let run = RunDir::open(&root, OpenMode::Fresh).unwrap();
        std::fs::write(run.metrics(), "{\"step\":1}\n{\"step\":2}\n").unwrap();
        std::fs::write(run.kl_metrics(), "{\"step\":1}\n").unwrap();
        let lengths = run.log_lengths().unwrap();
        std::fs::write(run.kl_metrics(), "{\"step\":1}\n{\"step\":2}\n").unwrap();
        std::fs::write(run.metrics(), "{\"step\":1}\n").unwrap();
        let err = RunDir::resume(&root, 2, &lengths).unwrap_err();
        assert!(matches!(err, RunDirError::Shorter { recorded: 22, actual: 11, step: 2, .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("metrics.jsonl is 11 bytes, but checkpoint step-2 recorded 22") && msg.contains("--overwrite"), "{msg}");
        // kl_metrics.jsonl was checked but not cut: a refused resume changes nothing.
        assert_eq!(std::fs::read_to_string(run.kl_metrics()).unwrap(), "{\"step\":1}\n{\"step\":2}\n");
    }

    #[test]
    fn a_legacy_resume_drops_a_torn_last_line_instead_of_refusing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        let run = RunDir::open(&root, OpenMode::Fresh).unwrap();
        std::fs::write(run.metrics(), "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"st").unwrap();
        std::fs::write(run.audit(), "{\"seq\":1}\n{\"se").unwrap();
        RunDir::open(&root, OpenMode::Resume { step: 2 }).unwrap();
        assert_eq!(std::fs::read_to_string(run.metrics()).unwrap(), "{\"step\":1}\n{\"step\":2}\n");
        assert_eq!(std::fs::read_to_string(run.audit()).unwrap(), "{\"seq\":1}\n");
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
