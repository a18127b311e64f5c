//! Per-rule sandbox limits, as written in `rule.json` under `limits`.

use serde::{Deserialize, Serialize};

/// What one evaluation of a rule may use. Every field has a default, so a manifest states only
/// what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// Deterministic instruction budget (wasmtime fuel). Default 200,000,000.
    pub fuel: u64,
    /// Largest linear memory, in 64 KiB pages. Default 256 (16 MiB); at most 4096 (256 MiB).
    pub memory_pages: u32,
    /// Wall-clock backstop in milliseconds, enforced by epoch interruption. Default 1000.
    pub timeout_ms: u64,
    /// Largest input document (sample + params) in bytes. Default 262,144.
    pub max_input_bytes: u32,
    /// Largest output document in bytes. Default 65,536.
    pub max_output_bytes: u32,
    /// Largest table, in elements. Default 10,000.
    pub table_elements: u32,
}

impl SandboxLimits {
    /// The hard ceiling on `memory_pages` the host's instance pool is sized for.
    pub const MAX_MEMORY_PAGES: u32 = 4096;
    /// Largest module file the host accepts, in bytes (8 MiB).
    pub const MAX_MODULE_BYTES: usize = 8 << 20;

    pub fn memory_bytes(&self) -> usize {
        self.memory_pages as usize * 65536
    }
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            fuel: 200_000_000,
            memory_pages: 256,
            timeout_ms: 1000,
            max_input_bytes: 262_144,
            max_output_bytes: 65_536,
            table_elements: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_limits_take_defaults_and_unknown_fields_are_refused() {
        let l: SandboxLimits = serde_json::from_str(r#"{"fuel": 5}"#).unwrap();
        assert_eq!(l.fuel, 5);
        assert_eq!(l.memory_pages, 256);
        let err = serde_json::from_str::<SandboxLimits>(r#"{"fule": 5}"#).unwrap_err();
        assert!(err.to_string().contains("fule"), "{err}");
    }
}
