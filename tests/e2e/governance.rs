//! Rule governance with the built binary: signed rule sets and the example keyring, tampering
//! refused before any rule runs, revision rollback, the hash-chained audit log and exact replay,
//! the auditor's verify/diff/doc, and the rule-set lifecycle.

use crate::MEDRL;
use medrl_tests::{Run, copy_tree, medrl, registry_copy, repo_root};
use std::path::{Path, PathBuf};

fn keyring() -> PathBuf {
    repo_root().join("data/keys/keyring.toml")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `rules score` of the demo samples against `reg`, trusting the example keyring, with the
/// audit log and trust state in `work`.
fn score(reg: &Path, work: &Path, ruleset: &str, extra: &[&str]) -> Run {
    let (audit, state, ring) = (work.join("audit.jsonl"), work.join("state.json"), keyring());
    let input = repo_root().join("data/samples/demo.jsonl");
    let mut args = vec!["--registry", s(reg), "--keyring", s(&ring), "--trust-state", s(&state)];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["rules", "score", "--ruleset", ruleset, "--input", s(&input), "--json", "--audit-log", s(&audit)]);
    medrl(MEDRL, work, &args)
}

/// Runs `run` and asserts it was refused before scoring: it failed, printed no score, and
/// added no evaluation record to the audit log in `work`; and that stderr names each of `needles`.
fn refused(work: &Path, needles: &[&str], run: impl FnOnce() -> Run) {
    let evaluations = || std::fs::read_to_string(work.join("audit.jsonl")).unwrap_or_default().matches("\"kind\":\"evaluation\"").count();
    let before = evaluations();
    let run = run().failed();
    for n in needles {
        assert!(run.stderr.contains(n), "stderr lacks `{n}`:\n{}", run.stderr);
    }
    assert!(run.stdout.is_empty(), "nothing may be scored: {}", run.stdout);
    assert_eq!(evaluations(), before, "no rule ran, so no evaluation is logged");
}

const SHIPPED_SIG: &str = "rulesets/medical-safety/1.0.0/403b367b77478977.sig";

#[test]
fn the_shipped_rule_set_is_signed_by_the_demo_key_and_verifies_against_the_example_keyring() {
    let ring = keyring();
    let run = medrl(MEDRL, &repo_root(), &["--keyring", s(&ring), "rules", "verify", "medical-safety@1.0.0"]).ok();
    assert!(run.stdout.contains("ok       signatures: 1 of 1 required: 403b367b77478977"), "{}", run.stdout);
    assert!(run.stdout.contains("rule set medical-safety@1.0.0 verifies"), "{}", run.stdout);
    // The private half is in the repository, and says loudly that it is a demo key.
    let key = std::fs::read_to_string(repo_root().join("data/keys/DEMO-ONLY-medrl-demo.key")).unwrap();
    assert!(key.contains("\"key_id\": \"403b367b77478977\"") && key.contains("DEMO ONLY"), "{key}");
    let inspect = medrl(MEDRL, &repo_root(), &["--keyring", s(&ring), "rules", "inspect", "medical-safety@1.0.0", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(v["signatures"][0]["status"], "valid");
    assert_eq!(v["rules"].as_array().unwrap().len(), 4);
    assert_eq!(v["revision"], 1);
}

#[test]
fn signing_does_not_change_ruleset_json_and_verify_exit_codes_name_the_failure() {
    let work = tempfile::tempdir().unwrap();
    let reg = registry_copy();
    let manifest = reg.path().join("rulesets/medical-safety/1.0.0/ruleset.json");
    let before = std::fs::read(&manifest).unwrap();
    let key = work.path().join("k.key");
    let ring = work.path().join("ring.toml");
    medrl(MEDRL, work.path(), &["keys", "generate", "--name", "tester", "--out", s(&key), "--add-to", s(&ring)]).ok();
    let signed = medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "rules", "sign", "medical-safety@1.0.0", "--key", s(&key)]).ok();
    assert!(signed.stdout.contains("signed medical-safety@1.0.0 (sha256 51ef25ec"), "{}", signed.stdout);
    assert_eq!(std::fs::read(&manifest).unwrap(), before, "signing must not touch ruleset.json");
    let verify =
        |reg: &Path, ring: &Path| medrl(MEDRL, work.path(), &["--registry", s(reg), "--keyring", s(ring), "rules", "verify", "medical-safety@1.0.0"]);
    verify(reg.path(), &ring).ok();

    // 3: content; 4: files; 5: signatures.
    let tampered = registry_copy();
    let wasm = tampered.path().join("rules/risk/1.0.0/rule.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    bytes[1000] ^= 0x80;
    std::fs::write(&wasm, bytes).unwrap();
    let run = verify(tampered.path(), &keyring()).failed();
    assert_eq!(run.status, 3, "{}", run.stdout);
    assert!(run.stdout.contains("FAILED") && run.stdout.contains("rules/risk/1.0.0/rule.wasm"), "{}", run.stdout);
    let extra = registry_copy();
    std::fs::write(extra.path().join("rules/chain/1.0.0/notes.txt"), "x").unwrap();
    assert_eq!(verify(extra.path(), &keyring()).failed().status, 4);
    let unsigned = registry_copy();
    std::fs::remove_file(unsigned.path().join(SHIPPED_SIG)).unwrap();
    let run = verify(unsigned.path(), &keyring()).failed();
    assert_eq!(run.status, 5, "{}", run.stdout);
    assert!(run.stdout.contains("is not signed"), "{}", run.stdout);
}

#[test]
fn a_flipped_byte_in_a_module_is_refused_naming_the_file() {
    let (work, reg) = (tempfile::tempdir().unwrap(), registry_copy());
    let wasm = reg.path().join("rules/risk/1.0.0/rule.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&wasm, bytes).unwrap();
    refused(work.path(), &["rules/risk/1.0.0/rule.wasm", "sha256 is", "pins"], || score(reg.path(), work.path(), "medical-safety@1.0.0", &[]));
}

#[test]
fn an_edited_parameter_in_a_rule_manifest_is_refused_naming_the_file() {
    let (work, reg) = (tempfile::tempdir().unwrap(), registry_copy());
    let path = reg.path().join("rules/chain/1.0.0/rule.json");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"order_penalty\": 0.25"));
    std::fs::write(&path, text.replace("\"order_penalty\": 0.25", "\"order_penalty\": 0.0")).unwrap();
    refused(work.path(), &["rules/chain/1.0.0/rule.json", "sha256 is", "ruleset.json pins"], || {
        score(reg.path(), work.path(), "medical-safety@1.0.0", &[])
    });
}

#[test]
fn an_extra_file_in_the_rule_set_folder_is_refused() {
    let (work, reg) = (tempfile::tempdir().unwrap(), registry_copy());
    std::fs::write(reg.path().join("rulesets/medical-safety/1.0.0/override.json"), "{}").unwrap();
    refused(work.path(), &["rulesets/medical-safety/1.0.0/override.json", "is not part of rule set medical-safety@1.0.0"], || {
        score(reg.path(), work.path(), "medical-safety@1.0.0", &[])
    });
}

#[test]
fn a_missing_file_is_refused() {
    let (work, reg) = (tempfile::tempdir().unwrap(), registry_copy());
    std::fs::remove_file(reg.path().join("rules/verbosity/1.0.0/vectors.jsonl")).unwrap();
    refused(work.path(), &["rules/verbosity/1.0.0/vectors.jsonl is missing"], || score(reg.path(), work.path(), "medical-safety@1.0.0", &[]));
}

#[test]
fn a_removed_signature_is_refused_once_a_keyring_is_configured() {
    let (work, reg) = (tempfile::tempdir().unwrap(), registry_copy());
    std::fs::remove_file(reg.path().join(SHIPPED_SIG)).unwrap();
    refused(work.path(), &["rule set medical-safety@1.0.0 is not signed", "rulesets/medical-safety/1.0.0 holds no *.sig", "keyring.toml"], || {
        score(reg.path(), work.path(), "medical-safety@1.0.0", &[])
    });
}

#[test]
fn a_signature_by_an_untrusted_key_is_refused() {
    let (work, reg) = (tempfile::tempdir().unwrap(), registry_copy());
    std::fs::remove_file(reg.path().join(SHIPPED_SIG)).unwrap();
    let key = work.path().join("stranger.key");
    let generated = medrl(MEDRL, work.path(), &["keys", "generate", "--name", "stranger", "--out", s(&key)]).ok();
    let id = generated.stdout.split("key id ").nth(1).unwrap().split(')').next().unwrap().to_string();
    let sign = medrl(
        MEDRL,
        work.path(),
        &["--registry", s(reg.path()), "--keyring", s(&keyring()), "rules", "sign", "medical-safety@1.0.0", "--key", s(&key)],
    )
    .ok();
    assert!(sign.stderr.contains("is not in the keyring"), "signing warns: {}", sign.stderr);
    refused(
        work.path(),
        &[&format!("rulesets/medical-safety/1.0.0/{id}.sig: signed by key {id} (stranger), which is not in the keyring"), "0 valid signature(s)"],
        || score(reg.path(), work.path(), "medical-safety@1.0.0", &[]),
    );
}

#[test]
fn too_few_signatures_are_refused() {
    let (work, reg) = (tempfile::tempdir().unwrap(), registry_copy());
    // A keyring of two trusted keys that needs both; only the demo key signed.
    let ring = work.path().join("two.toml");
    let key = work.path().join("second.key");
    std::fs::write(&ring, std::fs::read_to_string(keyring()).unwrap().replace("min_signatures = 1", "min_signatures = 2")).unwrap();
    medrl(MEDRL, work.path(), &["keys", "generate", "--name", "second reviewer", "--out", s(&key), "--add-to", s(&ring)]).ok();
    let demo_samples = repo_root().join("data/samples/demo.jsonl");
    let audit = work.path().join("audit.jsonl");
    refused(work.path(), &["rule set medical-safety@1.0.0 has 1 valid signature(s) by distinct trusted keys", "requires 2", "two.toml"], || {
        medrl(
            MEDRL,
            work.path(),
            &[
                "--registry",
                s(reg.path()),
                "--keyring",
                s(&ring),
                "rules",
                "score",
                "--ruleset",
                "medical-safety@1.0.0",
                "--input",
                s(&demo_samples),
                "--audit-log",
                s(&audit),
            ],
        )
    });
    // The second reviewer signs: now it verifies.
    medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "rules", "sign", "medical-safety@1.0.0", "--key", s(&key)]).ok();
    medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "--keyring", s(&ring), "rules", "verify", "medical-safety@1.0.0"]).ok();
}

#[test]
fn a_rule_set_edited_after_signing_is_refused() {
    let (work, reg) = (tempfile::tempdir().unwrap(), registry_copy());
    let path = reg.path().join("rulesets/medical-safety/1.0.0/ruleset.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"weight\": -0.1", "\"weight\": -0.0")).unwrap();
    refused(work.path(), &[SHIPPED_SIG, "ruleset.json changed after signing"], || score(reg.path(), work.path(), "medical-safety@1.0.0", &[]));
}

/// The lifecycle: bump to 1.1.0 (revision 2, chained, approved), sign, diff, score it; then a
/// lower revision is refused without --allow-rollback, and with it the rollback is logged.
#[test]
fn bump_sign_diff_and_a_lower_revision_needs_allow_rollback() {
    let (work, reg) = (tempfile::tempdir().unwrap(), registry_copy());
    let spec = work.path().join("spec.toml");
    let base = std::fs::read_to_string(repo_root().join("data/ruleset-specs/medical-safety-1.0.0.toml")).unwrap();
    let next = base.replace("version = \"1.0.0\"\ndescription", "description").replace("weight = -0.1", "weight = -0.15")
        + "\n[[approvals]]\nrole = \"clinical-safety\"\nname = \"Dr. Test\"\ndate = \"2026-12-01\"\n";
    std::fs::write(&spec, &next).unwrap();
    let bump =
        medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "rules", "ruleset", "bump", s(&spec), "--created-at", "2026-12-01T00:00:00Z"]).ok();
    assert!(bump.stdout.contains("published rule set medical-safety@1.1.0 (revision 2, 4 rules, 12 pinned files)"), "{}", bump.stdout);
    assert!(bump.stdout.contains("weight -0.1 -> -0.15"), "bump shows what changed: {}", bump.stdout);
    // Publishing the same content again is refused; so is a bump that changes nothing.
    let again = medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "rules", "ruleset", "bump", s(&spec)]).failed();
    assert!(again.stderr.contains("a bump must change something"), "{}", again.stderr);

    let demo = repo_root().join("data/keys/DEMO-ONLY-medrl-demo.key");
    medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "rules", "sign", "medical-safety@1.1.0", "--key", s(&demo)]).ok();
    let ring = keyring();
    let diff = medrl(
        MEDRL,
        work.path(),
        &["--registry", s(reg.path()), "--keyring", s(&ring), "rules", "diff", "medical-safety@1.0.0", "medical-safety@1.1.0", "--json"],
    )
    .ok();
    let d: serde_json::Value = serde_json::from_str(&diff.stdout).unwrap();
    assert_eq!(d["changed"][0]["id"], "verbosity");
    assert_eq!(d["changed"][0]["weight"], serde_json::json!([-0.1, -0.15]));
    assert_eq!(d["approvals_added"][0], "clinical-safety: Dr. Test (2026-12-01)");
    assert_eq!(d["to_follows_from"], true);
    let verify = medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "--keyring", s(&ring), "rules", "verify", "medical-safety@1.1.0"]).ok();
    assert!(verify.stdout.contains("ok       previous revision: medical-safety@1.0.0 revision 1"), "{}", verify.stdout);

    score(reg.path(), work.path(), "medical-safety@1.1.0", &[]).ok();
    refused(work.path(), &["rule set medical-safety@1.0.0 is revision 1, lower than revision 2 (1.1.0)", "state.json", "--allow-rollback"], || {
        score(reg.path(), work.path(), "medical-safety@1.0.0", &[])
    });
    let rolled = score(reg.path(), work.path(), "medical-safety@1.0.0", &["--allow-rollback"]).ok();
    assert!(rolled.stderr.contains("warning: rollback of medical-safety@1.0.0 to revision 1 from revision 2"), "{}", rolled.stderr);
    let log = std::fs::read_to_string(work.path().join("audit.jsonl")).unwrap();
    let loads: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|r| r["event"]["kind"] == "ruleset_loaded").collect();
    assert_eq!(loads.len(), 2);
    assert_eq!(loads[1]["event"]["rollback_from"], 2);
    assert_eq!(loads[1]["event"]["signers"][0], "403b367b77478977");
    medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "audit", "verify", s(&work.path().join("audit.jsonl"))]).ok();
}

/// 216 reference answers scored (864 evaluations), every one replayed exactly; then the chain
/// check finds an edited line, a deleted line and a swapped pair.
#[test]
fn replay_reproduces_every_evaluation_and_audit_verify_finds_edits_deletions_and_swaps() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("samples.jsonl");
    let sft = std::fs::read_to_string(repo_root().join("data/sets/sft.jsonl")).unwrap();
    let mut lines = Vec::new();
    let mut prompts = Vec::new();
    for line in sft.lines().take(216) {
        let mut item: serde_json::Value = serde_json::from_str(line).unwrap();
        let obj = item.as_object_mut().unwrap();
        let answer = obj.remove("answer").unwrap();
        obj.insert("response".into(), answer);
        for extra in ["source", "version", "quality"] {
            obj.remove(extra);
        }
        prompts.push(item["prompt"].as_str().unwrap().to_string());
        lines.push(item.to_string());
    }
    assert_eq!(lines.len(), 216);
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let audit = work.path().join("logs/audit.jsonl");
    let ring = keyring();
    let run = medrl(
        MEDRL,
        work.path(),
        &[
            "--keyring",
            s(&ring),
            "--registry",
            s(&repo_root().join("data")),
            "--trust-state",
            s(&work.path().join("state.json")),
            "rules",
            "score",
            "--ruleset",
            "medical-safety@1.0.0",
            "--input",
            s(&input),
            "--json",
            "--audit-log",
            s(&audit),
        ],
    )
    .ok();
    assert_eq!(run.stdout.lines().count(), 216);
    assert!(run.stderr.contains("audit: 864 evaluation and 216 aggregate records appended"), "{}", run.stderr);
    let samples = std::fs::read_to_string(work.path().join("logs/audit.samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 216);
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(prompts.iter().all(|p| !log.contains(p.as_str())), "no medical text in the audit log");

    let verify = medrl(MEDRL, work.path(), &["--registry", s(&repo_root().join("data")), "audit", "verify", s(&audit)]).ok();
    assert!(
        verify.stdout.contains("1081 records (864 evaluations, 216 aggregates, 1 rule-set loads), hash chain intact; 864 decisions and 216 totals"),
        "{}",
        verify.stdout
    );
    let replay = medrl(MEDRL, work.path(), &["--registry", s(&repo_root().join("data")), "rules", "replay", s(&audit), "--all"]).ok();
    assert!(
        replay.stdout.contains("replayed 864 evaluations") && replay.stdout.contains("864 match exactly") && replay.stdout.contains(", 0 differ"),
        "{}",
        replay.stdout
    );
    let one = medrl(MEDRL, work.path(), &["--registry", s(&repo_root().join("data")), "rules", "replay", s(&audit), "--line", "7"]).ok();
    assert!(one.stdout.starts_with("line 7: ") && one.stdout.contains(": match"), "{}", one.stdout);

    // Tampering with the log.
    let records: Vec<&str> = log.lines().collect();
    let check = |name: &str, body: Vec<String>, needle: &str, why: &str| {
        let p = work.path().join("logs").join(name);
        std::fs::write(&p, body.join("\n") + "\n").unwrap();
        let run = medrl(MEDRL, work.path(), &["audit", "verify", s(&p)]).failed();
        assert!(run.stderr.contains(&format!("{name}:{needle}")) && run.stderr.contains(why), "{name}: {}", run.stderr);
    };
    let mut edited: Vec<String> = records.iter().map(|l| l.to_string()).collect();
    assert!(edited[4].contains("\"fuel_used\":"));
    edited[4] = edited[4].replacen("\"fuel_used\":", "\"fuel_used\":1", 1);
    check("edited.jsonl", edited, "5: content hashes to", "the line was edited");
    let mut deleted: Vec<String> = records.iter().map(|l| l.to_string()).collect();
    deleted.remove(9);
    check("deleted.jsonl", deleted, "10: holds record 11", "1 record(s) before it were removed");
    let mut swapped: Vec<String> = records.iter().map(|l| l.to_string()).collect();
    swapped.swap(19, 20);
    check("swapped.jsonl", swapped, "20: holds record 21", "lines were reordered (record 20 is at line 21)");
    // A truncated log verifies on its own, but not against the head printed before.
    let head = verify.stdout.trim().rsplit(' ').next().unwrap().to_string();
    let cut = work.path().join("logs/cut.jsonl");
    std::fs::write(&cut, records[..records.len() - 1].join("\n") + "\n").unwrap();
    let run = medrl(MEDRL, work.path(), &["audit", "verify", s(&cut), "--head", &head]).failed();
    assert!(run.stderr.contains("records were removed from the end"), "{}", run.stderr);
    // Replay refuses a broken log instead of replaying part of it.
    let p = work.path().join("logs/edited.jsonl");
    let run = medrl(MEDRL, work.path(), &["--registry", s(&repo_root().join("data")), "rules", "replay", s(&p), "--all"]).failed();
    assert!(run.stderr.contains("edited.jsonl:5:"), "{}", run.stderr);
}

#[test]
fn the_committed_reward_rules_doc_matches_the_manifests() {
    let committed_path = repo_root().join("docs/reward_rules/medical-safety-1.0.0.md");
    let committed = std::fs::read_to_string(&committed_path).unwrap();
    let run = medrl(MEDRL, &repo_root(), &["rules", "doc", "medical-safety@1.0.0", "--out", "-"]).ok();
    assert!(
        run.stdout == committed,
        "{} drifted from the manifests; regenerate it with `medrl rules doc medical-safety@1.0.0 --out docs/reward_rules/medical-safety-1.0.0.md`",
        committed_path.display()
    );
    for needle in ["R = 0.4·chain + 0.4·emergency − 0.2·risk − 0.1·verbosity", "### risk@1.0.0", "`order_penalty`: `0.25`", "Change log"] {
        assert!(committed.contains(needle), "{needle}");
    }
}

/// `verify --rebuild` first checks each rule's recorded source hash: sources edited after
/// publishing fail with the rebuild exit code before any build starts.
#[test]
fn verify_rebuild_refuses_sources_that_differ_from_the_recorded_ones() {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&repo_root().join("rules-wasm"), &copy.path().join("rules-wasm"));
    for rule in ["chain", "emergency", "risk", "verbosity"] {
        let lib = copy.path().join("rules-wasm").join(rule).join("src/lib.rs");
        std::fs::write(&lib, std::fs::read_to_string(&lib).unwrap() + "\n// edited after publishing\n").unwrap();
    }
    let run = medrl(MEDRL, &repo_root(), &["rules", "verify", "medical-safety@1.0.0", "--rebuild", "--source-root", s(copy.path())]).failed();
    assert_eq!(run.status, 6, "{}", run.stdout);
    for rule in ["chain", "emergency", "risk", "verbosity"] {
        assert!(run.stdout.contains(&format!("FAILED   rebuild {rule}@1.0.0 [6]: source ")), "{rule}: {}", run.stdout);
    }
    assert!(run.stdout.contains("was built from source"), "{}", run.stdout);
    assert!(run.stdout.contains("ok       12 pinned files"), "the other checks still run: {}", run.stdout);
}

/// `verify --rebuild` rebuilds a rule from its recorded source: it matches, and after an edit
/// of the source it fails with the rebuild exit code. Needs the wasm32 target, like every
/// test that builds a rule.
#[test]
fn verify_rebuild_compares_a_fresh_build_with_the_published_module() {
    let work = tempfile::tempdir().unwrap();
    let reg = tempfile::tempdir().unwrap();
    let crate_dir = work.path().join("referral");
    let sdk = repo_root().join("sdk");
    medrl(MEDRL, work.path(), &["rules", "new", "referral", "--dir", s(&crate_dir), "--sdk", s(&sdk)]).ok();
    medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "rules", "build", s(&crate_dir)]).ok();
    let spec = work.path().join("spec.toml");
    std::fs::write(&spec, "name = \"referral-only\"\nversion = \"0.1.0\"\n[[rules]]\nid = \"referral\"\nversion = \"0.1.0\"\nweight = 1.0\n[aggregation]\nclip = [0.0, 1.0]\n").unwrap();
    medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "rules", "ruleset", "new", s(&spec)]).ok();
    // The scaffold is its own workspace, so its recorded source path is `.` under the crate.
    // The scratch registry has no keyring: without --allow-unsigned the signature check fails.
    let unsigned = medrl(MEDRL, work.path(), &["--registry", s(reg.path()), "rules", "verify", "referral-only@0.1.0"]).failed();
    assert_eq!(unsigned.status, 5, "{}", unsigned.stdout);
    assert!(unsigned.stdout.contains("cannot be verified: no keyring is configured"), "{}", unsigned.stdout);
    let rebuild = |root: &Path| {
        medrl(
            MEDRL,
            work.path(),
            &["--registry", s(reg.path()), "--allow-unsigned", "rules", "verify", "referral-only@0.1.0", "--rebuild", "--source-root", s(root)],
        )
    };
    let ok = rebuild(&crate_dir).ok();
    assert!(ok.stdout.contains("signatures: 0 signature file(s) present, NOT CHECKED"), "{}", ok.stdout);
    assert!(ok.stdout.contains("ok       rebuild referral@0.1.0: rebuilt module sha256"), "{}", ok.stdout);
    let lib = crate_dir.join("src/lib.rs");
    std::fs::write(&lib, std::fs::read_to_string(&lib).unwrap() + "\n// edited after publishing\n").unwrap();
    let run = rebuild(&crate_dir).failed();
    assert_eq!(run.status, 6, "{}", run.stdout);
    assert!(run.stdout.contains("was built from source"), "{}", run.stdout);
}
