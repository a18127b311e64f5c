//! Replay: re-run logged evaluations from their stored inputs and check that the outcome, the
//! output (by sha256) and the fuel used match the audit record exactly.
//!
//! Before anything runs, the log's chain is verified, the rule set is loaded from the registry
//! (integrity and, with a keyring, signatures) and must have the logged sha256, and each rule's
//! manifest, module and params sha256 must equal the record's. Each evaluation is replayed in
//! a fresh instance; the host's isolation check guarantees that equals the reused instance the
//! scorer used.

use super::audit::{AuditError, AuditEvent, EvaluationEvent, output_sha256, verify_chain};
use crate::registry::hash::sha256_hex;
use crate::registry::ruleset::VersionRef;
use crate::registry::store::{Registry, RegistryError};
use crate::reward::sandbox::Sandbox;
use crate::reward::scorer::{RuleSetScorer, ScorerError};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{path}:{line} is a `{kind}` record, not an evaluation; pick an evaluation line")]
    NotAnEvaluation { path: PathBuf, line: u64, kind: &'static str },
    #[error("{path} has {records} records; there is no line {line}")]
    NoSuchLine { path: PathBuf, line: u64, records: u64 },
    #[error("cannot replay {path}:{line}: {reason}")]
    Unreplayable { path: PathBuf, line: u64, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Scorer(#[from] ScorerError),
    #[error(transparent)]
    Module(#[from] crate::reward::sandbox::ModuleError),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
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
}

impl Replayed {
    pub fn matches(&self) -> bool {
        self.logged_outcome == self.replayed_outcome
            && self.logged_output_sha256 == self.replayed_output_sha256
            && self.logged_fuel == self.replayed_fuel
    }
}

/// Which lines to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One(u64),
    All,
}

/// Replays evaluations of the log at `path`.
pub fn replay(path: &Path, lines: Lines, registry: &Registry, sandbox: &Sandbox) -> Result<Vec<Replayed>, ReplayError> {
    let (report, records) = verify_chain(path, None)?;
    let selected: Vec<(u64, &EvaluationEvent)> = match lines {
        Lines::One(n) => {
            let record =
                records.get((n as usize).wrapping_sub(1)).ok_or(ReplayError::NoSuchLine { path: path.into(), line: n, records: report.records })?;
            match &record.event {
                AuditEvent::Evaluation(e) => vec![(n, e)],
                AuditEvent::RulesetLoaded(_) => return Err(ReplayError::NotAnEvaluation { path: path.into(), line: n, kind: "ruleset_loaded" }),
                // A judge runs native code, outside the sandbox's fuel accounting: there is no
                // exact fuel to compare, so `rules replay` replays rule evaluations only.
                AuditEvent::JudgeEvaluation(_) => return Err(ReplayError::NotAnEvaluation { path: path.into(), line: n, kind: "judge_evaluation" }),
            }
        }
        Lines::All => records
            .iter()
            .filter_map(|r| match &r.event {
                AuditEvent::Evaluation(e) => Some((r.seq, e)),
                AuditEvent::RulesetLoaded(_) | AuditEvent::JudgeEvaluation(_) => None,
            })
            .collect(),
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

    // One scorer per rule set logged, checked against the record.
    let mut scorers: BTreeMap<(String, String), RuleSetScorer> = BTreeMap::new();
    for (line, e) in &selected {
        let key = (e.ruleset.name.clone(), e.ruleset.version.to_string());
        if !scorers.contains_key(&key) {
            let r = VersionRef { name: e.ruleset.name.clone(), version: e.ruleset.version.clone() };
            let ruleset = registry.load_ruleset(&r)?;
            if ruleset.sha256 != e.ruleset.sha256 {
                return Err(unreplayable(
                    *line,
                    format!(
                        "rule set {r} in {} has sha256 {}, but the record was made with {}",
                        registry.root().display(),
                        ruleset.sha256,
                        e.ruleset.sha256
                    ),
                ));
            }
            scorers.insert(key.clone(), RuleSetScorer::new(sandbox, ruleset)?);
        }
    }

    let mut jobs = Vec::with_capacity(selected.len());
    for (line, e) in &selected {
        let scorer = &scorers[&(e.ruleset.name.clone(), e.ruleset.version.to_string())];
        let rule = scorer.rules.iter().find(|r| r.manifest.id == e.rule.id && r.manifest.version == e.rule.version).ok_or_else(|| {
            unreplayable(*line, format!("rule {}@{} is not in {}@{}", e.rule.id, e.rule.version, e.ruleset.name, e.ruleset.version))
        })?;
        for (what, now, logged) in [
            ("manifest", &rule.manifest_sha256, &e.rule.manifest_sha256),
            ("module", &rule.module_sha256, &e.rule.module_sha256),
            ("params", &rule.params_sha256, &e.rule.params_sha256),
        ] {
            if now != logged {
                return Err(unreplayable(
                    *line,
                    format!("the {what} sha256 of {}@{} is now {now}, the record says {logged}", e.rule.id, e.rule.version),
                ));
            }
        }
        let input = inputs.get(&e.input_sha256).ok_or_else(|| {
            unreplayable(
                *line,
                format!("no line of {} has sha256 {} (the sample `{}`)", base.join(&e.samples).display(), e.input_sha256, e.sample_id),
            )
        })?;
        jobs.push((*line, *e, rule, input.as_slice()));
    }
    Ok(jobs
        .into_par_iter()
        .map(|(line, e, rule, input)| {
            let eval = rule.evaluate_encoded(input);
            Replayed {
                line,
                rule: format!("{}@{}", e.rule.id, e.rule.version),
                sample_id: e.sample_id.clone(),
                logged_outcome: e.outcome.as_str().into(),
                replayed_outcome: eval.outcome.as_str().into(),
                logged_output_sha256: e.output_sha256.clone(),
                replayed_output_sha256: eval.output.as_ref().map(output_sha256),
                logged_fuel: e.fuel_used,
                replayed_fuel: eval.fuel_used,
            }
        })
        .collect())
}
