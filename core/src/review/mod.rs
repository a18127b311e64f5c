//! Clinician review sheets out and verdicts in: the plan's spot check of 50 answers per round.
//!
//! `medrl review sample` reads an evaluation folder's `scored-<set>-<variant>.jsonl` files
//! ([`crate::eval::scored`]), picks a stratified, seeded sample ([`strata`]) and writes a sheet
//! for clinicians ([`sheet`]): a CSV for a spreadsheet, an HTML page for reading, the picked
//! answers and a manifest that pins them. Each rule gets a yes/no column phrased as the
//! clinician's own judgement of the rule's question ([`decision`]).
//!
//! `medrl review ingest` reads the filled sheet back ([`ingest`]), compares each clinician
//! verdict with the rule's decision on the same answer ([`agreement`]: accuracy, Cohen's kappa,
//! false positives and negatives), names the rule parameters each disagreement points at
//! ([`pointers`]), and writes `review_report.md` and `review_report.json` ([`report`]).
//!
//! `medrl review labels` (or `ingest --labels-out`) turns the same verdicts into labelled
//! answers for `medrl rules eval` ([`labels`]), so every review round grows the test set.

pub mod agreement;
pub mod decision;
pub mod ingest;
pub mod labels;
pub mod pointers;
pub mod report;
pub mod sheet;
pub mod strata;

pub use ingest::{IngestOptions, ingest};
pub use labels::{LabelsOptions, LabelsSummary, labels};
pub use report::ReviewReport;
pub use sheet::{SampleOptions, SheetManifest, sample};

use std::path::PathBuf;

/// File names inside a sheet folder.
pub const SHEET_CSV: &str = "review_sheet.csv";
pub const SHEET_HTML: &str = "review_sheet.html";
pub const SHEET_MANIFEST: &str = "review_manifest.json";
pub const SHEET_SAMPLES: &str = "review_samples.jsonl";
pub const REPORT_MD: &str = "review_report.md";
pub const REPORT_JSON: &str = "review_report.json";

/// Format tag of the sheet manifest; ingest refuses another.
pub const MANIFEST_FORMAT: &str = "medrl.review-sheet/1";

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Scored(#[from] crate::eval::scored::ScoredError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The evaluation folder has no scored file of the variant.
    #[error(
        "no scored-<set>-{variant}.jsonl in {dir} (variants found: {found}); run `medrl eval` into that folder first, or pick one of the found variants with --variant"
    )]
    NoScoredFiles { dir: PathBuf, variant: String, found: String },
    /// Two answers in the sample pool share a set and id, so a sheet row could not name one answer.
    #[error("{path}: sample `{id}` of set `{set}` occurs twice; each answer needs a unique id within its set")]
    DuplicateSample { path: PathBuf, set: String, id: String },
    /// A scored file holds an answer of another variant than its name says.
    #[error("{path}:{line}: answer of variant `{found}` in the file of variant `{expected}`")]
    WrongVariant { path: PathBuf, line: usize, expected: String, found: String },
    #[error("{path}: not a review sheet manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    /// The picked answers changed after the sheet was written.
    #[error(
        "{path}: sha256 {found} differs from {expected} recorded in the manifest; the answers behind the sheet were changed. Re-run `medrl review sample`, or restore the file"
    )]
    SamplesChanged { path: PathBuf, expected: String, found: String },
    /// The sheet could not be read as CSV at all.
    #[error("{path}: {message}")]
    Sheet { path: PathBuf, message: String },
    /// Cells with values outside their column's allowed values; every one is listed.
    #[error("{path}: {} bad cell(s); fix them and run ingest again:\n{}", .cells.len(), render_cells(.cells))]
    BadCells { path: PathBuf, cells: Vec<ingest::CellError> },
    #[error("{0}")]
    Invalid(String),
}

fn render_cells(cells: &[ingest::CellError]) -> String {
    const SHOWN: usize = 20;
    let mut lines: Vec<String> = cells.iter().take(SHOWN).map(|c| format!("  {c}")).collect();
    if cells.len() > SHOWN {
        lines.push(format!("  … and {} more", cells.len() - SHOWN));
    }
    lines.join("\n")
}

pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ReviewError + '_ {
    move |source| ReviewError::Io { path: path.to_path_buf(), source }
}

#[cfg(test)]
pub(crate) mod testdata {
    use crate::eval::scored::{RuleVerdict, ScoredAnswer};

    fn verdict(rule: &str, kind: &str, score: Option<f64>) -> RuleVerdict {
        RuleVerdict {
            rule: rule.into(),
            version: "1.0.0".into(),
            kind: kind.into(),
            outcome: "ok".into(),
            applicable: score.is_some(),
            score,
            explanation: format!("{rule} explanation"),
            hits: vec![],
        }
    }

    /// `count` zh answers of set `gold`, variant `rl`, scored by the four shipped rules; the
    /// third answer starts like a Markdown list (a formula to a spreadsheet).
    pub(crate) fn answers(count: usize) -> Vec<ScoredAnswer> {
        (0..count)
            .map(|i| {
                let emergency = i % 2 == 0;
                let sample = serde_json::from_value(serde_json::json!({
                    "id": format!("g{i:02}"), "prompt": format!("问题 {i}，胸口痛怎么办？"),
                    "response": if i == 2 { "- 多喝水\n- 休息".to_string() } else { format!("【分析】回答 {i}, \"引号\" <b>") },
                    "lang": "zh", "category": if emergency { "emergency" } else { "general" }, "risk": if emergency { "high" } else { "low" }
                }))
                .expect("a valid sample");
                ScoredAnswer {
                    set: "gold".into(),
                    variant: "rl".into(),
                    sample,
                    tokens: 10,
                    eos: true,
                    reward: Some(i as f64 / 10.0),
                    rules: vec![
                        verdict("chain", "score", Some(if i % 3 == 0 { 1.0 } else { 0.5 })),
                        verdict("emergency", "score", emergency.then_some(if i % 4 == 0 { 1.0 } else { 0.4 })),
                        verdict("risk", "penalty", Some(if i % 5 == 0 { 0.5 } else { 0.0 })),
                        verdict("verbosity", "penalty", Some(0.0)),
                    ],
                    judge: None,
                }
            })
            .collect()
    }
}
