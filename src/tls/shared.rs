//! What every part of the TLS module uses: its error, the crypto provider, the ALPN name.

use std::path::{Path, PathBuf};

use rustls::crypto::CryptoProvider;

/// The ALPN protocol name PostgreSQL 17 uses, required with direct TLS.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("could not generate a self-signed certificate: {0}")]
    Generate(rcgen::Error),
    #[error("{0}")]
    Config(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("direct TLS connection without ALPN \"postgresql\"")]
    NoAlpn,
    #[error("TLS is only offered on TCP connections")]
    NotTcp,
}

impl TlsError {
    pub(crate) fn pem(path: &Path, reason: impl std::fmt::Display) -> Self {
        TlsError::Pem {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// The ring provider: the only one this build uses (aws-lc is not compiled in).
pub fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}
