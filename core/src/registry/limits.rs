//! Per-rule sandbox limits, as written in `rule.json` under `limits`, and the host's ceilings on
//! them ([`HostLimits`]): what a rule asks for and what the operator allows.

use serde::{Deserialize, Serialize};

/// What one evaluation of a rule may use. Every field has a default, so a manifest states only
/// what it changes. Each is checked against the host's [`HostLimits`] when the rule loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// Deterministic instruction budget (wasmtime fuel) per guest call. Default 200,000,000.
    pub fuel: u64,
    /// Largest linear memory, in 64 KiB pages. Default 256 (16 MiB).
    pub memory_pages: u32,
    /// The author's wall-clock expectation in milliseconds. Default 1000. It must be within the
    /// host's `timeout_ms`, but it does not shorten the deadline: every call runs under the
    /// host's deadline, a backstop far above the time the fuel ceiling takes, so that fuel, the
    /// deterministic limit, is what ends a long evaluation (issue 14).
    pub timeout_ms: u64,
    /// Largest input document (sample + params) in bytes. Default 262,144.
    pub max_input_bytes: u32,
    /// Largest output document in bytes. Default 65,536.
    pub max_output_bytes: u32,
    /// Largest table, in elements. Default 10,000.
    pub table_elements: u32,
}

impl SandboxLimits {
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

/// The ceilings the host puts on every rule's declared [`SandboxLimits`], and the wall-clock
/// deadline of every guest call. A manifest that asks for more than a ceiling is refused when
/// the rule loads; the operator can raise a ceiling (or lower it) here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostLimits {
    /// Most fuel a rule may ask for. Default 2,000,000,000: twice the most a shipped rule asks
    /// for (`risk`, 1,000,000,000), ten times the rule default.
    pub max_fuel: u64,
    /// Wall-clock deadline of every guest call in milliseconds, and the most a rule may declare
    /// as `timeout_ms`. Default 60,000: a backstop, not a limit a rule should reach. The fuel
    /// ceiling burns in 1.9-4.2 s on the 2-core development machine in the slowest of four
    /// tight loops (0.9-2.1 ns per fuel; `medrl bench rules` prints the figure), so 60 s is 14×
    /// that, and still 4.6× the 13 s it would take at the 6.5 ns per fuel the red team measured
    /// for real rule code on a loaded machine: an evaluation ends by fuel, deterministically,
    /// unless the machine stalls or the guest loops over bulk-memory instructions (which
    /// wasmtime charges 1 fuel whatever their length).
    pub timeout_ms: u64,
    /// Most linear memory a rule may ask for, in 64 KiB pages. Default 4096 (256 MiB); the
    /// instance pool reserves this much address space per slot.
    pub max_memory_pages: u32,
    /// Most table elements a rule may ask for. Default 100,000; the pool is sized for it.
    pub max_table_elements: u32,
    /// Most input bytes a rule may accept per call. Default 4 MiB (16× the rule default).
    pub max_input_bytes: u32,
    /// Most output bytes a rule may return per call. Default 1 MiB (16× the rule default): an
    /// output goes into the audit log with every sample.
    pub max_output_bytes: u32,
    /// Largest module file the host accepts, in bytes. Default 8 MiB.
    pub max_module_bytes: u64,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            max_fuel: 2_000_000_000,
            timeout_ms: 60_000,
            max_memory_pages: 4096,
            max_table_elements: 100_000,
            max_input_bytes: 4 << 20,
            max_output_bytes: 1 << 20,
            max_module_bytes: 8 << 20,
        }
    }
}

/// One declared limit outside what the host allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRefusal {
    /// The manifest key, `limits.fuel`.
    pub limit: &'static str,
    /// What the manifest asks for.
    pub asked: u64,
    /// The host's ceiling (or, for a zero, the floor of 1).
    pub bound: u64,
    /// The `HostLimits` field that sets the ceiling; `None` for the floor of 1.
    pub host_field: Option<&'static str>,
}

impl std::fmt::Display for LimitRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_field {
            Some(field) => write!(
                f,
                "`{}` = {} is over the host's ceiling of {}; lower `{}` in rule.toml and publish a new version of the rule, or have the operator raise `{field}` in the host limits if the rule truly needs it",
                self.limit, self.asked, self.bound, self.limit
            ),
            None => write!(f, "`{}` = 0 leaves the rule nothing to run with; set `{}` to at least 1 in rule.toml", self.limit, self.limit),
        }
    }
}

impl HostLimits {
    /// Reads the operator's ceilings from a TOML file (any field may be left out: the default
    /// stands; unknown fields refused, with their name).
    pub fn read(path: &std::path::Path) -> Result<Self, crate::registry::RegistryError> {
        use crate::registry::RegistryError;
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Io { path: path.into(), source })?;
        let limits: HostLimits = toml::from_str(&text).map_err(|e| RegistryError::Parse {
            path: path.into(),
            what: "host limits file",
            msg: crate::io::one_line(&e.to_string()),
        })?;
        let zero = [("max_fuel", limits.max_fuel), ("timeout_ms", limits.timeout_ms), ("max_module_bytes", limits.max_module_bytes)]
            .into_iter()
            .chain([("max_input_bytes", limits.max_input_bytes.into()), ("max_output_bytes", limits.max_output_bytes.into())])
            .find(|(_, v)| *v == 0);
        if let Some((field, _)) = zero {
            return Err(RegistryError::Parse {
                path: path.into(),
                what: "host limits file",
                msg: format!("`{field}` is 0, which no rule could run under; leave it out for the default"),
            });
        }
        Ok(limits)
    }

    /// Checks a rule's declared limits against the ceilings: the first that asks for too much
    /// (or for zero fuel or a zero deadline), in manifest order.
    pub fn check(&self, l: &SandboxLimits) -> Result<(), LimitRefusal> {
        let over = |limit, asked: u64, ceiling: u64, field| {
            if asked > ceiling { Err(LimitRefusal { limit, asked, bound: ceiling, host_field: Some(field) }) } else { Ok(()) }
        };
        let zero = |limit, asked: u64| if asked == 0 { Err(LimitRefusal { limit, asked, bound: 1, host_field: None }) } else { Ok(()) };
        zero("limits.fuel", l.fuel)?;
        over("limits.fuel", l.fuel, self.max_fuel, "max_fuel")?;
        over("limits.memory_pages", l.memory_pages.into(), self.max_memory_pages.into(), "max_memory_pages")?;
        zero("limits.timeout_ms", l.timeout_ms)?;
        over("limits.timeout_ms", l.timeout_ms, self.timeout_ms, "timeout_ms")?;
        over("limits.max_input_bytes", l.max_input_bytes.into(), self.max_input_bytes.into(), "max_input_bytes")?;
        over("limits.max_output_bytes", l.max_output_bytes.into(), self.max_output_bytes.into(), "max_output_bytes")?;
        over("limits.table_elements", l.table_elements.into(), self.max_table_elements.into(), "max_table_elements")?;
        Ok(())
    }

    /// The deadline of one guest call. Saturating: a configured `u64::MAX` means "never", not an
    /// overflow into an instant timeout.
    pub fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
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
        let host: HostLimits = serde_json::from_str(r#"{"max_fuel": 7}"#).unwrap();
        assert_eq!((host.max_fuel, host.timeout_ms), (7, HostLimits::default().timeout_ms));
        assert!(serde_json::from_str::<HostLimits>(r#"{"fuel": 7}"#).is_err());
    }

    #[test]
    fn the_rule_defaults_fit_the_host_defaults() {
        assert_eq!(HostLimits::default().check(&SandboxLimits::default()), Ok(()));
    }

    #[test]
    fn each_ceiling_refuses_what_is_over_it_and_names_the_fix() {
        let host = HostLimits::default();
        let cases: [(SandboxLimits, &str, u64); 7] = [
            (SandboxLimits { fuel: 1 << 62, ..Default::default() }, "limits.fuel", 1 << 62),
            (SandboxLimits { timeout_ms: u64::MAX, ..Default::default() }, "limits.timeout_ms", u64::MAX),
            (SandboxLimits { timeout_ms: 3_600_000, ..Default::default() }, "limits.timeout_ms", 3_600_000),
            (SandboxLimits { max_output_bytes: u32::MAX, ..Default::default() }, "limits.max_output_bytes", u32::MAX as u64),
            (SandboxLimits { max_input_bytes: u32::MAX, ..Default::default() }, "limits.max_input_bytes", u32::MAX as u64),
            (SandboxLimits { memory_pages: 65536, ..Default::default() }, "limits.memory_pages", 65536),
            (SandboxLimits { table_elements: 10_000_000, ..Default::default() }, "limits.table_elements", 10_000_000),
        ];
        for (limits, key, asked) in cases {
            let refusal = host.check(&limits).unwrap_err();
            assert_eq!((refusal.limit, refusal.asked), (key, asked));
            let msg = refusal.to_string();
            assert!(msg.contains(&asked.to_string()) && msg.contains(&refusal.bound.to_string()) && msg.contains("rule.toml"), "{msg}");
        }
        // Exactly at the ceiling is allowed; zero fuel is not.
        assert_eq!(host.check(&SandboxLimits { fuel: host.max_fuel, timeout_ms: host.timeout_ms, ..Default::default() }), Ok(()));
        let zero = host.check(&SandboxLimits { fuel: 0, ..Default::default() }).unwrap_err();
        assert!(zero.to_string().contains("at least 1"), "{zero}");
    }
}
