//! The one place for certificate helpers: reading a PEM certificate's expiry and serial (in
//! ztlab's one form for serials), the files a spiffe-helper writes, PEM encoding, and the lab's
//! shared root CA.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// When the SVID a spiffe-helper wrote in `cert_dir` expires (Unix seconds).
pub fn svid_file_expiry(cert_dir: &Path) -> Option<i64> {
    pem_not_after(&std::fs::read(crate::app::svid_files(cert_dir)[0].clone()).ok()?)
}

/// When the first certificate of a PEM text expires (Unix seconds).
pub fn pem_not_after(pem: &[u8]) -> Option<i64> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = block.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The serial number of the SVID a spiffe-helper wrote in `cert_dir` ([`pem_serial`]).
pub fn svid_file_serial(cert_dir: &Path) -> Option<String> {
    pem_serial(&std::fs::read(crate::app::svid_files(cert_dir)[0].clone()).ok()?)
}

/// The serial number of the first certificate of a PEM text, in ztlab's one form for serials
/// ([`normalize_serial`]: lower-case hex, no colons, as Envoy's admin `/certs` prints it and as
/// `openssl x509 -serial` does in upper case).
pub fn pem_serial(pem: &[u8]) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = block.parse_x509().ok()?;
    let hex: String = cert.tbs_certificate.raw_serial().iter().map(|b| format!("{b:02x}")).collect();
    Some(normalize_serial(&hex))
}

/// A certificate serial in ztlab's one form: lower-case hex without colons or leading zero
/// bytes, an even number of digits (`openssl x509 -serial`, lower-cased; Envoy's `/certs`). Takes
/// the colon-separated form the native services' `/healthz` shows (`0a:1b:…`) as well.
pub fn normalize_serial(serial: &str) -> String {
    let mut hex: String = serial.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_lowercase()).collect();
    if hex.len() % 2 == 1 {
        hex.insert(0, '0');
    }
    let mut s = hex.as_str();
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    s.to_owned()
}

/// PEM text of one DER object (`CERTIFICATE`, `PRIVATE KEY`), for tools that read files.
pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN {tag}-----\n{}\n-----END {tag}-----\n", lines.join("\n"))
}

/// Creates the lab's shared root CA (EC P-256, one year) unless it exists. The key is 0600.
pub fn ensure_root_ca(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let cert_path = dir.join("root.crt");
    let key_path = dir.join("root.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let fail =
        |e: rcgen::Error| Error::Command { command: "generating the lab root CA".into(), message: e.to_string() };
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "ztlab");
    params.distinguished_name.push(rcgen::DnType::CommonName, "ztlab lab root CA");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key).map_err(fail)?;
    crate::spire::write(&key_path, &key.serialize_pem())?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
        .map_err(Error::io(format!("chmod {}", key_path.display())))?;
    crate::spire::write(&cert_path, &cert.pem())?;
    Ok((cert_path, key_path))
}
