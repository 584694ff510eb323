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
        parts
            .extensions
            .get::<PeerIdentity>()
            .cloned()
            .ok_or((axum::http::StatusCode::UNAUTHORIZED, "no peer SPIFFE ID: this route is served only over mTLS"))
    }
}
