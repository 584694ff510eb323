//! The crate's error type. Per-entry failures of batch calls are not errors of this type:
//! they come back as [`crate::Status`] values inside [`crate::BatchResult`]s.

use std::path::PathBuf;

/// What can go wrong talking to a SPIRE server's Entry API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The admin socket does not exist: the SPIRE server is not running (or not yet), or the
    /// path is wrong.
    #[error(
        "SPIRE server admin socket {} does not exist: is the SPIRE server running, and is this its `socket_path`?",
        path.display()
    )]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
    },

    /// The socket file exists but the connection failed: usually a server that stopped and
    /// left its socket behind, or missing permissions.
    #[error("cannot connect to the SPIRE server admin socket {}: {source} (is the SPIRE server running?)", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The socket accepted the connection, but the gRPC (HTTP/2) channel could not be set up.
    #[error("gRPC connection over the SPIRE server admin socket {} failed: {source}", path.display())]
    Transport {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: tonic::transport::Error,
    },

    /// An RPC failed as a whole (for example `Unavailable` after the server stopped, or
    /// `InvalidArgument` for a malformed list filter).
    #[error("SPIRE server ({}): {method} failed: {:?}: {}", path.display(), status.code(), status.message())]
    Rpc {
        /// The socket path.
        path: PathBuf,
        /// The RPC, e.g. `ListEntries`.
        method: &'static str,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },

    /// A batch call stopped part-way because one of its requests failed as a whole. SPIRE
    /// batches are not atomic: the inputs before `completed` were processed (some may have
    /// succeeded) and are not rolled back; the rest were not sent.
    #[error(
        "SPIRE server ({}): {method} failed after {completed} of {total} entries were processed: {:?}: {}",
        path.display(), status.code(), status.message()
    )]
    BatchAborted {
        /// The socket path.
        path: PathBuf,
        /// The RPC, e.g. `BatchCreateEntry`.
        method: &'static str,
        /// How many inputs (from the start) had been answered.
        completed: usize,
        /// Number of inputs of the call.
        total: usize,
        /// The gRPC status of the failed request.
        status: Box<tonic::Status>,
    },

    /// The server's answer does not fit the request (for example a different number of batch
    /// results than entries sent). Indicates a protocol mismatch.
    #[error("SPIRE server ({}): unexpected {method} response: {message}", path.display())]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// The RPC.
        method: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// The gRPC code of an RPC-level failure, if this is one.
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc { status, .. } | Error::BatchAborted { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}
