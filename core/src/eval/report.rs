//! The evaluation report: `report.json` (every number) and `eval_report.md` (the same for a
//! reader: the gates and their verdict first, then per set a table of each variant's metrics with
//! their intervals and the paired differences, the figures, and the samples that changed most).

use super::Variant;
use super::bootstrap::{BootstrapConfig, Estimate};
use super::compare::{Changes, SampleChange, SetComparison};
use super::gate::{GateResult, Reference};
use super::metrics::Metric;
use serde::Serialize;
use std::path::PathBuf;

/// The interval method, in `report.json` beside its settings.
pub const INTERVAL_METHOD: &str = "percentile bootstrap over prompts; differences paired (prompts resampled jointly)";

/// Everything one evaluation found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ruleset: String,
    pub ruleset_sha256: String,
    pub model: PathBuf,
    pub variants: Vec<Variant>,
    /// The variant the others are compared with (the SFT model).
    pub baseline: String,
    /// The variant the gates are checked for (the RL model).
    pub candidate: String,
    pub interval_method: &'static str,
    pub bootstrap: BootstrapConfig,
    pub sets: Vec<SetReport>,
    pub gates: Vec<GateResult>,
    /// Whether every gate held (true without gates).
    pub gates_passed: bool,
    /// What to do when a gate failed: roll back to the baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
}

/// One prompt set's results.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    pub set: String,
    pub prompts: PathBuf,
    #[serde(flatten)]
    pub comparison: SetComparison,
    /// The figures, relative to the report's folder.
    pub plots: SetPlots,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetPlots {
    pub metrics: String,
    pub rewards: String,
}

impl Report {
    /// The point value of `metric` for `variant` on `set`.
    pub fn value(&self, set: &str, variant: &str, metric: Metric) -> Option<f64> {
        let s = self.sets.iter().find(|s| s.set == set)?;
        let v = s.comparison.variants.iter().find(|v| v.variant == variant)?;
        v.metrics.get(&metric).copied().flatten().map(|e| e.value)
    }

    pub fn failed_gates(&self) -> impl Iterator<Item = &GateResult> {
        self.gates.iter().filter(|g| !g.passed)
    }
}

/// How a variant is put together, in words.
pub fn describe(v: &Variant) -> String {
    let merged: Vec<String> = v.merged.iter().map(|p| format!("`{}`", p.display())).collect();
    match (&v.adapter, merged.is_empty()) {
        (Some(a), true) => format!("adapter `{}`", a.display()),
        (Some(a), false) => format!("adapter `{}` over merged {}", a.display(), merged.join(", ")),
        (None, false) => format!("merged {}, no adapter on top", merged.join(", ")),
        (None, true) => "the base model alone".to_string(),
    }
}

/// The rollback instruction for failed gates.
pub fn rollback_message(baseline: &Variant, candidate: &str, failed: usize) -> String {
    format!(
        "{failed} regression gate(s) failed: roll back to the baseline (SFT) adapter `{}` ({}) and do not ship `{candidate}`",
        baseline.name,
        describe(baseline)
    )
}

fn num(x: f64) -> String {
    format!("{x:.3}")
}

fn signed(x: f64) -> String {
    // −0.000 reads as a change; print an exact or rounded zero unsigned.
    if x.abs() < 0.0005 { "0.000".into() } else { format!("{x:+.3}") }
}

/// How a number is written in a table cell.
type Format = fn(f64) -> String;

fn cell(e: Option<Estimate>, show: Format) -> String {
    e.map_or("–".into(), |e| format!("{} [{}, {}]", show(e.value), show(e.lo), show(e.hi)))
}

/// Text for a table cell or a one-line quote: no pipes, no line breaks, at most `max` characters.
fn inline(text: &str, max: usize) -> String {
    let flat: String = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
    let mut out: String = flat.chars().take(max).collect();
    if flat.chars().count() > max {
        out.push('…');
    }
    out.replace('|', "\\|")
}

fn gate_section(r: &Report, out: &mut String) {
    if r.gates.is_empty() {
        return;
    }
    out.push_str(&format!(
        "\n## Regression gates (candidate `{}`)\n\n| gate | candidate | reference | threshold | result |\n|---|---|---|---|---|\n",
        r.candidate
    ));
    for g in &r.gates {
        let reference = match (&g.reference, g.reference_value) {
            (Reference::Variant(v), Some(x)) => format!("`{v}` {}", num(x)),
            (Reference::Variant(v), None) => format!("`{v}` –"),
            (Reference::Number(x), _) => num(*x),
        };
        let result = match (&g.reason, g.passed) {
            (_, true) => "pass".to_string(),
            (Some(why), false) => format!("**FAIL** ({why})"),
            (None, false) => "**FAIL**".to_string(),
        };
        out.push_str(&format!(
            "| `{}` | `{}` {} | {reference} | {} {} | {result} |\n",
            g.expression,
            g.candidate,
            g.candidate_value.map_or("–".into(), num),
            g.op.symbol(),
            g.threshold.map_or("–".into(), num)
        ));
    }
    match &r.rollback {
        Some(message) => out.push_str(&format!("\n**{message}.**\n")),
        None => out.push_str("\nAll gates passed.\n"),
    }
}

fn change_section(title: &str, changes: &[SampleChange], c: &Changes, out: &mut String) {
    out.push_str(&format!("\n### {title}: `{}` against `{}`\n", c.variant, c.baseline));
    if changes.is_empty() {
        out.push_str(&format!("\nNo sample {}.\n", if title.contains("improved") { "improved" } else { "regressed" }));
        return;
    }
    for s in changes {
        out.push_str(&format!(
            "\n#### `{}` (`{}`): reward {} → {} ({})\n\n> {}\n\n| rule | `{}` | `{}` |\n|---|---|---|\n",
            s.id,
            s.category,
            num(s.baseline.reward),
            num(s.variant.reward),
            signed(s.reward_difference),
            inline(&s.prompt, 300),
            c.baseline,
            c.variant
        ));
        for (b, v) in s.baseline.rules.iter().zip(&s.variant.rules) {
            let verdict = |n: &super::compare::RuleNote| format!("{}: {}", n.score.map_or("n/a".into(), num), inline(&n.explanation, 240));
            out.push_str(&format!("| {} | {} | {} |\n", b.rule, verdict(b), verdict(v)));
        }
        out.push_str(&format!("| answer | {} | {} |\n", inline(&s.baseline.response, 400), inline(&s.variant.response, 400)));
    }
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut out =
        format!("# Evaluation report\n\nRule set `{}` (sha256 `{}`), model `{}`.\n\nVariants:\n\n", r.ruleset, r.ruleset_sha256, r.model.display());
    for v in &r.variants {
        let role = if v.name == r.baseline {
            " (baseline)"
        } else if v.name == r.candidate {
            " (candidate)"
        } else {
            ""
        };
        out.push_str(&format!("- `{}`{role}: {}\n", v.name, describe(v)));
    }
    out.push_str(&format!(
        "\nIntervals: {:.0} % {INTERVAL_METHOD}, {} resamples, seed {}. A difference is variant − `{}` on the same prompts.\n",
        r.bootstrap.confidence * 100.0,
        r.bootstrap.resamples,
        r.bootstrap.seed,
        r.baseline
    ));
    gate_section(r, &mut out);
    for s in &r.sets {
        let c = &s.comparison;
        out.push_str(&format!("\n## {} ({} prompts, `{}`)\n\n", s.set, c.n, s.prompts.display()));
        out.push_str(&format!("![{0}: metrics with intervals]({1})\n![{0}: reward distributions]({2})\n\n", s.set, s.plots.metrics, s.plots.rewards));
        let names: Vec<&str> = c.variants.iter().map(|v| v.variant.as_str()).collect();
        out.push_str(&format!("| metric | {} |", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" | ")));
        for d in &c.differences {
            out.push_str(&format!(" `{}` − `{}` |", d.variant, d.baseline));
        }
        out.push_str(&format!("\n|---|{}\n", "---|".repeat(names.len() + c.differences.len())));
        let shown: Vec<Metric> = Metric::ALL.into_iter().filter(|m| c.variants.first().is_some_and(|v| v.metrics.contains_key(m))).collect();
        for m in &shown {
            // Lengths are token counts: one decimal; the rest are shares and scores: three.
            let (show, diff): (Format, Format) = if *m == Metric::MeanLength {
                (|x| format!("{x:.1}"), |x| if x.abs() < 0.05 { "0.0".into() } else { format!("{x:+.1}") })
            } else {
                (num, signed)
            };
            let cells: Vec<String> = c.variants.iter().map(|v| cell(v.metrics[m], show)).collect();
            out.push_str(&format!("| {} | {} |", m.label(), cells.join(" | ")));
            for d in &c.differences {
                out.push_str(&format!(" {} |", cell(d.metrics[m], diff)));
            }
            out.push('\n');
        }
        if let Some(v) = c.variants.first() {
            let counted = |m: Metric| v.counted.get(&m).copied();
            if let Some(k) = counted(Metric::EmergencyCoverage) {
                out.push_str(&format!("\nEmergency coverage is over the {k} prompt(s) the emergency rule applied to"));
                if let Some(k) = counted(Metric::MeanReward) {
                    out.push_str(&format!("; mean reward over the {k} answer(s) of `{}` with a reward", v.variant));
                }
                out.push_str(".\n");
            }
        }
        for ch in &c.changes {
            change_section("Most improved", &ch.improved, ch, &mut out);
            change_section("Most regressed", &ch.regressed, ch, &mut out);
        }
    }
    out
}

/// The report's structure with its numbers, paths, ids and texts masked: what a golden file
/// pins. Headings and table rows keep their labels; within a `###` section the blocks of the
/// second and later changed samples are left out, so a different count of changed samples
/// (one or more) does not change the structure.
pub fn markdown_structure(md: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut samples_in_section = 0;
    let mut skipping = false;
    let lines: Vec<&str> = md.lines().collect();
    for (i, line) in lines.iter().copied().enumerate() {
        if line.starts_with("## ") || line.starts_with("### ") {
            samples_in_section = 0;
            skipping = false;
        } else if line.starts_with("#### ") {
            samples_in_section += 1;
            skipping = samples_in_section > 1;
        }
        if skipping {
            continue;
        }
        let masked = if line.starts_with('>') {
            "> …".to_string()
        } else if lines.get(i + 1).is_some_and(|next| next.starts_with("|---")) {
            // A header row: its labels are structure.
            mask(line)
        } else if let Some(rest) = line.strip_prefix("| ") {
            // A data row: keep the first cell (the row label), mask the values.
            let label = rest.split(" | ").next().unwrap_or("");
            let cells = rest.matches(" | ").count();
            format!("| {} |{}", mask(label), " … |".repeat(cells))
        } else {
            mask(line)
        };
        if out.last() != Some(&masked) {
            out.push(masked);
        }
    }
    out.join("\n") + "\n"
}

/// Masks numbers (`N`) and backticked names (`` `…` ``) in one line; digits inside a word
/// (`sha256`) stay.
fn mask(line: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c == '`' {
            while i < chars.len() && chars[i] != '`' {
                i += 1;
            }
            i += 1;
            out.push_str("`…`");
        } else if c.is_ascii_digit() && !(i >= 2 && chars[i - 2].is_ascii_alphanumeric()) {
            // A fraction's point belongs to the number; a sentence's full stop does not.
            while i < chars.len() && (chars[i].is_ascii_digit() || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))) {
                i += 1;
            }
            // A sign belongs to the number.
            if out.ends_with('+') || out.ends_with('-') || out.ends_with('−') {
                out.pop();
            }
            out.push('N');
        } else {
            out.push(c);
        }
    }
    out
}

/// The JSON's structure: every key path with the type(s) of its value, the elements of an array
/// merged under `[]` (a path that is a number in one element and null in another reads
/// `null|number`). What a golden file pins of `report.json`.
pub fn json_structure(v: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, path: String, out: &mut Vec<(String, std::collections::BTreeSet<&'static str>)>) {
        use serde_json::Value;
        let kind = match v {
            Value::Object(_) => "object",
            Value::Array(_) => "array",
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
        };
        match out.iter_mut().find(|(p, _)| *p == path) {
            Some((_, kinds)) => {
                kinds.insert(kind);
            }
            None => out.push((path.clone(), [kind].into())),
        }
        match v {
            Value::Object(map) => map.iter().for_each(|(k, x)| walk(x, format!("{path}.{k}"), out)),
            Value::Array(xs) => xs.iter().for_each(|x| walk(x, format!("{path}[]"), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "$".into(), &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.iter().map(|(p, kinds)| format!("{p}: {}\n", kinds.iter().copied().collect::<Vec<_>>().join("|"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_words_and_hides_numbers_and_names() {
        assert_eq!(mask("## gold (12 prompts, `data/sets/gold.jsonl`)"), "## gold (N prompts, `…`)");
        assert_eq!(mask("reward 0.120 → 0.640 (+0.520)"), "reward N → N (N)");
        assert_eq!(mask("sha256 `ab`, seed 0. Then"), "sha256 `…`, seed N. Then");
        let md = "| metric | `sft` | `rl` |\n|---|---|---|\n| chain coverage ↑ | 0.5 [0.4, 0.6] | 0.7 [0.6, 0.8] |\n> 胸口痛\n| chain | 1 | 2 |\n| risk | 1 | 2 |\n";
        assert_eq!(
            markdown_structure(md),
            "| metric | `…` | `…` |\n|---|---|---|\n| chain coverage ↑ | … | … |\n> …\n| chain | … | … |\n| risk | … | … |\n"
        );
        let repeated = "### Most improved\n#### `a` (`emergency`): reward 0.1 → 0.2 (+0.1)\n> x\n#### `b` (`medication`): reward 0.3 → 0.5 (+0.2)\n> y\n### Most regressed\n#### `c` (`general`): reward 0.3 → 0.1 (-0.2)\n";
        assert_eq!(
            markdown_structure(repeated),
            "### Most improved\n#### `…` (`…`): reward N → N (N)\n> …\n### Most regressed\n#### `…` (`…`): reward N → N (N)\n"
        );
    }

    #[test]
    fn json_structure_lists_key_paths_and_types() {
        let v = serde_json::json!({"a": 1, "b": [{"c": null, "d": "x"}, {"c": 2}], "e": []});
        assert_eq!(json_structure(&v), "$: object\n$.a: number\n$.b: array\n$.b[]: object\n$.b[].c: null|number\n$.b[].d: string\n$.e: array\n");
    }
}
