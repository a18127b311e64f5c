//! The load test of a running `medrl serve` (`medrl bench serve`): a fixed number of chat
//! completions sent by a fixed number of client threads, loopback only, and what came back:
//! latency percentiles, tokens per second, errors by status, and lost requests: requests the
//! server's own `/metrics` did not count, or that got no HTTP response at all.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0} is not a loopback http:// address; the load test only sends to this machine (http://127.0.0.1:PORT)")]
    NotLoopback(String),
    #[error("invalid load: {0}")]
    Plan(String),
    #[error("cannot read {url}: {msg}; is `medrl serve` running there?")]
    Server { url: String, msg: String },
}

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// `http://127.0.0.1:PORT` (or `localhost`, `[::1]`).
    pub base_url: String,
    pub model: String,
    /// Prompts, used in turn; request `i` is prompt `i % len` with seed `i`.
    pub prompts: Vec<String>,
    pub requests: usize,
    pub concurrency: usize,
    pub max_tokens: usize,
    pub temperature: f64,
    /// Give up on a request after this long (it then counts as lost).
    pub timeout: Duration,
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub requests: usize,
    pub concurrency: usize,
    /// Answered with 200 and a well-formed completion.
    pub ok: usize,
    /// Any other status, by status.
    pub errors: BTreeMap<u16, usize>,
    /// A 200 whose body was not a completion with usage and the `medrl` scores.
    pub malformed: usize,
    /// No HTTP response (connection refused or reset, timeout), plus requests the server's
    /// `/metrics` did not count.
    pub lost: usize,
    pub wall_s: f64,
    /// Latency of the successful requests, ms.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub completion_tokens: usize,
    /// Completion tokens of all successful requests over the wall time.
    pub tokens_per_second: f64,
    pub requests_per_second: f64,
}

/// Refuses anything but `http://` to a loopback host.
pub fn check_loopback(url: &str) -> Result<String, LoadError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| LoadError::NotLoopback(url.into()))?;
    let authority = rest.split('/').next().unwrap_or("");
    let host =
        if let Some(v6) = authority.strip_prefix('[') { v6.split(']').next().unwrap_or("") } else { authority.split(':').next().unwrap_or("") };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(LoadError::NotLoopback(url.into()));
    }
    Ok(format!("http://{authority}"))
}

/// `q`-quantile of sorted values, by the nearest-rank method (the smallest value with at least
/// `q` of the values at or below it).
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sends the load and measures it.
pub fn run_load(plan: &LoadPlan) -> Result<LoadReport, LoadError> {
    let base = check_loopback(&plan.base_url)?;
    if plan.prompts.is_empty() || plan.requests == 0 || plan.concurrency == 0 {
        return Err(LoadError::Plan("give at least one prompt, one request and one client".into()));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(plan.timeout)).build().into();
    let counted_before = counted_completions(&agent, &base)?;
    let url = format!("{base}/v1/chat/completions");
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::with_capacity(plan.requests));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..plan.concurrency.min(plan.requests) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= plan.requests {
                        break;
                    }
                    let body = serde_json::json!({
                        "model": plan.model,
                        "messages": [{"role": "user", "content": plan.prompts[i % plan.prompts.len()]}],
                        "max_tokens": plan.max_tokens,
                        "temperature": plan.temperature,
                        "seed": i,
                    });
                    let sent = Instant::now();
                    let outcome = match agent.post(&url).header("Content-Type", "application/json").send(body.to_string()) {
                        Err(_) => Outcome::Lost,
                        Ok(mut response) => {
                            let status = response.status().as_u16();
                            match response.body_mut().read_to_string() {
                                Err(_) => Outcome::Lost,
                                Ok(text) if status == 200 => match completion_tokens(&text) {
                                    Some(tokens) => Outcome::Ok { ms: sent.elapsed().as_secs_f64() * 1e3, tokens },
                                    None => Outcome::Malformed,
                                },
                                Ok(_) => Outcome::Status(status),
                            }
                        }
                    };
                    results.lock().expect("no panic under this lock").push(outcome);
                }
            });
        }
    });
    let wall_s = start.elapsed().as_secs_f64();
    let outcomes = results.into_inner().expect("no panic under this lock");
    let counted_after = counted_completions(&agent, &base)?;
    let mut latencies: Vec<f64> = Vec::new();
    let (mut ok, mut malformed, mut lost, mut completion_tokens) = (0, 0, 0, 0);
    let mut errors = BTreeMap::new();
    for o in &outcomes {
        match *o {
            Outcome::Ok { ms, tokens } => {
                ok += 1;
                latencies.push(ms);
                completion_tokens += tokens;
            }
            Outcome::Status(s) => *errors.entry(s).or_insert(0) += 1,
            Outcome::Malformed => malformed += 1,
            Outcome::Lost => lost += 1,
        }
    }
    // Requests that reached the server are in its count whatever their status; one that is not
    // was lost on the way even if this side saw something.
    let answered_by_server = counted_after.saturating_sub(counted_before) as usize;
    lost = lost.max(plan.requests.saturating_sub(answered_by_server));
    latencies.sort_by(f64::total_cmp);
    Ok(LoadReport {
        requests: plan.requests,
        concurrency: plan.concurrency,
        ok,
        errors,
        malformed,
        lost,
        wall_s,
        p50_ms: nearest_rank(&latencies, 0.50),
        p95_ms: nearest_rank(&latencies, 0.95),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        completion_tokens,
        tokens_per_second: completion_tokens as f64 / wall_s,
        requests_per_second: plan.requests as f64 / wall_s,
    })
}

enum Outcome {
    Ok { ms: f64, tokens: usize },
    Status(u16),
    Malformed,
    Lost,
}

/// The completion tokens of a well-formed completion (one choice with a message, usage, the
/// rule scores), or `None`.
fn completion_tokens(body: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["choices"][0]["message"]["content"].as_str()?;
    v["medrl"]["ruleset"]["id"].as_str()?;
    let tokens = v["usage"]["completion_tokens"].as_u64()?;
    (v["usage"]["total_tokens"].as_u64()? == v["usage"]["prompt_tokens"].as_u64()? + tokens).then_some(tokens as usize)
}

/// The server's count of chat-completion requests, all statuses.
fn counted_completions(agent: &ureq::Agent, base: &str) -> Result<u64, LoadError> {
    let url = format!("{base}/metrics");
    let err = |msg: String| LoadError::Server { url: url.clone(), msg };
    let text = agent.get(&url).call().map_err(|e| err(e.to_string()))?.body_mut().read_to_string().map_err(|e| err(e.to_string()))?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("medrl_serve_requests_total{route=\"/v1/chat/completions\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_loaded() {
        assert_eq!(check_loopback("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(check_loopback("http://localhost:9/v1").unwrap(), "http://localhost:9");
        assert_eq!(check_loopback("http://[::1]:80").unwrap(), "http://[::1]:80");
        for bad in ["http://10.0.0.1:8080", "https://127.0.0.1:8080", "http://example.com", "127.0.0.1:8080"] {
            assert!(check_loopback(bad).unwrap_err().to_string().contains("not a loopback"), "{bad}");
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        // 20 values 1..=20: p50 is the 10th (10), p95 the 19th (19), p100 the 20th.
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!((nearest_rank(&v, 0.5), nearest_rank(&v, 0.95), nearest_rank(&v, 1.0)), (10.0, 19.0, 20.0));
        assert_eq!(nearest_rank(&[7.0], 0.95), 7.0);
        assert!(nearest_rank(&[], 0.5).is_nan());
    }
}
