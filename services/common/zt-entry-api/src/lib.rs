//! The central entry-management API, `ztlab.entry.v1`.
//!
//! - [`pb`]: the generated messages, clients and servers (tonic), and
//!   [`FILE_DESCRIPTOR_SET`] for gRPC reflection.
//! - [`client`]: TLS + bearer-token clients for people and tools.
//! - [`validate`]: every input goes through here before anything is written. Each type can only
//!   be built valid, and every error names its field (`entry.spiffe_id`, `entries[3].selectors[0]`).

pub mod access;
pub mod client;
pub mod json;
pub mod state;

/// The gRPC services of the API, by their full names (health and reflection list them).
pub const SERVICES: [&str; 6] = [
    "ztlab.entry.v1.WorkloadEntryService",
    "ztlab.entry.v1.SiteService",
    "ztlab.entry.v1.SyncService",
    "ztlab.entry.v1.AuditService",
    "ztlab.entry.v1.ApiKeyService",
    "ztlab.entry.v1.IdentityService",
];
pub mod validate;

/// Generated from `proto/ztlab/entry/v1/entry.proto`.
#[allow(clippy::all, missing_docs, missing_debug_implementations)]
pub mod pb {
    tonic::include_proto!("ztlab.entry.v1");
}

/// The encoded descriptors of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/entry_descriptor.bin"));

/// The prefix of SPIRE entry IDs that ztlab manages; anything else on a SPIRE server is
/// "unmanaged" and never modified.
pub const MANAGED_PREFIX: &str = "ztlab.";

/// The SPIRE entry ID for a central entry.
pub fn spire_entry_id(entry_id: &str) -> String {
    format!("{MANAGED_PREFIX}{entry_id}")
}
