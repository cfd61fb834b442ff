//! The self-signed certificate made at start when `ssl = on` and no certificate is there,
//! as Pgpool-II's Kubernetes image does with `openssl req -x509` (spec 2.7): CN = host name,
//! five years. We add subject alternative names (host name, pod IPs, localhost, and
//! `ssl_extra_names`) so `sslmode=verify-full` can work once the certificate is exported.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::shared::TlsError;

/// Days of validity, as the image's `openssl req -days 1825`.
const VALID_DAYS: i64 = 1825;

/// A freshly generated certificate and key.
pub struct Generated {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    /// The subject alternative names, as written into the certificate.
    pub names: Vec<String>,
}

impl Generated {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// Makes a self-signed certificate for this host.
pub fn generate(extra_names: &[String]) -> Result<Generated, TlsError> {
    let host = host_name();
    let (names, sans): (Vec<String>, Vec<SanType>) = san_names(&host, extra_names)
        .into_iter()
        .filter_map(|n| san(&n).map(|s| (n, s)))
        .unzip();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host.as_str());
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALID_DAYS);
    let key_pair = KeyPair::generate().map_err(TlsError::Generate)?;
    let cert = params.self_signed(&key_pair).map_err(TlsError::Generate)?;
    Ok(Generated {
        cert_pem: cert.pem(),
        key_pem: key_pair.serialize_pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der())),
        names,
    })
}

fn san(name: &str) -> Option<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Some(SanType::IpAddress(ip));
    }
    let valid = rustls_pki_types::DnsName::try_from(name).is_ok();
    match name.try_into() {
        Ok(dns) if valid => Some(SanType::DnsName(dns)),
        _ => {
            warn!("ssl: \"{name}\" is not a valid DNS name; left out of the certificate");
            None
        }
    }
}

/// Host name, the addresses it resolves to (the pod IP on Kubernetes, via /etc/hosts),
/// `POD_IP` when the manifest passes it, the loopback names, then `ssl_extra_names`.
fn san_names(host: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![host.to_string()];
    if let Ok(addrs) = (host, 0).to_socket_addrs() {
        names.extend(addrs.map(|a| a.ip().to_string()));
    }
    if let Ok(ip) = std::env::var("POD_IP") {
        names.push(ip);
    }
    names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    names.extend(extra.iter().map(|n| n.trim().to_string()));
    let mut unique: Vec<String> = Vec::new();
    for n in names {
        if !n.is_empty() && !unique.contains(&n) {
            unique.push(n);
        }
    }
    unique
}

/// The kernel's host name (the pod name on Kubernetes), `localhost` if it cannot be read.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates within it
    // when the name fits, and we stop at the first NUL or the end either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
        _ => "localhost".to_string(),
    }
}

/// SHA-256 of the DER certificate as `AB:CD:…`, the form `openssl x509 -fingerprint` prints.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

/// Writes the key (mode 0600) and certificate; the folder is created if needed.
fn write_pair(g: &Generated, key: &Path, cert: &Path) -> std::io::Result<()> {
    for p in [key, cert] {
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir)?;
        }
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(key)?.write_all(g.key_pem.as_bytes())?;
    fs::write(cert, g.cert_pem.as_bytes())
}

/// Writes the pair where Pgpool-II's image keeps it, else into `fallback_dir`, and logs where
/// (and why not the first place). Returns the paths written, None when neither was writable:
/// the certificate then lives in memory only, which serves clients all the same.
pub fn write_with_fallback(
    g: &Generated,
    key: &Path,
    cert: &Path,
    fallback_dir: &Path,
) -> Option<(PathBuf, PathBuf)> {
    let first_err = match write_pair(g, key, cert) {
        Ok(()) => return Some((key.to_path_buf(), cert.to_path_buf())),
        Err(e) => e,
    };
    let (fkey, fcert) = (fallback_dir.join("tls.key"), fallback_dir.join("tls.crt"));
    match write_pair(g, &fkey, &fcert) {
        Ok(()) => {
            info!(
                "ssl: {} is not writable ({first_err}); wrote the generated key and certificate to {} instead",
                cert.display(),
                fcert.display()
            );
            Some((fkey, fcert))
        }
        Err(e) => {
            warn!(
                "ssl: could not write the generated certificate to {} ({first_err}) nor to {} ({e}); \
                 it is kept in memory only",
                cert.display(),
                fcert.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_names_localhost_and_extra_names() {
        let g = generate(&[
            "db.example.com".into(),
            "10.1.2.3".into(),
            "bad name".into(),
        ])
        .expect("generate");
        for n in ["localhost", "127.0.0.1", "db.example.com", "10.1.2.3"] {
            assert!(
                g.names.iter().any(|x| x == n),
                "{n} missing from {:?}",
                g.names
            );
        }
        let (_, x509) = x509_parser::parse_x509_certificate(g.cert.as_ref()).expect("parse");
        let sans = x509
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|s| s.value.general_names.len())
            .unwrap_or(0);
        // Every valid name made it into the certificate, the invalid one into neither.
        assert_eq!(sans, g.names.len());
        assert!(!g.names.iter().any(|n| n == "bad name"));
        assert_eq!(fingerprint(g.cert.as_ref()).len(), 32 * 3 - 1);
    }

    #[test]
    fn unwritable_target_falls_back_to_the_second_folder() {
        let g = generate(&[]).expect("generate");
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        fs::write(&blocker, "x").expect("write");
        // A folder below a regular file cannot be created.
        let (k, c) = (blocker.join("tls.key"), blocker.join("tls.crt"));
        let fallback = dir.path().join("tls");
        let (wk, wc) = write_with_fallback(&g, &k, &c, &fallback).expect("fallback");
        assert_eq!(wc, fallback.join("tls.crt"));
        assert!(fs::read_to_string(&wk)
            .expect("key")
            .contains("PRIVATE KEY"));
    }
}
