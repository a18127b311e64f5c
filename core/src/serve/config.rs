//! What `medrl serve` is told: the models to load ([`ModelSpec`]), where it listens, and the
//! limits every request is held to ([`Limits`]). Raw values are checked here, once, before any
//! model loads or any socket opens.

use std::net::SocketAddr;
use std::path::PathBuf;

/// One named model: a Hugging Face model folder and the PEFT adapters on top, as
/// `NAME=MODEL_DIR[:ADAPTER_DIR[:ADAPTER_DIR…]]`. With one adapter, it is applied on the model
/// (as `medrl predict --adapter`); with several, all but the last are merged into the model
/// first and the last applied on top (an SFT adapter under an RL adapter trained on the merged
/// model, as `medrl eval --merge SFT --adapter rl=RL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// What clients name in `model`: letters, digits, `.`, `_`, `-`.
    pub name: String,
    pub model_dir: PathBuf,
    /// Merged into the base, in order, before `adapter`.
    pub merged: Vec<PathBuf>,
    /// Applied on top (switched on while sampling).
    pub adapter: Option<PathBuf>,
}

impl std::str::FromStr for ModelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "write --model NAME=MODEL_DIR, NAME=MODEL_DIR:ADAPTER_DIR, or NAME=MODEL_DIR:SFT_ADAPTER:RL_ADAPTER";
        let (name, rest) = s.split_once('=').ok_or_else(|| format!("`{s}` has no NAME=; {usage}"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(format!("model name `{name}` must be letters, digits, `.`, `_` or `-`; {usage}"));
        }
        let mut parts: Vec<PathBuf> = rest.split(':').map(PathBuf::from).collect();
        if parts.iter().any(|p| p.as_os_str().is_empty()) {
            return Err(format!("`{s}` has an empty folder; {usage}"));
        }
        let model_dir = parts.remove(0);
        let adapter = parts.pop();
        Ok(ModelSpec { name: name.to_string(), model_dir, merged: parts, adapter })
    }
}

/// The limits a request is held to. Every one is a flag of `medrl serve`; a request beyond one
/// is refused with a JSON error that names the limit and the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most `max_tokens` a request may ask for (400 above). Default 512.
    pub max_tokens: usize,
    /// `max_tokens` when a request gives none. Default 256 (capped by `max_tokens`).
    pub default_max_tokens: usize,
    /// Largest request body in bytes (413 above). Default 256 KiB: prompts are tokenized on the
    /// server, and a chat of that size is already far past the models' context.
    pub max_body_bytes: usize,
    /// Answers generated at the same time, each on its own worker thread. Default 2.
    pub workers: usize,
    /// Requests waiting for a worker; one more is refused with 503 and `Retry-After`. Default 32.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_tokens: 512, default_max_tokens: 256, max_body_bytes: 256 * 1024, workers: 2, queue: 32 }
    }
}

impl Limits {
    /// Refuses settings under which no request could be served.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_tokens == 0 {
            return Err("--max-tokens-limit must be at least 1".into());
        }
        if self.default_max_tokens == 0 || self.default_max_tokens > self.max_tokens {
            return Err(format!("--default-max-tokens {} must be between 1 and --max-tokens-limit {}", self.default_max_tokens, self.max_tokens));
        }
        if self.workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        if self.max_body_bytes < 1024 {
            return Err(format!("--max-body-bytes {} is below 1024; no chat request fits", self.max_body_bytes));
        }
        Ok(())
    }
}

/// Where the server keeps its logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPaths {
    /// One JSON line per answered (or refused) completion request.
    pub requests: PathBuf,
    /// One JSON line per vote of the demo page's side-by-side comparison.
    pub votes: PathBuf,
    /// The scoring session's hash-chained audit log (its samples file, with the scored texts,
    /// lies beside it, as for training: replay needs the exact input).
    pub audit: PathBuf,
    /// Whether the request and vote logs keep the conversation and answer text (`--log-text`);
    /// otherwise only the sha256 of the conversation.
    pub keep_text: bool,
}

/// Everything `medrl serve` needs besides the loaded models and the rule set.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Default 127.0.0.1:8080. Port 0 picks a free port (the bound address is reported).
    pub addr: SocketAddr,
    pub limits: Limits,
    pub logs: LogPaths,
    /// Threads of the async runtime that accepts connections and runs the handlers (generation
    /// runs on the workers, not here). Default 2.
    pub http_threads: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs_name_a_folder_and_the_adapters_on_it() {
        let plain: ModelSpec = "sft=runs/q/sft/model".parse().unwrap();
        assert_eq!(plain, ModelSpec { name: "sft".into(), model_dir: "runs/q/sft/model".into(), merged: vec![], adapter: None });
        let rl: ModelSpec = "rl=base:rl/adapter".parse().unwrap();
        assert_eq!((rl.merged.len(), rl.adapter.as_deref()), (0, Some(std::path::Path::new("rl/adapter"))));
        let stacked: ModelSpec = "rl-2=base:sft/adapter:rl/adapter".parse().unwrap();
        assert_eq!(stacked.merged, vec![PathBuf::from("sft/adapter")]);
        assert_eq!(stacked.adapter, Some(PathBuf::from("rl/adapter")));
        for (bad, says) in [("runs/model", "has no NAME="), ("=dir", "model name ``"), ("a b=dir", "model name `a b`"), ("rl=base:", "empty folder")]
        {
            let err = bad.parse::<ModelSpec>().unwrap_err();
            assert!(err.contains(says) && err.contains("--model NAME=MODEL_DIR"), "{bad}: {err}");
        }
    }

    #[test]
    fn limits_under_which_nothing_could_be_served_are_refused() {
        assert!(Limits::default().validate().is_ok());
        let bad = |l: Limits| l.validate().unwrap_err();
        assert!(bad(Limits { workers: 0, ..Limits::default() }).contains("--workers"));
        assert!(bad(Limits { max_tokens: 0, ..Limits::default() }).contains("--max-tokens-limit"));
        assert!(bad(Limits { default_max_tokens: 600, ..Limits::default() }).contains("between 1 and --max-tokens-limit 512"));
        assert!(bad(Limits { max_body_bytes: 10, ..Limits::default() }).contains("--max-body-bytes 10"));
        // A queue of 0 is allowed: a request either finds a free worker or is refused at once.
        assert!(Limits { queue: 0, ..Limits::default() }.validate().is_ok());
    }
}
