//! Prompt sets: the schema every item follows, reading the four splits with `file:line` errors,
//! validation (schema, duplicate ids, exact and near duplicates, leakage between evaluation and
//! training splits), the seeded stratified sampler that writes the trainer's prompts, the data
//! card, and the reference answers scored under the shipped rules.
//!
//! - [`item`]: [`Item`], [`Split`], [`Loc`]: one schema for pool, sft, gold and redteam.
//! - [`sets`]: [`DataSets::load`] reads `<dir>/{pool,sft,gold,redteam}.jsonl`.
//! - [`near_dup`]: character 3-gram sets and their exact Jaccard similarity.
//! - [`validate`]: every check, each finding a [`Problem`].
//! - [`build_prompts`]: stratified, seeded sampling with a high-risk floor and category quotas.
//! - [`stats`]: counts per split.
//! - [`card`]: the data card, `data/DATA_CARD.md`.
//! - [`import`]: outside question sets (JSONL, exam, dialogue) turned into pool items with licence and origin.
//! - [`references`]: reference answers as samples, and their scores summarised.
//!
//! `docs/data.md` documents the schema and the commands.

pub mod build_prompts;
pub mod card;
pub mod error;
pub mod import;
pub mod item;
pub mod near_dup;
pub mod references;
pub mod sets;
pub mod stats;
pub mod validate;

pub use build_prompts::{SamplingConfig, Strata, TrainingPrompt};
pub use error::DataError;
pub use item::{Item, Loc, Located, Quality, Split};
pub use sets::DataSets;
pub use validate::{Problem, Validation, validate};
