//! Checking what an audit log says against what it records, and replaying it.
//!
//! [`check_log`] needs no sandbox. After the hash chain, it checks every record against the
//! registry's copy of the logged rule set and against the records around it:
//! - each evaluation's rule (manifest, module and params sha256) is the registry's;
//! - its `output` hashes to its `output_sha256`;
//! - its `decision` is what the rule's `on_error` makes of its outcome and output;
//! - each `aggregate` follows exactly its sample's evaluation records, with their decisions,
//!   the rule set's rules, kinds, weights and aggregation; and the reward recomputed from those
//!   decisions (scale, applied weights, terms, sum, gates, clip) equals the logged one to the
//!   bit; every evaluation of a `medrl-audit/2` log is covered by an aggregate.
//!
//! So a decision or total edited in a log whose chain was then re-hashed, a dropped evaluation,
//! or an aggregate removed is found without running anything.
//!
//! [`replay`] then re-runs the evaluations from their stored inputs in fresh sandbox instances
//! and compares outcome, output (sha256), fuel and the decision the replayed output gives; for
//! each aggregate whose evaluations it replayed, it recomputes the reward from the replayed
//! decisions. The host's isolation check guarantees a fresh instance equals the reused one the
//! scorer used. A judge runs native code without fuel accounting: its evaluations are checked
//! by [`check_log`] but not re-run, and its logged decision enters the replayed total.

use super::audit::{AUDIT_FORMAT, AggregateEvent, AuditError, AuditEvent, AuditRecord, ChainReport, EvaluationEvent, output_sha256, verify_chain};
use crate::registry::hash::{json_sha256, sha256_hex};
use crate::registry::manifest::RuleKind;
use crate::registry::ruleset::VersionRef;
use crate::registry::store::{Registry, RegistryError, VerifiedRuleSet};
use crate::reward::aggregate::{Contribution, Reward, aggregate_with_formula};
use crate::reward::outcome::{Decision, Evaluation, OnError, OutcomeKind, decide};
use crate::reward::sandbox::Sandbox;
use crate::reward::scorer::{RuleSetScorer, ScorerError};
use medrl_sdk::RuleOutput;
use medrl_sdk::vectors::merge_params;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{path}:{line} is a `{kind}` record, not an evaluation or aggregate; pick one of those lines")]
    NotAnEvaluation { path: PathBuf, line: u64, kind: &'static str },
    #[error("{path} has {records} records; there is no line {line}")]
    NoSuchLine { path: PathBuf, line: u64, records: u64 },
    #[error("cannot replay {path}:{line}: {reason}")]
    Unreplayable { path: PathBuf, line: u64, reason: String },
    /// The chain is intact but records contradict what they record: the log was rewritten and
    /// re-hashed, or written by a faulty scorer.
    #[error(
        "{path}: the hash chain is intact, but {} record field(s) disagree with what they record:\n{}\nthe log was rewritten and re-hashed after scoring (or written by a faulty scorer): do not use its rewards; restore it from a copy you trust, and check a run's log against its checkpoints with `medrl audit verify RUN_DIR`",
        findings.len(),
        list(findings)
    )]
    Tampered { path: PathBuf, findings: Vec<Finding> },
    #[error(
        "{path}:{line}: the log was scored with rule set {ruleset}, which registry {registry} does not hold ({source}); pass --registry DIR with the registry it was scored from"
    )]
    MissingRuleSet { path: PathBuf, line: u64, ruleset: String, registry: PathBuf, source: Box<RegistryError> },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Scorer(#[from] ScorerError),
    #[error(transparent)]
    Module(#[from] crate::reward::sandbox::ModuleError),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The first findings, one per line (all of them would drown the message for a rewritten log).
fn list(findings: &[Finding]) -> String {
    const SHOWN: usize = 10;
    let mut lines: Vec<String> = findings.iter().take(SHOWN).map(|f| format!("  {f}")).collect();
    if findings.len() > SHOWN {
        lines.push(format!("  … and {} more", findings.len() - SHOWN));
    }
    lines.join("\n")
}

/// One field of one record that is not what the registry and the other records give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: u64,
    /// The record, in words: "evaluation of chain@1.0.0 on `s1`", "aggregate of `s1`".
    pub record: String,
    pub field: String,
    pub logged: String,
    pub recomputed: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} ({}): {}: logged {}, recomputed {}", self.line, self.record, self.field, self.logged, self.recomputed)
    }
}

/// A log whose records agree with what they record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheck {
    pub chain: ChainReport,
    /// Evaluation records whose decision was recomputed from their outcome and output.
    pub decisions: u64,
    /// Aggregate records whose reward was recomputed from their evaluations' decisions.
    pub totals: u64,
    /// Evaluations of `medrl-audit/1` records: decisions checked, no aggregate to check.
    pub v1_evaluations: u64,
}

/// What the registry says about one rule set, enough to recompute decisions and rewards.
struct RuleSetView {
    ruleset: VerifiedRuleSet,
    /// Per rule in rule-set order, then the judge: `id@version` (`judge:…` for the judge), kind,
    /// weight, `on_error`, worst score; and for rules the manifest, module and params sha256.
    parts: Vec<PartView>,
}

struct PartView {
    name: String,
    id: String,
    kind: RuleKind,
    weight: f64,
    on_error: OnError,
    worst: f64,
    /// manifest, module, params sha256 (none for the judge).
    hashes: Option<[String; 3]>,
}

impl RuleSetView {
    fn new(ruleset: VerifiedRuleSet) -> Self {
        let mut parts: Vec<PartView> = ruleset
            .manifest
            .rules
            .iter()
            .zip(&ruleset.rules)
            .map(|(entry, rule)| {
                let overrides = entry.param_overrides();
                let params = merge_params(&rule.manifest.params, overrides.as_ref());
                PartView {
                    name: rule.manifest.reference(),
                    id: rule.manifest.id.clone(),
                    kind: rule.manifest.kind,
                    weight: entry.weight,
                    on_error: rule.manifest.on_error,
                    worst: rule.manifest.worst_score(),
                    hashes: Some([rule.manifest_sha256.clone(), rule.manifest.module.sha256.clone(), json_sha256(&params)]),
                }
            })
            .collect();
        if let Some(judge) = &ruleset.manifest.judge {
            parts.push(PartView {
                name: format!("{}{}", crate::reward::plugin::JUDGE_RESULT_PREFIX, judge.reference()),
                id: judge.id.clone(),
                kind: RuleKind::Score,
                weight: judge.weight,
                on_error: judge.on_error,
                // A judge score is in [0, 1]: its worst is 0 (as the scorer decides it).
                worst: 0.0,
                hashes: None,
            });
        }
        RuleSetView { ruleset, parts }
    }

    fn part(&self, name: &str) -> Option<&PartView> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// The rule sets a log names, loaded from the registry once each and required to have the
/// logged sha256.
struct RuleSets<'r> {
    registry: &'r Registry,
    path: PathBuf,
    loaded: BTreeMap<(String, String), RuleSetView>,
}

impl RuleSets<'_> {
    fn get(&mut self, line: u64, r: &super::audit::RuleSetRef) -> Result<&RuleSetView, ReplayError> {
        let key = (r.name.clone(), r.version.to_string());
        if !self.loaded.contains_key(&key) {
            let reference = VersionRef { name: r.name.clone(), version: r.version.clone() };
            let ruleset = self.registry.load_ruleset(&reference).map_err(|e| ReplayError::MissingRuleSet {
                path: self.path.clone(),
                line,
                ruleset: reference.to_string(),
                registry: self.registry.root().to_path_buf(),
                source: Box::new(e),
            })?;
            if ruleset.sha256 != r.sha256 {
                return Err(ReplayError::Unreplayable {
                    path: self.path.clone(),
                    line,
                    reason: format!(
                        "rule set {reference} in {} has sha256 {}, but the record was made with {}; pass --registry DIR with the registry it was scored from",
                        self.registry.root().display(),
                        ruleset.sha256,
                        r.sha256
                    ),
                });
            }
            self.loaded.insert(key.clone(), RuleSetView::new(ruleset));
        }
        Ok(&self.loaded[&key])
    }
}

fn decision_text(d: &Decision) -> String {
    serde_json::to_string(d).expect("a decision always serialises")
}

fn reward_text(r: &Reward) -> String {
    serde_json::to_string(r).expect("a reward always serialises")
}

fn opt_f64(x: Option<f64>) -> String {
    x.map_or("none".to_string(), |v| v.to_string())
}

/// The fields of an evaluation or judge evaluation that the checks need.
struct Evaluated<'a> {
    rule: String,
    sample_id: &'a str,
    input_sha256: &'a str,
    outcome: OutcomeKind,
    output: &'a Option<RuleOutput>,
    output_sha256: &'a Option<String>,
    error: &'a Option<String>,
    decision: Decision,
}

fn evaluated(event: &AuditEvent) -> Option<Evaluated<'_>> {
    match event {
        AuditEvent::Evaluation(e) => Some(Evaluated {
            rule: format!("{}@{}", e.rule.id, e.rule.version),
            sample_id: &e.sample_id,
            input_sha256: &e.input_sha256,
            outcome: e.outcome,
            output: &e.output,
            output_sha256: &e.output_sha256,
            error: &e.error,
            decision: e.decision,
        }),
        AuditEvent::JudgeEvaluation(j) => Some(Evaluated {
            rule: format!("{}{}@{}", crate::reward::plugin::JUDGE_RESULT_PREFIX, j.plugin.id, j.plugin.version),
            sample_id: &j.sample_id,
            input_sha256: &j.input_sha256,
            outcome: j.outcome,
            output: &j.output,
            output_sha256: &j.output_sha256,
            error: &j.error,
            decision: j.decision,
        }),
        AuditEvent::RulesetLoaded(_) | AuditEvent::Aggregate(_) => None,
    }
}

/// Verifies the chain (against `expect_head` when given) and checks every record against the
/// registry and the records around it (see the module header). A disagreement is
/// [`ReplayError::Tampered`] listing every finding; a rule set the registry lacks or holds with
/// other bytes is an error that says which registry to pass.
pub fn check_log(path: &Path, registry: &Registry, expect_head: Option<&str>) -> Result<(LogCheck, Vec<AuditRecord>), ReplayError> {
    let (chain, records) = verify_chain(path, expect_head)?;
    let mut sets = RuleSets { registry, path: path.to_path_buf(), loaded: BTreeMap::new() };
    let mut findings = Vec::new();
    let mut check = LogCheck { chain, decisions: 0, totals: 0, v1_evaluations: 0 };
    // `medrl-audit/2` evaluations not yet covered by an aggregate, by index into `records`.
    let mut pending: Vec<usize> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let line = record.seq;
        if let Some(e) = evaluated(&record.event) {
            let ruleset = match &record.event {
                AuditEvent::Evaluation(ev) => &ev.ruleset,
                AuditEvent::JudgeEvaluation(j) => &j.ruleset,
                _ => unreachable!("evaluated() returns Some for evaluations only"),
            };
            let view = sets.get(line, ruleset)?;
            let what = format!("{} of {} on `{}`", record.event.kind().replace('_', " "), e.rule, e.sample_id);
            let mut finding = |field: &str, logged: String, recomputed: String| {
                findings.push(Finding { line, record: what.clone(), field: field.into(), logged, recomputed })
            };
            let Some(part) = view.part(&e.rule) else {
                return Err(ReplayError::Unreplayable {
                    path: path.into(),
                    line,
                    reason: format!("{} is not in {}", e.rule, view.ruleset.manifest.reference()),
                });
            };
            if let (AuditEvent::Evaluation(ev), Some([manifest, module, params])) = (&record.event, &part.hashes) {
                check_rule_hashes(path, line, ev, manifest, module, params)?;
            }
            let hashed = e.output.as_ref().map(output_sha256);
            if hashed != *e.output_sha256 {
                finding("output (its sha256)", opt_str(e.output_sha256), opt_str(&hashed));
            }
            let as_logged = Evaluation { outcome: e.outcome, output: e.output.clone(), error: e.error.clone(), fuel_used: 0, elapsed_us: 0 };
            let decided = decide(&as_logged, part.on_error, part.worst);
            if decided != e.decision {
                finding("decision", decision_text(&e.decision), decision_text(&decided));
            }
            check.decisions += 1;
            if record.format == AUDIT_FORMAT {
                pending.push(i);
            } else {
                check.v1_evaluations += 1;
            }
        } else if let AuditEvent::Aggregate(a) = &record.event {
            let view = sets.get(line, &a.ruleset)?;
            let covered = check_aggregate(line, a, &records[..i], view, &mut findings);
            // The evaluations just before it are its own; any earlier uncovered one has lost its
            // aggregate.
            let first_own = i - covered;
            for &j in pending.iter().filter(|&&j| j < first_own) {
                findings.push(missing_aggregate(&records[j]));
            }
            pending.clear();
            check.totals += 1;
        }
    }
    findings.extend(pending.iter().map(|&j| missing_aggregate(&records[j])));
    if findings.is_empty() { Ok((check, records)) } else { Err(ReplayError::Tampered { path: path.into(), findings }) }
}

fn opt_str(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "none".into())
}

fn missing_aggregate(record: &AuditRecord) -> Finding {
    let e = evaluated(&record.event).expect("only evaluations are pending");
    Finding {
        line: record.seq,
        record: format!("{} of {} on `{}`", record.event.kind().replace('_', " "), e.rule, e.sample_id),
        field: "aggregate".into(),
        logged: "no aggregate record after it".into(),
        recomputed: "one aggregate per scored sample, right after its evaluations (it was removed, or the log was cut inside a sample)".into(),
    }
}

fn check_rule_hashes(path: &Path, line: u64, e: &EvaluationEvent, manifest: &str, module: &str, params: &str) -> Result<(), ReplayError> {
    for (what, now, logged) in
        [("manifest", manifest, &e.rule.manifest_sha256), ("module", module, &e.rule.module_sha256), ("params", params, &e.rule.params_sha256)]
    {
        if now != logged {
            return Err(ReplayError::Unreplayable {
                path: path.into(),
                line,
                reason: format!("the {what} sha256 of {}@{} is now {now}, the record says {logged}", e.rule.id, e.rule.version),
            });
        }
    }
    Ok(())
}

/// Checks one aggregate against the evaluation records before it and the registry's rule set,
/// recomputing the reward; returns how many records before it are its evaluations.
fn check_aggregate(line: u64, a: &AggregateEvent, before: &[AuditRecord], view: &RuleSetView, findings: &mut Vec<Finding>) -> usize {
    let what = format!("aggregate of `{}`", a.sample_id);
    let mut finding =
        |field: String, logged: String, recomputed: String| findings.push(Finding { line, record: what.clone(), field, logged, recomputed });
    let evaluated_parts: Vec<(usize, &super::audit::AggregatePart)> = a.parts.iter().enumerate().filter(|(_, p)| p.evaluated).collect();
    let k = evaluated_parts.len();
    if k > before.len() {
        finding("parts".into(), format!("{k} evaluated parts"), format!("only {} records before it", before.len()));
        return before.len();
    }
    // Its own evaluations: the k records right before it, in parts order.
    for ((j, part), record) in evaluated_parts.iter().zip(&before[before.len() - k..]) {
        match evaluated(&record.event) {
            Some(e) if e.sample_id == a.sample_id && e.input_sha256 == a.input_sha256 && e.rule == part.rule => {
                if e.decision != part.decision {
                    finding(format!("parts[{j}].decision ({})", part.rule), decision_text(&part.decision), decision_text(&e.decision));
                }
            }
            other => finding(
                format!("parts[{j}] ({})", part.rule),
                format!("its evaluation at line {}", record.seq),
                match other {
                    Some(e) => format!("line {} is {} on `{}`: an evaluation record was removed or moved", record.seq, e.rule, e.sample_id),
                    None => format!("line {} is a `{}` record: an evaluation record was removed", record.seq, record.event.kind()),
                },
            ),
        }
    }
    // The formula's inputs, from the registry.
    if a.aggregation != view.ruleset.manifest.aggregation {
        finding(
            "aggregation".into(),
            serde_json::to_string(&a.aggregation).expect("plain data"),
            serde_json::to_string(&view.ruleset.manifest.aggregation).expect("plain data"),
        );
    }
    let names: Vec<&str> = a.parts.iter().map(|p| p.rule.as_str()).collect();
    let expected: Vec<&str> = view.parts.iter().map(|p| p.name.as_str()).collect();
    if names != expected {
        finding("parts (rules)".into(), names.join(", "), expected.join(", "));
        return k;
    }
    for (j, (part, reg)) in a.parts.iter().zip(&view.parts).enumerate() {
        if part.kind != reg.kind {
            finding(format!("parts[{j}].kind ({})", part.rule), part.kind.as_str().into(), reg.kind.as_str().into());
        }
        if part.weight.to_bits() != reg.weight.to_bits() {
            finding(format!("parts[{j}].weight ({})", part.rule), part.weight.to_string(), reg.weight.to_string());
        }
    }
    let contributions: Vec<Contribution<'_>> = view
        .parts
        .iter()
        .zip(&a.parts)
        .map(|(reg, part)| Contribution { rule: &reg.id, kind: reg.kind, weight: reg.weight, decision: part.decision })
        .collect();
    let (reward, formula) = aggregate_with_formula(&view.ruleset.manifest.aggregation, &contributions);
    if !same_reward(&reward, &a.reward) {
        finding("reward".into(), reward_text(&a.reward), reward_text(&reward));
    }
    let bits = |x: Option<f64>| x.map(f64::to_bits);
    if bits(a.score_scale) != bits(formula.as_ref().map(|f| f.score_scale)) {
        finding("score_scale".into(), opt_f64(a.score_scale), opt_f64(formula.as_ref().map(|f| f.score_scale)));
    }
    if bits(a.sum) != bits(formula.as_ref().map(|f| f.sum)) {
        finding("sum".into(), opt_f64(a.sum), opt_f64(formula.as_ref().map(|f| f.sum)));
    }
    for (j, part) in a.parts.iter().enumerate() {
        let (w, t) = (formula.as_ref().map(|f| f.effective_weights[j]), formula.as_ref().and_then(|f| f.terms[j]));
        if bits(part.effective_weight) != bits(w) {
            finding(format!("parts[{j}].effective_weight ({})", part.rule), opt_f64(part.effective_weight), opt_f64(w));
        }
        if bits(part.term) != bits(t) {
            finding(format!("parts[{j}].term ({})", part.rule), opt_f64(part.term), opt_f64(t));
        }
    }
    k
}

/// Equal rewards, totals compared to the bit (a total is never NaN: scores are checked finite).
fn same_reward(a: &Reward, b: &Reward) -> bool {
    match (a, b) {
        (Reward::Scored { total: x, gates_fired: g }, Reward::Scored { total: y, gates_fired: h }) => x.to_bits() == y.to_bits() && g == h,
        _ => a == b,
    }
}

/// One replayed evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    pub line: u64,
    /// `id@version`.
    pub rule: String,
    pub sample_id: String,
    pub logged_outcome: String,
    pub replayed_outcome: String,
    pub logged_output_sha256: Option<String>,
    pub replayed_output_sha256: Option<String>,
    pub logged_fuel: u64,
    pub replayed_fuel: u64,
    /// The decision as JSON (`{"decision":"counted","score":1.0}`).
    pub logged_decision: String,
    /// What the rule's `on_error` makes of the replayed evaluation.
    pub replayed_decision: String,
}

impl Replayed {
    pub fn matches(&self) -> bool {
        self.logged_outcome == self.replayed_outcome
            && self.logged_output_sha256 == self.replayed_output_sha256
            && self.logged_fuel == self.replayed_fuel
            && self.logged_decision == self.replayed_decision
    }
}

/// One aggregate recomputed from replayed decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedTotal {
    pub line: u64,
    pub sample_id: String,
    pub logged: Reward,
    pub replayed: Reward,
}

impl ReplayedTotal {
    pub fn matches(&self) -> bool {
        same_reward(&self.logged, &self.replayed)
    }
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct Replay {
    pub check: LogCheck,
    pub evaluations: Vec<Replayed>,
    pub totals: Vec<ReplayedTotal>,
}

impl Replay {
    pub fn matches(&self) -> bool {
        self.evaluations.iter().all(Replayed::matches) && self.totals.iter().all(ReplayedTotal::matches)
    }
}

/// Which lines to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// One evaluation, or one aggregate (its sample's evaluations and its total).
    One(u64),
    All,
}

/// Checks the log ([`check_log`]), then replays the selected evaluations and totals.
pub fn replay(path: &Path, lines: Lines, registry: &Registry, sandbox: &Sandbox) -> Result<Replay, ReplayError> {
    let (check, records) = check_log(path, registry, None)?;
    let rule_evaluation = |i: usize| match &records[i].event {
        AuditEvent::Evaluation(e) => Some((records[i].seq, e)),
        _ => None,
    };
    // The evaluations to re-run, and the aggregates to recompute (by index into `records`).
    let (selected, aggregates): (Vec<(u64, &EvaluationEvent)>, Vec<usize>) = match lines {
        Lines::One(n) => {
            let i = (n as usize).wrapping_sub(1);
            let record = records.get(i).ok_or(ReplayError::NoSuchLine { path: path.into(), line: n, records: check.chain.records })?;
            match &record.event {
                AuditEvent::Evaluation(e) => (vec![(n, e)], vec![]),
                AuditEvent::Aggregate(a) => {
                    let k = a.parts.iter().filter(|p| p.evaluated).count();
                    ((i.saturating_sub(k)..i).filter_map(rule_evaluation).collect(), vec![i])
                }
                AuditEvent::RulesetLoaded(_) => return Err(ReplayError::NotAnEvaluation { path: path.into(), line: n, kind: "ruleset_loaded" }),
                // A judge runs native code, outside the sandbox's fuel accounting: there is no
                // exact fuel to compare, so `rules replay` replays rule evaluations only.
                AuditEvent::JudgeEvaluation(_) => return Err(ReplayError::NotAnEvaluation { path: path.into(), line: n, kind: "judge_evaluation" }),
            }
        }
        Lines::All => (
            (0..records.len()).filter_map(rule_evaluation).collect(),
            (0..records.len()).filter(|&i| matches!(records[i].event, AuditEvent::Aggregate(_))).collect(),
        ),
    };
    let unreplayable = |line: u64, reason: String| ReplayError::Unreplayable { path: path.into(), line, reason };

    // The inputs, by sha256, from each samples file the selected records name.
    let base = path.parent().unwrap_or(Path::new("."));
    let mut inputs: HashMap<String, Vec<u8>> = HashMap::new();
    let wanted: HashSet<&str> = selected.iter().map(|(_, e)| e.input_sha256.as_str()).collect();
    let files: HashSet<&str> = selected.iter().map(|(_, e)| e.samples.as_str()).collect();
    for name in files {
        if Path::new(name).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(unreplayable(selected[0].0, format!("samples file `{name}` is not a plain name beside the log")));
        }
        let samples_path = base.join(name);
        let file = std::fs::File::open(&samples_path).map_err(|source| ReplayError::Io { path: samples_path.clone(), source })?;
        for line in std::io::BufReader::new(file).split(b'\n') {
            let line = line.map_err(|source| ReplayError::Io { path: samples_path.clone(), source })?;
            let sha = sha256_hex(&line);
            if wanted.contains(sha.as_str()) {
                inputs.entry(sha).or_insert(line);
            }
        }
    }

    // One compiled scorer per rule set logged (check_log has matched each against the record).
    let mut scorers: BTreeMap<(String, String), RuleSetScorer> = BTreeMap::new();
    for (_, e) in &selected {
        let key = (e.ruleset.name.clone(), e.ruleset.version.to_string());
        if let std::collections::btree_map::Entry::Vacant(slot) = scorers.entry(key) {
            let r = VersionRef { name: e.ruleset.name.clone(), version: e.ruleset.version.clone() };
            slot.insert(RuleSetScorer::new(sandbox, registry.load_ruleset(&r)?)?);
        }
    }

    let mut jobs = Vec::with_capacity(selected.len());
    for (line, e) in &selected {
        let scorer = &scorers[&(e.ruleset.name.clone(), e.ruleset.version.to_string())];
        let rule = scorer.rules.iter().find(|r| r.manifest.id == e.rule.id && r.manifest.version == e.rule.version).ok_or_else(|| {
            unreplayable(*line, format!("rule {}@{} is not in {}@{}", e.rule.id, e.rule.version, e.ruleset.name, e.ruleset.version))
        })?;
        let input = inputs.get(&e.input_sha256).ok_or_else(|| {
            unreplayable(
                *line,
                format!("no line of {} has sha256 {} (the sample `{}`)", base.join(&e.samples).display(), e.input_sha256, e.sample_id),
            )
        })?;
        jobs.push((*line, *e, rule, input.as_slice()));
    }
    let replayed: Vec<(Replayed, Decision)> = jobs
        .into_par_iter()
        .map(|(line, e, rule, input)| {
            let eval = rule.evaluate_encoded(input);
            let decision = decide(&eval, rule.manifest.on_error, rule.manifest.worst_score());
            let r = Replayed {
                line,
                rule: format!("{}@{}", e.rule.id, e.rule.version),
                sample_id: e.sample_id.clone(),
                logged_outcome: e.outcome.as_str().into(),
                replayed_outcome: eval.outcome.as_str().into(),
                logged_output_sha256: e.output_sha256.clone(),
                replayed_output_sha256: eval.output.as_ref().map(output_sha256),
                logged_fuel: e.fuel_used,
                replayed_fuel: eval.fuel_used,
                logged_decision: decision_text(&e.decision),
                replayed_decision: decision_text(&decision),
            };
            (r, decision)
        })
        .collect();
    let by_line: HashMap<u64, Decision> = replayed.iter().map(|(r, d)| (r.line, *d)).collect();

    // Each selected aggregate from its sample's replayed decisions (a judge's logged one).
    let mut totals = Vec::with_capacity(aggregates.len());
    let mut views: BTreeMap<(String, String), RuleSetView> = BTreeMap::new();
    for i in aggregates {
        let AuditEvent::Aggregate(a) = &records[i].event else { unreachable!("selected as an aggregate") };
        let key = (a.ruleset.name.clone(), a.ruleset.version.to_string());
        if !views.contains_key(&key) {
            let r = VersionRef { name: a.ruleset.name.clone(), version: a.ruleset.version.clone() };
            views.insert(key.clone(), RuleSetView::new(registry.load_ruleset(&r)?));
        }
        let view = &views[&key];
        let k = a.parts.iter().filter(|p| p.evaluated).count();
        let mut own = records[i.saturating_sub(k)..i].iter();
        let contributions: Vec<Contribution<'_>> = view
            .parts
            .iter()
            .zip(&a.parts)
            .map(|(reg, part)| {
                let seq = if part.evaluated { own.next().map(|r| r.seq) } else { None };
                let decision = seq.and_then(|s| by_line.get(&s).copied()).unwrap_or(part.decision);
                Contribution { rule: &reg.id, kind: reg.kind, weight: reg.weight, decision }
            })
            .collect();
        let (reward, _) = aggregate_with_formula(&view.ruleset.manifest.aggregation, &contributions);
        totals.push(ReplayedTotal { line: records[i].seq, sample_id: a.sample_id.clone(), logged: a.reward.clone(), replayed: reward });
    }
    Ok(Replay { check, evaluations: replayed.into_iter().map(|(r, _)| r).collect(), totals })
}
