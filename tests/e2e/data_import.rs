//! `medrl data import` on the project's own fixtures (`tests/fixtures/import/`), one per format:
//! what lands in the pool carries its licence and origin, round-trips through validate, the card
//! and build-prompts, and what cannot be imported is refused or set aside with its line.

use crate::MEDRL;
use crate::data::{fixture, read_jsonl};
use medrl_tests::{medrl, repo_root};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture_file(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/import").join(name)
}

fn import(dir: &Path, args: &[&str]) -> medrl_tests::Run {
    let mut all = vec!["data", "import", "--dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    medrl(MEDRL, &repo_root(), &all)
}

#[test]
fn each_format_imports_with_licence_and_origin_and_round_trips() {
    let (data, _) = fixture();
    let dir = data.path();
    let generic = fixture_file("generic.jsonl");
    let run = import(
        dir,
        &[
            "--format",
            "jsonl",
            "--licence",
            "CC-BY-4.0",
            "--source",
            "hx-forum",
            "--field",
            "prompt=body.text",
            "--field",
            "id=qid",
            "--field",
            "tags=kw",
            generic.to_str().unwrap(),
        ],
    )
    .ok();
    assert!(
        run.stdout.contains("7 records") && run.stdout.contains("imported 3 (2 zh, 1 en; 1 high-risk), refused 3, set aside for review 1"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("generic.jsonl:5: exact duplicate of `p1`"), "{}", run.stdout);
    assert!(run.stdout.contains("generic.jsonl:6: not JSON") && run.stdout.contains("generic.jsonl:7: no text at `body.text`"), "{}", run.stdout);
    assert!(run.stdout.contains("generic.jsonl:4: no category rule matched"), "{}", run.stdout);
    let items = read_jsonl(&dir.join("pool/hx-forum.jsonl"));
    assert_eq!(items.len(), 3);
    let first = &items[0];
    assert_eq!(
        (first["id"].as_str(), first["source"].as_str(), first["licence"].as_str()),
        (Some("pool-hx-forum-000001"), Some("hx-forum"), Some("CC-BY-4.0"))
    );
    assert_eq!(
        (first["quality"].as_str(), first["version"].as_str(), first["category"].as_str()),
        (Some("draft"), Some("1.0.0"), Some("medication"))
    );
    let origin = &first["origin"];
    assert_eq!(
        (origin["format"].as_str(), origin["file"].as_str(), origin["line"].as_u64(), origin["id"].as_str()),
        (Some("jsonl"), Some("generic.jsonl"), Some(1), Some("hx-001"))
    );
    assert_eq!(origin["sha256"].as_str().unwrap(), sha256(&generic));
    assert_eq!(first["tags"], serde_json::json!(["uric-acid", "checkup", "import-jsonl"]));
    // The preeclampsia prompt: pregnancy, high-risk, its red flag as an emergency sign.
    assert_eq!(
        (items[1]["category"].as_str(), items[1]["lang"].as_str(), items[1]["tags"][0].as_str()),
        (Some("general"), Some("en"), Some("heartburn"))
    );
    assert_eq!((items[2]["category"].as_str(), items[2]["risk"].as_str()), (Some("pregnancy"), Some("high")));
    assert_eq!(items[2]["expect"]["emergency_signs"], serde_json::json!(["眼前发花"]));
    let side = dir.parent().unwrap().join("import");
    assert_eq!(read_jsonl(&side.join("hx-forum.refused.jsonl")).len(), 3);
    assert_eq!(read_jsonl(&side.join("hx-forum.review.jsonl")).iter().map(|s| s["line"].as_u64().unwrap()).collect::<Vec<_>>(), [4]);

    let exam = fixture_file("exam.jsonl");
    let run = import(dir, &["--format", "exam", "--licence", "MIT", "--source", "exam-demo", exam.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("imported 3 (1 zh, 2 en; 0 high-risk), refused 1, set aside for review 0"), "{}", run.stdout);
    let items = read_jsonl(&dir.join("pool/exam-demo.jsonl"));
    assert!(
        items[0]["prompt"].as_str().unwrap().ends_with("raise her INR.\nA. Metronidazole\nB. Nitrofurantoin\nC. Fosfomycin\nD. Penicillin V"),
        "{}",
        items[0]["prompt"]
    );
    assert_eq!(items[1]["category"].as_str(), Some("pediatrics"));
    assert!(items.iter().all(|i| i.get("answer").is_none()), "the answer key is not kept");
    let csv = fixture_file("exam.csv");
    let run = import(dir, &["--format", "exam", "--licence", "LicenseRef-hospital-internal", "--source", "ward-exam", csv.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("imported 2 (2 zh, 0 en"), "{}", run.stdout);
    let items = read_jsonl(&dir.join("pool/ward-exam.jsonl"));
    assert_eq!((items[0]["origin"]["line"].as_u64(), items[0]["category"].as_str()), (Some(2), Some("pregnancy")));

    let dialogue = fixture_file("dialogue.jsonl");
    let run = import(dir, &["--format", "dialogue", "--licence", "Apache-2.0", "--source", "dlg-demo", dialogue.to_str().unwrap()]).ok();
    assert!(run.stdout.contains("imported 3 (2 zh, 1 en; 0 high-risk), refused 1"), "{}", run.stdout);
    let items = read_jsonl(&dir.join("pool/dlg-demo.jsonl"));
    let prompts: Vec<&str> = items.iter().map(|i| i["prompt"].as_str().unwrap()).collect();
    assert!(prompts[0].starts_with("医生你好，我最近老是心慌") && prompts[1].starts_with("My 3 year old has had a barking cough"), "{prompts:?}");
    assert_eq!(items[1]["category"].as_str(), Some("pediatrics"));

    // The whole directory still validates, the card lists each pool file with its licence, and a
    // build draws imported prompts with their licence in the provenance.
    let d = dir.to_str().unwrap();
    let run = medrl(MEDRL, &repo_root(), &["data", "validate", "--dir", d]).ok();
    assert!(run.stdout.contains(&format!("{:<8} {:>6}", "pool", 13)), "{}", run.stdout);
    medrl(MEDRL, &repo_root(), &["data", "card", "--dir", d]).ok();
    let card = std::fs::read_to_string(dir.parent().unwrap().join("DATA_CARD.md")).unwrap();
    assert!(card.contains("/pool/ward-exam.jsonl` | 2 | 100.0 % | 0.0 % | ward-exam | LicenseRef-hospital-internal |"), "{card}");
    let out = dir.parent().unwrap().join("all.jsonl");
    medrl(MEDRL, &repo_root(), &["data", "build-prompts", "--dir", d, "--n", "13", "--high-risk-min", "0.1", "--out", out.to_str().unwrap()]).ok();
    let lines = read_jsonl(&out);
    let exam_line = lines.iter().find(|l| l["id"] == "pool-exam-demo-000003").expect("every pool prompt is drawn at n = 13");
    assert_eq!(exam_line["provenance"]["licence"].as_str(), Some("MIT"));
    assert!(exam_line["provenance"]["file"].as_str().unwrap().ends_with("pool/exam-demo.jsonl"));
    medrl(MEDRL, &repo_root(), &["data", "validate", "--dir", d, "--prompts", out.to_str().unwrap()]).ok();
}

#[test]
fn an_import_is_refused_before_anything_is_written_when_it_cannot_be_right() {
    let (data, _) = fixture();
    let dir = data.path();
    let exam = fixture_file("exam.jsonl");
    let e = exam.to_str().unwrap();
    let run = import(dir, &["--format", "exam", "--licence", "CC-BY-FOUR", "--source", "x", e]).failed();
    assert!(run.stderr.contains("--licence `CC-BY-FOUR` is not an SPDX expression"), "{}", run.stderr);
    let run = import(dir, &["--format", "exam", "--licence", "MIT", "--source", "Bad Name", e]).failed();
    assert!(run.stderr.contains("--source `Bad Name` must be"), "{}", run.stderr);
    let run = import(dir, &["--format", "exam", "--licence", "MIT", "--source", "x", "--field", "question=q", e]).failed();
    assert!(run.stderr.contains("`question` is not one of prompt, id, lang, category, risk, tags"), "{}", run.stderr);
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let run = import(dir, &["--format", "jsonl", "--licence", "MIT", "--source", "x", empty.to_str().unwrap()]).failed();
    assert!(run.stderr.contains("is empty: nothing to import"), "{}", run.stderr);
    assert!(!dir.join("pool").exists(), "nothing written");
    // A dry run reports and writes nothing; the real run writes; a second run of the same source
    // is refused without --replace, and with it every record is its own again (not a duplicate).
    let run = import(dir, &["--format", "exam", "--licence", "MIT", "--source", "x", "--dry-run", e]).ok();
    assert!(run.stdout.contains("imported 3") && run.stdout.contains("dry run: nothing written"), "{}", run.stdout);
    assert!(!dir.join("pool/x.jsonl").exists());
    import(dir, &["--format", "exam", "--licence", "MIT", "--source", "x", e]).ok();
    let before = std::fs::read(dir.join("pool/x.jsonl")).unwrap();
    let run = import(dir, &["--format", "exam", "--licence", "MIT", "--source", "x", e]).failed();
    assert!(run.stderr.contains("exists from an earlier import of `x`; pass --replace"), "{}", run.stderr);
    import(dir, &["--format", "exam", "--licence", "MIT", "--source", "x", "--replace", e]).ok();
    assert_eq!(std::fs::read(dir.join("pool/x.jsonl")).unwrap(), before, "a re-import is byte-identical");
    // The same questions under another source name are all duplicates: nothing to import.
    let run = import(dir, &["--format", "exam", "--licence", "MIT", "--source", "y", e]).failed();
    assert!(run.stdout.contains("exact duplicate of `pool-x-000001`"), "{}", run.stdout);
    assert!(run.stderr.contains("nothing to import"), "{}", run.stderr);
    assert!(!dir.join("pool/y.jsonl").exists());
}

#[test]
fn a_pool_item_with_a_bad_licence_or_an_origin_without_one_fails_validation() {
    let (data, _) = fixture();
    let dir = data.path();
    std::fs::create_dir_all(dir.join("pool")).unwrap();
    let mut good: Value = serde_json::from_str(std::fs::read_to_string(dir.join("pool.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    good["id"] = "imp-1".into();
    good["prompt"] = "Is it safe to take melatonin every night for a year?".into();
    good["lang"] = "en".into();
    good["category"] = "general".into();
    good["risk"] = "low".into();
    good.as_object_mut().unwrap().remove("expect");
    good["licence"] = "GPL-9.0".into();
    let mut unlicensed = good.clone();
    unlicensed["id"] = "imp-2".into();
    unlicensed["prompt"] = "How long do antihistamine tablets stay in the body?".into();
    unlicensed.as_object_mut().unwrap().remove("licence");
    unlicensed["origin"] = serde_json::json!({"format": "jsonl", "file": "f.jsonl", "sha256": "00", "line": 3});
    medrl_tests::write_jsonl(&dir.join("pool/bad.jsonl"), &[good, unlicensed]);
    let run = medrl(MEDRL, &repo_root(), &["data", "validate", "--dir", dir.to_str().unwrap()]).failed();
    assert!(run.stderr.contains("pool/bad.jsonl:1: `imp-1` has licence `GPL-9.0`, which is not an SPDX expression"), "{}", run.stderr);
    assert!(run.stderr.contains("pool/bad.jsonl:2: `imp-2` was imported (it has an `origin`) but has no `licence`"), "{}", run.stderr);
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
