//! [`ScoringSession`]: the one way a command scores with a rule set. It takes the resolved trust
//! settings ([`RuleSource`]: registry, keyring, signature threshold, trust state, rollback
//! decision), accepts the rule set by exact version (sha256 pins, signatures, revision guard),
//! compiles it, logs the load and every evaluation to the hash-chained audit log, and turns an
//! `abort` decision into a typed error. The trainer, `medrl eval`, `rules score` and
//! `data score-references` all score through it, so a trust flag that reaches one reaches all.

use super::Reward;
use super::sandbox::Sandbox;
use super::scorer::{RuleSetScorer, SampleScore, ScorerError};
use crate::governance::audit::{Appended, AuditError, AuditLog};
use crate::registry::limits::HostLimits;
use crate::registry::ruleset::VersionRef;
use crate::registry::store::{AcceptedRuleSet, Registry, RegistryError};
use crate::registry::trust::{Keyring, REGISTRY_KEYRING, STATE_FILE, TrustPolicy};
use medrl_sdk::Sample;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where rule sets come from and how they must be trusted: what the global flags (`--registry`,
/// `--keyring`, `--min-signatures`, `--trust-state`, `--allow-rollback`) or a run's `[rules]`
/// table resolve to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSource {
    /// Registry root holding `rules/` and `rulesets/`.
    pub registry: PathBuf,
    /// Keyring of trusted keys; `None`: the registry's own (`<registry>/keys/keyring.toml`).
    /// Without either, every load is refused unless `allow_unsigned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<PathBuf>,
    /// Raises the keyring's `min_signatures`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_signatures: Option<usize>,
    /// Every accepted revision per rule set; `None`: the registry's own
    /// (`<registry>/trust-state.jsonl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_state: Option<PathBuf>,
    /// Accept a revision lower than the last accepted one (logged as a rollback).
    #[serde(default)]
    pub allow_rollback: bool,
    /// Score rule sets that cannot be verified (no keyring, or too few signatures): the
    /// operator's explicit opt-out, printed as a warning and recorded in the run's settings and
    /// the audit log. A signature that does not verify is refused all the same.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// A TOML file of the operator's ceilings on rule limits (`max_fuel`, `timeout_ms`,
    /// `max_memory_pages`, …; docs/sandbox.md); `None`: the host's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_limits: Option<PathBuf>,
}

impl Default for RuleSource {
    fn default() -> Self {
        RuleSource {
            registry: "data".into(),
            keyring: None,
            min_signatures: None,
            trust_state: None,
            allow_rollback: false,
            allow_unsigned: false,
            host_limits: None,
        }
    }
}

impl RuleSource {
    /// The keyring in force: the one named, else the registry's own if it has one.
    pub fn keyring_path(&self) -> Option<PathBuf> {
        self.keyring.clone().or_else(|| Some(self.registry.join(REGISTRY_KEYRING)).filter(|p| p.is_file()))
    }

    /// The trust state in force: the one named, else the registry's own.
    pub fn trust_state_path(&self) -> PathBuf {
        self.trust_state.clone().unwrap_or_else(|| self.registry.join(STATE_FILE))
    }

    /// The registry with this trust policy; reads and checks the keyring. Loads through it are
    /// verified against the keyring and checked against the trust state; without a keyring they
    /// are refused unless `allow_unsigned`.
    pub fn registry(&self) -> Result<Registry, RegistryError> {
        let keyring = self.keyring_path().as_deref().map(Keyring::read).transpose()?;
        let policy = TrustPolicy {
            keyring,
            min_signatures: self.min_signatures,
            state: Some(self.trust_state_path()),
            allow_rollback: self.allow_rollback,
            allow_unsigned: self.allow_unsigned,
        };
        let host_limits = match &self.host_limits {
            Some(path) => HostLimits::read(path)?,
            None => HostLimits::default(),
        };
        Ok(Registry::new(&self.registry).with_trust(policy).with_host_limits(host_limits))
    }

    /// `self` with every setting that `flags` sets explicitly put over it (the command line wins
    /// over a configuration file).
    pub fn overridden_by(mut self, flags: &RuleFlags) -> Self {
        if let Some(r) = &flags.registry {
            self.registry = r.clone();
        }
        if let Some(k) = &flags.keyring {
            self.keyring = Some(k.clone());
        }
        if let Some(m) = flags.min_signatures {
            self.min_signatures = Some(m);
        }
        if let Some(s) = &flags.trust_state {
            self.trust_state = Some(s.clone());
        }
        self.allow_rollback |= flags.allow_rollback;
        self.allow_unsigned |= flags.allow_unsigned;
        if let Some(h) = &flags.host_limits {
            self.host_limits = Some(h.clone());
        }
        self
    }
}

/// The trust settings given on the command line (or by environment), each `None`/`false` when
/// not given, so a configuration file's value stands unless a flag overrides it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleFlags {
    pub registry: Option<PathBuf>,
    pub keyring: Option<PathBuf>,
    pub min_signatures: Option<usize>,
    pub trust_state: Option<PathBuf>,
    pub allow_rollback: bool,
    pub allow_unsigned: bool,
    pub host_limits: Option<PathBuf>,
}

impl RuleFlags {
    /// The source these flags give on their own, over the defaults.
    pub fn source(&self) -> RuleSource {
        RuleSource::default().overridden_by(self)
    }
}

/// What stops a scoring session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Scorer(#[from] ScorerError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A rule failed and its `on_error` is `abort`: the batch has no rewards.
    #[error("rule `{rule}` failed on sample `{sample}` and its on_error is `abort`; the batch has no rewards (see the audit log for the error)")]
    Aborted {
        rule: String,
        sample: String,
        /// Every sample's score, so the caller can still log the failures.
        scores: Vec<SampleScore>,
        /// Where the batch went in the audit log.
        appended: Appended,
    },
}

/// One accepted, compiled rule set and the audit log it reports to.
pub struct ScoringSession {
    pub scorer: RuleSetScorer,
    /// What was accepted (signers, revision check), for the caller's messages and the log.
    pub accepted: AcceptedRuleSet,
    audit: Option<AuditLog>,
}

impl ScoringSession {
    /// Opens the audit log first (a rule set is recorded as accepted only when its load can be
    /// logged), accepts the rule set, compiles it and logs the load.
    pub fn open(registry: &Registry, reference: &VersionRef, audit_log: &Path, threads: usize) -> Result<Self, SessionError> {
        let log = AuditLog::open(audit_log)?;
        let mut session = Self::accept(registry, reference, threads)?;
        session.log_to(log)?;
        Ok(session)
    }

    /// Accepts and compiles the rule set without a log yet: for a caller that must refuse a bad
    /// rule set before it creates the folder its log lives in (the trainer, eval). Call
    /// [`Self::log_to`] before scoring.
    pub fn accept(registry: &Registry, reference: &VersionRef, threads: usize) -> Result<Self, SessionError> {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        Self::compile(registry.accept_ruleset(reference, now)?, registry.host_limits(), threads)
    }

    /// [`Self::accept`] for a resumed run: the rule set it was pinned to at step 0
    /// ([`Registry::accept_pinned`]), whatever revisions were accepted since.
    pub fn accept_pinned(registry: &Registry, reference: &VersionRef, sha256: &str, threads: usize) -> Result<Self, SessionError> {
        Self::compile(registry.accept_pinned(reference, sha256)?, registry.host_limits(), threads)
    }

    fn compile(accepted: AcceptedRuleSet, host_limits: HostLimits, threads: usize) -> Result<Self, SessionError> {
        let sandbox = Sandbox::with_limits(threads, host_limits).map_err(ScorerError::from)?;
        let scorer = RuleSetScorer::new(&sandbox, accepted.ruleset.clone())?;
        Ok(ScoringSession { scorer, accepted, audit: None })
    }

    /// Attaches the audit log and records the load in it.
    pub fn log_to(&mut self, log: AuditLog) -> Result<Appended, SessionError> {
        let appended = log.record_load(&self.accepted)?;
        self.audit = Some(log);
        Ok(appended)
    }

    /// The audit log, once attached.
    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// What a person running the command should be told about this load: that signatures were
    /// not checked, or that a rollback was allowed.
    pub fn notices(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.accepted.signers.is_none() {
            let log = self.audit.as_ref().map_or("the audit log".to_string(), |l| l.path().display().to_string());
            notes.push(format!(
                "warning: {} is scored UNSIGNED by --allow-unsigned: its signatures were not checked or too few were found; recorded in {log}",
                self.scorer.ruleset.manifest.reference()
            ));
        }
        if let Some(check) = self.accepted.revision.as_ref().filter(|c| c.rollback) {
            let from = check.previous.as_ref().map_or(0, |p| p.revision);
            let log = self.audit.as_ref().map_or("the audit log".to_string(), |l| l.path().display().to_string());
            notes.push(format!(
                "warning: rollback of {} to revision {} from revision {from}, allowed by --allow-rollback; recorded in {log}",
                self.scorer.ruleset.manifest.reference(),
                self.scorer.ruleset.manifest.revision
            ));
        }
        notes
    }

    /// Scores a batch and appends every evaluation to the audit log. An `abort` decision becomes
    /// [`SessionError::Aborted`] (after the batch is logged, so the failure is on record).
    pub fn score(&self, samples: &[Sample]) -> Result<(Vec<SampleScore>, Appended), SessionError> {
        let log = self.audit.as_ref().expect("ScoringSession::log_to is called before scoring");
        let scores = self.scorer.score_batch(samples);
        let appended = log.record_scores(&self.scorer, samples, &scores)?;
        if let Some((rule, sample)) = scores.iter().find_map(|s| match &s.reward {
            Reward::Aborted { rule } => Some((rule.clone(), s.sample_id.clone())),
            _ => None,
        }) {
            return Err(SessionError::Aborted { rule, sample, scores, appended });
        }
        Ok((scores, appended))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_a_configured_source_only_where_given() {
        let configured = RuleSource {
            registry: "reg".into(),
            keyring: Some("ring.toml".into()),
            min_signatures: Some(1),
            trust_state: None,
            allow_rollback: false,
            allow_unsigned: false,
            host_limits: None,
        };
        assert_eq!(configured.clone().overridden_by(&RuleFlags::default()), configured);
        let flags = RuleFlags {
            min_signatures: Some(2),
            trust_state: Some("t.json".into()),
            allow_rollback: true,
            allow_unsigned: true,
            ..RuleFlags::default()
        };
        let got = configured.overridden_by(&flags);
        assert!(got.allow_unsigned);
        assert_eq!((got.registry.as_path(), got.keyring.as_deref()), (Path::new("reg"), Some(Path::new("ring.toml"))));
        assert_eq!((got.min_signatures, got.trust_state.as_deref(), got.allow_rollback), (Some(2), Some(Path::new("t.json")), true));
        assert_eq!(RuleFlags::default().source(), RuleSource::default());
    }

    #[test]
    fn the_registry_brings_its_own_keyring_and_trust_state() {
        let dir = tempfile::tempdir().unwrap();
        let source = RuleSource { registry: dir.path().to_path_buf(), min_signatures: Some(3), ..RuleSource::default() };
        // No keyring anywhere: loads are refused (the trust policy has none and no opt-out).
        let registry = source.registry().unwrap();
        assert_eq!(registry.trust().state.as_deref(), Some(dir.path().join(STATE_FILE).as_path()));
        assert!(registry.trust().keyring.is_none() && !registry.trust().allow_unsigned);
        // The registry's own keyring is found and read.
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join(REGISTRY_KEYRING), "min_signatures = 1\n").unwrap();
        let registry = source.registry().unwrap();
        assert_eq!(registry.trust().keyring.as_ref().map(|k| k.path.clone()), Some(dir.path().join(REGISTRY_KEYRING)));
        assert_eq!(registry.trust().required(), 3);
        // A named one wins, and so does a named trust state.
        let ring = dir.path().join("ring.toml");
        std::fs::write(&ring, "min_signatures = 2\n").unwrap();
        let named = RuleSource { keyring: Some(ring.clone()), trust_state: Some("t.jsonl".into()), min_signatures: None, ..source };
        let registry = named.registry().unwrap();
        assert_eq!((registry.trust().keyring.as_ref().unwrap().path.as_path(), registry.trust().required()), (ring.as_path(), 2));
        assert_eq!(registry.trust().state.as_deref(), Some(Path::new("t.jsonl")));
    }
}
