//! Rewards from rules: the wasmtime sandbox, rule and rule-set manifests, the on-disk registry,
//! aggregation, batch scoring, and the authoring workflow (scaffold, build, publish); and their
//! governance: signatures and trust, the hash-chained audit log, replay, and the auditor's reports.
//! The LLM judge, a native plugin pinned by its rule set but not sandboxed, loads in [`plugin`].

pub mod aggregate;
pub mod audit;
pub mod author;
pub mod diff;
pub mod doc;
pub mod hash;
pub mod inspect;
pub mod limits;
pub mod manifest;
pub mod outcome;
pub mod plugin;
pub mod publish;
pub mod registry;
pub mod replay;
pub mod ruleset;
pub mod sandbox;
pub mod scorer;
pub mod session;
pub mod signing;
#[cfg(test)]
pub(crate) mod testutil;
pub mod trust;
pub mod verify;

pub use aggregate::Reward;
pub use audit::AuditLog;
pub use limits::SandboxLimits;
pub use manifest::{RuleKind, RuleManifest};
pub use outcome::{Decision, Evaluation, OnError, OutcomeKind};
pub use plugin::{JudgePlugin, LoadedJudge, PluginError};
pub use registry::{AcceptedRuleSet, Registry, RegistryError, VerifiedJudge, VerifiedRule, VerifiedRuleSet};
pub use ruleset::{JudgeEntry, RuleSetManifest, VersionRef};
pub use sandbox::{CompiledRule, ModuleError, Sandbox};
pub use scorer::{LoadedRule, RuleSetScorer, SampleScore, ScorerError};
pub use session::{RuleFlags, RuleSource, ScoringSession, SessionError};
pub use trust::{Keyring, TrustPolicy};
