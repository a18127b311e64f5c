//! The server itself: the shared state every handler reads ([`App`]), the routes, the request
//! counting middleware, `/healthz` and `/metrics`, binding, and the run until SIGINT or SIGTERM
//! (graceful: answers under way are finished).

use super::admission::Admission;
use super::compare::CompareBook;
use super::config::{LogPaths, ServeConfig};
use super::error::ApiError;
use super::metrics::Metrics;
use super::models::Models;
use super::request_log::JsonlWriter;
use super::scoring::AnswerScorer;
use super::{api, compare, page};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What stops the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid limits: {0}")]
    Limits(String),
    #[error("cannot open the log {path}: {source}")]
    Log { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}; pick another --port (0 picks a free one) or stop what holds it")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the server stopped on an error: {0}")]
    Serve(std::io::Error),
}

/// What every handler shares.
pub struct App {
    pub models: Models,
    pub scorer: AnswerScorer,
    pub admission: Arc<Admission>,
    pub limits: super::config::Limits,
    pub logs: LogPaths,
    pub requests: JsonlWriter,
    pub votes: JsonlWriter,
    pub compares: CompareBook,
    pub metrics: Metrics,
    /// Unix seconds of the start (`created` of every model in `/v1/models`).
    pub started_unix: u64,
}

/// A bound server, not yet serving.
pub struct Server {
    runtime: tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    router: Router,
    app: Arc<App>,
}

impl Server {
    /// Checks the limits, opens the logs, starts the runtime and binds the address. Nothing is
    /// served until [`Server::run`].
    pub fn bind(config: &ServeConfig, models: Models, scorer: AnswerScorer) -> Result<Server, ServeError> {
        config.limits.validate().map_err(ServeError::Limits)?;
        let open = |path: &PathBuf| JsonlWriter::open(path).map_err(|source| ServeError::Log { path: path.clone(), source });
        let app = Arc::new(App {
            models,
            scorer,
            admission: Admission::new(config.limits.workers, config.limits.queue),
            limits: config.limits,
            requests: open(&config.logs.requests)?,
            votes: open(&config.logs.votes)?,
            logs: config.logs.clone(),
            compares: CompareBook::default(),
            metrics: Metrics::default(),
            started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.http_threads.max(1))
            .thread_name("medrl-serve-http")
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let listener =
            runtime.block_on(tokio::net::TcpListener::bind(config.addr)).map_err(|source| ServeError::Bind { addr: config.addr, source })?;
        Ok(Server { runtime, listener, router: router(app.clone()), app })
    }

    /// The address it listens on (the port chosen when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves until SIGINT or SIGTERM, then finishes the answers under way and returns.
    pub fn run(self) -> Result<(), ServeError> {
        let Server { runtime, listener, router, .. } = self;
        runtime.block_on(async move { axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await }).map_err(ServeError::Serve)
    }
}

/// Every route.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/assets/app.js", get(page::script))
        .route("/assets/style.css", get(page::style))
        .route("/api/info", get(page::info))
        .route(compare::COMPARE_ROUTE, post(compare::compare))
        .route("/api/vote", post(compare::vote))
        .route("/v1/models", get(api::models))
        .route(api::CHAT_ROUTE, post(api::chat_completions))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(app.clone(), count_requests))
        .layer(DefaultBodyLimit::max(app.limits.max_body_bytes))
        .with_state(app)
}

/// Counts every request by its route (the pattern, not the raw path: no unbounded labels) and
/// the status it got.
async fn count_requests(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    app.metrics.request(&route, response.status().as_u16());
    response
}

/// `/healthz`: 200 once the models and the rule set are loaded (they are before the socket is
/// bound), with what is served.
async fn healthz(State(app): State<Arc<App>>) -> Response {
    axum::Json(serde_json::json!({
        "status": "ok",
        "models": app.models.names(),
        "ruleset": app.scorer.ruleset.id,
        "queue_depth": app.admission.queue_depth(),
        "running": app.admission.running(),
    }))
    .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render(&app.admission)).into_response()
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(StatusCode::NOT_FOUND, method.as_str(), uri.path())
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(StatusCode::METHOD_NOT_ALLOWED, method.as_str(), uri.path())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing the answers under way");
}
