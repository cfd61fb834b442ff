//! TLS on both sides, with rustls and the ring provider only.
//!
//! Clients: `SSLRequest` is answered `S` when `ssl = on`, and PostgreSQL 17's direct TLS
//! (`sslnegotiation=direct`: the handshake comes first, ALPN `postgresql` required) is accepted
//! too. The certificate comes from `ssl_cert`/`ssl_key`, or is generated at start. Backends:
//! `backend_ssl`. The acceptor and connector sit in `ArcSwap`s so a reload (SIGHUP) swaps the
//! certificate for new sessions while running sessions keep the one they started with.

mod acceptor;
mod backend;
mod certgen;
mod ciphers;
mod shared;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{info, warn};

pub use acceptor::KeySource;
pub use backend::{BackendMode, BackendTls};
pub use certgen::fingerprint;
pub use shared::{ring_provider, TlsError, ALPN_POSTGRESQL};

use crate::config::Config;
use crate::stream::Stream;

/// The first byte of a TLS handshake record: a direct-TLS client sends it instead of a length.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS state sessions share: the client acceptor (None = answer `N`) and the backend
/// connector, each swapped whole on reload.
#[derive(Default)]
pub struct Tls {
    acceptor: ArcSwapOption<ServerConfig>,
    backend: ArcSwap<BackendTls>,
    /// Where the certificate came from at start; None when `ssl = off`.
    source: Mutex<Option<KeySource>>,
}

impl Tls {
    /// The configuration new client handshakes use, if TLS is on.
    pub fn acceptor(&self) -> Option<Arc<ServerConfig>> {
        self.acceptor.load_full()
    }

    /// How new backend connections use TLS.
    pub fn backend(&self) -> BackendTls {
        self.backend.load().as_ref().clone()
    }
}

/// Loads or generates the certificate and builds both sides' configuration. An error stops
/// the start: a proxy told to encrypt must not silently serve in plain text.
pub fn init(tls: &Tls, cfg: &Config) -> Result<(), TlsError> {
    tls.backend.store(Arc::new(backend::backend_tls(cfg)?));
    if !cfg.ssl {
        return Ok(());
    }
    let src = acceptor::key_source(cfg)?;
    let sc = acceptor::server_config(cfg, &src)?;
    log_serving(&src);
    tls.acceptor.store(Some(Arc::new(sc)));
    *tls.source.lock().unwrap_or_else(|p| p.into_inner()) = Some(src);
    Ok(())
}

/// Re-reads the certificate, key, CA and CRL files (SIGHUP). Sessions already encrypted keep
/// going; a file that fails to load is logged and the previous configuration stays.
pub fn reload_tls(tls: &Tls, cfg: &Config) {
    match backend::backend_tls(cfg) {
        Ok(b) => tls.backend.store(Arc::new(b)),
        Err(e) => warn!("ssl: backend TLS settings not reloaded: {e}"),
    }
    let guard = tls.source.lock().unwrap_or_else(|p| p.into_inner());
    let Some(src) = guard.as_ref() else {
        return;
    };
    match acceptor::server_config(cfg, src) {
        Ok(sc) => {
            log_serving(src);
            tls.acceptor.store(Some(Arc::new(sc)));
        }
        Err(e) => warn!("ssl: certificate not reloaded, keeping the previous one: {e}"),
    }
}

fn log_serving(src: &KeySource) {
    if let KeySource::Files { cert, .. } = src {
        let fp = acceptor::load_certs(cert)
            .ok()
            .and_then(|c| c.first().map(|c| fingerprint(c.as_ref())));
        info!(
            "ssl: serving certificate {}{}",
            cert.display(),
            fp.map(|f| format!(" (SHA-256 fingerprint {f})"))
                .unwrap_or_default()
        );
    }
}

/// Whether a client opened with a TLS handshake instead of a startup packet (PostgreSQL 17
/// `sslnegotiation=direct`). Peeks, so nothing is consumed either way.
pub async fn is_direct_tls(stream: &Stream) -> bool {
    let Stream::Tcp(tcp) = stream else {
        return false;
    };
    let mut first = [0u8; 1];
    matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == TLS_HANDSHAKE_RECORD)
}

/// Runs the server side of the handshake on a plain TCP stream and puts the encrypted stream
/// in its place. A failed handshake leaves the stream detached (the socket is closed).
pub async fn accept(
    stream: &mut Stream,
    config: Arc<ServerConfig>,
    direct: bool,
) -> Result<(), TlsError> {
    let tcp = match std::mem::replace(stream, Stream::Detached) {
        Stream::Tcp(t) => t,
        other => {
            *stream = other;
            return Err(TlsError::NotTcp);
        }
    };
    let tls = TlsAcceptor::from(config)
        .accept(tcp)
        .await
        .map_err(TlsError::Handshake)?;
    if direct && tls.get_ref().1.alpn_protocol() != Some(ALPN_POSTGRESQL) {
        return Err(TlsError::NoAlpn);
    }
    *stream = Stream::ServerTls(Box::new(tls));
    Ok(())
}

/// The client side of the handshake to a backend that answered `S`.
pub async fn connect(tcp: TcpStream, tls: &BackendTls, host: &str) -> Result<Stream, TlsError> {
    let config = tls
        .config
        .clone()
        .ok_or_else(|| TlsError::Config("backend TLS is disabled".into()))?;
    let name = backend::server_name(host)?;
    let s = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(TlsError::Handshake)?;
    Ok(Stream::ClientTls(Box::new(s)))
}

/// The common name of the client's certificate, when it presented one (already verified
/// against `ssl_ca_cert` during the handshake). `cert` authentication compares it with the
/// user name.
pub fn peer_cert_cn(stream: &Stream) -> Option<String> {
    let Stream::ServerTls(tls) = stream else {
        return None;
    };
    let der = tls.get_ref().1.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}
