//! `medrl release verify`: every file against `SHA256SUMS` (changed, missing, extra), the
//! signature of `SHA256SUMS`, the digests `release.json` claims, the copied rule set re-verified
//! offline (every pin, its signatures against the keyring), the audit head's rule set and
//! signature. Each check is returned, passed or not, so that all are printed.

use super::sums::{self, SUMS_FILE, SUMS_SIG_FILE, SumsSignature};
use super::{ReleaseError, ReleaseManifest};
use crate::governance::anchor::{MANIFEST_SIG_FILE, RunManifest, verify_signature};
use crate::model::digest::adapter_sha256;
use crate::model::stack::StackRecord;
use crate::registry::hash::sha256_hex;
use crate::registry::trust::{Keyring, TrustPolicy};
use crate::registry::{Registry, VersionRef};
use std::path::Path;

/// One check, in words, and whether it passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseCheck {
    pub ok: bool,
    pub what: String,
}

/// Verifies the release in `dir`: `keyring` is the one its rule set's signers must be in;
/// `operator_keyring`, when given, must hold the key that signed `SHA256SUMS` (then a signature
/// is required) and the run manifest's. An unreadable or missing `SHA256SUMS` is an error.
pub fn verify_release(dir: &Path, keyring: &Keyring, operator_keyring: Option<&Keyring>) -> Result<Vec<ReleaseCheck>, ReleaseError> {
    let mut out = Vec::new();
    let mut push = |ok: bool, what: String| out.push(ReleaseCheck { ok, what });
    let sums_path = dir.join(SUMS_FILE);
    let sums_bytes = std::fs::read(&sums_path).map_err(ReleaseError::io(&sums_path))?;
    let sums_text = String::from_utf8(sums_bytes.clone()).map_err(|_| ReleaseError::Invalid(format!("{} is not UTF-8", sums_path.display())))?;
    let listed = sums::parse(&sums_text).map_err(ReleaseError::Invalid)?;

    // Files: changed, missing, extra.
    let present = sums::list_files(dir)?;
    let mut bad_files = 0;
    for rel in &present {
        match listed.get(rel) {
            None => {
                bad_files += 1;
                push(false, format!("extra file {rel}: not in {SUMS_FILE}; a release holds exactly the files it lists"));
            }
            Some(want) => {
                let path = dir.join(rel);
                let got = sha256_hex(&std::fs::read(&path).map_err(ReleaseError::io(&path))?);
                if &got != want {
                    bad_files += 1;
                    push(false, format!("changed file {rel}: sha256 {}…, {SUMS_FILE} says {}…", &got[..16], &want[..16]));
                }
            }
        }
    }
    for rel in listed.keys().filter(|k| !present.contains(k)) {
        bad_files += 1;
        push(false, format!("missing file {rel}: listed in {SUMS_FILE}, not in the release"));
    }
    if bad_files == 0 {
        push(true, format!("{} files match {SUMS_FILE}, none missing, none extra", present.len()));
    }

    // The signature of SHA256SUMS.
    let sig_path = dir.join(SUMS_SIG_FILE);
    match (sig_path.is_file(), operator_keyring) {
        (true, ring) => {
            let parsed = std::fs::read_to_string(&sig_path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<SumsSignature>(&t).map_err(|e| e.to_string()));
            match parsed.and_then(|sig| sig.verify(&sums_bytes, ring)) {
                Ok(who) => push(true, format!("{SUMS_FILE} signed by {who}: valid")),
                Err(why) => push(false, format!("{SUMS_SIG_FILE}: {why}")),
            }
        }
        (false, Some(ring)) => push(
            false,
            format!(
                "{SUMS_FILE} is not signed, but --operator-keyring {} was given: the release was not signed, or its signature was removed",
                ring.path.display()
            ),
        ),
        (false, None) => push(true, format!("{SUMS_FILE} is not signed (no key was given when it was written)")),
    }

    // What release.json claims.
    let manifest = match ReleaseManifest::read(dir) {
        Ok(m) => m,
        Err(e) => {
            push(false, e.to_string());
            return Ok(out);
        }
    };
    let digest = |sub: &str| adapter_sha256(&dir.join(sub)).map_err(|e| e.to_string());
    match digest(&manifest.adapter.path) {
        Ok(d) if d == manifest.adapter.sha256 => push(true, format!("adapter/ has the sha256 release.json names ({}…)", &d[..16])),
        Ok(d) => push(false, format!("adapter/ has sha256 {d}, release.json says {}", manifest.adapter.sha256)),
        Err(e) => push(false, format!("adapter/: {e}")),
    }
    if let Some(sft) = &manifest.sft_adapter {
        let recorded = StackRecord::read(&dir.join(&manifest.adapter.path)).ok().flatten().and_then(|r| r.merged.first().map(|a| a.sha256.clone()));
        match digest(&sft.path) {
            Ok(d) if d == sft.sha256 && recorded.as_deref() == Some(d.as_str()) => {
                push(true, format!("sft_adapter/ is the adapter the RL adapter was trained over ({}…)", &d[..16]))
            }
            Ok(d) => {
                push(false, format!("sft_adapter/ has sha256 {d}; release.json says {}, the RL adapter's stacked_on.json {:?}", sft.sha256, recorded))
            }
            Err(e) => push(false, format!("sft_adapter/: {e}")),
        }
    }

    // The rule set, re-verified from the copy alone.
    let reference: Result<VersionRef, String> = format!("{}@{}", manifest.ruleset.name, manifest.ruleset.version).parse();
    let policy = TrustPolicy { keyring: Some(keyring.clone()), ..TrustPolicy::default() };
    let registry = Registry::new(dir.join(&manifest.ruleset.registry)).with_trust(policy);
    match reference.map_err(|e| e.to_string()).and_then(|r| registry.load_ruleset_signed(&r).map_err(|e| e.to_string())) {
        Ok((rs, Some(signers))) if rs.sha256 == manifest.ruleset.sha256 => {
            let who: Vec<String> = signers.iter().map(|s| format!("{} ({})", s.name, s.key_id)).collect();
            push(
                true,
                format!(
                    "rule set {}@{} (sha256 {}…): every pinned file verifies, signed by {} in {}",
                    manifest.ruleset.name,
                    manifest.ruleset.version,
                    &rs.sha256[..16],
                    who.join(", "),
                    keyring.path.display()
                ),
            )
        }
        Ok((rs, _)) => push(false, format!("rule set copy has sha256 {}, release.json says {}", rs.sha256, manifest.ruleset.sha256)),
        Err(e) => push(false, format!("rule set copy in {}: {e}", dir.join(&manifest.ruleset.registry).display())),
    }

    // The audit head.
    let audit = dir.join("audit");
    match RunManifest::read(&audit) {
        Ok(m) if m.ruleset_sha256 == manifest.ruleset.sha256 => {
            push(
                true,
                format!(
                    "audit head: the run's log ended at record {} ({}…)",
                    m.audit.head.records,
                    &m.audit.head.hash[..16.min(m.audit.head.hash.len())]
                ),
            );
            let sig = audit.join(MANIFEST_SIG_FILE);
            match (sig.is_file(), operator_keyring) {
                (true, Some(ring)) => match verify_signature(&sig, &m, ring) {
                    Ok(who) => push(true, format!("audit head signed by {who}: valid")),
                    Err(why) => push(false, format!("audit/{MANIFEST_SIG_FILE}: {why}")),
                },
                (true, None) => push(true, "audit head signed; not checked: pass --operator-keyring".into()),
                (false, _) => push(true, "audit head not signed (the run had no operator key)".into()),
            }
        }
        Ok(m) => push(false, format!("audit head names rule set sha256 {}, release.json {}", m.ruleset_sha256, manifest.ruleset.sha256)),
        Err(e) => push(false, format!("audit head: {e}")),
    }
    Ok(out)
}
