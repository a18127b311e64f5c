//! What changed between two rule-set versions: rules added and removed, and for rules in both,
//! version, kind, weight, module and effective-parameter changes (top-level keys, and inside a
//! nested parameter entry by entry: [`value_changes`]); then the
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
    /// Inside a parameter present on both sides: what changed, entry by entry
    /// ([`value_changes`]); empty when the parameter was added or removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ValueChange>,
}

/// One change inside a nested parameter, at `path` below it: `drugs[id=ibuprofen].max_daily_mg`
/// (an entry of a list of objects keyed by `id`, `name` or `drug`), `sections[2]` (a list
/// compared by position), `brands_zh[]` (a list of plain values compared as a multiset).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueChange {
    pub path: String,
    #[serde(flatten)]
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Added {
        value: serde_json::Value,
    },
    Removed {
        value: serde_json::Value,
    },
    Changed {
        from: serde_json::Value,
        to: serde_json::Value,
    },
    /// The same values in another order.
    Reordered,
}

impl ValueChange {
    /// One line: `+ path: value`, `- path: value`, `~ path: from -> to`, `~ path: order changed`
    /// (values as compact JSON, clipped to `width` characters).
    pub fn line(&self, width: usize) -> String {
        let v = |x: &serde_json::Value| clip(&x.to_string(), width);
        match &self.change {
            Change::Added { value } => format!("+ {}: {}", self.path, v(value)),
            Change::Removed { value } => format!("- {}: {}", self.path, v(value)),
            Change::Changed { from, to } => format!("~ {}: {} -> {}", self.path, v(from), v(to)),
            Change::Reordered => format!("~ {}: order changed", self.path),
        }
    }
}

fn clip(text: &str, n: usize) -> String {
    if text.chars().count() <= n { text.to_string() } else { text.chars().take(n - 1).collect::<String>() + "…" }
}

/// The fields that identify the entries of a list of objects, tried in this order: the first
/// that every entry has, as a string or number, with no two entries sharing it.
pub const ENTRY_KEYS: [&str; 3] = ["id", "name", "drug"];

/// The field that keys `items`' entries (see [`ENTRY_KEYS`]), when there is one.
pub fn entry_key(items: &[serde_json::Value]) -> Option<&'static str> {
    if items.is_empty() || !items.iter().all(serde_json::Value::is_object) {
        return None;
    }
    ENTRY_KEYS.into_iter().find(|key| {
        let ids: Option<Vec<String>> = items.iter().map(|v| v.get(*key).filter(|x| x.is_string() || x.is_number()).map(key_text)).collect();
        ids.is_some_and(|ids| {
            let mut sorted = ids.clone();
            sorted.sort();
            sorted.dedup();
            sorted.len() == ids.len()
        })
    })
}

/// An entry key as written in a path: a string without its quotes, a number as is.
pub fn key_text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// What changed from `from` to `to`, below `path`: objects key by key, lists of keyed objects
/// entry by entry (added, removed, changed inside), lists of plain values as multisets (each
/// value added or removed, or "order changed"), other lists by position; anything else, or a
/// change of type, as one change of the whole value.
pub fn value_changes(path: &str, from: &serde_json::Value, to: &serde_json::Value) -> Vec<ValueChange> {
    use serde_json::Value;
    let mut out = Vec::new();
    let at = |p: String, change: Change| ValueChange { path: p, change };
    if from == to {
        return out;
    }
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => out.extend(value_changes(&p, x, y)),
                    (None, Some(y)) => out.push(at(p, Change::Added { value: y.clone() })),
                    (Some(x), None) => out.push(at(p, Change::Removed { value: x.clone() })),
                    (None, None) => unreachable!("a key of one side"),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            let key = entry_key(a).filter(|k| b.is_empty() || entry_key(b) == Some(*k)).or_else(|| entry_key(b).filter(|_| a.is_empty()));
            if let Some(key) = key {
                let id = |v: &Value| key_text(&v[key]);
                let entry = |v: &Value| format!("{path}[{key}={}]", id(v));
                for x in a {
                    match b.iter().find(|y| id(y) == id(x)) {
                        Some(y) => out.extend(value_changes(&entry(x), x, y)),
                        None => out.push(at(entry(x), Change::Removed { value: x.clone() })),
                    }
                }
                for y in b.iter().filter(|y| !a.iter().any(|x| id(x) == id(y))) {
                    out.push(at(entry(y), Change::Added { value: y.clone() }));
                }
                let order =
                    |list: &[Value], other: &[Value]| -> Vec<String> { list.iter().map(id).filter(|i| other.iter().any(|v| id(v) == *i)).collect() };
                if order(a, b) != order(b, a) {
                    out.push(at(path.to_string(), Change::Reordered));
                }
            } else if a.iter().chain(b).all(|v| !v.is_object() && !v.is_array()) {
                // Plain values: a multiset difference, each value once per occurrence.
                let mut rest: Vec<&Value> = b.iter().collect();
                let mut removed = Vec::new();
                for x in a {
                    match rest.iter().position(|y| *y == x) {
                        Some(i) => {
                            rest.remove(i);
                        }
                        None => removed.push(x),
                    }
                }
                let list = format!("{path}[]");
                out.extend(removed.into_iter().map(|x| at(list.clone(), Change::Removed { value: x.clone() })));
                out.extend(rest.into_iter().map(|y| at(list.clone(), Change::Added { value: y.clone() })));
                if out.is_empty() {
                    out.push(at(path.to_string(), Change::Reordered));
                }
            } else {
                for i in 0..a.len().max(b.len()) {
                    let p = format!("{path}[{i}]");
                    match (a.get(i), b.get(i)) {
                        (Some(x), Some(y)) => out.extend(value_changes(&p, x, y)),
                        (None, Some(y)) => out.push(at(p, Change::Added { value: y.clone() })),
                        (Some(x), None) => out.push(at(p, Change::Removed { value: x.clone() })),
                        (None, None) => unreachable!("an index of one side"),
                    }
                }
            }
        }
        _ => out.push(at(path.to_string(), Change::Changed { from: from.clone(), to: to.clone() })),
    }
    out
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
        .map(|k| ParamChange {
            key: k.clone(),
            from: pa.get(k).cloned(),
            to: pb.get(k).cloned(),
            changes: match (pa.get(k), pb.get(k)) {
                (Some(x), Some(y)) if x.is_object() || x.is_array() => value_changes(k, x, y),
                _ => Vec::new(),
            },
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(key: &str, from: serde_json::Value, to: serde_json::Value) -> Vec<String> {
        value_changes(key, &from, &to).iter().map(|c| c.line(100)).collect()
    }

    #[test]
    fn a_formulary_change_reads_as_the_entries_it_touches() {
        let from = json!({
            "schema": "medrl-formulary/1",
            "drugs": [
                {"id": "paracetamol", "max_daily_mg": 4000, "brands_zh": ["泰诺林"]},
                {"id": "ibuprofen", "max_daily_mg": 3200, "brands_en": ["Advil"]},
                {"id": "codeine", "max_daily_mg": 240}
            ],
            "sources": [{"id": "bnf", "title": "BNF"}]
        });
        let to = json!({
            "schema": "medrl-formulary/1",
            "drugs": [
                {"id": "paracetamol", "max_daily_mg": 4000, "brands_zh": ["泰诺林", "必理痛"]},
                {"id": "ibuprofen", "max_daily_mg": 2400, "brands_en": ["Advil"]},
                {"id": "naproxen", "max_daily_mg": 1250}
            ],
            "sources": [{"id": "bnf", "title": "BNF"}, {"id": "fda-label", "title": "FDA"}]
        });
        assert_eq!(
            lines("formulary", from, to),
            [
                "+ formulary.drugs[id=paracetamol].brands_zh[]: \"必理痛\"",
                "~ formulary.drugs[id=ibuprofen].max_daily_mg: 3200 -> 2400",
                "- formulary.drugs[id=codeine]: {\"id\":\"codeine\",\"max_daily_mg\":240}",
                "+ formulary.drugs[id=naproxen]: {\"id\":\"naproxen\",\"max_daily_mg\":1250}",
                "+ formulary.sources[id=fda-label]: {\"id\":\"fda-label\",\"title\":\"FDA\"}",
            ]
        );
    }

    #[test]
    fn lists_without_ids_by_position_plain_lists_as_multisets_and_order() {
        // chain's `sections`: objects without a key field, compared by position.
        let from = json!([{"en": ["Assessment:"], "zh": ["【分析】"]}, {"en": ["Advice:"]}]);
        let to = json!([{"en": ["Assessment:", "## Assessment"], "zh": ["【分析】"]}, {"en": ["Advice:"]}, {"en": ["When to seek care:"]}]);
        assert_eq!(lines("sections", from, to), ["+ sections[0].en[]: \"## Assessment\"", "+ sections[2]: {\"en\":[\"When to seek care:\"]}"]);
        // A repeated phrase removed once, another added; the same values reordered.
        assert_eq!(lines("p", json!(["a", "b", "a"]), json!(["a", "b", "c"])), ["- p[]: \"a\"", "+ p[]: \"c\""]);
        assert_eq!(lines("p", json!(["a", "b"]), json!(["b", "a"])), ["~ p: order changed"]);
        assert_eq!(lines("d", json!([{"id": "a"}, {"id": "b"}]), json!([{"id": "b"}, {"id": "a"}])), ["~ d: order changed"]);
        // risk@1.0.0's max_daily_dose is keyed by `drug`, controlled_classes by `name`.
        let dose =
            |max: f64| json!([{"drug": "ibuprofen", "max_per_day": max, "unit": "mg"}, {"drug": "aspirin", "max_per_day": 4000.0, "unit": "mg"}]);
        assert_eq!(lines("max_daily_dose", dose(3200.0), dose(2400.0)), ["~ max_daily_dose[drug=ibuprofen].max_per_day: 3200.0 -> 2400.0"]);
        // A change of type, and nothing for equal values.
        assert_eq!(lines("w", json!({"x": 1}), json!({"x": "1"})), ["~ w.x: 1 -> \"1\""]);
        assert!(lines("w", json!({"x": [1, 2]}), json!({"x": [1, 2]})).is_empty());
        // Duplicate ids are no key: compared by position instead.
        assert_eq!(entry_key(&[json!({"id": 1}), json!({"id": 1})]), None);
        assert_eq!(entry_key(&[json!({"id": 1, "name": "a"}), json!({"id": 2, "name": "a"})]), Some("id"));
    }
}
