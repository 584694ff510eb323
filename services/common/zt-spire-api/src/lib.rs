//! ztlab's own protos for the SPIRE server Entry API (`spire.api.server.entry.v1.Entry`,
//! wire-compatible with SPIRE v1.15.3) and a small client over the server's admin unix socket.
//!
//! The Rust `spire-api` crate only covers the agent's Delegated Identity API, so ztlab declares
//! the Entry API itself (see `proto/`) and compiles it with `protox` + `tonic-prost-build`; no
//! system `protoc` is needed.
//!
//! # Module map
//! - [`spire`]: the generated code, one module per proto package:
//!   - [`spire::api::types`]: `Entry`, `EntryMask`, `SPIFFEID` (Rust: [`SpiffeId`]),
//!     `Selector`, `Status`, the match filters;
//!   - [`spire::api::server::entry::v1`]: requests/responses, `entry_client::EntryClient` and
//!     `entry_server::{Entry, EntryServer}`.
//! - [`client`]: [`SpireEntryClient`], which connects to the admin socket, follows list pages,
//!   and splits batch calls into requests that stay under the gRPC message limit.
//! - [`chunk`]: the request-splitting plan ([`ChunkLimits`], [`plan_chunks`]).
//! - [`error`]: the error type, [`Error`].
//! - Small helpers on the generated types (parsing/printing SPIFFE IDs and selectors, status
//!   codes) live in this file.
//!
//! # Batch semantics
//! SPIRE batches are not atomic: each input gets its own [`Status`]. The client returns one
//! [`BatchResult`] per input, in input order. A request that fails as a whole (server down,
//! for example) ends the call with [`Error::BatchAborted`]; chunks sent before it stay applied.

pub mod chunk;
pub mod client;
pub mod error;

#[allow(missing_docs, missing_debug_implementations, clippy::all, clippy::pedantic, clippy::unwrap_used)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/spire_api.rs"));
}

pub use generated::spire;

pub use chunk::{ChunkLimits, Planned, plan_chunks};
pub use client::{BatchResult, SpireEntryClient};
pub use error::Error;
pub use spire::api::server::entry::v1::list_entries_request::Filter as ListFilter;
pub use spire::api::types::{Entry, EntryMask, Selector, Spiffeid as SpiffeId, Status};

use std::fmt;

impl SpiffeId {
    /// Parses `spiffe://<trust domain><path>`. Returns `None` without the scheme or with an
    /// empty trust domain. Only splits; SPIRE does the full validation.
    pub fn parse(id: &str) -> Option<Self> {
        let rest = id.strip_prefix("spiffe://")?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if td.is_empty() {
            return None;
        }
        Some(Self { trust_domain: td.to_owned(), path: path.to_owned() })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

impl Selector {
    /// A selector from its type and value, e.g. `("unix", "path:/usr/bin/opa")`.
    pub fn new(r#type: impl Into<String>, value: impl Into<String>) -> Self {
        Self { r#type: r#type.into(), value: value.into() }
    }

    /// Parses the CLI form `type:value` (split at the first `:`).
    pub fn parse(s: &str) -> Option<Self> {
        let (t, v) = s.split_once(':')?;
        (!t.is_empty() && !v.is_empty()).then(|| Self::new(t, v))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.r#type, self.value)
    }
}

impl Status {
    /// A status with a gRPC code and a message.
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self { code: code as i32, message: message.into() }
    }

    /// The gRPC code (unknown numbers map to `Unknown`).
    pub fn grpc_code(&self) -> tonic::Code {
        tonic::Code::from_i32(self.code)
    }

    /// Code 0.
    pub fn is_ok(&self) -> bool {
        self.code == tonic::Code::Ok as i32
    }

    /// Code 6: on create, an entry with the same SPIFFE ID, parent and selector set exists.
    pub fn is_already_exists(&self) -> bool {
        self.code == tonic::Code::AlreadyExists as i32
    }

    /// Code 5: no entry with that ID.
    pub fn is_not_found(&self) -> bool {
        self.code == tonic::Code::NotFound as i32
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({}): {}", self.grpc_code(), self.code, self.message)
    }
}

impl std::error::Error for Status {}

impl From<&tonic::Status> for Status {
    fn from(s: &tonic::Status) -> Self {
        Self::new(s.code(), s.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_id_round_trip() {
        let id = SpiffeId::parse("spiffe://ztlab.test/ns/demo/sa/opa").expect("parses");
        assert_eq!(id.trust_domain, "ztlab.test");
        assert_eq!(id.path, "/ns/demo/sa/opa");
        assert_eq!(id.to_string(), "spiffe://ztlab.test/ns/demo/sa/opa");
        let td = SpiffeId::parse("spiffe://ztlab.test").expect("parses");
        assert_eq!(td.path, "");
        assert!(SpiffeId::parse("https://x/y").is_none());
        assert!(SpiffeId::parse("spiffe:///y").is_none());
    }

    #[test]
    fn selector_round_trip() {
        let s = Selector::parse("unix:path:/x").expect("parses");
        assert_eq!(s, Selector::new("unix", "path:/x"));
        assert_eq!(s.to_string(), "unix:path:/x");
        assert!(Selector::parse("nocolon").is_none());
    }

    #[test]
    fn status_codes() {
        assert!(Status::new(tonic::Code::AlreadyExists, "x").is_already_exists());
        assert!(Status::new(tonic::Code::NotFound, "x").is_not_found());
        assert_eq!(Status { code: 99, message: String::new() }.grpc_code(), tonic::Code::Unknown);
    }
}
