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

/// A temporary copy of the shipped registry (`data/rules`, `data/rulesets`).
pub fn registry_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["rules", "rulesets"] {
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
pub fn medrl(bin: &str, cwd: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(bin).args(args).current_dir(cwd).env_remove("MEDRL_REGISTRY").env_remove("MEDRL_KEYRING").env_remove("MEDRL_TRUST_STATE").env_remove("MEDRL_MIN_SIGNATURES").env_remove("MEDRL_AUDIT_LOG").output().expect("running medrl");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
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
