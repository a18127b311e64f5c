//! `medrl rules verify`: every check an auditor needs on one rule set, each reported on its own
//! (not stopping at the first failure), with a failure class a script can act on.
//!
//! Checks: the rule-set folder holds only `ruleset.json` and `*.sig`; signatures (with a
//! keyring); every pinned file's sha256 and size; each rule's manifest pin and its folder's
//! exact file set; the declared file list equals the rules' files; weight signs; the previous
//! revision link; then the registry's own full load as a cross-check. With a source root,
//! `--rebuild` rebuilds each rule from its recorded source path and compares the module sha256.

use super::author::{self, source_tree_sha256};
use crate::registry::hash::sha256_hex;
use crate::registry::ruleset::{RuleSetManifest, VersionRef};
use crate::registry::store::{RULE_MANIFEST, RULESET_MANIFEST, Registry, RegistryError, check_weight_sign, read_json, read_json_canonical};
use crate::registry::trust::{signature_files, verify_signatures};
use crate::reward::sandbox::Sandbox;
use serde::Serialize;
use std::path::PathBuf;

/// What kind of failure a check found; each has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// A hash, size or pin differs, or a manifest is invalid: exit 3.
    Content,
    /// An extra or missing file: exit 4.
    Files,
    /// Unsigned, untrusted, invalid or too few signatures: exit 5.
    Signatures,
    /// A rebuilt module (or its source) differs from the recorded one: exit 6.
    Rebuild,
}

impl FailureClass {
    pub fn exit_code(self) -> u8 {
        match self {
            FailureClass::Content => 3,
            FailureClass::Files => 4,
            FailureClass::Signatures => 5,
            FailureClass::Rebuild => 6,
        }
    }

    pub fn of(e: &RegistryError) -> Self {
        match e {
            RegistryError::ExtraFile { .. } | RegistryError::MissingFile { .. } => FailureClass::Files,
            RegistryError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => FailureClass::Files,
            RegistryError::Trust(_) => FailureClass::Signatures,
            _ => FailureClass::Content,
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CheckStatus {
    Ok {
        detail: String,
    },
    /// Not run, and why (e.g. no keyring given).
    Skipped {
        reason: String,
    },
    Failed {
        class: FailureClass,
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    #[serde(flatten)]
    pub status: CheckStatus,
}

/// All checks of one rule set.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub reference: String,
    pub sha256: Option<String>,
    pub checks: Vec<Check>,
}

impl VerifyReport {
    /// 0 when nothing failed; else the lowest exit code among the failures.
    pub fn exit_code(&self) -> u8 {
        self.checks
            .iter()
            .filter_map(|c| match &c.status {
                CheckStatus::Failed { class, .. } => Some(class.exit_code()),
                _ => None,
            })
            .min()
            .unwrap_or(0)
    }

    fn push(&mut self, name: impl Into<String>, status: CheckStatus) {
        self.checks.push(Check { name: name.into(), status });
    }

    fn push_result(&mut self, name: impl Into<String>, r: Result<String, RegistryError>) {
        let status = match r {
            Ok(detail) => CheckStatus::Ok { detail },
            Err(e) => CheckStatus::Failed { class: FailureClass::of(&e), reason: e.to_string() },
        };
        self.push(name, status);
    }
}

/// Where `--rebuild` finds the sources: `build.source_path` of each rule is relative to it.
#[derive(Clone)]
pub struct Rebuild<'a> {
    pub source_root: PathBuf,
    pub sandbox: &'a Sandbox,
}

/// Runs every check. An `Err` only when the rule set does not exist (a usage error).
pub fn verify_ruleset(registry: &Registry, r: &VersionRef, rebuild: Option<Rebuild<'_>>) -> Result<VerifyReport, RegistryError> {
    if !registry.versions("rulesets", &r.name).contains(&r.version) {
        // The registry's own message lists what exists.
        registry.load_ruleset(r)?;
    }
    let dir = registry.ruleset_dir(&r.name, &r.version);
    let path = dir.join(RULESET_MANIFEST);
    let mut report = VerifyReport { reference: r.to_string(), sha256: None, checks: Vec::new() };
    let (manifest, sha256, canonical) = match read_json_canonical::<RuleSetManifest>(&path, "rule set manifest") {
        Ok(x) => x,
        Err(e) => {
            report.push_result("ruleset.json parses", Err(e));
            return Ok(report);
        }
    };
    report.sha256 = Some(sha256.clone());
    let names_itself = manifest.name == r.name && manifest.version == r.version;
    report.push_result(
        "ruleset.json names its folder",
        if names_itself {
            Ok(format!("{} revision {}", manifest.reference(), manifest.revision))
        } else {
            Err(RegistryError::Inconsistent { path: path.clone(), msg: format!("declares {} but lies in the folder of {r}", manifest.reference()) })
        },
    );

    // The rule-set folder: ruleset.json and signatures only.
    let extra: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    n != RULESET_MANIFEST && !n.ends_with(".sig")
                })
                .collect()
        })
        .unwrap_or_default();
    report.push_result(
        "rule-set folder holds only ruleset.json and *.sig",
        match extra.first() {
            None => Ok(dir.display().to_string()),
            Some(p) => Err(RegistryError::ExtraFile { path: p.clone(), owner: format!("rule set {r}") }),
        },
    );

    // Signatures.
    let trust = registry.trust();
    match &trust.keyring {
        Some(keyring) => {
            let result = verify_signatures(keyring, trust.required(), &r.to_string(), &dir, &path, &canonical, &sha256)
                .map(|signers| {
                    let who: Vec<String> = signers.iter().map(|s| format!("{} ({})", s.key_id, s.name)).collect();
                    format!("{} of {} required: {}", signers.len(), trust.required(), who.join(", "))
                })
                .map_err(RegistryError::from);
            report.push_result("signatures", result);
        }
        // Fail closed: "verifies" never stands for an unchecked signature unless the operator
        // said --allow-unsigned.
        None if trust.allow_unsigned => {
            let n = signature_files(&dir).map(|f| f.len()).unwrap_or(0);
            report.push(
                "signatures",
                CheckStatus::Skipped { reason: format!("{n} signature file(s) present, NOT CHECKED: no keyring, --allow-unsigned") },
            );
        }
        None => report.push_result("signatures", Err::<String, _>(RegistryError::from(registry.no_keyring(r)))),
    }

    // Every pinned file, as the rule set lists it.
    let mut bad_files = Vec::new();
    for f in &manifest.files {
        let p = registry.root().join(&f.path);
        let result = match std::fs::read(&p) {
            Err(source) => Err(RegistryError::Io { path: p.clone(), source }),
            Ok(bytes) if bytes.len() as u64 != f.size => Err(RegistryError::SizeMismatch {
                path: p.clone(),
                expected: f.size,
                actual: bytes.len() as u64,
                pinned_by: path.display().to_string(),
            }),
            Ok(bytes) => {
                let actual = sha256_hex(&bytes);
                if actual == f.sha256 {
                    Ok(())
                } else {
                    Err(RegistryError::HashMismatch { path: p.clone(), expected: f.sha256.clone(), actual, pinned_by: path.display().to_string() })
                }
            }
        };
        if let Err(e) = result {
            bad_files.push(e);
        }
    }
    let n_files = manifest.files.len();
    match bad_files.into_iter().next() {
        None => report.push_result(format!("{n_files} pinned files: sha256 and size"), Ok("all match".into())),
        Some(first) => report.push_result(format!("{n_files} pinned files: sha256 and size"), Err(first)),
    }

    // Each rule: its own manifest pins and exact folder, the rule set's pin of its manifest,
    // and its weight's sign.
    let mut rules = Vec::new();
    for entry in &manifest.rules {
        let rr = VersionRef { name: entry.id.clone(), version: entry.version.clone() };
        let result = registry.load_rule(&rr).and_then(|rule| {
            if rule.manifest_sha256 != entry.manifest_sha256 {
                return Err(RegistryError::HashMismatch {
                    path: rule.dir.join(RULE_MANIFEST),
                    expected: entry.manifest_sha256.clone(),
                    actual: rule.manifest_sha256.clone(),
                    pinned_by: path.display().to_string(),
                });
            }
            check_weight_sign(&path, &entry.id, rule.manifest.kind, entry.weight)?;
            let detail = format!("module {} ({} bytes), manifest {}", rule.manifest.module.sha256, rule.manifest.module.size, rule.manifest_sha256);
            rules.push(rule);
            Ok(detail)
        });
        report.push_result(format!("rule {rr}"), result);
    }
    if let Some(entry) = &manifest.judge {
        let result = registry
            .load_judge(entry, &path)
            .map(|j| format!("library {} ({} bytes, sha256 {}), not sandboxed", j.path.display(), entry.library.size, entry.library.sha256));
        report.push_result(format!("judge {}", entry.reference()), result);
    }
    if rules.len() == manifest.rules.len() {
        let result = registry.ruleset_files(&rules, manifest.judge.as_ref()).and_then(|actual| {
            if actual == manifest.files {
                Ok(format!("{} files, no extra, none missing", actual.len()))
            } else {
                Err(RegistryError::Inconsistent {
                    path: path.clone(),
                    msg: "`files` does not list exactly the rules' files; re-create the rule set".into(),
                })
            }
        });
        report.push_result("file list equals the rules' files", result);
    }

    // The revision chain.
    match &manifest.previous {
        None => report.push("previous revision", CheckStatus::Ok { detail: format!("none: revision {} is the first", manifest.revision) }),
        Some(p) => {
            let prev_path = registry.ruleset_dir(&r.name, &p.version).join(RULESET_MANIFEST);
            let status = match read_json::<RuleSetManifest>(&prev_path, "rule set manifest") {
                Err(RegistryError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    CheckStatus::Skipped { reason: format!("{}@{} is not in this registry", r.name, p.version) }
                }
                Err(e) => CheckStatus::Failed { class: FailureClass::of(&e), reason: e.to_string() },
                Ok((prev, prev_sha)) if prev_sha == p.sha256 && prev.revision == p.revision && p.revision < manifest.revision => {
                    CheckStatus::Ok { detail: format!("{}@{} revision {} ({})", r.name, p.version, p.revision, p.sha256) }
                }
                Ok((prev, prev_sha)) => CheckStatus::Failed {
                    class: FailureClass::Content,
                    reason: format!(
                        "{} names previous {}@{} revision {} sha256 {}, but {} is revision {} with sha256 {} (and must be below {})",
                        path.display(),
                        r.name,
                        p.version,
                        p.revision,
                        p.sha256,
                        prev_path.display(),
                        prev.revision,
                        prev_sha,
                        manifest.revision
                    ),
                },
            };
            report.push("previous revision", status);
        }
    }

    // The registry's own end-to-end load must agree.
    report.push_result("registry load", registry.load_ruleset(r).map(|rs| format!("sha256 {}", rs.sha256)));

    // Rebuild from source.
    if let Some(rb) = rebuild {
        for rule in &rules {
            let name = format!("rebuild {}", rule.manifest.reference());
            report.push(name, rebuild_rule(&rb, rule));
        }
    }
    Ok(report)
}

fn rebuild_rule(rb: &Rebuild<'_>, rule: &crate::registry::store::VerifiedRule) -> CheckStatus {
    let m = &rule.manifest;
    let crate_dir = rb.source_root.join(&m.build.source_path);
    let failed = |reason: String| CheckStatus::Failed { class: FailureClass::Rebuild, reason };
    let source_sha = match source_tree_sha256(&crate_dir) {
        Ok(s) => s,
        Err(e) => return failed(format!("cannot read the recorded source {}: {e}", crate_dir.display())),
    };
    if source_sha != m.build.source_sha256 {
        return failed(format!(
            "source {} hashes to {source_sha}, but {} was built from source {}; check out the commit {} and rebuild",
            crate_dir.display(),
            m.reference(),
            m.build.source_sha256,
            m.build.source_commit.as_deref().unwrap_or("(not recorded)")
        ));
    }
    let scratch = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return failed(format!("cannot create a scratch registry: {e}")),
    };
    match author::build(&crate_dir, &Registry::integrity_only(scratch.path()), rb.sandbox) {
        Err(e) => failed(format!("rebuilding {} failed: {e}", crate_dir.display())),
        Ok(built) if built.module_sha256 == m.module.sha256 => {
            CheckStatus::Ok { detail: format!("rebuilt module sha256 {} matches", built.module_sha256) }
        }
        Ok(built) => failed(format!(
            "rebuilt module from {} has sha256 {} but {} records {}; the build is not reproducible here (toolchain {} recorded)",
            crate_dir.display(),
            built.module_sha256,
            m.reference(),
            m.module.sha256,
            m.build.rustc
        )),
    }
}
