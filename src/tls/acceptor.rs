//! The client-facing TLS configuration: certificate and key (loaded, or generated once at
//! start), protocol versions, cipher suites, client-certificate verification, ALPN.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tracing::{info, warn};

use super::certgen::{self, Generated};
use super::shared::{ring_provider, TlsError, ALPN_POSTGRESQL};
use crate::config::Config;

/// Where the server certificate comes from, decided once at start.
pub enum KeySource {
    /// PEM files, re-read on every reload.
    Files { key: PathBuf, cert: PathBuf },
    /// Made in-process because none was there; kept for the life of the process.
    Generated(Arc<Generated>),
}

/// `ssl_key`/`ssl_cert` when set, else `tls.key`/`tls.crt` in `ssl_generated_dir`. When both
/// files exist they are used; otherwise a self-signed pair is generated and written there.
pub fn key_source(cfg: &Config) -> Result<KeySource, TlsError> {
    let dir = cfg.resolve_path(&cfg.ssl_generated_dir);
    let pick = |set: &str, default: &str| {
        if set.is_empty() {
            dir.join(default)
        } else {
            cfg.resolve_path(set)
        }
    };
    let (key, cert) = (
        pick(&cfg.ssl_key, "tls.key"),
        pick(&cfg.ssl_cert, "tls.crt"),
    );
    if key.exists() && cert.exists() {
        return Ok(KeySource::Files { key, cert });
    }
    let g = certgen::generate(&cfg.ssl_extra_names)?;
    let written = certgen::write_with_fallback(&g, &key, &cert, &cfg.config_dir.join("tls"));
    info!(
        "ssl: generated a self-signed certificate (CN and names: {}), SHA-256 fingerprint {}{}",
        g.names.join(", "),
        certgen::fingerprint(g.cert.as_ref()),
        written
            .map(|(_, c)| format!(", written to {}", c.display()))
            .unwrap_or_default()
    );
    Ok(KeySource::Generated(Arc::new(g)))
}

/// Builds the acceptor's configuration from the settings and the key source.
pub fn server_config(cfg: &Config, src: &KeySource) -> Result<ServerConfig, TlsError> {
    let (certs, key) = load_pair(src)?;
    let provider = Arc::new(provider_for(cfg)?);
    let versions = versions(cfg)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Config(format!("ssl_ciphers / ssl_*_protocol_version: {e}")))?;
    let builder = match client_roots(cfg)? {
        Some(roots) => {
            let crls = crls(cfg)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls)
                // A certificate is asked for but optional; `cert` in pool_hba makes it required.
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Config(format!("ssl_ca_cert: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut sc = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("ssl_cert/ssl_key: {e}")))?;
    sc.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    sc.ignore_client_order = cfg.ssl_prefer_server_ciphers;
    Ok(sc)
}

fn load_pair(
    src: &KeySource,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    match src {
        KeySource::Generated(g) => Ok((vec![g.cert.clone()], g.key())),
        KeySource::Files { key, cert } => {
            let certs = load_certs(cert)?;
            if certs.is_empty() {
                return Err(TlsError::pem(cert, "no certificate in the file"));
            }
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::pem(key, e))?;
            Ok((certs, key))
        }
    }
}

pub(super) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::pem(path, e))
}

/// The ring provider with the TLS 1.2 suites `ssl_ciphers` selects (TLS 1.3 suites always).
fn provider_for(cfg: &Config) -> Result<CryptoProvider, TlsError> {
    let mut p = ring_provider();
    let choice = super::ciphers::select(&cfg.ssl_ciphers);
    if !choice.unsupported.is_empty() || choice.tls12.is_empty() {
        warn!(
            "ssl_ciphers '{}': rustls does not offer {}; TLS 1.2 keeps [{}], TLS 1.3 keeps all its suites",
            cfg.ssl_ciphers,
            if choice.unsupported.is_empty() {
                "any cipher it selects".to_string()
            } else {
                choice.unsupported.join(", ")
            },
            choice.kept.join(", ")
        );
    }
    p.cipher_suites.retain(|s| {
        s.version() == &rustls::version::TLS13
            || choice.tls12.iter().any(|c| c.suite() == s.suite())
    });
    Ok(p)
}

/// rustls speaks TLS 1.2 and 1.3; lower minimums mean 1.2, a maximum below 1.2 is an error.
fn versions(cfg: &Config) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let (v12, v13) = (&rustls::version::TLS12, &rustls::version::TLS13);
    let min13 = cfg.ssl_min_protocol_version == "TLSv1.3";
    let out: Vec<_> = match cfg.ssl_max_protocol_version.as_str() {
        "" | "TLSv1.3" if min13 => vec![v13],
        "" | "TLSv1.3" => vec![v13, v12],
        "TLSv1.2" if !min13 => vec![v12],
        other => {
            return Err(TlsError::Config(format!(
            "ssl_max_protocol_version = '{other}': TLS 1.2 and 1.3 are the only versions supported"
        )))
        }
    };
    if matches!(cfg.ssl_min_protocol_version.as_str(), "TLSv1" | "TLSv1.1") {
        info!(
            "ssl_min_protocol_version {}: TLS 1.2 is the lowest version offered",
            cfg.ssl_min_protocol_version
        );
    }
    Ok(out)
}

/// `ssl_ca_cert` and every certificate in `ssl_ca_cert_dir`; None when neither is set.
fn client_roots(cfg: &Config) -> Result<Option<RootCertStore>, TlsError> {
    let mut files = Vec::new();
    if !cfg.ssl_ca_cert.is_empty() {
        files.push(cfg.resolve_path(&cfg.ssl_ca_cert));
    }
    if !cfg.ssl_ca_cert_dir.is_empty() {
        let dir = cfg.resolve_path(&cfg.ssl_ca_cert_dir);
        let entries = std::fs::read_dir(&dir).map_err(|e| TlsError::pem(&dir, e))?;
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    if files.is_empty() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for f in &files {
        for c in load_certs(f)? {
            roots.add(c).map_err(|e| TlsError::pem(f, e))?;
        }
    }
    Ok(Some(roots))
}

fn crls(cfg: &Config) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    if cfg.ssl_crl_file.is_empty() {
        return Ok(Vec::new());
    }
    let path = cfg.resolve_path(&cfg.ssl_crl_file);
    CertificateRevocationListDer::pem_file_iter(&path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::pem(&path, e))
}
