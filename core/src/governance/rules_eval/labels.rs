//! The labelled rule-evaluation corpus (`data/rules-eval/FORMAT.md`): answers with a clinician's
//! verdict per rule concept, and pairs of a careful and a degenerate answer to the same prompt,
//! in split folders (`dev/`, `test/`).
//!
//! Reading fails closed: every line of every file is checked (JSON, the exact key set of a line
//! and of its sample, lang, category, risk, the `area/kind` class, each verdict, ids unique across
//! all files read), and every problem is reported with its file and line before anything is
//! scored. A `.jsonl` file in a split folder that is neither `answers*` nor `pairs*` is refused
//! rather than skipped, so a misnamed file cannot silently shrink the corpus.

use crate::io::read_text;
use crate::registry::hash::sha256_hex;
use crate::registry::manifest::valid_id;
use medrl_sdk::{Category, Expect, Lang, Risk, Sample};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The split folders of a corpus root, in report order.
pub const SPLITS: [&str; 2] = ["dev", "test"];

/// Label keys whose definition has no "n/a" (FORMAT.md's table): a judgement is always possible.
pub const NO_NOT_APPLICABLE: [&str; 3] = ["chain", "risk", "verbosity"];

/// One clinician judgement of one rule concept on one answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// `true`: the rule should credit (score rules) or penalise (penalty rules) this answer.
    Yes,
    /// `false`: it should not.
    No,
    /// `"n/a"`: the rule should not apply (e.g. `emergency` on a non-emergency prompt).
    NotApplicable,
    /// `{"min": a, "max": b}`: the rule's score should lie in `[a, b]`.
    Bounds { min: f64, max: f64 },
}

impl Verdict {
    /// Parses a label value; the error says what is allowed.
    pub fn parse(key: &str, value: &serde_json::Value) -> Result<Verdict, String> {
        use serde_json::Value;
        let allowed = if NO_NOT_APPLICABLE.contains(&key) {
            "true, false or {\"min\": a, \"max\": b}"
        } else {
            "true, false, \"n/a\" or {\"min\": a, \"max\": b}"
        };
        match value {
            Value::Bool(true) => Ok(Verdict::Yes),
            Value::Bool(false) => Ok(Verdict::No),
            Value::String(s) if s == "n/a" => {
                if NO_NOT_APPLICABLE.contains(&key) {
                    Err(format!(
                        "label `{key}` is \"n/a\", which FORMAT.md does not allow for `{key}` (a judgement is always possible); use {allowed}"
                    ))
                } else {
                    Ok(Verdict::NotApplicable)
                }
            }
            Value::Object(map) => {
                let unknown: Vec<&String> = map.keys().filter(|k| *k != "min" && *k != "max").collect();
                if !unknown.is_empty() {
                    return Err(format!("label `{key}` has unknown bound key(s) {unknown:?}; bounds are {{\"min\": a, \"max\": b}}"));
                }
                let bound = |name: &str| -> Result<f64, String> {
                    map.get(name)
                        .ok_or_else(|| format!("label `{key}` lacks `{name}`; bounds are {{\"min\": a, \"max\": b}}"))?
                        .as_f64()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| format!("label `{key}`: `{name}` is {} , not a finite number", map[name]))
                };
                let (min, max) = (bound("min")?, bound("max")?);
                if min > max {
                    return Err(format!("label `{key}`: min {min} is above max {max}"));
                }
                Ok(Verdict::Bounds { min, max })
            }
            other => Err(format!("label `{key}` is {other}, not a verdict; use {allowed}")),
        }
    }

    /// The verdict as written in a label file (and in reports).
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Verdict::Yes => true.into(),
            Verdict::No => false.into(),
            Verdict::NotApplicable => "n/a".into(),
            Verdict::Bounds { min, max } => serde_json::json!({"min": min, "max": max}),
        }
    }

    /// Short words for tables: `true`, `false`, `n/a`, `[0.5, 1]`.
    pub fn words(self) -> String {
        match self {
            Verdict::Yes => "true".into(),
            Verdict::No => "false".into(),
            Verdict::NotApplicable => "n/a".into(),
            Verdict::Bounds { min, max } => format!("[{min}, {max}]"),
        }
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// Where a record came from, for messages and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One labelled answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledAnswer {
    pub id: String,
    /// `area/kind` (`risk/dose-over-max`); reports break results down by it.
    pub class: String,
    /// What the rules see; `sample.id` is the line's `id`.
    pub sample: Sample,
    /// One verdict per label key (a rule id), in key order.
    pub labels: BTreeMap<String, Verdict>,
    pub why: String,
    pub author: String,
    pub origin: Origin,
}

/// One good-vs-hack pair.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPair {
    pub id: String,
    /// kebab-case (`markers-repeated`, `emergency-stuffing`, …).
    pub kind: String,
    /// The prompt; `response` is empty here, see [`Self::good_sample`] and [`Self::hack_sample`].
    pub sample: Sample,
    pub good: String,
    pub hack: String,
    pub why: String,
    pub author: String,
    pub origin: Origin,
}

impl LabelledPair {
    /// The careful answer as a sample, id `<pair id>#good`.
    pub fn good_sample(&self) -> Sample {
        Sample { id: format!("{}#good", self.id), response: self.good.clone(), ..self.sample.clone() }
    }

    /// The degenerate answer as a sample, id `<pair id>#hack`.
    pub fn hack_sample(&self) -> Sample {
        Sample { id: format!("{}#hack", self.id), response: self.hack.clone(), ..self.sample.clone() }
    }
}

/// A file that was read, pinned for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelFile {
    pub path: PathBuf,
    pub sha256: String,
    pub records: usize,
}

/// One split: its answers and pairs, in file and line order.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// `dev`, `test`, or the name of the folder (or of the file's folder) given.
    pub name: String,
    pub files: Vec<LabelFile>,
    pub answers: Vec<LabelledAnswer>,
    pub pairs: Vec<LabelledPair>,
}

/// Every split read from one path.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelCorpus {
    pub path: PathBuf,
    pub splits: Vec<Split>,
}

/// Why a corpus cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Text(#[from] crate::io::TextError),
    /// The path is neither a corpus root, a split folder nor a label file.
    #[error("{path}: {problem}")]
    Layout { path: PathBuf, problem: String },
    /// Lines that break the format; every one is listed (up to 30).
    #[error("{} problem(s) in the labels; fix them (data/rules-eval/FORMAT.md) and run again:\n{}", .problems.len(), render(.problems))]
    Invalid { problems: Vec<String> },
}

fn render(problems: &[String]) -> String {
    const SHOWN: usize = 30;
    let mut lines: Vec<String> = problems.iter().take(SHOWN).map(|p| format!("  {p}")).collect();
    if problems.len() > SHOWN {
        lines.push(format!("  … and {} more", problems.len() - SHOWN));
    }
    lines.join("\n")
}

/// What kind of records a file holds, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Answers,
    Pairs,
}

fn file_kind(path: &Path) -> Option<FileKind> {
    let name = path.file_name()?.to_str()?;
    if !name.ends_with(".jsonl") {
        return None;
    }
    if name.starts_with("answers") {
        Some(FileKind::Answers)
    } else if name.starts_with("pairs") {
        Some(FileKind::Pairs)
    } else {
        None
    }
}

/// Reads the corpus at `path`: a root holding `dev/` and/or `test/` (`split` picks one), one
/// split folder, or one `answers*.jsonl` / `pairs*.jsonl` file.
pub fn read(path: &Path, split: Option<&str>) -> Result<LabelCorpus, LabelError> {
    let layout = |problem: String| LabelError::Layout { path: path.to_path_buf(), problem };
    let mut folders: Vec<(String, Vec<PathBuf>)> = Vec::new();
    if path.is_file() {
        if file_kind(path).is_none() {
            return Err(layout("is not a label file: its name must start with `answers` or `pairs` and end in `.jsonl`".into()));
        }
        let name = folder_name(path.parent().unwrap_or(Path::new(".")));
        check_split_flag(path, split, &name)?;
        folders.push((name, vec![path.to_path_buf()]));
    } else if path.is_dir() {
        let present: Vec<&str> = SPLITS.iter().copied().filter(|s| path.join(s).is_dir()).collect();
        if present.is_empty() {
            let name = folder_name(path);
            check_split_flag(path, split, &name)?;
            folders.push((name, split_files(path)?));
        } else {
            let chosen: Vec<&str> = match split {
                Some(s) if present.contains(&s) => vec![s],
                Some(s) => return Err(layout(format!("has no `{s}` split folder (found: {})", present.join(", ")))),
                None => present,
            };
            for s in chosen {
                folders.push((s.to_string(), split_files(&path.join(s))?));
            }
        }
    } else {
        return Err(layout("does not exist; give a corpus root (with dev/ and test/), a split folder, or a label file".into()));
    }

    let mut problems = Vec::new();
    let mut seen: HashMap<String, Origin> = HashMap::new();
    let mut splits = Vec::new();
    for (name, files) in folders {
        let mut split = Split { name, files: Vec::new(), answers: Vec::new(), pairs: Vec::new() };
        for file in files {
            let text = read_text(&file)?;
            let mut records = 0;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                records += 1;
                let origin = Origin { file: file.clone(), line: i + 1 };
                let parsed = match file_kind(&file) {
                    Some(FileKind::Pairs) => parse_pair(line, &origin).map(Record::Pair),
                    _ => parse_answer(line, &origin).map(Record::Answer),
                };
                match parsed {
                    Ok(record) => {
                        let id = record.id().to_string();
                        if let Some(first) = seen.get(&id) {
                            problems.push(format!("{origin}: id `{id}` is already used at {first}; ids are unique across the corpus"));
                            continue;
                        }
                        seen.insert(id, origin);
                        match record {
                            Record::Answer(a) => split.answers.push(*a),
                            Record::Pair(p) => split.pairs.push(*p),
                        }
                    }
                    Err(msgs) => problems.extend(msgs.into_iter().map(|m| format!("{origin}: {m}"))),
                }
            }
            let bytes = text.as_bytes();
            split.files.push(LabelFile { path: file, sha256: sha256_hex(bytes), records });
        }
        splits.push(split);
    }
    if !problems.is_empty() {
        return Err(LabelError::Invalid { problems });
    }
    Ok(LabelCorpus { path: path.to_path_buf(), splits })
}

fn folder_name(dir: &Path) -> String {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "labels".into())
}

fn check_split_flag(path: &Path, split: Option<&str>, name: &str) -> Result<(), LabelError> {
    match split {
        Some(s) if s != name => Err(LabelError::Layout {
            path: path.to_path_buf(),
            problem: format!("belongs to split `{name}`, not `{s}`; --split picks a split of a corpus root (a folder holding dev/ and test/)"),
        }),
        _ => Ok(()),
    }
}

/// The label files of a split folder, by name; any other `.jsonl` is refused.
fn split_files(dir: &Path) -> Result<Vec<PathBuf>, LabelError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LabelError::Io { path: dir.to_path_buf(), source })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| LabelError::Io { path: dir.to_path_buf(), source })?.path();
        if !path.is_file() || path.extension().is_none_or(|e| e != "jsonl") {
            continue;
        }
        if file_kind(&path).is_none() {
            return Err(LabelError::Layout {
                path,
                problem: "is a .jsonl file in a split folder but its name starts with neither `answers` nor `pairs`; rename it or move it out".into(),
            });
        }
        files.push(path);
    }
    files.sort();
    if files.is_empty() {
        return Err(LabelError::Layout { path: dir.to_path_buf(), problem: "holds no answers*.jsonl or pairs*.jsonl file".into() });
    }
    Ok(files)
}

enum Record {
    Answer(Box<LabelledAnswer>),
    Pair(Box<LabelledPair>),
}

impl Record {
    fn id(&self) -> &str {
        match self {
            Record::Answer(a) => &a.id,
            Record::Pair(p) => &p.id,
        }
    }
}

/// An answer line as written; unknown keys are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerLine {
    id: String,
    class: String,
    sample: SampleFields,
    labels: serde_json::Map<String, serde_json::Value>,
    why: String,
    author: String,
}

/// A pair line as written; unknown keys are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairLine {
    id: String,
    kind: String,
    sample: SampleFields,
    good: String,
    hack: String,
    why: String,
    author: String,
}

/// The `sample` of a line: the SDK's `Sample` without `id` (and, in a pair, without `response`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleFields {
    prompt: String,
    #[serde(default)]
    response: Option<String>,
    lang: Lang,
    category: String,
    risk: Risk,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    expect: ExpectFields,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExpectFields {
    #[serde(default)]
    emergency_signs: Vec<String>,
}

impl SampleFields {
    fn into_sample(self, id: &str, problems: &mut Vec<String>) -> Sample {
        let category = match serde_json::from_value::<Category>(self.category.clone().into()) {
            Ok(c) if c != Category::Other => c,
            _ => {
                problems.push(format!("sample.category `{}` is not one of {}", self.category, Category::ALL.join(", ")));
                Category::Other
            }
        };
        Sample {
            id: id.to_string(),
            prompt: self.prompt,
            response: self.response.unwrap_or_default(),
            lang: self.lang,
            category,
            risk: self.risk,
            tags: self.tags,
            expect: Expect { emergency_signs: self.expect.emergency_signs },
        }
    }
}

/// The keys a line of each kind must have, for a message naming the missing ones (serde names
/// only the first).
const ANSWER_KEYS: [&str; 6] = ["id", "class", "sample", "labels", "why", "author"];
const PAIR_KEYS: [&str; 7] = ["id", "kind", "sample", "good", "hack", "why", "author"];

/// The JSON object of a line, or the problems that keep it from being one with every key.
fn object_with_keys(line: &str, keys: &[&str]) -> Result<serde_json::Value, Vec<String>> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| vec![format!("not valid JSON: {e}")])?;
    let Some(map) = value.as_object() else {
        return Err(vec!["not a JSON object".into()]);
    };
    let missing: Vec<&str> = keys.iter().copied().filter(|k| !map.contains_key(*k)).collect();
    let unknown: Vec<&str> = map.keys().map(String::as_str).filter(|k| !keys.contains(k)).collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing field(s) {}", quoted(&missing)));
    }
    if !unknown.is_empty() {
        problems.push(format!("unknown field(s) {}; a line has exactly {}", quoted(&unknown), quoted(keys)));
    }
    if problems.is_empty() { Ok(value) } else { Err(problems) }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Strips serde's " at line 1 column N" (the file's line is already in the message).
fn serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// `area/kind`, both parts kebab-case (lowercase letters and digits, single `-` between).
pub fn valid_class(class: &str) -> bool {
    match class.split_once('/') {
        Some((area, kind)) => valid_kebab(area) && valid_kebab(kind),
        None => false,
    }
}

/// Lowercase ASCII letters and digits in runs joined by single `-`, starting with a letter.
pub fn valid_kebab(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.split('-').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

fn check_id(id: &str, problems: &mut Vec<String>) {
    if id.trim().is_empty() || id.trim() != id || id.contains(char::is_control) {
        problems.push(format!("id {id:?} is empty or has surrounding whitespace or control characters"));
    }
}

fn check_author(author: &str, problems: &mut Vec<String>) {
    if author.trim().is_empty() {
        problems.push("author is empty; say who wrote the case".into());
    }
}

fn parse_answer(line: &str, origin: &Origin) -> Result<Box<LabelledAnswer>, Vec<String>> {
    let value = object_with_keys(line, &ANSWER_KEYS)?;
    let raw: AnswerLine = serde_json::from_value(value).map_err(|e| vec![serde_message(&e)])?;
    let mut problems = Vec::new();
    check_id(&raw.id, &mut problems);
    if !valid_class(&raw.class) {
        problems.push(format!("class `{}` is not `area/kind` in kebab-case (e.g. `risk/dose-over-max`)", raw.class));
    }
    if raw.sample.response.is_none() {
        problems.push("sample.response is missing; an answer's sample holds the response the rules judge".into());
    }
    check_author(&raw.author, &mut problems);
    let sample = raw.sample.into_sample(&raw.id, &mut problems);
    if raw.labels.is_empty() {
        problems.push("labels is empty; give at least one verdict (absent keys mean no judgement)".into());
    }
    let mut labels = BTreeMap::new();
    for (key, value) in &raw.labels {
        if !valid_id(key) {
            problems.push(format!("label key `{key}` is not a rule id (lowercase letters, digits and `-`, starting with a letter)"));
            continue;
        }
        match Verdict::parse(key, value) {
            Ok(v) => {
                labels.insert(key.clone(), v);
            }
            Err(m) => problems.push(m),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Box::new(LabelledAnswer { id: raw.id, class: raw.class, sample, labels, why: raw.why, author: raw.author, origin: origin.clone() }))
}

fn parse_pair(line: &str, origin: &Origin) -> Result<Box<LabelledPair>, Vec<String>> {
    let value = object_with_keys(line, &PAIR_KEYS)?;
    let raw: PairLine = serde_json::from_value(value).map_err(|e| vec![serde_message(&e)])?;
    let mut problems = Vec::new();
    check_id(&raw.id, &mut problems);
    if !valid_kebab(&raw.kind) {
        problems.push(format!("kind `{}` is not kebab-case (e.g. `markers-repeated`)", raw.kind));
    }
    if raw.sample.response.is_some() {
        problems.push("sample.response is set; a pair's answers are `good` and `hack`".into());
    }
    for (name, text) in [("good", &raw.good), ("hack", &raw.hack)] {
        if text.trim().is_empty() {
            problems.push(format!("`{name}` is empty"));
        }
    }
    check_author(&raw.author, &mut problems);
    let sample = raw.sample.into_sample(&raw.id, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Box::new(LabelledPair {
        id: raw.id,
        kind: raw.kind,
        sample,
        good: raw.good,
        hack: raw.hack,
        why: raw.why,
        author: raw.author,
        origin: origin.clone(),
    }))
}

/// The problems [`read`] would report for `line` as a line of an `answers*.jsonl` file (all but
/// duplicate ids, which need the whole corpus): for a writer to check what it writes.
pub fn check_answer_line(line: &str) -> Result<(), Vec<String>> {
    parse_answer(line, &Origin { file: PathBuf::new(), line: 0 }).map(|_| ())
}

/// One answer as a line of an `answers*.jsonl` file (what the review conversion writes), keys
/// in the order FORMAT.md shows them; [`read`] reads it back to the same [`LabelledAnswer`].
pub fn answer_line(id: &str, class: &str, sample: &Sample, labels: &BTreeMap<String, Verdict>, why: &str, author: &str) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        id: &'a str,
        class: &'a str,
        sample: SampleOut<'a>,
        labels: &'a BTreeMap<String, Verdict>,
        why: &'a str,
        author: &'a str,
    }
    #[derive(Serialize)]
    struct SampleOut<'a> {
        prompt: &'a str,
        response: &'a str,
        lang: Lang,
        category: Category,
        risk: Risk,
        tags: &'a [String],
        expect: ExpectOut<'a>,
    }
    /// `Expect` leaves out an empty list; the format writes it.
    #[derive(Serialize)]
    struct ExpectOut<'a> {
        emergency_signs: &'a [String],
    }
    let line = Line {
        id,
        class,
        sample: SampleOut {
            prompt: &sample.prompt,
            response: &sample.response,
            lang: sample.lang,
            category: sample.category,
            risk: sample.risk,
            tags: &sample.tags,
            expect: ExpectOut { emergency_signs: &sample.expect.emergency_signs },
        },
        labels,
        why,
        author,
    };
    serde_json::to_string(&line).expect("plain data")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id":"a1","class":"risk/dose-over-max","sample":{"prompt":"p","response":"r","lang":"zh","category":"medication","risk":"high","tags":[],"expect":{"emergency_signs":[]}},"labels":{"chain":true,"emergency":"n/a","risk":{"min":0.5,"max":1}},"why":"w","author":"me"}"#;
    const PAIR: &str = r#"{"id":"p1","kind":"markers-repeated","sample":{"prompt":"p","lang":"en","category":"general","risk":"low"},"good":"g","hack":"h","why":"w","author":"me"}"#;

    fn corpus(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn problems(err: LabelError) -> Vec<String> {
        match err {
            LabelError::Invalid { problems } => problems,
            other => panic!("expected line problems, got {other}"),
        }
    }

    #[test]
    fn a_valid_corpus_reads_in_split_file_and_line_order() {
        let dir = corpus(&[
            ("dev/answers-02.jsonl", &GOOD.replace("a1", "a2")),
            ("dev/answers-01.jsonl", &format!("{GOOD}\n\n")),
            ("dev/pairs.jsonl", PAIR),
            ("dev/SUMMARY.md", "not read"),
            ("test/answers.jsonl", &GOOD.replace("a1", "t1")),
        ]);
        let c = read(dir.path(), None).unwrap();
        assert_eq!(c.splits.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["dev", "test"]);
        let dev = &c.splits[0];
        assert_eq!(dev.answers.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["a1", "a2"]);
        assert_eq!(dev.files.iter().map(|f| f.records).collect::<Vec<_>>(), [1, 1, 1]);
        let a = &dev.answers[0];
        assert_eq!((a.sample.id.as_str(), a.sample.category, a.origin.line), ("a1", Category::Medication, 1));
        assert_eq!(a.labels["risk"], Verdict::Bounds { min: 0.5, max: 1.0 });
        assert_eq!(a.labels["emergency"], Verdict::NotApplicable);
        let p = &dev.pairs[0];
        assert_eq!((p.good_sample().id, p.hack_sample().response), ("p1#good".to_string(), "h".to_string()));
        // --split picks one; a split folder and a file read alone.
        assert_eq!(read(dir.path(), Some("test")).unwrap().splits.len(), 1);
        assert_eq!(read(&dir.path().join("dev"), None).unwrap().splits[0].answers.len(), 2);
        let one = read(&dir.path().join("dev/pairs.jsonl"), None).unwrap();
        assert_eq!((one.splits[0].name.as_str(), one.splits[0].pairs.len()), ("dev", 1));
        assert!(read(&dir.path().join("dev"), Some("test")).unwrap_err().to_string().contains("belongs to split `dev`, not `test`"));
        assert!(read(dir.path(), Some("train")).unwrap_err().to_string().contains("has no `train` split folder (found: dev, test)"));
    }

    #[test]
    fn malformed_lines_are_refused_with_file_line_and_reason() {
        let bad = [
            GOOD.replace("\"author\":\"me\"", "\"author\":\"me\",\"extra\":1"),
            GOOD.replace(",\"why\":\"w\"", ""),
            GOOD.replace("\"chain\":true", "\"chain\":\"yes\""),
            GOOD.replace("\"chain\":true", "\"chain\":\"n/a\""),
            GOOD.replace("\"medication\"", "\"cardiology\""),
            GOOD.replace("risk/dose-over-max", "Risk_dose"),
            GOOD.replace("\"lang\":\"zh\"", "\"lang\":\"fr\""),
            GOOD.replace("\"tags\":[]", "\"tags\":[],\"id\":\"x\""),
            GOOD.replace("\"max\":1", "\"max\":0.2"),
            "{not json".to_string(),
            GOOD.to_string(),
        ];
        let dir = corpus(&[("answers.jsonl", &bad.join("\n")), ("pairs.jsonl", &PAIR.replace("p1", "a1"))]);
        let p = problems(read(dir.path(), None).unwrap_err());
        let file = dir.path().join("answers.jsonl").display().to_string();
        let want = [
            format!("{file}:1: unknown field(s) `extra`"),
            format!("{file}:2: missing field(s) `why`"),
            format!("{file}:3: label `chain` is \"yes\", not a verdict; use true, false or {{\"min\": a, \"max\": b}}"),
            format!("{file}:4: label `chain` is \"n/a\", which FORMAT.md does not allow"),
            format!("{file}:5: sample.category `cardiology` is not one of emergency, medication"),
            format!("{file}:6: class `Risk_dose` is not `area/kind`"),
            format!("{file}:7: unknown variant `fr`"),
            format!("{file}:8: unknown field `id`"),
            format!("{file}:9: label `risk`: min 0.5 is above max 0.2"),
            format!("{file}:10: not valid JSON"),
        ];
        for (got, want) in p.iter().zip(&want) {
            assert!(got.starts_with(want.as_str()), "got  {got}\nwant {want}…");
        }
        // Line 11 is fine; the pair reuses its id.
        assert_eq!(p.len(), want.len() + 1, "{p:#?}");
        assert!(p.last().unwrap().contains("pairs.jsonl:1: id `a1` is already used at"), "{}", p.last().unwrap());
    }

    #[test]
    fn misnamed_and_missing_files_are_refused() {
        let dir = corpus(&[("dev/answer-01.jsonl", GOOD)]);
        assert!(read(dir.path(), None).unwrap_err().to_string().contains("starts with neither `answers` nor `pairs`"));
        let dir = corpus(&[("dev/notes.md", "x")]);
        assert!(read(dir.path(), None).unwrap_err().to_string().contains("holds no answers*.jsonl or pairs*.jsonl file"));
        assert!(read(Path::new("/nonexistent/labels"), None).unwrap_err().to_string().contains("does not exist"));
        let dir = corpus(&[("answers.jsonl", "")]);
        assert!(read(&dir.path().join("answers.jsonl"), None).unwrap_err().to_string().contains("is empty"));
    }

    #[test]
    fn pairs_have_no_response_and_two_non_empty_answers() {
        let dir = corpus(&[(
            "pairs.jsonl",
            &[
                PAIR.replace("\"prompt\":\"p\"", "\"prompt\":\"p\",\"response\":\"r\""),
                PAIR.replace("p1", "p2").replace("\"hack\":\"h\"", "\"hack\":\" \""),
                PAIR.replace("p1", "p3").replace("markers-repeated", "Markers"),
            ]
            .join("\n"),
        )]);
        let p = problems(read(dir.path(), None).unwrap_err());
        assert!(p[0].ends_with(":1: sample.response is set; a pair's answers are `good` and `hack`"), "{p:?}");
        assert!(p[1].ends_with(":2: `hack` is empty"), "{p:?}");
        assert!(p[2].ends_with(":3: kind `Markers` is not kebab-case (e.g. `markers-repeated`)"), "{p:?}");
    }

    #[test]
    fn an_answer_line_reads_back_to_the_same_answer() {
        let dir = corpus(&[("answers.jsonl", GOOD)]);
        let a = read(dir.path(), None).unwrap().splits.remove(0).answers.remove(0);
        let line = answer_line(&a.id, &a.class, &a.sample, &a.labels, &a.why, &a.author);
        std::fs::write(dir.path().join("answers.jsonl"), &line).unwrap();
        let b = read(dir.path(), None).unwrap().splits.remove(0).answers.remove(0);
        assert_eq!(a, b);
        assert!(line.starts_with(r#"{"id":"a1","class":"risk/dose-over-max","sample":{"#), "{line}");
    }

    #[test]
    fn kebab_and_class_names() {
        for ok in ["risk/dose-over-max", "chain/empty-sections", "review/top-reward", "a/b2"] {
            assert!(valid_class(ok), "{ok}");
        }
        for bad in ["risk", "risk/", "/x", "risk/Dose", "risk/dose--max", "risk/-x", "risk/x-", "2x/y", "a/b/c"] {
            assert!(!valid_class(bad), "{bad}");
        }
    }
}
