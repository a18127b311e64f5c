//! A run's scalars: one series per tag (`reward/total`, `rule/chain`, `kl/per_token`, …), each a
//! value per step, read back from the files the trainer writes. The tags are named here once:
//! the trainer's live TensorBoard events, the rebuilt ones, the plots and `runs compare` all
//! come from [`rl_step`] and [`sft_step`], so they cannot name or compute a figure differently.
//!
//! Sources, per step (the trainer's `log` phase writes all three):
//! - `rewards.csv`: the mean of each rule's column over the rows where it counted (`rule/<id>`)
//!   and of the `total` column over the rows with a reward (`reward/total`); empty cells (a rule
//!   that did not apply, a skipped sample) are left out of both;
//! - `kl_metrics.jsonl` and `metrics.jsonl`: the fields in [`KL_FIELDS`], [`RL_FIELDS`] and, for
//!   PPO, [`CRITIC_FIELDS`] (critic-free runs log a value loss of 0, which is no loss at all);
//! - an SFT output folder has only `metrics.jsonl` ([`SFT_FIELDS`]).
//!
//! A field an older run did not record is simply absent from its series; a last line without
//! its newline is a row being written (the run is live) and is ignored; any other unreadable
//! line is an error that names the file and line.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a run folder's scalars could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScalarsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Corrupt { path: PathBuf, line: usize, message: String },
    #[error(
        "{0} holds neither rewards.csv (an RL run of `medrl train`) nor metrics.jsonl (an SFT output of `medrl sft`); pass a run folder such as runs/ppo"
    )]
    NotARun(PathBuf),
    #[error("{0} is not a folder; pass a run folder such as runs/ppo (`run.out_dir`/`run.name` of the run)")]
    Missing(PathBuf),
}

/// What trained the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// `medrl train` (PPO, GRPO, RLOO).
    Rl,
    /// `medrl sft`.
    Sft,
}

/// The tags, TensorBoard style: the part before `/` is the group a viewer shows together.
pub mod tag {
    /// Mean total reward of the step's scored responses (`rewards.csv`'s `total`).
    pub const REWARD_TOTAL: &str = "reward/total";
    pub const REWARD_STD: &str = "reward/std";
    pub const KL_PER_TOKEN: &str = "kl/per_token";
    /// β, the KL coefficient the step used.
    pub const KL_BETA: &str = "kl/beta";
    pub const POLICY_LOSS: &str = "loss/policy";
    pub const VALUE_LOSS: &str = "loss/value";
    pub const SFT_LOSS: &str = "loss/sft";
    pub const ENTROPY: &str = "policy/entropy";
    pub const LENGTH: &str = "response/length_mean";
    pub const EOS_RATE: &str = "response/eos_rate";
    /// Rule `id`'s mean score over the responses it counted for.
    pub fn rule(id: &str) -> String {
        format!("rule/{id}")
    }
    /// The rule id of a [`rule`] tag.
    pub fn rule_id(tag: &str) -> Option<&str> {
        tag.strip_prefix("rule/")
    }
}

/// `kl_metrics.jsonl` field → tag.
pub const KL_FIELDS: &[(&str, &str)] = &[("kl_per_token", tag::KL_PER_TOKEN), ("kl_coef", tag::KL_BETA), ("kl_per_response", "kl/per_response")];

/// `metrics.jsonl` field → tag, for every RL run.
pub const RL_FIELDS: &[(&str, &str)] = &[
    ("reward_std", tag::REWARD_STD),
    ("pg_loss", tag::POLICY_LOSS),
    ("entropy", tag::ENTROPY),
    ("approx_kl", "policy/approx_kl"),
    ("pg_clipfrac", "policy/clipfrac"),
    ("response_len_mean", tag::LENGTH),
    ("eos_rate", tag::EOS_RATE),
    ("grad_norm", "optim/grad_norm"),
    ("lr", "optim/lr"),
    ("skipped_updates", "optim/skipped_updates"),
    ("rollout_tokens_per_s", "perf/rollout_tokens_per_s"),
    ("update_tokens_per_s", "perf/update_tokens_per_s"),
    ("step_seconds", "perf/step_seconds"),
];

/// `metrics.jsonl` field → tag, for PPO only (the runs with a value head).
pub const CRITIC_FIELDS: &[(&str, &str)] =
    &[("vf_loss", tag::VALUE_LOSS), ("vf_clipfrac", "value/clipfrac"), ("explained_variance", "value/explained_variance")];

/// `metrics.jsonl` field → tag, for an SFT run.
pub const SFT_FIELDS: &[(&str, &str)] =
    &[("loss", tag::SFT_LOSS), ("lr", "optim/lr"), ("grad_norm", "optim/grad_norm"), ("tokens_per_s", "perf/tokens_per_s")];

/// The rule means of one step's `rewards.csv` rows, accumulated row by row (the trainer feeds
/// it the cells it writes, the reader the cells it reads).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RewardMeans {
    /// Rule ids in column order.
    pub rules: Vec<String>,
    /// Per rule: the sum of its counted scores and how many there were.
    sums: Vec<(f64, usize)>,
    total: (f64, usize),
}

impl RewardMeans {
    pub fn new(rules: Vec<String>) -> Self {
        RewardMeans { sums: vec![(0.0, 0); rules.len()], rules, total: (0.0, 0) }
    }

    /// One response: its rule cells in column order (`None`: not counted) and its total.
    pub fn add(&mut self, cells: &[Option<f64>], total: Option<f64>) {
        for (sum, cell) in self.sums.iter_mut().zip(cells) {
            if let Some(v) = cell {
                sum.0 += v;
                sum.1 += 1;
            }
        }
        if let Some(t) = total {
            self.total.0 += t;
            self.total.1 += 1;
        }
    }

    /// `reward/total` and each `rule/<id>` that counted at least once.
    fn scalars(&self, out: &mut Vec<(String, f64)>) {
        if self.total.1 > 0 {
            out.push((tag::REWARD_TOTAL.into(), self.total.0 / self.total.1 as f64));
        }
        for (id, (sum, n)) in self.rules.iter().zip(&self.sums) {
            if *n > 0 {
                out.push((tag::rule(id), sum / *n as f64));
            }
        }
    }
}

/// The fields of `record` named in `fields` that are numbers (a missing field or `null` is left
/// out), as tagged scalars.
fn fields(record: &Value, fields: &[(&str, &str)], out: &mut Vec<(String, f64)>) {
    for (field, tag) in fields {
        if let Some(v) = record.get(field).and_then(Value::as_f64) {
            out.push((tag.to_string(), v));
        }
    }
}

/// The scalars of one RL step: its reward means, its `kl_metrics.jsonl` row and its
/// `metrics.jsonl` row (with the value head's figures when `critic`).
pub fn rl_step(rewards: &RewardMeans, kl: &Value, metrics: &Value, critic: bool) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    rewards.scalars(&mut out);
    fields(kl, KL_FIELDS, &mut out);
    fields(metrics, RL_FIELDS, &mut out);
    if critic {
        fields(metrics, CRITIC_FIELDS, &mut out);
    }
    out
}

/// The scalars of one SFT step (its `metrics.jsonl` row).
pub fn sft_step(metrics: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    fields(metrics, SFT_FIELDS, &mut out);
    out
}

/// Every scalar series of a run folder.
#[derive(Debug, Clone, PartialEq)]
pub struct RunScalars {
    pub root: PathBuf,
    pub kind: RunKind,
    /// The rule ids of `rewards.csv`, in column order (empty for SFT).
    pub rules: Vec<String>,
    /// Tag → `(step, value)` in step order.
    pub series: BTreeMap<String, Vec<(u64, f64)>>,
}

impl RunScalars {
    /// Reads the run folder `root` (see the module header for what comes from where).
    pub fn read(root: &Path) -> Result<Self, ScalarsError> {
        if !root.is_dir() {
            return Err(ScalarsError::Missing(root.to_path_buf()));
        }
        let (rewards, metrics, kl) = (root.join("rewards.csv"), root.join("metrics.jsonl"), root.join("kl_metrics.jsonl"));
        let mut steps: BTreeMap<u64, Vec<(String, f64)>> = BTreeMap::new();
        let (kind, rules) = if rewards.exists() {
            let (rules, by_step) = read_rewards(&rewards)?;
            let kl_rows = read_rows(&kl)?;
            let metric_rows = read_rows(&metrics)?;
            let critic = is_ppo(root)?;
            let all: std::collections::BTreeSet<u64> = by_step.keys().chain(kl_rows.keys()).chain(metric_rows.keys()).copied().collect();
            let empty = RewardMeans::new(rules.clone());
            for step in all {
                let scalars = rl_step(
                    by_step.get(&step).unwrap_or(&empty),
                    kl_rows.get(&step).unwrap_or(&Value::Null),
                    metric_rows.get(&step).unwrap_or(&Value::Null),
                    critic,
                );
                steps.insert(step, scalars);
            }
            (RunKind::Rl, rules)
        } else if metrics.exists() {
            for (step, row) in read_rows(&metrics)? {
                steps.insert(step, sft_step(&row));
            }
            (RunKind::Sft, Vec::new())
        } else {
            return Err(ScalarsError::NotARun(root.to_path_buf()));
        };
        let mut series: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
        for (step, scalars) in steps {
            for (tag, v) in scalars {
                series.entry(tag).or_default().push((step, v));
            }
        }
        Ok(RunScalars { root: root.to_path_buf(), kind, rules, series })
    }

    /// The series of `tag`, empty when the run did not record it.
    pub fn get(&self, tag: &str) -> &[(u64, f64)] {
        self.series.get(tag).map_or(&[], Vec::as_slice)
    }

    /// The last step any series reaches (0 for a run without rows).
    pub fn last_step(&self) -> u64 {
        self.series.values().filter_map(|s| s.last().map(|p| p.0)).max().unwrap_or(0)
    }

    /// Every step's scalars, in step order (what an event file holds per step).
    pub fn by_step(&self) -> BTreeMap<u64, Vec<(String, f64)>> {
        let mut out: BTreeMap<u64, Vec<(String, f64)>> = BTreeMap::new();
        for (tag, points) in &self.series {
            for &(step, v) in points {
                out.entry(step).or_default().push((tag.clone(), v));
            }
        }
        out
    }
}

/// Whether the run trained a value head: `[ppo] algorithm` of its `config.toml` (PPO, the
/// default, when the file or the key is missing).
fn is_ppo(root: &Path) -> Result<bool, ScalarsError> {
    let path = root.join("config.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(source) => return Err(ScalarsError::Io { path, source }),
    };
    let config: toml::Table =
        text.parse().map_err(|e: toml::de::Error| ScalarsError::Corrupt { path: path.clone(), line: 0, message: e.to_string() })?;
    Ok(config.get("ppo").and_then(|p| p.get("algorithm")).and_then(|a| a.as_str()).is_none_or(|a| a == "ppo"))
}

/// The complete text of a file: a last line without its newline is still being written and is
/// left out; a missing file is empty.
fn complete_text(path: &Path) -> Result<String, ScalarsError> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(source) => return Err(ScalarsError::Io { path: path.to_path_buf(), source }),
    };
    bytes.truncate(bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1));
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        ScalarsError::Corrupt { path: path.to_path_buf(), line, message: "not UTF-8".into() }
    })
}

/// A JSONL log's rows by their `step` (the last row of a step wins; the trainer writes one).
fn read_rows(path: &Path) -> Result<BTreeMap<u64, Value>, ScalarsError> {
    let mut rows = BTreeMap::new();
    for (i, text) in complete_text(path)?.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line = i + 1;
        let corrupt = |message: String| ScalarsError::Corrupt { path: path.to_path_buf(), line, message };
        let row: Value = serde_json::from_str(&text).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        let step = row.get("step").and_then(Value::as_u64).ok_or_else(|| corrupt("no `step` (a whole number) on this row".into()))?;
        rows.insert(step, row);
    }
    Ok(rows)
}

/// `rewards.csv`: its rule columns and each step's reward means.
fn read_rewards(path: &Path) -> Result<(Vec<String>, BTreeMap<u64, RewardMeans>), ScalarsError> {
    let text = complete_text(path)?;
    if text.is_empty() {
        return Ok((Vec::new(), BTreeMap::new()));
    }
    let at = |line: usize, message: String| ScalarsError::Corrupt { path: path.to_path_buf(), line, message };
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let columns: Vec<String> = reader.headers().map_err(|e| at(1, e.to_string()))?.iter().map(String::from).collect();
    let n = columns.len();
    if n < 4 || columns[..3] != ["step", "sample_id", "category"] || columns[n - 1] != "total" {
        return Err(at(1, format!("the header `{}` is not `step,sample_id,category,<rules…>,total` as `medrl train` writes it", columns.join(","))));
    }
    let rules: Vec<String> = columns[3..n - 1].to_vec();
    let mut by_step: BTreeMap<u64, RewardMeans> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| at(e.position().map_or(0, |p| p.line() as usize), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let cell = |i: usize| -> Result<Option<f64>, ScalarsError> {
            let s = &record[i];
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse().map(Some).map_err(|_| at(line, format!("`{s}` in column `{}` is not a number", columns[i])))
            }
        };
        let step: u64 = record[0].parse().map_err(|_| at(line, format!("the step `{}` is not a whole number", &record[0])))?;
        let cells = (3..n - 1).map(cell).collect::<Result<Vec<_>, _>>()?;
        let total = cell(n - 1)?;
        by_step.entry(step).or_insert_with(|| RewardMeans::new(rules.clone())).add(&cells, total);
    }
    Ok((rules, by_step))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    /// Two steps of a GRPO run by hand, every mean computed below.
    fn grpo_fixture(dir: &Path) {
        write(dir, "config.toml", "# resolved\n[ppo]\nalgorithm = \"grpo\"\n");
        write(
            dir,
            "rewards.csv",
            "step,sample_id,category,chain,risk,total\n\
             1,a#s1r0,general,0.500000,,0.300000\n\
             1,a#s1r1,general,0.700000,1.000000,0.500000\n\
             1,b#s1r2,emergency,,0.000000,\n\
             2,a#s2r0,general,1.000000,1.000000,0.900000\n",
        );
        write(
            dir,
            "kl_metrics.jsonl",
            "{\"step\":1,\"kl_per_token\":0.01,\"kl_coef\":0.05,\"kl_per_response\":0.1}\n{\"step\":2,\"kl_per_token\":0.03,\"kl_coef\":0.04}\n",
        );
        write(
            dir,
            "metrics.jsonl",
            "{\"step\":1,\"pg_loss\":-0.2,\"vf_loss\":0.0,\"entropy\":2.5,\"response_len_mean\":12.0,\"eos_rate\":0.5,\"explained_variance\":null}\n\
             {\"step\":2,\"pg_loss\":0.1,\"vf_loss\":0.0,\"entropy\":2.25,\"response_len_mean\":8.0,\"eos_rate\":1.0}\n\
             {\"step\":3,\"pg_lo",
        );
    }

    #[test]
    fn rl_series_come_from_the_three_logs_with_hand_checked_means() {
        let dir = tempfile::tempdir().unwrap();
        grpo_fixture(dir.path());
        let s = RunScalars::read(dir.path()).unwrap();
        assert_eq!((s.kind, s.rules.clone()), (RunKind::Rl, vec!["chain".to_string(), "risk".to_string()]));
        // Step 1: total over the two rows with one, (0.3 + 0.5) / 2 = 0.4; chain (0.5 + 0.7) / 2
        // = 0.6; risk (1 + 0) / 2 = 0.5 (the empty cell is not a 0). Step 2: one row each.
        let close = |a: &[(u64, f64)], b: &[(u64, f64)]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && (x.1 - y.1).abs() < 1e-12);
        assert!(close(s.get(tag::REWARD_TOTAL), &[(1, 0.4), (2, 0.9)]), "{:?}", s.get(tag::REWARD_TOTAL));
        assert!(close(s.get("rule/chain"), &[(1, 0.6), (2, 1.0)]));
        assert!(close(s.get("rule/risk"), &[(1, 0.5), (2, 1.0)]));
        assert_eq!(s.get(tag::KL_BETA), [(1, 0.05), (2, 0.04)]);
        assert_eq!(s.get("kl/per_response"), [(1, 0.1)], "step 2 did not record it");
        assert_eq!(s.get(tag::ENTROPY), [(1, 2.5), (2, 2.25)]);
        assert_eq!(s.get(tag::EOS_RATE), [(1, 0.5), (2, 1.0)]);
        // GRPO has no value head: its logged vf_loss of 0 is not a series; the torn step-3 row
        // (still being written) is not read.
        assert!(s.get(tag::VALUE_LOSS).is_empty() && s.get("value/explained_variance").is_empty());
        assert_eq!(s.last_step(), 2);
        assert_eq!(s.by_step()[&2].len(), 9, "{:?}", s.by_step()[&2]);
    }

    #[test]
    fn ppo_keeps_the_value_loss_and_an_sft_folder_reads_as_sft() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "rewards.csv", "step,sample_id,category,chain,total\n");
        write(dir.path(), "metrics.jsonl", "{\"step\":1,\"vf_loss\":0.25,\"pg_loss\":0.5}\n");
        let s = RunScalars::read(dir.path()).unwrap();
        assert_eq!(s.get(tag::VALUE_LOSS), [(1, 0.25)], "no config.toml: PPO, the default");
        let sft = tempfile::tempdir().unwrap();
        write(
            sft.path(),
            "metrics.jsonl",
            "{\"step\":1,\"epoch\":0,\"loss\":3.5,\"lr\":0.001}\n{\"step\":2,\"epoch\":0,\"loss\":3.0,\"lr\":0.002}\n",
        );
        let s = RunScalars::read(sft.path()).unwrap();
        assert_eq!(s.kind, RunKind::Sft);
        assert_eq!(s.get(tag::SFT_LOSS), [(1, 3.5), (2, 3.0)]);
        assert_eq!(s.get("optim/lr"), [(1, 0.001), (2, 0.002)]);
    }

    #[test]
    fn a_bad_row_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        grpo_fixture(dir.path());
        write(dir.path(), "kl_metrics.jsonl", "{\"step\":1}\n{\"kl_coef\":0.1}\n");
        let err = RunScalars::read(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("kl_metrics.jsonl:2: no `step` (a whole number) on this row"), "{err}");
        write(dir.path(), "kl_metrics.jsonl", "");
        write(dir.path(), "rewards.csv", "step,sample_id,category,chain,total\n1,a,general,x,0.1\n");
        let err = RunScalars::read(dir.path()).unwrap_err().to_string();
        assert!(err.ends_with("rewards.csv:2: `x` in column `chain` is not a number"), "{err}");
        write(dir.path(), "rewards.csv", "id,total\n");
        assert!(RunScalars::read(dir.path()).unwrap_err().to_string().contains("is not `step,sample_id,category,<rules…>,total`"));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(RunScalars::read(empty.path()), Err(ScalarsError::NotARun(_))));
        assert!(matches!(RunScalars::read(&empty.path().join("nope")), Err(ScalarsError::Missing(_))));
    }
}
