//! `medrl serve`: the models behind an OpenAI-compatible API and a demo page, every answer
//! scored by the rule set through the same scoring session as training.
//!
//! - [`config`]: the models to load (`NAME=DIR[:ADAPTER…]`), the address, the limits, the logs.
//! - [`models`]: the named models, loaded once through `medrl predict`'s loader and shared.
//! - [`admission`]: the worker pool's gate: `workers` at once, `queue` waiting, 503 beyond.
//! - [`completion`]: one answer: admitted, generated on a worker thread, scored, logged, counted.
//! - [`openai`]: the chat-completion wire format (request checks, responses, stream chunks).
//! - [`api`]: `GET /v1/models`, `POST /v1/chat/completions`.
//! - [`sse`]: streamed answers as server-sent events; text released as it settles.
//! - [`scoring`]: an answer as a rule sample, its scores as the `medrl` extension.
//! - [`compare`]: the page's side-by-side comparison, blinded A/B and the votes log.
//! - [`request_log`]: the JSONL request log (prompt hashes unless `--log-text`).
//! - [`metrics`]: `/metrics` in Prometheus' text format.
//! - [`page`]: the demo page, compiled into the binary.
//! - [`error`]: every refusal, in OpenAI's error shape.
//! - [`server`]: the shared state, the routes, binding and graceful shutdown.
//!
//! Generation never runs on the async runtime: a request waits (asynchronously) for one of the
//! `workers` slots, then runs on a blocking thread. The page and the API share that path.

pub mod admission;
pub mod api;
pub mod compare;
pub mod completion;
pub mod config;
pub mod error;
pub mod metrics;
pub mod models;
pub mod openai;
pub mod page;
pub mod request_log;
pub mod scoring;
pub mod server;
pub mod sse;

pub use config::{Limits, LogPaths, ModelSpec, ServeConfig};
pub use error::ApiError;
pub use models::{LoadError, Models, ServedModel};
pub use scoring::{AnswerScorer, RuleReport, ScoringContext};
pub use server::{App, ServeError, Server};
