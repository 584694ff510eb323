//! TLS to PostgreSQL with the SVID files that spiffe-helper writes.
//!
//! spiffe-helper keeps three PEM files up to date in a directory ([`SvidFiles::in_dir`]):
//! `svid.pem` (leaf and intermediates), `svid_key.pem` (the leaf's key) and `svid_bundle.pem`
//! (the trust bundle). [`make_tls_connect`] turns them into a `tokio-postgres` TLS connector:
//!
//! - TLS 1.3 only, with the ring provider, without session resumption;
//! - the client certificate is the one in the files *now*: before each connection the files'
//!   metadata is checked and they are read again when they changed, so rotation needs no
//!   restart. A half-written rotation (key and certificate that do not match, a truncated file)
//!   keeps the last good pair until the next connection;
//! - the server's chain is verified against the bundle file (also re-read on change) with
//!   webpki, then the server leaf's URI SAN must be exactly `server_id`. SVIDs have no DNS
//!   name, so the host name used to connect is not checked;
//! - a missing or unreadable file fails the connection with an error that names the file.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use spiffe::SpiffeId;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why TLS to PostgreSQL could not be set up or refused the server.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PgTlsError {
    /// A file spiffe-helper should have written does not exist.
    #[error("{} does not exist: has spiffe-helper written the SVID files yet?", .path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A file exists but cannot be read.
    #[error("cannot read {}: {reason}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A file was read but its content is not usable.
    #[error("{}: {reason}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The server presented a certificate with another SPIFFE ID (or none).
    #[error("the PostgreSQL server presented SPIFFE ID {found}, but {expected} is required")]
    WrongServer {
        /// The server's SPIFFE ID, or `no SPIFFE ID`.
        found: String,
        /// The SPIFFE ID required.
        expected: String,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS config for PostgreSQL: {0}")]
    Config(String),
}

/// Where spiffe-helper writes the SVID files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidFiles {
    /// Leaf certificate followed by intermediates (PEM).
    pub cert: PathBuf,
    /// The leaf's private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// Trust bundle: the CA certificates the server's chain must lead to (PEM).
    pub bundle: PathBuf,
}

impl SvidFiles {
    /// spiffe-helper's default names in `dir`: `svid.pem`, `svid_key.pem`, `svid_bundle.pem`.
    pub fn in_dir(dir: &Path) -> Self {
        Self { cert: dir.join("svid.pem"), key: dir.join("svid_key.pem"), bundle: dir.join("svid_bundle.pem") }
    }

    fn all(&self) -> [&Path; 3] {
        [&self.cert, &self.key, &self.bundle]
    }
}

/// A file's identity and version: inode, size, modification and change times.
type Stamp = (u64, u64, i64, i64, i64, i64);

fn stamp(path: &Path) -> Result<Stamp, PgTlsError> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, &e))?;
    Ok((meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec()))
}

fn io_error(path: &Path, e: &std::io::Error) -> PgTlsError {
    if e.kind() == std::io::ErrorKind::NotFound {
        PgTlsError::Missing { path: path.to_owned() }
    } else {
        PgTlsError::Unreadable { path: path.to_owned(), reason: e.to_string() }
    }
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> PgTlsError {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io_error(path, &io),
        other => PgTlsError::Invalid { path: path.to_owned(), reason: format!("not valid PEM: {other:?}") },
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PgTlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(PgTlsError::Invalid { path: path.to_owned(), reason: "no CERTIFICATE in the file".into() });
    }
    Ok(certs)
}

/// What was read from the files, with the stamps they had.
#[derive(Debug)]
struct Loaded {
    stamps: [Stamp; 3],
    key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
}

fn load(files: &SvidFiles, provider: &CryptoProvider, stamps: [Stamp; 3]) -> Result<Loaded, PgTlsError> {
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            PgTlsError::Invalid { path: files.key.clone(), reason: "no PRIVATE KEY in the file".into() }
        }
        other => pem_error(&files.key, other),
    })?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| PgTlsError::Invalid {
        path: files.key.clone(),
        reason: format!("the key does not go with the certificate in {}: {e}", files.cert.display()),
    })?;
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&files.bundle)? {
        roots.add(ca).map_err(|e| PgTlsError::Invalid {
            path: files.bundle.clone(),
            reason: format!("a bundle certificate is not a usable trust anchor: {e}"),
        })?;
    }
    Ok(Loaded { stamps, key: Arc::new(key), roots: Arc::new(roots) })
}

/// The files and what was last read from them.
#[derive(Debug)]
struct State {
    files: SvidFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Option<Arc<Loaded>>>,
}

impl State {
    fn current(&self) -> Option<Arc<Loaded>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the files again if they changed since the last read. A missing file is an error;
    /// a file that exists but does not parse (a rotation being written) keeps the last good
    /// material, if there is any.
    fn refresh(&self) -> Result<Arc<Loaded>, PgTlsError> {
        let mut stamps = [(0, 0, 0, 0, 0, 0); 3];
        for (slot, path) in stamps.iter_mut().zip(self.files.all()) {
            *slot = stamp(path)?;
        }
        let current = self.current();
        if let Some(cur) = &current
            && cur.stamps == stamps
        {
            return Ok(cur.clone());
        }
        match load(&self.files, &self.provider, stamps) {
            Ok(loaded) => {
                let loaded = Arc::new(loaded);
                if current.is_some() {
                    tracing::info!(cert = %self.files.cert.display(), "PostgreSQL client SVID files changed; reloaded");
                }
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(loaded.clone());
                Ok(loaded)
            }
            Err(e) => match current {
                Some(cur) => {
                    tracing::warn!(error = %e, "cannot reload the SVID files; using the previous ones");
                    Ok(cur)
                }
                None => Err(e),
            },
        }
    }
}

/// Presents the client certificate last read from the files.
#[derive(Debug)]
struct FileCertResolver(Arc<State>);

impl ResolvesClientCert for FileCertResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.current().map(|l| l.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Verifies the server chain against the bundle file, then its SPIFFE ID.
#[derive(Debug)]
struct SpiffeServerVerifier {
    state: Arc<State>,
    server_id: SpiffeId,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(loaded) = self.state.current() else {
            return Err(rustls::Error::General("no trust bundle loaded".into()));
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &loaded.roots,
            intermediates,
            now,
            self.state.provider.signature_verification_algorithms.all,
        )?;
        let found = spiffe::cert::spiffe_id_from_der(end_entity.as_ref()).ok();
        if found.as_ref() != Some(&self.server_id) {
            let err = PgTlsError::WrongServer {
                found: found.map(|f| f.to_string()).unwrap_or_else(|| "no SPIFFE ID".into()),
                expected: self.server_id.to_string(),
            };
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(err),
            ))));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.state.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.state.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.state.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A `tokio-postgres` TLS connector (also usable with deadpool-postgres) that authenticates
/// with the SVID files and requires the server's SPIFFE ID. Clones share the file cache.
#[derive(Clone)]
pub struct MakeSvidTlsConnect {
    state: Arc<State>,
    inner: MakeRustlsConnect,
}

impl std::fmt::Debug for MakeSvidTlsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeSvidTlsConnect").field("files", &self.state.files).finish_non_exhaustive()
    }
}

impl MakeSvidTlsConnect {
    /// Reads the files now (if they changed) and returns an error naming the file that is
    /// missing or unusable. Connecting does the same; this is for readiness checks.
    pub fn check_files(&self) -> Result<(), PgTlsError> {
        self.state.refresh().map(|_| ())
    }

    /// The files this connector reads.
    pub fn files(&self) -> &SvidFiles {
        &self.state.files
    }
}

impl<S> MakeTlsConnect<S> for MakeSvidTlsConnect
where
    MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        self.state.refresh()?;
        self.inner.make_tls_connect(domain).map_err(Into::into)
    }
}

/// Builds the connector for a PostgreSQL server that must present `server_id`, with the client
/// certificate, key and trust bundle in `files`. The files are read at each connection (see
/// the module docs), so they need not exist yet.
pub fn make_tls_connect(files: &SvidFiles, server_id: &SpiffeId) -> Result<MakeSvidTlsConnect, PgTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let state = Arc::new(State { files: files.clone(), provider: provider.clone(), current: RwLock::new(None) });
    if let Err(e) = state.refresh() {
        tracing::debug!(error = %e, "SVID files not usable yet; they are read again at connect time");
    }
    let verifier = Arc::new(SpiffeServerVerifier { state: state.clone(), server_id: server_id.clone() });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| PgTlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(FileCertResolver(state.clone())));
    // No session resumption: a resumed session would carry the previous client certificate,
    // and every new connection must present (and check) the current files.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(MakeSvidTlsConnect { state, inner: MakeRustlsConnect::new(config) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_postgres::tls::TlsConnect as _;

    const PG: &str = "spiffe://ztlab.test/ns/demo/sa/postgres";
    const BACKEND: &str = "spiffe://ztlab.test/ns/demo/sa/backend";

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        pem: String,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.subject_alt_names = vec![SanType::URI("spiffe://ztlab.test".try_into().expect("uri"))];
        let cert = params.self_signed(&key).expect("ca cert");
        Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A leaf SVID for `id` signed by `ca`: (cert PEM, key PEM, DER).
    fn leaf(ca: &Ca, id: &str) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = vec![SanType::URI(id.try_into().expect("uri"))];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.is_ca = IsCa::ExplicitNoCa;
        let cert = params.signed_by(&key, &ca.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn write_files(dir: &Path, ca_for_client: &Ca, client_id: &str, bundle: &Ca) -> Vec<u8> {
        let (cert, key, der) = leaf(ca_for_client, client_id);
        std::fs::write(dir.join("svid.pem"), cert).expect("write");
        std::fs::write(dir.join("svid_key.pem"), key).expect("write");
        std::fs::write(dir.join("svid_bundle.pem"), &bundle.pem).expect("write");
        der
    }

    /// A TLS server presenting `id` (signed by `ca`) that requires a client certificate from
    /// `client_ca`. Each accepted connection sends back the client's leaf certificate on a
    /// channel.
    async fn server(ca: &Ca, id: &str, client_ca: &Ca) -> (u16, tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>) {
        let (cert, key, _) = leaf(ca, id);
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().expect("chain");
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(client_ca.pem.as_bytes()).expect("ca")).expect("add");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
                .build()
                .expect("client verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("versions")
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
                            let _ = tls.write_all(b"ok").await;
                            let _ = tls.flush().await;
                            peer.ok_or_else(|| "no client certificate".to_owned())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = tx.send(result).await;
                });
            }
        });
        (port, rx)
    }

    /// Connects with `connector` and reads the server's greeting.
    async fn connect(connector: &mut MakeSvidTlsConnect, port: u16) -> Result<(), String> {
        let tls = MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(connector, "127.0.0.1")
            .map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
        let mut stream = tls.connect(tcp).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::new(s).expect("id")
    }

    #[tokio::test]
    async fn right_server_id_is_accepted_and_client_cert_presented() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca("ca");
        let client_der = write_files(dir.path(), &ca, BACKEND, &ca);
        let (port, mut seen) = server(&ca, PG, &ca).await;
        let mut connector = make_tls_connect(&SvidFiles::in_dir(dir.path()), &id(PG)).expect("connector");
        connect(&mut connector, port).await.expect("handshake");
        assert_eq!(seen.recv().await.expect("server result").expect("client accepted"), client_der);
    }

    #[tokio::test]
    async fn wrong_server_id_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca("ca");
        write_files(dir.path(), &ca, BACKEND, &ca);
        let (port, _seen) = server(&ca, "spiffe://ztlab.test/ns/demo/sa/impostor", &ca).await;
        let mut connector = make_tls_connect(&SvidFiles::in_dir(dir.path()), &id(PG)).expect("connector");
        let err = connect(&mut connector, port).await.expect_err("wrong ID");
        assert!(err.contains("spiffe://ztlab.test/ns/demo/sa/impostor") && err.contains(PG), "{err}");
    }

    #[tokio::test]
    async fn server_from_another_ca_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ours = ca("ours");
        let theirs = ca("theirs");
        write_files(dir.path(), &ours, BACKEND, &ours);
        let (port, _seen) = server(&theirs, PG, &ours).await;
        let mut connector = make_tls_connect(&SvidFiles::in_dir(dir.path()), &id(PG)).expect("connector");
        let err = connect(&mut connector, port).await.expect_err("other CA");
        assert!(err.to_lowercase().contains("issuer") || err.contains("UnknownIssuer"), "{err}");
    }

    #[tokio::test]
    async fn rotated_files_are_picked_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old_ca = ca("old");
        let first = write_files(dir.path(), &old_ca, BACKEND, &old_ca);
        let (port, mut seen) = server(&old_ca, PG, &old_ca).await;
        let mut connector = make_tls_connect(&SvidFiles::in_dir(dir.path()), &id(PG)).expect("connector");
        connect(&mut connector, port).await.expect("first");
        assert_eq!(seen.recv().await.expect("result").expect("accepted"), first);

        // A new client SVID: the next connection presents it, same connector.
        let second = write_files(dir.path(), &old_ca, BACKEND, &old_ca);
        assert_ne!(first, second);
        connect(&mut connector, port).await.expect("second");
        assert_eq!(seen.recv().await.expect("result").expect("accepted"), second);

        // The server moves to a new CA: refused until the bundle has it, then accepted.
        let new_ca = ca("new");
        let (new_port, mut new_seen) = server(&new_ca, PG, &new_ca).await;
        connect(&mut connector, new_port).await.expect_err("bundle not rotated yet");
        let _ = new_seen.recv().await;
        let third = write_files(dir.path(), &new_ca, BACKEND, &new_ca);
        connect(&mut connector, new_port).await.expect("after bundle rotation");
        assert_eq!(new_seen.recv().await.expect("result").expect("accepted"), third);
    }

    #[tokio::test]
    async fn half_written_rotation_keeps_the_last_good_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ca("ca");
        let first = write_files(dir.path(), &ca, BACKEND, &ca);
        let (port, mut seen) = server(&ca, PG, &ca).await;
        let mut connector = make_tls_connect(&SvidFiles::in_dir(dir.path()), &id(PG)).expect("connector");
        // The certificate is rewritten, the key not yet.
        let (cert, _, _) = leaf(&ca, BACKEND);
        std::fs::write(dir.path().join("svid.pem"), cert).expect("write");
        connect(&mut connector, port).await.expect("previous pair");
        assert_eq!(seen.recv().await.expect("result").expect("accepted"), first);
    }

    #[tokio::test]
    async fn missing_files_are_named_at_connect_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = SvidFiles::in_dir(dir.path());
        let mut connector = make_tls_connect(&files, &id(PG)).expect("built without files");
        let err = connect(&mut connector, 1).await.expect_err("no files");
        assert!(err.contains("svid.pem") && err.contains("does not exist"), "{err}");
        assert!(matches!(connector.check_files(), Err(PgTlsError::Missing { ref path }) if *path == files.cert));

        let ca = ca("ca");
        write_files(dir.path(), &ca, BACKEND, &ca);
        std::fs::write(&files.key, "not a key").expect("write");
        let err = connector.check_files().expect_err("bad key");
        assert!(err.to_string().contains("svid_key.pem"), "{err}");
        std::fs::remove_file(&files.bundle).expect("rm");
        let err = connector.check_files().expect_err("no bundle");
        assert!(matches!(err, PgTlsError::Missing { ref path } if *path == files.bundle), "{err}");
    }
}
