//! Scoring: a verified rule set, compiled once, evaluates batches of samples on all cores and
//! aggregates each sample's reward.

use super::aggregate::{Contribution, Reward, aggregate};
use super::hash::{json_sha256, sha256_hex};
use super::manifest::RuleManifest;
use super::outcome::{Decision, Evaluation, decide};
use super::registry::{VerifiedRule, VerifiedRuleSet};
use super::sandbox::{CompiledRule, ModuleError, Sandbox};
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
    /// `{"abi":…,"params":<params>,"sample":` — the input's fixed head, serialised once.
    input_head: Vec<u8>,
}

impl LoadedRule {
    /// Compiles a verified rule with the given parameter overrides.
    pub fn new(sandbox: &Sandbox, rule: &VerifiedRule, weight: f64, overrides: Option<&serde_json::Value>) -> Result<Self, ModuleError> {
        let compiled = sandbox.compile(&rule.module, rule.manifest.limits)?;
        let params = merge_params(&rule.manifest.params, overrides);
        let input_head = format!(
            "{{\"abi\":\"{}\",\"params\":{},\"sample\":",
            medrl_sdk::ABI_VERSION,
            serde_json::to_string(&params).expect("a Value always serialises")
        )
        .into_bytes();
        Ok(LoadedRule {
            params_sha256: json_sha256(&params),
            module_sha256: rule.manifest.module.sha256.clone(),
            manifest: rule.manifest.clone(),
            manifest_sha256: rule.manifest_sha256.clone(),
            weight,
            params,
            compiled,
            input_head,
        })
    }

    /// The exact bytes passed to the module for this sample (audit records hash these).
    pub fn input_for(&self, sample_json: &[u8]) -> Vec<u8> {
        let mut input = Vec::with_capacity(self.input_head.len() + sample_json.len() + 1);
        input.extend_from_slice(&self.input_head);
        input.extend_from_slice(sample_json);
        input.push(b'}');
        input
    }

    /// Evaluates a sample already encoded as JSON.
    pub fn evaluate_encoded(&self, sample_json: &[u8]) -> Evaluation {
        self.compiled.evaluate(&self.input_for(sample_json), self.manifest.output_range)
    }

    pub fn evaluate(&self, sample: &Sample) -> Evaluation {
        self.evaluate_encoded(&encode_sample(sample))
    }

    /// Runs one golden vector through the sandbox: `Ok` or the mismatches in words.
    pub fn run_vector(&self, vector: &Vector) -> Result<(), String> {
        let params = merge_params(&self.params, vector.params.as_ref());
        let input = serde_json::to_vec(&serde_json::json!({
            "abi": medrl_sdk::ABI_VERSION, "sample": vector.sample, "params": params,
        }))
        .expect("a Value always serialises");
        let eval = self.compiled.evaluate(&input, self.manifest.output_range);
        match &eval.output {
            Some(out) => check(&vector.expect, out),
            None => Err(format!("{}: {}", eval.outcome.as_str(), eval.error.unwrap_or_default())),
        }
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
    pub rules: Vec<RuleResult>,
    pub reward: Reward,
}

/// A verified rule set, compiled.
pub struct RuleSetScorer {
    pub ruleset: VerifiedRuleSet,
    pub rules: Vec<LoadedRule>,
}

impl RuleSetScorer {
    pub fn new(sandbox: &Sandbox, ruleset: VerifiedRuleSet) -> Result<Self, ModuleError> {
        let rules = ruleset
            .manifest
            .rules
            .iter()
            .zip(&ruleset.rules)
            .map(|(entry, rule)| {
                let overrides = (!entry.params.is_empty()).then(|| serde_json::Value::Object(entry.params.clone()));
                LoadedRule::new(sandbox, rule, entry.weight, overrides.as_ref())
            })
            .collect::<Result<_, _>>()?;
        Ok(RuleSetScorer { ruleset, rules })
    }

    /// Scores a batch on the current rayon pool: every (sample, rule) pair is one task, so a
    /// slow rule or sample never idles the other cores, and a failing one never stops the rest.
    pub fn score_batch(&self, samples: &[Sample]) -> Vec<SampleScore> {
        let encoded: Vec<Vec<u8>> = samples.par_iter().map(encode_sample).collect();
        let n_rules = self.rules.len();
        let evaluations: Vec<Evaluation> = (0..samples.len() * n_rules)
            .into_par_iter()
            .map(|k| self.rules[k % n_rules].evaluate_encoded(&encoded[k / n_rules]))
            .collect();
        let mut evaluations = evaluations.into_iter();
        samples
            .iter()
            .zip(&encoded)
            .map(|(sample, json)| {
                let results: Vec<RuleResult> = self
                    .rules
                    .iter()
                    .map(|rule| {
                        let evaluation = evaluations.next().expect("one evaluation per (sample, rule)");
                        let decision = decide(&evaluation, rule.manifest.on_error, rule.manifest.worst_score());
                        RuleResult { rule: rule.manifest.reference(), evaluation, decision }
                    })
                    .collect();
                let parts: Vec<Contribution<'_>> = self
                    .rules
                    .iter()
                    .zip(&results)
                    .map(|(rule, r)| Contribution {
                        rule: &rule.manifest.id,
                        kind: rule.manifest.kind,
                        weight: rule.weight,
                        decision: r.decision,
                    })
                    .collect();
                let reward = aggregate(&self.ruleset.manifest.aggregation, &parts);
                SampleScore { sample_id: sample.id.clone(), sample_sha256: sha256_hex(json), rules: results, reward }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reward::limits::SandboxLimits;
    use crate::reward::manifest::RuleKind;
    use crate::reward::outcome::{OnError, OutcomeKind};
    use crate::reward::registry::VerifiedRuleSet;
    use crate::reward::ruleset::{Aggregation, RuleEntry, RuleSetManifest};
    use crate::reward::testutil::{constant_rule, sample, verified, wat_rule};

    fn ruleset(rules: Vec<(crate::reward::registry::VerifiedRule, f64)>) -> VerifiedRuleSet {
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
            aggregation: Aggregation { renormalize: Default::default(), gates: vec![], clip: [-1.0, 1.0] },
            files: vec![],
            previous: None,
            approvals: vec![],
        };
        VerifiedRuleSet { manifest, sha256: "x".into(), rules: rules.into_iter().map(|(r, _)| r).collect() }
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
    fn the_input_document_is_abi_params_then_sample() {
        let sandbox = Sandbox::new(1).unwrap();
        let mut rule = verified("r", RuleKind::Score, OnError::Zero, SandboxLimits::default(), constant_rule(r#"{"score":0,"applicable":true}"#));
        rule.manifest.params = serde_json::json!({"k": ["胸痛"]});
        let loaded = LoadedRule::new(&sandbox, &rule, 1.0, Some(&serde_json::json!({"extra": 1}))).unwrap();
        let input = loaded.input_for(&encode_sample(&sample("a")));
        let parsed: serde_json::Value = serde_json::from_slice(&input).unwrap();
        assert_eq!(parsed["abi"], "medrl-rule/1");
        assert_eq!(parsed["params"], serde_json::json!({"k": ["胸痛"], "extra": 1}));
        assert_eq!(parsed["sample"]["id"], "a");
    }
}
