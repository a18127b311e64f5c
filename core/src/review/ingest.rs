//! `medrl review ingest`: the filled sheet back in.
//!
//! The sheet is read as exported by a spreadsheet: with or without the byte-order mark, comma,
//! semicolon or tab separated (the delimiter that yields the manifest's columns wins), rows in
//! any order, extra columns ignored (and listed). Verdict cells accept `yes`/`y`/`是`,
//! `no`/`n`/`否`, `na`/`n/a`/`不适用` in any case with any surrounding whitespace, and empty for
//! "not reviewed"; anything else is an error naming the line, the sample, the column and the
//! allowed values (all bad cells at once). A row whose sample id is unknown, repeated, or whose
//! answer, set, variant or round differs from the picked answers is reported and left out of
//! the agreement figures, as are picked answers missing from the sheet.

use super::report::{self, Integrity, ReviewReport, RowRef};
use super::sheet::{COMMENT_COLUMN, OVERALL_COLUMN, PickedAnswer, SheetManifest};
use super::{MANIFEST_FORMAT, REPORT_JSON, REPORT_MD, ReviewError, SHEET_MANIFEST, io_error};
use crate::registry::Registry;
use crate::registry::hash::sha256_hex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What `medrl review ingest` does.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The filled sheet.
    pub sheet: PathBuf,
    /// The sheet's manifest; default `review_manifest.json` beside the sheet.
    pub manifest: Option<PathBuf>,
    /// Rule set whose parameters the report points at; default: the one the manifest records.
    pub ruleset: Option<String>,
    /// Where the report goes; default: the sheet's folder.
    pub out: Option<PathBuf>,
}

/// A clinician's answer to a yes/no question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Yes,
    No,
    /// Not applicable: the question does not arise for this answer.
    Na,
}

impl Verdict {
    pub const ALLOWED: &'static str = "yes, no, na (also y, n, n/a, 是, 否, 不适用; any case), or empty when not reviewed";

    /// Parses one verdict cell: `Ok(None)` for an empty cell, an error for anything not allowed.
    pub fn parse(cell: &str) -> Result<Option<Verdict>, NotAVerdict> {
        match cell.trim().to_lowercase().as_str() {
            "" => Ok(None),
            "yes" | "y" | "是" => Ok(Some(Verdict::Yes)),
            "no" | "n" | "否" => Ok(Some(Verdict::No)),
            "na" | "n/a" | "不适用" => Ok(Some(Verdict::Na)),
            _ => Err(NotAVerdict),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Yes => "yes",
            Verdict::No => "no",
            Verdict::Na => "na",
        }
    }
}

/// A cell that is none of the allowed verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAVerdict;

/// A cell outside its column's allowed values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellError {
    /// Line of the CSV file where the row starts (the header is line 1).
    pub line: u64,
    pub sample: String,
    pub column: String,
    pub value: String,
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} (sample {}), column `{}`: `{}` is not one of {}", self.line, self.sample, self.column, self.value, Verdict::ALLOWED)
    }
}

/// One row of the filled sheet.
#[derive(Debug, Clone, PartialEq)]
pub struct SheetRow {
    pub line: u64,
    pub sample_id: String,
    pub set: String,
    /// `None` where the sheet has no such column.
    pub variant: Option<String>,
    pub round: Option<String>,
    pub answer: String,
    /// One per manifest verdict column, in manifest order.
    pub verdicts: Vec<Option<Verdict>>,
    pub overall: Option<Verdict>,
    pub comment: String,
}

/// The parsed sheet and the columns it had beyond the manifest's.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSheet {
    pub rows: Vec<SheetRow>,
    pub ignored_columns: Vec<String>,
}

fn normalize_header(h: &str) -> String {
    h.trim().trim_start_matches('\u{feff}').trim().to_lowercase()
}

/// Parses the sheet's bytes against the manifest's columns.
pub fn parse_sheet(path: &Path, bytes: &[u8], manifest: &SheetManifest) -> Result<ParsedSheet, ReviewError> {
    let sheet_error = |message: String| ReviewError::Sheet { path: path.to_path_buf(), message };
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(sheet_error("is UTF-16 (Excel's \"Unicode Text\"); save it as \"CSV UTF-8 (Comma delimited)\" and run ingest again".into()));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        sheet_error(format!(
            "is not UTF-8 ({e}); a spreadsheet's plain \"CSV\" uses the system code page, save it as \"CSV UTF-8 (Comma delimited)\""
        ))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let required: Vec<String> = ["sample_id", "set", "answer"]
        .iter()
        .map(|s| s.to_string())
        .chain(manifest.verdict_columns.iter().map(|v| v.column.clone()))
        .chain([OVERALL_COLUMN.to_string(), COMMENT_COLUMN.to_string()])
        .collect();
    let header_of = |delimiter: u8| -> Vec<String> {
        let mut r = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).flexible(true).from_reader(text.as_bytes());
        r.records().next().and_then(Result::ok).map(|rec| rec.iter().map(normalize_header).collect()).unwrap_or_default()
    };
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|&d| (required.iter().filter(|c| header_of(d).contains(c)).count(), d == b','))
        .expect("three candidates");
    let header = header_of(delimiter);
    let missing: Vec<&str> = required.iter().filter(|c| !header.contains(c)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(sheet_error(format!(
            "the header lacks column(s) {}; keep every column `medrl review sample` wrote (rename or delete none), then fill the verdict columns",
            missing.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        )));
    }
    let index: HashMap<&str, usize> = header.iter().enumerate().rev().map(|(i, h)| (h.as_str(), i)).collect();
    let ignored_columns: Vec<String> = header.iter().filter(|h| !h.is_empty() && !manifest.columns.iter().any(|c| c == *h)).cloned().collect();

    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(true).flexible(true).from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| sheet_error(format!("is not valid CSV: {e}")))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let cell = |name: &str| index.get(name).and_then(|&i| record.get(i)).unwrap_or("").to_string();
        let (sample_id, set) = (cell("sample_id").trim().to_string(), cell("set").trim().to_string());
        let mut verdict = |column: &str| match Verdict::parse(&cell(column)) {
            Ok(v) => v,
            Err(NotAVerdict) => {
                bad.push(CellError { line, sample: format!("{set}/{sample_id}"), column: column.to_string(), value: cell(column) });
                None
            }
        };
        let verdicts = manifest.verdict_columns.iter().map(|v| verdict(&v.column)).collect();
        let overall = verdict(OVERALL_COLUMN);
        rows.push(SheetRow {
            line,
            variant: index.contains_key("variant").then(|| cell("variant").trim().to_string()),
            round: index.contains_key("round").then(|| cell("round").trim().to_string()),
            answer: cell("answer"),
            comment: cell(COMMENT_COLUMN).trim().to_string(),
            sample_id,
            set,
            verdicts,
            overall,
        });
    }
    if !bad.is_empty() {
        return Err(ReviewError::BadCells { path: path.to_path_buf(), cells: bad });
    }
    Ok(ParsedSheet { rows, ignored_columns })
}

/// Text as compared across a spreadsheet round trip: line endings unified, the formula guard
/// `'` removed where the sheet added it, trailing whitespace of the cell ignored.
fn comparable(cell: &str, original: &str) -> (String, String) {
    let unify = |s: &str| s.replace("\r\n", "\n").replace('\r', "\n").trim_end().to_string();
    let guarded = super::sheet::guard_cell(original) != original;
    let cell = if guarded { cell.strip_prefix('\'').unwrap_or(cell) } else { cell };
    (unify(cell), unify(original))
}

/// Reads the manifest and the picked answers it pins.
pub fn read_manifest(path: &Path) -> Result<(SheetManifest, Vec<PickedAnswer>), ReviewError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let manifest: SheetManifest =
        serde_json::from_str(&text).map_err(|e| ReviewError::Manifest { path: path.to_path_buf(), message: e.to_string() })?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(ReviewError::Manifest {
            path: path.to_path_buf(),
            message: format!("format `{}`, this medrl reads `{MANIFEST_FORMAT}`", manifest.format),
        });
    }
    let samples_path = path.parent().unwrap_or(Path::new(".")).join(&manifest.samples.file);
    let bytes = std::fs::read(&samples_path).map_err(io_error(&samples_path))?;
    let found = sha256_hex(&bytes);
    if found != manifest.samples.sha256 {
        return Err(ReviewError::SamplesChanged { path: samples_path, expected: manifest.samples.sha256.clone(), found });
    }
    let mut picked = Vec::new();
    for (i, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: PickedAnswer =
            serde_json::from_str(line).map_err(|e| ReviewError::Manifest { path: samples_path.clone(), message: format!("line {}: {e}", i + 1) })?;
        picked.push(p);
    }
    Ok((manifest, picked))
}

/// Matches sheet rows to picked answers; rows with a problem are reported, not compared.
/// Returns (row, index into `picked`) for the rows that pass.
pub fn check_rows<'a>(rows: &'a [SheetRow], manifest: &SheetManifest, picked: &[PickedAnswer]) -> (Vec<(&'a SheetRow, usize)>, Integrity) {
    let by_key: HashMap<(&str, &str), usize> =
        picked.iter().enumerate().map(|(i, p)| ((p.answer.set.as_str(), p.answer.sample.id.as_str()), i)).collect();
    let mut integrity = Integrity::default();
    let mut seen: BTreeMap<usize, u64> = BTreeMap::new();
    let mut good = Vec::new();
    for row in rows {
        let at = RowRef { line: Some(row.line), set: row.set.clone(), sample_id: row.sample_id.clone(), problem: String::new() };
        let Some(&i) = by_key.get(&(row.set.as_str(), row.sample_id.as_str())) else {
            integrity.problems.push(RowRef { problem: "unknown sample: no picked answer has this set and sample id (altered id?)".into(), ..at });
            continue;
        };
        if let Some(first) = seen.get(&i) {
            integrity.problems.push(RowRef { problem: format!("repeats the sample of line {first}; only the first row counts"), ..at });
            continue;
        }
        seen.insert(i, row.line);
        let mut problems = Vec::new();
        let (cell, original) = comparable(&row.answer, &picked[i].answer.sample.response);
        if cell != original {
            problems.push("answer text differs from the picked answer".to_string());
        }
        if let Some(v) = row.variant.as_ref().filter(|v| **v != manifest.variant) {
            problems.push(format!("variant `{v}`, the sheet is of `{}`", manifest.variant));
        }
        if let Some(r) = row.round.as_ref().filter(|r| **r != manifest.round.to_string()) {
            problems.push(format!("round `{r}`, the sheet is of round {}", manifest.round));
        }
        if problems.is_empty() {
            good.push((row, i));
        } else {
            integrity.problems.push(RowRef { problem: problems.join("; "), ..at });
        }
    }
    for (i, p) in picked.iter().enumerate() {
        if !seen.contains_key(&i) {
            integrity.problems.push(RowRef {
                line: None,
                set: p.answer.set.clone(),
                sample_id: p.answer.sample.id.clone(),
                problem: "missing from the sheet".into(),
            });
        }
    }
    (good, integrity)
}

/// Reads the filled sheet, compares, and writes `review_report.md` and `review_report.json`.
pub fn ingest(opts: &IngestOptions, registry: &Registry) -> Result<ReviewReport, ReviewError> {
    let sheet_dir = opts.sheet.parent().map(Path::to_path_buf).unwrap_or_default();
    let manifest_path = opts.manifest.clone().unwrap_or_else(|| sheet_dir.join(SHEET_MANIFEST));
    let (manifest, picked) = read_manifest(&manifest_path)?;
    let bytes = std::fs::read(&opts.sheet).map_err(io_error(&opts.sheet))?;
    let parsed = parse_sheet(&opts.sheet, &bytes, &manifest)?;
    let (rows, integrity) = check_rows(&parsed.rows, &manifest, &picked);
    let ruleset = opts.ruleset.clone().or_else(|| manifest.ruleset.clone());
    let params = report::effective_params(registry, &manifest, ruleset.as_deref())?;
    let report = report::build(&opts.sheet, &manifest_path, &manifest, &picked, &rows, integrity, parsed.ignored_columns, ruleset, params);
    let out = opts.out.clone().unwrap_or(sheet_dir);
    std::fs::create_dir_all(&out).map_err(io_error(&out))?;
    let json_path = out.join(REPORT_JSON);
    std::fs::write(&json_path, serde_json::to_string_pretty(&report).expect("plain data") + "\n").map_err(io_error(&json_path))?;
    let md_path = out.join(REPORT_MD);
    std::fs::write(&md_path, report::markdown(&report)).map_err(io_error(&md_path))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::scored;
    use crate::review::sheet::{SampleOptions, sample};
    use crate::review::{SHEET_CSV, testdata};

    /// A sheet folder of 6 answers; returns the folder, the manifest and the CSV text.
    fn sheet() -> (tempfile::TempDir, SheetManifest, String) {
        let dir = tempfile::tempdir().unwrap();
        let eval = dir.path().join("eval");
        std::fs::create_dir_all(&eval).unwrap();
        scored::write(&eval.join(scored::file_name("gold", "rl")), &testdata::answers(6)).unwrap();
        let out = dir.path().join("sheet");
        let m = sample(&SampleOptions { eval_dir: eval, variant: "rl".into(), round: 1, n: 6, seed: 1, ruleset: None, out: out.clone() }).unwrap();
        let csv = std::fs::read_to_string(out.join(SHEET_CSV)).unwrap();
        (dir, m, csv)
    }

    /// The CSV with `value` written into `column` of every data row.
    fn fill(csv: &str, column: &str, value: &str) -> String {
        let mut r = csv::ReaderBuilder::new().from_reader(csv.trim_start_matches('\u{feff}').as_bytes());
        let header = r.headers().unwrap().clone();
        let k = header.iter().position(|h| h == column).unwrap();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&header).unwrap();
        for rec in r.records() {
            let mut rec: Vec<String> = rec.unwrap().iter().map(str::to_string).collect();
            rec[k] = value.to_string();
            w.write_record(&rec).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn verdicts_are_tolerant_of_case_and_whitespace_only() {
        assert_eq!(Verdict::parse(" Yes "), Ok(Some(Verdict::Yes)));
        assert_eq!(Verdict::parse("NO"), Ok(Some(Verdict::No)));
        assert_eq!(Verdict::parse("N/A"), Ok(Some(Verdict::Na)));
        assert_eq!(Verdict::parse(" 否"), Ok(Some(Verdict::No)));
        assert_eq!(Verdict::parse("  "), Ok(None));
        assert_eq!(Verdict::parse("maybe"), Err(NotAVerdict));
        assert_eq!(Verdict::parse("yes!"), Err(NotAVerdict));
    }

    #[test]
    fn the_sheet_reads_back_with_or_without_bom_and_with_semicolons() {
        let (dir, m, csv) = sheet();
        assert!(csv.starts_with('\u{feff}'), "the sheet starts with a BOM");
        let path = dir.path().join("s.csv");
        let with_bom = parse_sheet(&path, csv.as_bytes(), &m).unwrap();
        assert_eq!(with_bom.rows.len(), 6);
        assert!(with_bom.rows.iter().all(|r| r.verdicts.iter().all(Option::is_none) && r.overall.is_none()));
        let filled = fill(&csv, "chain_complete", " YES ");
        let without_bom = parse_sheet(&path, filled.as_bytes(), &m).unwrap();
        assert!(without_bom.rows.iter().all(|r| r.verdicts[0] == Some(Verdict::Yes)));
        // A spreadsheet in a locale with decimal commas saves with semicolons.
        let semicolons = {
            let mut r = csv::ReaderBuilder::new().from_reader(filled.as_bytes());
            let mut w = csv::WriterBuilder::new().delimiter(b';').from_writer(Vec::new());
            w.write_record(r.headers().unwrap()).unwrap();
            for rec in r.records() {
                w.write_record(&rec.unwrap()).unwrap();
            }
            w.into_inner().unwrap()
        };
        assert_eq!(parse_sheet(&path, &semicolons, &m).unwrap().rows, without_bom.rows);
    }

    #[test]
    fn a_bad_value_names_line_sample_column_and_allowed_values() {
        let (dir, m, csv) = sheet();
        let filled = fill(&csv, "risky_prescription", "maybe");
        let err = parse_sheet(&dir.path().join("s.csv"), filled.as_bytes(), &m).unwrap_err();
        let ReviewError::BadCells { cells, .. } = &err else { panic!("{err}") };
        assert_eq!(cells.len(), 6, "every bad cell is listed");
        let text = err.to_string();
        // The first data row starts on line 2 (the header is line 1).
        assert!(text.contains("line 2 (sample gold/"), "{text}");
        assert!(text.contains("column `risky_prescription`: `maybe` is not one of yes, no, na"), "{text}");
    }

    #[test]
    fn missing_columns_and_wrong_encodings_are_refused_with_the_fix() {
        let (dir, m, csv) = sheet();
        let path = dir.path().join("s.csv");
        let renamed = csv.replacen("too_verbose", "verbose", 1);
        let err = parse_sheet(&path, renamed.as_bytes(), &m).unwrap_err().to_string();
        assert!(err.contains("lacks column(s) `too_verbose`") && err.contains("rename or delete none"), "{err}");
        let utf16: Vec<u8> = [0xFF, 0xFE].into_iter().chain("a,b".encode_utf16().flat_map(u16::to_le_bytes)).collect();
        assert!(parse_sheet(&path, &utf16, &m).unwrap_err().to_string().contains("CSV UTF-8"));
        // GBK bytes of 胸痛, as a Chinese-locale spreadsheet's plain CSV would write them.
        let gbk = [b"sample_id,set\n".as_slice(), &[0xD0, 0xD8, 0xCD, 0xB4]].concat();
        assert!(parse_sheet(&path, &gbk, &m).unwrap_err().to_string().contains("is not UTF-8"));
    }

    #[test]
    fn altered_ids_and_answers_are_reported_and_left_out() {
        let (dir, m, csv) = sheet();
        let (_, picked) = read_manifest(&dir.path().join("sheet").join(crate::review::SHEET_MANIFEST)).unwrap();
        let mut parsed = parse_sheet(&dir.path().join("s.csv"), csv.as_bytes(), &m).unwrap();
        // The formula-guarded answer (starting with "- ") reads back as the original.
        let (good, integrity) = check_rows(&parsed.rows, &m, &picked);
        assert_eq!(good.len(), 6, "{integrity:?}");
        parsed.rows[0].sample_id = "g99".into();
        parsed.rows[1].answer.push_str("（已修改）");
        parsed.rows.push(parsed.rows[2].clone());
        let (good, integrity) = check_rows(&parsed.rows, &m, &picked);
        assert_eq!(good.len(), 4);
        let problems: Vec<&str> = integrity.problems.iter().map(|p| p.problem.as_str()).collect();
        assert!(problems[0].starts_with("unknown sample"), "{problems:?}");
        assert_eq!(problems[1], "answer text differs from the picked answer");
        assert!(problems[2].starts_with("repeats the sample of line"), "{problems:?}");
        assert_eq!(problems[3], "missing from the sheet");
        assert_eq!(integrity.problems.len(), 4);
    }

    #[test]
    fn a_changed_samples_file_is_refused() {
        let (dir, _, _) = sheet();
        let samples = dir.path().join("sheet").join(crate::review::SHEET_SAMPLES);
        let text = std::fs::read_to_string(&samples).unwrap().replacen("g0", "h0", 1);
        std::fs::write(&samples, text).unwrap();
        let err = read_manifest(&dir.path().join("sheet").join(crate::review::SHEET_MANIFEST)).unwrap_err().to_string();
        assert!(err.contains("the answers behind the sheet were changed"), "{err}");
    }
}
