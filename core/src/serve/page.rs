//! The demo page at `/`: plain HTML, CSS and JavaScript compiled into the binary
//! (`include_str!`), nothing loaded from elsewhere, so it works offline; a Content-Security-Policy
//! of `'self'` holds the browser to that. `/api/info` tells the page what is served.

use super::App;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// Scripts, styles, fetches and images from this server only; no frames, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// `GET /api/info`: the models, the rule set, and the limits the page's inputs respect.
pub async fn info(State(app): State<Arc<App>>) -> Json<Value> {
    let models: Vec<Value> =
        app.models.iter().map(|m| json!({"name": m.name(), "adapters": m.spec.merged.len() + usize::from(m.spec.adapter.is_some())})).collect();
    Json(json!({
        "models": models,
        "ruleset": app.scorer.ruleset,
        "limits": {"max_tokens": app.limits.max_tokens, "default_max_tokens": app.limits.default_max_tokens},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (name, text) in [("index.html", INDEX_HTML), ("app.js", APP_JS), ("style.css", STYLE_CSS)] {
            for outside in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!text.contains(outside), "{name} contains `{outside}`: the page must work offline");
            }
        }
        // Everything the page references is served here.
        for path in ["/assets/style.css", "/assets/app.js"] {
            assert!(INDEX_HTML.contains(path));
        }
        for endpoint in ["/api/info", "/v1/chat/completions", "/api/compare", "/api/vote"] {
            assert!(APP_JS.contains(endpoint), "app.js does not call {endpoint}");
        }
        assert!(INDEX_HTML.contains("Not for clinical use."));
    }
}
