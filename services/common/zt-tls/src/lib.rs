//! The one place in ztlab that builds rustls configurations.
//!
//! Every TLS connection between ztlab services uses an X.509-SVID from the SPIFFE Workload API
//! (the SPIRE agent). This crate turns an [`X509Source`] into rustls server and client configs
//! through `spiffe-rustls`, and it is the only crate that does. Identity rules live in
//! `zt-identity`, which has no rustls.
//!
//! Module map:
//! - [`source`]: connect to the Workload API, with errors that say what is wrong (no socket,
//!   agent down, workload not registered). [`source::connect_as`] picks one SVID by SPIFFE ID
//!   when the process is issued several (the agent runtime).
//! - [`peer`]: [`PeerIdentity`], the peer's SPIFFE ID and certificate serial, parsed from DER.
//! - [`server`]: [`MtlsServer`] serves an axum router over mTLS and hands each handler the
//!   caller's [`PeerIdentity`]; it also yields mTLS connections for tonic.
//! - [`client`]: [`MtlsClient`], an HTTP client that presents this workload's SVID and checks
//!   the server's SPIFFE ID.
//! - [`connect`]: [`connect::MtlsConnector`], the same client-side TLS on a TCP stream the
//!   caller opened (for code that drives HTTP connections itself, like the mTLS benchmark).
//! - [`pg`]: TLS to PostgreSQL from the SVID files spiffe-helper writes (re-read on rotation),
//!   requiring the server's SPIFFE ID.
//!
//! Rotation: `spiffe-rustls` reads the live source on every handshake, and the source follows
//! the agent's stream, so rotated SVIDs and bundles are used by the next handshake without a
//! restart. [`source::watch_svid`] publishes each new SVID on a `watch` channel for whoever wants
//! to observe it (health, metrics).

pub mod client;
pub mod connect;
pub mod peer;
pub mod pg;
pub mod server;
pub mod source;

pub use client::{ClientError, MtlsClient};
pub use peer::{CertInfo, PeerIdentity};
pub use server::{MtlsServer, PeerInfo};
pub use spiffe::X509Source;

/// Installs ring as the process-wide rustls crypto provider. Call once at the top of `main` and
/// of test harnesses; calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Errors from this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Workload API address is not a valid `unix://` or `tcp://` URI or absolute path.
    #[error("invalid Workload API endpoint {0:?}: use unix:///path/to/agent.sock or an absolute socket path")]
    InvalidEndpoint(String),
    /// The Workload API socket does not exist.
    #[error(
        "the SPIRE agent's Workload API socket {0} does not exist: is the agent running, and is the socket path right?"
    )]
    SocketMissing(String),
    /// The agent did not answer.
    #[error("cannot reach the SPIRE agent's Workload API at {endpoint}: {reason}")]
    AgentUnreachable {
        /// The endpoint that was dialled.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The agent answered, but issued no SVID to this process.
    #[error(
        "the SPIRE agent at {endpoint} issued no X.509-SVID to this workload (pid {pid}, executable {exe}): \
         no registration entry matches its selectors (for example unix:path:{exe}); register it and retry"
    )]
    NoIdentity {
        /// The endpoint that was dialled.
        endpoint: String,
        /// This process.
        pid: u32,
        /// This process's executable.
        exe: String,
    },
    /// The agent answered, but none of the SVIDs it issued to this process has the wanted
    /// SPIFFE ID (one process can hold several SVIDs; see [`source::connect_as`]).
    #[error(
        "the SPIRE agent at {endpoint} did not issue {wanted} to this workload (pid {pid}, executable {exe}) \
         within {waited:?}; it issued {}: register an entry with SPIFFE ID {wanted} for this workload's selectors \
         (for example unix:path:{exe}) and retry",
        issued_list(.issued)
    )]
    IdNotIssued {
        /// The endpoint that was dialled.
        endpoint: String,
        /// The SPIFFE ID asked for.
        wanted: String,
        /// The SPIFFE IDs the agent did issue (possibly none).
        issued: Vec<String>,
        /// How long it waited.
        waited: std::time::Duration,
        /// This process.
        pid: u32,
        /// This process's executable.
        exe: String,
    },
    /// The Workload API failed in another way.
    #[error("Workload API error at {endpoint}: {reason}")]
    WorkloadApi {
        /// The endpoint that was dialled.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// A certificate could not be parsed.
    #[error("cannot parse certificate: {0}")]
    Certificate(String),
    /// spiffe-rustls refused to build a config.
    #[error("cannot build TLS config: {0}")]
    Config(String),
}

fn issued_list(issued: &[String]) -> String {
    if issued.is_empty() { "no X.509-SVID at all".to_owned() } else { issued.join(", ") }
}
