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
