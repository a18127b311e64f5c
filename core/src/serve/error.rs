//! [`ApiError`]: every refusal of the server, as OpenAI's error shape
//! (`{"error": {"message", "type", "param", "code"}}`) with the HTTP status that goes with it.
//! A message says what was wrong, the value, and what to do, as the command line's errors do.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A request the server refuses or could not answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `server_error`.
    pub kind: &'static str,
    /// A stable machine-readable reason (`model_not_found`, `max_tokens_too_large`, …).
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// Seconds after which a retry may succeed (503), sent as `Retry-After`.
    pub retry_after_s: Option<u64>,
}

/// The body of an error response.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl ApiError {
    /// 400: the request is malformed or asks for something this server does not do.
    pub fn invalid(param: Option<&str>, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code,
            message: message.into(),
            param: param.map(str::to_string),
            retry_after_s: None,
        }
    }

    /// 404: `model` names no model this server loaded.
    pub fn unknown_model(name: &str, available: &[String]) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: "model_not_found",
            message: format!(
                "the model `{name}` does not exist on this server; use one of {} (GET /v1/models lists them)",
                available.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
            ),
            param: Some("model".into()),
            retry_after_s: None,
        }
    }

    /// 413: the body is larger than `--max-body-bytes`.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "invalid_request_error",
            code: "request_too_large",
            message: format!(
                "the request body is larger than this server's limit of {limit} bytes; send a shorter conversation, or restart the server with a larger --max-body-bytes"
            ),
            param: None,
            retry_after_s: None,
        }
    }

    /// 503: every worker is busy and the queue is full.
    pub fn overloaded(workers: usize, queue: usize, retry_after_s: u64) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            code: "server_overloaded",
            message: format!(
                "the server is busy: all {workers} workers are answering and {queue} requests are already waiting; retry after {retry_after_s} s (Retry-After), or restart it with more --workers or a longer --queue"
            ),
            param: None,
            retry_after_s: Some(retry_after_s),
        }
    }

    /// 404 for a path the server does not have, 405 for a method a path does not take.
    pub fn no_route(status: StatusCode, method: &str, path: &str) -> ApiError {
        let message = if status == StatusCode::METHOD_NOT_ALLOWED {
            format!("{path} does not take {method}; see docs/serve.md for each endpoint's method")
        } else {
            format!(
                "there is no {path} on this server; the API is GET /v1/models and POST /v1/chat/completions (docs/serve.md), the demo page is at /"
            )
        };
        ApiError { status, kind: "invalid_request_error", code: "unknown_url", message, param: None, retry_after_s: None }
    }

    /// 500: the server failed on a request it accepted (a bug or the machine, not the request).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            code: "internal_error",
            message: message.into(),
            param: None,
            retry_after_s: None,
        }
    }

    /// The JSON body alone (for a server-sent event carrying an error).
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(ErrorBody {
            error: ErrorDetail { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code },
        })
        .expect("an error body serialises")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after_s {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_openai_s_shape_and_say_what_to_do() {
        let e = ApiError::unknown_model("gpt-4", &["sft".into(), "rl".into()]);
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {
                "message": "the model `gpt-4` does not exist on this server; use one of `sft`, `rl` (GET /v1/models lists them)",
                "type": "invalid_request_error", "param": "model", "code": "model_not_found"
            }})
        );
        let busy = ApiError::overloaded(2, 32, 3).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "3");
        assert!(ApiError::too_large(1024).message.contains("--max-body-bytes"));
    }
}
