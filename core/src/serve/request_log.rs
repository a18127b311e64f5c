//! The request log: one JSON line per completion request, whatever became of it (answered,
//! refused, cancelled by its client), with the conversation's sha256 instead of its text unless
//! the operator passed `--log-text`. Lines are written by one thread of their own
//! ([`JsonlWriter`]), so a handler never waits on the disk.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Instant, SystemTime};

/// Appends JSON lines to a file from a thread of its own; each line is written whole and flushed.
#[derive(Clone)]
pub struct JsonlWriter {
    lines: mpsc::Sender<String>,
    path: PathBuf,
}

impl JsonlWriter {
    /// Opens (creating it and its folder when missing) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<JsonlWriter> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let (lines, rx) = mpsc::channel::<String>();
        let shown = path.display().to_string();
        std::thread::Builder::new().name("medrl-serve-log".into()).spawn(move || {
            for line in rx {
                if let Err(e) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
                    tracing::error!(file = %shown, error = %e, "cannot append to the log");
                }
            }
        })?;
        Ok(JsonlWriter { lines, path: path.to_path_buf() })
    }

    /// Queues one record; it reaches the file in the order queued.
    pub fn append<T: Serialize>(&self, record: &T) {
        let mut line = serde_json::to_string(record).expect("a log record serialises");
        line.push('\n');
        // The writer thread ends only when every sender is gone, so this cannot fail.
        let _ = self.lines.send(line);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// sha256 of a conversation: of the JSON array of its `{role, content}` messages, as sent.
pub fn conversation_sha256(messages: &[crate::model::Message]) -> String {
    hex::encode(Sha256::digest(serde_json::to_vec(messages).expect("messages serialise")))
}

/// One line of the request log.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// When the request arrived (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// The completion id (`chatcmpl-…`); null when the request was refused before it had one.
    pub id: Option<String>,
    pub route: &'static str,
    pub model: Option<String>,
    /// HTTP status; 499 when the client went away before the answer was complete.
    pub status: u16,
    pub stream: bool,
    pub seed: Option<u64>,
    pub prompt_sha256: Option<String>,
    /// The conversation, only with `--log-text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<crate::model::Message>>,
    /// The answer, only with `--log-text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    pub prompt_tokens: Option<usize>,
    pub completion_tokens: Option<usize>,
    pub finish_reason: Option<&'static str>,
    pub reward: Option<f64>,
    /// From arrival to the last byte of the answer (or the refusal).
    pub latency_ms: f64,
    /// Of which waiting for a worker.
    pub queue_ms: Option<f64>,
    /// The error's code and message when the request failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request's log line, filled in as the request goes and written exactly once, when it is
/// dropped: a request that ends in any way, the client hanging up included, leaves its line.
pub struct LogOnDrop {
    pub record: RequestRecord,
    arrived: Instant,
    log: JsonlWriter,
    keep_text: bool,
}

impl LogOnDrop {
    /// A request on `route` that just arrived. Until told otherwise it counts as cancelled (499).
    pub fn arrived(log: &JsonlWriter, route: &'static str, keep_text: bool) -> LogOnDrop {
        LogOnDrop {
            record: RequestRecord {
                time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                id: None,
                route,
                model: None,
                status: 499,
                stream: false,
                seed: None,
                prompt_sha256: None,
                messages: None,
                response: None,
                prompt_tokens: None,
                completion_tokens: None,
                finish_reason: None,
                reward: None,
                latency_ms: 0.0,
                queue_ms: None,
                error: None,
            },
            arrived: Instant::now(),
            log: log.clone(),
            keep_text,
        }
    }

    /// Records the conversation: its hash always, its text with `--log-text`.
    pub fn conversation(&mut self, messages: &[crate::model::Message]) {
        self.record.prompt_sha256 = Some(conversation_sha256(messages));
        if self.keep_text {
            self.record.messages = Some(messages.to_vec());
        }
    }

    /// Records the answer's text, with `--log-text` only.
    pub fn response(&mut self, text: &str) {
        if self.keep_text {
            self.record.response = Some(text.to_string());
        }
    }

    /// Time since the request arrived.
    pub fn elapsed(&self) -> std::time::Duration {
        self.arrived.elapsed()
    }

    /// Records a refusal.
    pub fn failed(&mut self, e: &super::error::ApiError) {
        self.record.status = e.status.as_u16();
        self.record.error = Some(format!("{}: {}", e.code, e.message));
    }
}

impl Drop for LogOnDrop {
    fn drop(&mut self) {
        self.record.latency_ms = self.arrived.elapsed().as_secs_f64() * 1e3;
        self.log.append(&self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Message;

    #[test]
    fn every_request_leaves_one_line_and_text_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/requests.jsonl");
        let log = JsonlWriter::open(&path).unwrap();
        let messages = [Message::user("I have chest pain")];
        {
            let mut hashed = LogOnDrop::arrived(&log, "/v1/chat/completions", false);
            hashed.conversation(&messages);
            hashed.response("Call 120.");
            hashed.record.status = 200;
        }
        {
            let mut kept = LogOnDrop::arrived(&log, "/v1/chat/completions", true);
            kept.conversation(&messages);
            kept.response("Call 120.");
            // Never told it finished: the client went away.
        }
        drop(log);
        // The writer thread drains its queue once the last sender is gone.
        let mut lines = Vec::new();
        for _ in 0..200 {
            lines = std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect();
            if lines.len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(lines.len(), 2);
        // sha256 of `[{"role":"user","content":"I have chest pain"}]`, computed by hand with
        // `printf '%s' '[{"role":"user","content":"I have chest pain"}]' | sha256sum`.
        let sha = "734510127aa0c4278caee059119c73397da04ef976080bc3cc40ad8436c553a9";
        assert_eq!(conversation_sha256(&messages), sha);
        assert_eq!(lines[0]["prompt_sha256"], sha);
        assert_eq!(lines[0]["status"], 200);
        assert!(lines[0].get("messages").is_none() && lines[0].get("response").is_none());
        assert_eq!(lines[1]["status"], 499);
        assert_eq!(lines[1]["messages"][0]["content"], "I have chest pain");
        assert_eq!(lines[1]["response"], "Call 120.");
    }
}
