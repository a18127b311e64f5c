//! Writing a release: every check first, then the package in a sibling folder, renamed into place.

use super::card::model_card;
use super::sums::{self, SUMS_FILE, SUMS_SIG_FILE, SumsSignature};
use super::{BaseModel, EvalSummary, RELEASE_FILE, RELEASE_FORMAT, ReleaseError, ReleaseManifest, RuleSetRef};
use crate::governance::anchor::{MANIFEST_FILE, MANIFEST_SIG_FILE, RunManifest, check_run, record_hashes};
use crate::governance::replay::check_log;
use crate::model::digest::{adapter_sha256, model_sha256};
use crate::model::stack::{AdapterRef, StackRecord, plan_stack};
use crate::registry::signing::KeyFile;
use crate::registry::trust::{Keyring, REGISTRY_KEYRING};
use crate::registry::{Registry, VersionRef};
use crate::rl::TrainConfig;
use crate::rl::checkpoint::{ADAPTER_DIR, VALUE_HEAD};
use std::path::{Path, PathBuf};

/// What to package.
#[derive(Debug, Clone)]
pub struct ReleaseOptions {
    /// The finished training run (`runs/NAME`).
    pub run: PathBuf,
    /// The release folder to create (new or empty).
    pub out: PathBuf,
    /// An evaluation of the run's adapter (`medrl eval --out DIR`), packaged under `eval/`.
    pub eval: Option<PathBuf>,
    /// The data card (default `data/DATA_CARD.md`).
    pub data_card: PathBuf,
    /// Also copy the base model's weights into `model/`.
    pub with_base_weights: bool,
    /// Signs `SHA256SUMS` (the key and the file it was read from).
    pub key: Option<(KeyFile, PathBuf)>,
    /// The operator keyring the run's manifest signature must verify against, when given.
    pub operator_keyring: Option<Keyring>,
    /// The keyring the rule set was verified with, copied into `ruleset/keys/keyring.toml`.
    pub keyring_path: Option<PathBuf>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ReleaseSummary {
    pub dir: PathBuf,
    pub manifest: ReleaseManifest,
    pub files: usize,
    pub signed_by: Option<String>,
}

fn invalid(msg: String) -> ReleaseError {
    ReleaseError::Invalid(msg)
}

fn copy(from: &Path, to: &Path) -> Result<(), ReleaseError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(ReleaseError::io(parent))?;
    }
    std::fs::copy(from, to).map_err(ReleaseError::io(from))?;
    Ok(())
}

/// Copies every regular file of `from` (not recursive) into `to`.
fn copy_files(from: &Path, to: &Path, keep: impl Fn(&str) -> bool) -> Result<(), ReleaseError> {
    std::fs::create_dir_all(to).map_err(ReleaseError::io(to))?;
    for entry in std::fs::read_dir(from).map_err(ReleaseError::io(from))? {
        let entry = entry.map_err(ReleaseError::io(from))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && keep(&name) {
            copy(&entry.path(), &to.join(&name))?;
        }
    }
    Ok(())
}

/// Checks an audited folder (a training run or an evaluation): the log's chain, every decision
/// and total recomputed from the registry, every anchor (checkpoint heads, the final manifest,
/// its signature with an operator keyring).
fn check_audit(root: &Path, registry: &Registry, operator_keyring: Option<&Keyring>) -> Result<(), ReleaseError> {
    let log = root.join("audit.jsonl");
    check_log(&log, registry, None)?;
    let failed: Vec<String> = check_run(root, &record_hashes(&log)?, operator_keyring).into_iter().filter(|c| !c.ok).map(|c| c.what).collect();
    if !failed.is_empty() {
        return Err(invalid(format!(
            "the audit trail of {} does not verify, so it cannot be released:\n  {}\nrun `medrl audit verify {}` for every check",
            root.display(),
            failed.join("\n  "),
            root.display()
        )));
    }
    Ok(())
}

/// Writes the release of `opts.run` (module doc), after every check.
pub fn write_release(opts: &ReleaseOptions, registry: &Registry) -> Result<ReleaseSummary, ReleaseError> {
    let out = &opts.out;
    if out.exists() && std::fs::read_dir(out).map_err(ReleaseError::io(out))?.next().is_some() {
        return Err(invalid(format!("{} is not empty; a release goes into a new or empty folder", out.display())));
    }
    let run = &opts.run;
    let final_dir = run.join("final");
    for need in [ADAPTER_DIR, VALUE_HEAD, MANIFEST_FILE] {
        if !final_dir.join(need).exists() {
            return Err(invalid(format!(
                "{} has no final/{need}: only a finished training run can be released (let it finish, or resume it with `medrl train --resume {}`)",
                run.display(),
                run.display()
            )));
        }
    }
    let config = TrainConfig::load(Some(&run.join("config.toml")), &[])?;
    check_audit(run, registry, opts.operator_keyring.as_ref())?;
    let run_manifest = RunManifest::read(&final_dir)?;

    // The rule set: signed, and the bytes the run was scored with.
    let reference: VersionRef =
        run_manifest.ruleset.parse().map_err(|e: String| invalid(format!("{}: {e}", final_dir.join(MANIFEST_FILE).display())))?;
    let (ruleset, signers) = registry.load_ruleset_signed(&reference)?;
    let Some(signers) = signers else {
        return Err(invalid(format!(
            "{reference} was loaded without verified signatures (--allow-unsigned or no keyring); a release carries a signed rule set: pass --keyring with the keyring that signed it"
        )));
    };
    if ruleset.sha256 != run_manifest.ruleset_sha256 {
        return Err(invalid(format!(
            "the run was scored with {reference} sha256 {}, the registry {} now holds sha256 {}; release from the registry the run used",
            run_manifest.ruleset_sha256,
            registry.root().display(),
            ruleset.sha256
        )));
    }

    // The adapter stack: the base and SFT adapter the adapter records must be these.
    let adapter_dir = final_dir.join(ADAPTER_DIR);
    let base = &config.model.path;
    let base_sha256 = model_sha256(base)?;
    let sft: Vec<&Path> = config.model.sft_adapter.iter().map(PathBuf::as_path).collect();
    plan_stack(base, &base_sha256, &sft, &adapter_dir)?;
    let record = StackRecord::read(&adapter_dir)?;
    let adapter_ref = AdapterRef { path: ADAPTER_DIR.into(), sha256: adapter_sha256(&adapter_dir)? };

    // The evaluation: audited, of this adapter, with this rule set.
    let mut eval_summary = None;
    let mut report: Option<serde_json::Value> = None;
    if let Some(eval) = &opts.eval {
        check_audit(eval, registry, opts.operator_keyring.as_ref())?;
        let path = eval.join("report.json");
        let text = std::fs::read_to_string(&path).map_err(ReleaseError::io(&path))?;
        let r: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(format!("{} does not parse: {e}", path.display())))?;
        if r["ruleset_sha256"] != ruleset.sha256.as_str() {
            return Err(invalid(format!("{} was scored with another rule set ({}) than the run ({reference})", path.display(), r["ruleset"])));
        }
        let candidate = r["candidate"].as_str().unwrap_or_default().to_string();
        let set = r["sets"][0]["set"].as_str().unwrap_or_default();
        let answers = eval.join(format!("answers-{set}-{candidate}.jsonl"));
        let first = std::fs::read_to_string(&answers).map_err(ReleaseError::io(&answers))?;
        let line: serde_json::Value =
            serde_json::from_str(first.lines().next().unwrap_or("{}")).map_err(|e| invalid(format!("{}: {e}", answers.display())))?;
        let evaluated = line["adapter_sha256"].as_str().and_then(|s| s.rsplit('+').next()).unwrap_or("none").to_string();
        if evaluated != adapter_ref.sha256 {
            return Err(invalid(format!(
                "the evaluation's candidate `{candidate}` used adapter sha256 {evaluated}, the run's final adapter is {}: evaluate this run's adapter (or pass --candidate)",
                adapter_ref.sha256
            )));
        }
        eval_summary = Some(EvalSummary {
            baseline: r["baseline"].as_str().unwrap_or_default().into(),
            candidate,
            gates_passed: r["gates_passed"].as_bool().unwrap_or(false),
        });
        report = Some(r);
    }
    if !opts.data_card.is_file() {
        return Err(invalid(format!("no data card at {}; pass --data-card FILE (`medrl data card` writes one)", opts.data_card.display())));
    }

    // Every check passed: build beside the target, then rename.
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(ReleaseError::io(parent))?;
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "release".into());
    let stage = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(ReleaseError::io(&stage))?;
    }
    let built = build(&stage, opts, &config, registry, &ruleset.manifest.files, &reference, &adapter_dir, &final_dir);
    let result = built.and_then(|()| {
        let sft_adapter = match (&record, config.model.sft_adapter.as_ref()) {
            (_, Some(dir)) => {
                copy_files(dir, &stage.join("sft_adapter"), |_| true)?;
                Some(AdapterRef { path: "sft_adapter".into(), sha256: adapter_sha256(dir)? })
            }
            _ => None,
        };
        let manifest = ReleaseManifest {
            format: RELEASE_FORMAT.into(),
            name: config.run.name.clone(),
            medrl_version: env!("CARGO_PKG_VERSION").into(),
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            base_model: BaseModel { trained_on: base.display().to_string(), sha256: base_sha256.clone(), weights_included: opts.with_base_weights },
            sft_adapter,
            adapter: adapter_ref.clone(),
            initialised_from: record.as_ref().and_then(|r| r.initialised_from.clone()),
            algorithm: format!("{:?}", config.ppo.algorithm).to_lowercase(),
            steps: config.run.steps,
            ruleset: RuleSetRef {
                name: ruleset.manifest.name.clone(),
                version: ruleset.manifest.version.to_string(),
                revision: ruleset.manifest.revision,
                sha256: ruleset.sha256.clone(),
                signers: signers.clone(),
                registry: "ruleset".into(),
            },
            eval: eval_summary.clone(),
        };
        let path = stage.join(RELEASE_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(&manifest).expect("plain data") + "\n").map_err(ReleaseError::io(&path))?;
        let card = stage.join("MODEL_CARD.md");
        std::fs::write(&card, model_card(&manifest, report.as_ref())).map_err(ReleaseError::io(&card))?;
        let text = sums::compute(&stage)?;
        let files = text.lines().count();
        let sums_path = stage.join(SUMS_FILE);
        std::fs::write(&sums_path, &text).map_err(ReleaseError::io(&sums_path))?;
        let mut signed_by = None;
        if let Some((key, key_path)) = &opts.key {
            let sig = SumsSignature::sign(key, key_path, text.as_bytes(), manifest.created_at.clone())?;
            signed_by = Some(format!("{} (key {})", sig.signer, sig.key_id));
            let sig_path = stage.join(SUMS_SIG_FILE);
            std::fs::write(&sig_path, serde_json::to_string_pretty(&sig).expect("plain data") + "\n").map_err(ReleaseError::io(&sig_path))?;
        }
        if out.exists() {
            std::fs::remove_dir(out).map_err(ReleaseError::io(out))?;
        }
        std::fs::rename(&stage, out).map_err(ReleaseError::io(out))?;
        Ok(ReleaseSummary { dir: out.clone(), manifest, files, signed_by })
    });
    if result.is_err() && stage.exists() {
        let _ = std::fs::remove_dir_all(&stage);
    }
    result
}

/// The package's files other than release.json, the model card and the sums.
#[allow(clippy::too_many_arguments)]
fn build(
    stage: &Path,
    opts: &ReleaseOptions,
    config: &TrainConfig,
    registry: &Registry,
    ruleset_files: &[crate::registry::ruleset::FileEntry],
    reference: &VersionRef,
    adapter_dir: &Path,
    final_dir: &Path,
) -> Result<(), ReleaseError> {
    std::fs::create_dir_all(stage).map_err(ReleaseError::io(stage))?;
    copy_files(adapter_dir, &stage.join("adapter"), |_| true)?;
    copy(&final_dir.join(VALUE_HEAD), &stage.join(VALUE_HEAD))?;
    let weights = opts.with_base_weights;
    copy_files(&config.model.path, &stage.join("model"), |n| weights || !(n.ends_with(".safetensors") || n.ends_with(".safetensors.index.json")))?;
    copy(&opts.run.join("config.toml"), &stage.join("config.toml"))?;
    // The rule set as a registry of its own: `ruleset.json`, its signatures, every pinned file.
    let rs_dir = registry.ruleset_dir(&reference.name, &reference.version);
    let rel = rs_dir.strip_prefix(registry.root()).unwrap_or(&rs_dir).to_path_buf();
    copy_files(&rs_dir, &stage.join("ruleset").join(rel), |_| true)?;
    for f in ruleset_files {
        copy(&registry.root().join(&f.path), &stage.join("ruleset").join(&f.path))?;
    }
    let keyring = opts.keyring_path.clone().unwrap_or_else(|| registry.root().join(REGISTRY_KEYRING));
    if keyring.is_file() {
        copy(&keyring, &stage.join("ruleset").join(REGISTRY_KEYRING))?;
    }
    if let Some(eval) = &opts.eval {
        copy_files(eval, &stage.join("eval"), |n| {
            n == "report.json" || n == "eval_report.md" || n.ends_with(".svg") || n == MANIFEST_FILE || n == MANIFEST_SIG_FILE
        })?;
    }
    copy(&opts.data_card, &stage.join("DATA_CARD.md"))?;
    copy(&final_dir.join(MANIFEST_FILE), &stage.join("audit").join(MANIFEST_FILE))?;
    if final_dir.join(MANIFEST_SIG_FILE).is_file() {
        copy(&final_dir.join(MANIFEST_SIG_FILE), &stage.join("audit").join(MANIFEST_SIG_FILE))?;
    }
    Ok(())
}
