//! One scored answer per line: the contract between evaluation, which writes
//! `scored-<set>-<variant>.jsonl` into its output folder, and the clinician review sheets
//! (`medrl review sample`), which read them. It carries the text a clinician needs, every
//! rule's verdict with its explanation, and the judge's score where the judge ran.

use medrl_sdk::{Hit, Sample};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One rule's verdict on one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleVerdict {
    /// Rule id (`chain`, `risk`, …).
    pub rule: String,
    pub version: String,
    /// `score`, `penalty`, `gate` or `judge`.
    pub kind: String,
    /// The sandbox outcome (`ok`, `trap`, `out_of_fuel`, …).
    pub outcome: String,
    /// Whether the rule applied; a failed evaluation counts as applicable when `on_error` counted it.
    pub applicable: bool,
    /// The score the aggregator counted; `None` when the rule did not apply or the sample was dropped.
    pub score: Option<f64>,
    /// The rule's explanation, or the error of a failed evaluation.
    pub explanation: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hits: Vec<Hit>,
}

/// One answer of one model variant to one prompt, with its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoredAnswer {
    /// Prompt set (`gold`, `redteam`, …).
    pub set: String,
    /// Model variant (`sft`, `rl`, …).
    pub variant: String,
    /// The prompt, the answer (`sample.response`) and what rules read about it.
    pub sample: Sample,
    /// Response tokens, the stop token included.
    pub tokens: usize,
    /// Whether the answer ended with EOS (not cut at the token budget).
    pub eos: bool,
    /// The rule set's aggregated reward; `None` when the sample was skipped or the batch aborted.
    pub reward: Option<f64>,
    /// Every rule of the rule set, in rule-set order.
    pub rules: Vec<RuleVerdict>,
    /// The LLM judge's score in [0, 1], on the sampled share it ran on; `None` elsewhere.
    #[serde(default)]
    pub judge: Option<f64>,
}

impl ScoredAnswer {
    /// The verdict of rule `id`, if the rule set has it.
    pub fn rule(&self, id: &str) -> Option<&RuleVerdict> {
        self.rules.iter().find(|r| r.rule == id)
    }
}

/// The file name evaluation writes for one set and variant.
pub fn file_name(set: &str, variant: &str) -> String {
    format!("scored-{set}-{variant}.jsonl")
}

#[derive(Debug, thiserror::Error)]
pub enum ScoredError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: not a scored answer: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    /// Empty, a byte order mark, or not UTF-8.
    #[error(transparent)]
    Text(#[from] crate::io::TextError),
}

pub fn write(path: &Path, answers: &[ScoredAnswer]) -> Result<(), ScoredError> {
    let io = |source| ScoredError::Io { path: path.to_path_buf(), source };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for a in answers {
        serde_json::to_writer(&mut out, a).expect("plain data");
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Reads a scored-answers file; a malformed line names the file and the line.
pub fn read(path: &Path) -> Result<Vec<ScoredAnswer>, ScoredError> {
    let text = crate::io::read_text(path)?;
    let mut answers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let a = serde_json::from_str(line).map_err(|e| ScoredError::Parse { path: path.to_path_buf(), line: i + 1, message: e.to_string() })?;
        answers.push(a);
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: &str) -> ScoredAnswer {
        let sample: Sample = serde_json::from_value(serde_json::json!({
            "id": id, "prompt": "胸口痛", "response": "请立即拨打120。", "lang": "zh", "category": "emergency", "risk": "high"
        }))
        .unwrap();
        ScoredAnswer {
            set: "gold".into(),
            variant: "rl".into(),
            sample,
            tokens: 9,
            eos: true,
            reward: Some(0.4),
            rules: vec![RuleVerdict {
                rule: "emergency".into(),
                version: "1.0.0".into(),
                kind: "score".into(),
                outcome: "ok".into(),
                applicable: true,
                score: Some(1.0),
                explanation: "sends to care".into(),
                hits: vec![],
            }],
            judge: None,
        }
    }

    #[test]
    fn round_trip_and_a_bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name("gold", "rl"));
        write(&path, &[answer("a"), answer("b")]).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back, vec![answer("a"), answer("b")]);
        assert_eq!(back[0].rule("emergency").unwrap().score, Some(1.0));
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"set\": 3}\n");
        std::fs::write(&path, text).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("scored-gold-rl.jsonl:3:"), "{err}");
    }
}
