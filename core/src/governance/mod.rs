//! What an auditor and a rule author do around the runtime: the hash-chained audit log of every
//! load, evaluation and reward ([`audit`]), its check and exact replay ([`replay`]), the heads and
//! signed manifest that anchor a run's log ([`anchor`]); the author's workflow,
//! scaffold and build ([`author`]) and publish and bump ([`publish`]); and the auditor's reports
//! on a rule set: [`inspect`], [`verify`], [`diff`] and the generated reward document ([`doc`]);
//! and how well the rules agree with clinician labels ([`rules_eval`], `medrl rules eval`).

pub mod anchor;
pub mod audit;
pub mod author;
pub mod diff;
pub mod doc;
pub mod explain;
pub mod inspect;
pub mod publish;
pub mod replay;
pub mod rules_eval;
pub mod verify;

pub use audit::AuditLog;
