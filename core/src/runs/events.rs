//! A run's scalars as a TensorBoard event file. The trainer and `medrl sft` write
//! `events.out.tfevents.medrl` in the run folder as they go (one event per step, the tags of
//! [`super::scalars`]); [`rebuild`] writes the same events from a run's files, for a run trained
//! before event files existed or one whose event file was lost.

use super::scalars::RunScalars;
use crate::training::tfevents::{EventWriter, EventsError};
use std::path::Path;

/// Writes every step of `scalars` to a new event file at `path` (through a temporary file in
/// the same folder, renamed over `path` at the end, so a reader never sees half a file).
///
/// Wall times: the run's start is the modification time of its `config.toml` (written before
/// step 1), and each step ends `perf/step_seconds` after the one before where the run recorded
/// it (SFT runs do not: their steps all carry the start). Returns the number of step events.
pub fn rebuild(scalars: &RunScalars, path: &Path) -> Result<usize, EventsError> {
    let io = |source| EventsError::Io { path: path.to_path_buf(), source };
    let start = std::fs::metadata(scalars.root.join("config.toml"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(folder).map_err(io)?;
    let mut writer = EventWriter::append(tmp.path(), start)?;
    let mut wall = start;
    let by_step = scalars.by_step();
    for (step, values) in &by_step {
        if let Some((_, s)) = values.iter().find(|(t, _)| t == "perf/step_seconds") {
            wall += s;
        }
        writer.write_scalars(*step, wall, values)?;
    }
    drop(writer);
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(by_step.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::tfevents::read;

    #[test]
    fn a_rebuilt_file_holds_every_step_and_tag_of_the_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rewards.csv"), "step,sample_id,category,chain,total\n1,a,general,0.5,0.25\n2,a,general,1,0.75\n").unwrap();
        std::fs::write(
            dir.path().join("metrics.jsonl"),
            "{\"step\":1,\"step_seconds\":2.0,\"entropy\":3.0}\n{\"step\":2,\"step_seconds\":4.0,\"entropy\":2.5}\n",
        )
        .unwrap();
        let scalars = RunScalars::read(dir.path()).unwrap();
        let path = dir.path().join("events.out.tfevents.medrl");
        assert_eq!(rebuild(&scalars, &path).unwrap(), 2);
        let events = read(&path).unwrap();
        assert_eq!(events.len(), 3, "the version record and two steps");
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        // No config.toml: the start is 0; the steps end 2 s and 2 + 4 s later.
        assert_eq!((events[1].step, events[1].wall_time, events[2].wall_time), (1, 2.0, 6.0));
        let mut step2 = events[2].scalars.clone();
        step2.sort_by(|a, b| a.0.cmp(&b.0));
        let expected =
            [("perf/step_seconds", 4.0), ("policy/entropy", 2.5), ("reward/total", 0.75), ("rule/chain", 1.0)].map(|(t, v)| (t.to_string(), v));
        assert_eq!(step2, expected);
    }
}
