//! In-process handshakes: client certificates are verified against `ssl_ca_cert`, and the
//! verified certificate's common name is what `cert` authentication will compare.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::acceptor::{key_source, load_certs, server_config};
use super::{accept, peer_cert_cn, ring_provider, TlsError};
use crate::config::Config;
use crate::stream::Stream;

type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A CA, and a client certificate with CN `cn` signed by it.
fn ca_and_client(cn: &str) -> (String, ClientCert) {
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name.push(DnType::CommonName, cn);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    (ca_cert.pem(), (vec![leaf_cert.der().clone()], key))
}

/// Runs one handshake against a server with `cfg`; returns what the server saw.
async fn handshake(cfg: &Config, client: Option<ClientCert>) -> Result<Option<String>, TlsError> {
    let src = key_source(cfg).expect("key source");
    // The first call generates the certificate into `gen/`, later calls load it from there.
    let mut roots = RootCertStore::empty();
    let served = load_certs(&cfg.config_dir.join("gen").join("tls.crt")).expect("served cert");
    roots.add(served[0].clone()).expect("root");
    let sc = Arc::new(server_config(cfg, &src).expect("server config"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut stream = Stream::tcp(tcp);
        accept(&mut stream, sc, false).await?;
        assert!(stream.is_tls());
        Ok::<_, TlsError>(peer_cert_cn(&stream))
    });
    let builder = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let cc = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let client = tokio_rustls::TlsConnector::from(Arc::new(cc))
        .connect(name, tcp)
        .await;
    if let Ok(mut c) = client {
        let _ = c.write_all(b"x").await;
        let result = server.await.expect("server task");
        drop(c);
        return result;
    }
    server.await.expect("server task")
}

fn config_with_ca(dir: &std::path::Path, ca_pem: &str) -> Config {
    std::fs::write(dir.join("ca.crt"), ca_pem).expect("write ca");
    Config {
        ssl: true,
        config_dir: dir.to_path_buf(),
        ssl_generated_dir: "gen".into(),
        ssl_ca_cert: "ca.crt".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn client_certificate_cn_is_seen_after_verification() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, alice) = ca_and_client("alice");
    let cfg = config_with_ca(dir.path(), &ca);
    assert_eq!(
        handshake(&cfg, Some(alice)).await.expect("ok"),
        Some("alice".into())
    );
    // No certificate: the connection is accepted (only `cert` in pool_hba demands one).
    assert_eq!(handshake(&cfg, None).await.expect("ok"), None);
    // A certificate from another CA fails the handshake.
    let (_, mallory) = ca_and_client("alice");
    assert!(handshake(&cfg, Some(mallory)).await.is_err());
}

#[tokio::test]
async fn without_ssl_ca_cert_no_client_certificate_is_asked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, alice) = ca_and_client("alice");
    let mut cfg = config_with_ca(dir.path(), "");
    cfg.ssl_ca_cert = String::new();
    assert_eq!(handshake(&cfg, Some(alice)).await.expect("ok"), None);
}
