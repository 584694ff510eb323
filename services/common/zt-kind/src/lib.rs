//! The lab's Kubernetes runtime on kind.
//!
//! The cluster itself is created by `scripts/kind-cluster.sh` (kind with the node image that
//! `scripts/install-kind.sh` builds, since no registry is reachable here). This crate puts the
//! lab on it, talking to the API server with the `kube` crate:
//! - [`manifests`] renders the lab's objects: the YAML templates under `infrastructure/kind/`
//!   and the components' configs from the same templates the local runtime renders
//!   (`zt_runtime::spire::render_configs` with [`zt_runtime::spire::Attestation::Kubernetes`]);
//! - [`apply`] applies them with server-side apply (field manager `ztlab`), so a second `up`
//!   changes nothing;
//! - [`cluster`] connects with the lab's own kubeconfig (`<state>/kind/kubeconfig`, never
//!   `~/.kube`), waits for readiness and runs the few CLI calls that need a pod's shell
//!   (`kubectl exec`, because the `kube` build here has no websocket support).
//!
//! It may not know about scenarios, the CLI's output or the UI; like `zt_runtime`, it reports
//! progress through a callback.

pub mod apply;
pub mod cluster;
pub mod manifests;

pub use cluster::{Kind, KindPaths};

/// Errors of the kind runtime; each says what it was doing.
pub type Result<T> = anyhow::Result<T>;
