//! End-to-end tests: they drive the built `medrl` binary over real files, real cargo builds and
//! the real wasmtime sandbox. One test binary (`cargo test -p medrl --test e2e`).

mod audit_trail;
mod author_workflow;
mod bad_input;
mod cli;
mod data;
mod data_import;
mod eval;
mod governance;
mod hostile_modules;
mod judge;
mod model;
mod quickstart;
mod release;
mod reproducible_build;
mod resume;
mod review;
mod rules_eval;
mod runs;
mod serve;
mod sft_config;
mod shipped_rules;
mod training;
mod trust_flags;

/// The `medrl` binary cargo built for these tests.
pub const MEDRL: &str = env!("CARGO_BIN_EXE_medrl");
