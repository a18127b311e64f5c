//! How a stage's settings are read: one TOML document (a file, or the quickstart's own
//! settings), optionally a file of changes laid over it, then `--set key=value` overrides, then
//! every value checked before anything is written. `medrl sft` ([`crate::sft::SftConfig`]) and
//! `medrl train` ([`crate::rl::TrainConfig`]) both read their settings through here, so a
//! mistake is reported the same way in both: blamed on the file or the flag that made it, on one
//! line, with the fix.

use crate::io::one_line;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Why settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file (or the quickstart's settings with a file laid over them) does not parse.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("override `{given}` is not `{shape}`; for example --set {example}")]
    OverrideSyntax { given: String, shape: &'static str, example: &'static str },
    #[error("override `{given}`: `{section}` is not a section; sections are {sections}")]
    OverrideSection { given: String, section: String, sections: String },
    /// An override the settings refuse (an unknown key, a value of the wrong type), blamed on
    /// its own `--set` flag rather than on the config file.
    #[error("--set {given}: {message}")]
    Override { given: String, message: String },
    /// Values out of range, each with its fix.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// The TOML document at `path` (an empty one, named `<defaults>`, without a path) and its name
/// for messages.
pub fn read_document(path: Option<&Path>) -> Result<(toml::Table, PathBuf), SettingsError> {
    match path {
        Some(p) => Ok((read_table(p)?, p.to_path_buf())),
        None => Ok((toml::Table::new(), PathBuf::from("<defaults>"))),
    }
}

/// `settings` as a TOML document with the file at `changes` (if any) laid over it key by key:
/// how the quickstart's stages take `--sft-config` and `--rl-config`. Returns the document and
/// its name for messages (the file's, since that is where a bad key would be).
pub fn document_of<T: Serialize>(settings: &T, changes: Option<&Path>) -> Result<(toml::Table, PathBuf), SettingsError> {
    let mut doc = toml::Table::try_from(settings).map_err(|e| SettingsError::Parse { path: "<quickstart>".into(), message: e.to_string() })?;
    match changes {
        Some(p) => {
            lay_over(&mut doc, read_table(p)?);
            Ok((doc, p.to_path_buf()))
        }
        None => Ok((doc, PathBuf::from("<quickstart>"))),
    }
}

fn read_table(path: &Path) -> Result<toml::Table, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read { path: path.to_path_buf(), source })?;
    toml::from_str(&text).map_err(|e| SettingsError::Parse { path: path.to_path_buf(), message: one_line(&e.to_string()) })
}

/// Puts every key of `over` into `doc`, descending into tables both have, so a file that sets
/// `[ppo] learning_rate` changes that one key and keeps the rest of `[ppo]`.
fn lay_over(doc: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (doc.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => lay_over(inner, value),
            (_, value) => {
                doc.insert(key, value);
            }
        }
    }
}

/// The settings the document holds, or serde's message on one line.
pub fn parse<T: DeserializeOwned>(doc: &toml::Table) -> Result<T, String> {
    toml::Value::Table(doc.clone()).try_into::<T>().map_err(|e| one_line(&e.to_string()))
}

/// What an override must look like, for the message when it does not.
#[derive(Debug, Clone, Copy)]
pub struct OverrideShape {
    /// `key=value` or `section.key=value`.
    pub shape: &'static str,
    /// A working example.
    pub example: &'static str,
    /// The top-level sections a key must start with; empty when any field name is a key.
    pub sections: &'static [&'static str],
}

/// Sets `key` (a field name, or dotted into tables: `lora.r`, `kl.controller.coef`) to `value`
/// parsed as TOML; a value that is not TOML (a bare word, a path) is taken as a string.
pub fn apply_override(doc: &mut toml::Table, given: &str, shape: &OverrideShape) -> Result<(), SettingsError> {
    let syntax = || SettingsError::OverrideSyntax { given: given.to_string(), shape: shape.shape, example: shape.example };
    let (key, value) = given.split_once('=').ok_or_else(syntax)?;
    let parts: Vec<&str> = key.trim().split('.').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) || (!shape.sections.is_empty() && parts.len() < 2) {
        return Err(syntax());
    }
    if !shape.sections.is_empty() && !shape.sections.contains(&parts[0]) {
        return Err(SettingsError::OverrideSection { given: given.to_string(), section: parts[0].to_string(), sections: shape.sections.join(", ") });
    }
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.trim().to_string()));
    let mut cursor = doc;
    for part in &parts[..parts.len() - 1] {
        cursor = cursor.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new())).as_table_mut().ok_or_else(syntax)?;
    }
    cursor.insert(parts[parts.len() - 1].to_string(), parsed);
    Ok(())
}

/// A number as TOML writes it, so a fix can be pasted into `--set` (`0.003`, `nan`, `-inf`).
pub fn number(x: f64) -> String {
    toml::Value::Float(x).to_string()
}

/// The values out of range, collected so that every one is named at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

#[derive(Debug)]
struct Problem {
    /// The key as `--set` takes it (`lora.alpha`).
    key: String,
    /// The value as given.
    value: String,
    /// What it must be.
    rule: String,
    /// A value that works (the default where the default can be meant).
    fix: String,
}

impl Problems {
    /// Records a problem with `key` when `bad`.
    pub fn need(&mut self, bad: bool, key: &str, value: impl ToString, rule: &str, fix: impl ToString) {
        if bad {
            self.0.push(Problem { key: key.to_string(), value: value.to_string(), rule: rule.to_string(), fix: fix.to_string() });
        }
    }

    /// A count that must be at least `min`.
    pub fn at_least(&mut self, value: u64, min: u64, key: &str, default: u64) {
        self.need(value < min, key, value, &format!("at least {min}"), default.max(min));
    }

    /// A finite float in `interval`.
    pub fn range(&mut self, value: f64, key: &str, interval: Interval, default: f64) {
        self.need(!interval.holds(value), key, number(value), &interval.rule(), number(default));
    }

    /// Ok, or every problem with where its value came from (the last `--set` flag that gave the
    /// key, if one did) and its fix.
    pub fn into_result(self, overrides: &[String]) -> Result<(), SettingsError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let described: Vec<String> = self
            .0
            .iter()
            .map(|p| {
                let flag = overrides.iter().rev().find(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == p.key));
                let source = flag.map_or(String::new(), |f| format!(", from --set {f}"));
                format!("`{}` must be {} (it is {}{source}); for example --set {}={}", p.key, p.rule, p.value, p.key, p.fix)
            })
            .collect();
        Err(SettingsError::Invalid(described.join("; ")))
    }
}

/// Where a float setting must lie; it must also be finite.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    lo: f64,
    lo_open: bool,
    /// `None`: no upper end.
    hi: Option<(f64, bool)>,
}

impl Interval {
    /// `> lo`.
    pub fn above(lo: f64) -> Self {
        Interval { lo, lo_open: true, hi: None }
    }
    /// `≥ lo`.
    pub fn at_least(lo: f64) -> Self {
        Interval { lo, lo_open: false, hi: None }
    }
    /// `(lo, hi]`.
    pub fn open_closed(lo: f64, hi: f64) -> Self {
        Interval { lo, lo_open: true, hi: Some((hi, false)) }
    }
    /// `[lo, hi]`.
    pub fn closed(lo: f64, hi: f64) -> Self {
        Interval { lo, lo_open: false, hi: Some((hi, false)) }
    }
    /// `[lo, hi)`.
    pub fn closed_open(lo: f64, hi: f64) -> Self {
        Interval { lo, lo_open: false, hi: Some((hi, true)) }
    }

    fn holds(&self, x: f64) -> bool {
        let above = if self.lo_open { x > self.lo } else { x >= self.lo };
        let below = self.hi.is_none_or(|(hi, open)| if open { x < hi } else { x <= hi });
        x.is_finite() && above && below
    }

    /// What the value must be, as the message says it.
    fn rule(&self) -> String {
        match self.hi {
            Some((hi, hi_open)) => {
                format!("a finite number in {}{}, {}{}", if self.lo_open { "(" } else { "[" }, self.lo, hi, if hi_open { ")" } else { "]" })
            }
            None => format!("a finite number {} {}", if self.lo_open { ">" } else { "≥" }, self.lo),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_laid_over_settings_changes_only_its_keys() {
        #[derive(Serialize)]
        struct S {
            a: u32,
            t: T,
        }
        #[derive(Serialize)]
        struct T {
            x: f64,
            y: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("over.toml");
        std::fs::write(&file, "a = 2\n[t]\nx = 0.5\n").unwrap();
        let (doc, origin) = document_of(&S { a: 1, t: T { x: 1.0, y: "keep".into() } }, Some(&file)).unwrap();
        assert_eq!(origin, file);
        assert_eq!(doc["a"].as_integer(), Some(2));
        assert_eq!(doc["t"]["x"].as_float(), Some(0.5));
        assert_eq!(doc["t"]["y"].as_str(), Some("keep"));
        let err = document_of(&S { a: 1, t: T { x: 1.0, y: String::new() } }, Some(&dir.path().join("none.toml"))).unwrap_err();
        assert!(matches!(err, SettingsError::Read { .. }), "{err}");
        std::fs::write(&file, "a = \n").unwrap();
        let err = document_of(&S { a: 1, t: T { x: 1.0, y: String::new() } }, Some(&file)).unwrap_err().to_string();
        assert!(err.starts_with(&file.display().to_string()) && !err.contains('\n'), "{err}");
    }

    #[test]
    fn overrides_reach_nested_keys_and_refuse_bad_shapes() {
        let shape = OverrideShape { shape: "section.key=value", example: "ppo.cliprange=0.1", sections: &["ppo", "kl"] };
        let mut doc = toml::Table::new();
        apply_override(&mut doc, "kl.controller.coef=0.3", &shape).unwrap();
        apply_override(&mut doc, "ppo.name=bare word", &shape).unwrap();
        assert_eq!(doc["kl"]["controller"]["coef"].as_float(), Some(0.3));
        assert_eq!(doc["ppo"]["name"].as_str(), Some("bare word"));
        for bad in ["ppo", "cliprange=1", "ppo.=1", ".x=1"] {
            let err = apply_override(&mut doc, bad, &shape).unwrap_err().to_string();
            assert!(err.contains("is not `section.key=value`; for example --set ppo.cliprange=0.1"), "{bad}: {err}");
        }
        let err = apply_override(&mut doc, "pop.x=1", &shape).unwrap_err().to_string();
        assert!(err.contains("`pop` is not a section; sections are ppo, kl"), "{err}");
    }

    #[test]
    fn every_problem_is_named_with_its_source_and_fix() {
        let mut p = Problems::default();
        p.range(f64::NAN, "ppo.learning_rate", Interval::open_closed(0.0, 1.0), 2e-4);
        p.range(-0.1, "ppo.vf_coef", Interval::at_least(0.0), 0.1);
        p.at_least(0, 1, "run.steps", 40);
        p.range(0.5, "ok", Interval::open_closed(0.0, 1.0), 0.5);
        let err = p.into_result(&["ppo.vf_coef=-0.1".into()]).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid setting: `ppo.learning_rate` must be a finite number in (0, 1] (it is nan); for example --set ppo.learning_rate=0.0002; \
             `ppo.vf_coef` must be a finite number ≥ 0 (it is -0.1, from --set ppo.vf_coef=-0.1); for example --set ppo.vf_coef=0.1; \
             `run.steps` must be at least 1 (it is 0); for example --set run.steps=40"
        );
        assert!(Problems::default().into_result(&[]).is_ok());
    }
}
