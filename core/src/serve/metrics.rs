//! `/metrics` in Prometheus' text exposition format (version 0.0.4): requests by route and
//! status, tokens generated and prompt tokens read by model, the latency of answers as a
//! histogram, votes by outcome, and the admission gauges (queue depth, running, capacity).
//! Counters are plain atomics and maps under a mutex: a few per request, far below the cost of
//! one generated token.

use super::admission::Admission;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the answer-latency histogram's buckets; `+Inf` follows.
pub const LATENCY_BUCKETS_S: [f64; 12] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Default)]
pub struct Metrics {
    /// (route, status) → requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// model → (prompt tokens, completion tokens, answers).
    tokens: Mutex<BTreeMap<String, [u64; 3]>>,
    /// winner label → votes.
    votes: Mutex<BTreeMap<String, u64>>,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS_S`], then +Inf.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_S.len() + 1],
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// One finished HTTP request.
    pub fn request(&self, route: &str, status: u16) {
        *self.requests.lock().expect("no panic under this lock").entry((route.to_string(), status)).or_default() += 1;
    }

    /// One answer generated: its tokens and how long it took from arrival to its last token.
    pub fn answer(&self, model: &str, prompt_tokens: usize, completion_tokens: usize, seconds: f64) {
        {
            let mut tokens = self.tokens.lock().expect("no panic under this lock");
            let t = tokens.entry(model.to_string()).or_default();
            t[0] += prompt_tokens as u64;
            t[1] += completion_tokens as u64;
            t[2] += 1;
        }
        let bucket = LATENCY_BUCKETS_S.iter().position(|&le| seconds <= le).unwrap_or(LATENCY_BUCKETS_S.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn vote(&self, winner: &str) {
        *self.votes.lock().expect("no panic under this lock").entry(winner.to_string()).or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self, admission: &Admission) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "# HELP medrl_serve_requests_total HTTP requests answered, by route and status.");
        let _ = writeln!(text, "# TYPE medrl_serve_requests_total counter");
        for ((route, status), n) in self.requests.lock().expect("no panic under this lock").iter() {
            let _ = writeln!(text, "medrl_serve_requests_total{{route=\"{}\",status=\"{status}\"}} {n}", escape(route));
        }
        let tokens = self.tokens.lock().expect("no panic under this lock").clone();
        let mut section = |name: &str, kind: &str, help: &str, index: usize| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (model, t) in &tokens {
                let _ = writeln!(text, "{name}{{model=\"{}\"}} {}", escape(model), t[index]);
            }
        };
        section("medrl_serve_prompt_tokens_total", "counter", "Prompt tokens read, by model.", 0);
        section("medrl_serve_tokens_generated_total", "counter", "Completion tokens generated (stop token included), by model.", 1);
        section("medrl_serve_answers_total", "counter", "Answers generated, by model.", 2);
        let name = "medrl_serve_answer_duration_seconds";
        let _ = writeln!(text, "# HELP {name} Time from a request's arrival to its answer's last token and scores.\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS_S.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]).enumerate() {
            cumulative += self.latency_buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(text, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(text, "{name}_sum {}", self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(text, "{name}_count {cumulative}");
        let _ = writeln!(
            text,
            "# HELP medrl_serve_votes_total Votes of the demo page's comparisons, by outcome.\n# TYPE medrl_serve_votes_total counter"
        );
        for (winner, n) in self.votes.lock().expect("no panic under this lock").iter() {
            let _ = writeln!(text, "medrl_serve_votes_total{{winner=\"{}\"}} {n}", escape(winner));
        }
        for (name, help, value) in [
            ("medrl_serve_queue_depth", "Requests waiting for a worker.", admission.queue_depth()),
            ("medrl_serve_running", "Requests being answered.", admission.running()),
            ("medrl_serve_workers", "Answers generated at once at most (--workers).", admission.workers()),
            ("medrl_serve_queue_capacity", "Requests that may wait for a worker (--queue).", admission.queue_capacity()),
        ] {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        text
    }
}

/// A label value as the text format needs it: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_every_family_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("/v1/chat/completions", 200);
        m.request("/v1/chat/completions", 200);
        m.request("/v1/chat/completions", 503);
        // 0.02 s falls in le=0.025; 0.3 s in le=0.5; 100 s only in +Inf.
        m.answer("sft", 10, 5, 0.02);
        m.answer("sft", 12, 7, 0.3);
        m.answer("rl", 3, 1, 100.0);
        m.vote("A");
        let text = m.render(&Admission::new(2, 8));
        for line in [
            "medrl_serve_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2",
            "medrl_serve_requests_total{route=\"/v1/chat/completions\",status=\"503\"} 1",
            "medrl_serve_tokens_generated_total{model=\"sft\"} 12",
            "medrl_serve_prompt_tokens_total{model=\"rl\"} 3",
            "medrl_serve_answers_total{model=\"sft\"} 2",
            "medrl_serve_answer_duration_seconds_bucket{le=\"0.01\"} 0",
            "medrl_serve_answer_duration_seconds_bucket{le=\"0.025\"} 1",
            "medrl_serve_answer_duration_seconds_bucket{le=\"0.5\"} 2",
            "medrl_serve_answer_duration_seconds_bucket{le=\"60\"} 2",
            "medrl_serve_answer_duration_seconds_bucket{le=\"+Inf\"} 3",
            "medrl_serve_answer_duration_seconds_sum 100.32",
            "medrl_serve_answer_duration_seconds_count 3",
            "medrl_serve_votes_total{winner=\"A\"} 1",
            "# TYPE medrl_serve_queue_depth gauge",
            "medrl_serve_queue_depth 0",
            "medrl_serve_workers 2",
            "medrl_serve_queue_capacity 8",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
