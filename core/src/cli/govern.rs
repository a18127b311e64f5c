//! The governance half of `medrl rules …`: sign, inspect, verify, diff, doc and replay. Parsing
//! lives in `rules.rs`; these only call the library and print.

use super::{ExitError, Globals};
use medrl::governance::diff::diff;
use medrl::governance::doc;
use medrl::governance::inspect::Inspection;
use medrl::governance::replay::{Lines, replay as replay_log};
use medrl::governance::verify::{CheckStatus, Rebuild, verify_ruleset};
use medrl::registry::VersionRef;
use medrl::registry::signing::KeyFile;
use medrl::reward::Sandbox;
use std::path::Path;

fn parse_ref(s: &str) -> anyhow::Result<VersionRef> {
    s.parse().map_err(anyhow::Error::msg)
}

pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

pub fn sign(reference: &str, key: &Path, signed_at: Option<String>, g: &Globals) -> anyhow::Result<()> {
    let r = parse_ref(reference)?;
    let key = KeyFile::read(key)?;
    let signed = medrl::governance::publish::sign_ruleset(g.registry.root(), &r, &key, signed_at.unwrap_or_else(now))?;
    println!("signed {r} (sha256 {}) with key {} ({}) -> {}", signed.sha256, key.key_id, key.name, signed.path.display());
    if let Some(ring) = &g.registry.trust().keyring
        && ring.get(&key.key_id).is_none()
    {
        eprintln!("warning: key {} is not in the keyring {}; this signature does not count until it is added", key.key_id, ring.path.display());
    }
    Ok(())
}

fn inspection(r: &VersionRef, g: &Globals) -> anyhow::Result<Inspection> {
    let rs = g.registry.load_ruleset(r)?;
    Ok(Inspection::new(&rs, &g.registry.ruleset_dir(&r.name, &r.version), g.registry.trust().keyring.as_ref())?)
}

pub fn inspect(reference: &str, json: bool, g: &Globals) -> anyhow::Result<()> {
    let r = parse_ref(reference)?;
    let ins = inspection(&r, g)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ins)?);
        return Ok(());
    }
    println!("rule set     {}", ins.reference);
    println!("revision     {}", ins.revision);
    println!("sha256       {}", ins.sha256);
    println!("created      {}", ins.created_at);
    match &ins.previous {
        None => println!("previous     none (first revision)"),
        Some(p) => println!("previous     {}@{} revision {} ({})", ins.name, p.version, p.revision, p.sha256),
    }
    if ins.approvals.is_empty() {
        println!("approvals    none recorded");
    }
    for a in &ins.approvals {
        println!("approval     {}: {} ({})", a.role, a.name, a.date);
    }
    if ins.signatures.is_empty() {
        println!("signatures   none");
    }
    for s in &ins.signatures {
        println!("signature    {}  key {} ({}), signed {}: {}", s.file, s.key_id, s.signer, s.signed_at, s.status);
    }
    println!("reward       {}", ins.formula());
    for line in ins.aggregation_words() {
        println!("             {line}");
    }
    println!();
    println!("{:<12} {:<8} {:<8} {:>7} {:<11} {:<12} {:<10} module sha256", "rule", "version", "kind", "weight", "range", "on_error", "params");
    for rule in &ins.rules {
        let on_error = serde_json::to_value(rule.on_error)?.as_str().unwrap_or_default().to_string();
        let params = if rule.overrides.is_empty() { "defaults".to_string() } else { format!("{} override(s)", rule.overrides.len()) };
        println!(
            "{:<12} {:<8} {:<8} {:>7} {:<11} {:<12} {:<10} {}",
            rule.id,
            rule.version,
            rule.kind.as_str(),
            rule.weight,
            format!("[{}, {}]", rule.output_range[0], rule.output_range[1]),
            on_error,
            params,
            rule.module_sha256
        );
    }
    println!();
    println!("limits (each checked against the host's ceilings at load):");
    for rule in &ins.rules {
        println!("  {:<20} {}", format!("{}@{}", rule.id, rule.version), rule.limits_words());
    }
    println!();
    println!("{} pinned files:", ins.files.len());
    for f in &ins.files {
        println!("  {:<40} {} {:>8} bytes", f.path, f.sha256, f.size);
    }
    Ok(())
}

pub fn verify(reference: &str, rebuild: bool, source_root: &Path, json: bool, g: &Globals) -> anyhow::Result<()> {
    let r = parse_ref(reference)?;
    let sandbox = Sandbox::with_limits(1, g.registry.host_limits())?;
    let rb = rebuild.then(|| Rebuild { source_root: source_root.to_path_buf(), sandbox: &sandbox });
    let report = verify_ruleset(&g.registry, &r, rb)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            match &c.status {
                CheckStatus::Ok { detail } => println!("ok       {}: {detail}", c.name),
                CheckStatus::Skipped { reason } => println!("skipped  {}: {reason}", c.name),
                CheckStatus::Failed { class, reason } => println!("FAILED   {} [{}]: {reason}", c.name, class.exit_code()),
            }
        }
    }
    let code = report.exit_code();
    if code != 0 {
        let failed = report.checks.iter().filter(|c| matches!(c.status, CheckStatus::Failed { .. })).count();
        return Err(ExitError { code, message: format!("rule set {r} failed verification: {failed} check(s) failed (exit code {code})") }.into());
    }
    println!("rule set {r} verifies (sha256 {})", report.sha256.unwrap_or_default());
    Ok(())
}

pub fn diff_cmd(from: &str, to: &str, json: bool, g: &Globals) -> anyhow::Result<()> {
    let (a, b) = (inspection(&parse_ref(from)?, g)?, inspection(&parse_ref(to)?, g)?);
    let d = diff(&a, &b);
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    println!(
        "{} (revision {}) -> {} (revision {}){}",
        d.from,
        d.revision.0,
        d.to,
        d.revision.1,
        if d.to_follows_from { ", which names it as its previous revision" } else { "" }
    );
    if d.is_empty() {
        println!("no differences in rules, weights, parameters, aggregation or approvals");
    }
    for r in &d.added {
        println!("+ rule {r}");
    }
    for r in &d.removed {
        println!("- rule {r}");
    }
    for c in &d.changed {
        println!("~ rule {}", c.id);
        if let Some((x, y)) = &c.version {
            println!("    version {x} -> {y}");
        }
        if let Some((x, y)) = &c.kind {
            println!("    kind {x} -> {y}");
        }
        if let Some((x, y)) = &c.weight {
            println!("    weight {x} -> {y}");
        }
        if let Some((x, y)) = &c.module_sha256 {
            println!("    module {x} -> {y}");
        }
        for p in &c.params {
            let show = |v: &Option<serde_json::Value>| v.as_ref().map_or("(absent)".to_string(), |v| clip(&v.to_string(), 120));
            if p.changes.is_empty() {
                println!("    param {}: {} -> {}", p.key, show(&p.from), show(&p.to));
                continue;
            }
            // A nested parameter: entry by entry, so a formulary change reads as the drugs it touches.
            const SHOWN: usize = 60;
            println!("    param {}: {} change(s)", p.key, p.changes.len());
            for change in p.changes.iter().take(SHOWN) {
                println!("      {}", change.line(100));
            }
            if p.changes.len() > SHOWN {
                println!("      … and {} more (all of them in --json)", p.changes.len() - SHOWN);
            }
        }
    }
    for a in &d.aggregation {
        println!("~ aggregation: {a}");
    }
    if let Some((x, y)) = &d.description {
        println!("~ description: {x:?} -> {y:?}");
    }
    for a in &d.approvals_added {
        println!("+ approval {a}");
    }
    for a in &d.approvals_removed {
        println!("- approval {a}");
    }
    Ok(())
}

pub fn doc_cmd(reference: &str, out: &Path, g: &Globals) -> anyhow::Result<()> {
    let r = parse_ref(reference)?;
    let rs = g.registry.load_ruleset(&r)?;
    let ins = Inspection::new(&rs, &g.registry.ruleset_dir(&r.name, &r.version), None)?;
    let md = doc::render(&ins, &doc::history(&g.registry, &rs.manifest, &rs.sha256));
    if out == Path::new("-") {
        print!("{md}");
    } else {
        std::fs::write(out, &md).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
        println!("wrote {} ({} metrics, {} bytes) for {r}", out.display(), ins.rules.len(), md.len());
    }
    Ok(())
}

pub fn replay(file: &Path, line: Option<u64>, all: bool, g: &Globals) -> anyhow::Result<()> {
    let lines = match (line, all) {
        (Some(n), false) => Lines::One(n),
        (None, true) => Lines::All,
        _ => anyhow::bail!("pass exactly one of --line N or --all"),
    };
    let sandbox = Sandbox::with_limits(g.threads, g.registry.host_limits())?;
    let replay = replay_log(file, lines, &g.registry, &sandbox)?;
    let results = &replay.evaluations;
    let mismatched: Vec<_> = results.iter().filter(|r| !r.matches()).collect();
    let totals_differ: Vec<_> = replay.totals.iter().filter(|t| !t.matches()).collect();
    let show = |r: &medrl::governance::replay::Replayed| {
        println!(
            "line {}: {} on `{}`: outcome {} / {}, output sha256 {} / {}, fuel {} / {}, decision {} / {} (logged / replayed): {}",
            r.line,
            r.rule,
            r.sample_id,
            r.logged_outcome,
            r.replayed_outcome,
            r.logged_output_sha256.as_deref().map_or("-", |s| &s[..16]),
            r.replayed_output_sha256.as_deref().map_or("-", |s| &s[..16]),
            r.logged_fuel,
            r.replayed_fuel,
            r.logged_decision,
            r.replayed_decision,
            if r.matches() { "match" } else { "MISMATCH" }
        );
    };
    let show_total = |t: &medrl::governance::replay::ReplayedTotal| {
        let text = |r: &medrl::reward::Reward| serde_json::to_string(r).expect("plain data");
        println!(
            "line {}: reward of `{}`: {} / {} (logged / replayed): {}",
            t.line,
            t.sample_id,
            text(&t.logged),
            text(&t.replayed),
            if t.matches() { "match" } else { "MISMATCH" }
        );
    };
    if lines != Lines::All {
        results.iter().for_each(show);
        replay.totals.iter().for_each(show_total);
    } else {
        mismatched.iter().for_each(|r| show(r));
        totals_differ.iter().for_each(|t| show_total(t));
    }
    let fuel: u64 = results.iter().map(|r| r.replayed_fuel).sum();
    println!(
        "replayed {} evaluations of {}: {} match exactly (outcome, output sha256, fuel, decision; {fuel} fuel in all), {} differ",
        results.len(),
        file.display(),
        results.len() - mismatched.len(),
        mismatched.len()
    );
    if !replay.totals.is_empty() {
        println!(
            "recomputed {} rewards from the replayed decisions: {} equal the logged total, {} differ",
            replay.totals.len(),
            replay.totals.len() - totals_differ.len(),
            totals_differ.len()
        );
    }
    if replay.check.v1_evaluations > 0 {
        println!(
            "note: {} evaluations are {} records, written before rewards were logged: their decisions are checked, there is no total to check",
            replay.check.v1_evaluations,
            medrl::governance::audit::AUDIT_FORMAT_V1
        );
    }
    if !mismatched.is_empty() || !totals_differ.is_empty() {
        anyhow::bail!(
            "{} of {} replayed evaluations and {} of {} rewards differ from the log: the rules or the engine no longer give the logged results; do not use these rewards, and find which rule changed with `medrl rules verify`",
            mismatched.len(),
            results.len(),
            totals_differ.len(),
            replay.totals.len()
        );
    }
    Ok(())
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}
