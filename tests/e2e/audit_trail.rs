//! Issue 14 item 5, an audit trail that cannot be rewritten silently: a short real `medrl train`
//! run signed by an operator key, then `audit explain` from a rewards.csv row to its rules and
//! total, and every tamper the red team tried (an edited decision, total or rule output, a
//! dropped record, each with the chain re-hashed; a cut tail; a rewrite after a checkpoint)
//! found by `audit verify` and `rules replay` with the record, the field and both values.

use crate::MEDRL;
use medrl::registry::hash::{canonical_json, sha256_hex};
use medrl_tests::{copy_tree, medrl, repo_root};
use serde_json::Value;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The log's records, parsed.
fn records(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Writes `records` as a log whose chain verifies: seq, prev and hash recomputed, as a forger
/// who knows the format would.
fn write_rehashed(log: &Path, mut records: Vec<Value>) {
    let mut prev = "0".repeat(64);
    let mut text = String::new();
    for (i, r) in records.iter_mut().enumerate() {
        let obj = r.as_object_mut().unwrap();
        obj.remove("hash");
        obj.insert("seq".into(), (i as u64 + 1).into());
        obj.insert("prev".into(), prev.clone().into());
        let hash = sha256_hex(&canonical_json(r));
        r["hash"] = hash.clone().into();
        text.push_str(std::str::from_utf8(&canonical_json(r)).unwrap());
        text.push('\n');
        prev = hash;
    }
    std::fs::write(log, text).unwrap();
}

fn kind(r: &Value) -> &str {
    r["event"]["kind"].as_str().unwrap()
}

/// A copy of the run folder with its log replaced by `edit` of its records (re-hashed).
fn tampered(run: &Path, to: &Path, edit: impl FnOnce(&mut Vec<Value>)) -> std::path::PathBuf {
    copy_tree(run, to);
    let mut recs = records(&run.join("audit.jsonl"));
    edit(&mut recs);
    write_rehashed(&to.join("audit.jsonl"), recs);
    to.to_path_buf()
}

#[test]
fn explain_walks_a_reward_to_its_rules_and_every_tamper_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    let model = dir.path().join("tiny");
    medrl(MEDRL, &root, &["model", "init", "--preset", "tiny", "--out", s(&model)]).ok();
    let (key, ring) = (dir.path().join("op.key"), dir.path().join("operators.toml"));
    medrl(MEDRL, &root, &["keys", "generate", "--name", "training operator", "--out", s(&key), "--add-to", s(&ring)]).ok();
    let runs = dir.path().join("runs");
    let mut args: Vec<String> = ["--operator-key", s(&key), "train"].map(String::from).to_vec();
    for kv in [
        format!("model.path=\"{}\"", s(&model)),
        format!("run.out_dir=\"{}\"", s(&runs)),
        "run.steps=2".into(),
        "run.save_every=1".into(),
        "rollout.prompts_per_step=2".into(),
        "rollout.max_new_tokens=8".into(),
        "ppo.mini_batch_size=2".into(),
    ] {
        args.extend(["--set".to_string(), kv]);
    }
    medrl(MEDRL, &root, &args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    let run = runs.join("ppo");
    let verify = |path: &Path, extra: &[&str]| {
        let mut a = vec!["audit", "verify", s(path)];
        a.extend(extra);
        medrl(MEDRL, &root, &a)
    };

    // 2 steps × 2 responses × 4 rules: 16 evaluations, 4 aggregates, 1 load; checkpoints at
    // records 11 and 21, the final manifest at 21, signed.
    let ok = verify(&run, &["--operator-keyring", s(&ring)]).ok();
    assert!(
        ok.stdout.contains("21 records (16 evaluations, 4 aggregates, 1 rule-set loads), hash chain intact; 16 decisions and 4 totals"),
        "{}",
        ok.stdout
    );
    assert!(ok.stdout.contains("ok       checkpoint step-1: the log still holds its head, record 11"), "{}", ok.stdout);
    assert!(ok.stdout.contains("ok       final manifest: the log ends at its head, record 21"), "{}", ok.stdout);
    assert!(ok.stdout.contains("(training operator): valid"), "{}", ok.stdout);

    // Explain row 3 (step 2, first response): the csv's cells, the log's decisions and total, the
    // registry's hashes and a live replay agree.
    let csv = std::fs::read_to_string(run.join("rewards.csv")).unwrap();
    let row3: Vec<&str> = csv.lines().nth(3).unwrap().split(',').collect();
    let text = medrl(MEDRL, &root, &["audit", "explain", s(&run), "3"]).ok().stdout;
    assert!(text.contains(&format!("row 3 (line 4): step 2, sample `{}`", row3[1])), "{text}");
    assert!(
        text.contains("rule set   medical-safety@1.0.0 revision 1 sha256 51ef25ec41dd8744350985ec7303a78a0ee72aad8b43bf7b9f45aa000c6c3b5f"),
        "{text}"
    );
    assert!(text.contains("risk@1.0.0             penalty  module 138a719a2afbb2af…"), "{text}");
    assert!(text.contains(&format!("= rewards.csv {} at 6 decimals: match", row3[7])), "{text}");
    // The csv check and the 4 replayed rules match; nothing says MISMATCH.
    assert_eq!((text.matches(": match").count(), text.matches("MISMATCH").count()), (1 + 4, 0), "{text}");
    assert!(text.contains("reproduces the logged reward"), "{text}");
    let json: Value = serde_json::from_str(&medrl(MEDRL, &root, &["audit", "explain", s(&run), "--sample", row3[1], "--json"]).ok().stdout).unwrap();
    assert_eq!((json["row"].as_u64(), json["csv_matches"].as_bool(), json["replay_matches"].as_bool()), (Some(3), Some(true), Some(true)));
    let rules = json["rules"].as_array().unwrap();
    assert_eq!(
        rules.iter().map(|r| r["rule"].as_str().unwrap()).collect::<Vec<_>>(),
        ["chain@1.0.0", "emergency@1.0.0", "risk@1.0.0", "verbosity@1.0.0"]
    );
    // The logged terms add up to the logged sum, which (no gate fired, inside the clip) is the
    // csv's total; each rule's params hash to its params sha256.
    let sum: f64 = rules.iter().filter_map(|r| r["term"].as_f64()).sum();
    assert_eq!(json["reward"]["gates_fired"], Value::Null, "{json}");
    assert_eq!(format!("{:.6}", sum), row3[7], "{json}");
    for r in rules {
        assert_eq!(r["params_sha256"].as_str().unwrap(), sha256_hex(&canonical_json(&r["params"])), "{}", r["rule"]);
    }
    assert_eq!(json["rules"][0]["replay"]["fuel"], json["rules"][0]["replay"]["logged_fuel"]);

    let t = dir.path().join("tampered");
    let first = |recs: &Vec<Value>, k: &str| recs.iter().position(|r| kind(r) == k).unwrap();
    let fails = |dir: &Path, needles: &[&str]| {
        let r = verify(dir, &[]).failed();
        for n in needles {
            assert!(r.stderr.contains(n), "{}: `{n}` missing in:\n{}", dir.display(), r.stderr);
        }
        r
    };

    // 1. A decision edited: the evaluation's decision is not what its output gives.
    let d = tampered(&run, &t.join("decision"), |recs| {
        let i = first(recs, "evaluation");
        recs[i]["event"]["decision"] = serde_json::json!({"decision": "counted", "score": 1.0});
    });
    fails(
        &d,
        &[
            "line 2 (evaluation of chain@1.0.0 on",
            "): decision: logged {\"decision\":\"counted\",\"score\":1.0}, recomputed {\"decision\":",
            "do not use its rewards",
        ],
    );
    let replay = medrl(MEDRL, &root, &["rules", "replay", s(&d.join("audit.jsonl")), "--all"]).failed();
    assert!(replay.stderr.contains("): decision: logged"), "{}", replay.stderr);

    // 2. A total edited.
    let d = tampered(&run, &t.join("total"), |recs| {
        let i = first(recs, "aggregate");
        recs[i]["event"]["reward"]["total"] = 0.75.into();
    });
    fails(&d, &["line 6 (aggregate of `", "): reward: logged {\"status\":\"scored\",\"total\":0.75}, recomputed {\"status\":\"scored\",\"total\":"]);

    // 3. A rule output edited (its score, keeping the logged output sha256).
    let d = tampered(&run, &t.join("output"), |recs| {
        let i = first(recs, "evaluation");
        recs[i]["event"]["output"]["score"] = 0.5.into();
    });
    fails(&d, &["line 2 (evaluation of chain@1.0.0", "output (its sha256): logged "]);

    // 4. An evaluation record dropped.
    let d = tampered(&run, &t.join("dropped"), |recs| {
        recs.remove(3);
    });
    fails(&d, &["an evaluation record was removed"]);

    // 5. The tail cut at a sample boundary: the chain and every record agree, but the final
    // manifest and the step-2 checkpoint recorded 21 records.
    let d = t.join("cut");
    copy_tree(&run, &d);
    let lines: Vec<String> = std::fs::read_to_string(run.join("audit.jsonl")).unwrap().lines().map(String::from).collect();
    std::fs::write(d.join("audit.jsonl"), lines[..16].join("\n") + "\n").unwrap();
    let r = fails(&d, &["against its anchors failed"]);
    assert!(r.stdout.contains("FAILED   checkpoint step-2") && r.stdout.contains("5 record(s) were removed from the end"), "{}", r.stdout);
    assert!(r.stdout.contains("ok       checkpoint step-1"), "{}", r.stdout);
    // Cut inside a sample: its evaluations have no aggregate.
    std::fs::write(d.join("audit.jsonl"), lines[..14].join("\n") + "\n").unwrap();
    fails(&d, &["field", "aggregate: logged no aggregate record after it"]);

    // 6. Rewritten after the first checkpoint, consistently (a time changed and re-hashed): only
    // the heads can tell.
    let d = tampered(&run, &t.join("rewritten"), |recs| {
        recs[15]["time"] = "2026-01-01T00:00:00.000000Z".into();
    });
    let r = fails(&d, &["against its anchors failed"]);
    assert!(r.stdout.contains("ok       checkpoint step-1"), "{}", r.stdout);
    assert!(
        r.stdout.contains("FAILED   checkpoint step-2") && r.stdout.contains("the log was rewritten from record 21 on or before"),
        "{}",
        r.stdout
    );

    // 7. The signed manifest edited to match a rewritten log: the signature no longer verifies.
    let d = t.join("resigned");
    copy_tree(&t.join("rewritten"), &d);
    let new_head = records(&d.join("audit.jsonl")).last().unwrap()["hash"].as_str().unwrap().to_string();
    let manifest = d.join("final/run_manifest.json");
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["audit"]["hash"] = new_head.into();
    std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    let r = verify(&d, &["--operator-keyring", s(&ring)]).failed();
    assert!(r.stdout.contains("ok       final manifest: the log ends at its head"), "{}", r.stdout);
    assert!(r.stdout.contains("does not verify over run_manifest.json: the manifest was changed after it was signed"), "{}", r.stdout);
}

/// A `medrl-audit/1` log written by the trainer before aggregates existed (the first 9 records
/// of the quickstart's RL log at e54a663, `tests/fixtures/audit-v1/`) still verifies and replays:
/// its decisions are recomputed, and the missing totals are said, not invented. A decision edited
/// and re-hashed in it is found all the same.
#[test]
fn a_medrl_audit_1_log_still_verifies_and_replays() {
    let work = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("tests/fixtures/audit-v1"), work.path());
    let log = work.path().join("audit.jsonl");
    let verified = medrl(MEDRL, &repo_root(), &["audit", "verify", s(&log)]).ok();
    assert!(verified.stdout.contains("9 records (8 evaluations, 0 aggregates, 1 rule-set loads), hash chain intact"), "{}", verified.stdout);
    assert!(verified.stdout.contains("8 decisions and 0 totals recomputed from data: all equal"), "{}", verified.stdout);
    assert!(format!("{}{}", verified.stdout, verified.stderr).contains("medrl-audit/1 records"), "{}", verified.stderr);
    let replayed = medrl(MEDRL, &repo_root(), &["rules", "replay", s(&log), "--all"]).ok();
    assert!(replayed.stdout.contains("replayed 8 evaluations") && replayed.stdout.contains("8 match exactly"), "{}", replayed.stdout);
    // A decision's score changed, the chain re-hashed as a forger would.
    let mut recs = records(&log);
    let at = recs.iter().position(|r| kind(r) == "evaluation" && r["event"]["decision"]["score"].is_number()).expect("a counted evaluation");
    let score = recs[at]["event"]["decision"]["score"].as_f64().unwrap();
    recs[at]["event"]["decision"]["score"] = (score + 0.5).into();
    write_rehashed(&log, recs);
    let refused = medrl(MEDRL, &repo_root(), &["audit", "verify", s(&log)]).failed();
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(said.contains(&format!("line {}", at + 1)) && said.contains("decision"), "{said}");
}
