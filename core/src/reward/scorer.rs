//! Scoring: a verified rule set, compiled once, evaluates batches of samples on all cores and
//! aggregates each sample's reward.
//!
//! A rule set with a judge also loads its plugin here. The judge scores the samples its
//! deterministic share selects, one at a time (its calls are serialised) while the rules run
//! on the other workers, and counts as one more `score` contribution; elsewhere it is not
//! applicable, so the rules' weights renormalise as for a rule that does not apply. Its result
//! is the last entry of [`SampleScore::rules`], named `judge:<id>@<version>`.

use super::aggregate::{Contribution, Reward, aggregate};
use super::outcome::{Decision, Evaluation, OutcomeKind, decide};
use super::plugin::{JUDGE_RESULT_PREFIX, LoadedJudge, PluginError};
use super::sandbox::{CompiledRule, ModuleError, PreparedCache, Sandbox};
use crate::registry::hash::{json_sha256, sha256_hex};
use crate::registry::manifest::{RuleKind, RuleManifest};
use crate::registry::store::{VerifiedRule, VerifiedRuleSet};
use medrl_sdk::Sample;
use medrl_sdk::vectors::{Vector, check, merge_params};
use rayon::prelude::*;
use serde::Serialize;

/// A rule compiled and ready, with its effective parameters.
pub struct LoadedRule {
    pub manifest: RuleManifest,
    pub manifest_sha256: String,
    pub weight: f64,
    /// Manifest defaults merged with the rule set's overrides.
    pub params: serde_json::Value,
    pub params_sha256: String,
    pub module_sha256: String,
    compiled: CompiledRule,
    /// The `medrl_prepare` document for `params`, encoded once.
    prepare_input: Vec<u8>,
    /// The state `medrl_prepare` leaves for `prepare_input`, kept between runs.
    prepared: PreparedCache,
}

/// The `medrl_prepare` document: ABI, parameters and the memory the guest may reserve.
pub fn prepare_input(params: &serde_json::Value, memory_pages: u32) -> Vec<u8> {
    serde_json::to_vec(&medrl_sdk::guest::PrepareInput { abi: medrl_sdk::ABI_VERSION.to_string(), params, memory_pages })
        .expect("a Value always serialises")
}

impl LoadedRule {
    /// Compiles a verified rule with the given parameter overrides.
    pub fn new(sandbox: &Sandbox, rule: &VerifiedRule, weight: f64, overrides: Option<&serde_json::Value>) -> Result<Self, ModuleError> {
        let module_path = rule.dir.join(&rule.manifest.module.file);
        let compiled = sandbox.compile(&rule.manifest.reference(), &module_path, &rule.module, rule.manifest.limits)?;
        let params = merge_params(&rule.manifest.params, overrides);
        Ok(LoadedRule {
            prepared: compiled.prepared_cache(),
            params_sha256: json_sha256(&params),
            module_sha256: rule.manifest.module.sha256.clone(),
            prepare_input: prepare_input(&params, rule.manifest.limits.memory_pages),
            manifest: rule.manifest.clone(),
            manifest_sha256: rule.manifest_sha256.clone(),
            weight,
            params,
            compiled,
        })
    }

    /// The `medrl_prepare` document this rule is prepared with.
    pub fn prepare_document(&self) -> &[u8] {
        &self.prepare_input
    }

    /// Evaluates one sample (already JSON-encoded) in a fresh instance.
    pub fn evaluate_encoded(&self, sample_json: &[u8]) -> Evaluation {
        self.compiled.evaluate_one(&self.prepare_input, sample_json, self.manifest.output_range)
    }

    pub fn evaluate(&self, sample: &Sample) -> Evaluation {
        self.evaluate_encoded(&encode_sample(sample))
    }

    /// Evaluates samples in order, each in a fresh instance restored to the state
    /// `medrl_prepare` left; the prepared state is kept from an earlier run when there is one,
    /// so a long-lived scorer pays `medrl_prepare` once.
    pub fn evaluate_many(&self, samples_json: &[&[u8]]) -> Vec<Evaluation> {
        self.compiled.evaluate_cached(&self.prepared, &self.prepare_input, samples_json, self.manifest.output_range)
    }

    /// Microseconds one `medrl_prepare` of this rule takes in a fresh instance (the cost an
    /// idle instance saves), or the failure.
    pub fn prepare_micros(&self) -> Result<f64, Evaluation> {
        let start = std::time::Instant::now();
        self.compiled.prepare(&self.prepare_input)?;
        Ok(start.elapsed().as_secs_f64() * 1e6)
    }

    /// Runs one golden vector through the sandbox: `Ok` or the mismatches in words.
    pub fn run_vector(&self, vector: &Vector) -> Result<(), String> {
        let params = merge_params(&self.params, vector.params.as_ref());
        let input = prepare_input(&params, self.manifest.limits.memory_pages);
        let eval = self.compiled.evaluate_one(&input, &encode_sample(&vector.sample), self.manifest.output_range);
        match &eval.output {
            Some(out) => check(&vector.expect, out),
            None => Err(format!("{}: {}", eval.outcome.as_str(), eval.error.unwrap_or_default())),
        }
    }

    /// Runs every vector; returns `name: mismatch` for each that fails.
    pub fn vector_failures(&self, vectors: &[Vector]) -> Vec<String> {
        vectors.iter().filter_map(|v| self.run_vector(v).err().map(|e| format!("{}: {e}", v.name))).collect()
    }

    /// Checks that scoring from the prepared snapshot is exact for this rule: each sample scored
    /// alone in a fresh instance that runs `medrl_prepare` itself, and all of them from one
    /// snapshot (forwards and backwards), must give the same outcome, output and fuel. State
    /// cannot pass between evaluations (each runs in a fresh instance), so this fails only if
    /// the snapshot missed state `medrl_prepare` left; such a rule could not be replayed exactly.
    pub fn check_isolation(&self, samples: &[Sample]) -> Result<(), String> {
        let encoded: Vec<Vec<u8>> = samples.iter().map(encode_sample).collect();
        let alone: Vec<Evaluation> = encoded.iter().map(|s| self.evaluate_encoded(s)).collect();
        let forwards: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let backwards: Vec<&[u8]> = forwards.iter().rev().copied().collect();
        // Fresh instances for both runs, not idle ones: the check starts from a known state.
        let range = self.manifest.output_range;
        let reused = self.compiled.evaluate_many(&self.prepare_input, &forwards, range);
        let mut reused_back = self.compiled.evaluate_many(&self.prepare_input, &backwards, range);
        reused_back.reverse();
        for (i, sample) in samples.iter().enumerate() {
            for (order, other) in [("in order", &reused[i]), ("in reverse order", &reused_back[i])] {
                let same = alone[i].outcome == other.outcome && alone[i].output == other.output && alone[i].fuel_used == other.fuel_used;
                if !same {
                    return Err(format!(
                        "rule {} gives sample `{}` a different result from its prepared snapshot, scored {order} (alone: {} fuel {}, from the snapshot: {} fuel {}); the host did not restore the state `medrl_prepare` left exactly: report this with the rule, and keep its state to memory and numeric globals",
                        self.manifest.reference(),
                        sample.id,
                        alone[i].outcome.as_str(),
                        alone[i].fuel_used,
                        other.outcome.as_str(),
                        other.fuel_used
                    ));
                }
            }
        }
        Ok(())
    }
}

pub fn encode_sample(sample: &Sample) -> Vec<u8> {
    serde_json::to_vec(sample).expect("a Sample always serialises")
}

/// One rule's result on one sample.
#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    /// `id@version`.
    pub rule: String,
    #[serde(flatten)]
    pub evaluation: Evaluation,
    pub decision: Decision,
}

/// Every rule's result on one sample, and the aggregated reward.
#[derive(Debug, Clone, Serialize)]
pub struct SampleScore {
    pub sample_id: String,
    /// sha256 of the sample's JSON encoding (the text itself is never logged).
    pub sample_sha256: String,
    /// In the order of the rule set's rules; with a judge, its result last.
    pub rules: Vec<RuleResult>,
    pub reward: Reward,
}

impl SampleScore {
    /// The judge's result on this sample (`judge:<id>@<version>`), when the rule set has a judge.
    pub fn judge_result(&self) -> Option<&RuleResult> {
        self.rules.iter().find(|r| r.rule.starts_with(JUDGE_RESULT_PREFIX))
    }

    /// The judge's score in [0, 1] where it judged this sample; `None` where it did not (not in
    /// the sampled share, no judge in the rule set) or failed.
    pub fn judge_score(&self) -> Option<f64> {
        let r = self.judge_result()?;
        match (&r.evaluation.output, r.evaluation.outcome) {
            (Some(out), OutcomeKind::Ok) if out.applicable => Some(out.score),
            _ => None,
        }
    }
}

/// Why a rule set cannot be made ready to score.
#[derive(Debug, thiserror::Error)]
pub enum ScorerError {
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("{0}")]
    Vectors(String),
    #[error("{0}")]
    Isolation(String),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// The most samples one task evaluates. The instance outlives the task (it goes back to the
/// rule's idle instances), so this bound only keeps tasks short enough for the pool to balance
/// (a batch has at least rules × threads × 2 tasks until runs reach this length).
const MAX_RUN: usize = 256;

/// A verified rule set, compiled.
pub struct RuleSetScorer {
    pub ruleset: VerifiedRuleSet,
    pub rules: Vec<LoadedRule>,
    /// The judge plugin, loaded, when the rule set has one.
    pub judge: Option<LoadedJudge>,
}

impl RuleSetScorer {
    /// Compiles every rule of a verified rule set. Each rule's golden-vector samples are run
    /// through [`LoadedRule::check_isolation`] first: a rule that keeps state between
    /// evaluations is refused before it scores anything. A judge's library is checked against
    /// its pin and loaded last (see `reward::plugin`).
    pub fn new(sandbox: &Sandbox, ruleset: VerifiedRuleSet) -> Result<Self, ScorerError> {
        let rules: Vec<LoadedRule> = ruleset
            .manifest
            .rules
            .iter()
            .zip(&ruleset.rules)
            .map(|(entry, rule)| {
                let overrides = entry.param_overrides();
                LoadedRule::new(sandbox, rule, entry.weight, overrides.as_ref())
            })
            .collect::<Result<_, _>>()?;
        for (loaded, verified) in rules.iter().zip(&ruleset.rules) {
            let samples = verified.vector_samples().map_err(ScorerError::Vectors)?;
            loaded.check_isolation(&samples).map_err(ScorerError::Isolation)?;
        }
        let judge = ruleset.judge.as_ref().map(LoadedJudge::load).transpose()?;
        Ok(RuleSetScorer { ruleset, rules, judge })
    }

    /// What each result of a sample adds to its reward: the rules' in rule-set order, then the
    /// judge's (a `score` contribution) when `results` holds one. The scorer and the audit log's
    /// aggregate records both build the aggregator's input here, so they cannot drift.
    pub fn contributions<'a>(&'a self, results: &[RuleResult]) -> Vec<Contribution<'a>> {
        let mut parts: Vec<Contribution<'a>> = self
            .rules
            .iter()
            .zip(results)
            .map(|(rule, r)| Contribution { rule: &rule.manifest.id, kind: rule.manifest.kind, weight: rule.weight, decision: r.decision })
            .collect();
        if let (Some(judge), Some(r)) = (&self.judge, results.get(self.rules.len())) {
            parts.push(Contribution { rule: &judge.entry.id, kind: RuleKind::Score, weight: judge.entry.weight, decision: r.decision });
        }
        parts
    }

    /// Scores a batch on the current rayon pool. Each task is one rule on a run of samples in
    /// one reused instance, kept idle between tasks and batches, so preparing a rule (decoding
    /// its parameters, building its tables) is paid about once per worker thread for the life of
    /// the scorer, not per sample; a slow or failing rule never stops the others.
    pub fn score_batch(&self, samples: &[Sample]) -> Vec<SampleScore> {
        let encoded: Vec<Vec<u8>> = samples.par_iter().map(encode_sample).collect();
        let n_rules = self.rules.len();
        let threads = rayon::current_num_threads().max(1);
        let chunk = samples.len().div_ceil(threads * 2).clamp(1, MAX_RUN);
        let n_chunks = samples.len().div_ceil(chunk);
        let rule_runs = || -> Vec<Vec<Evaluation>> {
            (0..n_rules * n_chunks)
                .into_par_iter()
                .map(|task| {
                    let (rule, c) = (task / n_chunks, task % n_chunks);
                    let run: Vec<&[u8]> = encoded[c * chunk..((c + 1) * chunk).min(encoded.len())].iter().map(Vec::as_slice).collect();
                    self.rules[rule].evaluate_many(&run)
                })
                .collect()
        };
        // The judge, serially (one call at a time into the plugin), beside the rule tasks.
        let judge_runs = || -> Option<Vec<Evaluation>> {
            self.judge.as_ref().map(|j| samples.iter().zip(&encoded).map(|(s, json)| j.evaluate(&s.id, json)).collect())
        };
        let (runs, judge_evaluations) = rayon::join(rule_runs, judge_runs);
        let mut judge_evaluations = judge_evaluations.map(Vec::into_iter);
        // runs[rule * n_chunks + c][i] is rule `rule` on sample `c * chunk + i`; regroup by sample.
        // Moved, not copied: an evaluation carries its hits and explanation.
        let mut runs = runs.into_iter();
        let mut per_rule: Vec<std::iter::Flatten<std::vec::IntoIter<Vec<Evaluation>>>> =
            (0..n_rules).map(|_| runs.by_ref().take(n_chunks).collect::<Vec<_>>().into_iter().flatten()).collect();
        let by_sample: Vec<(Vec<Evaluation>, Option<Evaluation>)> = (0..samples.len())
            .map(|_| {
                let rules = per_rule.iter_mut().map(|it| it.next().expect("one evaluation per (sample, rule)")).collect();
                (rules, judge_evaluations.as_mut().map(|it| it.next().expect("one judge evaluation per sample")))
            })
            .collect();
        // Decisions, aggregation and the sample hash in parallel too: a few µs per sample that,
        // done serially, would cap how much the rule work gains from more cores.
        samples
            .par_iter()
            .zip(&encoded)
            .zip(by_sample)
            .map(|((sample, json), (evaluations, judged))| {
                let mut results: Vec<RuleResult> = self
                    .rules
                    .iter()
                    .zip(evaluations)
                    .map(|(rule, evaluation)| {
                        let decision = decide(&evaluation, rule.manifest.on_error, rule.manifest.worst_score());
                        RuleResult { rule: rule.manifest.reference(), evaluation, decision }
                    })
                    .collect();
                if let (Some(judge), Some(evaluation)) = (&self.judge, judged) {
                    // A judge score is in [0, 1]: its worst (for `max_penalty`) is 0.
                    let decision = decide(&evaluation, judge.entry.on_error, 0.0);
                    results.push(RuleResult { rule: judge.result_name(), evaluation, decision });
                }
                let reward = aggregate(&self.ruleset.manifest.aggregation, &self.contributions(&results));
                SampleScore { sample_id: sample.id.clone(), sample_sha256: sha256_hex(json), rules: results, reward }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::limits::SandboxLimits;
    use crate::registry::ruleset::{Aggregation, RuleEntry, RuleSetManifest};
    use crate::registry::store::VerifiedRuleSet;
    use crate::reward::outcome::{OnError, OutcomeKind};
    use crate::reward::testutil::{constant_rule, sample, verified, wat_rule};

    fn ruleset(rules: Vec<(crate::registry::store::VerifiedRule, f64)>) -> VerifiedRuleSet {
        let manifest = RuleSetManifest {
            name: "t".into(),
            version: "1.0.0".parse().unwrap(),
            revision: 1,
            created_at: "2026-01-01T00:00:00Z".into(),
            description: String::new(),
            rules: rules
                .iter()
                .map(|(r, w)| RuleEntry {
                    id: r.manifest.id.clone(),
                    version: r.manifest.version.clone(),
                    manifest_sha256: r.manifest_sha256.clone(),
                    weight: *w,
                    params: Default::default(),
                })
                .collect(),
            judge: None,
            aggregation: Aggregation { renormalize: Default::default(), gates: vec![], clip: [-1.0, 1.0] },
            files: vec![],
            previous: None,
            approvals: vec![],
        };
        VerifiedRuleSet { manifest, sha256: "x".into(), rules: rules.into_iter().map(|(r, _)| r).collect(), judge: None }
    }

    #[test]
    fn hostile_rules_never_stop_the_rest_of_the_batch() {
        let limits = SandboxLimits { fuel: 2_000_000, memory_pages: 16, ..Default::default() };
        let good = verified("good", RuleKind::Score, OnError::Abort, limits, constant_rule(r#"{"score":1.0,"applicable":true}"#));
        let looping = verified("looping", RuleKind::Penalty, OnError::MaxPenalty, limits, wat_rule("(loop $l br $l) unreachable", "", ""));
        let bomb = verified(
            "bomb",
            RuleKind::Penalty,
            OnError::Zero,
            limits,
            wat_rule("(loop $l (drop (memory.grow (i32.const 16))) br $l) unreachable", "", ""),
        );
        let trap = verified("trap", RuleKind::Score, OnError::SkipSample, limits, wat_rule("unreachable", "", ""));
        let sandbox = Sandbox::new(2).unwrap();

        // Without the skipping rule: every sample is scored, failures follow their policies.
        let scorer = RuleSetScorer::new(&sandbox, ruleset(vec![(good.clone(), 1.0), (looping.clone(), -0.5), (bomb.clone(), -0.5)])).unwrap();
        let samples: Vec<_> = (0..6).map(|i| sample(&format!("s{i}"))).collect();
        let scores = scorer.score_batch(&samples);
        assert_eq!(scores.len(), 6);
        for s in &scores {
            let outcomes: Vec<OutcomeKind> = s.rules.iter().map(|r| r.evaluation.outcome).collect();
            assert_eq!(outcomes, [OutcomeKind::Ok, OutcomeKind::OutOfFuel, OutcomeKind::Limit]);
            // 1·1.0 − 0.5·1.0 (max penalty) − 0.5·0 (zero) = 0.5
            assert_eq!(s.reward.total(), Some(0.5), "{:?}", s.reward);
        }

        // With it: each sample is skipped, never aborted, and the good rule still ran on all.
        let scorer = RuleSetScorer::new(&sandbox, ruleset(vec![(good, 1.0), (trap, 1.0)])).unwrap();
        let scores = scorer.score_batch(&samples);
        assert!(scores.iter().all(|s| s.reward == Reward::Skipped { rule: "trap".into() }));
        assert!(scores.iter().all(|s| s.rules[0].evaluation.outcome == OutcomeKind::Ok));
    }

    #[test]
    fn batches_after_the_first_reuse_prepared_instances_and_score_the_same() {
        let sandbox = Sandbox::new(2).unwrap();
        let good = verified("good", RuleKind::Score, OnError::Zero, SandboxLimits::default(), constant_rule(r#"{"score":0.5,"applicable":true}"#));
        let scorer = RuleSetScorer::new(&sandbox, ruleset(vec![(good, 1.0)])).unwrap();
        let samples: Vec<_> = (0..10).map(|i| sample(&format!("s{i}"))).collect();
        let first = scorer.score_batch(&samples);
        assert!(scorer.rules[0].prepared.is_prepared(), "the first batch keeps the prepared state");
        let second = scorer.score_batch(&samples);
        for (a, b) in first.iter().zip(&second) {
            let (a, b) = (&a.rules[0].evaluation, &b.rules[0].evaluation);
            assert_eq!((a.outcome, &a.output, a.fuel_used), (b.outcome, &b.output, b.fuel_used));
        }
        let fresh = scorer.rules[0].evaluate(&samples[0]);
        assert_eq!(fresh.fuel_used, second[0].rules[0].evaluation.fuel_used);
    }

    #[test]
    fn the_prepare_document_carries_merged_params_and_memory() {
        let sandbox = Sandbox::new(1).unwrap();
        let mut rule = verified("r", RuleKind::Score, OnError::Zero, SandboxLimits::default(), constant_rule(r#"{"score":0,"applicable":true}"#));
        rule.manifest.params = serde_json::json!({"k": ["胸痛"]});
        let loaded = LoadedRule::new(&sandbox, &rule, 1.0, Some(&serde_json::json!({"extra": 1}))).unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&loaded.prepare_input).unwrap();
        assert_eq!(parsed["abi"], "medrl-rule/1");
        assert_eq!(parsed["params"], serde_json::json!({"k": ["胸痛"], "extra": 1}));
        assert_eq!(parsed["memory_pages"], 256);
    }

    #[test]
    fn a_rule_that_keeps_state_between_evaluations_scores_every_sample_afresh() {
        // A counter in a global: the n-th evaluation of an instance would return score n/10;
        // every evaluation starts from the prepared state, so each is the first.
        let counting = crate::reward::testutil::wat_rule_with(
            "(global.set $n (i32.add (global.get $n) (i32.const 1))) (i32.store8 (i32.const 27) (i32.add (i32.const 48) (global.get $n))) i64.const 68719476767",
            r#"{\"score\":0.1,\"applicable\":true}"#,
            "(global $n (mut i32) (i32.const 0))",
            "i64.const 0",
        );
        let rule = verified("counting", RuleKind::Score, OnError::Zero, SandboxLimits::default(), counting);
        let loaded = LoadedRule::new(&Sandbox::new(1).unwrap(), &rule, 1.0, None).unwrap();
        loaded.check_isolation(&[sample("a"), sample("b")]).unwrap();
        let encoded: Vec<Vec<u8>> = (0..5).map(|i| encode_sample(&sample(&format!("s{i}")))).collect();
        let evals = loaded.evaluate_many(&encoded.iter().map(Vec::as_slice).collect::<Vec<_>>());
        assert!(evals.iter().all(|e| e.output.as_ref().map(|o| o.score) == Some(0.1)), "{evals:?}");
        let honest =
            verified("honest", RuleKind::Score, OnError::Zero, SandboxLimits::default(), constant_rule(r#"{"score":0.5,"applicable":true}"#));
        let loaded = LoadedRule::new(&Sandbox::new(1).unwrap(), &honest, 1.0, None).unwrap();
        loaded.check_isolation(&[sample("a"), sample("b"), sample("c")]).unwrap();
    }
}
