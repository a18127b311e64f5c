//! Rewards from rules: the wasmtime sandbox, rule and rule-set manifests, the on-disk registry,
//! aggregation, batch scoring, and the authoring workflow (scaffold, build, publish).

pub mod aggregate;
pub mod author;
pub mod hash;
pub mod limits;
pub mod manifest;
pub mod outcome;
pub mod publish;
pub mod registry;
pub mod ruleset;
pub mod sandbox;
#[cfg(test)]
pub(crate) mod testutil;
pub mod scorer;

pub use aggregate::Reward;
pub use limits::SandboxLimits;
pub use manifest::{RuleKind, RuleManifest};
pub use outcome::{Decision, Evaluation, OnError, OutcomeKind};
pub use registry::{Registry, RegistryError, VerifiedRule, VerifiedRuleSet};
pub use ruleset::{RuleSetManifest, VersionRef};
pub use sandbox::{CompiledRule, ModuleError, Sandbox};
pub use scorer::{LoadedRule, RuleSetScorer, SampleScore, ScorerError};
