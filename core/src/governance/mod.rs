//! What an auditor and a rule author do around the runtime: the hash-chained audit log of every
//! load and evaluation ([`audit`]) and its exact replay ([`replay`]); the author's workflow,
//! scaffold and build ([`author`]) and publish and bump ([`publish`]); and the auditor's reports
//! on a rule set: [`inspect`], [`verify`], [`diff`] and the generated reward document ([`doc`]).

pub mod audit;
pub mod author;
pub mod diff;
pub mod doc;
pub mod inspect;
pub mod publish;
pub mod replay;
pub mod verify;

pub use audit::AuditLog;
