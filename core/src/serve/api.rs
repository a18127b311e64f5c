//! The OpenAI-compatible endpoints: `GET /v1/models` and `POST /v1/chat/completions` (plain or
//! streamed), so existing clients and evaluation harnesses work unchanged; each answer carries
//! the rule set's verdict in `medrl`.

use super::App;
use super::completion::{self, random_u64};
use super::error::ApiError;
use super::openai::{ChatCompletion, parse_chat_request};
use super::request_log::LogOnDrop;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

pub const CHAT_ROUTE: &str = "/v1/chat/completions";

/// `GET /v1/models`: every served model, with the digests of its weights under `medrl`.
pub async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    let data: Vec<Value> = app
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.name(),
                "object": "model",
                "created": app.started_unix,
                "owned_by": "medrl",
                "medrl": {
                    "model_dir": m.spec.model_dir,
                    "merged_adapters": m.spec.merged,
                    "adapter": m.spec.adapter,
                    "model_sha256": m.predictor.model_sha256,
                    "adapter_sha256": m.predictor.adapter_sha256,
                    "max_positions": m.max_positions(),
                }
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// The body as bytes, or the refusal: 413 over `--max-body-bytes`, 400 for an unreadable body.
pub fn body_or_error(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else {
            ApiError::invalid(None, "invalid_body", format!("the request body could not be read: {}", rejection.body_text()))
        }
    })
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let mut log = LogOnDrop::arrived(&app.requests, CHAT_ROUTE, app.logs.keep_text);
    let request = match body_or_error(body, app.limits.max_body_bytes).and_then(|b| parse_chat_request(&b, &app.limits, random_u64())) {
        Ok(r) => r,
        Err(e) => {
            log.failed(&e);
            return e.into_response();
        }
    };
    log.record.model = Some(request.model.clone());
    let Some(model) = app.models.get(&request.model) else {
        let e = ApiError::unknown_model(&request.model, &app.models.names());
        log.failed(&e);
        return e.into_response();
    };
    let (stream, include_usage) = (request.stream, request.include_usage);
    let begun = match completion::begin(&app, model, request, log).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if stream {
        let head = begun.head.clone();
        return super::sse::response(head, include_usage, begun.progress).into_response();
    }
    let head = begun.head.clone();
    match completion::finish(begun).await {
        Ok(a) => Json(ChatCompletion::new(&head, a.text, a.finish, a.usage, a.medrl)).into_response(),
        Err(e) => e.into_response(),
    }
}
