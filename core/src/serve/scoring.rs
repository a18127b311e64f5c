//! Rule scores of an answer: the served answer becomes a rule [`Sample`] and is scored through
//! the same [`ScoringSession`] training and evaluation use (the rule set accepted under the
//! trust flags, every evaluation appended to the audit log), and the result becomes the
//! response's `medrl` extension: the rule set's `id@version`, each rule's score, hits with
//! their spans, explanation and decision, and the aggregated reward.

use crate::reward::{Decision, OutcomeKind, Reward, SampleScore, ScoringSession, SessionError};
use medrl_sdk::{Category, Expect, Hit, Lang, Risk, Sample};
use serde::{Deserialize, Serialize};

/// What a rule knows about a prompt besides its text, which a chat request does not carry:
/// the request's `medrl` field may give it; what it leaves out is inferred
/// ([`ScoringContext::sample`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringContext {
    /// `zh` or `en`; default: `zh` when the prompt has a CJK ideograph, else `en`.
    #[serde(default)]
    pub lang: Option<Lang>,
    /// Default `general`.
    #[serde(default)]
    pub category: Option<Category>,
    /// Default `high` for `emergency`, `medication` and `abuse` (as the data sets stratify), else `low`.
    #[serde(default)]
    pub risk: Option<Risk>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// What a good answer names (`emergency_signs`), as in the data sets.
    #[serde(default)]
    pub expect: Expect,
}

impl ScoringContext {
    /// The rule sample of `response` to `prompt` (the last user turn), with this context and
    /// the inferred defaults.
    pub fn sample(&self, id: &str, prompt: &str, response: &str) -> Sample {
        let category = self.category.unwrap_or(Category::General);
        let lang = self.lang.unwrap_or_else(|| if prompt.chars().any(is_cjk_ideograph) { Lang::Zh } else { Lang::En });
        let risk = self.risk.unwrap_or(match category {
            Category::Emergency | Category::Medication | Category::Abuse => Risk::High,
            _ => Risk::Low,
        });
        Sample {
            id: id.to_string(),
            prompt: prompt.to_string(),
            response: response.to_string(),
            lang,
            category,
            risk,
            tags: self.tags.clone(),
            expect: self.expect.clone(),
        }
    }
}

/// CJK Unified Ideographs and extension A: what the shipped Chinese prompts are written in.
fn is_cjk_ideograph(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}')
}

/// The rule set the server scores with, as the page and every response name it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleSetInfo {
    /// `name@version`.
    pub id: String,
    pub name: String,
    pub version: String,
    pub revision: u64,
    /// sha256 of the canonical `ruleset.json`.
    pub sha256: String,
    pub description: String,
    /// The trusted keys whose signatures verified, as `name (key id)`; null when the rule set is
    /// scored unsigned under `--allow-unsigned`.
    pub signed_by: Option<Vec<String>>,
}

/// One rule's verdict on one answer.
#[derive(Debug, Clone, Serialize)]
pub struct RuleLine {
    /// `id@version`.
    pub rule: String,
    pub id: String,
    /// `score`, `penalty` or `gate`.
    pub kind: &'static str,
    pub weight: f64,
    /// The sandbox outcome: `ok`, `trap`, `out_of_fuel`, `timeout`, …
    pub outcome: &'static str,
    pub applicable: bool,
    /// The rule's score when it applies and produced one.
    pub score: Option<f64>,
    /// What the aggregator did with it: `counted`, `not_applicable`, `skip_sample`, `abort`.
    pub decision: &'static str,
    /// The score the aggregator counted (the rule's, or its `on_error` substitute).
    pub counted_score: Option<f64>,
    /// Findings, with `[start, end)` byte spans into the answer text.
    pub hits: Vec<Hit>,
    pub explanation: String,
    /// Why the evaluation failed, when it did.
    pub error: Option<String>,
}

/// The `medrl` extension of a response: how the rule set judged the answer.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    pub ruleset: RuleSetInfo,
    /// The aggregated reward; null when a rule's failure left the sample without one.
    pub reward: Option<f64>,
    /// `scored`, `skipped` (a rule with `on_error = skip_sample` failed) or `aborted`.
    pub reward_status: &'static str,
    /// Gates that capped the reward, by rule id.
    pub gates_fired: Vec<String>,
    pub rules: Vec<RuleLine>,
    /// The rule sample's id and context (what the rules were told besides the texts).
    pub sample: SampleInfo,
    /// Where the evaluations went: the audit log and its record numbers.
    pub audit: AuditInfo,
}

#[derive(Debug, Clone, Serialize)]
pub struct SampleInfo {
    pub id: String,
    pub lang: Lang,
    pub category: Category,
    pub risk: Risk,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditInfo {
    pub log: String,
    pub first_record: u64,
    pub last_record: u64,
}

/// The server's scoring session and the description of its rule set.
pub struct AnswerScorer {
    session: ScoringSession,
    pub ruleset: RuleSetInfo,
}

impl AnswerScorer {
    /// Wraps an open session (the audit log attached: [`ScoringSession::open`]).
    pub fn new(session: ScoringSession) -> AnswerScorer {
        let m = &session.scorer.ruleset.manifest;
        let ruleset = RuleSetInfo {
            id: m.reference(),
            name: m.name.clone(),
            version: m.version.to_string(),
            revision: m.revision,
            sha256: session.scorer.ruleset.sha256.clone(),
            description: m.description.clone(),
            signed_by: session.accepted.signers.as_ref().map(|s| s.iter().map(|s| format!("{} ({})", s.name, s.key_id.0)).collect()),
        };
        AnswerScorer { session, ruleset }
    }

    /// What the operator should be told about the load (unsigned, rollback).
    pub fn notices(&self) -> Vec<String> {
        self.session.notices()
    }

    /// The audit log the evaluations go to.
    pub fn audit_log(&self) -> String {
        self.session.audit().map_or_else(String::new, |l| l.path().display().to_string())
    }

    /// Scores one answer and logs every evaluation. A rule whose `on_error` is `abort` does not
    /// fail the request: the answer is reported with `reward_status: "aborted"` and the failing
    /// rule's error (the audit log has the batch). Only a failure to write the audit log is an
    /// error: an answer is not reported as scored when its scores are not on record.
    pub fn score(&self, sample: &Sample) -> Result<RuleReport, SessionError> {
        let (score, appended) = match self.session.score(std::slice::from_ref(sample)) {
            Ok((mut scores, appended)) => (scores.remove(0), appended),
            Err(SessionError::Aborted { mut scores, appended, .. }) => (scores.remove(0), appended),
            Err(e) => return Err(e),
        };
        Ok(self.report(sample, &score, appended.first, appended.last))
    }

    fn report(&self, sample: &Sample, score: &SampleScore, first: u64, last: u64) -> RuleReport {
        let scorer = &self.session.scorer;
        let mut kinds: Vec<(String, &'static str, f64)> =
            scorer.rules.iter().map(|r| (r.manifest.id.clone(), r.manifest.kind.as_str(), r.weight)).collect();
        if let Some(j) = &scorer.judge {
            kinds.push((j.entry.id.clone(), "score", j.entry.weight));
        }
        let rules = score
            .rules
            .iter()
            .zip(kinds)
            .map(|(r, (id, kind, weight))| {
                let output = r.evaluation.output.as_ref().filter(|_| r.evaluation.outcome == OutcomeKind::Ok);
                let (decision, counted_score) = match r.decision {
                    Decision::Counted { score } => ("counted", Some(score)),
                    Decision::NotApplicable => ("not_applicable", None),
                    Decision::SkipSample => ("skip_sample", None),
                    Decision::Abort => ("abort", None),
                };
                RuleLine {
                    rule: r.rule.clone(),
                    id,
                    kind,
                    weight,
                    outcome: r.evaluation.outcome.as_str(),
                    applicable: output.is_some_and(|o| o.applicable),
                    score: output.filter(|o| o.applicable).map(|o| o.score),
                    decision,
                    counted_score,
                    hits: output.map(|o| o.hits.clone()).unwrap_or_default(),
                    explanation: output.map(|o| o.explanation.clone()).unwrap_or_default(),
                    error: r.evaluation.error.clone(),
                }
            })
            .collect();
        let (reward, reward_status, gates_fired) = match &score.reward {
            Reward::Scored { total, gates_fired } => (Some(*total), "scored", gates_fired.clone()),
            Reward::Skipped { .. } => (None, "skipped", Vec::new()),
            Reward::Aborted { .. } => (None, "aborted", Vec::new()),
        };
        RuleReport {
            ruleset: self.ruleset.clone(),
            reward,
            reward_status,
            gates_fired,
            rules,
            sample: SampleInfo { id: sample.id.clone(), lang: sample.lang, category: sample.category, risk: sample.risk },
            audit: AuditInfo { log: self.audit_log(), first_record: first, last_record: last },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::VersionRef;
    use std::path::Path;

    #[test]
    fn the_context_fills_what_a_chat_request_does_not_say() {
        let plain = ScoringContext::default().sample("c1", "Can I take ibuprofen with a cold?", "Yes.");
        assert_eq!((plain.lang, plain.category, plain.risk), (Lang::En, Category::General, Risk::Low));
        let zh = ScoringContext::default().sample("c2", "胸口痛，出冷汗，怎么办？", "");
        assert_eq!(zh.lang, Lang::Zh);
        let given: ScoringContext = serde_json::from_str(r#"{"category": "emergency", "expect": {"emergency_signs": ["chest pain"]}}"#).unwrap();
        let s = given.sample("c3", "My chest hurts", "Call 120.");
        assert_eq!((s.category, s.risk), (Category::Emergency, Risk::High));
        assert_eq!(s.expect.emergency_signs, vec!["chest pain".to_string()]);
        let err = serde_json::from_str::<ScoringContext>(r#"{"categroy": "emergency"}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `categroy`"), "{err}");
    }

    /// The shipped rule set, through a real session: the report carries each rule's verdict in
    /// rule-set order, the same total the session's scorer gives, and the audit records.
    #[test]
    fn an_answer_is_scored_by_the_shipped_rule_set_and_logged() {
        let dir = tempfile::tempdir().unwrap();
        let registry = crate::registry::Registry::integrity_only(Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"));
        let reference: VersionRef = "medical-safety@1.0.0".parse().unwrap();
        let session = ScoringSession::open(&registry, &reference, &dir.path().join("audit.jsonl"), 1).unwrap();
        let scorer = AnswerScorer::new(session);
        assert_eq!(scorer.ruleset.id, "medical-safety@1.0.0");
        assert!(scorer.ruleset.signed_by.is_none(), "integrity_only checks no signature");
        let ctx: ScoringContext = serde_json::from_str(r#"{"category": "emergency", "expect": {"emergency_signs": ["chest pain"]}}"#).unwrap();
        let sample = ctx.sample(
            "chatcmpl-test",
            "My father has chest pain and is sweating.",
            "Call emergency services now: chest pain with sweating can be a heart attack.",
        );
        let report = scorer.score(&sample).unwrap();
        let ids: Vec<&str> = report.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["chain", "emergency", "risk", "verbosity"]);
        let expected = scorer.session.scorer.score_batch(std::slice::from_ref(&sample)).remove(0).reward.total();
        assert_eq!(report.reward, expected);
        assert_eq!(report.reward_status, "scored");
        // The emergency rule applies (category emergency) and says so.
        let emergency = &report.rules[1];
        assert!(emergency.applicable && emergency.decision == "counted", "{emergency:?}");
        assert!(!emergency.explanation.is_empty());
        // Every span points inside the answer.
        for hit in report.rules.iter().flat_map(|r| &r.hits) {
            if let Some([a, b]) = hit.span {
                assert!(a <= b && (b as usize) <= sample.response.len(), "{hit:?}");
            }
        }
        // One load record, then four evaluations and one aggregate for this answer.
        assert_eq!((report.audit.first_record, report.audit.last_record), (2, 6));
    }
}
