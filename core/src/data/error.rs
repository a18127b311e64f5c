//! What can stop a data command, each with what to do about it. Findings about individual items
//! (a malformed line, a duplicate id, leakage) are [`Problem`]s; they stop a command together, as
//! [`DataError::Invalid`].

use super::validate::Problem;
use medrl_sdk::Category;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A data file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    /// A data file is empty, starts with a byte order mark, or is not UTF-8.
    #[error(transparent)]
    Text(#[from] crate::io::TextError),

    /// One of the four split files is missing from the data directory.
    #[error(
        "{path} does not exist; a data directory holds pool.jsonl, sft.jsonl, gold.jsonl and redteam.jsonl \
         (point --dir at one)"
    )]
    MissingSplit { path: PathBuf },

    /// An output file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },

    /// Validation found problems; each names its file and line.
    #[error(
        "{count} problem{s} in {dir}:\n{list}\nfix {them} and rerun `medrl data validate`",
        count = .problems.len(),
        s = if .problems.len() == 1 { "" } else { "s" },
        list = .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"),
        them = if .problems.len() == 1 { "it" } else { "them" }
    )]
    Invalid { dir: PathBuf, problems: Vec<Problem> },

    /// `--n` is zero or more than the pool holds.
    #[error("--n {n} is out of range: the pool has {available} distinct prompts; ask for 1 to {available}")]
    SampleSize { n: usize, available: usize },

    /// `--high-risk-min` is not a share.
    #[error("--high-risk-min {value} is not a share between 0 and 1")]
    HighRiskShare { value: f64 },

    /// A category's quota is more than the pool has of that category.
    #[error(
        "quota {category}={min} asks for more than the {available} `{category}` prompts in the pool; \
         lower it or add `{category}` prompts to the pool",
        category = .category.as_str()
    )]
    QuotaAboveAvailable { category: Category, min: usize, available: usize },

    /// The quotas together ask for more prompts than `--n`.
    #[error("the category quotas add up to {total}, more than --n {n}; lower the quotas (--quota CATEGORY=MIN) or raise --n")]
    QuotasAboveN { total: usize, n: usize },

    /// The high-risk floor cannot be met under the size and the quotas.
    #[error(
        "--high-risk-min {share} needs {needed} of the {n} prompts to be high-risk, but at most {reachable} can be \
         (the pool has {available} high-risk prompts; the category quotas fix the rest); lower --high-risk-min \
         or --n, relax the quotas, or add high-risk prompts to the pool"
    )]
    HighRiskUnreachable { share: f64, needed: usize, n: usize, reachable: usize, available: usize },

    /// A round would repeat more of the previous round than its cap allows.
    #[error(
        "round {round} would re-use {reused} of the previous round's prompts among its {n}, more than the cap of {cap} \
         (--max-reuse {max_reuse}); the pool has {fresh} prompts no earlier round drew. Add prompts to the pool \
         (`medrl data import`), lower --n, or raise --max-reuse"
    )]
    TooMuchReuse { round: u32, reused: usize, n: usize, cap: usize, max_reuse: f64, fresh: usize },

    /// A round's earlier rounds are missing.
    #[error(
        "round {round} needs the previous round's prompts at {path}; build round {previous} first (`medrl data build-prompts --round {previous}`)"
    )]
    MissingRound { round: u32, previous: u32, path: PathBuf },

    /// A line of a reviewed-prompts file names no id.
    #[error("{path}: the line `{line}` names no prompt id; give review_samples.jsonl, JSONL with `id`, or one id per line")]
    ReviewedWithoutId { path: PathBuf, line: String },
}
