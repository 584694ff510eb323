//! Runs ztlab's real components as local processes.
//!
//! The ztlab CLI (`ztlab up`) and the integration tests both start the lab through this crate,
//! so there is one way to start each component.
//!
//! Module map:
//! - [`binaries`]: where the pinned infrastructure binaries are (`~/.cache/ztlab/…`, installed
//!   by `scripts/install-infra.sh` from `infrastructure/versions.env`).
//! - [`certs`]: the one place for certificate helpers (expiry, serials, PEM, the shared root CA).
//! - [`process`]: one started process: log file, pid and start time, stop by pid only.
//! - [`ports`]: free ports, and a clear error when a pinned port is taken.
//! - [`spire`]: SPIRE server and agent config rendering, start-up, readiness, and the CLI calls
//!   the lab needs (join tokens, entries, bundles).
//! - [`component`]: the components as values ([`component::Component`], [`component::Kind`],
//!   [`component::Health`]): how each one starts and waits until it is ready, the ports it
//!   pins, and its status.
//! - [`lab`]: the lab as a whole: a [`lab::LabSpec`] of sites and workloads, and `up`, which
//!   walks [`lab::Lab::plan`] (the components and the steps between them, [`lab::Step`]),
//!   recorded in `lab.json` under the state dir, stopped by pid. A [`lab::Lab`] owned by a test
//!   stops everything it started when dropped.
//! - [`postgres`]: PostgreSQL clusters (the unix-socket-only `mgmt` database first).
//! - [`openbao`]: the OpenBao server: init, unseal, the lab's OIDC identity provider
//!   (`identity`) and what the app chain needs (`secrets`).
//! - [`entrymgmt`]: entry-manager and the site agents as lab workloads (configs, bootstrap entries).
//! - [`health`]: readiness probes (HTTP `GET` on loopback).
//! - [`wait`]: the one polling loop ([`wait::poll_until`]) and readiness wait of a started
//!   process ([`wait::wait_ready`]).

pub mod app;
pub mod binaries;
pub mod certs;
pub mod component;
pub mod entrymgmt;
pub mod health;
pub mod lab;
pub mod openbao;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod spire;
pub mod wait;

use std::path::PathBuf;

/// Errors from starting, checking or stopping the lab. Each says which component and where
/// its log is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A pinned binary is not installed.
    #[error("{name} is not installed at {path}: run ./scripts/install-infra.sh (or ./scripts/setup.sh)")]
    MissingBinary {
        /// The binary.
        name: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// The lab spec or a config value is invalid; nothing was started.
    #[error("invalid lab configuration: {field}: {message}")]
    Config {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A port the configuration pins is already in use; nothing was started.
    #[error(
        "{field}: port {port} on 127.0.0.1 is already in use by another process; choose another port or stop that process"
    )]
    PortTaken {
        /// The field that pinned the port.
        field: String,
        /// The port.
        port: u16,
    },
    /// A component name that the lab does not have.
    #[error("unknown component {name:?}; the lab has: {known}")]
    UnknownComponent {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// A component did not become ready in time, or exited.
    #[error("{component} did not become ready within {seconds} s: {reason}\n  log: {log}{tail}")]
    NotReady {
        /// The component.
        component: String,
        /// The timeout.
        seconds: u64,
        /// Why.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// A command the lab runs (SPIRE CLI) failed.
    #[error("{command} failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its output.
        message: String,
    },
    /// A step the caller of `up` runs ([`lab::Hooks`]) failed; its own error, as it says it.
    #[error(transparent)]
    Hook(Box<dyn std::error::Error + Send + Sync>),
    /// File system or process error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Config { field: field.into(), message: message.into() }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The repository checkout whose files (policies, kind manifests) the lab shows and checks at
/// run time: `$ZT_ROOT`, else the checkout these binaries were built from.
pub fn repo_root() -> std::path::PathBuf {
    std::env::var_os("ZT_ROOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.."))
}

/// Renders a template: every `{{key}}` is replaced by its value. A placeholder left over is an
/// error, so a template and its values cannot drift apart silently.
pub fn render(template_name: &str, template: &str, values: &[(&str, String)]) -> Result<String> {
    let mut out = template.to_owned();
    for (k, v) in values {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    if let Some(start) = out.find("{{") {
        let end = out[start..].find("}}").map(|e| start + e + 2).unwrap_or(out.len());
        return Err(Error::config(template_name, format!("placeholder {} has no value", &out[start..end])));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_and_refuses_leftovers() {
        let out = render("t", "a={{a}} b={{b}}", &[("a", "1".into()), ("b", "2".into())]).expect("render");
        assert_eq!(out, "a=1 b=2");
        let err = render("t", "a={{a}} c={{c}}", &[("a", "1".into())]).expect_err("leftover");
        assert!(err.to_string().contains("{{c}}"), "{err}");
    }
}
