//! Publishing a rule-set version from a small TOML spec: rules by `id@version` with weights and
//! parameter overrides, the aggregation, and approvals. The manifest hashes, file list,
//! revision and previous-revision link are computed, never written by hand. An optional
//! `[judge]` table names a judge plugin already copied into `plugins/<id>/<version>/`; its
//! library's sha256 and size are computed and pinned like the rules' files.
//!
//! `create_ruleset` publishes the version the spec names; `bump_ruleset` publishes the next
//! version after the latest one (major, minor or patch), refusing a bump that changes nothing.

use crate::registry::manifest::valid_id;
use crate::registry::ruleset::{
    Aggregation, Approval, JudgeEntry, PinnedLibrary, PreviousRevision, RuleEntry, RuleSetManifest, VersionRef, default_judge_share,
};
use crate::registry::signing::{KeyFile, SignatureFile};
use crate::registry::store::{RULESET_MANIFEST, Registry, RegistryError, check_weight_sign, read_json, read_json_canonical};
use crate::reward::outcome::OnError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One rule in a spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecRule {
    pub id: String,
    pub version: semver::Version,
    pub weight: f64,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// The judge in a spec: like [`JudgeEntry`] without the library's hash and size.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecJudge {
    pub id: String,
    pub version: semver::Version,
    /// File name of the library in `plugins/<id>/<version>/` of the registry.
    pub library: String,
    pub weight: f64,
    #[serde(default = "default_judge_share")]
    pub share: f64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    pub on_error: OnError,
}

/// The TOML a rule-set author writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetSpec {
    pub name: String,
    /// Required by `ruleset new`; `ruleset bump` computes it (and refuses a different one).
    #[serde(default)]
    pub version: Option<semver::Version>,
    #[serde(default)]
    pub description: String,
    pub rules: Vec<SpecRule>,
    #[serde(default)]
    pub judge: Option<SpecJudge>,
    pub aggregation: Aggregation,
    #[serde(default)]
    pub approvals: Vec<Approval>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid rule-set spec: {msg}")]
    Spec { path: PathBuf, msg: String },
    #[error("rule set {reference} already exists at {dir}; published versions are immutable: raise `version` in the spec")]
    Exists { reference: String, dir: PathBuf },
    #[error("{path} has no `version`; set one (e.g. version = \"1.0.0\"), or publish the next version with `medrl rules ruleset bump`")]
    NoVersion { path: PathBuf },
    #[error("rule set `{name}` has no published version to bump; publish the first with `medrl rules ruleset new`")]
    NothingToBump { name: String },
    #[error("{path} says version {spec}, but bumping {latest} ({part}) gives {next}; remove `version` from the spec or make it {next}")]
    BumpConflict { path: PathBuf, spec: String, latest: String, part: &'static str, next: String },
    #[error("{path} selects the same rules, weights, parameters and aggregation as {latest}; a bump must change something")]
    NoChange { path: PathBuf, latest: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{path} changed while it was being signed; try again")]
    ChangedWhileSigning { path: PathBuf },
    #[error("cannot sign with {key}: {msg}")]
    Signing { key: String, msg: String },
}

/// What [`sign_ruleset`] wrote.
#[derive(Debug, Clone)]
pub struct Signed {
    /// sha256 of the canonical `ruleset.json` the signature covers.
    pub sha256: String,
    /// The signature file (`<key id>.sig` beside the manifest).
    pub path: PathBuf,
}

/// Signs published rule set `r` with `key`: checks the rule set's integrity first (every pin;
/// a rule set must be signable before it has any signature), then writes `<key id>.sig` over the
/// canonical bytes of its `ruleset.json`.
pub fn sign_ruleset(root: &Path, r: &VersionRef, key: &KeyFile, signed_at: String) -> Result<Signed, PublishError> {
    let registry = Registry::integrity_only(root);
    let verified = registry.load_ruleset(r)?;
    let manifest = registry.ruleset_dir(&r.name, &r.version).join(RULESET_MANIFEST);
    let (_, sha256, canonical) = read_json_canonical::<serde_json::Value>(&manifest, "rule set manifest")?;
    if sha256 != verified.sha256 {
        return Err(PublishError::ChangedWhileSigning { path: manifest });
    }
    let signing = |msg: String| PublishError::Signing { key: format!("key {} ({})", key.key_id, key.name), msg };
    let sig = SignatureFile::sign(key, &r.to_string(), &canonical, signed_at).map_err(signing)?;
    let path = manifest.with_file_name(sig.file_name());
    sig.write(&path).map_err(|e| signing(e.to_string()))?;
    Ok(Signed { sha256, path })
}

/// Which part of the version a bump raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BumpPart {
    Major,
    Minor,
    Patch,
}

impl BumpPart {
    pub fn as_str(self) -> &'static str {
        match self {
            BumpPart::Major => "major",
            BumpPart::Minor => "minor",
            BumpPart::Patch => "patch",
        }
    }

    pub fn apply(self, v: &semver::Version) -> semver::Version {
        match self {
            BumpPart::Major => semver::Version::new(v.major + 1, 0, 0),
            BumpPart::Minor => semver::Version::new(v.major, v.minor + 1, 0),
            BumpPart::Patch => semver::Version::new(v.major, v.minor, v.patch + 1),
        }
    }
}

impl RuleSetSpec {
    pub fn read(path: &Path) -> Result<Self, PublishError> {
        let text = std::fs::read_to_string(path).map_err(|source| PublishError::Io { path: path.into(), source })?;
        let spec: RuleSetSpec = toml::from_str(&text).map_err(|e| PublishError::Spec { path: path.into(), msg: e.to_string() })?;
        if !valid_id(&spec.name) {
            return Err(PublishError::Spec { path: path.into(), msg: format!("name `{}` must be lowercase letters, digits and `-`", spec.name) });
        }
        if spec.rules.is_empty() {
            return Err(PublishError::Spec { path: path.into(), msg: "a rule set needs at least one `[[rules]]` entry".into() });
        }
        let [lo, hi] = spec.aggregation.clip;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(PublishError::Spec { path: path.into(), msg: format!("aggregation.clip [{lo}, {hi}] is not an ordered range") });
        }
        for gate in &spec.aggregation.gates {
            if !spec.rules.iter().any(|r| r.id == gate.rule) {
                return Err(PublishError::Spec { path: path.into(), msg: format!("gate names rule `{}`, which is not in `rules`", gate.rule) });
            }
        }
        for (i, r) in spec.rules.iter().enumerate() {
            if spec.rules[..i].iter().any(|o| o.id == r.id) {
                return Err(PublishError::Spec { path: path.into(), msg: format!("rule `{}` is listed twice", r.id) });
            }
        }
        for a in &spec.approvals {
            let date_ok = a.date.len() == 10 && humantime::parse_rfc3339(&format!("{}T00:00:00Z", a.date)).is_ok();
            if a.role.trim().is_empty() || a.name.trim().is_empty() || !date_ok {
                return Err(PublishError::Spec {
                    path: path.into(),
                    msg: format!(
                        "approval {{role = {:?}, name = {:?}, date = {:?}}} needs a role, a name and a date YYYY-MM-DD",
                        a.role, a.name, a.date
                    ),
                });
            }
        }
        Ok(spec)
    }
}

/// Writes `rulesets/<name>/<version>/ruleset.json` for `spec`, verifying every rule it names.
/// `created_at` is RFC 3339 UTC.
pub fn create_ruleset(registry: &Registry, spec: &RuleSetSpec, spec_path: &Path, created_at: String) -> Result<RuleSetManifest, PublishError> {
    let version = spec.version.clone().ok_or_else(|| PublishError::NoVersion { path: spec_path.into() })?;
    publish(registry, spec, &version, spec_path, created_at)
}

/// Publishes `spec` as the next version after the latest published one of its name.
pub fn bump_ruleset(
    registry: &Registry,
    spec: &RuleSetSpec,
    part: BumpPart,
    spec_path: &Path,
    created_at: String,
) -> Result<RuleSetManifest, PublishError> {
    let latest =
        registry.versions("rulesets", &spec.name).into_iter().max().ok_or_else(|| PublishError::NothingToBump { name: spec.name.clone() })?;
    let next = part.apply(&latest);
    if let Some(v) = &spec.version
        && *v != next
    {
        return Err(PublishError::BumpConflict {
            path: spec_path.into(),
            spec: v.to_string(),
            latest: latest.to_string(),
            part: part.as_str(),
            next: next.to_string(),
        });
    }
    let (old, _) = read_json::<RuleSetManifest>(&registry.ruleset_dir(&spec.name, &latest).join(RULESET_MANIFEST), "rule set manifest")?;
    let same_rules = old.rules.len() == spec.rules.len()
        && old.rules.iter().zip(&spec.rules).all(|(o, s)| o.id == s.id && o.version == s.version && o.weight == s.weight && o.params == s.params);
    let same_judge = match (&old.judge, &spec.judge) {
        (None, None) => true,
        (Some(o), Some(s)) => {
            o.id == s.id
                && o.version == s.version
                && o.library.file == s.library
                && o.weight == s.weight
                && o.share == s.share
                && o.seed == s.seed
                && o.params == s.params
                && o.on_error == s.on_error
        }
        _ => false,
    };
    if same_rules && same_judge && old.aggregation == spec.aggregation && old.description == spec.description {
        return Err(PublishError::NoChange { path: spec_path.into(), latest: old.reference() });
    }
    publish(registry, spec, &next, spec_path, created_at)
}

fn publish(
    registry: &Registry,
    spec: &RuleSetSpec,
    version: &semver::Version,
    spec_path: &Path,
    created_at: String,
) -> Result<RuleSetManifest, PublishError> {
    let dir = registry.ruleset_dir(&spec.name, version);
    if dir.exists() {
        return Err(PublishError::Exists { reference: format!("{}@{}", spec.name, version), dir });
    }
    let mut entries = Vec::new();
    let mut rules = Vec::new();
    for r in &spec.rules {
        let rule = registry.load_rule(&VersionRef { name: r.id.clone(), version: r.version.clone() })?;
        check_weight_sign(spec_path, &r.id, rule.manifest.kind, r.weight)?;
        entries.push(RuleEntry {
            id: r.id.clone(),
            version: r.version.clone(),
            manifest_sha256: rule.manifest_sha256.clone(),
            weight: r.weight,
            params: r.params.clone(),
        });
        rules.push(rule);
    }
    let judge = match &spec.judge {
        None => None,
        Some(j) => {
            let path = registry.plugin_dir(&j.id, &j.version).join(&j.library);
            let bytes = std::fs::read(&path).map_err(|source| PublishError::Io { path: path.clone(), source })?;
            let entry = JudgeEntry {
                id: j.id.clone(),
                version: j.version.clone(),
                library: PinnedLibrary { file: j.library.clone(), sha256: crate::registry::hash::sha256_hex(&bytes), size: bytes.len() as u64 },
                weight: j.weight,
                share: j.share,
                seed: j.seed,
                params: j.params.clone(),
                on_error: j.on_error,
            };
            // The same checks a load makes (weight, share, the plugin folder holds only the library).
            registry.load_judge(&entry, spec_path)?;
            Some(entry)
        }
    };
    // The chain: the highest revision so far of this name, whatever its version.
    let mut previous: Option<PreviousRevision> = None;
    for version in registry.versions("rulesets", &spec.name) {
        let path = registry.ruleset_dir(&spec.name, &version).join(RULESET_MANIFEST);
        let (m, sha) = read_json::<RuleSetManifest>(&path, "rule set manifest")?;
        if previous.as_ref().is_none_or(|p| m.revision > p.revision) {
            previous = Some(PreviousRevision { version, revision: m.revision, sha256: sha });
        }
    }
    let manifest = RuleSetManifest {
        name: spec.name.clone(),
        version: version.clone(),
        revision: previous.as_ref().map_or(1, |p| p.revision + 1),
        created_at,
        description: spec.description.clone(),
        rules: entries,
        aggregation: spec.aggregation.clone(),
        files: registry.ruleset_files(&rules, judge.as_ref())?,
        judge,
        previous,
        approvals: spec.approvals.clone(),
    };
    std::fs::create_dir_all(&dir).map_err(|source| PublishError::Io { path: dir.clone(), source })?;
    let path = dir.join(RULESET_MANIFEST);
    let mut json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
    json.push(b'\n');
    std::fs::write(&path, json).map_err(|source| PublishError::Io { path: path.clone(), source })?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_reset_the_lower_parts() {
        let v: semver::Version = "1.4.2".parse().unwrap();
        assert_eq!(BumpPart::Major.apply(&v).to_string(), "2.0.0");
        assert_eq!(BumpPart::Minor.apply(&v).to_string(), "1.5.0");
        assert_eq!(BumpPart::Patch.apply(&v).to_string(), "1.4.3");
    }

    #[test]
    fn specs_refuse_duplicate_rules_and_incomplete_approvals() {
        let dir = tempfile::tempdir().unwrap();
        let read = |body: &str| {
            let p = dir.path().join("spec.toml");
            std::fs::write(&p, body).unwrap();
            RuleSetSpec::read(&p)
        };
        let base = "name = \"s\"\n[[rules]]\nid = \"a\"\nversion = \"1.0.0\"\nweight = 1.0\n[aggregation]\nclip = [0.0, 1.0]\n";
        assert!(read(base).unwrap().version.is_none());
        let twice = base.replace("[aggregation]", "[[rules]]\nid = \"a\"\nversion = \"1.0.0\"\nweight = 1.0\n[aggregation]");
        assert!(read(&twice).unwrap_err().to_string().contains("listed twice"));
        let approval = format!("{base}[[approvals]]\nrole = \"clinical-safety\"\nname = \"Dr. Li\"\ndate = \"1 Dec\"\n");
        assert!(read(&approval).unwrap_err().to_string().contains("YYYY-MM-DD"));
        let ok = approval.replace("1 Dec", "2026-12-01");
        assert_eq!(read(&ok).unwrap().approvals[0].role, "clinical-safety");
    }
}
