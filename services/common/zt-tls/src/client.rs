//! An HTTP client that presents this workload's SVID and checks the server's SPIFFE ID.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use spiffe::{TrustDomain, X509Source};
use spiffe_rustls::TrustDomainPolicy;
use zt_identity::Authorizer;

use crate::Error;

/// How many times a request is tried when its TLS handshake fails (see `request_with_headers`).
const HANDSHAKE_ATTEMPTS: u64 = 3;

/// ALPN for HTTP clients: HTTP/2 when the server offers it, else HTTP/1.1.
const HTTP_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Options for [`MtlsClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Keep connections open between requests. When false, every request makes a new
    /// handshake with the current SVID (used to watch rotation).
    pub reuse_connections: bool,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self { reuse_connections: true, timeout: Duration::from_secs(10) }
    }
}

/// Why a request failed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not an `https://` URL.
    #[error("invalid URL {0:?}: an https:// URL is required")]
    InvalidUrl(String),
    /// The TLS handshake failed; the message says which side refused and why.
    #[error("mTLS to {url} failed: {reason}")]
    Tls {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A request header name or value is not valid HTTP (the value is not echoed: it may be
    /// a credential).
    #[error("invalid value for request header {0:?}")]
    InvalidHeader(String),
    /// Nothing listens there, or the connection broke.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No answer in time.
    #[error("{url}: no answer within {0:?}", .timeout)]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
}

/// A response: status, headers and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: reqwest::StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Response {
    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// An mTLS HTTP client (reqwest over the rustls config from [`client_config`]). The server must
/// present an SVID of `trust_domain` that the `server` authorizer accepts.
#[derive(Clone)]
pub struct MtlsClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl std::fmt::Debug for MtlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsClient").finish_non_exhaustive()
    }
}

impl MtlsClient {
    /// Builds a client from this workload's source. The rustls config reads the live source on
    /// every handshake, so new connections present the current SVID and trust the current
    /// bundle after a rotation.
    pub fn new(
        source: &X509Source,
        trust_domain: &TrustDomain,
        server: Arc<dyn Authorizer>,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let config = client_config(source, trust_domain, server, HTTP_ALPN.iter().map(|p| p.to_vec()).collect())?;
        let mut builder = builder(config).https_only(true);
        if !options.reuse_connections {
            builder = builder.pool_max_idle_per_host(0);
        }
        let http = builder.build().map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self { http, timeout: options.timeout })
    }

    /// Sends a request with an optional JSON body.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<Response, ClientError> {
        self.request_with_headers(method, url, &[], json).await
    }

    /// Sends a request with extra headers (for example `authorization`) and an optional JSON
    /// body.
    pub async fn request_with_headers(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        json: Option<&serde_json::Value>,
    ) -> Result<Response, ClientError> {
        if !url.starts_with("https://") {
            return Err(ClientError::InvalidUrl(url.to_owned()));
        }
        let req = build_request(&self.http, method, url, headers, json)?;
        let send = async {
            // spiffe-rustls refuses handshakes for the instant between a rotated SVID or bundle
            // arriving and its conversion (`PendingRevision`, on either side). A request whose
            // connection or handshake failed was not processed, so it is retried, briefly.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let this = req.try_clone().ok_or_else(|| ClientError::InvalidUrl(url.to_owned()))?;
                match execute(&self.http, url, this).await {
                    Err(ClientError::Tls { reason, .. } | ClientError::Connect { reason, .. })
                        if attempt < HANDSHAKE_ATTEMPTS =>
                    {
                        tracing::debug!(url, attempt, %reason, "TLS handshake failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout(self.timeout, send)
            .await
            .map_err(|_| ClientError::Timeout { url: url.to_owned(), timeout: self.timeout })?
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<Response, ClientError> {
        self.request(Method::GET, url, None).await
    }
}

/// The client-side rustls config: present this workload's SVID, accept only a server of
/// `trust_domain` whose SPIFFE ID `server` authorizes.
pub(crate) fn client_config(
    source: &X509Source,
    trust_domain: &TrustDomain,
    server: Arc<dyn Authorizer>,
    alpn: Vec<Vec<u8>>,
) -> Result<rustls::ClientConfig, Error> {
    let builder = spiffe_rustls::mtls_client(source.clone())
        .trust_domain_policy(TrustDomainPolicy::LocalOnly(trust_domain.clone()))
        .authorize(move |id: &spiffe::SpiffeId| match server.authorize(id) {
            Ok(()) => true,
            Err(denied) => {
                tracing::warn!(reason = %denied, "server SPIFFE ID refused");
                false
            }
        });
    let builder = if alpn.is_empty() { builder } else { builder.with_alpn_protocols(alpn) };
    builder.build().map_err(|e| Error::Config(e.to_string()))
}

/// A tonic channel to `addr` (`host:port`) over mTLS with this workload's SVID. The server must
/// be of `trust_domain` and pass `server`. The channel connects lazily and reconnects by itself;
/// each new connection uses the current SVID.
pub fn grpc_channel(
    source: &X509Source,
    trust_domain: &TrustDomain,
    server: Arc<dyn Authorizer>,
    addr: &str,
) -> Result<tonic::transport::Channel, Error> {
    let config = client_config(source, trust_domain, server, vec![b"h2".to_vec()])?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Config(format!("invalid gRPC address {addr:?}: {e}")))?;
    let addr = addr.to_owned();
    Ok(endpoint.connect_with_connector_lazy(tower::service_fn(move |_: hyper::Uri| {
        let (connector, addr) = (connector.clone(), addr.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            // The SPIFFE verifier checks the URI SAN, not the name; any valid name does.
            let name = rustls::pki_types::ServerName::try_from("spiffe.invalid")
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    })))
}

/// A tonic channel to `addr` over ordinary TLS: the server's certificate must chain to a root
/// in `bundle_pem` (the SPIRE trust bundle) and carry `server_name` as a DNS name. For callers
/// without an SVID (people, CI) that authenticate with bearer tokens.
pub fn grpc_channel_with_roots(
    bundle_pem: &[u8],
    server_name: &str,
    addr: &str,
) -> Result<tonic::transport::Channel, Error> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(bundle_pem) {
        let cert = cert.map_err(|e| Error::Config(format!("trust bundle: {e}")))?;
        roots.add(cert).map_err(|e| Error::Config(format!("trust bundle: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::Config("the trust bundle has no certificates".into()));
    }
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| Error::Config(format!("server name {server_name:?}: {e}")))?;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Config(format!("invalid gRPC address {addr:?}: {e}")))?;
    let addr = addr.to_owned();
    Ok(endpoint.connect_with_connector_lazy(tower::service_fn(move |_: hyper::Uri| {
        let (connector, addr, name) = (connector.clone(), addr.clone(), name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    })))
}

/// Walks an error's sources for a rustls error and says in words who refused what.
fn classify(url: &str, err: &(dyn std::error::Error + 'static)) -> ClientError {
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let tls = e
            .downcast_ref::<rustls::Error>()
            .or_else(|| e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).and_then(|i| i.downcast_ref()));
        if let Some(tls) = tls {
            return ClientError::Tls { url: url.to_owned(), reason: describe_tls(tls) };
        }
        chain.push(e.to_string());
        cur = e.source();
    }
    chain.dedup();
    ClientError::Connect { url: url.to_owned(), reason: chain.join(": ") }
}

fn describe_tls(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::AlertReceived(A::CertificateRequired) => {
            "the server requires a client certificate (SVID) and none was presented".into()
        }
        rustls::Error::AlertReceived(
            a @ (A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::AccessDenied),
        ) => {
            format!(
                "the server refused this workload's certificate (TLS alert {a:?}): it does not chain to the \
                 server's trust bundle, or its trust domain is not accepted there"
            )
        }
        rustls::Error::InvalidCertificate(c) => format!(
            "the server's certificate was refused ({c:?}): its SPIFFE ID is not the one expected, or it is not \
             from this trust domain"
        ),
        other => format!("TLS error: {other}"),
    }
}

/// A reqwest client builder on `tls`, as every ztlab HTTP client is made: no proxy from the
/// environment, no redirects followed (callers see 3xx answers as they are), `TCP_NODELAY` (an
/// HTTP/2 request is a HEADERS and a DATA frame; with Nagle's algorithm the DATA frame waits for
/// the server's delayed ACK, about 40 ms).
fn builder(tls: rustls::ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
}

/// The rustls config for the outside world: the public Web PKI roots (webpki-roots), no client
/// certificate.
fn web_tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = HTTP_ALPN.iter().map(|p| p.to_vec()).collect();
    config
}

/// A plain HTTP(S) client for the outside world (OIDC discovery, SaaS APIs, OpenBao on
/// loopback): `https://` is verified against the public Web PKI roots (webpki-roots), `http://`
/// is allowed for loopback fixtures and lab services.
pub type WebClient = reqwest::Client;

/// Builds a [`WebClient`].
pub fn web_client() -> WebClient {
    builder(web_tls_config())
        .build()
        .expect("a reqwest client with a prebuilt rustls config and no proxy always builds")
}

/// A plain-HTTP [`WebClient`] whose every connection goes to the UNIX socket `path` (the URL's
/// host is then only the `Host` header), for servers that listen on a socket file: OpenBao's
/// admin listener.
pub fn unix_socket_client(path: &Path) -> WebClient {
    builder(web_tls_config())
        .unix_socket(path)
        .build()
        .expect("a reqwest client with a prebuilt rustls config and no proxy always builds")
}

/// A vaultrs client for OpenBao at `addr` (`http(s)://host:port`) on `http`, sending `token` (empty:
/// none). vaultrs would otherwise build a reqwest client of its own, with proxies from the
/// environment and its own TLS settings.
pub fn vault_client(http: &WebClient, addr: &str, token: &str) -> Result<vaultrs::client::VaultClient, Error> {
    let address =
        reqwest::Url::parse(addr).map_err(|e| Error::Config(format!("invalid OpenBao address {addr:?}: {e}")))?;
    Ok(vaultrs::client::VaultClient {
        http: rustify::clients::reqwest::Client::new(addr.trim_end_matches('/'), http.clone()),
        middle: vaultrs::api::EndpointMiddleware {
            token: token.to_owned(),
            version: "v1".into(),
            wrap: None,
            namespace: None,
        },
        settings: vaultrs::client::VaultClientSettings {
            address,
            ca_certs: Vec::new(),
            identity: None,
            timeout: None,
            token: token.to_owned(),
            verify: true,
            version: 1,
            wrapping: false,
            namespace: None,
            proxy: None,
        },
    })
}

/// A request with `headers` (credential headers marked sensitive, so never logged) and `json`
/// as the body, with its content type.
fn build_request(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    json: Option<&serde_json::Value>,
) -> Result<reqwest::Request, ClientError> {
    let mut map = HeaderMap::new();
    if json.is_some() {
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in headers {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(n), Ok(mut v)) => {
                v.set_sensitive(matches!(n.as_str(), "authorization" | "x-vault-token"));
                map.append(n, v);
            }
            _ => return Err(ClientError::InvalidHeader((*name).to_owned())),
        }
    }
    let mut req = client.request(method, url).headers(map);
    if let Some(v) = json {
        req = req.body(v.to_string());
    }
    req.build().map_err(|_| ClientError::InvalidUrl(url.to_owned()))
}

/// Sends `req` and reads the whole answer.
async fn execute(client: &reqwest::Client, url: &str, req: reqwest::Request) -> Result<Response, ClientError> {
    let resp = client.execute(req).await.map_err(|e| classify(url, &e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| classify(url, &e))?;
    Ok(Response { status, headers, body })
}

/// `GET url` with a [`WebClient`], returning status and body, with a timeout.
pub async fn web_get(client: &WebClient, url: &str, timeout: Duration) -> Result<Response, ClientError> {
    web_send(client, Method::GET, url, &[], None, timeout).await
}

/// One request with a [`WebClient`]: `headers` (credentials marked sensitive) and `json` as the
/// body when given; status, headers and body, with a timeout.
pub async fn web_send(
    client: &WebClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    json: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let req = build_request(client, method, url, headers, json)?;
    tokio::time::timeout(timeout, execute(client, url, req))
        .await
        .map_err(|_| ClientError::Timeout { url: url.to_owned(), timeout })?
}
