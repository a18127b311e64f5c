//! The Markdown rendering of an evaluation report: the summary (each split side by side), the
//! gates, then per split each rule's figures, groups and disagreements, and the pairs.

use super::metrics::{Figures, PairFigures};
use super::report::{EvalReport, Group, RuleReport, SplitReport};
use crate::eval::bootstrap::Estimate;
use std::fmt::Write;

/// `0.950 [0.920, 0.980]`, or `–` when undefined.
fn estimate(e: Option<Estimate>) -> String {
    e.map_or("–".into(), |e| format!("{:.3} [{:.3}, {:.3}]", e.value, e.lo, e.hi))
}

/// `211/222 = 0.950 [0.920, 0.980]`.
fn counted(num: usize, den: usize, e: Option<Estimate>) -> String {
    if den == 0 { "–".into() } else { format!("{num}/{den} = {}", estimate(e)) }
}

/// A table cell: no pipes, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn precision(f: &Figures) -> String {
    counted(f.confusion.tp, f.confusion.tp + f.confusion.fp, f.precision)
}

fn recall(f: &Figures) -> String {
    counted(f.confusion.tp, f.confusion.tp + f.confusion.fn_, f.recall)
}

fn specificity(f: &Figures) -> String {
    counted(f.confusion.tn, f.confusion.tn + f.confusion.fp, f.specificity)
}

fn ordered(f: &PairFigures) -> String {
    counted(f.ordered, f.n, f.ordered_share)
}

/// The whole report.
pub fn render(r: &EvalReport) -> String {
    let mut md = render_summary(r);
    for s in &r.splits {
        split(&mut md, r, s);
    }
    md
}

/// The head of the report: what was scored against what, the summary table (splits side by
/// side) and the gates; what `medrl rules eval` prints.
pub fn render_summary(r: &EvalReport) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# Rule evaluation: {}", r.ruleset.reference);
    let _ = writeln!(w);
    let signed = match &r.ruleset.signers {
        Some(s) if !s.is_empty() => format!("signed by {}", s.join(", ")),
        Some(_) => "no keyring signatures required".into(),
        None => "scored UNSIGNED (--allow-unsigned)".into(),
    };
    let _ = writeln!(w, "- rule set: `{}`, revision {}, sha256 `{}`; {signed}", r.ruleset.reference, r.ruleset.revision, r.ruleset.sha256);
    let splits: Vec<String> =
        r.splits.iter().map(|s| format!("{}: {} answers, {} pairs ({} files)", s.name, s.answers, s.pairs, s.files.len())).collect();
    let _ = writeln!(w, "- labels: `{}`; {}", r.labels, splits.join("; "));
    let thresholds: Vec<String> =
        r.rules.iter().map(|x| format!("{} ≥ {}{}", x.id, x.threshold, if x.threshold_from == "flag" { " (--threshold)" } else { "" })).collect();
    let _ = writeln!(w, "- a rule says yes (a score rule credits, a penalty rule penalises) at score ≥ its threshold: {}", thresholds.join(", "));
    let _ = writeln!(w, "- a pair is ordered when the aggregated reward of the good answer exceeds the hack's by ≥ {}", r.margin);
    let _ = writeln!(
        w,
        "- intervals: {} % percentile bootstrap over the answers (pairs) of each row, {} resamples, seed {}",
        r.bootstrap.confidence * 100.0,
        r.bootstrap.resamples,
        r.bootstrap.seed
    );
    let _ = writeln!(w);

    summary(w, r);
    if !r.gates.is_empty() {
        let _ = writeln!(w, "## Gates: {}", if r.gates_passed { "all passed" } else { "FAILED" });
        let _ = writeln!(w);
        let _ = writeln!(w, "| gate | split | value | |");
        let _ = writeln!(w, "|---|---|---|---|");
        for g in &r.gates {
            let value = g.value.map_or("undefined".into(), |v| format!("{v:.4}"));
            let verdict = if g.passed { "passed".to_string() } else { format!("FAILED: {}", g.reason.clone().unwrap_or_default()) };
            let _ = writeln!(w, "| `{}` | {} | {value} | {} |", g.expression, g.split, cell(&verdict));
        }
        let _ = writeln!(w);
    }
    md
}

fn summary(w: &mut String, r: &EvalReport) {
    let _ = writeln!(w, "## Summary");
    let _ = writeln!(w);
    let names: Vec<&str> = r.splits.iter().map(|s| s.name.as_str()).collect();
    let _ = writeln!(w, "| rule | figure | {} |", names.join(" | "));
    let _ = writeln!(w, "|---|---|{}", "---|".repeat(names.len()));
    for rule in &r.rules {
        let per_split: Vec<Option<&RuleReport>> = r.splits.iter().map(|s| s.rules.iter().find(|x| x.rule == rule.id)).collect();
        if per_split.iter().all(Option::is_none) {
            continue;
        }
        let row = |name: &str, f: &dyn Fn(&Figures) -> String| {
            let cells: Vec<String> = per_split.iter().map(|x| x.map_or("no labels".into(), |x| f(&x.overall))).collect();
            format!("| {} | {name} | {} |", rule.id, cells.join(" | "))
        };
        let _ = writeln!(w, "{}", row("agreement", &|f| counted(f.agreed, f.n, f.agreement)));
        if rule.kind == "penalty" {
            let _ = writeln!(w, "{}", row("precision", &precision));
            let _ = writeln!(w, "{}", row("recall", &recall));
            let _ = writeln!(w, "{}", row("F1", &|f| estimate(f.f1)));
            let _ = writeln!(w, "{}", row("specificity", &specificity));
        }
    }
    if r.splits.iter().any(|s| s.pairs_report.is_some()) {
        let cells: Vec<String> = r.splits.iter().map(|s| s.pairs_report.as_ref().map_or("no pairs".into(), |p| ordered(&p.overall))).collect();
        let _ = writeln!(w, "| pairs | ordered by ≥ {} | {} |", r.margin, cells.join(" | "));
        let cells: Vec<String> = r
            .splits
            .iter()
            .map(|s| {
                s.pairs_report
                    .as_ref()
                    .map_or("–".into(), |p| format!("{} / {} / {}", p.overall.narrow, p.overall.tied, p.overall.reversed + p.overall.unscored))
            })
            .collect();
        let _ = writeln!(w, "| pairs | narrow / tied / reversed or unscored | {} |", cells.join(" | "));
    }
    let _ = writeln!(w);
    for s in &r.splits {
        if !s.no_rule_for_label.is_empty() {
            let keys: Vec<String> = s.no_rule_for_label.iter().map(|u| format!("`{}` ({} answers)", u.key, u.answers)).collect();
            let _ = writeln!(w, "No rule for this label in {}, skipped ({}): {}.", r.ruleset.reference, s.name, keys.join(", "));
        }
        if !s.unlabelled_rules.is_empty() {
            let _ = writeln!(w, "Rules without labels ({}): {}.", s.name, s.unlabelled_rules.join(", "));
        }
    }
    let _ = writeln!(w);
}

fn split(w: &mut String, r: &EvalReport, s: &SplitReport) {
    let _ = writeln!(w, "## {}", s.name);
    let _ = writeln!(w);
    let files: Vec<String> =
        s.files.iter().map(|f| format!("`{}` ({} records, sha256 `{}`)", f.path.display(), f.records, &f.sha256[..16])).collect();
    let _ = writeln!(w, "Files: {}.", files.join(", "));
    let _ = writeln!(w);
    for rule in &s.rules {
        let Some(info) = r.rules.iter().find(|x| x.id == rule.rule) else { continue };
        let verb = if info.kind == "penalty" { "penalises" } else { "credits" };
        let _ = writeln!(w, "### {}@{} ({}; {verb} at score ≥ {})", info.id, info.version, info.kind, info.threshold);
        let _ = writeln!(w);
        let f = &rule.overall;
        let c = &f.confusion;
        let _ = writeln!(w, "- agreement: {}", counted(f.agreed, f.n, f.agreement));
        let _ = writeln!(
            w,
            "- on the true/false labels (positive: the label says the rule should {}): TP {}, FP {}, FN {}, TN {}{}",
            if info.kind == "penalty" { "penalise" } else { "credit" },
            c.tp,
            c.fp,
            c.fn_,
            c.tn,
            if f.undecided > 0 { format!("; the rule said n/a or failed on {} of them (counted as its no)", f.undecided) } else { String::new() }
        );
        let _ = writeln!(w, "- precision {}; recall {}; F1 {}; specificity {}", precision(f), recall(f), estimate(f.f1), specificity(f));
        let _ = writeln!(w);
        groups(w, &rule.groups);
        if rule.disagreements.is_empty() {
            let _ = writeln!(w, "No disagreements.");
        } else {
            let _ = writeln!(w, "Disagreements ({}):", rule.disagreements.len());
            let _ = writeln!(w);
            let _ = writeln!(w, "| id | lang | class | label | rule | hits | explanation | why (label) |");
            let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
            for d in &rule.disagreements {
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    d.id,
                    d.lang,
                    d.class,
                    d.label.words(),
                    cell(&d.result),
                    cell(&d.hit_codes.join(", ")),
                    cell(&d.explanation),
                    cell(&d.why)
                );
            }
        }
        let _ = writeln!(w);
    }
    if let Some(p) = &s.pairs_report {
        let _ = writeln!(w, "### Pairs (ordered when good − hack ≥ {})", r.margin);
        let _ = writeln!(w);
        let _ = writeln!(w, "| group | n | ordered | narrow | tied | reversed | unscored |");
        let _ = writeln!(w, "|---|---|---|---|---|---|---|");
        let row = |name: &str, f: &PairFigures| {
            format!("| {name} | {} | {} | {} | {} | {} | {} |", f.n, ordered(f), f.narrow, f.tied, f.reversed, f.unscored)
        };
        let _ = writeln!(w, "{}", row("all", &p.overall));
        for g in &p.groups {
            let _ = writeln!(w, "{}", row(&format!("{} {}", g.by, g.value), &g.figures));
        }
        let _ = writeln!(w);
        let _ = writeln!(w, "| pair | kind | lang | good | hack | good − hack | order | rules (good / hack) |");
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
        let num = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.4}"));
        for x in &p.pairs {
            let rules: Vec<String> = x.rules.iter().map(|c| format!("{} {} / {}", c.rule, c.good, c.hack)).collect();
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                x.id,
                x.kind,
                x.lang,
                num(x.good),
                num(x.hack),
                num(x.difference),
                x.order.as_str(),
                cell(&rules.join("; "))
            );
        }
        let _ = writeln!(w);
    }
}

fn groups(w: &mut String, groups: &[Group<Figures>]) {
    let _ = writeln!(w, "| group | n | agreement | precision | recall | F1 | specificity |");
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for g in groups {
        let f = &g.figures;
        let _ = writeln!(
            w,
            "| {} {} | {} | {} | {} | {} | {} | {} |",
            g.by,
            cell(&g.value),
            f.n,
            counted(f.agreed, f.n, f.agreement),
            precision(f),
            recall(f),
            estimate(f.f1),
            specificity(f)
        );
    }
    let _ = writeln!(w);
}
