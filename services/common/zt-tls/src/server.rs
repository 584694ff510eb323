//! Serving over mTLS: axum routers and tonic services.
//!
//! The TLS layer authenticates: the client must present an X.509-SVID that chains to this trust
//! domain's bundle (no certificate, or one from another trust domain, fails the handshake). The
//! [`Authorizer`] then decides per connection. A refused peer gets a 403 (HTTP) or
//! `PERMISSION_DENIED` (gRPC) that names its SPIFFE ID and the rule, instead of a bare TLS alert,
//! so that a misconfigured caller learns what is wrong. Authorization is not optional: there is
//! no way to build an [`MtlsServer`] without an authorizer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use spiffe::{TrustDomain, X509Source};
use spiffe_rustls::TrustDomainPolicy;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tower::ServiceExt;
use zt_identity::{Authorizer, Denied};

use crate::{Error, PeerIdentity};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// An mTLS server identity: this workload's SVID (live, rotating), the trust domain whose
/// bundle authenticates clients, and the rule that authorizes them.
#[derive(Clone)]
pub struct MtlsServer {
    config: Arc<ServerConfig>,
    authorizer: Arc<dyn Authorizer>,
    client_auth: bool,
}

impl std::fmt::Debug for MtlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsServer").field("authorizer", &self.authorizer).finish_non_exhaustive()
    }
}

impl MtlsServer {
    /// Builds the server side for HTTP/1.1 and HTTP/2 (ALPN `h2`, `http/1.1`).
    pub fn new(
        source: &X509Source,
        trust_domain: &TrustDomain,
        authorizer: Arc<dyn Authorizer>,
    ) -> Result<Self, Error> {
        Self::with_alpn(source, trust_domain, authorizer, &[b"h2", b"http/1.1"])
    }

    /// Builds the server side for gRPC (ALPN `h2` only).
    pub fn grpc(
        source: &X509Source,
        trust_domain: &TrustDomain,
        authorizer: Arc<dyn Authorizer>,
    ) -> Result<Self, Error> {
        Self::with_alpn(source, trust_domain, authorizer, &[b"h2"])
    }

    fn with_alpn(
        source: &X509Source,
        trust_domain: &TrustDomain,
        authorizer: Arc<dyn Authorizer>,
        alpn: &[&[u8]],
    ) -> Result<Self, Error> {
        let config = spiffe_rustls::mtls_server(source.clone())
            .trust_domain_policy(TrustDomainPolicy::LocalOnly(trust_domain.clone()))
            .with_alpn_protocols(alpn.iter().map(|p| p.to_vec()))
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self { config: Arc::new(config), authorizer, client_auth: true })
    }

    /// A server that presents this workload's SVID but asks for no client certificate (callers
    /// authenticate in the application, e.g. with bearer tokens). Clients verify it as ordinary
    /// TLS: chain to the SPIRE bundle, and a DNS name from the entry's `dns_names`. For gRPC
    /// (ALPN `h2`).
    pub fn server_auth_only_grpc(source: &X509Source) -> Self {
        let resolver = Arc::new(SvidResolver { source: source.clone(), cache: std::sync::Mutex::new(None) });
        let mut config = ServerConfig::builder().with_no_client_auth().with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self { config: Arc::new(config), authorizer: Arc::new(NoClientCert), client_auth: false }
    }

    /// Serves `router` on `listener` until `shutdown` resolves, then drains open connections
    /// (up to 10 s). Handlers can take [`PeerIdentity`] as an extractor.
    pub async fn serve<F>(self, listener: TcpListener, router: Router, shutdown: F) -> io::Result<()>
    where
        F: std::future::Future<Output = ()> + Send,
    {
        let acceptor = TlsAcceptor::from(self.config.clone());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let acceptor = acceptor.clone();
            let router = router.clone();
            let authorizer = self.authorizer.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let Some((tls, info)) = handshake(&acceptor, tcp, remote, &*authorizer, true).await else {
                    return;
                };
                let (service, peer) = match (info.decision, info.peer) {
                    (Ok(()), peer) => (router, peer.map(Arc::new)),
                    (Err(denied), _) => (denial_router(denied), None),
                };
                // The peer goes on each request as an `Arc` (a reference count, not a copy of
                // its strings), around the router rather than through `Router::layer`, which
                // would wrap every route again for each connection.
                let service = service.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    if let Some(peer) = &peer {
                        req.extensions_mut().insert(peer.clone());
                    }
                    req
                });
                let conn = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(service))
                    .into_owned();
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
        Ok(())
    }

    /// mTLS connections for `tonic::transport::Server::serve_with_incoming`. Each connection
    /// carries a [`PeerInfo`]; services call [`authorized_peer`] to read it.
    pub fn incoming(self, listener: TcpListener) -> ReceiverStream<Result<TlsConn, io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = TlsAcceptor::from(self.config.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, remote) = match listener.accept().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let (acceptor, authorizer, tx) = (acceptor.clone(), self.authorizer.clone(), tx.clone());
                let client_auth = self.client_auth;
                tokio::spawn(async move {
                    if let Some((tls, info)) = handshake(&acceptor, tcp, remote, &*authorizer, client_auth).await {
                        let _ = tx.send(Ok(TlsConn { inner: tls, info })).await;
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Runs the TLS handshake and the authorization decision. Logs and returns `None` when the
/// handshake fails (no client certificate, untrusted chain, timeout).
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
    authorizer: &dyn Authorizer,
    client_auth: bool,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, PeerInfo)> {
    // Small request/response exchanges: without this, Nagle's algorithm holds the second
    // segment of an answer (HTTP/2 DATA after HEADERS) until the client's delayed ACK, about
    // 40 ms later.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%remote, error = %e, "TLS handshake refused: {}", describe_handshake_error(&e));
            return None;
        }
        Err(_) => {
            tracing::warn!(%remote, "TLS handshake timed out");
            return None;
        }
    };
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first().cloned());
    let peer = match leaf.map(|der| PeerIdentity::from_der(der.as_ref())) {
        Some(Ok(peer)) => peer,
        Some(Err(e)) => {
            tracing::warn!(%remote, error = %e, "peer certificate has no usable SPIFFE ID");
            return None;
        }
        None if !client_auth => {
            return Some((tls, PeerInfo { remote, peer: None, decision: Ok(()) }));
        }
        None => {
            tracing::warn!(%remote, "peer presented no certificate");
            return None;
        }
    };
    let decision = authorizer.authorize(&peer.spiffe_id);
    match &decision {
        Ok(()) => {
            tracing::debug!(%remote, peer = %peer.spiffe_id, serial = %peer.cert.serial, "mTLS peer authorized")
        }
        Err(denied) => {
            tracing::warn!(%remote, peer = %peer.spiffe_id, reason = %denied, "mTLS peer refused")
        }
    }
    Some((tls, PeerInfo { remote, peer: Some(peer), decision }))
}

fn describe_handshake_error(e: &io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::NoCertificatesPresented) => "the client presented no certificate".into(),
        Some(rustls::Error::InvalidCertificate(c)) => {
            format!(
                "the client certificate is not trusted here ({c:?}): wrong trust domain or not issued by this SPIRE"
            )
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

fn denial_router(denied: Denied) -> Router {
    let body = serde_json::json!({
        "error": "permission_denied",
        "peer": denied.peer,
        "message": denied.to_string(),
    });
    Router::new().fallback(move || {
        let body = body.clone();
        async move { (StatusCode::FORBIDDEN, Json(body)) }
    })
}

/// What a tonic service knows about a connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    /// The authenticated peer (`None` on a server-auth-only listener).
    pub peer: Option<PeerIdentity>,
    /// The authorizer's decision for this peer.
    pub decision: Result<(), Denied>,
}

/// An authenticated mTLS connection for tonic.
#[derive(Debug)]
pub struct TlsConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: PeerInfo,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The caller of a tonic request, if it was authorized; otherwise the status to return
/// (`UNAUTHENTICATED` outside mTLS, `PERMISSION_DENIED` naming the peer and the rule).
#[allow(clippy::result_large_err)]
pub fn authorized_peer<T>(request: &tonic::Request<T>) -> Result<PeerIdentity, tonic::Status> {
    let info = request
        .extensions()
        .get::<PeerInfo>()
        .ok_or_else(|| tonic::Status::unauthenticated("no peer SPIFFE ID: this service is served only over mTLS"))?;
    info.decision.clone().map_err(|d| tonic::Status::permission_denied(d.to_string()))?;
    info.peer.clone().ok_or_else(|| tonic::Status::unauthenticated("no client certificate on this connection"))
}

/// Serves this workload's current SVID as the server certificate (follows rotation).
#[derive(Debug)]
struct SvidResolver {
    source: X509Source,
    cache: std::sync::Mutex<Option<(Vec<u8>, Arc<rustls::sign::CertifiedKey>)>>,
}

impl rustls::server::ResolvesServerCert for SvidResolver {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let svid = self.source.try_svid()?;
        let leaf = svid.cert_chain().first()?.as_bytes().to_vec();
        let mut cache = self.cache.lock().ok()?;
        if let Some((cached, key)) = cache.as_ref()
            && *cached == leaf
        {
            return Some(key.clone());
        }
        let chain =
            svid.cert_chain().iter().map(|c| rustls::pki_types::CertificateDer::from(c.as_bytes().to_vec())).collect();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(svid.private_key().as_bytes().to_vec().into());
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).ok()?;
        let key = Arc::new(rustls::sign::CertifiedKey::new(chain, signer));
        *cache = Some((leaf, key.clone()));
        Some(key)
    }
}

/// The authorizer of a server-auth-only listener: there is no client certificate to check.
#[derive(Debug)]
struct NoClientCert;

impl Authorizer for NoClientCert {
    fn authorize(&self, peer: &zt_identity::SpiffeId) -> Result<(), Denied> {
        Err(Denied { peer: peer.to_string(), rule: "this listener does not take client certificates".into() })
    }
}
