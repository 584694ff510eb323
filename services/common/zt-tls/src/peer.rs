//! Who is on the other end: SPIFFE ID, serial and expiry of a certificate.

use serde::{Deserialize, Serialize};
use spiffe::SpiffeId;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::Error;

/// What ztlab shows about an X.509-SVID: its SPIFFE ID, serial number and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// The SPIFFE ID in the URI SAN.
    pub spiffe_id: String,
    /// The serial number, lower-case hex with colons (as `openssl x509 -serial` groups it).
    pub serial: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
    /// Expiry, RFC 3339.
    pub expires_at: String,
}

impl CertInfo {
    /// Parses a DER certificate that carries a SPIFFE ID.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let id = spiffe::cert::spiffe_id_from_der(der).map_err(|e| Error::Certificate(e.to_string()))?;
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| Error::Certificate(e.to_string()))?;
        let not_after = cert.validity().not_after.timestamp();
        let expires_at = time::OffsetDateTime::from_unix_timestamp(not_after)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        Ok(Self { spiffe_id: id.to_string(), serial: cert.raw_serial_as_string(), not_after, expires_at })
    }

    /// Seconds until expiry (negative once expired).
    pub fn seconds_left(&self) -> i64 {
        self.not_after - time::OffsetDateTime::now_utc().unix_timestamp()
    }
}

/// The authenticated peer of an mTLS connection. Axum handlers take it as an extractor; tonic
/// services find it through [`crate::server::PeerInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerIdentity {
    /// The peer's SPIFFE ID.
    #[serde(serialize_with = "ser_id")]
    pub spiffe_id: SpiffeId,
    /// The peer's leaf certificate.
    pub cert: CertInfo,
}

fn ser_id<S: serde::Serializer>(id: &SpiffeId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_string())
}

impl PeerIdentity {
    /// From the peer's leaf certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        let cert = CertInfo::from_der(der)?;
        let spiffe_id = SpiffeId::new(&cert.spiffe_id).map_err(|e| Error::Certificate(e.to_string()))?;
        Ok(Self { spiffe_id, cert })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerIdentity {
    type Rejection = (axum::http::StatusCode, &'static str);

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        // `MtlsServer` puts an `Arc<PeerIdentity>` on each request; a bare `PeerIdentity`
        // (e.g. a test's `Extension` layer) works too.
        let ext = &parts.extensions;
        ext.get::<std::sync::Arc<PeerIdentity>>()
            .map(|peer| PeerIdentity::clone(peer))
            .or_else(|| ext.get::<PeerIdentity>().cloned())
            .ok_or((axum::http::StatusCode::UNAUTHORIZED, "no peer SPIFFE ID: this route is served only over mTLS"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::extract::FromRequestParts;

    use super::*;

    fn peer() -> PeerIdentity {
        let id = "spiffe://ztlab.test/ns/demo/sa/client";
        PeerIdentity {
            spiffe_id: SpiffeId::new(id).expect("id"),
            cert: CertInfo {
                spiffe_id: id.into(),
                serial: "01".into(),
                not_after: 0,
                expires_at: "1970-01-01T00:00:00Z".into(),
            },
        }
    }

    async fn extract(req: axum::http::Request<()>) -> Result<PeerIdentity, axum::http::StatusCode> {
        let (mut parts, ()) = req.into_parts();
        PeerIdentity::from_request_parts(&mut parts, &()).await.map_err(|(status, _)| status)
    }

    #[tokio::test]
    async fn the_extractor_reads_the_servers_arc_or_a_bare_peer_and_refuses_without_one() {
        let mut req = axum::http::Request::new(());
        req.extensions_mut().insert(Arc::new(peer()));
        assert_eq!(extract(req).await, Ok(peer()));

        let mut req = axum::http::Request::new(());
        req.extensions_mut().insert(peer());
        assert_eq!(extract(req).await, Ok(peer()));

        assert_eq!(extract(axum::http::Request::new(())).await, Err(axum::http::StatusCode::UNAUTHORIZED));
    }
}
