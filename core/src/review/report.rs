//! The ingest report: agreement between clinicians and each rule, the disagreements, the rule
//! parameters they point at, the overall verdicts per stratum; as JSON and as Markdown.

use super::ReviewError;
use super::agreement::{Confusion, Kappa};
use super::ingest::{SheetRow, Verdict};
use super::pointers::{self, Direction, PointedParam};
use super::sheet::{PickedAnswer, SheetManifest, score_cell};
use super::strata::Stratum;
use crate::registry::{Registry, VersionRef};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const REPORT_FORMAT: &str = "medrl.review-report/1";

/// A sheet row (or a picked answer missing from the sheet) with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowRef {
    /// CSV line where the row starts; `None` for an answer missing from the sheet.
    pub line: Option<u64>,
    pub set: String,
    pub sample_id: String,
    pub problem: String,
}

/// Rows left out of the comparison, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Integrity {
    pub problems: Vec<RowRef>,
}

/// One answer where the clinician and the rule disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    pub line: u64,
    pub set: String,
    pub sample_id: String,
    pub stratum: Stratum,
    pub direction: Direction,
    /// The rule's score as the sheet shows it (`n/a` when it did not apply).
    pub rule_score: String,
    pub rule_explanation: String,
    pub hit_codes: Vec<String>,
    pub clinician: Verdict,
    pub comment: String,
    pub parameters: Vec<PointedParam>,
}

/// How many disagreements of one direction point at one parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParameterSummary {
    pub direction: Direction,
    pub param: String,
    pub current: String,
    pub disagreements: usize,
    /// Keywords of the parameter found in those answers, with the number of answers.
    pub keywords: Vec<(String, usize)>,
    pub why: String,
}

/// Agreement of one rule with the clinicians.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleAgreement {
    pub rule: String,
    pub column: String,
    pub question: String,
    /// `score ≥ 1`, `penalty > 0`.
    pub rule_says_yes_when: String,
    /// Answers both decided (yes or no).
    pub compared: usize,
    pub confusion: Confusion,
    pub accuracy: Option<f64>,
    pub kappa: Kappa,
    /// The rule decided, the clinician said `na`.
    pub clinician_na: usize,
    /// Neither the rule nor the clinician found the question applicable.
    pub both_na: usize,
    /// Verdict cell left empty.
    pub not_reviewed: usize,
    /// The rule did not apply (or failed uncounted) but the clinician answered yes or no.
    pub rule_not_applicable_judged: usize,
    pub disagreements: Vec<Disagreement>,
    pub parameters: Vec<ParameterSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VerdictCounts {
    pub yes: usize,
    pub no: usize,
    pub na: usize,
    pub not_reviewed: usize,
}

impl VerdictCounts {
    fn add(&mut self, v: Option<Verdict>) {
        match v {
            Some(Verdict::Yes) => self.yes += 1,
            Some(Verdict::No) => self.no += 1,
            Some(Verdict::Na) => self.na += 1,
            None => self.not_reviewed += 1,
        }
    }
}

/// A high-reward answer a clinician would not accept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    pub line: u64,
    pub set: String,
    pub sample_id: String,
    pub reward: Option<f64>,
    pub comment: String,
}

/// The clinicians' overall verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overall {
    pub all: VerdictCounts,
    pub by_stratum: Vec<(Stratum, VerdictCounts)>,
    /// Mean reward of the answers accepted (`yes`) and rejected (`no`).
    pub mean_reward_accepted: Option<f64>,
    pub mean_reward_rejected: Option<f64>,
    /// `top_reward` answers rejected: the reward was earned without a good answer.
    pub rejected_top_reward: Vec<Rejected>,
}

/// `review_report.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewReport {
    pub format: String,
    pub sheet: PathBuf,
    pub manifest: PathBuf,
    pub round: u32,
    pub variant: String,
    pub ruleset: Option<String>,
    /// Where the rule parameters came from.
    pub params_source: String,
    pub picked: usize,
    pub rows_in_sheet: usize,
    pub rows_compared: usize,
    pub integrity: Integrity,
    pub ignored_columns: Vec<String>,
    pub rules: Vec<RuleAgreement>,
    pub overall: Overall,
    pub notes: Vec<String>,
}

/// The parameters of each rule of the sheet, and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleParams {
    pub by_rule: BTreeMap<String, Value>,
    pub source: String,
    pub notes: Vec<String>,
}

fn merged(defaults: &Value, overrides: &serde_json::Map<String, Value>) -> Value {
    let mut v = defaults.clone();
    if let Some(map) = v.as_object_mut() {
        for (k, x) in overrides {
            map.insert(k.clone(), x.clone());
        }
    }
    v
}

/// Each rule's effective parameters: from the rule set (verified, overrides applied) where it
/// holds the sheet's rule version, else the defaults of the rule's own manifest.
pub fn effective_params(registry: &Registry, manifest: &SheetManifest, ruleset: Option<&str>) -> Result<RuleParams, ReviewError> {
    let mut by_rule = BTreeMap::new();
    let mut notes = Vec::new();
    let loaded = match ruleset {
        Some(r) => {
            let r: VersionRef = r.parse().map_err(ReviewError::Invalid)?;
            Some(registry.load_ruleset(&r)?)
        }
        None => None,
    };
    for rule in manifest.rules.iter().filter(|r| r.kind != "judge") {
        let from_set = loaded.as_ref().and_then(|set| {
            set.manifest
                .rules
                .iter()
                .zip(&set.rules)
                .find(|(e, _)| e.id == rule.id && e.version.to_string() == rule.version)
                .map(|(e, v)| merged(&v.manifest.params, &e.params))
        });
        let params = match from_set {
            Some(p) => p,
            None => {
                if let Some(set) = &loaded {
                    notes.push(format!(
                        "rule set {} does not hold {}@{}; its parameters are that version's defaults",
                        set.manifest.reference(),
                        rule.id,
                        rule.version
                    ));
                }
                let r: VersionRef = format!("{}@{}", rule.id, rule.version).parse().map_err(ReviewError::Invalid)?;
                registry.read_rule_manifest(&r)?.0.params
            }
        };
        by_rule.insert(rule.id.clone(), params);
    }
    let source = match &loaded {
        Some(set) => format!("rule set {} in {} (manifest defaults with its overrides)", set.manifest.reference(), registry.root().display()),
        None => {
            notes.push("no rule set recorded in the sheet manifest or given with --ruleset: parameters are each rule manifest's defaults, without a rule set's overrides".into());
            format!("rule manifests in {} (defaults)", registry.root().display())
        }
    };
    Ok(RuleParams { by_rule, source, notes })
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Compares every verdict column and summarises (see the module header).
#[allow(clippy::too_many_arguments)]
pub fn build(
    sheet: &Path,
    manifest_path: &Path,
    manifest: &SheetManifest,
    picked: &[PickedAnswer],
    rows: &[(&SheetRow, usize)],
    integrity: Integrity,
    ignored_columns: Vec<String>,
    ruleset: Option<String>,
    params: RuleParams,
) -> ReviewReport {
    let mut notes = params.notes.clone();
    let no_params = Value::Object(Default::default());
    let mut rules = Vec::new();
    for (k, col) in manifest.verdict_columns.iter().enumerate() {
        let rule_params = params.by_rule.get(&col.rule).unwrap_or(&no_params);
        if col.rule == "emergency"
            && let Some(w) = rule_params.get("referral_weight").and_then(Value::as_f64)
            && (w - col.threshold.value).abs() > 1e-9
        {
            notes.push(format!(
                "`emergency_covered` uses threshold {} but the rule's referral_weight is {w}: the decision no longer means \"referred to care\"",
                col.threshold.value
            ));
        }
        let mut a = RuleAgreement {
            rule: col.rule.clone(),
            column: col.column.clone(),
            question: col.question.clone(),
            rule_says_yes_when: col.threshold.describe(&col.kind),
            compared: 0,
            confusion: Confusion::default(),
            accuracy: None,
            kappa: Confusion::default().kappa(),
            clinician_na: 0,
            both_na: 0,
            not_reviewed: 0,
            rule_not_applicable_judged: 0,
            disagreements: Vec::new(),
            parameters: Vec::new(),
        };
        for (row, i) in rows {
            let p = &picked[*i];
            let verdict = p.answer.rule(&col.rule);
            let direction = match (row.verdicts[k], col.rule_says(&p.answer.rules)) {
                (None, _) => {
                    a.not_reviewed += 1;
                    None
                }
                (Some(Verdict::Na), Some(_)) => {
                    a.clinician_na += 1;
                    None
                }
                (Some(Verdict::Na), None) => {
                    a.both_na += 1;
                    None
                }
                (Some(_), None) => {
                    a.rule_not_applicable_judged += 1;
                    Some(Direction::RuleNotApplicable)
                }
                (Some(v), Some(rule_yes)) => {
                    let clinician_yes = v == Verdict::Yes;
                    a.confusion.add(rule_yes, clinician_yes);
                    match (rule_yes, clinician_yes) {
                        (true, false) => Some(Direction::FalsePositive),
                        (false, true) => Some(Direction::FalseNegative),
                        _ => None,
                    }
                }
            };
            let Some(direction) = direction else { continue };
            let hits = verdict.map(|v| v.hits.as_slice()).unwrap_or_default();
            a.disagreements.push(Disagreement {
                line: row.line,
                set: p.answer.set.clone(),
                sample_id: p.answer.sample.id.clone(),
                stratum: p.stratum,
                direction,
                rule_score: verdict.map_or_else(|| "n/a".to_string(), score_cell),
                rule_explanation: verdict.map(|v| v.explanation.clone()).unwrap_or_default(),
                hit_codes: hits.iter().map(|h| h.code.clone()).collect(),
                clinician: row.verdicts[k].expect("a direction needs a verdict"),
                comment: row.comment.clone(),
                parameters: pointers::point(&col.rule, direction, hits, rule_params, p.answer.sample.lang, &p.answer.sample.response),
            });
        }
        a.compared = a.confusion.n();
        a.accuracy = a.confusion.accuracy();
        a.kappa = a.confusion.kappa();
        a.parameters = summarize_parameters(&a.disagreements);
        rules.push(a);
    }
    ReviewReport {
        format: REPORT_FORMAT.into(),
        sheet: sheet.to_path_buf(),
        manifest: manifest_path.to_path_buf(),
        round: manifest.round,
        variant: manifest.variant.clone(),
        ruleset,
        params_source: params.source,
        picked: picked.len(),
        rows_in_sheet: rows.len() + integrity.problems.iter().filter(|p| p.line.is_some()).count(),
        rows_compared: rows.len(),
        integrity,
        ignored_columns,
        rules,
        overall: overall(picked, rows),
        notes,
    }
}

fn summarize_parameters(disagreements: &[Disagreement]) -> Vec<ParameterSummary> {
    // Keyed by (direction, parameter); the value keeps the order of first appearance, which is
    // the pointer table's order of priority, to break ties in the count.
    let mut by: BTreeMap<(Direction, String), (usize, ParameterSummary)> = BTreeMap::new();
    for d in disagreements {
        for p in &d.parameters {
            let first_seen = by.len();
            let (_, s) = by.entry((d.direction, p.param.clone())).or_insert_with(|| {
                (
                    first_seen,
                    ParameterSummary {
                        direction: d.direction,
                        param: p.param.clone(),
                        current: p.current.clone(),
                        disagreements: 0,
                        keywords: Vec::new(),
                        why: p.why.to_string(),
                    },
                )
            });
            s.disagreements += 1;
            for k in &p.keywords_in_answer {
                match s.keywords.iter_mut().find(|(w, _)| w == k) {
                    Some((_, n)) => *n += 1,
                    None => s.keywords.push((k.clone(), 1)),
                }
            }
        }
    }
    let mut ranked: Vec<(usize, ParameterSummary)> = by.into_values().collect();
    // Per direction, the parameters most disagreements point at first.
    ranked.sort_by(|(fa, a), (fb, b)| a.direction.cmp(&b.direction).then(b.disagreements.cmp(&a.disagreements)).then(fa.cmp(fb)));
    let mut out: Vec<ParameterSummary> = ranked.into_iter().map(|(_, s)| s).collect();
    for s in &mut out {
        s.keywords.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    out
}

fn overall(picked: &[PickedAnswer], rows: &[(&SheetRow, usize)]) -> Overall {
    let mut all = VerdictCounts::default();
    let mut by: BTreeMap<Stratum, VerdictCounts> = BTreeMap::new();
    let (mut accepted, mut rejected_rewards, mut rejected_top) = (Vec::new(), Vec::new(), Vec::new());
    for (row, i) in rows {
        let p = &picked[*i];
        all.add(row.overall);
        by.entry(p.stratum).or_default().add(row.overall);
        match row.overall {
            Some(Verdict::Yes) => accepted.extend(p.answer.reward),
            Some(Verdict::No) => {
                rejected_rewards.extend(p.answer.reward);
                if p.stratum == Stratum::TopReward {
                    rejected_top.push(Rejected {
                        line: row.line,
                        set: p.answer.set.clone(),
                        sample_id: p.answer.sample.id.clone(),
                        reward: p.answer.reward,
                        comment: row.comment.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    Overall {
        all,
        by_stratum: by.into_iter().collect(),
        mean_reward_accepted: mean(&accepted),
        mean_reward_rejected: mean(&rejected_rewards),
        rejected_top_reward: rejected_top,
    }
}

/// A Markdown table cell: pipes escaped, line breaks flattened.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), |x| format!("{x:.3}"))
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// `review_report.md`. Paths appear by file name only, so two runs on the same sheet give the
/// same page wherever they ran.
pub fn markdown(r: &ReviewReport) -> String {
    let mut md = format!("# Clinician review: round {}, variant `{}`\n\n", r.round, r.variant);
    md += &format!(
        "Sheet `{}` (manifest `{}`): {} picked answers, {} rows in the sheet, {} compared.\n",
        file_name(&r.sheet),
        file_name(&r.manifest),
        r.picked,
        r.rows_in_sheet,
        r.rows_compared
    );
    md += &format!("Rule set: {}.\n\n", r.ruleset.as_deref().unwrap_or("not recorded"));

    md += "## Sheet integrity\n\n";
    if r.integrity.problems.is_empty() {
        md += "Every row matches a picked answer, and every picked answer has a row.\n\n";
    } else {
        md += "These rows are left out of the figures below.\n\n| line | sample | problem |\n|---|---|---|\n";
        for p in &r.integrity.problems {
            md += &format!(
                "| {} | {}/{} | {} |\n",
                p.line.map_or_else(|| "–".into(), |l| l.to_string()),
                cell(&p.set),
                cell(&p.sample_id),
                cell(&p.problem)
            );
        }
        md += "\n";
    }
    if !r.ignored_columns.is_empty() {
        md += &format!(
            "Columns not from the sheet, ignored: {}.\n\n",
            r.ignored_columns.iter().map(|c| format!("`{}`", cell(c))).collect::<Vec<_>>().join(", ")
        );
    }

    md += "## Agreement per rule\n\n";
    md += "Positive is the rule's \"yes\". FP: the rule says yes, the clinician no; FN: the rule says no, the clinician yes.\n\n";
    md += "| rule | column | rule says yes when | compared | accuracy | Cohen's κ | TP | TN | FP | FN | clinician na | rule n/a, judged | not reviewed |\n";
    md += "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for a in &r.rules {
        let c = a.confusion;
        md += &format!(
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            a.rule,
            a.column,
            a.rule_says_yes_when,
            a.compared,
            num(a.accuracy),
            num(a.kappa.value),
            c.tp,
            c.tn,
            c.fp,
            c.fn_,
            a.clinician_na,
            a.rule_not_applicable_judged,
            a.not_reviewed
        );
    }
    md += "\n";
    for a in r.rules.iter().filter(|a| a.kappa.value.is_none()) {
        md += &format!("- κ of `{}` is undefined: {}.\n", a.rule, a.kappa.undefined_because.as_deref().unwrap_or("unknown"));
    }
    if r.rules.iter().any(|a| a.kappa.value.is_none()) {
        md += "\n";
    }

    for a in &r.rules {
        md += &format!("## `{}`: `{}`\n\n{}\n\n", a.rule, a.column, a.question);
        if a.disagreements.is_empty() {
            md += "No disagreement.\n\n";
            continue;
        }
        md += "### Parameters the disagreements point at\n\n| direction | parameter | current | disagreements | keywords in the answers | why |\n|---|---|---|---|---|---|\n";
        for p in &a.parameters {
            let keywords = p.keywords.iter().map(|(k, n)| format!("{} ({n})", cell(k))).collect::<Vec<_>>().join(", ");
            md += &format!(
                "| {} | `{}` | {} | {} | {} | {} |\n",
                p.direction.as_str(),
                p.param,
                cell(&p.current),
                p.disagreements,
                keywords,
                cell(&p.why)
            );
        }
        md += "\n### Disagreements\n\n| line | sample | stratum | direction | rule score | clinician | hits | rule explanation | comment |\n|---|---|---|---|---|---|---|---|---|\n";
        for d in &a.disagreements {
            md += &format!(
                "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} |\n",
                d.line,
                cell(&d.set),
                cell(&d.sample_id),
                d.stratum.as_str(),
                d.direction.as_str(),
                d.rule_score,
                d.clinician.as_str(),
                d.hit_codes.join(", "),
                cell(&d.rule_explanation),
                cell(&d.comment)
            );
        }
        md += "\n";
    }

    md += "## Overall verdicts\n\n| stratum | acceptable | not acceptable | na | not reviewed |\n|---|---|---|---|---|\n";
    for (s, c) in &r.overall.by_stratum {
        md += &format!("| {} | {} | {} | {} | {} |\n", s.as_str(), c.yes, c.no, c.na, c.not_reviewed);
    }
    let c = &r.overall.all;
    md += &format!("| all | {} | {} | {} | {} |\n\n", c.yes, c.no, c.na, c.not_reviewed);
    md += &format!(
        "Mean reward of accepted answers: {}; of rejected answers: {}.\n\n",
        num(r.overall.mean_reward_accepted),
        num(r.overall.mean_reward_rejected)
    );
    if !r.overall.rejected_top_reward.is_empty() {
        md +=
            "### High-reward answers the clinicians rejected (possible reward hacking)\n\n| line | sample | reward | comment |\n|---|---|---|---|\n";
        for x in &r.overall.rejected_top_reward {
            md += &format!("| {} | {}/{} | {} | {} |\n", x.line, cell(&x.set), cell(&x.sample_id), num(x.reward), cell(&x.comment));
        }
        md += "\n";
    }
    md += &format!("## Notes\n\n- Parameters: {}.\n", cell(&strip_root(&r.params_source)));
    for n in &r.notes {
        md += &format!("- {}\n", cell(n));
    }
    md
}

/// The parameter source without the registry's path (kept in the JSON).
fn strip_root(source: &str) -> String {
    match source.split_once(" in ") {
        Some((head, tail)) => match tail.split_once(" (") {
            Some((_, rest)) => format!("{head} ({rest}"),
            None => head.to_string(),
        },
        None => source.to_string(),
    }
}
