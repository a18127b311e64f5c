//! The reward runtime: rules run in the wasmtime sandbox ([`sandbox`]), each evaluation becomes
//! a typed outcome and a decision under the rule's `on_error` policy ([`outcome`]), the decisions
//! of a rule set aggregate into one reward ([`aggregate`]), a batch is scored on all cores
//! ([`scorer`]) with the LLM judge, a native plugin pinned by its rule set but not sandboxed,
//! loaded by [`plugin`]; and [`session`], the one way a command scores: accept the rule set,
//! compile it, log to the audit trail, turn an abort into an error.
//!
//! Where a rule set comes from and why it can be trusted is [`crate::registry`]; what an auditor
//! does with the record is [`crate::governance`].

pub mod aggregate;
pub mod outcome;
pub mod plugin;
pub mod sandbox;
pub mod scorer;
pub mod session;
#[cfg(test)]
pub(crate) mod testutil;

pub use aggregate::Reward;
pub use outcome::{Decision, Evaluation, OnError, OutcomeKind};
pub use plugin::{JudgePlugin, LoadedJudge, PluginError};
pub use sandbox::{CompiledRule, ModuleError, Sandbox};
pub use scorer::{LoadedRule, RuleSetScorer, SampleScore, ScorerError};
pub use session::{RuleFlags, RuleSource, ScoringSession, SessionError};
