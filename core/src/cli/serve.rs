//! `medrl serve`: load the models and the rule set, bind, print where, serve until Ctrl-C.

use super::Globals;
use clap::Args;
use medrl::registry::VersionRef;
use medrl::reward::ScoringSession;
use medrl::serve::{AnswerScorer, Limits, LogPaths, ModelSpec, Models, ServeConfig, Server};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// A model to serve, as `NAME=MODEL_DIR`, `NAME=MODEL_DIR:ADAPTER_DIR`, or
    /// `NAME=MODEL_DIR:SFT_ADAPTER:RL_ADAPTER` (adapters before the last are merged first).
    /// Repeatable: `--model sft=… --model rl=…`.
    #[arg(long = "model", required = true)]
    models: Vec<ModelSpec>,
    /// The rule set every answer is scored with (verified under the global trust flags).
    #[arg(long, default_value = "medical-safety@1.0.0")]
    ruleset: String,
    /// Address to listen on. Anything but loopback exposes unauthenticated models to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port; 0 picks a free one (the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Answers generated at the same time (worker threads).
    #[arg(long, default_value_t = Limits::default().workers)]
    workers: usize,
    /// Requests that may wait for a worker; beyond, 503 with Retry-After.
    #[arg(long, default_value_t = Limits::default().queue)]
    queue: usize,
    /// Most max_tokens a request may ask for.
    #[arg(long, default_value_t = Limits::default().max_tokens)]
    max_tokens_limit: usize,
    /// max_tokens of a request that gives none [default: 256, or --max-tokens-limit if lower].
    #[arg(long)]
    default_max_tokens: Option<usize>,
    /// Largest request body, in bytes (413 above).
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Folder of the request log (requests.jsonl) and the votes log (votes.jsonl).
    #[arg(long, default_value = "runs/serve")]
    log_dir: PathBuf,
    /// The scoring audit log [default: LOG_DIR/audit.jsonl]; the scored texts go to
    /// `<stem>.samples.jsonl` beside it, as for training.
    #[arg(long, env = "MEDRL_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Keep the conversations and answers in the request and votes logs (default: only their sha256).
    #[arg(long)]
    log_text: bool,
    /// Threads of the HTTP runtime (generation runs on the workers, not here).
    #[arg(long, default_value_t = 2)]
    http_threads: usize,
}

pub fn run(a: ServeArgs, g: &Globals) -> anyhow::Result<()> {
    let limits = Limits {
        max_tokens: a.max_tokens_limit,
        default_max_tokens: a.default_max_tokens.unwrap_or(Limits::default().default_max_tokens.min(a.max_tokens_limit)),
        max_body_bytes: a.max_body_bytes,
        workers: a.workers,
        queue: a.queue,
    };
    limits.validate().map_err(anyhow::Error::msg)?;
    let reference: VersionRef = a.ruleset.parse().map_err(anyhow::Error::msg)?;
    let logs = LogPaths {
        requests: a.log_dir.join("requests.jsonl"),
        votes: a.log_dir.join("votes.jsonl"),
        audit: a.audit_log.clone().unwrap_or_else(|| a.log_dir.join("audit.jsonl")),
        keep_text: a.log_text,
    };
    if !a.host.is_loopback() {
        eprintln!(
            "warning: --host {}: the API and the demo page have no authentication and no TLS; anyone who can reach this address can \
             query the models and read their answers. These are research models, NOT for clinical use. Bind 127.0.0.1 (the default) \
             and put an authenticating proxy in front if others must reach it.",
            a.host
        );
    }
    // The rule set first: a refused rule set stops the server before minutes of model loading.
    let session = ScoringSession::open(&g.registry, &reference, &logs.audit, g.threads)?;
    let scorer = AnswerScorer::new(session);
    for notice in scorer.notices() {
        eprintln!("{notice}");
    }
    let device = super::predict::parse_device(&a.device)?;
    let models = Models::load(&a.models, &device, |m| {
        let adapters = m.spec.merged.iter().chain(&m.spec.adapter).map(|p| p.display().to_string()).collect::<Vec<_>>();
        println!(
            "loaded {}: {}{} (model sha256 {}{})",
            m.name(),
            m.spec.model_dir.display(),
            if adapters.is_empty() { String::new() } else { format!(" + {}", adapters.join(" + ")) },
            &m.predictor.model_sha256[..12],
            m.predictor
                .adapter_sha256
                .as_ref()
                .map_or(String::new(), |d| format!(", adapter {}", d.split('+').map(|x| &x[..12]).collect::<Vec<_>>().join("+"))),
        );
    })?;
    let rs = &scorer.ruleset;
    let signed = rs.signed_by.as_ref().map_or("UNSIGNED".to_string(), |s| format!("signed by {}", s.join(", ")));
    println!("rule set {} (revision {}, {signed}); audit log {}", rs.id, rs.revision, logs.audit.display());
    let config = ServeConfig { addr: SocketAddr::new(a.host, a.port), limits, logs: logs.clone(), http_threads: a.http_threads };
    let server = Server::bind(&config, models, scorer)?;
    println!(
        "logs: {} ({}), {}",
        logs.requests.display(),
        if logs.keep_text { "with the conversations: --log-text" } else { "prompts as sha256" },
        logs.votes.display()
    );
    println!(
        "limits: {} workers, queue {}, max_tokens ≤ {} (default {}), bodies ≤ {} bytes",
        limits.workers, limits.queue, limits.max_tokens, limits.default_max_tokens, limits.max_body_bytes
    );
    let addr = server.local_addr();
    println!("medrl serve listening on http://{addr} (demo page http://{addr}/, API http://{addr}/v1); Ctrl-C stops it");
    // A script or test waiting for this line reads it now, not when the buffer fills.
    std::io::stdout().flush()?;
    server.run()?;
    println!("medrl serve stopped");
    Ok(())
}
