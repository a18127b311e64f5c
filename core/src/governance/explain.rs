//! `medrl audit explain RUN ROW`: from one `rewards.csv` row of a training run to everything
//! behind its number, in one answer: the rule set (name@version, revision, sha256), each rule's
//! module, manifest and params (sha256, and the params themselves), its logged output and
//! decision, the aggregation (weights as applied, terms, sum, gates, clip, total, which must equal
//! the csv's cells), and a live replay of each rule on the logged input bytes.
//!
//! The log is checked first ([`check_log`]): a row is never explained from a log whose records
//! disagree with each other or with the registry.

use super::audit::{AuditEvent, AuditRecord};
use super::replay::{Lines, ReplayError, Replayed, check_log, replay};
use crate::registry::hash::json_sha256;
use crate::registry::ruleset::{Aggregation, VersionRef};
use crate::registry::store::Registry;
use crate::reward::aggregate::Reward;
use crate::reward::outcome::Decision;
use crate::reward::sandbox::Sandbox;
use medrl_sdk::vectors::merge_params;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error("cannot read {path}: {reason}")]
    Csv { path: PathBuf, reason: String },
    #[error("{path} has {rows} data rows; there is no row {row} (rows count from 1, the header is not a row)")]
    NoSuchRow { path: PathBuf, row: usize, rows: usize },
    #[error("{path} has no row for sample `{sample}`")]
    NoSuchSample { path: PathBuf, sample: String },
    #[error(
        "{log} has no aggregate record for sample `{sample}` (rewards.csv row {row}): the log was written before rewards were logged ({}), or is not this run's",
        super::audit::AUDIT_FORMAT_V1
    )]
    NotLogged { log: PathBuf, sample: String, row: usize },
}

/// Which row to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A data row of `rewards.csv`, from 1 (the header is not a row).
    Row(usize),
    /// The last row of this sample id.
    Sample(String),
}

/// One contribution to the row's reward.
#[derive(Debug, Clone, Serialize)]
pub struct RuleLine {
    /// `id@version` (`judge:…` for a judge).
    pub rule: String,
    pub kind: String,
    /// Audit-log line of its evaluation (none for a judge that did not judge this sample).
    pub line: Option<u64>,
    pub module_sha256: Option<String>,
    pub manifest_sha256: Option<String>,
    pub params_sha256: Option<String>,
    /// Effective parameters (manifest defaults merged with the rule set's overrides).
    pub params: Option<serde_json::Value>,
    pub outcome: Option<String>,
    pub output: Option<medrl_sdk::RuleOutput>,
    pub error: Option<String>,
    pub decision: Decision,
    pub weight: f64,
    pub effective_weight: Option<f64>,
    pub term: Option<f64>,
    /// The csv's cell for this rule (empty when it did not count).
    pub csv_cell: String,
    /// The live replay (rules only; a judge is native code and not re-run).
    pub replay: Option<ReplayLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayLine {
    pub outcome: String,
    pub output_sha256: Option<String>,
    pub logged_fuel: u64,
    pub fuel: u64,
    pub decision: String,
    pub matches: bool,
}

/// Everything behind one rewards.csv number.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub run: PathBuf,
    pub row: usize,
    pub step: String,
    pub sample_id: String,
    pub category: String,
    /// The csv's `total` cell (6 decimals; empty when the sample was skipped).
    pub csv_reward: String,
    pub ruleset: String,
    pub ruleset_revision: u64,
    pub ruleset_sha256: String,
    pub audit_log: PathBuf,
    /// Line of the sample's aggregate record.
    pub aggregate_line: u64,
    pub rules: Vec<RuleLine>,
    pub aggregation: Aggregation,
    pub score_scale: Option<f64>,
    pub sum: Option<f64>,
    pub reward: Reward,
    /// The reward recomputed from the replayed decisions.
    pub replayed_reward: Reward,
    /// The csv's cells equal the logged decisions and total (at the csv's 6 decimals).
    pub csv_matches: bool,
    /// Every rule replayed to the same outcome, output, fuel and decision, and the same total.
    pub replay_matches: bool,
}

impl Explanation {
    pub fn ok(&self) -> bool {
        self.csv_matches && self.replay_matches
    }
}

/// The csv's formatting of a number (`RewardsCsv::write`).
fn cell(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.6}")).unwrap_or_default()
}

/// Explains one row of `run/rewards.csv` from `run/audit.jsonl`.
pub fn explain(run: &Path, target: &Target, registry: &Registry, sandbox: &Sandbox) -> Result<Explanation, ExplainError> {
    let csv_path = run.join("rewards.csv");
    let csv_err = |reason: String| ExplainError::Csv { path: csv_path.clone(), reason };
    let mut reader = csv::Reader::from_path(&csv_path).map_err(|e| csv_err(e.to_string()))?;
    let header: Vec<String> = reader.headers().map_err(|e| csv_err(e.to_string()))?.iter().map(String::from).collect();
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().map_err(|e| csv_err(e.to_string()))?;
    let row = match target {
        Target::Row(n) => {
            if *n == 0 || *n > rows.len() {
                return Err(ExplainError::NoSuchRow { path: csv_path, row: *n, rows: rows.len() });
            }
            *n
        }
        Target::Sample(id) => {
            rows.iter()
                .rposition(|r| r.get(1) == Some(id.as_str()))
                .ok_or_else(|| ExplainError::NoSuchSample { path: csv_path.clone(), sample: id.clone() })?
                + 1
        }
    };
    let record = &rows[row - 1];
    let field = |i: usize| record.get(i).unwrap_or_default().to_string();
    let (step, sample_id, category) = (field(0), field(1), field(2));
    let csv_reward = field(header.len() - 1);

    let log = run.join("audit.jsonl");
    let (_, records) = check_log(&log, registry, None)?;
    // A resumed run re-scores the interrupted step with the same bytes: the last record is the
    // one the csv row (rewritten by the resume) came from.
    let (agg_index, agg) = records
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, r)| match &r.event {
            AuditEvent::Aggregate(a) if a.sample_id == sample_id => Some((i, a)),
            _ => None,
        })
        .ok_or_else(|| ExplainError::NotLogged { log: log.clone(), sample: sample_id.clone(), row })?;
    let aggregate_line = records[agg_index].seq;
    let replayed = replay(&log, Lines::One(aggregate_line), registry, sandbox)?;

    let ruleset = registry.load_ruleset(&VersionRef { name: agg.ruleset.name.clone(), version: agg.ruleset.version.clone() })?;
    let k = agg.parts.iter().filter(|p| p.evaluated).count();
    let mut own: std::slice::Iter<'_, AuditRecord> = records[agg_index - k..agg_index].iter();
    let mut csv_matches = true;
    let mut rules = Vec::with_capacity(agg.parts.len());
    for (j, part) in agg.parts.iter().enumerate() {
        let evaluation = if part.evaluated { own.next() } else { None };
        let (line, outcome, output, error) = match evaluation.map(|r| (r.seq, &r.event)) {
            Some((seq, AuditEvent::Evaluation(e))) => (Some(seq), Some(e.outcome.as_str().to_string()), e.output.clone(), e.error.clone()),
            Some((seq, AuditEvent::JudgeEvaluation(e))) => (Some(seq), Some(e.outcome.as_str().to_string()), e.output.clone(), e.error.clone()),
            _ => (None, None, None, None),
        };
        let registered = ruleset.manifest.rules.get(j).zip(ruleset.rules.get(j));
        let params = registered.map(|(entry, rule)| {
            let overrides = entry.param_overrides();
            merge_params(&rule.manifest.params, overrides.as_ref())
        });
        let replay = line.and_then(|l| replayed.evaluations.iter().find(|r| r.line == l)).map(|r: &Replayed| ReplayLine {
            outcome: r.replayed_outcome.clone(),
            output_sha256: r.replayed_output_sha256.clone(),
            logged_fuel: r.logged_fuel,
            fuel: r.replayed_fuel,
            decision: r.replayed_decision.clone(),
            matches: r.matches(),
        });
        let counted = match part.decision {
            Decision::Counted { score } => Some(score),
            _ => None,
        };
        // The csv's rule columns follow the rule set's order, like the parts.
        let csv_cell = field(3 + j);
        csv_matches &= csv_cell == cell(counted);
        rules.push(RuleLine {
            rule: part.rule.clone(),
            kind: part.kind.as_str().to_string(),
            line,
            module_sha256: registered.map(|(_, r)| r.manifest.module.sha256.clone()),
            manifest_sha256: registered.map(|(_, r)| r.manifest_sha256.clone()),
            params_sha256: params.as_ref().map(json_sha256),
            params,
            outcome,
            output,
            error,
            decision: part.decision,
            weight: part.weight,
            effective_weight: part.effective_weight,
            term: part.term,
            csv_cell,
            replay,
        });
    }
    csv_matches &= csv_reward == cell(agg.reward.total()) && header.len() == 3 + agg.parts.len() + 1;
    let replayed_reward = replayed.totals.first().map(|t| t.replayed.clone()).unwrap_or_else(|| agg.reward.clone());
    Ok(Explanation {
        run: run.to_path_buf(),
        row,
        step,
        sample_id,
        category,
        csv_reward,
        ruleset: format!("{}@{}", agg.ruleset.name, agg.ruleset.version),
        ruleset_revision: agg.ruleset.revision,
        ruleset_sha256: agg.ruleset.sha256.clone(),
        audit_log: log,
        aggregate_line,
        rules,
        aggregation: agg.aggregation.clone(),
        score_scale: agg.score_scale,
        sum: agg.sum,
        reward: agg.reward.clone(),
        replayed_reward,
        csv_matches,
        replay_matches: replayed.matches(),
    })
}

/// The explanation in words, for a person.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let num = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v}"));
    let short = |s: &Option<String>| s.as_deref().map_or("-".to_string(), |h| format!("{}…", &h[..16.min(h.len())]));
    line(format!(
        "{} row {} (line {}): step {}, sample `{}`, category {}, reward {}",
        e.run.join("rewards.csv").display(),
        e.row,
        e.row + 1,
        e.step,
        e.sample_id,
        e.category,
        if e.csv_reward.is_empty() { "(none: skipped)" } else { &e.csv_reward }
    ));
    line(format!("rule set   {} revision {} sha256 {}", e.ruleset, e.ruleset_revision, e.ruleset_sha256));
    line(format!(
        "audit log  {}: chain intact, decisions and totals recomputed; this sample's aggregate is line {}",
        e.audit_log.display(),
        e.aggregate_line
    ));
    line(String::new());
    line("rules (module, manifest and params sha256; params are the rule set's overrides over the manifest's defaults):".into());
    for r in &e.rules {
        line(format!(
            "  {:<22} {:<8} module {}  manifest {}  params {}",
            r.rule,
            r.kind,
            short(&r.module_sha256),
            short(&r.manifest_sha256),
            short(&r.params_sha256)
        ));
        if let Some(p) = &r.params {
            let text = serde_json::to_string(p).expect("plain data");
            if text.chars().count() <= 160 {
                line(format!("  {:<22} params {text}", ""));
            } else {
                line(format!("  {:<22} params {} bytes (--json prints them)", "", text.len()));
            }
        }
    }
    line(String::new());
    line("outputs and aggregation (R = Σ applied weight · score, then gates, then clip):".into());
    for r in &e.rules {
        let output = match (&r.output, &r.error) {
            (Some(o), _) if o.applicable => format!("score {}", o.score),
            (Some(_), _) => "not applicable".to_string(),
            (None, Some(err)) => format!("failed: {err}"),
            (None, None) => "not evaluated".to_string(),
        };
        let decision = match r.decision {
            Decision::Counted { score } => format!("counted {score}"),
            Decision::NotApplicable => "left out".into(),
            Decision::SkipSample => "skip sample".into(),
            Decision::Abort => "abort".into(),
        };
        let at = r.line.map_or("-".to_string(), |l| format!("line {l}"));
        let result = format!("{} {output}", r.outcome.as_deref().unwrap_or("-"));
        let cell = if r.csv_cell.is_empty() { "(empty)" } else { &r.csv_cell };
        line(format!(
            "  {:<22} {at:<9} {result} → {decision}; weight {} → applied {}; term {}; csv cell {cell}",
            r.rule,
            r.weight,
            num(r.effective_weight),
            num(r.term),
        ));
        if let Some(o) = &r.output
            && !o.explanation.is_empty()
        {
            line(format!("  {:<22} why: {}", "", o.explanation));
        }
    }
    let gates: Vec<String> = e.aggregation.gates.iter().map(|g| format!("{} ≥ {} caps R at {}", g.rule, g.at_least, g.cap)).collect();
    let fired = match &e.reward {
        Reward::Scored { gates_fired, .. } if !gates_fired.is_empty() => format!(" (fired: {})", gates_fired.join(", ")),
        Reward::Scored { .. } if !gates.is_empty() => " (none fired)".into(),
        _ => String::new(),
    };
    line(format!(
        "  renormalize {}: score weights × {}; sum {}; gates: {}{fired}; clip [{}, {}]",
        serde_json::to_value(e.aggregation.renormalize).expect("plain data").as_str().unwrap_or_default(),
        num(e.score_scale),
        num(e.sum),
        if gates.is_empty() { "none".to_string() } else { gates.join("; ") },
        e.aggregation.clip[0],
        e.aggregation.clip[1]
    ));
    let reward = |r: &Reward| match r {
        Reward::Scored { total, .. } => format!("{total}"),
        Reward::Skipped { rule } => format!("skipped ({rule})"),
        Reward::Aborted { rule } => format!("aborted ({rule})"),
    };
    line(format!(
        "  total {} = rewards.csv {} at 6 decimals: {}",
        reward(&e.reward),
        if e.csv_reward.is_empty() { "(empty)" } else { &e.csv_reward },
        if e.csv_matches { "match" } else { "MISMATCH (the csv and the log disagree)" }
    ));
    line(String::new());
    line("live replay (each rule in a fresh sandbox on the logged input bytes; logged / replayed):".into());
    for r in &e.rules {
        match &r.replay {
            Some(p) => line(format!(
                "  {:<22} outcome {}, output sha256 {}, fuel {} / {}, decision {}: {}",
                r.rule,
                p.outcome,
                short(&p.output_sha256),
                p.logged_fuel,
                p.fuel,
                p.decision,
                if p.matches { "match" } else { "MISMATCH" }
            )),
            None => line(format!("  {:<22} not replayed (a judge is native code; its logged decision is used)", r.rule)),
        }
    }
    line(format!(
        "  total from the replayed decisions {}: {}",
        reward(&e.replayed_reward),
        if e.replay_matches { "reproduces the logged reward" } else { "MISMATCH" }
    ));
    out
}
