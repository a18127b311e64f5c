//! The evaluation report (`medrl.rules-eval/1`): per split, per rule, the figures against the
//! labels overall and by language, category and class, the disagreements with the rule's
//! explanation and hit codes, and how the aggregated reward orders the good-vs-hack pairs.
//! Built from rule results however they were computed (a scoring session for `rules eval`, one
//! rule alone for `rules test --labels`), so both commands count the same way.

use super::gate::GateResult;
use super::labels::{LabelFile, LabelledAnswer, Split, Verdict};
use super::metrics::{Figures, Judged, Order, PairFigures, RuleCall, Said, threshold};
use crate::eval::bootstrap::BootstrapConfig;
use medrl_sdk::Lang;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Format tag of the JSON report.
pub const REPORT_FORMAT: &str = "medrl.rules-eval/1";

/// The spelling of a language in labels and reports.
pub fn lang_str(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => "zh",
        Lang::En => "en",
    }
}

/// A rule as evaluated: identity and the threshold its binary answer uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluatedRule {
    pub id: String,
    pub version: String,
    pub kind: String,
    /// The rule says yes (credits, penalises) at score ≥ this.
    pub threshold: f64,
    /// `default` or `flag` (`--threshold RULE=X`).
    pub threshold_from: &'static str,
}

/// Rule results of one sample: one per evaluated rule, in their order, and the aggregated reward
/// (`None` when the sample was skipped or aborted, or when no rule set aggregated it).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSample {
    pub calls: Vec<RuleCall>,
    pub reward: Option<f64>,
}

/// The figures of one group (a language, a category, a class, a pair kind).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group<F> {
    /// `lang`, `category`, `class` or `kind`.
    pub by: &'static str,
    pub value: String,
    pub figures: F,
}

/// A labelled answer the rule disagrees with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    pub id: String,
    pub lang: String,
    pub category: String,
    pub class: String,
    pub label: Verdict,
    pub said: Said,
    /// The counted score, `n/a`, or the failure.
    pub result: String,
    pub hit_codes: Vec<String>,
    pub explanation: String,
    /// The label's `why`.
    pub why: String,
    /// `file:line` of the label.
    pub at: String,
}

/// One rule on one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleReport {
    pub rule: String,
    pub overall: Figures,
    /// By `lang`, then `category`, then `class`, each in name order.
    pub groups: Vec<Group<Figures>>,
    pub disagreements: Vec<Disagreement>,
}

/// One pair and how the reward orders it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairResult {
    pub id: String,
    pub kind: String,
    pub lang: String,
    pub good: Option<f64>,
    pub hack: Option<f64>,
    /// good − hack.
    pub difference: Option<f64>,
    pub order: Order,
    /// Each rule's result on the good and the hack answer (table cells).
    pub rules: Vec<PairRuleCells>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairRuleCells {
    pub rule: String,
    pub good: String,
    pub hack: String,
}

/// The pairs of one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairsReport {
    pub overall: PairFigures,
    /// By `kind`, then `lang`.
    pub groups: Vec<Group<PairFigures>>,
    pub pairs: Vec<PairResult>,
}

/// A label key that names no rule of the rule set: reported, not scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnmatchedLabel {
    pub key: String,
    pub answers: usize,
}

/// One split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitReport {
    pub name: String,
    pub files: Vec<LabelFile>,
    pub answers: usize,
    pub pairs: usize,
    /// The rules with labels in this split, in rule-set order.
    pub rules: Vec<RuleReport>,
    /// Rules of the rule set no answer of this split has a label for.
    pub unlabelled_rules: Vec<String>,
    /// "No rule for this label": keys the rule set has no rule for, skipped.
    pub no_rule_for_label: Vec<UnmatchedLabel>,
    /// `None` when the split has no pairs.
    pub pairs_report: Option<PairsReport>,
}

/// The rule set scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleSetInfo {
    pub reference: String,
    pub revision: u64,
    pub sha256: String,
    /// `name (key id)` of each trusted signer; `None` when scored unsigned (`--allow-unsigned`).
    pub signers: Option<Vec<String>>,
}

/// The whole report (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// [`REPORT_FORMAT`].
    pub format: &'static str,
    pub ruleset: RuleSetInfo,
    /// The labels path as given.
    pub labels: String,
    pub rules: Vec<EvaluatedRule>,
    /// Pairs count as ordered when good − hack ≥ this.
    pub margin: f64,
    pub bootstrap: BootstrapConfig,
    pub splits: Vec<SplitReport>,
    pub gates: Vec<GateResult>,
    pub gates_passed: bool,
}

impl EvalReport {
    pub fn split(&self, name: &str) -> Option<&SplitReport> {
        self.splits.iter().find(|s| s.name == name)
    }

    pub fn failed_gates(&self) -> impl Iterator<Item = &GateResult> {
        self.gates.iter().filter(|g| !g.passed)
    }
}

fn category_str(a: &LabelledAnswer) -> String {
    a.sample.category.as_str().to_string()
}

/// Rule `index` of `rules` on the answers of `split` that carry its label; `None` when none do.
pub fn rule_report(
    split: &Split,
    index: usize,
    rule: &EvaluatedRule,
    scored: &HashMap<String, ScoredSample>,
    config: &BootstrapConfig,
) -> Option<RuleReport> {
    let t = threshold(rule.threshold);
    let mut items: Vec<(&LabelledAnswer, &RuleCall, Judged)> = Vec::new();
    for a in &split.answers {
        let (Some(verdict), Some(s)) = (a.labels.get(&rule.id), scored.get(&a.id)) else { continue };
        let call = &s.calls[index];
        items.push((a, call, Judged::new(*verdict, call, &t)));
    }
    if items.is_empty() {
        return None;
    }
    let judged: Vec<Judged> = items.iter().map(|(_, _, j)| *j).collect();
    let mut groups = Vec::new();
    let keys: [GroupKey<LabelledAnswer>; 3] =
        [("lang", |a| lang_str(a.sample.lang).to_string()), ("category", category_str), ("class", |a| a.class.clone())];
    for (by, key) in keys {
        let mut parts: BTreeMap<String, Vec<Judged>> = BTreeMap::new();
        for (a, _, j) in &items {
            parts.entry(key(a)).or_default().push(*j);
        }
        groups.extend(parts.into_iter().map(|(value, js)| Group { by, value, figures: Figures::of(&js, config) }));
    }
    let disagreements = items
        .iter()
        .filter(|(_, _, j)| !j.agree)
        .map(|(a, call, j)| Disagreement {
            id: a.id.clone(),
            lang: lang_str(a.sample.lang).to_string(),
            category: category_str(a),
            class: a.class.clone(),
            label: j.verdict,
            said: j.said,
            result: call.cell(),
            hit_codes: call.hit_codes.clone(),
            explanation: call.explanation.clone(),
            why: a.why.clone(),
            at: a.origin.to_string(),
        })
        .collect();
    Some(RuleReport { rule: rule.id.clone(), overall: Figures::of(&judged, config), groups, disagreements })
}

/// The pairs of `split`, ordered by the aggregated reward of each side.
pub fn pairs_report(
    split: &Split,
    rules: &[EvaluatedRule],
    scored: &HashMap<String, ScoredSample>,
    margin: f64,
    config: &BootstrapConfig,
) -> Option<PairsReport> {
    if split.pairs.is_empty() {
        return None;
    }
    let pairs: Vec<PairResult> = split
        .pairs
        .iter()
        .map(|p| {
            let good = scored.get(&p.good_sample().id);
            let hack = scored.get(&p.hack_sample().id);
            let (g, h) = (good.and_then(|s| s.reward), hack.and_then(|s| s.reward));
            let cells = |s: Option<&ScoredSample>, i: usize| s.and_then(|s| s.calls.get(i)).map_or("–".to_string(), RuleCall::cell);
            PairResult {
                id: p.id.clone(),
                kind: p.kind.clone(),
                lang: lang_str(p.sample.lang).to_string(),
                good: g,
                hack: h,
                difference: g.zip(h).map(|(g, h)| g - h),
                order: Order::of(g, h, margin),
                rules: rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| PairRuleCells { rule: r.id.clone(), good: cells(good, i), hack: cells(hack, i) })
                    .collect(),
            }
        })
        .collect();
    let orders: Vec<Order> = pairs.iter().map(|p| p.order).collect();
    let mut groups = Vec::new();
    let keys: [GroupKey<PairResult>; 2] = [("kind", |p| p.kind.clone()), ("lang", |p| p.lang.clone())];
    for (by, key) in keys {
        let mut parts: BTreeMap<String, Vec<Order>> = BTreeMap::new();
        for p in &pairs {
            parts.entry(key(p)).or_default().push(p.order);
        }
        groups.extend(parts.into_iter().map(|(value, os)| Group { by, value, figures: PairFigures::of(&os, config) }));
    }
    Some(PairsReport { overall: PairFigures::of(&orders, config), groups, pairs })
}

/// The label keys of `split` that name none of `rules`, with how many answers carry each.
pub fn unmatched_labels(split: &Split, rules: &[EvaluatedRule]) -> Vec<UnmatchedLabel> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &split.answers {
        for key in a.labels.keys().filter(|k| !rules.iter().any(|r| &r.id == *k)) {
            *counts.entry(key).or_default() += 1;
        }
    }
    counts.into_iter().map(|(key, answers)| UnmatchedLabel { key: key.to_string(), answers }).collect()
}

/// Every report of one split.
pub fn split_report(
    split: &Split,
    rules: &[EvaluatedRule],
    scored: &HashMap<String, ScoredSample>,
    margin: f64,
    config: &BootstrapConfig,
) -> SplitReport {
    let reports: Vec<Option<RuleReport>> = rules.iter().enumerate().map(|(i, r)| rule_report(split, i, r, scored, config)).collect();
    SplitReport {
        name: split.name.clone(),
        files: split.files.clone(),
        answers: split.answers.len(),
        pairs: split.pairs.len(),
        unlabelled_rules: rules.iter().zip(&reports).filter(|(_, r)| r.is_none()).map(|(r, _)| r.id.clone()).collect(),
        rules: reports.into_iter().flatten().collect(),
        no_rule_for_label: unmatched_labels(split, rules),
        pairs_report: pairs_report(split, rules, scored, margin, config),
    }
}

/// A breakdown: its name in the report and how an item names its group.
type GroupKey<T> = (&'static str, fn(&T) -> String);
