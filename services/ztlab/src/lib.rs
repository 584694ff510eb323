//! The `ztlab` library: everything the `ztlab` CLI does, so that other programs (the presenter
//! UI in `frontend`) use the same code. `main.rs` only parses arguments and calls into it.
//!
//! Modules:
//! - [`config`]: the lab config file (`infrastructure/local/lab.toml`) and the workload
//!   catalogue, turned into the runtime's spec.
//! - [`api`]: entries, sites, audit, keys and sync through the central entry-management API.
//! - [`demo`]: the scenario runner (`demo/scenarios.toml` run against a lab), which the CLI
//!   (`ztlab demo`) and the UI share.
//! - [`runtime`]: the lab-level commands (`up`, `down`, `status`, `logs`) behind the
//!   [`runtime::Runtime`] trait; [`runtime::LocalRuntime`] is the local processes.
//! - [`table`]: plain aligned tables for terminal output.

pub mod api;
pub mod config;
pub mod demo;
pub mod kind;
pub mod runtime;
pub mod table;

/// How a command prints its result (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Whether to colour a stream: only a terminal, and only without `NO_COLOR` (any non-empty
/// value, as no-color.org says). The CLI's logs and the demo's text both follow it.
pub fn colour(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}
