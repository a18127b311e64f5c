//! OpenAI's chat-completion wire format: the request as clients send it, checked into a
//! [`ChatRequest`], and the response and stream-chunk shapes (with the `medrl` extension).
//! Fields this server does not implement are refused by name rather than silently ignored:
//! an eval harness that sends `stop` or `logprobs` must learn they had no effect.

use super::error::ApiError;
use super::scoring::{RuleReport, ScoringContext};
use crate::model::Message;
use crate::rollout::{FinishReason, SamplingConfig};
use serde::{Deserialize, Serialize};

/// The request fields this server reads (for the message that refuses any other).
pub const SUPPORTED_FIELDS: &str =
    "model, messages, max_tokens (or max_completion_tokens), temperature, top_p, seed, stream, stream_options.include_usage, n (1), user, medrl";

/// `POST /v1/chat/completions`, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    n: Option<u32>,
    /// An end-user id for abuse tracking; accepted and not used.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    /// The extension: what the rules should know about the prompt.
    #[serde(default)]
    medrl: Option<ScoringContext>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    role: String,
    content: WireContent,
    /// A participant's name; accepted and not used (the chat templates have no place for it).
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
}

/// A message's content: a string, or a list of parts of which only `text` parts are served.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

#[derive(Debug, Deserialize)]
struct WirePart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// A checked chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// `max_new_tokens` is the request's `max_tokens`; `seed` is the request's, or a random one
    /// when it gave none (reported in the response, so the answer can be reproduced).
    pub sampling: SamplingConfig,
    /// Whether the request named its seed.
    pub seed_given: bool,
    pub stream: bool,
    /// Send a last chunk with `usage` (`stream_options.include_usage`).
    pub include_usage: bool,
    pub context: ScoringContext,
}

impl ChatRequest {
    /// The text the rules see as the prompt: the last user turn.
    pub fn prompt(&self) -> &str {
        self.messages.iter().rev().find(|m| m.role == "user").map_or("", |m| m.content.as_str())
    }
}

/// Parses and checks a request body. `random_seed` is used when the request gives no seed.
pub fn parse_chat_request(body: &[u8], limits: &super::config::Limits, random_seed: u64) -> Result<ChatRequest, ApiError> {
    let wire: WireRequest = serde_json::from_slice(body).map_err(json_error)?;
    if wire.model.is_empty() {
        return Err(ApiError::invalid(Some("model"), "invalid_value", "`model` is empty; name one of the models GET /v1/models lists"));
    }
    if let Some(n) = wire.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid(
            Some("n"),
            "unsupported_value",
            format!("n = {n}: this server answers with one choice per request; send n = 1 or leave it out"),
        ));
    }
    let messages = wire
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let param = format!("messages[{i}]");
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(ApiError::invalid(
                    Some(&param),
                    "unsupported_value",
                    format!("{param}.role is `{}`; this server takes system, user and assistant messages (no tools)", m.role),
                ));
            }
            let content = match m.content {
                WireContent::Text(t) => t,
                WireContent::Parts(parts) => {
                    let mut text = String::new();
                    for p in parts {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (kind, _) => {
                                return Err(ApiError::invalid(
                                    Some(&param),
                                    "unsupported_value",
                                    format!("{param}.content has a `{kind}` part; this server reads text parts only (`{{\"type\": \"text\", \"text\": …}}`)"),
                                ));
                            }
                        }
                    }
                    text
                }
            };
            Ok(Message { role: m.role, content })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !messages.iter().any(|m| m.role == "user") {
        return Err(ApiError::invalid(
            Some("messages"),
            "invalid_value",
            "`messages` has no user message; send at least one {\"role\": \"user\", \"content\": …}",
        ));
    }
    let max_tokens = wire.max_completion_tokens.or(wire.max_tokens).unwrap_or(limits.default_max_tokens);
    let param = if wire.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" };
    if max_tokens == 0 {
        return Err(ApiError::invalid(Some(param), "invalid_value", format!("{param} must be at least 1")));
    }
    if max_tokens > limits.max_tokens {
        return Err(ApiError::invalid(
            Some(param),
            "max_tokens_too_large",
            format!(
                "{param} = {max_tokens} is above this server's limit of {}; ask for at most {}, or restart the server with a larger --max-tokens-limit",
                limits.max_tokens, limits.max_tokens
            ),
        ));
    }
    let temperature = wire.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(Some("temperature"), "invalid_value", format!("temperature = {temperature} is outside [0, 2] (0 = greedy)")));
    }
    let top_p = wire.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(Some("top_p"), "invalid_value", format!("top_p = {top_p} is outside (0, 1] (1 = off)")));
    }
    let seed = wire.seed.unwrap_or(random_seed);
    Ok(ChatRequest {
        model: wire.model,
        messages,
        sampling: SamplingConfig { temperature, top_k: 0, top_p, max_new_tokens: max_tokens, seed },
        seed_given: wire.seed.is_some(),
        stream: wire.stream.unwrap_or(false),
        include_usage: wire.stream_options.is_some_and(|o| o.include_usage),
        context: wire.medrl.unwrap_or_default(),
    })
}

/// A JSON syntax error, or a field of the wrong name or type, as a 400 that says which.
pub fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::invalid(
            None,
            "invalid_json",
            format!(
                "the request body is not valid JSON ({e}); send a JSON object such as {{\"model\": …, \"messages\": [{{\"role\": \"user\", \"content\": …}}]}}"
            ),
        ),
        Category::Data => {
            let text = e.to_string();
            let hint = if text.contains("unknown field") { format!("; this server reads {SUPPORTED_FIELDS}") } else { String::new() };
            ApiError::invalid(None, "invalid_request", format!("the request does not fit the chat-completion format: {text}{hint}"))
        }
    }
}

/// `usage` of a response.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Usage {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

/// What the server adds to a response under `medrl`.
#[derive(Debug, Clone, Serialize)]
pub struct Extension {
    #[serde(flatten)]
    pub scores: RuleReport,
    /// The seed the answer was sampled with (the request's, or the one the server drew).
    pub seed: u64,
    pub model: ModelInfo,
    pub timing: Timing,
}

/// Which weights answered.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub model_sha256: String,
    /// Every adapter's digest, in stacking order, joined by `+`; null without adapters.
    pub adapter_sha256: Option<String>,
}

/// Where the time went.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    /// Waiting for a worker.
    pub queue_ms: f64,
    /// Prefill and decoding.
    pub generate_ms: f64,
    /// The rule set on the answer, and the audit log.
    pub score_ms: f64,
    /// Completion tokens per second of `generate_ms`.
    pub tokens_per_second: f64,
}

/// `POST /v1/chat/completions` without `stream`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: [Choice; 1],
    pub usage: Usage,
    pub medrl: Extension,
}

#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: Message,
    pub logprobs: Option<()>,
    pub finish_reason: &'static str,
}

impl ChatCompletion {
    pub fn new(head: &ResponseHead, text: String, finish: FinishReason, usage: Usage, medrl: Extension) -> ChatCompletion {
        ChatCompletion {
            id: head.id.clone(),
            object: "chat.completion",
            created: head.created,
            model: head.model.clone(),
            system_fingerprint: head.system_fingerprint.clone(),
            choices: [Choice { index: 0, message: Message::assistant(&text), logprobs: None, finish_reason: finish.as_str() }],
            usage,
            medrl,
        }
    }
}

/// What every response and chunk of one completion repeats.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
}

/// One `chat.completion.chunk` of a stream.
#[derive(Debug, Clone, Serialize)]
pub struct Chunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// On the chunk with the finish reason: the rule scores of the whole answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub medrl: Option<Box<Extension>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

/// The new part of the message: the role on the first chunk, text after.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Chunk {
    fn with(head: &ResponseHead, choices: Vec<ChunkChoice>) -> Chunk {
        Chunk {
            id: head.id.clone(),
            object: "chat.completion.chunk",
            created: head.created,
            model: head.model.clone(),
            system_fingerprint: head.system_fingerprint.clone(),
            choices,
            usage: None,
            medrl: None,
        }
    }

    /// The first chunk: the assistant's role and empty content, as OpenAI starts a stream.
    pub fn role(head: &ResponseHead) -> Chunk {
        let delta = Delta { role: Some("assistant"), content: Some(String::new()) };
        Chunk::with(head, vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: None }])
    }

    /// New text.
    pub fn text(head: &ResponseHead, text: String) -> Chunk {
        let delta = Delta { role: None, content: Some(text) };
        Chunk::with(head, vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason: None }])
    }

    /// The last chunk of the choice: an empty delta, the finish reason, and the scores.
    pub fn finish(head: &ResponseHead, finish: FinishReason, medrl: Extension) -> Chunk {
        let mut c = Chunk::with(head, vec![ChunkChoice { index: 0, delta: Delta::default(), logprobs: None, finish_reason: Some(finish.as_str()) }]);
        c.medrl = Some(Box::new(medrl));
        c
    }

    /// With `stream_options.include_usage`: no choices, the usage.
    pub fn usage(head: &ResponseHead, usage: Usage) -> Chunk {
        let mut c = Chunk::with(head, Vec::new());
        c.usage = Some(usage);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::config::Limits;

    fn parse(body: &str) -> Result<ChatRequest, ApiError> {
        parse_chat_request(body.as_bytes(), &Limits::default(), 77)
    }

    #[test]
    fn a_stock_client_request_is_read_with_openai_s_defaults() {
        let r = parse(r#"{"model": "rl", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}"#).unwrap();
        assert_eq!(r.messages, vec![Message::system("Be brief."), Message::user("Hi")]);
        assert_eq!(r.sampling, SamplingConfig { temperature: 1.0, top_k: 0, top_p: 1.0, max_new_tokens: 256, seed: 77 });
        assert!(!r.seed_given && !r.stream && !r.include_usage);
        assert_eq!(r.prompt(), "Hi");
        let r = parse(
            r#"{"model": "rl", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8, "temperature": 0, "top_p": 0.5, "seed": 3, "stream": true,
                "stream_options": {"include_usage": true}, "n": 1, "user": "u1", "temperature": 0, "medrl": {"category": "emergency"}}"#,
        );
        // A repeated key is a JSON error serde names.
        assert!(r.unwrap_err().message.contains("duplicate field `temperature`"));
        let r = parse(
            r#"{"model": "rl", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 8, "temperature": 0, "top_p": 0.5, "seed": 3, "stream": true,
                "stream_options": {"include_usage": true}, "n": 1, "user": "u1", "medrl": {"category": "emergency"}}"#,
        )
        .unwrap();
        assert_eq!(r.sampling, SamplingConfig { temperature: 0.0, top_k: 0, top_p: 0.5, max_new_tokens: 8, seed: 3 });
        assert!(r.seed_given && r.stream && r.include_usage);
        assert_eq!(r.context.category, Some(medrl_sdk::Category::Emergency));
    }

    #[test]
    fn each_bad_request_says_what_was_wrong_and_what_to_do() {
        let err = |body: &str| parse(body).unwrap_err();
        let user = r#""messages": [{"role": "user", "content": "x"}]"#;
        let e = err("{not json");
        assert_eq!((e.status.as_u16(), e.code), (400, "invalid_json"));
        assert!(e.message.contains("not valid JSON") && e.message.contains("send a JSON object"), "{}", e.message);
        let e = err(&format!(r#"{{"model": "rl", {user}, "max_tokens": 4096}}"#));
        assert_eq!((e.code, e.param.as_deref()), ("max_tokens_too_large", Some("max_tokens")));
        assert!(
            e.message.contains("max_tokens = 4096 is above this server's limit of 512") && e.message.contains("--max-tokens-limit"),
            "{}",
            e.message
        );
        let e = err(&format!(r#"{{"model": "rl", {user}, "stop": ["\n"]}}"#));
        assert!(e.message.contains("unknown field `stop`") && e.message.contains("this server reads model, messages"), "{}", e.message);
        assert!(err(&format!(r#"{{"model": "rl", {user}, "n": 2}}"#)).message.contains("n = 2"));
        assert!(err(&format!(r#"{{"model": "rl", {user}, "temperature": 3}}"#)).message.contains("temperature = 3 is outside [0, 2]"));
        assert!(err(&format!(r#"{{"model": "rl", {user}, "top_p": 0}}"#)).message.contains("top_p = 0 is outside (0, 1]"));
        assert!(err(&format!(r#"{{"model": "rl", {user}, "max_tokens": 0}}"#)).message.contains("max_tokens must be at least 1"));
        assert!(err(&format!(r#"{{"model": "rl", {user}, "seed": -1}}"#)).message.contains("invalid value: integer `-1`"));
        assert!(err(r#"{"model": "rl", "messages": [{"role": "system", "content": "x"}]}"#).message.contains("no user message"));
        assert!(err(r#"{"model": "rl", "messages": [{"role": "tool", "content": "x"}]}"#).message.contains("messages[0].role is `tool`"));
        let image = r#"{"model": "rl", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#;
        assert!(err(image).message.contains("has a `image_url` part"));
        assert!(err(r#"{"messages": []}"#).message.contains("missing field `model`"));
    }

    #[test]
    fn chunks_have_openai_s_shape() {
        let head = ResponseHead { id: "chatcmpl-1".into(), created: 5, model: "rl".into(), system_fingerprint: "medrl-ab".into() };
        let first = serde_json::to_value(Chunk::role(&head)).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": "rl", "system_fingerprint": "medrl-ab",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]})
        );
        let usage = serde_json::to_value(Chunk::usage(&head, Usage::new(3, 4))).unwrap();
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(usage["usage"], serde_json::json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}));
    }
}
