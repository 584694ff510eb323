//! The scenario runner: the catalogue (`demo/scenarios.toml`, read through `zt-scenarios`) run
//! against a lab. One runner for every front: `ztlab demo` (and `scripts/demo.sh`, which drives
//! it) and the presenter UI, which calls [`run_scenarios`] in process.
//!
//! Module map:
//! - [`event`]: what a run reports, as public serde types: [`Event`]s sent to a [`Sink`] while
//!   it runs (progress, live load, each step's or case's [`Check`], clean-up, the scenario's
//!   [`ScenarioRun`]), and the final [`Report`].
//! - [`run`](run_scenarios): the run loop: one run at a time per lab ([`RunLock`]), the steps and
//!   cases in order, and cancellation; what a scenario changed (the RBAC policy, stopped SPIRE
//!   servers) is put back before the next run may start, whatever happened.
//! - `drills`: one module per group of step runners (the app, watched rotations and leases,
//!   entries and outages, network policy). They reach the lab only through [`Target`] and report
//!   only through the [`Sink`]: no printing, no colours.
//! - [`target`]: [`Target`], every operation the drills need from a running lab, and
//!   [`LocalTarget`], the local runtime's (processes recorded in a state dir). The only module
//!   that touches `zt_runtime::lab`.
//! - `http`: the drills' plain HTTP requests (through `zt_tls::client::web_send`).
//! - [`text`]: events and scenarios as text (the CLI's output, the UI's run log).
//! - [`cli`]: `ztlab demo list|show|run|facts`: arguments, printing, `-o json`, Ctrl-C.

pub mod cli;
mod drills;
pub mod event;
mod http;
mod run;
pub mod target;
pub mod text;

pub use cli::{DemoArgs, run};
pub use drills::rbac_load_text;
pub use event::{Check, CheckKind, Event, Report, ScenarioRun, Sink};
pub use run::{RunLock, run_scenarios};
pub use target::{LocalTarget, Target};
