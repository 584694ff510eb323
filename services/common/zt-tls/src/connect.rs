//! mTLS on a TCP stream the caller opened: for code that drives its own connections (the
//! `bench-mtls` benchmark speaks HTTP/1.1 or HTTP/2 over them with hyper directly, so that
//! plain and mTLS connections go through the same client code).
//!
//! The config is the one [`crate::MtlsClient`] uses (this workload's live SVID, the server's
//! SPIFFE ID checked by an authorizer), with the ALPN protocols the caller chooses.

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use spiffe::{TrustDomain, X509Source};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zt_identity::Authorizer;

use crate::Error;

/// A client-side mTLS stream over TCP.
pub type ClientTlsStream = TlsStream<TcpStream>;

/// Runs mTLS client handshakes with this workload's SVID. Cheap to clone: the rustls config is
/// built once and shared by every connection.
#[derive(Clone)]
pub struct MtlsConnector {
    inner: TlsConnector,
}

impl std::fmt::Debug for MtlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsConnector").finish_non_exhaustive()
    }
}

impl MtlsConnector {
    /// The server must present an SVID of `trust_domain` that `server` authorizes; `alpn` is
    /// offered in order (for example `[b"http/1.1"]` or `[b"h2"]`; empty offers none).
    pub fn new(
        source: &X509Source,
        trust_domain: &TrustDomain,
        server: Arc<dyn Authorizer>,
        alpn: &[&[u8]],
    ) -> Result<Self, Error> {
        let alpn = alpn.iter().map(|p| p.to_vec()).collect();
        let config = crate::client::client_config(source, trust_domain, server, alpn)?;
        Ok(Self { inner: TlsConnector::from(Arc::new(config)) })
    }

    /// The TLS handshake on `tcp`, with the current SVID. The SPIFFE verifier checks the
    /// server's URI SAN, not a host name.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<ClientTlsStream> {
        let name =
            ServerName::try_from("spiffe.invalid").map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.inner.connect(name, tcp).await
    }

    /// The ALPN protocol the server chose on `tls`, if any.
    pub fn negotiated_alpn(tls: &ClientTlsStream) -> Option<&[u8]> {
        tls.get_ref().1.alpn_protocol()
    }
}
