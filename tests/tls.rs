//! TLS with real clients: psql `sslmode=require` and `verify-full` against the certificate the
//! proxy generates, PostgreSQL 17 direct TLS (ALPN `postgresql`), the proxy's own connection
//! to an SSL-enabled primary, reload on SIGHUP, and handshakes that go wrong.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{cluster, Proxy};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound for every wait below; none is a timing assertion.
const BOUND: Duration = Duration::from_secs(30);

/// A proxy with `ssl = on` and no certificate: it generates one into `<its folder>/gen`.
fn tls_proxy(extra: &str) -> Proxy {
    Proxy::start(&format!("ssl = on\nssl_generated_dir = 'gen'\n{extra}"))
}

fn generated_cert(proxy: &Proxy) -> PathBuf {
    proxy.dir.path().join("gen").join("tls.crt")
}

/// psql as postgres on `host`, with `sslmode` and (for verification) `rootcert`.
fn psql_ssl(port: u16, host: &str, sslmode: &str, rootcert: Option<&Path>, sql: &str) -> Output {
    let mut cmd = std::process::Command::new(cluster().bin("psql"));
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", host])
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", "postgres", "-d", "postgres", "-c", sql])
        .env("PGSSLMODE", sslmode)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::null());
    if let Some(root) = rootcert {
        cmd.env("PGSSLROOTCERT", root);
    }
    cmd.output().expect("run psql")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn client_config(root: &Path, alpn: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(root).expect("read root") {
        roots.add(c.expect("pem")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cc = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if alpn {
        cc.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    Arc::new(cc)
}

#[tokio::test]
async fn psql_require_and_verify_full_against_the_generated_certificate() {
    let proxy = tls_proxy("");
    let cert = generated_cert(&proxy);
    assert!(cert.exists(), "no generated certificate\n{}", proxy.log());

    let out = psql_ssl(proxy.port, "127.0.0.1", "require", None, "\\conninfo");
    assert!(out.status.success(), "require: {}", text(&out));
    assert!(text(&out).contains("SSL connection"), "{}", text(&out));

    let sql = "SELECT 'through ' || inet_server_port()";
    let out = psql_ssl(proxy.port, "localhost", "verify-full", Some(&cert), sql);
    assert!(out.status.success(), "verify-full: {}", text(&out));
    let answer = String::from_utf8_lossy(&out.stdout);
    let ports = [cluster().primary_port, cluster().replica_port];
    assert!(
        ports
            .iter()
            .any(|p| answer.trim() == format!("through {p}")),
        "{answer}"
    );

    // The fingerprint in the log is the one of the certificate clients were given.
    let fp = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .expect("openssl");
    let fp = String::from_utf8_lossy(&fp.stdout);
    let fp = fp.trim().rsplit('=').next().unwrap_or_default().to_string();
    assert!(fp.len() == 95, "openssl printed {fp:?}");
    assert!(
        proxy.log().contains(&fp),
        "{fp} not logged\n{}",
        proxy.log()
    );
}

#[tokio::test]
async fn without_ssl_the_proxy_refuses_sslmode_require() {
    let proxy = Proxy::start("");
    let out = psql_ssl(proxy.port, "127.0.0.1", "require", None, "SELECT 1");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not support SSL"),
        "{}",
        text(&out)
    );
}

/// Whether the primary runs with `ssl = on` (the cluster script turns it on).
async fn primary_has_ssl() -> bool {
    let c = common::primary_client().await;
    let row = c.query_one("SHOW ssl", &[]).await.expect("show ssl");
    row.get::<_, String>(0) == "on"
}

/// pg_stat_ssl on the primary, for the backend connection of a session through `proxy`:
/// (backend pid, encrypted).
async fn primary_sees_ssl(proxy: &Proxy) -> (i32, bool) {
    let client = proxy.connect("postgres", "postgres").await;
    // In a transaction: pinned to the primary, as inet_server_port() confirms.
    let tx_sql = "BEGIN; SELECT pg_backend_pid(), inet_server_port()";
    let rows = client.simple_query(tx_sql).await.expect("begin");
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("row");
    let pid: i32 = row.get(0).and_then(|v| v.parse().ok()).expect("pid");
    let port: u16 = row.get(1).and_then(|v| v.parse().ok()).expect("port");
    assert_eq!(port, cluster().primary_port);
    let direct = common::primary_client().await;
    let r = direct
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
        .await
        .expect("pg_stat_ssl");
    client.simple_query("COMMIT").await.expect("commit");
    (pid, r.get(0))
}

/// Waits (bounded) until the primary shows `pid` idle after the proxy's reset (cached).
async fn wait_cached(pid: i32) {
    let direct = common::primary_client().await;
    let sql = "SELECT count(*) FROM pg_stat_activity \
               WHERE pid = $1 AND state = 'idle' AND query = 'DISCARD ALL'";
    let deadline = Instant::now() + BOUND;
    while Instant::now() < deadline {
        let n: i64 = direct
            .query_one(sql, &[&pid])
            .await
            .expect("activity")
            .get(0);
        if n == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend {pid} never went back to the cache");
}

#[tokio::test]
async fn backend_connection_is_encrypted_when_the_primary_accepts_tls() {
    assert!(
        primary_has_ssl().await,
        "the test primary runs with ssl = off: restart it with scripts/pgcluster.sh"
    );
    let proxy = tls_proxy("");
    let (first_pid, encrypted) = primary_sees_ssl(&proxy).await;
    assert!(encrypted, "prefer: not encrypted");
    // The cached TLS connection is found alive and reused by the next session.
    wait_cached(first_pid).await;
    assert_eq!(primary_sees_ssl(&proxy).await, (first_pid, true));
    let required = tls_proxy("backend_ssl = require");
    assert!(
        primary_sees_ssl(&required).await.1,
        "require: not encrypted"
    );
    let plain = tls_proxy("backend_ssl = disable");
    assert!(!primary_sees_ssl(&plain).await.1, "disable: encrypted");
}

/// Sends a startup packet and `SELECT 1` over `s`, returns the first column of the row.
async fn startup_and_select<S>(s: &mut S) -> Result<String, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    let params = [("user", "postgres"), ("database", "postgres")];
    postgres_protocol::message::frontend::startup_message(params, &mut out)
        .map_err(|e| e.to_string())?;
    s.write_all(&out).await.map_err(|e| e.to_string())?;
    read_until_ready(s).await?;
    out.clear();
    postgres_protocol::message::frontend::query("SELECT 'direct'", &mut out)
        .map_err(|e| e.to_string())?;
    s.write_all(&out).await.map_err(|e| e.to_string())?;
    let msgs = read_until_ready(s).await?;
    let row = msgs.iter().find(|(t, _)| *t == b'D').ok_or("no DataRow")?;
    // DataRow: column count (2), length (4), value.
    Ok(String::from_utf8_lossy(&row.1[6..]).into_owned())
}

/// Reads backend messages up to ReadyForQuery; an ErrorResponse is an error.
async fn read_until_ready<S>(s: &mut S) -> Result<Vec<(u8, Vec<u8>)>, String>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let mut msgs = Vec::new();
    loop {
        let tag = s.read_u8().await.map_err(|e| e.to_string())?;
        let len = s.read_i32().await.map_err(|e| e.to_string())?;
        let mut body = vec![0u8; (len - 4).max(0) as usize];
        s.read_exact(&mut body).await.map_err(|e| e.to_string())?;
        match tag {
            b'E' => return Err(String::from_utf8_lossy(&body).into_owned()),
            b'Z' => return Ok(msgs),
            _ => msgs.push((tag, body)),
        }
    }
}

async fn direct_tls(
    proxy: &Proxy,
    alpn: bool,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", proxy.port)).await?;
    let connector = TlsConnector::from(client_config(&generated_cert(proxy), alpn));
    let name = ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await
}

#[tokio::test]
async fn direct_tls_with_alpn_postgresql_is_accepted() {
    let proxy = tls_proxy("");
    let mut s = direct_tls(&proxy, true)
        .await
        .expect("direct TLS handshake");
    let v = tokio::time::timeout(BOUND, startup_and_select(&mut s))
        .await
        .expect("bounded");
    assert_eq!(v.as_deref(), Ok("direct"), "{}", proxy.log());

    // Without ALPN a direct handshake is not a PostgreSQL connection: it is closed.
    let refused = match direct_tls(&proxy, false).await {
        Err(_) => true,
        Ok(mut s) => tokio::time::timeout(BOUND, startup_and_select(&mut s))
            .await
            .expect("bounded")
            .is_err(),
    };
    assert!(refused, "direct TLS without ALPN was served");
}

/// SSLRequest on a fresh connection; returns the stream after the server's one-byte answer.
async fn ssl_request(port: u16) -> (TcpStream, u8) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .expect("write");
    let answer = tcp.read_u8().await.expect("answer");
    (tcp, answer)
}

/// True once the peer has closed `s` (EOF or reset), within the bound.
async fn closed_by_peer(s: &mut TcpStream) -> bool {
    let deadline = Instant::now() + BOUND;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match tokio::time::timeout(BOUND, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test]
async fn failed_and_stalled_handshakes_are_dropped_and_others_served() {
    let proxy = tls_proxy("authentication_timeout = 1");
    // Garbage instead of a ClientHello.
    let (mut garbage, answer) = ssl_request(proxy.port).await;
    assert_eq!(answer, b'S');
    garbage
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_by_peer(&mut garbage).await,
        "garbage handshake kept open"
    );
    // A client that says nothing after `S` is dropped after authentication_timeout.
    let (mut stalled, answer) = ssl_request(proxy.port).await;
    assert_eq!(answer, b'S');
    assert!(
        closed_by_peer(&mut stalled).await,
        "stalled handshake kept open"
    );
    // Plain bytes sent along with the SSLRequest are refused before any answer.
    let mut stuffed = TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .expect("tcp");
    let mut pkt = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    pkt.extend_from_slice(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    stuffed.write_all(&pkt).await.expect("write");
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(BOUND, stuffed.read(&mut first))
        .await
        .expect("bounded");
    assert!(
        !matches!(n, Ok(1) if first[0] == b'S'),
        "stuffed SSLRequest answered S"
    );
    // The proxy still serves TLS clients.
    let cert = generated_cert(&proxy);
    let out = psql_ssl(
        proxy.port,
        "localhost",
        "verify-full",
        Some(&cert),
        "SELECT 1",
    );
    assert!(out.status.success(), "{}\n{}", text(&out), proxy.log());
}

fn write_self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.crt")),
    );
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (key, cert)
}

#[tokio::test]
async fn sighup_reloads_the_certificate_without_dropping_sessions() {
    let files = tempfile::tempdir().expect("tempdir");
    let (key, cert) = write_self_signed(files.path(), "server");
    let old_root = files.path().join("old.crt");
    std::fs::copy(&cert, &old_root).expect("copy");
    let proxy = Proxy::start(&format!(
        "ssl = on\nssl_key = '{}'\nssl_cert = '{}'",
        key.display(),
        cert.display()
    ));
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(Arc::unwrap_or_clone(client_config(
        &old_root, false,
    )));
    let conn = format!(
        "{} host=localhost sslmode=require",
        proxy.conn_str("postgres", "postgres")
    );
    let conn = conn.replace("host=127.0.0.1 ", "");
    let (session, connection) = tokio_postgres::connect(&conn, tls)
        .await
        .expect("TLS session");
    tokio::spawn(connection);

    // New certificate in place, then SIGHUP.
    let (new_key, new_cert) = write_self_signed(files.path(), "next");
    std::fs::rename(&new_key, &key).expect("rename key");
    std::fs::rename(&new_cert, &cert).expect("rename cert");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(proxy.pid() as i32, libc::SIGHUP) }, 0);

    let deadline = Instant::now() + BOUND;
    loop {
        let out = psql_ssl(
            proxy.port,
            "localhost",
            "verify-full",
            Some(&cert),
            "SELECT 1",
        );
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate never served\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = psql_ssl(
        proxy.port,
        "localhost",
        "verify-full",
        Some(&old_root),
        "SELECT 1",
    );
    assert!(!out.status.success(), "old certificate still served");
    let row = session
        .query_one("SELECT 41 + 1", &[])
        .await
        .expect("old session");
    assert_eq!(row.get::<_, i32>(0), 42);
}

/// A CA (PEM) and, per common name, a certificate it signed with its key.
fn ca_and_clients(cns: &[&str]) -> (String, Vec<(String, String)>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().expect("ca key");
    let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
    let issuer = Issuer::new(ca, ca_key);
    let clients = cns
        .iter()
        .map(|cn| {
            let mut p = CertificateParams::default();
            p.distinguished_name.push(DnType::CommonName, *cn);
            let key = KeyPair::generate().expect("key");
            let cert = p.signed_by(&key, &issuer).expect("sign");
            (cert.pem(), key.serialize_pem())
        })
        .collect();
    (ca_pem, clients)
}

/// Connects over TLS (server verified against the generated certificate), presenting
/// `client` (certificate PEM, key PEM) when given; returns the SQLSTATE on failure.
async fn tls_connect(proxy: &Proxy, client: Option<&(String, String)>) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(generated_cert(proxy)).expect("root") {
        roots.add(c.expect("pem")).expect("add");
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
    let cc = match client {
        Some((cert, key)) => {
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")];
            let key =
                rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    let conn = format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=require",
        proxy.port
    );
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(cc);
    let (c, connection) = tokio_postgres::connect(&conn, tls)
        .await
        .map_err(sqlstate)?;
    tokio::spawn(connection);
    c.simple_query("SELECT 1").await.map_err(sqlstate)?;
    Ok(())
}

fn sqlstate(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

#[tokio::test]
async fn hostssl_refuses_plain_clients_and_cert_checks_the_common_name() {
    let (ca, clients) = ca_and_clients(&["postgres", "somebody_else"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca).expect("write ca");
    let proxy = Proxy::builder()
        .conf(&format!(
            "ssl = on\nssl_generated_dir = 'gen'\nssl_ca_cert = '{}'\nenable_pool_hba = on",
            ca_path.display()
        ))
        .hba("hostssl all all 127.0.0.1/32 cert\n")
        .start();

    let plain = proxy.try_connect("postgres", "postgres", None).await;
    let Err(e) = plain else {
        panic!("plain connection accepted");
    };
    let err = sqlstate(e);
    assert!(err.starts_with("28000 no pool_hba.conf entry"), "{err}");
    assert!(err.contains("no encryption"), "{err}");

    tls_connect(&proxy, Some(&clients[0]))
        .await
        .expect("CN = user");
    let err = tls_connect(&proxy, Some(&clients[1]))
        .await
        .expect_err("CN != user");
    assert!(
        err.starts_with("28000 certificate authentication failed"),
        "{err}"
    );
    let err = tls_connect(&proxy, None).await.expect_err("no certificate");
    assert!(
        err.starts_with("28000 certificate authentication failed"),
        "{err}"
    );
}
