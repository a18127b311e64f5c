//! Helpers for the end-to-end tests in `tests/e2e/`: where the repository is, temporary copies
//! of the registry and sources, and running the already built `medrl` binary.
//!
//! The tests themselves are compiled as the `e2e` integration test of the `medrl` crate (see
//! `core/Cargo.toml`), because only there does cargo hand a test the path of the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lies in the repository").to_path_buf()
}

/// Copies a folder tree, skipping build output and VCS folders.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A temporary copy of the shipped registry (`data/rules`, `data/rulesets` and its keyring,
/// `data/keys`).
pub fn registry_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["rules", "rulesets", "keys"] {
        copy_tree(&repo_root().join("data").join(sub), &dir.path().join(sub));
    }
    dir
}

/// The finished run of a command, with its output as text.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Self {
        assert_eq!(self.status, 0, "command failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    pub fn failed(self) -> Self {
        assert_ne!(self.status, 0, "command should have failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

/// Runs `medrl` (the binary at `bin`) with `args` in `cwd`.
///
/// The developer's `MEDRL_*` settings are not passed on, so they cannot change a test. When `cwd`
/// is in the checkout (most tests run from the repository root), the state files the binary
/// writes by default relative to `cwd` go to a temporary folder that lives as long as this run:
/// the audit log (`.medrl/audit.jsonl` and its `audit.samples.jsonl`) unless `args` name
/// `--audit-log`, and the trust state (by default the registry's, `data/trust-state.jsonl`)
/// unless `args` name `--trust-state`. A test run must leave nothing in the checkout; a test that wants
/// one of these files passes its path; a run in a temporary `cwd` writes them there, as for a user.
pub fn medrl(bin: &str, cwd: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("MEDRL_REGISTRY")
        .env_remove("MEDRL_KEYRING")
        .env_remove("MEDRL_TRUST_STATE")
        .env_remove("MEDRL_MIN_SIGNATURES")
        .env_remove("MEDRL_AUDIT_LOG")
        .env_remove("MEDRL_OPERATOR_KEY")
        .env_remove("MEDRL_HOST_LIMITS");
    // Deleted when this function returns, after the run.
    let state = in_checkout(cwd).then(|| tempfile::tempdir().unwrap());
    if let Some(state) = &state {
        let names = |flag: &str| args.iter().any(|a| *a == flag || a.strip_prefix(flag).is_some_and(|rest| rest.starts_with('=')));
        // The flags beat the variables, so these only replace the defaults.
        if !names("--audit-log") {
            cmd.env("MEDRL_AUDIT_LOG", state.path().join("audit.jsonl"));
        }
        if !names("--trust-state") {
            cmd.env("MEDRL_TRUST_STATE", state.path().join("trust-state.jsonl"));
        }
    }
    let out: Output = cmd.output().expect("running medrl");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether `dir` is the repository root or a folder below it.
fn in_checkout(dir: &Path) -> bool {
    let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    canonical(dir).starts_with(canonical(&repo_root()))
}

/// Compares `actual` with the golden file `tests/golden/<name>`, or, under `MEDRL_BLESS=1`,
/// writes it there instead (re-blessing after an intended change:
/// `MEDRL_BLESS=1 cargo test -p medrl --test e2e <filter>`, then review the diff and commit it).
/// The one place that decides how a golden file is checked and re-blessed.
pub fn check_golden(name: &str, actual: &str) {
    let path = repo_root().join("tests/golden").join(name);
    if std::env::var_os("MEDRL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; run with MEDRL_BLESS=1 to create it", path.display()));
    assert!(
        expected == actual,
        "{} differs from this run's output; if the change is intended, re-bless with MEDRL_BLESS=1\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Writes the first `n` lines of the JSONL file `from` to `to`.
pub fn first_lines(from: &Path, n: usize, to: &Path) {
    let lines: String = std::fs::read_to_string(from).unwrap().lines().take(n).map(|l| format!("{l}\n")).collect();
    std::fs::write(to, lines).unwrap();
}

/// Writes JSONL lines to a file.
pub fn write_jsonl(path: &Path, rows: &[serde_json::Value]) {
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}
