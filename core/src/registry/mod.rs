//! Rules and rule sets at rest: the manifests ([`manifest`], [`ruleset`]) with the host's limits
//! ([`limits`]), the on-disk registry that checks every byte on every load ([`store`]), sha256
//! and canonical JSON ([`hash`]), Ed25519 signatures ([`signing`]) and the keyring, signature
//! threshold and revision guard a load must pass ([`trust`]).

pub mod hash;
pub mod limits;
pub mod manifest;
pub mod ruleset;
pub mod signing;
pub mod store;
pub mod trust;

#[cfg(test)]
mod proptests;

pub use limits::SandboxLimits;
pub use manifest::{RuleKind, RuleManifest};
pub use ruleset::{JudgeEntry, RuleSetManifest, VersionRef};
pub use store::{AcceptedRuleSet, Registry, RegistryError, VerifiedJudge, VerifiedRule, VerifiedRuleSet};
pub use trust::{Keyring, TrustPolicy};
