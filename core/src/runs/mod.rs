//! Watching a run: what `medrl train` and `medrl sft` print when nobody is looking at a terminal,
//! and what can be read back from a run folder while it trains or after.
//!
//! - [`progress`]: the plain progress line (step, reward, KL, β, loss, tokens/s, elapsed, ETA)
//!   and when one is due;
//! - [`scalars`]: the run's scalar series read from `rewards.csv`, `kl_metrics.jsonl` and
//!   `metrics.jsonl`, under one tag per figure (the one place those figures are named);
//! - [`plot`]: the curves as SVG (`medrl runs plot`, and the end of `train` and `sft`);
//! - [`events`]: the scalars as a TensorBoard event file, rebuilt from the files
//!   (the trainer writes one as it goes through [`crate::training::tfevents`]);
//! - [`compare`]: two runs side by side (`medrl runs compare`).
//!
//! See docs/runs.md.

pub mod compare;
pub mod events;
pub mod plot;
pub mod progress;
pub mod scalars;

pub use compare::{CompareError, Comparison, compare};
pub use progress::{Figure, ProgressEvery, ProgressLines, parse_line};
pub use scalars::{RewardMeans, RunKind, RunScalars, ScalarsError};
