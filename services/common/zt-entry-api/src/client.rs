//! A client for people and tools: ordinary TLS to entry-manager's operator listener (the
//! server's SVID, checked against the SPIRE trust bundle and its DNS name) with a bearer token
//! (an API key or an OIDC JWT) on every call.

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::pb;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Bearer>;

/// Clients for every service of the API over one channel.
#[derive(Debug, Clone)]
pub struct Client {
    channel: Channel,
    bearer: Bearer,
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TLS setup failed (bad bundle, bad address).
    #[error(transparent)]
    Tls(#[from] zt_tls::Error),
    /// The token cannot be sent as a header.
    #[error("the token contains characters that cannot be sent in a header")]
    BadToken,
}

const MAX_MESSAGE: usize = 64 << 20;

impl Client {
    /// Connects (lazily) to the operator listener at `addr`.
    pub fn operator(
        bundle_pem: &[u8],
        server_name: &str,
        addr: &str,
        token: Option<&str>,
    ) -> Result<Self, ClientError> {
        let channel = zt_tls::client::grpc_channel_with_roots(bundle_pem, server_name, addr)?;
        Self::with_channel(channel, token)
    }

    /// Over an existing channel (for example an mTLS one).
    pub fn with_channel(channel: Channel, token: Option<&str>) -> Result<Self, ClientError> {
        let bearer = match token {
            Some(t) => Some(format!("Bearer {}", t.trim()).parse().map_err(|_| ClientError::BadToken)?),
            None => None,
        };
        Ok(Self { channel, bearer: Bearer(bearer) })
    }

    fn svc(&self) -> Svc {
        InterceptedService::new(self.channel.clone(), self.bearer.clone())
    }

    /// WorkloadEntryService.
    pub fn entries(&self) -> pb::workload_entry_service_client::WorkloadEntryServiceClient<Svc> {
        pb::workload_entry_service_client::WorkloadEntryServiceClient::new(self.svc())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// SiteService.
    pub fn sites(&self) -> pb::site_service_client::SiteServiceClient<Svc> {
        pb::site_service_client::SiteServiceClient::new(self.svc())
    }

    /// SyncService.
    pub fn sync(&self) -> pb::sync_service_client::SyncServiceClient<Svc> {
        pb::sync_service_client::SyncServiceClient::new(self.svc())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// AuditService.
    pub fn audit(&self) -> pb::audit_service_client::AuditServiceClient<Svc> {
        pb::audit_service_client::AuditServiceClient::new(self.svc())
    }

    /// ApiKeyService.
    pub fn keys(&self) -> pb::api_key_service_client::ApiKeyServiceClient<Svc> {
        pb::api_key_service_client::ApiKeyServiceClient::new(self.svc())
    }

    /// IdentityService.
    pub fn identity(&self) -> pb::identity_service_client::IdentityServiceClient<Svc> {
        pb::identity_service_client::IdentityServiceClient::new(self.svc())
    }
}
