//! `medrl-sdk`: the one source of truth for both sides of the rule boundary.
//!
//! - [`abi`]: the `medrl-rule/1` contract: version, export names, input and output types.
//! - [`guest`] and [`export_rule!`]: what a rule author needs to turn one function into a rule module.
//! - [`text`]: Chinese and English text helpers (normalisation, negation-aware phrase matching,
//!   sentence splitting, n-gram repetition).
//! - [`vectors`]: golden test vectors and how an output is checked against one, used by the
//!   rule crates' native tests and by the host's `medrl rules test` alike.
//! - [`plugin`] and [`export_judge!`]: the `medrl-judge/1` C ABI of native judge plugins.

pub mod abi;
pub mod guest;
// Native only: rule modules (wasm32) never see the plugin ABI, so their bytes do not depend on it.
#[cfg(not(target_arch = "wasm32"))]
pub mod plugin;
pub mod text;
pub mod vectors;

pub use abi::{
    ABI_MAJOR, ABI_SECTION, ABI_VERSION, Category, EXPORT_ALLOC, EXPORT_EVALUATE, EXPORT_MEMORY,
    Expect, Hit, Lang, Risk, RuleInput, RuleOutput, Sample,
};
