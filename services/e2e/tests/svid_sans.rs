//! An X.509-SVID carries exactly one URI SAN, a `spiffe://` one (the SPIFFE X.509-SVID standard,
//! section 2). Certificates signed by the lab's own root with two SPIFFE IDs (in either order),
//! the same ID twice, or a web URI next to a SPIFFE ID are refused by every mTLS listener of the
//! lab: the backend's Envoy (403 naming the reason: Envoy's validators and RBAC accept a
//! certificate if ANY SAN matches, so a Lua check counts them), and opa, document and
//! entry-manager at the TLS handshake (spiffe-rustls). A certificate with the one ID each
//! listener admits is the control, so the refusals are about the SANs. The certificates are
//! minted with openssl in a temporary directory.
//!
//! (The frontend's Envoy has no mTLS listener: its own listener is plain HTTP on loopback for
//! the frontend app. The backend's ops port is plain HTTP too: JWKS and metrics.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use e2e::applab::{AppLab, AppLabOptions};

const TD: &str = "spiffe://ztlab.test";

/// Serial numbers of the minted certificates (distinct within a run).
static SERIAL: AtomicU64 = AtomicU64::new(0x7e57_0001);

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A leaf certificate with `sans` (openssl `subjectAltName` syntax) signed by the lab's root:
/// (certificate, key) files in `dir`.
fn mint(dir: &Path, ca: &Path, name: &str, sans: &str) -> (PathBuf, PathBuf) {
    let (key, csr, ext, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.csr")),
        dir.join(format!("{name}.ext")),
        dir.join(format!("{name}.crt")),
    );
    run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/O=ztlab-test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    std::fs::write(
        &ext,
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={sans}\n"
        ),
    )
    .expect("ext");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "1", "-set_serial", &format!("0x{:x}", SERIAL.fetch_add(1, Ordering::Relaxed))])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(ca.join("root.crt"))
        .arg("-CAkey")
        .arg(ca.join("root.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    let shown = run(Command::new("openssl").args(["x509", "-noout", "-ext", "subjectAltName", "-in"]).arg(&cert));
    assert_eq!(shown.matches("URI:").count(), sans.matches("URI:").count(), "{name}: {shown}");
    (cert, key)
}

/// What a listener did with a certificate.
#[derive(Debug, PartialEq)]
enum Answer {
    /// An HTTP answer: status and body.
    Http(u16, String),
    /// The TLS handshake failed, or the server closed the connection right after it (curl 35,
    /// 55, 56: TLS 1.3 servers check the client certificate after the client's Finished).
    Refused(i32, String),
}

fn call(url: &str, (cert, key): &(PathBuf, PathBuf), grpc: bool) -> Answer {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-k", "--max-time", "5", "-w", "\n%{http_code}", "--cert"]).arg(cert).arg("--key").arg(key);
    if grpc {
        // A gRPC health check: HTTP/2 with ALPN h2.
        cmd.args(["--http2", "-X", "POST", "-H", "content-type: application/grpc", "-H", "te: trailers"])
            .args(["--data-binary", "@/dev/null"]);
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match out.status.code() {
        Some(0) => {
            let (body, code) = text.trim_end().rsplit_once('\n').unwrap_or(("", text.trim()));
            Answer::Http(code.trim().parse().unwrap_or(0), body.to_owned())
        }
        Some(code @ (35 | 55 | 56)) => Answer::Refused(code, text),
        other => panic!("curl {url}: unexpected exit {other:?}: {text}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_without_exactly_one_spiffe_uri_san_are_refused_everywhere() {
    let lab = tokio::task::spawn_blocking(|| AppLab::start(AppLabOptions::default())).await.expect("start");
    let ca = lab.state().join("ca");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = lab.ports;
    // Each mTLS listener, the ID it admits, and the URL to call.
    let listeners = [
        ("envoy-backend", "/ns/demo/sa/frontend", format!("https://127.0.0.1:{}/api/orders", p.backend_envoy), false),
        ("opa", "/ns/demo/sa/document", format!("https://127.0.0.1:{}/v1/data/ztlab/documents/decision", p.opa), false),
        ("document", "/ns/demo/sa/frontend", format!("https://127.0.0.1:{}/v1/documents/DOC-001", p.document), false),
        (
            "entry-manager",
            "/ns/demo/sa/frontend",
            format!("https://127.0.0.1:{}/grpc.health.v1.Health/Check", p.entry_listen),
            true,
        ),
    ];
    let intruder = format!("{TD}/ns/demo/sa/intruder");
    for (name, admitted, url, grpc) in listeners {
        let id = format!("{TD}{admitted}");
        let control = mint(dir.path(), &ca, &format!("{name}-one"), &format!("URI:{id}"));
        match tokio::task::block_in_place(|| call(&url, &control, grpc)) {
            Answer::Http(status, body) => {
                assert!(!body.contains("SVID refused"), "{name}: the control was refused: {status} {body}");
                assert_ne!(status, 0, "{name}: {body}");
            }
            Answer::Refused(code, text) => panic!("{name}: the one-URI control was refused (curl {code}): {text}"),
        }
        for (case, sans) in [
            ("intruder-first", format!("URI:{intruder},URI:{id}")),
            ("admitted-first", format!("URI:{id},URI:{intruder}")),
            ("same-id-twice", format!("URI:{id},URI:{id}")),
            ("web-uri-too", format!("URI:{id},URI:https://example.com/x")),
        ] {
            let cert = mint(dir.path(), &ca, &format!("{name}-{case}"), &sans);
            match tokio::task::block_in_place(|| call(&url, &cert, grpc)) {
                Answer::Refused(..) => {}
                Answer::Http(403, body) if body.contains("exactly one spiffe:// URI SAN") => {}
                other => panic!("{name}, {case} ({sans}): not refused: {other:?}"),
            }
        }
    }
}
