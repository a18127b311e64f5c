//! Two runs side by side (`medrl runs compare A B`): per metric the final value and the mean of
//! the last `k` steps of each, and B − A; the settings whose resolved values differ (each run's
//! `config.toml`, including the rule set and its sha256 from its header line); and an overlay of
//! the two runs' reward curves.

use super::plot::{run_name, series};
use super::scalars::{RunKind, RunScalars, tag};
use crate::plot::{Panel, PlotError, line_panels};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why two runs could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{path}: {source}; `runs compare` diffs the resolved settings every run folder holds")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not TOML: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{a} is {a_kind:?} and {b} is {b_kind:?}; compare two RL runs or two SFT outputs")]
    Kinds { a: PathBuf, a_kind: RunKind, b: PathBuf, b_kind: RunKind },
    #[error("--last 0: the mean of the last 0 steps is not a figure; give at least 1")]
    Last,
}

/// One run's figure for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// The last step with a value, and that value.
    pub final_step: u64,
    pub final_value: f64,
    /// The mean of the last `k` values (fewer when the run has fewer).
    pub mean_last: f64,
    /// How many values that mean is over.
    pub mean_of: usize,
}

impl Summary {
    /// `None` for a series without points.
    pub fn of(points: &[(u64, f64)], k: usize) -> Option<Self> {
        let &(final_step, final_value) = points.last()?;
        let tail = &points[points.len().saturating_sub(k)..];
        Some(Summary { final_step, final_value, mean_last: tail.iter().map(|p| p.1).sum::<f64>() / tail.len() as f64, mean_of: tail.len() })
    }
}

/// A metric of both runs, and B − A where both have it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    pub tag: String,
    pub a: Option<Summary>,
    pub b: Option<Summary>,
    pub diff_final: Option<f64>,
    pub diff_mean_last: Option<f64>,
}

/// A setting whose resolved value differs (`None`: the run's config does not have it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingDiff {
    pub key: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub path: PathBuf,
    pub kind: RunKind,
    pub last_step: u64,
}

/// `runs compare`'s result (`--json` writes it as is).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub a: RunInfo,
    pub b: RunInfo,
    /// The `k` of "mean of the last k steps".
    pub last: usize,
    pub metrics: Vec<MetricRow>,
    pub settings: Vec<SettingDiff>,
}

/// The metrics compared for a kind of run, in display order (rules after the total).
fn headline(kind: RunKind, a: &RunScalars, b: &RunScalars) -> Vec<String> {
    match kind {
        RunKind::Sft => [tag::SFT_LOSS, "optim/lr", "perf/tokens_per_s"].map(String::from).to_vec(),
        RunKind::Rl => {
            let mut rules: Vec<String> = a.rules.clone();
            rules.extend(b.rules.iter().filter(|r| !a.rules.contains(r)).cloned());
            std::iter::once(tag::REWARD_TOTAL.to_string())
                .chain(rules.iter().map(|r| tag::rule(r)))
                .chain(
                    [
                        tag::KL_PER_TOKEN,
                        tag::KL_BETA,
                        tag::LENGTH,
                        tag::EOS_RATE,
                        tag::ENTROPY,
                        tag::POLICY_LOSS,
                        tag::VALUE_LOSS,
                        "perf/rollout_tokens_per_s",
                    ]
                    .map(String::from),
                )
                .collect()
        }
    }
}

/// Compares the scalars of two runs of one kind, over their last `last` steps, and their
/// resolved settings.
pub fn compare(a: &RunScalars, b: &RunScalars, last: usize) -> Result<Comparison, CompareError> {
    if last == 0 {
        return Err(CompareError::Last);
    }
    if a.kind != b.kind {
        return Err(CompareError::Kinds { a: a.root.clone(), a_kind: a.kind, b: b.root.clone(), b_kind: b.kind });
    }
    let metrics = headline(a.kind, a, b)
        .into_iter()
        .map(|tag| {
            let (sa, sb) = (Summary::of(a.get(&tag), last), Summary::of(b.get(&tag), last));
            let both = sa.zip(sb);
            MetricRow {
                diff_final: both.map(|(x, y)| y.final_value - x.final_value),
                diff_mean_last: both.map(|(x, y)| y.mean_last - x.mean_last),
                tag,
                a: sa,
                b: sb,
            }
        })
        .filter(|row| row.a.is_some() || row.b.is_some())
        .collect();
    let settings = settings_diff(&read_settings(&a.root)?, &read_settings(&b.root)?);
    let info = |s: &RunScalars| RunInfo { path: s.root.clone(), kind: s.kind, last_step: s.last_step() };
    Ok(Comparison { a: info(a), b: info(b), last, metrics, settings })
}

/// A run's `config.toml` as dotted keys → TOML values. The trainer's header line `# ruleset =
/// "…", sha256 = "…", rules = […]` (the rule set the run was scored with, resolved) becomes the
/// keys `resolved.ruleset`, `resolved.sha256` and `resolved.rules`.
pub fn read_settings(root: &Path) -> Result<BTreeMap<String, String>, CompareError> {
    let path = root.join("config.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| CompareError::Io { path: path.clone(), source })?;
    let bad = |e: toml::de::Error| CompareError::Config { path: path.clone(), message: e.to_string() };
    let mut out = BTreeMap::new();
    flatten("", &toml::Value::Table(text.parse::<toml::Table>().map_err(bad)?), &mut out);
    for line in text.lines() {
        if let Some(body) = line.strip_prefix("# ruleset = ") {
            let resolved: toml::Table = format!("resolved = {{ ruleset = {body} }}").parse().map_err(bad)?;
            flatten("", &toml::Value::Table(resolved), &mut out);
        }
    }
    Ok(out)
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
            }
        }
        v => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

/// The keys whose values differ, in key order.
pub fn settings_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<SettingDiff> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).map(|k| SettingDiff { key: k.clone(), a: a.get(k).cloned(), b: b.get(k).cloned() }).collect()
}

/// A figure for the page: 4 decimals; 1 from 100 (tokens/s); scientific below 1e-3 or from 1e5;
/// and 0 below 1e-9 (the rounding noise of a difference of equal means, not a difference).
fn num(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(v) if v.abs() < 1e-9 => "0.0000".into(),
        Some(v) if v.abs() >= 1e5 || v.abs() < 1e-3 => format!("{v:.3e}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.4}"),
    }
}

fn signed(x: Option<f64>) -> String {
    match x {
        Some(v) if v >= 0.0 => format!("+{}", num(Some(v))),
        x => num(x),
    }
}

/// The comparison as a Markdown page.
pub fn markdown(c: &Comparison) -> String {
    let mut md = String::new();
    let line = |md: &mut String, s: String| {
        md.push_str(&s);
        md.push('\n');
    };
    line(&mut md, format!("# Run comparison: {} vs {}\n", run_name(&c.a.path), run_name(&c.b.path)));
    line(&mut md, format!("- A: `{}` ({:?}, {} steps)", c.a.path.display(), c.a.kind, c.a.last_step));
    line(&mut md, format!("- B: `{}` ({:?}, {} steps)\n", c.b.path.display(), c.b.kind, c.b.last_step));
    line(&mut md, "## Metrics\n".into());
    line(&mut md, format!("| metric | A final | B final | B − A | A mean last {k} | B mean last {k} | B − A |", k = c.last));
    line(&mut md, "|---|---:|---:|---:|---:|---:|---:|".into());
    for r in &c.metrics {
        line(
            &mut md,
            format!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.tag,
                num(r.a.map(|s| s.final_value)),
                num(r.b.map(|s| s.final_value)),
                signed(r.diff_final),
                num(r.a.map(|s| s.mean_last)),
                num(r.b.map(|s| s.mean_last)),
                signed(r.diff_mean_last)
            ),
        );
    }
    line(&mut md, "\nFinal: the value at each run's last step with one. A mean over fewer steps than asked means the run is shorter.\n".into());
    line(&mut md, "## Settings that differ\n".into());
    if c.settings.is_empty() {
        line(&mut md, "None: the resolved settings are the same.".into());
    } else {
        line(&mut md, "| setting | A | B |".into());
        line(&mut md, "|---|---|---|".into());
        let cell = |v: &Option<String>| v.as_ref().map_or("(not set)".to_string(), |v| format!("`{}`", v.replace('|', "\\|")));
        for d in &c.settings {
            line(&mut md, format!("| {} | {} | {} |", d.key, cell(&d.a), cell(&d.b)));
        }
    }
    md
}

/// The two runs' reward curves overlaid: the total, then each rule either run scored.
pub fn reward_overlay(a: &RunScalars, b: &RunScalars) -> Result<String, PlotError> {
    let (na, nb) = (format!("A {}", run_name(&a.root)), format!("B {}", run_name(&b.root)));
    let mut tags = vec![(tag::REWARD_TOTAL.to_string(), "total reward (mean over the scored responses)".to_string())];
    let mut rules = a.rules.clone();
    rules.extend(b.rules.iter().filter(|r| !a.rules.contains(r)).cloned());
    tags.extend(rules.iter().map(|r| (tag::rule(r), format!("rule `{r}` (mean score where it counted)"))));
    let panels: Vec<Panel> = tags
        .iter()
        .map(|(t, caption)| Panel {
            caption: caption.clone(),
            y_desc: if t == tag::REWARD_TOTAL { "reward" } else { "score" }.into(),
            series: vec![series(a, t, &na), series(b, t, &nb)],
        })
        .collect();
    line_panels(&format!("reward: {} vs {}", run_name(&a.root), run_name(&b.root)), "step", &panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, name: &str, config: &str, rewards: &str, kl: &str) -> RunScalars {
        let root = dir.join(name);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("config.toml"), config).unwrap();
        std::fs::write(root.join("rewards.csv"), rewards).unwrap();
        std::fs::write(root.join("kl_metrics.jsonl"), kl).unwrap();
        RunScalars::read(&root).unwrap()
    }

    const HEADER: &str = "# Resolved configuration of this run. The rule set it was scored with:\n";

    #[test]
    fn finals_means_of_the_last_k_and_differences_are_hand_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = run(
            dir.path(),
            "a",
            &format!(
                "{HEADER}# ruleset = \"toy@1.0.0\", sha256 = \"aa\", rules = [\"chain@1.0.0\"]\n[run]\nseed = 1\nsteps = 3\n[ppo]\nlearning_rate = 0.001\n"
            ),
            "step,sample_id,category,chain,total\n1,x,general,0.2,0.1\n2,x,general,0.4,0.2\n3,x,general,0.6,0.6\n",
            "{\"step\":1,\"kl_per_token\":0.01,\"kl_coef\":0.1}\n{\"step\":2,\"kl_per_token\":0.02,\"kl_coef\":0.1}\n{\"step\":3,\"kl_per_token\":0.06,\"kl_coef\":0.1}\n",
        );
        let b = run(
            dir.path(),
            "b",
            &format!(
                "{HEADER}# ruleset = \"toy@1.1.0\", sha256 = \"bb\", rules = [\"chain@1.0.0\"]\n[run]\nseed = 1\nsteps = 2\n[ppo]\nlearning_rate = 0.002\nwhiten = true\n"
            ),
            "step,sample_id,category,chain,risk,total\n1,x,general,0.5,1,0.3\n2,x,general,0.9,0,0.5\n",
            "{\"step\":1,\"kl_per_token\":0.03,\"kl_coef\":0.1}\n{\"step\":2,\"kl_per_token\":0.05,\"kl_coef\":0.2}\n",
        );
        let c = compare(&a, &b, 2).unwrap();
        let row = |t: &str| c.metrics.iter().find(|r| r.tag == t).unwrap().clone();
        let close = |x: Option<f64>, y: f64| (x.unwrap() - y).abs() < 1e-12;
        // Total: A final 0.6, mean of steps 2–3 (0.2 + 0.6) / 2 = 0.4; B final 0.5, mean (0.3 + 0.5) / 2 = 0.4.
        let total = row("reward/total");
        assert_eq!((total.a.unwrap().final_step, total.a.unwrap().mean_of), (3, 2));
        assert!(close(total.a.map(|s| s.mean_last), 0.4) && close(total.b.map(|s| s.mean_last), 0.4));
        assert!(close(total.diff_final, -0.1) && close(total.diff_mean_last, 0.0));
        // chain: A (0.4 + 0.6) / 2 = 0.5, B (0.5 + 0.9) / 2 = 0.7: +0.2. risk only in B.
        assert!(close(row("rule/chain").diff_mean_last, 0.2));
        let risk = row("rule/risk");
        assert!(risk.a.is_none() && risk.diff_final.is_none() && close(risk.b.map(|s| s.mean_last), 0.5));
        // KL: A (0.02 + 0.06) / 2 = 0.04, B (0.03 + 0.05) / 2 = 0.04, finals 0.06 vs 0.05.
        assert!(close(row("kl/per_token").diff_final, -0.01) && close(row("kl/per_token").diff_mean_last, 0.0));
        assert!(close(row("kl/beta").diff_final, 0.1));
        // Metrics neither run has (no metrics.jsonl) are not rows.
        assert!(c.metrics.iter().all(|r| r.tag != "policy/entropy"));
        let keys: Vec<(&str, Option<&str>, Option<&str>)> = c.settings.iter().map(|d| (d.key.as_str(), d.a.as_deref(), d.b.as_deref())).collect();
        assert_eq!(
            keys,
            [
                ("ppo.learning_rate", Some("0.001"), Some("0.002")),
                ("ppo.whiten", None, Some("true")),
                ("resolved.ruleset", Some("\"toy@1.0.0\""), Some("\"toy@1.1.0\"")),
                ("resolved.sha256", Some("\"aa\""), Some("\"bb\"")),
                ("run.steps", Some("3"), Some("2")),
            ]
        );
        let md = markdown(&c);
        assert!(md.contains("| reward/total | 0.6000 | 0.5000 | -0.1000 | 0.4000 | 0.4000 | +0.0000 |"), "{md}");
        assert!(md.contains("| rule/risk | – | 0.0000 | – | – | 0.5000 | – |"), "{md}");
        assert!(md.contains("| ppo.whiten | (not set) | `true` |"), "{md}");
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["metrics"][0]["a"]["final_value"], 0.6);
        let svg = reward_overlay(&a, &b).unwrap();
        for text in ["reward: a vs b", "A a", "B b", "rule `risk` (mean score where it counted)"] {
            assert!(svg.contains(&format!(">\n{text}\n</text>")), "{text}");
        }
        assert!(compare(&a, &b, 0).unwrap_err().to_string().contains("--last 0"));
    }
}
