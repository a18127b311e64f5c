//! `medrl sft --config FILE --set key=value` with the built binary on the tiny model: a typo in
//! an override is blamed on its flag, a bad value is refused with its fix, both before the output
//! folder exists; a good run writes its resolved settings to `config.toml`, which `--config`
//! reads back.

use crate::MEDRL;
use medrl::sft::SftConfig;
use medrl_tests::{first_lines, medrl, repo_root};

#[test]
fn sft_settings_from_a_file_and_overrides_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    medrl(MEDRL, &repo_root(), &["model", "init", "--preset", "tiny", "--out", model.to_str().unwrap()]).ok();
    let data = dir.path().join("sft.jsonl");
    first_lines(&repo_root().join("data/sets/sft.jsonl"), 4, &data);
    let out = dir.path().join("sft");
    let config = dir.path().join("sft.toml");
    let text = format!(
        "model = {:?}\ndata = {:?}\nout = {:?}\nepochs = 1\nbatch_size = 4\nmax_seq_len = 96\n\n[lora]\nr = 4\nalpha = 8.0\n",
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap()
    );
    std::fs::write(&config, &text).unwrap();
    let cfg = config.to_str().unwrap();

    // A typo in an override: refused, the flag named, nothing written.
    let r = medrl(MEDRL, &repo_root(), &["sft", "--config", cfg, "--set", "epochs=1", "--set", "learnig_rate=0.01"]).failed();
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(r.stderr.contains("error: --set learnig_rate=0.01: unknown field `learnig_rate`, expected one of"), "{}", r.stderr);
    assert!(!r.stderr.contains("sft.toml"), "the file is not to blame: {}", r.stderr);
    assert!(!out.exists(), "a refused run wrote {}", out.display());

    // Bad values: refused with the key, the value, where it came from and a fix, before the
    // output folder exists.
    for (given, says) in [
        (
            "learning_rate=-1",
            "`learning_rate` must be a finite number in (0, 1] (it is -1.0, from --set learning_rate=-1); for example --set learning_rate=0.003",
        ),
        ("learning_rate=nan", "`learning_rate` must be a finite number in (0, 1] (it is nan, from --set learning_rate=nan)"),
        (
            "grad_accum_steps=3",
            "`grad_accum_steps` must be a divisor of batch_size (it is 3, from --set grad_accum_steps=3); for example --set grad_accum_steps=2",
        ),
    ] {
        let r = medrl(MEDRL, &repo_root(), &["sft", "--config", cfg, "--set", given]).failed();
        assert_eq!(r.status, 1, "{given}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{given}: {}", r.stderr);
        assert!(!out.exists(), "{given}: a refused run wrote {}", out.display());
    }
    // A bad value in the file names the key, without a flag.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, format!("{text}dropout = 1.5\n")).unwrap();
    let r = medrl(MEDRL, &repo_root(), &["sft", "--config", bad.to_str().unwrap()]).failed();
    assert!(r.stderr.contains("`lora.dropout` must be a finite number in [0, 1) (it is 1.5);"), "{}", r.stderr);
    assert!(!out.exists());

    // A good run: the file's settings with an override, and a shorthand equal to its --set.
    let r = medrl(MEDRL, &repo_root(), &["sft", "--config", cfg, "--set", "learning_rate=0.01", "--set", "seed=7"]).ok();
    assert!(r.stdout.contains("SFT: 4 examples, 1 steps"), "{}", r.stdout);
    let written = out.join("config.toml");
    assert!(r.stdout.contains(&format!("settings: {}", written.display())), "{}", r.stdout);
    assert!(out.join("adapter/adapter_model.safetensors").exists());
    let resolved = SftConfig::load(Some(&written), &[]).unwrap();
    let expected = SftConfig::load(Some(&config), &["learning_rate=0.01".into(), "seed=7".into()]).unwrap();
    assert_eq!(resolved, expected);
    assert_eq!((resolved.epochs, resolved.lora.r, resolved.learning_rate, resolved.seed), (1, 4, 0.01, 7));
    // An existing output folder is refused without --overwrite, even with the run's own settings.
    let r = medrl(MEDRL, &repo_root(), &["sft", "--config", written.to_str().unwrap()]).failed();
    assert_eq!(r.status, 1, "{}", r.stderr);
}
