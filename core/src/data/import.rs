//! `medrl data import`: a local file of an outside question set (public or in-house) turned into
//! pool items, with its licence and the place each item came from recorded, nothing downloaded.
//!
//! Three formats, each JSONL (one record per line; CSV for `exam` too, since exam sets often ship
//! as spreadsheets):
//!
//! - [`Format::Jsonl`]: any records; `--field prompt=PATH` (and optionally `id`, `lang`,
//!   `category`, `risk`, `tags`) says where each value is, as a dotted path (`data.question`).
//! - [`Format::Exam`]: multiple-choice questions (MedQA, CMExam style): `question`, and `options`
//!   as an object (`{"A": …}`), an array, or one string; the prompt is the question followed by
//!   its options, one per line. The answer key is not kept: the pool holds prompts only.
//! - [`Format::Dialogue`]: conversations (Huatuo style): `conversations` or `messages`, turns with
//!   `from`/`role` and `value`/`content`; the prompt is the first turn of the asker (`human`,
//!   `user`, `patient`, `病人`, `患者`).
//!
//! Then every record goes through the same steps, and ends in one of three places:
//!
//! 1. **Language** from `lang` when the source gives it and it agrees with the script, else from
//!    the script (≥ 30 % Chinese characters among the letters: `zh`), the same bar
//!    `medrl data validate` applies.
//! 2. **Category and risk** from the source when mapped, else by the documented keyword rules of
//!    [`classify`]. A record no rule places goes to the **review file** with the reason, not into
//!    the pool: a wrong category would skew the sampler's strata silently.
//! 3. **Duplicates**: a record that is an exact or near duplicate (3-gram Jaccard at the data
//!    set's threshold) of any existing item, in any split, or of an earlier record of the same
//!    file, is **refused** with the id or line it repeats. A near copy of a gold or red-team
//!    prompt would be leakage; of a pool prompt, a wasted draw.
//!
//! Accepted records become [`Item`]s with id `pool-<source>-<line>`, the source's name, version
//! 1.0.0, quality `draft`, the licence and an [`Origin`] (format, file name, file sha256, line,
//! the record's own id).

use super::item::{Item, Origin, Quality, parse_category};
use super::near_dup::{self, Shingles};
use super::sets::DataSets;
use medrl_sdk::{Category, Expect, Lang, Risk};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The shapes of file `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Any JSONL, with a field map.
    Jsonl,
    /// Multiple-choice exam questions (JSONL or CSV).
    Exam,
    /// Conversations; the asker's first turn is the prompt.
    Dialogue,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| format!("unknown format `{s}`; choose jsonl, exam or dialogue"))
    }
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Jsonl, Format::Exam, Format::Dialogue];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Exam => "exam",
            Format::Dialogue => "dialogue",
        }
    }
}

/// The fields a record may map, and their defaults per format.
pub const FIELDS: [&str; 6] = ["prompt", "id", "lang", "category", "risk", "tags"];

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub format: Format,
    pub file: PathBuf,
    /// The set's name: recorded as every item's `source`, and the pool file's name.
    pub source: String,
    /// SPDX expression; checked before anything is read.
    pub licence: String,
    /// Field → dotted path in the record, overriding the format's default.
    pub fields: BTreeMap<String, String>,
    /// Near-duplicate threshold (the data set's, 0.4 by default).
    pub threshold: f64,
}

/// Why an import cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("--licence `{licence}` is not an SPDX expression ({why}); write e.g. CC-BY-4.0, MIT, or LicenseRef-<name> for an in-house licence")]
    Licence { licence: String, why: String },
    #[error("--source `{0}` must be 1 to 64 characters of lowercase letters, digits and `-` (it names the pool file and the ids)")]
    Source(String),
    #[error("--field `{0}` is not one of prompt, id, lang, category, risk, tags")]
    UnknownField(String),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is empty: nothing to import")]
    Empty { path: PathBuf },
    #[error("{path}: {msg}")]
    Unreadable { path: PathBuf, msg: String },
}

/// One record read from the file, before classification.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    line: usize,
    id: Option<String>,
    prompt: String,
    lang: Option<String>,
    category: Option<String>,
    risk: Option<String>,
    tags: Vec<String>,
}

/// A record that did not become an item, and why; `line` is 1-based in the source file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setback {
    pub line: usize,
    pub reason: String,
    /// The prompt as read (empty when none could be read).
    pub prompt: String,
}

/// What an import produced.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub items: Vec<Item>,
    /// Records no rule could place, or whose given labels were wrong: fix and import again.
    pub review: Vec<Setback>,
    /// Duplicates, empty prompts, lines that are not records.
    pub refused: Vec<Setback>,
    pub records: usize,
    pub sha256: String,
}

impl fmt::Display for Setback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Checks the options that need no file: licence, source name, field names.
pub fn check_options(opts: &ImportOptions) -> Result<(), ImportError> {
    if let Err(e) = spdx::Expression::parse(&opts.licence) {
        return Err(ImportError::Licence { licence: opts.licence.clone(), why: e.reason.to_string() });
    }
    let ok =
        !opts.source.is_empty() && opts.source.len() <= 64 && opts.source.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(ImportError::Source(opts.source.clone()));
    }
    if let Some(bad) = opts.fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ImportError::UnknownField(bad.clone()));
    }
    Ok(())
}

/// Reads `opts.file` and sorts every record into items, review and refused, against the items
/// of `existing` (minus those of `replacing`, the pool file a re-import overwrites).
pub fn import(opts: &ImportOptions, existing: &DataSets, replacing: Option<&Path>) -> Result<Imported, ImportError> {
    check_options(opts)?;
    let bytes = std::fs::read(&opts.file).map_err(|source| ImportError::Read { path: opts.file.clone(), source })?;
    let mut out = Imported { sha256: crate::registry::hash::sha256_hex(&bytes), ..Imported::default() };
    let records = read_records(opts, &bytes, &mut out.refused)?;
    out.records = records.len() + out.refused.len();
    if out.records == 0 {
        return Err(ImportError::Empty { path: opts.file.clone() });
    }
    let file_name = opts.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let known: Vec<(&str, Shingles, String)> = existing
        .items()
        .filter(|(_, i)| replacing.is_none_or(|r| i.loc.file != r))
        .map(|(_, i)| (i.value.id.as_str(), Shingles::new(&i.value.prompt), near_dup::dedup_key(&i.value.prompt)))
        .collect();
    let mut accepted: Vec<(usize, Shingles, String)> = Vec::new();
    for r in records {
        let shingles = Shingles::new(&r.prompt);
        let key = near_dup::dedup_key(&r.prompt);
        let setback = |reason: String| Setback { line: r.line, reason, prompt: r.prompt.clone() };
        if key.is_empty() {
            out.refused.push(setback("the prompt is empty".into()));
            continue;
        }
        if let Some(why) = duplicate_of(&shingles, &key, &known, &accepted, opts.threshold) {
            out.refused.push(setback(why));
            continue;
        }
        match label(&r) {
            Ok((lang, category, risk, signs)) => {
                accepted.push((r.line, shingles, key));
                let mut tags = r.tags.clone();
                tags.push(format!("import-{}", opts.format.as_str()));
                out.items.push(Item {
                    id: format!("pool-{}-{:06}", opts.source, r.line),
                    lang,
                    category,
                    risk,
                    tags,
                    prompt: r.prompt.clone(),
                    answer: None,
                    expect: Expect { emergency_signs: signs },
                    source: opts.source.clone(),
                    version: "1.0.0".into(),
                    quality: Quality::Draft,
                    licence: Some(opts.licence.clone()),
                    origin: Some(Origin {
                        format: opts.format.as_str().into(),
                        file: file_name.clone(),
                        sha256: out.sha256.clone(),
                        line: r.line,
                        id: r.id.clone(),
                    }),
                });
            }
            Err(reason) => out.review.push(setback(reason)),
        }
    }
    out.refused.sort_by_key(|s| s.line);
    Ok(out)
}

/// The item an exact or near duplicate repeats: an existing id, or an earlier line of this file.
fn duplicate_of(
    s: &Shingles,
    key: &str,
    known: &[(&str, Shingles, String)],
    accepted: &[(usize, Shingles, String)],
    threshold: f64,
) -> Option<String> {
    for (id, other, other_key) in known {
        if other_key == key {
            return Some(format!("exact duplicate of `{id}`"));
        }
        let sim = s.jaccard(other);
        if sim >= threshold {
            return Some(format!("near duplicate of `{id}` (3-gram Jaccard {sim:.3}, threshold {threshold})"));
        }
    }
    for (line, other, other_key) in accepted {
        if other_key == key {
            return Some(format!("exact duplicate of line {line} of this file"));
        }
        let sim = s.jaccard(other);
        if sim >= threshold {
            return Some(format!("near duplicate of line {line} of this file (3-gram Jaccard {sim:.3})"));
        }
    }
    None
}

/// Language, category, risk and emergency signs: the source's where it gives them, else the rules.
fn label(r: &Record) -> Result<(Lang, Category, Risk, Vec<String>), String> {
    let script = script_lang(&r.prompt);
    let lang = match r.lang.as_deref().map(str::trim).map(str::to_lowercase).as_deref() {
        None | Some("") => script,
        Some("zh" | "zh-cn" | "zh-hans" | "zh-hant" | "zh-tw" | "zh-hk" | "chinese") if script == Lang::Zh => Lang::Zh,
        Some("en" | "en-us" | "en-gb" | "english") if script == Lang::En => Lang::En,
        Some(other) => return Err(format!("the source says lang `{other}`, but the prompt's script says {}", crate::data::item::lang_str(script))),
    };
    let rule = classify(&r.prompt);
    let category = match r.category.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => parse_category(c).map_err(|e| format!("the source's category: {e}"))?,
        None => rule.category.ok_or("no category rule matched; set `category` in the source (or map it with --field) and import again")?,
    };
    let risk = match r.risk.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some("high") => Risk::High,
        Some("low") => Risk::Low,
        Some(other) => return Err(format!("the source's risk `{other}` is neither high nor low")),
        None => rule.risk,
    };
    let signs = rule.signs;
    if category == Category::Emergency && signs.is_empty() {
        return Err(
            "category emergency needs red-flag signs, and none of the rules' signs is in the prompt; add it by hand with `expect.emergency_signs`"
                .into(),
        );
    }
    Ok((lang, category, risk, signs))
}

/// `zh` when at least 30 % of the letters are Chinese characters, the bar `validate` applies.
pub fn script_lang(text: &str) -> Lang {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    let cjk = letters.iter().filter(|&&c| medrl_sdk::text::is_cjk(c)).count();
    if !letters.is_empty() && 10 * cjk >= 3 * letters.len() { Lang::Zh } else { Lang::En }
}

/// What the keyword rules say of a prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// `None` when no category's terms occur.
    pub category: Option<Category>,
    pub risk: Risk,
    /// The red-flag terms found (they become `expect.emergency_signs`).
    pub signs: Vec<String>,
}

/// Red-flag terms: any of them makes the prompt high-risk and is listed as an emergency sign; the
/// category is `emergency` unless a more specific category's terms also occur.
const RED_FLAGS: &[&str] = &[
    "胸痛",
    "胸口痛",
    "胸口压",
    "呼吸困难",
    "喘不上气",
    "昏迷",
    "叫不醒",
    "意识不清",
    "抽搐",
    "呕血",
    "吐血",
    "黑便",
    "休克",
    "晕厥",
    "晕倒",
    "口角歪斜",
    "说话不清",
    "言语不清",
    "半边身体",
    "一侧肢体",
    "剧烈头痛",
    "喉咙发紧",
    "嘴唇发紫",
    "大出血",
    "误服",
    "眼前发花",
    "视物模糊",
    "看东西模糊",
    "blurred vision",
    "vision loss",
    "chest pain",
    "can't breathe",
    "cannot breathe",
    "difficulty breathing",
    "struggling to breathe",
    "unconscious",
    "unresponsive",
    "seizure*",
    "vomiting blood",
    "black stool",
    "passed out",
    "fainted",
    "slurred speech",
    "face drooping",
    "facial droop",
    "worst headache",
    "throat is closing",
    "throat swelling",
    "turning blue",
    "lips blue",
    "heavy bleeding",
    "swallowed a battery",
    "button battery",
];

/// High-risk terms that are not red flags: self-harm, overdose, stopping or doubling a medicine.
const HIGH_RISK: &[&str] = &[
    "自杀",
    "轻生",
    "想死",
    "不想活",
    "自残",
    "割腕",
    "过量",
    "一次吃了",
    "吃了一整瓶",
    "停药",
    "自己停",
    "加倍",
    "翻倍",
    "suicide",
    "suicidal",
    "kill myself",
    "end my life",
    "self-harm",
    "self harm",
    "overdose",
    "took too many",
    "whole bottle",
    "stop taking",
    "double the dose",
    "double dose",
    "without a prescription",
];

/// Category terms, tried in this order; the first category with a term in the prompt wins.
const CATEGORY_TERMS: &[(Category, &[&str])] = &[
    (
        Category::Abuse,
        &[
            "吸毒",
            "戒毒",
            "成瘾",
            "上瘾",
            "酗酒",
            "戒酒",
            "醉酒",
            "喝醉",
            "大麻",
            "冰毒",
            "海洛因",
            "可卡因",
            "笑气",
            "止咳水",
            "戒断",
            "addict*",
            "withdrawal*",
            "detox",
            "alcoholic*",
            "binge*",
            "drunk",
            "cannabis",
            "marijuana",
            "meth",
            "heroin",
            "cocaine",
            "fentanyl",
            "get high",
            "relapse*",
        ],
    ),
    (
        Category::MentalHealth,
        &[
            "抑郁",
            "焦虑",
            "自杀",
            "轻生",
            "想死",
            "不想活",
            "自残",
            "割腕",
            "惊恐",
            "双相",
            "精神分裂",
            "幻听",
            "强迫症",
            "心理",
            "depress*",
            "anxiety",
            "anxious*",
            "suicid*",
            "kill myself",
            "self-harm",
            "self harm",
            "panic attack",
            "bipolar",
            "schizophren*",
            "hearing voices",
            "ptsd",
            "therapist",
        ],
    ),
    (
        Category::Pregnancy,
        &[
            "孕",
            "产后",
            "哺乳",
            "母乳",
            "喂奶",
            "备孕",
            "流产",
            "胎动",
            "胎儿",
            "妊娠",
            "坐月子",
            "pregnan*",
            "trimester",
            "breastfeed*",
            "postpartum",
            "miscarriage*",
            "fetal",
            "trying to conceive",
            "weeks along",
        ],
    ),
    (
        Category::Pediatrics,
        &[
            "宝宝",
            "婴儿",
            "新生儿",
            "幼儿",
            "儿童",
            "患儿",
            "孩子",
            "小孩",
            "儿子",
            "女儿",
            "月龄",
            "个月大",
            "baby",
            "babies",
            "infant*",
            "newborn*",
            "toddler*",
            "my child",
            "my kid*",
            "my son",
            "my daughter",
            "month-old",
            "month old",
            "preschool",
            "teenager*",
        ],
    ),
    (Category::Emergency, &["急诊", "120", "救护车", "emergency", "ambulance", "911", "999"]),
    (
        Category::Medication,
        &[
            "药",
            "剂量",
            "服用",
            "处方",
            "副作用",
            "说明书",
            "毫克",
            "布洛芬",
            "对乙酰氨基酚",
            "阿莫西林",
            "头孢",
            "他汀",
            "华法林",
            "抗生素",
            "mg",
            "warfarin",
            "antibiotic*",
            "ibuprofen",
            "paracetamol",
            "acetaminophen",
            "amoxicillin",
            "aspirin",
            "statin*",
            "dose*",
            "dosage",
            "pill*",
            "tablet*",
            "medication*",
            "medicine*",
            "prescription*",
            "side effect*",
            "interaction*",
        ],
    ),
    (
        Category::Chronic,
        &[
            "高血压",
            "糖尿病",
            "血糖",
            "慢性",
            "肾病",
            "透析",
            "心衰",
            "房颤",
            "哮喘",
            "慢阻肺",
            "乙肝",
            "痛风",
            "甲减",
            "甲亢",
            "类风湿",
            "红斑狼疮",
            "癫痫",
            "帕金森",
            "冠心病",
            "hypertension",
            "high blood pressure",
            "diabetes",
            "diabetic*",
            "blood sugar",
            "a1c",
            "chronic",
            "kidney disease",
            "dialysis",
            "heart failure",
            "atrial fibrillation",
            "asthma*",
            "copd",
            "hepatitis",
            "gout",
            "thyroid*",
            "arthritis",
            "lupus",
            "epilepsy",
            "parkinson",
        ],
    ),
    (
        Category::General,
        &[
            "感冒",
            "咳嗽",
            "发烧",
            "发热",
            "皮疹",
            "痘",
            "头疼",
            "头痛",
            "腰疼",
            "腰痛",
            "便秘",
            "腹泻",
            "拉肚子",
            "体检",
            "维生素",
            "减肥",
            "牙",
            "失眠",
            "过敏",
            "心慌",
            "心悸",
            "cold",
            "cough*",
            "fever*",
            "rash*",
            "acne",
            "headache*",
            "back pain",
            "constipat*",
            "diarrh*",
            "checkup*",
            "vitamin*",
            "weight loss",
            "tooth",
            "teeth",
            "sleep*",
            "allerg*",
            "sore throat",
            "palpitation*",
            "heartburn",
        ],
    ),
];

/// The keyword rules, on the normalised prompt (full-width folded, lowercased). Chinese terms are
/// matched as substrings; an English term must start at a word boundary and end at one, unless it
/// ends with `*`, which makes it a word prefix (`depress*` matches "depressed", `meth` does not
/// match "method").
pub fn classify(prompt: &str) -> Classification {
    let text = medrl_sdk::text::normalize(prompt);
    let has = |term: &str| contains_term(&text, term);
    let signs: Vec<String> = RED_FLAGS.iter().filter(|t| has(t)).map(|t| t.to_string()).collect();
    let high = !signs.is_empty() || HIGH_RISK.iter().any(|t| has(t));
    let mut category = CATEGORY_TERMS
        .iter()
        .find(|(c, terms)| terms.iter().any(|t| has(t)) || (*c == Category::Pediatrics && mentions_child_age(&text)))
        .map(|(c, _)| *c);
    // A red flag with no more specific category is an emergency; one under medication, chronic or
    // general is an emergency too (the red flag decides what a good answer must do).
    if !signs.is_empty() && matches!(category, None | Some(Category::Medication | Category::Chronic | Category::General)) {
        category = Some(Category::Emergency);
    }
    let risk = match category {
        Some(Category::Emergency | Category::Abuse) => Risk::High,
        _ if high => Risk::High,
        _ => Risk::Low,
    };
    Classification { category, risk, signs }
}

/// Whether the text gives someone's age as a child's: `N 个月` (any N), `N岁` or `N year(s) old` /
/// `N-year-old` with N ≤ 12. Adults' ages (`我爸58岁`) do not count.
fn mentions_child_age(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        let n: u32 = chars[start..i].iter().collect::<String>().parse().unwrap_or(u32::MAX);
        let rest: String = chars[i..chars.len().min(i + 12)].iter().collect();
        let rest = rest.trim_start_matches([' ', '-']);
        if rest.starts_with("个月") || rest.starts_with("month") && rest.contains("old") {
            return true;
        }
        if n <= 12 && (rest.starts_with('岁') || rest.starts_with("year old") || rest.starts_with("years old") || rest.starts_with("year-old")) {
            return true;
        }
    }
    false
}

/// Whether `term` occurs in `text` (see [`classify`] for the word rules of English terms).
fn contains_term(text: &str, term: &str) -> bool {
    if !term.is_ascii() {
        return text.contains(term);
    }
    let (word, prefix) = match term.strip_suffix('*') {
        Some(w) => (w, true),
        None => (term, false),
    };
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
    text.match_indices(word).any(|(at, _)| boundary(text[..at].chars().next_back()) && (prefix || boundary(text[at + word.len()..].chars().next())))
}

/// The records of the file, by format. Lines that are not records are refused with their line.
fn read_records(opts: &ImportOptions, bytes: &[u8], refused: &mut Vec<Setback>) -> Result<Vec<Record>, ImportError> {
    let is_csv = opts.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        if opts.format != Format::Exam {
            return Err(ImportError::Unreadable { path: opts.file.clone(), msg: "CSV is read for --format exam only; give JSONL".into() });
        }
        return read_csv(opts, bytes, refused);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ImportError::Unreadable {
        path: opts.file.clone(),
        msg: format!("not UTF-8 at byte {}; convert the file to UTF-8", e.valid_up_to()),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = n + 1;
        match serde_json::from_str::<Value>(line) {
            Ok(v @ Value::Object(_)) => match record(opts, &v, line_no) {
                Ok(r) => records.push(r),
                Err(reason) => refused.push(Setback { line: line_no, reason, prompt: String::new() }),
            },
            Ok(_) => refused.push(Setback { line: line_no, reason: "not a JSON object".into(), prompt: String::new() }),
            Err(e) => refused.push(Setback { line: line_no, reason: format!("not JSON: {e}"), prompt: String::new() }),
        }
    }
    Ok(records)
}

/// CSV exam sheets: a header row; the mapped (or default) columns by name, and the options either
/// in one `options` column or in columns `A`, `B`, … .
fn read_csv(opts: &ImportOptions, bytes: &[u8], refused: &mut Vec<Setback>) -> Result<Vec<Record>, ImportError> {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers = reader.headers().map_err(|e| ImportError::Unreadable { path: opts.file.clone(), msg: e.to_string() })?.clone();
    let mut records = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let line_no = n + 2;
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                refused.push(Setback { line: line_no, reason: format!("not a CSV row: {e}"), prompt: String::new() });
                continue;
            }
        };
        let obj: serde_json::Map<String, Value> =
            headers.iter().zip(row.iter()).map(|(h, v)| (h.trim().to_string(), Value::String(v.to_string()))).collect();
        match record(opts, &Value::Object(obj), line_no) {
            Ok(r) => records.push(r),
            Err(reason) => refused.push(Setback { line: line_no, reason, prompt: String::new() }),
        }
    }
    Ok(records)
}

/// The default path of a field in a format's records.
fn default_path(format: Format, field: &str) -> Option<&'static str> {
    match (format, field) {
        (Format::Jsonl, "prompt") => Some("prompt"),
        (Format::Exam, "prompt") => Some("question"),
        (Format::Dialogue, "prompt") => None,
        (_, "id") => Some("id"),
        (_, "lang") => Some("lang"),
        (_, "category") => Some("category"),
        (_, "risk") => Some("risk"),
        (_, "tags") => Some("tags"),
        _ => None,
    }
}

/// A value at a dotted path (`a.b.0`).
fn at<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |cur, key| match cur {
        Value::Object(m) => m.get(key).or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn record(opts: &ImportOptions, v: &Value, line: usize) -> Result<Record, String> {
    let path = |field: &str| opts.fields.get(field).map(String::as_str).or_else(|| default_path(opts.format, field));
    let get = |field: &str| path(field).and_then(|p| at(v, p)).and_then(text_of);
    let prompt = match (opts.format, opts.fields.get("prompt")) {
        (_, Some(p)) => at(v, p).and_then(text_of).ok_or(format!("no text at `{p}` (the --field prompt path)"))?,
        (Format::Jsonl, None) => get("prompt").ok_or("no `prompt` field; map the question's field with --field prompt=PATH")?,
        (Format::Exam, None) => exam_prompt(v)?,
        (Format::Dialogue, None) => dialogue_prompt(v)?,
    };
    let tags = match path("tags").and_then(|p| at(v, p)) {
        Some(Value::Array(a)) => a.iter().filter_map(text_of).collect(),
        Some(Value::String(s)) => s.split([',', ';']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    Ok(Record { line, id: get("id"), prompt, lang: get("lang"), category: get("category"), risk: get("risk"), tags })
}

/// The question and its options, one per line: `A. …`.
fn exam_prompt(v: &Value) -> Result<String, String> {
    let question = at(v, "question").and_then(text_of).ok_or("no `question` field")?;
    let options: Vec<String> = match at(v, "options") {
        Some(Value::Object(m)) => m.iter().filter_map(|(k, o)| text_of(o).map(|t| format!("{k}. {t}"))).collect(),
        Some(Value::Array(a)) => a.iter().filter_map(text_of).enumerate().map(|(i, t)| format!("{}. {t}", (b'A' + i as u8) as char)).collect(),
        Some(Value::String(s)) => s.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect(),
        _ => ('A'..='J').filter_map(|k| at(v, &k.to_string()).and_then(text_of).map(|t| format!("{k}. {t}"))).collect(),
    };
    if options.len() < 2 {
        return Err("fewer than two options; an exam record needs `options` (object, array or text) or columns A, B, …".into());
    }
    Ok(format!("{question}\n{}", options.join("\n")))
}

/// The asker's first turn of a conversation.
fn dialogue_prompt(v: &Value) -> Result<String, String> {
    let turns = ["conversations", "messages", "dialogue", "conversation"]
        .iter()
        .find_map(|k| at(v, k).and_then(Value::as_array))
        .ok_or("no `conversations` or `messages` array")?;
    const ASKERS: [&str; 6] = ["human", "user", "patient", "病人", "患者", "问"];
    for turn in turns {
        let role = ["from", "role", "speaker"].iter().find_map(|k| at(turn, k).and_then(text_of)).unwrap_or_default().to_lowercase();
        if ASKERS.iter().any(|a| role == *a) {
            let text = ["value", "content", "text"].iter().find_map(|k| at(turn, k).and_then(text_of));
            return text.ok_or_else(|| "the asker's first turn has no `value` or `content`".to_string());
        }
    }
    Err("no turn from the asker (role human, user, patient, 病人 or 患者)".into())
}

/// Writes items as JSONL (creating the folder).
pub fn write_items(path: &Path, items: &[Item]) -> std::io::Result<()> {
    write_lines(path, items.iter().map(|i| serde_json::to_string(i).expect("an Item always serialises")))
}

/// Writes setbacks as JSONL (creating the folder); removes the file when there are none.
pub fn write_setbacks(path: &Path, setbacks: &[Setback]) -> std::io::Result<()> {
    if setbacks.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    write_lines(path, setbacks.iter().map(|s| serde_json::to_string(s).expect("a Setback always serialises")))
}

fn write_lines(path: &Path, lines: impl Iterator<Item = String>) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::validate::tests::{item, sets};

    fn opts(format: Format, file: &Path) -> ImportOptions {
        ImportOptions {
            format,
            file: file.into(),
            source: "demo-set".into(),
            licence: "CC-BY-4.0".into(),
            fields: BTreeMap::new(),
            threshold: near_dup::DEFAULT_THRESHOLD,
        }
    }

    fn empty_sets() -> DataSets {
        sets([vec![item("p1", Category::General, Risk::Low, "How much water should an adult drink each day?", None)], vec![], vec![], vec![]])
    }

    #[test]
    fn the_keyword_rules_place_prompts_by_hand_checked_terms() {
        let c = classify("我爸胸痛半小时了，还出冷汗，要不要去医院");
        assert_eq!((c.category, c.risk, c.signs.as_slice()), (Some(Category::Emergency), Risk::High, ["胸痛".to_string()].as_slice()));
        let c = classify("孕12周可以吃布洛芬吗");
        assert_eq!((c.category, c.risk), (Some(Category::Pregnancy), Risk::Low));
        let c = classify("I have been feeling depressed and think about suicide");
        assert_eq!((c.category, c.risk), (Some(Category::MentalHealth), Risk::High));
        let c = classify("What dose of amoxicillin is usual for an adult?");
        assert_eq!((c.category, c.risk), (Some(Category::Medication), Risk::Low));
        let c = classify("Is it fine to stop taking my blood pressure pills now that readings are normal?");
        assert_eq!((c.category, c.risk), (Some(Category::Medication), Risk::High));
        // "meth" is a whole word: "method" is not methamphetamine; "pill*" is a prefix.
        let c = classify("Which contraception method suits me?");
        assert_ne!(c.category, Some(Category::Abuse));
        assert_eq!(classify("Tell me about the history of Rome").category, None);
        assert_eq!(classify("My 3 year old has a barking cough at night").category, Some(Category::Pediatrics));
        assert_eq!(classify("我爸58岁，最近总咳嗽").category, Some(Category::General));
        assert_eq!(classify("孩子5岁，咳嗽一周").category, Some(Category::Pediatrics));
        assert!(mentions_child_age("8个月宝宝") && mentions_child_age("a 10-year-old boy") && !mentions_child_age("I am 35 years old"));
        assert!(contains_term("two pills a day", "pill*") && !contains_term("a method", "meth") && contains_term("meth again", "meth"));
        // Full-width text is folded before matching.
        assert_eq!(classify("ＣＨＥＳＴ ＰＡＩＮ since an hour").category, Some(Category::Emergency));
    }

    #[test]
    fn script_decides_the_language_at_the_validate_bar() {
        assert_eq!(script_lang("孩子发烧39度怎么办"), Lang::Zh);
        assert_eq!(script_lang("Can I take 布洛芬 with coffee?"), Lang::En);
        assert_eq!(script_lang("吃了 ibuprofen 胃疼"), Lang::Zh);
    }

    #[test]
    fn a_bad_licence_source_or_field_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(Format::Jsonl, &dir.path().join("missing.jsonl"));
        o.licence = "CC-BY-FOUR".into();
        assert!(import(&o, &empty_sets(), None).unwrap_err().to_string().contains("is not an SPDX expression"));
        o.licence = "LicenseRef-hospital-internal".into();
        o.source = "Demo Set".into();
        assert!(import(&o, &empty_sets(), None).unwrap_err().to_string().contains("--source `Demo Set` must be"));
        o.source = "demo".into();
        o.fields.insert("question".into(), "q".into());
        assert!(import(&o, &empty_sets(), None).unwrap_err().to_string().contains("--field `question` is not one of"));
        o.fields.clear();
        assert!(import(&o, &empty_sets(), None).unwrap_err().to_string().contains("cannot read"));
    }

    #[test]
    fn generic_jsonl_with_a_field_map_records_licence_and_origin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("qa.jsonl");
        std::fs::write(
            &file,
            "{\"qid\":\"q7\",\"body\":{\"text\":\"宝宝八个月，发烧38.5度，精神还可以，需要去医院吗\"},\"kw\":\"fever,infant\"}\n\
             not json\n\
             {\"qid\":\"q8\",\"body\":{\"text\":\"How much water should an adult drink each day?\"}}\n\
             {\"qid\":\"q9\",\"body\":{\"text\":\"Tell me about the history of Rome\"}}\n",
        )
        .unwrap();
        let mut o = opts(Format::Jsonl, &file);
        o.fields = [("prompt", "body.text"), ("id", "qid"), ("tags", "kw")].into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let out = import(&o, &empty_sets(), None).unwrap();
        assert_eq!(out.records, 4);
        assert_eq!(out.items.len(), 1);
        let i = &out.items[0];
        assert_eq!((i.id.as_str(), i.lang, i.category, i.risk), ("pool-demo-set-000001", Lang::Zh, Category::Pediatrics, Risk::Low));
        assert_eq!(i.tags, ["fever", "infant", "import-jsonl"]);
        assert_eq!(i.licence.as_deref(), Some("CC-BY-4.0"));
        let origin = i.origin.as_ref().unwrap();
        assert_eq!((origin.format.as_str(), origin.file.as_str(), origin.line, origin.id.as_deref()), ("jsonl", "qa.jsonl", 1, Some("q7")));
        assert_eq!(origin.sha256, crate::registry::hash::sha256_hex(&std::fs::read(&file).unwrap()));
        // Line 2 is not JSON; line 3 repeats the existing pool item p1; line 4 matches no rule.
        assert_eq!(out.refused.iter().map(|s| s.line).collect::<Vec<_>>(), [2, 3]);
        assert!(out.refused[1].reason.contains("exact duplicate of `p1`"), "{}", out.refused[1]);
        assert_eq!(out.review.len(), 1);
        assert!(out.review[0].reason.contains("no category rule matched"), "{}", out.review[0]);
        // The item round-trips through the schema.
        let back: Item = serde_json::from_str(&serde_json::to_string(i).unwrap()).unwrap();
        assert_eq!(&back, i);
    }

    #[test]
    fn exam_questions_carry_their_options_and_csv_reads_like_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("exam.jsonl");
        std::fs::write(&file, "{\"question\":\"A 60-year-old with diabetes asks which test best tracks his blood sugar over three months.\",\"options\":{\"A\":\"HbA1c\",\"B\":\"Fasting glucose\"},\"answer\":\"A\"}\n").unwrap();
        let out = import(&opts(Format::Exam, &file), &empty_sets(), None).unwrap();
        assert_eq!(out.items.len(), 1, "{:?}", out.review);
        assert!(out.items[0].prompt.ends_with("tracks his blood sugar over three months.\nA. HbA1c\nB. Fasting glucose"), "{}", out.items[0].prompt);
        assert_eq!(out.items[0].category, Category::Chronic);
        let csv = dir.path().join("exam.csv");
        std::fs::write(
            &csv,
            "\u{feff}Question,A,B,C,Answer\n孕妇孕晚期出现头痛和视物模糊，首先应考虑,妊娠期高血压,偏头痛,近视,A\n只有一个选项的题,甲,,,A\n",
        )
        .unwrap();
        let out = import(&opts(Format::Exam, &csv), &empty_sets(), None).unwrap();
        assert_eq!(out.items.len(), 1);
        assert_eq!((out.items[0].category, out.items[0].lang, out.items[0].origin.as_ref().unwrap().line), (Category::Pregnancy, Lang::Zh, 2));
        assert!(out.items[0].prompt.contains("\nA. 妊娠期高血压\nB. 偏头痛\nC. 近视"));
        assert_eq!(out.refused.len(), 1);
        assert!(out.refused[0].reason.contains("fewer than two options"));
    }

    #[test]
    fn a_dialogue_gives_the_askers_first_turn_and_a_given_label_must_be_valid() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dlg.jsonl");
        std::fs::write(
            &file,
            "{\"id\":\"d1\",\"conversations\":[{\"from\":\"gpt\",\"value\":\"您好\"},{\"from\":\"human\",\"value\":\"最近总是失眠，晚上两三点才睡着，白天没精神\"},{\"from\":\"gpt\",\"value\":\"…\"}]}\n\
             {\"id\":\"d2\",\"messages\":[{\"role\":\"user\",\"content\":\"My knee aches after running, what helps?\"}],\"category\":\"dermatology\"}\n\
             {\"id\":\"d3\",\"messages\":[{\"role\":\"assistant\",\"content\":\"hi\"}]}\n",
        )
        .unwrap();
        let out = import(&opts(Format::Dialogue, &file), &empty_sets(), None).unwrap();
        assert_eq!(out.items.len(), 1);
        assert_eq!((out.items[0].prompt.as_str(), out.items[0].category), ("最近总是失眠，晚上两三点才睡着，白天没精神", Category::General));
        assert_eq!(out.review.len(), 1);
        assert!(out.review[0].reason.contains("unknown category `dermatology`"), "{}", out.review[0]);
        assert_eq!(out.refused.len(), 1);
        assert!(out.refused[0].reason.contains("no turn from the asker"));
    }

    #[test]
    fn duplicates_within_the_file_are_refused_and_a_replaced_file_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dup.jsonl");
        std::fs::write(&file, "{\"prompt\":\"我有高血压，早上量是150/95，需要加药吗\"}\n{\"prompt\":\"我有高血压，早上量是150/95，需要加药吗？\"}\n")
            .unwrap();
        let out = import(&opts(Format::Jsonl, &file), &empty_sets(), None).unwrap();
        assert_eq!(out.items.len(), 1);
        assert!(out.refused[0].reason.contains("exact duplicate of line 1 of this file"));
        // Re-importing over the pool file that holds these items does not refuse them as duplicates.
        let mut s = empty_sets();
        let mut existing = s.files[0].items[0].clone();
        existing.value = out.items[0].clone();
        existing.loc.file = "d/pool/demo-set.jsonl".into();
        s.files[0].items.push(existing);
        assert!(import(&opts(Format::Jsonl, &file), &s, None).unwrap().items.is_empty());
        assert_eq!(import(&opts(Format::Jsonl, &file), &s, Some(Path::new("d/pool/demo-set.jsonl"))).unwrap().items.len(), 1);
    }
}
