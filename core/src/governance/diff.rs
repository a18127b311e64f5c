//! What changed between two rule-set versions: rules added and removed, and for rules in both,
//! version, kind, weight, module and effective-parameter changes (top-level keys); then the
//! aggregation, approvals and revision. Parameters are compared after merging the manifest's
//! defaults with the rule set's overrides, so a new rule version's changed defaults show too.

use super::inspect::{InspectedRule, Inspection};
use serde::Serialize;

/// One top-level parameter that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamChange {
    pub key: String,
    /// `None`: absent on that side.
    pub from: Option<serde_json::Value>,
    pub to: Option<serde_json::Value>,
}

/// A rule in both versions that changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleChange {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<(f64, f64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_sha256: Option<(String, String)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamChange>,
}

/// The difference from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleSetDiff {
    pub from: String,
    pub to: String,
    pub revision: (u64, u64),
    pub sha256: (String, String),
    /// `id@version` of rules only in `to`.
    pub added: Vec<String>,
    /// `id@version` of rules only in `from`.
    pub removed: Vec<String>,
    pub changed: Vec<RuleChange>,
    /// Aggregation changes in words (renormalisation, gates, clip).
    pub aggregation: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<(String, String)>,
    /// Approvals only in `to`, as `role: name (date)`.
    pub approvals_added: Vec<String>,
    pub approvals_removed: Vec<String>,
    /// Whether `to` names `from` as its previous revision.
    pub to_follows_from: bool,
}

impl RuleSetDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.aggregation.is_empty()
            && self.description.is_none()
            && self.approvals_added.is_empty()
            && self.approvals_removed.is_empty()
    }
}

pub fn diff(a: &Inspection, b: &Inspection) -> RuleSetDiff {
    let find = |set: &'_ Inspection, id: &str| set.rules.iter().find(|r| r.id == id).cloned();
    let added = b.rules.iter().filter(|r| find(a, &r.id).is_none()).map(|r| format!("{}@{}", r.id, r.version)).collect();
    let removed = a.rules.iter().filter(|r| find(b, &r.id).is_none()).map(|r| format!("{}@{}", r.id, r.version)).collect();
    let changed = a.rules.iter().filter_map(|ra| find(b, &ra.id).and_then(|rb| rule_change(ra, &rb))).collect();

    let mut aggregation = Vec::new();
    let (ga, gb) = (&a.aggregation, &b.aggregation);
    if ga.renormalize != gb.renormalize {
        aggregation.push(format!("renormalize: {:?} -> {:?}", ga.renormalize, gb.renormalize));
    }
    for g in &ga.gates {
        if !gb.gates.contains(g) {
            aggregation.push(format!("gate removed: {} >= {} caps at {}", g.rule, g.at_least, g.cap));
        }
    }
    for g in &gb.gates {
        if !ga.gates.contains(g) {
            aggregation.push(format!("gate added: {} >= {} caps at {}", g.rule, g.at_least, g.cap));
        }
    }
    if ga.clip != gb.clip {
        aggregation.push(format!("clip: [{}, {}] -> [{}, {}]", ga.clip[0], ga.clip[1], gb.clip[0], gb.clip[1]));
    }
    let words = |x: &crate::registry::ruleset::Approval| format!("{}: {} ({})", x.role, x.name, x.date);
    RuleSetDiff {
        from: a.reference.clone(),
        to: b.reference.clone(),
        revision: (a.revision, b.revision),
        sha256: (a.sha256.clone(), b.sha256.clone()),
        added,
        removed,
        changed,
        aggregation,
        description: (a.description != b.description).then(|| (a.description.clone(), b.description.clone())),
        approvals_added: b.approvals.iter().filter(|x| !a.approvals.contains(x)).map(words).collect(),
        approvals_removed: a.approvals.iter().filter(|x| !b.approvals.contains(x)).map(words).collect(),
        to_follows_from: b.previous.as_ref().is_some_and(|p| p.sha256 == a.sha256),
    }
}

fn rule_change(a: &InspectedRule, b: &InspectedRule) -> Option<RuleChange> {
    let pair = |x: &str, y: &str| (x != y).then(|| (x.to_string(), y.to_string()));
    let empty = serde_json::Map::new();
    let (pa, pb) = (a.params.as_object().unwrap_or(&empty), b.params.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = pa.keys().chain(pb.keys()).collect();
    keys.sort();
    keys.dedup();
    let params: Vec<ParamChange> = keys
        .into_iter()
        .filter(|k| pa.get(*k) != pb.get(*k))
        .map(|k| ParamChange { key: k.clone(), from: pa.get(k).cloned(), to: pb.get(k).cloned() })
        .collect();
    let change = RuleChange {
        id: a.id.clone(),
        version: pair(&a.version, &b.version),
        kind: pair(a.kind.as_str(), b.kind.as_str()),
        weight: (a.weight != b.weight).then_some((a.weight, b.weight)),
        module_sha256: pair(&a.module_sha256, &b.module_sha256),
        params,
    };
    let unchanged =
        change.version.is_none() && change.kind.is_none() && change.weight.is_none() && change.module_sha256.is_none() && change.params.is_empty();
    (!unchanged).then_some(change)
}
