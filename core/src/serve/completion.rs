//! One answer, start to end: admitted ([`super::admission`]), generated on a worker thread
//! (never on the async runtime), streamed as it is drawn when asked, scored by the rule set,
//! logged, counted. The chat-completion handler and the demo page's comparison both answer
//! through [`begin`], so both are held to the same limits and leave the same records.

use super::App;
use super::admission::Running;
use super::error::ApiError;
use super::models::ServedModel;
use super::openai::{ChatRequest, Extension, ModelInfo, ResponseHead, Timing, Usage};
use super::request_log::LogOnDrop;
use super::sse::IncrementalText;
use crate::rollout::{FinishReason, RolloutError};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// A complete, scored answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub finish: FinishReason,
    pub usage: Usage,
    pub medrl: Extension,
}

/// What the worker tells the request's handler, in this order: `Started` (or `Failed`), then
/// `Text` pieces when streaming, then `Done` (or `Failed`).
#[derive(Debug)]
pub enum Progress {
    /// The prompt fits and generation begins.
    Started {
        prompt_tokens: usize,
    },
    /// Newly settled answer text (streaming only).
    Text(String),
    Done(Box<Answer>),
    Failed(ApiError),
}

/// An answer under way: its id and the worker's messages.
pub struct Begun {
    pub head: ResponseHead,
    /// After `Started`: the rest of the worker's messages.
    pub progress: mpsc::UnboundedReceiver<Progress>,
}

/// How a worker's run ended early.
enum Stop {
    /// The handler is gone (its client hung up): nobody to answer.
    Cancelled,
    Failed(ApiError),
}

/// Random bits from the OS, for completion ids and the seeds of requests that give none.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    u64::from_le_bytes(bytes)
}

/// Starts an answer of `model` to `request`: takes a place (503 when full), waits for a worker,
/// and returns once the worker has checked that the prompt fits the model (an error before
/// that is the request's HTTP error, not an event of a stream already begun). `log` goes with
/// the request and is written when the answer ends, whatever the end.
pub async fn begin(app: &Arc<App>, model: Arc<ServedModel>, request: ChatRequest, mut log: LogOnDrop) -> Result<Begun, ApiError> {
    let id = format!("chatcmpl-{:016x}{:08x}", random_u64(), random_u64() as u32);
    log.record.id = Some(id.clone());
    log.record.model = Some(model.name().to_string());
    log.record.stream = request.stream;
    log.record.seed = Some(request.sampling.seed);
    log.conversation(&request.messages);
    let waiting = match app.admission.enter() {
        Ok(w) => w,
        Err(e) => {
            log.failed(&e);
            return Err(e);
        }
    };
    // A client that hangs up while waiting drops this future, its place, and its log line (499).
    let running = waiting.start().await;
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let head = ResponseHead { id, created, model: model.name().to_string(), system_fingerprint: model.fingerprint().to_string() };
    let (tx, mut progress) = mpsc::unbounded_channel();
    let (worker_app, worker_head) = (app.clone(), head.clone());
    tokio::task::spawn_blocking(move || work(&worker_app, &model, &request, &worker_head, running, log, &tx));
    match progress.recv().await {
        Some(Progress::Started { .. }) => Ok(Begun { head, progress }),
        Some(Progress::Failed(e)) => Err(e),
        Some(other) => Err(ApiError::internal(format!("the worker sent {other:?} before starting; this is a bug"))),
        None => Err(ApiError::internal("the worker ended without an answer; see the server's log")),
    }
}

/// Waits for the end of a non-streamed answer.
pub async fn finish(mut begun: Begun) -> Result<Answer, ApiError> {
    loop {
        match begun.progress.recv().await {
            Some(Progress::Done(answer)) => return Ok(*answer),
            Some(Progress::Failed(e)) => return Err(e),
            Some(Progress::Text(_) | Progress::Started { .. }) => continue,
            None => return Err(ApiError::internal("the worker ended without an answer; see the server's log")),
        }
    }
}

/// The worker: runs on a blocking thread holding `running` (the worker slot) until the answer
/// is complete, then records it.
fn work(
    app: &App,
    model: &ServedModel,
    request: &ChatRequest,
    head: &ResponseHead,
    running: Running,
    mut log: LogOnDrop,
    tx: &mpsc::UnboundedSender<Progress>,
) {
    let queue_ms = running.queued.as_secs_f64() * 1e3;
    log.record.queue_ms = Some(queue_ms);
    match answer(app, model, request, head, queue_ms, &mut log, tx) {
        Ok(answer) => {
            log.record.status = 200;
            log.record.completion_tokens = Some(answer.usage.completion_tokens);
            log.record.finish_reason = Some(answer.finish.as_str());
            log.record.reward = answer.medrl.scores.reward;
            log.response(&answer.text);
            app.metrics.answer(model.name(), answer.usage.prompt_tokens, answer.usage.completion_tokens, log.elapsed().as_secs_f64());
            let _ = tx.send(Progress::Done(Box::new(answer)));
        }
        // The log line says 499: the client went away.
        Err(Stop::Cancelled) => {}
        Err(Stop::Failed(e)) => {
            tracing::warn!(id = %head.id, code = e.code, "{}", e.message);
            log.failed(&e);
            let _ = tx.send(Progress::Failed(e));
        }
    }
    // The worker slot is free before the log line is written.
    drop(running);
}

fn answer(
    app: &App,
    model: &ServedModel,
    request: &ChatRequest,
    head: &ResponseHead,
    queue_ms: f64,
    log: &mut LogOnDrop,
    tx: &mpsc::UnboundedSender<Progress>,
) -> Result<Answer, Stop> {
    let internal = |what: &str, e: &dyn std::fmt::Display| Stop::Failed(ApiError::internal(format!("{what}: {e}")));
    let prompt = model.encode(&request.messages).map_err(|e| {
        Stop::Failed(ApiError::invalid(
            Some("messages"),
            "invalid_value",
            format!("the conversation does not fit the chat template of `{}`: {e}", model.name()),
        ))
    })?;
    let (n, new, max) = (prompt.len(), request.sampling.max_new_tokens, model.max_positions());
    if n + new > max {
        return Err(Stop::Failed(ApiError::invalid(
            Some("messages"),
            "context_length_exceeded",
            format!(
                "the conversation is {n} tokens and max_tokens is {new}: {} exceeds the {max} positions of `{}`; shorten the conversation or lower max_tokens",
                n + new,
                model.name()
            ),
        )));
    }
    log.record.prompt_tokens = Some(n);
    tx.send(Progress::Started { prompt_tokens: n }).map_err(|_| Stop::Cancelled)?;

    let started = Instant::now();
    let mut text = IncrementalText::default();
    let mut decode_error = None;
    let mut observe = |token: u32| {
        if tx.is_closed() {
            return ControlFlow::Break(());
        }
        if request.stream {
            match text.push(token, |t| model.decode(t)) {
                Ok(Some(piece)) => {
                    if tx.send(Progress::Text(piece)).is_err() {
                        return ControlFlow::Break(());
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    decode_error = Some(e);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    };
    let generated = match model.generate(&prompt, &request.sampling, &mut observe) {
        Ok(g) => g,
        Err(RolloutError::Cancelled { .. }) => {
            return Err(match decode_error.take() {
                Some(e) => internal("decoding the answer failed", &e),
                None => Stop::Cancelled,
            });
        }
        Err(e) => return Err(internal("generation failed", &e)),
    };
    let generate_s = started.elapsed().as_secs_f64();
    let full = model.decode(&generated.tokens).map_err(|e| internal("decoding the answer failed", &e))?;
    if request.stream
        && let Some(rest) = text.finish(&full)
    {
        tx.send(Progress::Text(rest)).map_err(|_| Stop::Cancelled)?;
    }

    let scoring = Instant::now();
    let sample = request.context.sample(&head.id, request.prompt(), &full);
    let scores = app
        .scorer
        .score(&sample)
        .map_err(|e| internal("the answer was generated but could not be scored and recorded, so it is not returned", &e))?;
    let score_ms = scoring.elapsed().as_secs_f64() * 1e3;
    let completion_tokens = generated.tokens.len();
    let medrl = Extension {
        scores,
        seed: request.sampling.seed,
        model: ModelInfo {
            name: model.name().to_string(),
            model_sha256: model.predictor.model_sha256.clone(),
            adapter_sha256: model.predictor.adapter_sha256.clone(),
        },
        timing: Timing {
            queue_ms,
            generate_ms: generate_s * 1e3,
            score_ms,
            tokens_per_second: if generate_s > 0.0 { completion_tokens as f64 / generate_s } else { 0.0 },
        },
    };
    Ok(Answer { text: full, finish: generated.finish, usage: Usage::new(n, completion_tokens), medrl })
}
