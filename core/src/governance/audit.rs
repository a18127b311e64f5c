//! The audit log: append-only JSONL, one record per rule evaluation (and one per rule-set load),
//! each hash-chained to the one before, so an edited, removed or reordered line is found by
//! [`verify_chain`].
//!
//! Record (`medrl-audit/2`), one canonical JSON object per line (sorted keys, no whitespace):
//! `{"seq": n, "prev": <hash of record n-1, or 64 zeros>, "time": RFC 3339, "event": {...},
//! "hash": sha256 of the canonical JSON of the record without "hash"}`. `event.kind` is
//! `ruleset_loaded` (rule set id, version, revision, sha256; signers; rollback) or `evaluation`
//! (rule set, rule id, version, manifest, module and params sha256; engine version; sample id;
//! input sha256; outcome, output and its sha256, error, decision; fuel used; elapsed µs) or
//! `judge_evaluation` (the same for a judge plugin on a sample of its share, with the plugin's
//! id, version, ABI and library sha256 in place of the rule's, and `sandboxed: false`: the
//! judge is native code, trusted by its pin, not confined by the sandbox) or `aggregate` (one per
//! scored sample, right after that sample's evaluation records: the rule set's aggregation
//! settings, each contribution's rule, kind, weight, decision, applied weight and term, the
//! score-weight scale, the sum before gates and clip, and the reward the caller used).
//!
//! `medrl-audit/1` logs (written before aggregate records existed) stay readable: their chain
//! verifies and their evaluations replay, but they carry no totals to check, and replay says so.
//! A log may hold both: the format is per record.
//!
//! The medical text never enters the log. The exact input bytes of each evaluation go to a
//! separate samples file beside it (`<log stem>.samples.jsonl`, one encoded sample per line,
//! content-addressed: the line's sha256 is the record's `input_sha256`), which the log names;
//! replay reads inputs from there. It can be kept under stricter access than the log, or
//! deleted, without breaking the chain.
//!
//! Writers take an exclusive lock on the log for each append, so concurrent scorers (the
//! trainer and an eval) can share one log and the chain stays linear.

use crate::registry::hash::{canonical_json, sha256_hex};
use crate::registry::manifest::RuleKind;
use crate::registry::ruleset::Aggregation;
use crate::registry::store::AcceptedRuleSet;
use crate::reward::aggregate::{Reward, aggregate_with_formula};
use crate::reward::outcome::{Decision, Evaluation, OutcomeKind};
use crate::reward::scorer::{RuleSetScorer, SampleScore, encode_sample};
use medrl_sdk::{RuleOutput, Sample};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The format of every record written now.
pub const AUDIT_FORMAT: &str = "medrl-audit/2";
/// Records of logs written before `aggregate` records: same record shape, no aggregates.
pub const AUDIT_FORMAT_V1: &str = "medrl-audit/1";
/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The exact version of the WebAssembly engine, as recorded in every evaluation record.
pub fn engine_version() -> String {
    format!("wasmtime {}", crate::reward::sandbox::Sandbox::engine_version())
}

/// What went wrong with an audit log. A broken chain names the line and what is wrong there.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {reason}")]
    Broken { path: PathBuf, line: u64, reason: String },
    #[error("{path} ends in an incomplete line (a writer was interrupted); run `medrl audit verify {path}` and move the log aside before appending")]
    Incomplete { path: PathBuf },
    #[error("{path}: the chain verifies, but its last record hash is {actual}, not the expected head {expected}: records were removed from the end")]
    Truncated { path: PathBuf, expected: String, actual: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io { path: path.to_path_buf(), source }
}

/// The rule set an event concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetRef {
    pub name: String,
    pub version: semver::Version,
    pub revision: u64,
    /// sha256 of the canonical bytes of its `ruleset.json`.
    pub sha256: String,
}

/// The rule an evaluation ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRef {
    pub id: String,
    pub version: semver::Version,
    pub manifest_sha256: String,
    pub module_sha256: String,
    /// sha256 of the canonical JSON of the effective params (defaults merged with overrides).
    pub params_sha256: String,
}

/// A rule set was accepted for scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadEvent {
    pub ruleset: RuleSetRef,
    /// Key ids of the valid trusted signatures; `None` when they were not checked or too few
    /// were found, which only `allow_unsigned` permits.
    pub signers: Option<Vec<String>>,
    pub required_signatures: usize,
    /// The operator's `--allow-unsigned` was in force for this load (absent in logs written
    /// before the flag existed, when an unsigned load needed no opt-out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unsigned: bool,
    /// Whether the revision was checked against a trust state (not for a resumed run, which is
    /// pinned to the rule set's sha256 at its step 0).
    pub revision_checked: bool,
    /// The last accepted revision this load went below, by `--allow-rollback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_from: Option<u64>,
    pub engine: String,
}

/// One rule on one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationEvent {
    pub ruleset: RuleSetRef,
    pub rule: RuleRef,
    pub engine: String,
    pub sample_id: String,
    /// sha256 of the exact bytes passed to `medrl_evaluate`.
    pub input_sha256: String,
    /// The samples file holding those bytes, relative to the log's folder.
    pub samples: String,
    pub outcome: OutcomeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<RuleOutput>,
    /// sha256 of the canonical JSON of `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub decision: Decision,
    pub fuel_used: u64,
    pub elapsed_us: u64,
}

/// The judge plugin an evaluation ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    pub id: String,
    pub version: semver::Version,
    /// The ABI the plugin declared (`medrl-judge/1`).
    pub abi: String,
    /// sha256 of the library bytes that were loaded (the rule set's pin).
    pub library_sha256: String,
    /// sha256 of the canonical JSON of the params it was created with.
    pub params_sha256: String,
}

/// The judge plugin on one sample of its share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeEvaluationEvent {
    pub ruleset: RuleSetRef,
    pub plugin: PluginRef,
    /// Always `false`: a native plugin runs in the host process with its rights.
    pub sandboxed: bool,
    pub sample_id: String,
    /// sha256 of the exact bytes passed to the plugin's `score`.
    pub input_sha256: String,
    /// The samples file holding those bytes, relative to the log's folder.
    pub samples: String,
    pub outcome: OutcomeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<RuleOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub decision: Decision,
    pub elapsed_us: u64,
}

/// One contribution to a sample's reward, as the aggregator saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatePart {
    /// `id@version` of the rule, or `judge:<id>@<version>`.
    pub rule: String,
    pub kind: RuleKind,
    /// The rule set's weight for it.
    pub weight: f64,
    pub decision: Decision,
    /// Whether its evaluation record precedes this aggregate (a judge outside its sampled share
    /// was not called and has none; every rule has one).
    pub evaluated: bool,
    /// The weight as applied (score weights × `score_scale`); absent when the sample was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_weight: Option<f64>,
    /// `effective_weight · score` when counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<f64>,
}

/// A sample's reward and the formula's inputs. Written right after the sample's evaluation
/// records (one per `evaluated` part, in `parts` order), in the same append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateEvent {
    pub ruleset: RuleSetRef,
    pub sample_id: String,
    pub input_sha256: String,
    /// The rule set's `aggregation` (renormalize, gates, clip).
    pub aggregation: Aggregation,
    pub parts: Vec<AggregatePart>,
    /// Factor on score weights; absent when the sample was skipped or aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_scale: Option<f64>,
    /// Σ terms before gates and clip; absent when skipped or aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    /// The reward the caller used: `{"status":"scored","total":…,"gates_fired":[…]}`, or
    /// `skipped` / `aborted` with the rule.
    pub reward: Reward,
}

/// What a record is about. Evaluations are nearly every record, so the larger variant is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEvent {
    RulesetLoaded(LoadEvent),
    Evaluation(EvaluationEvent),
    JudgeEvaluation(JudgeEvaluationEvent),
    Aggregate(AggregateEvent),
}

impl AuditEvent {
    /// The `kind` tag, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::RulesetLoaded(_) => "ruleset_loaded",
            AuditEvent::Evaluation(_) => "evaluation",
            AuditEvent::JudgeEvaluation(_) => "judge_evaluation",
            AuditEvent::Aggregate(_) => "aggregate",
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// `medrl-audit/2` ([`AUDIT_FORMAT`]); `medrl-audit/1` in logs written before aggregates.
    pub format: String,
    /// 1-based line number in the log.
    pub seq: u64,
    /// `hash` of the previous record; [`GENESIS`] for the first.
    pub prev: String,
    /// RFC 3339 UTC, microseconds.
    pub time: String,
    pub event: AuditEvent,
    /// sha256 of the canonical JSON of this record without `hash`.
    pub hash: String,
}

/// The canonical JSON of a record without its `hash`, and that hash.
fn record_hash(value: &serde_json::Value) -> String {
    let mut v = value.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("hash");
    }
    sha256_hex(&canonical_json(&v))
}

/// sha256 of an output's canonical JSON: what replay compares.
pub fn output_sha256(output: &RuleOutput) -> String {
    sha256_hex(&canonical_json(&serde_json::to_value(output).expect("an output always serialises")))
}

/// Where the samples file of a log lives: `audit.jsonl` → `audit.samples.jsonl`.
pub fn samples_path_for(log: &Path) -> PathBuf {
    let stem = log.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "audit".into());
    log.with_file_name(format!("{stem}.samples.jsonl"))
}

/// What one append wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// seq of the first and last record written (equal when one was written).
    pub first: u64,
    pub last: u64,
    /// hash of the last record: the log's head.
    pub head: String,
}

/// An open audit log that scorers append to.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    samples_path: PathBuf,
    /// Input hashes already in the samples file from this writer (across processes a sample
    /// may be written twice; lines are content-addressed, so that is harmless).
    written: Mutex<HashSet<String>>,
}

impl AuditLog {
    /// Opens (creating when missing) the log at `path` and its samples file beside it, and
    /// checks the log does not end in a half-written line.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(path).map_err(io(path))?;
        last_line(&mut file, path)?;
        Ok(AuditLog { path: path.to_path_buf(), samples_path: samples_path_for(path), written: Mutex::new(HashSet::new()) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn samples_path(&self) -> &Path {
        &self.samples_path
    }

    fn samples_name(&self) -> String {
        self.samples_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// Records that a rule set was accepted for scoring (with its signers and any rollback).
    pub fn record_load(&self, accepted: &AcceptedRuleSet) -> Result<Appended, AuditError> {
        let event = AuditEvent::RulesetLoaded(LoadEvent {
            ruleset: ruleset_ref(&accepted.ruleset.manifest, &accepted.ruleset.sha256),
            signers: accepted.signers.as_ref().map(|s| s.iter().map(|s| s.key_id.0.clone()).collect()),
            required_signatures: accepted.required_signatures,
            allow_unsigned: accepted.allow_unsigned,
            revision_checked: accepted.revision.is_some(),
            rollback_from: accepted.revision.as_ref().filter(|r| r.rollback).and_then(|r| r.previous.as_ref().map(|p| p.revision)),
            engine: engine_version(),
        });
        self.append(vec![event], Vec::new())
    }

    /// Records every evaluation of a scored batch: `scores[i]` is `samples[i]` scored by `scorer`.
    /// With a judge, also one `judge_evaluation` per sample of its share (none for the others:
    /// the plugin was not called).
    pub fn record_scores(&self, scorer: &RuleSetScorer, samples: &[Sample], scores: &[SampleScore]) -> Result<Appended, AuditError> {
        let ruleset = ruleset_ref(&scorer.ruleset.manifest, &scorer.ruleset.sha256);
        let rules: Vec<RuleRef> = scorer
            .rules
            .iter()
            .map(|r| RuleRef {
                id: r.manifest.id.clone(),
                version: r.manifest.version.clone(),
                manifest_sha256: r.manifest_sha256.clone(),
                module_sha256: r.module_sha256.clone(),
                params_sha256: r.params_sha256.clone(),
            })
            .collect();
        let (engine, samples_name) = (engine_version(), self.samples_name());
        let mut inputs = Vec::with_capacity(samples.len());
        let mut events = Vec::with_capacity(samples.len() * rules.len());
        for (sample, score) in samples.iter().zip(scores) {
            let bytes = encode_sample(sample);
            debug_assert_eq!(sha256_hex(&bytes), score.sample_sha256);
            inputs.push((score.sample_sha256.clone(), bytes));
            for (rule, result) in rules.iter().zip(&score.rules) {
                events.push(AuditEvent::Evaluation(evaluation_event(
                    &ruleset,
                    rule,
                    &engine,
                    &sample.id,
                    &score.sample_sha256,
                    &samples_name,
                    &result.evaluation,
                    result.decision,
                )));
            }
            if let (Some(judge), Some(result)) = (&scorer.judge, score.judge_result())
                && judge.selects(&sample.id)
            {
                let eval = &result.evaluation;
                events.push(AuditEvent::JudgeEvaluation(JudgeEvaluationEvent {
                    ruleset: ruleset.clone(),
                    plugin: PluginRef {
                        id: judge.entry.id.clone(),
                        version: judge.entry.version.clone(),
                        abi: judge.plugin.abi.clone(),
                        library_sha256: judge.plugin.library_sha256.clone(),
                        params_sha256: judge.params_sha256.clone(),
                    },
                    sandboxed: false,
                    sample_id: sample.id.clone(),
                    input_sha256: score.sample_sha256.clone(),
                    samples: samples_name.clone(),
                    outcome: eval.outcome,
                    output_sha256: eval.output.as_ref().map(output_sha256),
                    output: eval.output.clone(),
                    error: eval.error.clone(),
                    decision: result.decision,
                    elapsed_us: eval.elapsed_us,
                }));
            }
            events.push(AuditEvent::Aggregate(aggregate_event(scorer, &ruleset, sample, score)));
        }
        self.append(events, inputs)
    }

    /// The log's last record: its `seq` and `hash` (0 and [`GENESIS`] when empty), read under the
    /// lock, so it is a head another writer's half-done append cannot tear.
    pub fn head(&self) -> Result<AuditHead, AuditError> {
        let mut file = std::fs::OpenOptions::new().read(true).append(true).open(&self.path).map_err(io(&self.path))?;
        file.lock().map_err(io(&self.path))?;
        Ok(match last_line(&mut file, &self.path)? {
            None => AuditHead { records: 0, hash: GENESIS.to_string() },
            Some(line) => {
                let record: AuditRecord = serde_json::from_slice(&line).map_err(|e| AuditError::Broken {
                    path: self.path.clone(),
                    line: 0,
                    reason: format!("the last line is not an audit record ({e}); run `medrl audit verify`"),
                })?;
                AuditHead { records: record.seq, hash: record.hash }
            }
        })
    }

    /// Appends events under the log's lock: inputs go to the samples file first, so a record
    /// never names an input that is not on disk.
    pub fn append(&self, events: Vec<AuditEvent>, inputs: Vec<(String, Vec<u8>)>) -> Result<Appended, AuditError> {
        let mut file = std::fs::OpenOptions::new().read(true).append(true).open(&self.path).map_err(io(&self.path))?;
        file.lock().map_err(io(&self.path))?;
        let (mut seq, mut prev) = match last_line(&mut file, &self.path)? {
            None => (0, GENESIS.to_string()),
            Some(line) => {
                let record: AuditRecord = serde_json::from_slice(&line).map_err(|e| AuditError::Broken {
                    path: self.path.clone(),
                    line: 0,
                    reason: format!("the last line is not an audit record ({e}); run `medrl audit verify`"),
                })?;
                (record.seq, record.hash)
            }
        };
        if !inputs.is_empty() {
            let mut written = self.written.lock().expect("no writer panics while holding this lock");
            let mut text = Vec::new();
            for (sha, bytes) in &inputs {
                if written.insert(sha.clone()) {
                    text.extend_from_slice(bytes);
                    text.push(b'\n');
                }
            }
            let mut samples = std::fs::OpenOptions::new().create(true).append(true).open(&self.samples_path).map_err(io(&self.samples_path))?;
            samples.write_all(&text).map_err(io(&self.samples_path))?;
            samples.sync_data().map_err(io(&self.samples_path))?;
        }
        let time = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        let first = seq + 1;
        let mut out = Vec::new();
        for event in events {
            seq += 1;
            let record = AuditRecord { format: AUDIT_FORMAT.into(), seq, prev: prev.clone(), time: time.clone(), event, hash: String::new() };
            let mut value = serde_json::to_value(&record).expect("a record always serialises");
            let hash = record_hash(&value);
            value["hash"] = serde_json::Value::String(hash.clone());
            out.extend_from_slice(&canonical_json(&value));
            out.push(b'\n');
            prev = hash;
        }
        file.write_all(&out).map_err(io(&self.path))?;
        file.sync_data().map_err(io(&self.path))?;
        Ok(Appended { first, last: seq, head: prev })
    }
}

/// Where a log stood at one moment: how many records it had and the hash of the last. A log that
/// still holds record `records` with hash `hash` has not been cut or rewritten up to there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    pub records: u64,
    pub hash: String,
}

/// The aggregate record of one scored sample: the contributions rebuilt by the scorer's own
/// [`RuleSetScorer::contributions`] and run through the aggregator once more for the formula's
/// figures. `reward` is the score's own (what the caller used), not the recomputation: were the
/// two ever to differ, replay would report it rather than the log hide it.
fn aggregate_event(scorer: &RuleSetScorer, ruleset: &RuleSetRef, sample: &Sample, score: &SampleScore) -> AggregateEvent {
    let aggregation = &scorer.ruleset.manifest.aggregation;
    let contributions = scorer.contributions(&score.rules);
    let (_, formula) = aggregate_with_formula(aggregation, &contributions);
    let judged = scorer.judge.as_ref().is_some_and(|j| j.selects(&sample.id));
    let parts = contributions
        .iter()
        .zip(&score.rules)
        .enumerate()
        .map(|(i, (c, r))| AggregatePart {
            rule: r.rule.clone(),
            kind: c.kind,
            weight: c.weight,
            decision: c.decision,
            evaluated: i < scorer.rules.len() || judged,
            effective_weight: formula.as_ref().map(|f| f.effective_weights[i]),
            term: formula.as_ref().and_then(|f| f.terms[i]),
        })
        .collect();
    AggregateEvent {
        ruleset: ruleset.clone(),
        sample_id: sample.id.clone(),
        input_sha256: score.sample_sha256.clone(),
        aggregation: aggregation.clone(),
        parts,
        score_scale: formula.as_ref().map(|f| f.score_scale),
        sum: formula.as_ref().map(|f| f.sum),
        reward: score.reward.clone(),
    }
}

fn ruleset_ref(m: &crate::registry::ruleset::RuleSetManifest, sha256: &str) -> RuleSetRef {
    RuleSetRef { name: m.name.clone(), version: m.version.clone(), revision: m.revision, sha256: sha256.to_string() }
}

#[allow(clippy::too_many_arguments)]
fn evaluation_event(
    ruleset: &RuleSetRef,
    rule: &RuleRef,
    engine: &str,
    sample_id: &str,
    input_sha256: &str,
    samples: &str,
    eval: &Evaluation,
    decision: Decision,
) -> EvaluationEvent {
    EvaluationEvent {
        ruleset: ruleset.clone(),
        rule: rule.clone(),
        engine: engine.to_string(),
        sample_id: sample_id.to_string(),
        input_sha256: input_sha256.to_string(),
        samples: samples.to_string(),
        outcome: eval.outcome,
        output_sha256: eval.output.as_ref().map(output_sha256),
        output: eval.output.clone(),
        error: eval.error.clone(),
        decision,
        fuel_used: eval.fuel_used,
        elapsed_us: eval.elapsed_us,
    }
}

/// The last line of the file (without its newline), or `None` when empty; an error when the
/// file does not end in a newline.
fn last_line(file: &mut std::fs::File, path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    let len = file.seek(SeekFrom::End(0)).map_err(io(path))?;
    if len == 0 {
        return Ok(None);
    }
    let mut tail = Vec::new();
    let mut start = len;
    // Read backwards in growing chunks until the newline before the last line is in view.
    loop {
        let chunk = (len - start).max(64 * 1024).min(start);
        start -= chunk;
        file.seek(SeekFrom::Start(start)).map_err(io(path))?;
        let mut buf = vec![0u8; chunk as usize];
        file.read_exact(&mut buf).map_err(io(path))?;
        buf.extend_from_slice(&tail);
        tail = buf;
        if tail.last() != Some(&b'\n') {
            return Err(AuditError::Incomplete { path: path.to_path_buf() });
        }
        let body = &tail[..tail.len() - 1];
        if let Some(pos) = body.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(body[pos + 1..].to_vec()));
        }
        if start == 0 {
            return Ok(Some(body.to_vec()));
        }
    }
}

/// A log whose chain verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub records: u64,
    pub evaluations: u64,
    pub loads: u64,
    /// `aggregate` records (one per scored sample; none in a `medrl-audit/1` log).
    pub aggregates: u64,
    /// hash of the last record ([`GENESIS`] for an empty log). Keep it elsewhere (the trainer
    /// writes it into its checkpoints) to detect records removed from the end.
    pub head: String,
}

/// Reads and verifies the whole chain: each line canonical JSON of a valid record, its hash
/// its content's, `seq` its line number, `prev` the previous line's hash. With `expect_head`,
/// the last hash must equal it (records removed from the end are otherwise invisible).
pub fn verify_chain(path: &Path, expect_head: Option<&str>) -> Result<(ChainReport, Vec<AuditRecord>), AuditError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut report = ChainReport { records: 0, evaluations: 0, loads: 0, aggregates: 0, head: GENESIS.to_string() };
    let mut records = Vec::new();
    let broken = |line: u64, reason: String| AuditError::Broken { path: path.to_path_buf(), line, reason };
    let lines: Vec<Vec<u8>> = std::io::BufReader::new(file).split(b'\n').collect::<Result<_, _>>().map_err(io(path))?;
    // Where record `seq` sits in the file, if anywhere: tells a removal from a reordering.
    let line_of = |seq: u64| lines.iter().position(|l| serde_json::from_slice::<serde_json::Value>(l).is_ok_and(|v| v["seq"] == seq)).map(|i| i + 1);
    for (i, line) in lines.iter().enumerate() {
        let n = i as u64 + 1;
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| broken(n, format!("not a JSON record ({e}); the line was edited or cut")))?;
        if canonical_json(&value) != *line {
            return Err(broken(n, "not in canonical form (sorted keys, no whitespace): the line was edited".into()));
        }
        let recomputed = record_hash(&value);
        let record: AuditRecord =
            serde_json::from_value(value).map_err(|e| broken(n, format!("not a {AUDIT_FORMAT} record: {e}; the line was edited")))?;
        if record.format != AUDIT_FORMAT && record.format != AUDIT_FORMAT_V1 {
            return Err(broken(
                n,
                format!("format `{}` is not one this medrl reads ({AUDIT_FORMAT}, {AUDIT_FORMAT_V1}); use the medrl that wrote it", record.format),
            ));
        }
        if record.hash != recomputed {
            return Err(broken(n, format!("content hashes to {recomputed} but the record says {}: the line was edited", record.hash)));
        }
        if record.seq != n || record.prev != report.head {
            let what = match line_of(n) {
                Some(at) if at as u64 != n => format!("lines were reordered (record {n} is at line {at})"),
                _ if record.seq > n => format!("{} record(s) before it were removed", record.seq - n),
                _ => "lines were inserted or duplicated".to_string(),
            };
            return Err(broken(
                n,
                format!("holds record {} (prev {}) where record {n} (prev {}) belongs: {what}", record.seq, short(&record.prev), short(&report.head)),
            ));
        }
        report.records = n;
        report.head = record.hash.clone();
        match record.event {
            AuditEvent::Evaluation(_) | AuditEvent::JudgeEvaluation(_) => report.evaluations += 1,
            AuditEvent::RulesetLoaded(_) => report.loads += 1,
            AuditEvent::Aggregate(_) => report.aggregates += 1,
        }
        records.push(record);
    }
    if let Some(expected) = expect_head
        && expected != report.head
    {
        return Err(AuditError::Truncated { path: path.into(), expected: expected.into(), actual: report.head });
    }
    Ok((report, records))
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent::RulesetLoaded(LoadEvent {
            ruleset: RuleSetRef { name: "t".into(), version: "1.0.0".parse().unwrap(), revision: i, sha256: "ab".into() },
            signers: None,
            required_signatures: 0,
            allow_unsigned: false,
            revision_checked: false,
            rollback_from: None,
            engine: engine_version(),
        })
    }

    #[test]
    fn the_engine_version_is_the_locked_wasmtime() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        let locked = lock.split("[[package]]").find(|p| p.contains("name = \"wasmtime\"\n")).unwrap();
        let version = locked.lines().find_map(|l| l.strip_prefix("version = ")).unwrap().trim_matches('"');
        assert_eq!(engine_version(), format!("wasmtime {version}"));
    }

    #[test]
    fn appends_chain_across_writers_and_edits_removals_and_swaps_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let a = AuditLog::open(&path).unwrap();
        let first = a.append(vec![event(1), event(2)], vec![("x".into(), b"{}".to_vec())]).unwrap();
        assert_eq!((first.first, first.last), (1, 2));
        // A second writer continues the same chain.
        let b = AuditLog::open(&path).unwrap();
        let second = b.append(vec![event(3)], vec![]).unwrap();
        assert_eq!(second.first, 3);
        let (report, records) = verify_chain(&path, Some(&second.head)).unwrap();
        assert_eq!((report.records, report.loads, records[2].prev.as_str()), (3, 3, first.head.as_str()));
        assert_eq!(std::fs::read_to_string(samples_path_for(&path)).unwrap(), "{}\n");

        let lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
        let check = |body: Vec<String>| {
            let p = dir.path().join("t.jsonl");
            std::fs::write(&p, body.join("\n") + "\n").unwrap();
            verify_chain(&p, None).unwrap_err().to_string()
        };
        let edited = vec![lines[0].clone(), lines[1].replace("\"revision\":2", "\"revision\":9"), lines[2].clone()];
        assert!(check(edited).contains(":2: content hashes to"));
        let removed = vec![lines[0].clone(), lines[2].clone()];
        assert!(check(removed).contains(":2: holds record 3 (prev"), "removed");
        let swapped = vec![lines[1].clone(), lines[0].clone(), lines[2].clone()];
        let msg = check(swapped);
        assert!(msg.contains(":1: holds record 2") && msg.contains("reordered (record 1 is at line 2)"), "{msg}");
        // Removing the last record is only visible against a remembered head.
        let p = dir.path().join("cut.jsonl");
        std::fs::write(&p, lines[..2].join("\n") + "\n").unwrap();
        assert!(matches!(verify_chain(&p, Some(&second.head)), Err(AuditError::Truncated { .. })));
        // A half-written last line stops further appends.
        std::fs::write(&p, lines[0].clone() + "\n{\"seq\"").unwrap();
        assert!(matches!(AuditLog::open(&p), Err(AuditError::Incomplete { .. })));
    }
}
