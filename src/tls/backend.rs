//! TLS from the proxy to the backends: `backend_ssl` (disable | prefer | require) with the
//! SSLRequest dance of libpq's `sslmode=prefer`/`require`, verifying the server against
//! `backend_ssl_ca_cert` when one is configured and accepting any certificate otherwise, as
//! Pgpool-II does.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::shared::{ring_provider, TlsError, ALPN_POSTGRESQL};
use crate::config::{BackendSsl, Config};

/// Whether and how a backend connection uses TLS. Cheap to clone (one `Arc`).
#[derive(Clone, Default)]
pub struct BackendTls {
    pub mode: BackendMode,
    pub config: Option<Arc<ClientConfig>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendMode {
    /// Plain connections only.
    #[default]
    Disable,
    /// TLS when the server accepts it, plain when it answers `N`.
    Prefer,
    /// TLS or no connection.
    Require,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("mode", &self.mode)
            .finish()
    }
}

/// `backend_ssl = prefer` follows Pgpool-II: backends are asked for TLS only when `ssl = on`.
/// `require` always asks and fails without it; `disable` never asks.
pub fn backend_tls(cfg: &Config) -> Result<BackendTls, TlsError> {
    let mode = match cfg.backend_ssl {
        BackendSsl::Disable => BackendMode::Disable,
        BackendSsl::Prefer if !cfg.ssl => BackendMode::Disable,
        BackendSsl::Prefer => BackendMode::Prefer,
        BackendSsl::Require => BackendMode::Require,
    };
    if mode == BackendMode::Disable {
        return Ok(BackendTls::default());
    }
    let provider = Arc::new(ring_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(format!("backend TLS: {e}")))?;
    let mut cc = if cfg.backend_ssl_ca_cert.is_empty() {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_no_client_auth()
    } else {
        let path = cfg.resolve_path(&cfg.backend_ssl_ca_cert);
        let mut roots = RootCertStore::empty();
        for c in super::acceptor::load_certs(&path)? {
            roots.add(c).map_err(|e| TlsError::pem(&path, e))?;
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Config(format!("backend_ssl_ca_cert: {e}")))?;
        builder.with_webpki_verifier(verifier).with_no_client_auth()
    };
    cc.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(BackendTls {
        mode,
        config: Some(Arc::new(cc)),
    })
}

/// The name the backend's certificate is checked against: its host name or IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string())
        .map_err(|e| TlsError::Config(format!("backend host \"{host}\" as a TLS name: {e}")))
}

/// libpq's `sslmode=require` without a CA: encryption, no authentication of the server. The
/// handshake signature is still checked so the session keys belong to the presented key.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
