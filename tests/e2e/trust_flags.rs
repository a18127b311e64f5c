//! Every global trust flag reaches every command that scores with a rule set: `rules score`,
//! `data score-references`, `train`, `eval` and `quickstart` all go through one scoring session,
//! so `--registry`, `--keyring`, `--min-signatures`, `--trust-state` and `--allow-rollback` must
//! each change what every one of them accepts. Each case is built to be decided by the rule-set
//! check alone, before any model loads, so the matrix runs in seconds.

use crate::MEDRL;
use medrl_tests::{medrl, registry_copy, repo_root};
use std::path::Path;

/// A command that scores with `medical-safety@1.0.0`, its outputs under `tmp`. Where it gets past
/// the rule set, it stops at once on a model or data folder that does not exist.
fn command(name: &str, tmp: &Path) -> Vec<String> {
    let t = |p: &str| tmp.join(p).display().to_string();
    let samples = t("samples.jsonl");
    if !Path::new(&samples).exists() {
        std::fs::write(
            &samples,
            "{\"id\":\"s1\",\"prompt\":\"胸口痛\",\"response\":\"【分析】胸痛需要立即就医。\",\"lang\":\"zh\",\"category\":\"emergency\",\"risk\":\"high\",\"tags\":[],\"expect\":{\"emergency_signs\":[\"胸痛\"]}}\n",
        )
        .unwrap();
    }
    let args: Vec<String> = match name {
        "rules score" => vec!["rules", "score", "--ruleset", "medical-safety@1.0.0", "--input", &samples, "--audit-log", &t("a.jsonl")]
            .into_iter()
            .map(String::from)
            .collect(),
        "data score-references" => {
            vec!["data", "score-references", "--ruleset", "medical-safety@1.0.0", "--split", "gold", "--audit-log", &t("b.jsonl")]
                .into_iter()
                .map(String::from)
                .collect()
        }
        "train" => {
            vec!["train".into(), "--set".into(), format!("model.path={}", t("no-model")), "--set".into(), format!("run.out_dir={}", t("runs"))]
        }
        "eval" => vec!["eval".into(), "--model".into(), t("no-model"), "--adapter".into(), "sft=".into(), "--out".into(), t("eval")],
        "quickstart" => vec!["quickstart".into(), "--out".into(), t("qs")],
        _ => unreachable!(),
    };
    args
}

const COMMANDS: [&str; 5] = ["rules score", "data score-references", "train", "eval", "quickstart"];

fn run(flags: &[String], cmd: &[String]) -> medrl_tests::Run {
    let args: Vec<&str> = flags.iter().chain(cmd).map(String::as_str).collect();
    medrl(MEDRL, &repo_root(), &args)
}

fn s(x: impl AsRef<Path>) -> String {
    x.as_ref().display().to_string()
}

/// A trust state that has accepted revision 7 of `medical-safety`: the shipped revision 1 is a rollback.
fn state_at_revision_7(path: &Path) {
    let accepted = medrl::registry::trust::AcceptedRevision {
        name: "medical-safety".into(),
        revision: 7,
        version: "1.0.0".parse().unwrap(),
        sha256: "0".repeat(64),
        accepted_at: "2026-01-01T00:00:00Z".into(),
        rollback: false,
    };
    medrl::registry::trust::record_accepted(path, accepted).unwrap();
}

#[test]
fn registry_reaches_every_command() {
    for name in COMMANDS {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty-registry");
        std::fs::create_dir(&empty).unwrap();
        let r = run(&["--registry".into(), s(&empty)], &command(name, tmp.path())).failed();
        assert!(r.stderr.contains(&format!("no rule set named `medical-safety` in {}", empty.display())), "{name}: {}", r.stderr);
    }
}

#[test]
fn keyring_reaches_every_command() {
    let keys = tempfile::tempdir().unwrap();
    let ring = keys.path().join("ring.toml");
    let key = keys.path().join("other.key");
    medrl(MEDRL, &repo_root(), &["keys", "generate", "--name", "other", "--out", &s(&key), "--add-to", &s(&ring)]).ok();
    for name in COMMANDS {
        let tmp = tempfile::tempdir().unwrap();
        let flags = ["--keyring".into(), s(&ring), "--trust-state".into(), s(tmp.path().join("t.json"))];
        let r = run(&flags, &command(name, tmp.path())).failed();
        assert!(
            r.stderr.contains(&format!("has 0 valid signature(s) by distinct trusted keys; the policy ({}) requires 1", ring.display())),
            "{name}: {}",
            r.stderr
        );
        // The shipped keyring trusts the demo key that signed the rule set: the same command gets
        // past the rule set (and stops later, on the missing model; the quickstart on a registry
        // copy without data sets).
        let registry = registry_copy();
        let flags = [
            "--registry".into(),
            s(registry.path()),
            "--keyring".into(),
            "data/keys/keyring.toml".into(),
            "--trust-state".into(),
            s(tmp.path().join("t.json")),
        ];
        let r = run(&flags, &command(name, tmp.path()));
        assert!(!r.stderr.contains("valid signature(s)"), "{name}: {}", r.stderr);
    }
}

#[test]
fn min_signatures_reaches_every_command() {
    for name in COMMANDS {
        let tmp = tempfile::tempdir().unwrap();
        let flags = [
            "--keyring".into(),
            "data/keys/keyring.toml".into(),
            "--min-signatures".into(),
            "2".into(),
            "--trust-state".into(),
            s(tmp.path().join("t.json")),
        ];
        let r = run(&flags, &command(name, tmp.path())).failed();
        assert!(
            r.stderr.contains("has 1 valid signature(s) by distinct trusted keys; the policy (data/keys/keyring.toml) requires 2"),
            "{name}: {}",
            r.stderr
        );
    }
}

#[test]
fn trust_state_and_allow_rollback_reach_every_command() {
    for name in COMMANDS {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("trust-state.json");
        state_at_revision_7(&state);
        let r = run(&["--trust-state".into(), s(&state)], &command(name, tmp.path())).failed();
        assert!(
            r.stderr.contains(&format!("is revision 1, lower than revision 7 (1.0.0) accepted before according to {}", state.display())),
            "{name}: {}",
            r.stderr
        );
        assert!(std::fs::read_to_string(&state).unwrap().contains("\"revision\":7"), "{name}: a refused rollback leaves the state as it was");
        // With --allow-rollback the same load is accepted and recorded (the state now says
        // revision 1). A registry copy without data sets makes the quickstart stop right after.
        let registry = registry_copy();
        let flags = ["--registry".into(), s(registry.path()), "--trust-state".into(), s(&state), "--allow-rollback".into()];
        let r = run(&flags, &command(name, tmp.path()));
        assert!(!r.stderr.contains("refusing a rollback"), "{name}: {}", r.stderr);
        let after = std::fs::read_to_string(&state).unwrap();
        assert!(
            after.contains("\"revision\":1,") && after.contains("\"rollback\":true"),
            "{name}: the rollback was not accepted: {after}\n{}",
            r.stderr
        );
    }
}

/// Signed by default: a registry without a keyring is refused by every command, naming the
/// keyring it looked for and the ways out; `--allow-unsigned` lets the same command past the
/// rule set, loudly.
#[test]
fn unsigned_is_refused_by_default_and_allow_unsigned_reaches_every_command() {
    for name in COMMANDS {
        let tmp = tempfile::tempdir().unwrap();
        let registry = registry_copy();
        std::fs::remove_dir_all(registry.path().join("keys")).unwrap();
        let flags = ["--registry".into(), s(registry.path())];
        let r = run(&flags, &command(name, tmp.path())).failed();
        assert_eq!(r.status, 1, "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "rule set medical-safety@1.0.0 cannot be verified: no keyring is configured and the registry has none ({} is missing)",
                registry.path().join("keys/keyring.toml").display()
            )) && r.stderr.contains("--allow-unsigned"),
            "{name}: {}",
            r.stderr
        );
        let flags = ["--registry".into(), s(registry.path()), "--allow-unsigned".into()];
        let r = run(&flags, &command(name, tmp.path()));
        assert!(!r.stderr.contains("cannot be verified: no keyring"), "{name}: {}", r.stderr);
        assert!(r.stderr.starts_with("warning: --allow-unsigned"), "{name}: {}", r.stderr);
    }
}

/// The opt-out is recorded where an auditor looks: the load's audit record, and the warning.
#[test]
fn an_unsigned_load_is_recorded_in_the_audit_log() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = registry_copy();
    std::fs::remove_dir_all(registry.path().join("keys")).unwrap();
    let flags = ["--registry".into(), s(registry.path()), "--allow-unsigned".into()];
    let r = run(&flags, &command("rules score", tmp.path())).ok();
    assert!(r.stderr.contains("warning: medical-safety@1.0.0 is scored UNSIGNED by --allow-unsigned"), "{}", r.stderr);
    let log = std::fs::read_to_string(tmp.path().join("a.jsonl")).unwrap();
    let load: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(load["event"]["allow_unsigned"], true, "{load}");
    assert_eq!(load["event"]["signers"], serde_json::Value::Null, "{load}");
    // A signed load through the registry's own keyring names its signer and no opt-out.
    let tmp = tempfile::tempdir().unwrap();
    let registry = registry_copy();
    let r = run(&["--registry".into(), s(registry.path())], &command("rules score", tmp.path())).ok();
    assert!(!r.stderr.contains("UNSIGNED"), "{}", r.stderr);
    let log = std::fs::read_to_string(tmp.path().join("a.jsonl")).unwrap();
    let load: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(load["event"]["signers"], serde_json::json!(["403b367b77478977"]), "{load}");
    assert!(load["event"].get("allow_unsigned").is_none(), "{load}");
}

/// The red-team case that used to pass silently: `ruleset.json` edited and its pins recomputed.
/// With no flag at all, the registry's own keyring catches it; `--allow-unsigned` does not let a
/// signature over other bytes through.
#[test]
fn an_edited_rule_set_is_refused_without_any_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = registry_copy();
    let manifest = registry.path().join("rulesets/medical-safety/1.0.0/ruleset.json");
    let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    json["aggregation"]["clip"] = serde_json::json!([0.0, 100.0]);
    std::fs::write(&manifest, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    for extra in [vec![], vec!["--allow-unsigned".to_string()]] {
        let flags: Vec<String> = ["--registry".to_string(), s(registry.path())].into_iter().chain(extra.clone()).collect();
        let r = run(&flags, &command("rules score", tmp.path())).failed();
        assert!(r.stderr.contains("ruleset.json changed after signing"), "{extra:?}: {}", r.stderr);
    }
}

/// The operator's ceilings reach every command: a rule asking for more fuel than `--host-limits`
/// allows is refused at load, naming the rule, its file, the limit and the fix.
#[test]
fn host_limits_reach_every_command() {
    let keys = tempfile::tempdir().unwrap();
    let limits = keys.path().join("host.toml");
    std::fs::write(&limits, "max_fuel = 1000\n").unwrap();
    for name in COMMANDS {
        let tmp = tempfile::tempdir().unwrap();
        let r = run(&["--host-limits".into(), s(&limits)], &command(name, tmp.path())).failed();
        assert!(r.stderr.contains("over the host's ceiling of 1000") && r.stderr.contains("max_fuel"), "{name}: {}", r.stderr);
        assert!(r.stderr.contains("chain@1.0.0") || r.stderr.contains("risk@1.0.0"), "{name}: the refusal names the rule: {}", r.stderr);
    }
    std::fs::write(&limits, "max_fuel = 0\n").unwrap();
    let r = run(&["--host-limits".into(), s(&limits)], &command("rules score", keys.path())).failed();
    assert!(r.stderr.contains("`max_fuel` is 0"), "{}", r.stderr);
    std::fs::write(&limits, "max_fuels = 10\n").unwrap();
    let r = run(&["--host-limits".into(), s(&limits)], &command("rules score", keys.path())).failed();
    assert!(r.stderr.contains("unknown field `max_fuels`"), "{}", r.stderr);
}
