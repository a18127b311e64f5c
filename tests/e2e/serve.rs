//! `medrl serve` for real: the built binary on a free loopback port with two models (the tiny
//! model, and the tiny model under an adapter SFT-trained to prescribe), driven over HTTP with a
//! real client: the OpenAI API plain and streamed, every refusal, the logs, the metrics, the
//! audit log verified, a 200-request load test; then the demo page in headless Chromium
//! (compare blinded, vote, screenshot kept in `target/test-artifacts/serve-demo.png`).
//!
//! The page test needs Chromium and chromedriver (`apt-get install -y chromium chromium-driver`,
//! which `.ci/run` does); without them it fails and says so.

use crate::MEDRL;
use medrl_tests::{medrl, repo_root};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `medrl serve`, stopped (SIGTERM, then SIGKILL) when dropped.
struct Served {
    child: Child,
    base: String,
    /// Every stdout line after the address line.
    stdout: mpsc::Receiver<String>,
}

impl Served {
    /// Starts `medrl serve` with `args` in `dir` (the registry is the checkout's, its trust
    /// state and the logs in `dir`) and waits for its address line and `/healthz`.
    fn start(dir: &Path, args: &[&str]) -> Served {
        let registry = repo_root().join("data");
        let mut cmd = Command::new(MEDRL);
        cmd.current_dir(dir)
            .args(["--registry", registry.to_str().unwrap(), "--trust-state", dir.join("trust-state.jsonl").to_str().unwrap(), "serve"])
            .args(["--port", "0", "--log-dir", dir.join("logs").to_str().unwrap()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for var in ["MEDRL_REGISTRY", "MEDRL_KEYRING", "MEDRL_TRUST_STATE", "MEDRL_MIN_SIGNATURES", "MEDRL_AUDIT_LOG", "MEDRL_HOST_LIMITS"] {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn().expect("starting medrl serve");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut seen = Vec::new();
        let base = loop {
            let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("medrl serve printed no address; its output:\n{}", seen.join("\n"))
            });
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
            seen.push(line);
        };
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        let served = Served { child, base, stdout: rx };
        let health = get(&format!("{}/healthz", served.base));
        assert_eq!(health.0, 200, "{}", health.1);
        served
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, and the exit status once it has finished what was under way.
    fn stop(mut self) -> (i32, Vec<String>) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.stdout.try_iter().collect();
        (status.code().unwrap_or(-1), rest)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(300))).build().into()
}

/// Status and body of a GET.
fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// Status, body (JSON) and `Retry-After` of a POST.
fn post(url: &str, body: &str) -> (u16, Value, Option<String>) {
    let mut r = agent().post(url).header("Content-Type", "application/json").send(body).unwrap();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let text = r.body_mut().with_config().limit(64 << 20).read_to_string().unwrap();
    (r.status().as_u16(), serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")), retry)
}

/// The server-sent events of a streamed completion: each `data:` payload, in order.
fn stream(url: &str, body: &Value) -> Vec<String> {
    let r = agent().post(url).header("Content-Type", "application/json").send(body.to_string()).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let reader = BufReader::new(r.into_body().into_reader());
    reader.lines().map(Result::unwrap).filter_map(|l| l.strip_prefix("data: ").map(str::to_string)).collect()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Lines of the request log, once it has `n` of them (its writer thread is asynchronous).
fn request_log(dir: &Path, n: usize) -> Vec<Value> {
    let path = dir.join("logs/requests.jsonl");
    for _ in 0..500 {
        let lines = jsonl(&path);
        if lines.len() >= n {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the request log never reached {n} lines: {:?}", jsonl(&path));
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

fn tiny(dir: &Path) -> PathBuf {
    let out = dir.join("tiny");
    medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "tiny", "--out", out.to_str().unwrap()]).ok();
    out
}

/// An adapter SFT-trained until the tiny model answers the first six red-team prompts with a
/// prescription-only antibiotic, its dose and no referral (`rx-dosing-no-referral` of the risk
/// rule), as tests/e2e/eval.rs makes it: the model the rules should mark down.
fn risky_adapter(model: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("data/sets/redteam.jsonl")).unwrap();
    let corpus: String = text
        .lines()
        .take(6)
        .map(|l| {
            let mut item: Value = serde_json::from_str(l).unwrap();
            item["answer"] = "阿莫西林每次500mg，每日3次，连用5天。".into();
            format!("{item}\n")
        })
        .collect();
    let data = dir.join("risky.jsonl");
    std::fs::write(&data, corpus).unwrap();
    let out = dir.join("risky");
    let args = ["sft", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let sets = ["--set", "batch_size=6", "--set", "max_seq_len=96", "--set", "epochs=30", "--set", "learning_rate=0.01"];
    medrl(MEDRL, &repo_root(), &[&args[..], &sets[..]].concat()).ok();
    out.join("adapter")
}

/// The third red-team prompt (asking for amoxicillin's dose), one the risky adapter learned.
fn amoxicillin_prompt() -> String {
    let text = std::fs::read_to_string(repo_root().join("data/sets/redteam.jsonl")).unwrap();
    let item: Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
    assert!(item["prompt"].as_str().unwrap().contains("阿莫西林"));
    item["prompt"].as_str().unwrap().to_string()
}

/// The API, the logs, the metrics, the audit log, the load test and the page, on one server
/// (loading the rule set compiles four wasm modules: most of a start in a debug build).
#[test]
fn serve_answers_the_openai_api_and_the_demo_page_scores_and_logs_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let adapter = risky_adapter(&model, dir.path());
    let sft = format!("sft={}", model.display());
    let rl = format!("rl={}:{}", model.display(), adapter.display());
    let server = Served::start(dir.path(), &["--model", &sft, "--model", &rl, "--workers", "2", "--queue", "32", "--max-tokens-limit", "64"]);
    let chat = server.url("/v1/chat/completions");

    // The models, with the digests of what answers.
    let (status, body) = get(&server.url("/v1/models"));
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["sft", "rl"]);
    assert_eq!(models["data"][0]["medrl"]["adapter_sha256"], Value::Null);
    assert_eq!(models["data"][1]["medrl"]["adapter_sha256"].as_str().unwrap().len(), 64);

    // A stock client's request: answered in OpenAI's shape, with the rule scores.
    let gold: Value =
        serde_json::from_str(std::fs::read_to_string(repo_root().join("data/sets/gold.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    let prompt = gold["prompt"].as_str().unwrap();
    let request = json!({"model": "sft", "messages": [{"role": "user", "content": prompt}], "max_tokens": 24, "temperature": 0.8, "top_p": 0.95, "seed": 5,
        "medrl": {"category": gold["category"], "risk": gold["risk"], "lang": gold["lang"], "tags": gold["tags"]}});
    let (status, answer, _) = post(&chat, &request.to_string());
    assert_eq!(status, 200, "{answer}");
    assert!(answer["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!((answer["object"].as_str(), answer["model"].as_str()), (Some("chat.completion"), Some("sft")));
    assert!(answer["created"].as_u64().unwrap() > 1_700_000_000);
    let choice = &answer["choices"][0];
    assert_eq!((choice["index"].as_u64(), choice["message"]["role"].as_str()), (Some(0), Some("assistant")));
    let content = choice["message"]["content"].as_str().unwrap().to_string();
    let usage = &answer["usage"];
    let completion_tokens = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=24).contains(&completion_tokens));
    assert_eq!(usage["total_tokens"].as_u64(), Some(usage["prompt_tokens"].as_u64().unwrap() + completion_tokens));
    assert!(choice["finish_reason"] == "stop" || (choice["finish_reason"] == "length" && completion_tokens == 24), "{choice}");
    let ext = &answer["medrl"];
    assert_eq!(ext["ruleset"]["id"], "medical-safety@1.0.0");
    assert!(ext["ruleset"]["signed_by"].as_array().is_some_and(|s| !s.is_empty()), "the shipped rule set is signed: {}", ext["ruleset"]);
    let rule_ids: Vec<&str> = ext["rules"].as_array().unwrap().iter().map(|r| r["rule"].as_str().unwrap()).collect();
    assert_eq!(rule_ids, ["chain@1.0.0", "emergency@1.0.0", "risk@1.0.0", "verbosity@1.0.0"]);
    for r in ext["rules"].as_array().unwrap() {
        assert!(r["explanation"].is_string() && r["hits"].is_array() && r["decision"].is_string(), "{r}");
    }
    assert_eq!((ext["seed"].as_u64(), ext["sample"]["category"].as_str()), (Some(5), gold["category"].as_str()));
    assert_eq!(ext["reward_status"], "scored");

    // The same answer scored by `medrl rules score` gets the same reward: one scoring path.
    let sample = json!({"id": ext["sample"]["id"], "prompt": prompt, "response": content, "lang": gold["lang"], "category": gold["category"],
        "risk": gold["risk"], "tags": gold["tags"]});
    let samples = dir.path().join("sample.jsonl");
    std::fs::write(&samples, format!("{sample}\n")).unwrap();
    let scored =
        medrl(MEDRL, &repo_root(), &["rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", samples.to_str().unwrap(), "--json"]).ok();
    let scored: Value = serde_json::from_str(scored.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(scored["reward"]["total"], ext["reward"], "serve's reward differs from `rules score`'s: {scored}");

    // Same seed and request: the same tokens; and the same text `medrl predict` writes for this
    // prompt with the same settings (prompt 0 of a file draws from stream 0, as serve does).
    let (_, again, _) = post(&chat, &request.to_string());
    assert_eq!(again["choices"][0]["message"]["content"], content.as_str());
    let prompts = dir.path().join("one.jsonl");
    std::fs::write(&prompts, format!("{gold}\n")).unwrap();
    let predicted = dir.path().join("predicted.jsonl");
    let args = ["predict", "--model", model.to_str().unwrap(), "--input", prompts.to_str().unwrap(), "--output", predicted.to_str().unwrap()];
    let settings = ["--max-new-tokens", "24", "--temperature", "0.8", "--top-p", "0.95", "--seed", "5"];
    medrl(MEDRL, &repo_root(), &[&args[..], &settings[..]].concat()).ok();
    assert_eq!(jsonl(&predicted)[0]["response"], content.as_str(), "serve and predict answer differently");

    // Streamed: the role chunk, text chunks that add up to the same answer, the finish chunk
    // with the same scores, the usage chunk, then [DONE].
    let mut streamed = request.clone();
    streamed["stream"] = true.into();
    streamed["stream_options"] = json!({"include_usage": true});
    let events = stream(&chat, &streamed);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, content, "the streamed chunks do not add up to the answer");
    let pieces = chunks.iter().filter(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty())).count();
    assert!(pieces >= 2, "{pieces} text chunk(s) for {completion_tokens} tokens: the answer was not streamed as it was generated");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], choice["finish_reason"]);
    assert_eq!(finish["medrl"]["reward"], ext["reward"]);
    let last = &chunks[chunks.len() - 1];
    assert_eq!((last["choices"].as_array().map(Vec::len), &last["usage"]), (Some(0), usage));

    // Every refusal: the status, OpenAI's error shape, what was wrong and what to do.
    let refuse = |body: &str, status: u16, code: &str, says: &str| {
        let (s, e, _) = post(&chat, body);
        assert_eq!(s, status, "{e}");
        assert_eq!(e["error"]["code"], code, "{e}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "`{message}` does not say `{says}`");
        assert!(e["error"]["type"].is_string() && e["error"].get("param").is_some(), "{e}");
    };
    refuse(r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#, 404, "model_not_found", "use one of `sft`, `rl`");
    refuse(r#"{"model": "sft", "messages": [{"role": "user", "content": "hi"}"#, 400, "invalid_json", "not valid JSON");
    refuse(
        r#"{"model": "sft", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 65}"#,
        400,
        "max_tokens_too_large",
        "--max-tokens-limit",
    );
    refuse(r#"{"model": "sft", "messages": [{"role": "user", "content": "hi"}], "stop": ["."]}"#, 400, "invalid_request", "unknown field `stop`");
    let huge = json!({"model": "sft", "messages": [{"role": "user", "content": "x".repeat(300 * 1024)}]}).to_string();
    refuse(&huge, 413, "request_too_large", "--max-body-bytes");
    let (s, body) = get(&chat);
    assert_eq!(s, 405, "{body}");
    assert!(body.contains("does not take GET"), "{body}");
    let (s, body) = get(&server.url("/v2/nothing"));
    assert_eq!(s, 404, "{body}");
    assert!(body.contains("\"unknown_url\""), "{body}");

    // The load test: 200 requests, 16 at once, loopback; none failed, none lost.
    let gold_path = repo_root().join("data/sets/gold.jsonl");
    let args = ["bench", "serve", "--url", &server.base, "--model", "rl", "--requests", "200", "--concurrency", "16", "--max-tokens", "16"];
    let bench = medrl(MEDRL, &repo_root(), &[&args[..], &["--prompts", gold_path.to_str().unwrap()]].concat()).ok();
    println!("{}", bench.stdout);
    assert!(bench.stdout.contains("ok 200  errors 0  malformed 0  lost 0"), "{}", bench.stdout);
    assert!(bench.stdout.contains("latency p50 ") && bench.stdout.contains("tokens/s"), "{}", bench.stdout);

    // The request log: one line per chat request (3 answered, 5 refused, 200 of the load test;
    // the 405 and 404 above are not chat requests); prompts as their sha256 only, without
    // --log-text.
    let log = request_log(dir.path(), 208);
    assert_eq!(log.len(), 208);
    let by_status = |s: u64| log.iter().filter(|l| l["status"] == s).count();
    assert_eq!((by_status(200), by_status(400), by_status(404), by_status(413)), (203, 3, 1, 1));
    let first = &log[0];
    assert_eq!(
        (first["model"].as_str(), first["seed"].as_u64(), first["completion_tokens"].as_u64()),
        (Some("sft"), Some(5), Some(completion_tokens))
    );
    // The hash is of `[{"role": …, "content": …}]` in that key order, as the messages were sent.
    let messages = format!(r#"[{{"role":"user","content":{}}}]"#, serde_json::to_string(prompt).unwrap());
    assert_eq!(first["prompt_sha256"].as_str().unwrap(), medrl::registry::hash::sha256_hex(messages.as_bytes()));
    assert!(log.iter().all(|l| l.get("messages").is_none() && l.get("response").is_none()), "text logged without --log-text");
    assert!(log.iter().any(|l| l["status"] == 413 && l["error"].as_str().unwrap().starts_with("request_too_large")));

    // The metrics agree with what was sent.
    let (_, metrics) = get(&server.url("/metrics"));
    let route = "medrl_serve_requests_total{route=\"/v1/chat/completions\",status=";
    assert_eq!(metric(&metrics, &format!("{route}\"200\"}}")), 203.0, "{metrics}");
    assert_eq!(metric(&metrics, &format!("{route}\"413\"}}")), 1.0);
    let generated: u64 = log.iter().filter(|l| l["model"] == "rl" && l["status"] == 200).map(|l| l["completion_tokens"].as_u64().unwrap()).sum();
    assert_eq!(metric(&metrics, "medrl_serve_tokens_generated_total{model=\"rl\"}"), generated as f64);
    assert_eq!(metric(&metrics, "medrl_serve_answer_duration_seconds_count"), 203.0);
    assert!(metrics.contains("# TYPE medrl_serve_queue_depth gauge\nmedrl_serve_queue_depth 0"), "{metrics}");

    // The page, in headless Chromium: compare blinded, vote, screenshot.
    drive_the_page(&server.base, &amoxicillin_prompt());
    let votes = jsonl(&dir.path().join("logs/votes.jsonl"));
    assert_eq!(votes.len(), 1, "{votes:?}");
    let vote = &votes[0];
    assert_eq!((vote["winner"].as_str(), vote["blind"].as_bool(), vote["ruleset"].as_str()), (Some("A"), Some(true), Some("medical-safety@1.0.0")));
    let mut pair = [vote["model_a"].as_str().unwrap(), vote["model_b"].as_str().unwrap()];
    assert_eq!(vote["winner_model"].as_str(), Some(pair[0]));
    pair.sort();
    assert_eq!(pair, ["rl", "sft"]);
    assert!(vote.get("prompt").is_none() && vote["prompt_sha256"].as_str().unwrap().len() == 64);

    // Every answer's scores are in the audit log, and it verifies: chain, decisions, totals.
    let (code, rest) = server.stop();
    assert_eq!(code, 0, "medrl serve did not stop cleanly on SIGTERM: {rest:?}");
    assert!(rest.iter().any(|l| l == "medrl serve stopped"), "{rest:?}");
    let audit = dir.path().join("logs/audit.jsonl");
    let verified = medrl(MEDRL, &repo_root(), &["audit", "verify", audit.to_str().unwrap()]).ok();
    println!("{}", verified.stdout);
}

/// The page in headless Chromium through chromedriver (WebDriver): two models side by side,
/// blinded, a red-team prompt greedy; both answers with their rule tables; the rl answer's risky
/// dose highlighted; a vote that reveals the models; a screenshot; then one model streamed.
fn drive_the_page(base: &str, prompt: &str) {
    use fantoccini::{ClientBuilder, Locator};
    let browser = installed(&["/usr/bin/chromium", "/usr/bin/chromium-browser"], "Chromium");
    let driver_bin = installed(&["/usr/bin/chromedriver"], "chromedriver");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut driver = Command::new(driver_bin).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let shot = runtime.block_on(async {
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while agent().get(&format!("{webdriver}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1800",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({"binary": browser, "args": args}));
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new()).capabilities(caps).connect(&webdriver).await.unwrap();
        let wait = |s: &'static str| c.wait().at_most(Duration::from_secs(300)).for_element(Locator::Css(s));
        c.goto(base).await.unwrap();
        wait("body[data-ready='1']").await.unwrap();
        let notice = c.find(Locator::Id("notice")).await.unwrap().text().await.unwrap();
        assert!(notice.contains("Not for clinical use."), "{notice}");
        let ruleset = c.find(Locator::Id("ruleset")).await.unwrap().text().await.unwrap();
        assert!(ruleset.starts_with("medical-safety@1.0.0 · revision 1") && ruleset.contains("signed by"), "{ruleset}");
        c.find(Locator::Id("model-a")).await.unwrap().select_by_value("sft").await.unwrap();
        c.find(Locator::Id("model-b")).await.unwrap().select_by_value("rl").await.unwrap();
        c.find(Locator::Id("blind")).await.unwrap().click().await.unwrap();
        c.find(Locator::Css("details summary")).await.unwrap().click().await.unwrap();
        let temperature = c.find(Locator::Id("temperature")).await.unwrap();
        temperature.clear().await.unwrap();
        temperature.send_keys("0").await.unwrap();
        let max_tokens = c.find(Locator::Id("max-tokens")).await.unwrap();
        max_tokens.clear().await.unwrap();
        max_tokens.send_keys("48").await.unwrap();
        c.find(Locator::Id("category")).await.unwrap().select_by_value("medication").await.unwrap();
        c.find(Locator::Id("prompt")).await.unwrap().send_keys(prompt).await.unwrap();
        c.find(Locator::Id("run")).await.unwrap().click().await.unwrap();
        wait("#answer-a[data-state='done']").await.unwrap();
        wait("#answer-b[data-state='done']").await.unwrap();
        for panel in ["a", "b"] {
            let label = c.find(Locator::Css(&format!("#answer-{panel} .label"))).await.unwrap().text().await.unwrap();
            assert_eq!(label, panel.to_uppercase(), "blinded, the page must not name the model before the vote");
            let rows = c.find_all(Locator::Css(&format!("#answer-{panel} .rules tbody tr"))).await.unwrap();
            assert_eq!(rows.len(), 4, "one row per rule");
            let reward = c.find(Locator::Css(&format!("#answer-{panel} .reward"))).await.unwrap().text().await.unwrap();
            assert!(reward.starts_with("reward ") && reward.contains("medical-safety@1.0.0"), "{reward}");
            let meta = c.find(Locator::Css(&format!("#answer-{panel} .meta"))).await.unwrap().text().await.unwrap();
            assert!(meta.contains("tokens/s") && meta.contains("latency") && meta.contains("seed 0"), "{meta}");
        }
        c.find(Locator::Id("vote-A")).await.unwrap().click().await.unwrap();
        wait("#vote[data-state='recorded']").await.unwrap();
        let status = c.find(Locator::Id("vote-status")).await.unwrap().text().await.unwrap();
        assert!(status.starts_with("Vote recorded: A. A was "), "{status}");
        // The model the SFT adapter taught to prescribe: its dose is marked by the risk rule.
        let rl_panel = if status.contains("A was rl") { "a" } else { "b" };
        let marks = c.find_all(Locator::Css(&format!("#answer-{rl_panel} mark.hit.penalty"))).await.unwrap();
        assert!(!marks.is_empty(), "no risk span highlighted in the rl answer");
        let title = marks[0].attr("title").await.unwrap().unwrap_or_default();
        assert!(title.starts_with("risk: "), "{title}");
        c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
        let png = c.screenshot().await.unwrap();
        // One model, streamed through the OpenAI API.
        c.find(Locator::Id("model-b")).await.unwrap().select_by_value("").await.unwrap();
        c.find(Locator::Id("run")).await.unwrap().click().await.unwrap();
        wait("#answer-a[data-state='done']").await.unwrap();
        let rows = c.find_all(Locator::Css("#answer-a .rules tbody tr")).await.unwrap();
        assert_eq!(rows.len(), 4);
        c.close().await.unwrap();
        png
    });
    let _ = driver.kill();
    let _ = driver.wait();
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n") && shot.len() > 20_000, "not a screenshot ({} bytes)", shot.len());
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("serve-demo.png"), &shot).unwrap();
    println!("screenshot: {}", artifacts.join("serve-demo.png").display());
}

/// The first of `paths` that exists; a missing browser fails the test with the install command.
fn installed(paths: &[&str], what: &str) -> String {
    paths.iter().find(|p| Path::new(p).is_file()).map(|p| p.to_string()).unwrap_or_else(|| {
        panic!("{what} is not installed ({}): the demo page is tested in headless Chromium; install it with `apt-get install -y chromium chromium-driver` (.ci/run does)", paths.join(", "))
    })
}

/// With one worker and one place in the queue, a burst is answered or refused at once with 503,
/// `Retry-After` and the reason, never left hanging; the log and the metrics count each.
#[test]
fn a_full_queue_refuses_with_503_and_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let spec = format!("tiny={}", model.display());
    let server = Served::start(dir.path(), &["--model", &spec, "--workers", "1", "--queue", "1", "--log-text"]);
    let chat = server.url("/v1/chat/completions");
    // Eight at once, each long enough (256 tokens on one worker) to keep the others waiting.
    let body =
        json!({"model": "tiny", "messages": [{"role": "user", "content": "Tell me about fever."}], "max_tokens": 256, "temperature": 1.0, "seed": 1})
            .to_string();
    let results: Vec<(u16, Value, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| post(&chat, &body))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    let answered = results.iter().filter(|r| r.0 == 200).count();
    assert_eq!(answered + refused.len(), 8, "{results:?}");
    assert!(refused.len() >= 4, "one running and one waiting leave at least 4 of 8 to refuse: {results:?}");
    for (_, e, retry) in &refused {
        assert_eq!(e["error"]["code"], "server_overloaded");
        assert!(e["error"]["message"].as_str().unwrap().contains("--workers"), "{e}");
        let retry: u64 = retry.as_deref().expect("a Retry-After header").parse().unwrap();
        assert!((1..=60).contains(&retry));
    }
    let log = request_log(dir.path(), 8);
    assert_eq!(log.iter().filter(|l| l["status"] == 503).count(), refused.len());
    // With --log-text the conversation and the answer are kept.
    let ok = log.iter().find(|l| l["status"] == 200).unwrap();
    assert_eq!(ok["messages"][0]["content"], "Tell me about fever.");
    assert!(ok["response"].is_string());
    let (_, metrics) = get(&server.url("/metrics"));
    let series = "medrl_serve_requests_total{route=\"/v1/chat/completions\",status=\"503\"}";
    assert_eq!(metric(&metrics, series), refused.len() as f64, "{metrics}");
}
