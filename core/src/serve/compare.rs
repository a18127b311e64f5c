//! The demo page's side-by-side comparison and its vote. `POST /api/compare` answers one prompt
//! with two models under the same seed and settings (each answer admitted, generated, scored
//! and logged like any chat completion). Blinded, the server shuffles the two into `A` and `B`
//! and keeps which is which to itself until the vote: the page cannot show what it does not
//! know. `POST /api/vote` appends the vote to the votes log (JSONL) and reveals the models.

use super::App;
use super::completion::{self, random_u64};
use super::error::ApiError;
use super::openai::parse_chat_request;
use super::request_log::{LogOnDrop, conversation_sha256};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub const COMPARE_ROUTE: &str = "/api/compare";

/// Comparisons kept for a vote; the oldest is forgotten beyond this.
const KEPT: usize = 1024;

/// `POST /api/compare`, as the page sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareRequest {
    models: [String; 2],
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    /// Hide which model wrote which answer until the vote.
    #[serde(default)]
    blind: bool,
    #[serde(default)]
    medrl: Option<Value>,
}

/// A comparison waiting for its vote.
#[derive(Debug, Clone)]
struct Pending {
    id: String,
    blind: bool,
    /// Model names in label order: `[A, B]`.
    models: [String; 2],
    answer_ids: [String; 2],
    rewards: [Option<f64>; 2],
    seed: u64,
    prompt_sha256: String,
    prompt: Option<String>,
    voted: bool,
}

/// The comparisons that may still be voted on.
#[derive(Default)]
pub struct CompareBook {
    pending: Mutex<VecDeque<Pending>>,
}

/// One line of the votes log.
#[derive(Debug, Serialize)]
struct VoteRecord {
    time: String,
    compare_id: String,
    blind: bool,
    /// `A`, `B`, `tie` or `neither`.
    winner: String,
    /// The model the vote preferred; null for `tie` and `neither`.
    winner_model: Option<String>,
    model_a: String,
    model_b: String,
    answer_a: String,
    answer_b: String,
    reward_a: Option<f64>,
    reward_b: Option<f64>,
    ruleset: String,
    seed: u64,
    prompt_sha256: String,
    /// The prompt, only with `--log-text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
}

/// `POST /api/compare`.
pub async fn compare(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    match run_compare(&app, body).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn run_compare(app: &Arc<App>, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = super::api::body_or_error(body, app.limits.max_body_bytes)?;
    let req: CompareRequest = serde_json::from_slice(&body).map_err(super::openai::json_error)?;
    if req.prompt.trim().is_empty() {
        return Err(ApiError::invalid(Some("prompt"), "invalid_value", "the prompt is empty; type a question"));
    }
    let seed = req.seed.unwrap_or_else(random_u64);
    let mut messages = Vec::new();
    if let Some(system) = req.system.as_ref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": req.prompt}));
    // Each side is a chat request, checked by the same parser as the API's.
    let side = |name: &String| {
        let model = app.models.get(name).ok_or_else(|| ApiError::unknown_model(name, &app.models.names()))?;
        let chat = json!({
            "model": name, "messages": messages, "seed": seed, "max_tokens": req.max_tokens,
            "temperature": req.temperature, "top_p": req.top_p, "medrl": req.medrl,
        });
        Ok::<_, ApiError>((model, parse_chat_request(chat.to_string().as_bytes(), &app.limits, seed)?))
    };
    let (model_a, request_a) = side(&req.models[0])?;
    let (model_b, request_b) = side(&req.models[1])?;
    let prompt_sha256 = conversation_sha256(&request_a.messages);
    let log = || LogOnDrop::arrived(&app.requests, COMPARE_ROUTE, app.logs.keep_text);
    // Both answers at once, each on its own worker when two are free.
    let (a, b) = tokio::join!(async { completion::finish(completion::begin(app, model_a, request_a, log()).await?).await }, async {
        completion::finish(completion::begin(app, model_b, request_b, log()).await?).await
    },);
    let mut answers = [(req.models[0].clone(), a?), (req.models[1].clone(), b?)];
    if req.blind && random_u64() & 1 == 1 {
        answers.swap(0, 1);
    }
    let id = format!("cmp-{:016x}", random_u64());
    let pending = Pending {
        id: id.clone(),
        blind: req.blind,
        models: [answers[0].0.clone(), answers[1].0.clone()],
        answer_ids: [answers[0].1.medrl.scores.sample.id.clone(), answers[1].1.medrl.scores.sample.id.clone()],
        rewards: [answers[0].1.medrl.scores.reward, answers[1].1.medrl.scores.reward],
        seed,
        prompt_sha256,
        prompt: app.logs.keep_text.then(|| req.prompt.clone()),
        voted: false,
    };
    {
        let mut book = app.compares.pending.lock().expect("no panic under this lock");
        if book.len() == KEPT {
            book.pop_front();
        }
        book.push_back(pending);
    }
    let shown: Vec<Value> = answers
        .iter()
        .zip(["A", "B"])
        .map(|((model, a), label)| {
            let mut medrl = serde_json::to_value(&a.medrl).expect("the extension serialises");
            if req.blind {
                // The weights' digests would name the model.
                medrl.as_object_mut().expect("an object").remove("model");
            }
            json!({
                "label": label,
                "model": (!req.blind).then_some(model),
                "content": a.text,
                "finish_reason": a.finish.as_str(),
                "usage": a.usage,
                "medrl": medrl,
            })
        })
        .collect();
    Ok(json!({"compare_id": id, "blind": req.blind, "seed": seed, "answers": shown}))
}

/// `POST /api/vote`, as the page sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoteRequest {
    compare_id: String,
    /// `A`, `B`, `tie` or `neither`.
    winner: String,
}

/// `POST /api/vote`: records the vote once and reveals which model wrote which answer.
pub async fn vote(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    match record_vote(&app, body) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn record_vote(app: &App, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = super::api::body_or_error(body, app.limits.max_body_bytes)?;
    let req: VoteRequest = serde_json::from_slice(&body).map_err(super::openai::json_error)?;
    if !matches!(req.winner.as_str(), "A" | "B" | "tie" | "neither") {
        return Err(ApiError::invalid(Some("winner"), "invalid_value", format!("winner `{}` is not one of A, B, tie, neither", req.winner)));
    }
    let pending = {
        let mut book = app.compares.pending.lock().expect("no panic under this lock");
        let Some(p) = book.iter_mut().find(|p| p.id == req.compare_id) else {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                kind: "invalid_request_error",
                code: "compare_not_found",
                message: format!(
                    "no comparison `{}` is waiting for a vote (the server keeps the last {KEPT}, and forgets them when it restarts); run the comparison again",
                    req.compare_id
                ),
                param: Some("compare_id".into()),
                retry_after_s: None,
            });
        };
        if p.voted {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                kind: "invalid_request_error",
                code: "already_voted",
                message: format!("comparison `{}` already has its vote; each comparison takes one", p.id),
                param: Some("compare_id".into()),
                retry_after_s: None,
            });
        }
        p.voted = true;
        p.clone()
    };
    let winner_model = match req.winner.as_str() {
        "A" => Some(pending.models[0].clone()),
        "B" => Some(pending.models[1].clone()),
        _ => None,
    };
    app.votes.append(&VoteRecord {
        time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        compare_id: pending.id.clone(),
        blind: pending.blind,
        winner: req.winner.clone(),
        winner_model: winner_model.clone(),
        model_a: pending.models[0].clone(),
        model_b: pending.models[1].clone(),
        answer_a: pending.answer_ids[0].clone(),
        answer_b: pending.answer_ids[1].clone(),
        reward_a: pending.rewards[0],
        reward_b: pending.rewards[1],
        ruleset: app.scorer.ruleset.id.clone(),
        seed: pending.seed,
        prompt_sha256: pending.prompt_sha256.clone(),
        prompt: pending.prompt.clone(),
    });
    app.metrics.vote(&req.winner);
    Ok(
        json!({"recorded": true, "compare_id": pending.id, "winner": req.winner, "winner_model": winner_model, "A": pending.models[0], "B": pending.models[1]}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_s_requests_parse() {
        let r: CompareRequest = serde_json::from_str(
            r#"{"models": ["sft", "rl"], "prompt": "胸痛", "seed": 7, "max_tokens": 32, "temperature": 0.7, "blind": true, "medrl": {"category": "emergency"}}"#,
        )
        .unwrap();
        assert!(r.blind && r.seed == Some(7));
        let context: crate::serve::ScoringContext = serde_json::from_value(r.medrl.unwrap()).unwrap();
        assert_eq!(context.category, Some(medrl_sdk::Category::Emergency));
        let err = serde_json::from_str::<CompareRequest>(r#"{"models": ["sft"], "prompt": "x"}"#).unwrap_err().to_string();
        assert!(err.contains("invalid length 1"), "{err}");
        let err = serde_json::from_str::<VoteRequest>(r#"{"compare_id": "c", "winner": "A", "extra": 1}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }
}
