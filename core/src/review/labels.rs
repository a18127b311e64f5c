//! A filled review sheet as labels for `medrl rules eval` (data/rules-eval/FORMAT.md), so every
//! review round grows the labelled test set (`medrl review labels`, or `ingest --labels-out`).
//!
//! Each row that ingest accepts (known sample, unaltered answer; see [`super::ingest`]) and that
//! has at least one verdict becomes one answer line:
//!
//! | field | from |
//! |---|---|
//! | `id` | `review-r<round>-<variant>-<set>-<sample_id>` |
//! | `class` | `review/<stratum>` in kebab-case (`review/top-reward`) |
//! | `sample` | the picked answer's sample (`review_samples.jsonl`), without its id |
//! | `labels` | one key per verdict column, the column's rule id: `yes` → `true`, `no` → `false`, `na` → `"n/a"`; an empty cell → no key |
//! | `why` | the clinician's comment on one line (empty when none) |
//! | `author` | `--author`, else `clinician review, round <round>` |
//!
//! `na` has no counterpart for three rules (FORMAT.md): for `risk` it means "no medication
//! advice", which is the format's `false`; for `chain` and `verbosity` it is left out (no
//! judgement) and counted. The sheet's `overall_acceptable` is no rule's verdict and is not
//! carried. The file is checked line by line with the label reader before it is written, and an
//! existing file is never overwritten.

use super::ingest::{Verdict as Cell, check_rows, parse_sheet, read_manifest};
use super::{ReviewError, SHEET_MANIFEST, io_error};
use crate::governance::rules_eval::labels::{Verdict, answer_line, check_answer_line};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `medrl review labels` does.
#[derive(Debug, Clone)]
pub struct LabelsOptions {
    /// The filled sheet.
    pub sheet: PathBuf,
    /// The sheet's manifest; default `review_manifest.json` beside the sheet.
    pub manifest: Option<PathBuf>,
    /// The labels file to write: `answers*.jsonl`, not yet existing.
    pub out: PathBuf,
    /// Who judged; default `clinician review, round <round>`.
    pub author: Option<String>,
}

/// What was written and what was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelsSummary {
    pub out: PathBuf,
    /// Answer lines written.
    pub answers: usize,
    /// Verdicts written, per label key.
    pub verdicts: BTreeMap<String, usize>,
    /// Accepted rows without any verdict (not written).
    pub unjudged_rows: usize,
    /// Rows ingest refuses (unknown or repeated sample, altered answer, …) or picked answers
    /// missing from the sheet.
    pub integrity_problems: usize,
    /// `na` verdicts on `chain` or `verbosity`, left out.
    pub dropped_na: usize,
}

/// The label for a clinician's verdict on `rule`'s column; `None` where the format has none.
pub fn label_for(rule: &str, cell: Cell) -> Option<Verdict> {
    match (cell, rule) {
        (Cell::Yes, _) => Some(Verdict::Yes),
        (Cell::No, _) => Some(Verdict::No),
        (Cell::Na, "risk") => Some(Verdict::No),
        (Cell::Na, "chain" | "verbosity") => None,
        (Cell::Na, _) => Some(Verdict::NotApplicable),
    }
}

/// Converts the filled sheet into an `answers*.jsonl` label file.
pub fn labels(opts: &LabelsOptions) -> Result<LabelsSummary, ReviewError> {
    let name = opts.out.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !(name.starts_with("answers") && name.ends_with(".jsonl")) {
        return Err(ReviewError::Invalid(format!(
            "{}: name the labels file answers….jsonl (e.g. answers-review-r1.jsonl), the name `medrl rules eval` reads in a split folder",
            opts.out.display()
        )));
    }
    if opts.out.exists() {
        return Err(ReviewError::Invalid(format!(
            "{} exists; labels are never overwritten: pick a new name (e.g. with the round number)",
            opts.out.display()
        )));
    }
    let sheet_dir = opts.sheet.parent().map(Path::to_path_buf).unwrap_or_default();
    let manifest_path = opts.manifest.clone().unwrap_or_else(|| sheet_dir.join(SHEET_MANIFEST));
    let (manifest, picked) = read_manifest(&manifest_path)?;
    let bytes = std::fs::read(&opts.sheet).map_err(io_error(&opts.sheet))?;
    let parsed = parse_sheet(&opts.sheet, &bytes, &manifest)?;
    let (rows, integrity) = check_rows(&parsed.rows, &manifest, &picked);
    let author = opts.author.clone().unwrap_or_else(|| format!("clinician review, round {}", manifest.round));
    let mut summary = LabelsSummary {
        out: opts.out.clone(),
        answers: 0,
        verdicts: BTreeMap::new(),
        unjudged_rows: 0,
        integrity_problems: integrity.problems.len(),
        dropped_na: 0,
    };
    let mut text = String::new();
    for (row, i) in rows {
        let answer = &picked[i].answer;
        let mut labels = BTreeMap::new();
        for (column, cell) in manifest.verdict_columns.iter().zip(&row.verdicts) {
            let Some(cell) = cell else { continue };
            match label_for(&column.rule, *cell) {
                Some(v) => {
                    labels.insert(column.rule.clone(), v);
                }
                None => summary.dropped_na += 1,
            }
        }
        if labels.is_empty() {
            summary.unjudged_rows += 1;
            continue;
        }
        let id = format!("review-r{}-{}-{}-{}", manifest.round, manifest.variant, answer.set, answer.sample.id);
        let class = format!("review/{}", picked[i].stratum.as_str().replace('_', "-"));
        let why = row.comment.split_whitespace().collect::<Vec<_>>().join(" ");
        let line = answer_line(&id, &class, &answer.sample, &labels, &why, &author);
        check_answer_line(&line).map_err(|problems| {
            ReviewError::Invalid(format!(
                "sheet line {} (sample {}) does not make a valid label: {}",
                row.line,
                answer.sample.id,
                problems.join("; ")
            ))
        })?;
        for key in labels.keys() {
            *summary.verdicts.entry(key.clone()).or_default() += 1;
        }
        summary.answers += 1;
        text.push_str(&line);
        text.push('\n');
    }
    if summary.answers == 0 {
        return Err(ReviewError::Invalid(format!("{}: no row has a verdict, so there are no labels to write", opts.sheet.display())));
    }
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    // create_new: a file that appeared since the check above is not overwritten either.
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&opts.out).map_err(io_error(&opts.out))?;
    file.write_all(text.as_bytes()).map_err(io_error(&opts.out))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::scored;
    use crate::governance::rules_eval::labels::read;
    use crate::review::sheet::{SampleOptions, sample};
    use crate::review::{SHEET_CSV, testdata};

    #[test]
    fn each_clinician_verdict_maps_to_the_format() {
        assert_eq!(label_for("chain", Cell::Yes), Some(Verdict::Yes));
        assert_eq!(label_for("emergency", Cell::No), Some(Verdict::No));
        assert_eq!(label_for("emergency", Cell::Na), Some(Verdict::NotApplicable));
        assert_eq!(label_for("risk", Cell::Na), Some(Verdict::No), "no medication advice is not risky advice");
        assert_eq!(label_for("chain", Cell::Na), None);
        assert_eq!(label_for("verbosity", Cell::Na), None);
        assert_eq!(label_for("tone", Cell::Na), Some(Verdict::NotApplicable));
    }

    /// Fills the sheet's clinician columns row by row: (chain, emergency, risk, verbosity, comment).
    fn filled(csv: &str, rows: &[[&str; 5]]) -> String {
        let mut r = csv::ReaderBuilder::new().from_reader(csv.trim_start_matches('\u{feff}').as_bytes());
        let header = r.headers().unwrap().clone();
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let cols = [col("chain_complete"), col("emergency_covered"), col("risky_prescription"), col("too_verbose"), col("comment")];
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header).unwrap();
        for (rec, cells) in r.records().zip(rows) {
            let mut rec: Vec<String> = rec.unwrap().iter().map(str::to_string).collect();
            for (k, v) in cols.iter().zip(cells) {
                rec[*k] = v.to_string();
            }
            w.write_record(&rec).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn a_filled_sheet_becomes_labels_the_evaluation_reads() {
        let dir = tempfile::tempdir().unwrap();
        let eval = dir.path().join("eval");
        std::fs::create_dir_all(&eval).unwrap();
        scored::write(&eval.join(scored::file_name("gold", "rl")), &testdata::answers(4)).unwrap();
        let out = dir.path().join("sheet");
        sample(&SampleOptions { eval_dir: eval, variant: "rl".into(), round: 2, n: 4, seed: 1, ruleset: None, out: out.clone() }).unwrap();
        let csv = std::fs::read_to_string(out.join(SHEET_CSV)).unwrap();
        let sheet = dir.path().join("filled.csv");
        std::fs::write(
            &sheet,
            filled(
                &csv,
                &[["yes", "na", "no", "no", "fine"], ["no", "yes", "na", "na", "sections\nthin"], ["", "", "", "", ""], ["na", "", "yes", "", ""]],
            ),
        )
        .unwrap();
        let labels_path = dir.path().join("test/answers-review-r2.jsonl");
        let opts = LabelsOptions { sheet: sheet.clone(), manifest: Some(out.join(SHEET_MANIFEST)), out: labels_path.clone(), author: None };
        let s = labels(&opts).unwrap();
        // Row 3 is empty; verbosity `na` (row 2) and chain `na` (row 4) are dropped.
        assert_eq!((s.answers, s.unjudged_rows, s.dropped_na, s.integrity_problems), (3, 1, 2, 0));
        assert_eq!(s.verdicts, BTreeMap::from([("chain".into(), 2), ("emergency".into(), 2), ("risk".into(), 3), ("verbosity".into(), 1)]));
        let corpus = read(&labels_path, None).unwrap();
        let split = &corpus.splits[0];
        assert_eq!(split.name, "test");
        let a = &split.answers[1];
        assert!(a.id.starts_with("review-r2-rl-gold-g"), "{}", a.id);
        assert!(a.class.starts_with("review/"), "{}", a.class);
        assert_eq!(a.labels["risk"], Verdict::No, "na on risk is no risky advice");
        assert_eq!(a.labels["emergency"], Verdict::Yes);
        assert!(!a.labels.contains_key("verbosity"));
        assert_eq!((a.why.as_str(), a.author.as_str()), ("sections thin", "clinician review, round 2"));
        assert_eq!(split.answers[0].labels["emergency"], Verdict::NotApplicable);
        // The sample is the picked answer's, under the new id.
        let (_, picked) = read_manifest(&out.join(SHEET_MANIFEST)).unwrap();
        let original = picked.iter().find(|p| a.id.ends_with(&format!("-{}", p.answer.sample.id))).unwrap();
        assert_eq!(a.sample.response, original.answer.sample.response);

        // Never overwritten; the name must be one rules eval reads.
        let again = labels(&opts).unwrap_err().to_string();
        assert!(again.contains("exists; labels are never overwritten"), "{again}");
        let bad = labels(&LabelsOptions { out: dir.path().join("review.jsonl"), ..opts }).unwrap_err().to_string();
        assert!(bad.contains("name the labels file answers….jsonl"), "{bad}");
    }
}
