//! Client authentication against the real primary + replica: every frontend method the
//! proxy runs itself (pool_hba.conf) with every backend method it can satisfy from what
//! pool_passwd holds, the hba-off mirror with a real SCRAM exchange, the failures with the
//! SQLSTATE on the wire, credentials from the environment, the authentication timeout, and
//! no secret in the log.
//!
//! The local cluster's pg_hba picks the backend method by group: `md5_users`, `scram_users`,
//! `password_users`, trust for everyone else. Each test creates its own roles.

mod common;

use std::time::Duration;

use common::{cluster, primary_client, unique_name, wait_replica_caught_up, Proxy};
use pgpool::auth::{encrypt_password, pg_md5_password};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "test-pool-key";

/// What the backend demands of a role.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Trust,
    Md5,
    Scram,
    Password,
}

/// How pool_passwd stores the role's password.
#[derive(Clone, Copy, Debug)]
enum Stored {
    Aes,
    Text,
    Bare,
    Md5,
    Absent,
}

/// Creates a login role the backend authenticates with `backend`. md5 roles get an md5
/// `pg_authid` entry; otherwise PostgreSQL would silently run SCRAM for them.
async fn create_role(backend: Backend, password: &str) -> String {
    let name = unique_name("auth");
    let (encryption, group) = match backend {
        Backend::Trust => ("scram-sha-256", ""),
        Backend::Md5 => ("md5", " IN ROLE md5_users"),
        Backend::Scram => ("scram-sha-256", " IN ROLE scram_users"),
        Backend::Password => ("scram-sha-256", " IN ROLE password_users"),
    };
    let sql = format!(
        "SET password_encryption = '{encryption}'; \
         CREATE ROLE {name} LOGIN PASSWORD '{password}'{group}"
    );
    primary_client().await.batch_execute(&sql).await.unwrap();
    name
}

/// The pool_passwd line for `user`, or nothing.
fn entry(user: &str, password: &str, stored: Stored) -> String {
    match stored {
        Stored::Aes => format!("{user}:{}\n", encrypt_password(password, KEY)),
        Stored::Text => format!("{user}:TEXT{password}\n"),
        Stored::Bare => format!("{user}:{password}\n"),
        Stored::Md5 => format!("{user}:{}\n", pg_md5_password(user, password)),
        Stored::Absent => String::new(),
    }
}

/// A proxy with pool_hba on (`hba` is the whole file), reads sent to the replica only, so a
/// SELECT proves the replica login too.
fn hba_proxy(hba: &str, pool_passwd: &str) -> Proxy {
    Proxy::builder()
        .conf("enable_pool_hba = on\nbackend_weight0 = 0")
        .hba(hba)
        .pool_passwd(pool_passwd)
        .key(&format!("{KEY}\n"))
        .start()
}

fn startup(user: &str, db: &str) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

/// The first authentication request the proxy sends on the wire: 0 AuthenticationOk
/// (trust), 3 clear text, 5 md5, 10 SASL; `None` when it answers with an error.
async fn first_auth_code(port: u16, user: &str) -> Option<i32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&startup(user, "postgres")).await.unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut head))
        .await
        .expect("the proxy answered the startup packet")
        .unwrap();
    (head[0] == b'R').then(|| i32::from_be_bytes([head[5], head[6], head[7], head[8]]))
}

/// Logs in and proves both backends accepted the proxy's credential: the login itself is
/// the primary's, the SELECT runs on the replica (weight 0 on the primary).
async fn assert_login(proxy: &Proxy, user: &str, password: &str) {
    let c = proxy
        .try_connect(user, "postgres", Some(password))
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}\n{}", proxy.log()));
    let row = c
        .query_one("SELECT current_user::text, inet_server_port()", &[])
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}\n{}", proxy.log()));
    assert_eq!(row.get::<_, String>(0), user);
    assert_eq!(row.get::<_, i32>(1), i32::from(cluster().replica_port));
    let row = c
        .query_one("/*NO LOAD BALANCE*/ SELECT inet_server_port()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), i32::from(cluster().primary_port));
}

/// The ErrorResponse of a failed login: severity, SQLSTATE, message.
async fn login_error(proxy: &Proxy, user: &str, password: &str) -> (String, String, String) {
    let err = match proxy.try_connect(user, "postgres", Some(password)).await {
        Ok(_) => panic!("{user} logged in with password {password:?}"),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("no ErrorResponse for {user}: {err}"));
    (
        db.severity().to_string(),
        db.code().code().to_string(),
        db.message().to_string(),
    )
}

fn wrong_password(user: &str) -> (String, String, String) {
    (
        "FATAL".into(),
        "28P01".into(),
        format!("password authentication failed for user \"{user}\""),
    )
}

/// One frontend method against the backend methods and stored formats that can work.
async fn frontend_method_works(method: &str, wire_code: i32, cases: &[(Backend, Stored)]) {
    let mut roles = Vec::new();
    let mut passwd = String::new();
    for (i, &(backend, stored)) in cases.iter().enumerate() {
        let pw = format!("pw-{i}-{method}");
        let role = create_role(backend, &pw).await;
        passwd.push_str(&entry(&role, &pw, stored));
        roles.push((role, pw, backend, stored));
    }
    wait_replica_caught_up().await;
    let proxy = hba_proxy(&format!("host all all 127.0.0.1/32 {method}\n"), &passwd);
    for (role, pw, backend, stored) in &roles {
        let code = first_auth_code(proxy.port, role).await;
        assert_eq!(code, Some(wire_code), "{method}: {backend:?}/{stored:?}");
        assert_login(&proxy, role, pw).await;
        if method != "trust" {
            let got = login_error(&proxy, role, "not-the-password").await;
            assert_eq!(got, wrong_password(role), "{backend:?}/{stored:?}");
        }
    }
}

#[tokio::test]
async fn hba_trust_logs_in_to_each_backend_method_with_the_stored_password() {
    use {Backend as B, Stored as S};
    let cases = [
        (B::Trust, S::Absent),
        (B::Md5, S::Md5),
        (B::Md5, S::Aes),
        (B::Scram, S::Aes),
        (B::Scram, S::Text),
        (B::Password, S::Bare),
    ];
    frontend_method_works("trust", 0, &cases).await;
}

#[tokio::test]
async fn hba_md5_client_works_with_md5_and_plain_entries() {
    use {Backend as B, Stored as S};
    let cases = [
        (B::Md5, S::Md5),
        (B::Trust, S::Md5),
        (B::Md5, S::Aes),
        (B::Scram, S::Aes),
        (B::Scram, S::Text),
        (B::Password, S::Bare),
    ];
    frontend_method_works("md5", 5, &cases).await;
}

#[tokio::test]
async fn hba_scram_client_works_with_plain_entries() {
    use {Backend as B, Stored as S};
    let cases = [
        (B::Scram, S::Aes),
        (B::Scram, S::Text),
        (B::Md5, S::Aes),
        (B::Password, S::Aes),
        (B::Trust, S::Bare),
    ];
    frontend_method_works("scram-sha-256", 10, &cases).await;
}

#[tokio::test]
async fn hba_password_client_works_with_and_without_entries() {
    use {Backend as B, Stored as S};
    let cases = [
        (B::Scram, S::Absent),
        (B::Md5, S::Md5),
        (B::Scram, S::Aes),
        (B::Password, S::Text),
    ];
    frontend_method_works("password", 3, &cases).await;
}

#[tokio::test]
async fn unknown_user_fails_like_a_wrong_password() {
    let proxy_md5 = hba_proxy("host all all 127.0.0.1/32 md5\n", "");
    let proxy_scram = hba_proxy("host all all 127.0.0.1/32 scram-sha-256\n", "");
    for proxy in [&proxy_md5, &proxy_scram] {
        let user = unique_name("nobody");
        assert_eq!(login_error(proxy, &user, "x").await, wrong_password(&user));
    }
    // The client still got a challenge, as for a known user.
    assert_eq!(first_auth_code(proxy_md5.port, "nobody").await, Some(5));
    assert_eq!(first_auth_code(proxy_scram.port, "nobody").await, Some(10));
}

#[tokio::test]
async fn hba_reject_and_no_matching_line_are_28000() {
    let blocked = unique_name("blocked");
    let hba = format!(
        "host all {blocked} 127.0.0.1/32 reject\n\
         host sameuser all 127.0.0.1/32 trust\n\
         local all all trust\n"
    );
    let proxy = hba_proxy(&hba, "");
    let got = login_error(&proxy, &blocked, "x").await;
    let want = (
        "FATAL".to_string(),
        "28000".to_string(),
        format!(
            "pool_hba.conf rejects connection for host \"127.0.0.1\", user \"{blocked}\", \
             database \"postgres\", no encryption"
        ),
    );
    assert_eq!(got, want);
    let other = unique_name("other");
    let got = login_error(&proxy, &other, "x").await;
    let want = (
        "FATAL".to_string(),
        "28000".to_string(),
        format!(
            "no pool_hba.conf entry for host \"127.0.0.1\", user \"{other}\", \
             database \"postgres\", no encryption"
        ),
    );
    assert_eq!(got, want);
    // `postgres` on database `postgres` matches `sameuser`: the file is really in use.
    assert_eq!(first_auth_code(proxy.port, "postgres").await, Some(0));
}

#[tokio::test]
async fn hba_tells_the_unix_socket_from_tcp_and_ssl_from_plain() {
    let pw = "via-the-socket";
    let role = create_role(Backend::Scram, pw).await;
    wait_replica_caught_up().await;
    let hba = "local all all scram-sha-256\n\
               hostssl all all 127.0.0.1/32 trust\n\
               hostnossl all all 127.0.0.1/32 md5\n";
    let proxy = hba_proxy(hba, &entry(&role, pw, Stored::Aes));
    // TCP without TLS skips the hostssl line and lands on hostnossl's md5.
    assert_eq!(first_auth_code(proxy.port, &role).await, Some(5));
    assert_login(&proxy, &role, pw).await;
    // The Unix socket is `local`: SCRAM there.
    let socket = format!(
        "host={} port={} user={role} dbname=postgres password={pw}",
        proxy.dir.path().display(),
        proxy.port
    );
    let c = common::connect_str(&socket)
        .await
        .unwrap_or_else(|e| panic!("unix socket login: {e}\n{}", proxy.log()));
    let row = c
        .query_one("/*NO LOAD BALANCE*/ SELECT inet_server_port()", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), i32::from(cluster().primary_port));
    let wrong = socket.replace(pw, "wrong");
    let err = common::connect_str(&wrong).await.err().unwrap();
    assert_eq!(err.as_db_error().map(|e| e.code().code()), Some("28P01"));
}

/// The classic Kubernetes mistake: an md5 entry in front of a SCRAM backend. The message
/// says what is wrong and what to store instead.
async fn assert_md5_entry_vs_scram_backend_explained(proxy: &Proxy, role: &str, pw: &str) {
    let (severity, code, message) = login_error(proxy, role, pw).await;
    assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "28000"));
    for words in ["scram-sha-256", "md5 hash", "AES", "TEXT"] {
        assert!(message.contains(words), "{message:?} lacks {words:?}");
    }
}

#[tokio::test]
async fn md5_entry_with_scram_backend_says_what_to_store() {
    let pw = "k8s-classic";
    let role = create_role(Backend::Scram, pw).await;
    let passwd = entry(&role, pw, Stored::Md5);
    let with_hba = hba_proxy("host all all 127.0.0.1/32 md5\n", &passwd);
    assert_md5_entry_vs_scram_backend_explained(&with_hba, &role, pw).await;
    let mirror = Proxy::builder().pool_passwd(&passwd).start();
    assert_md5_entry_vs_scram_backend_explained(&mirror, &role, pw).await;
}

#[tokio::test]
async fn hba_off_mirrors_a_scram_backend_with_a_real_scram_exchange() {
    let pw = "mirror-scram";
    let role = create_role(Backend::Scram, pw).await;
    wait_replica_caught_up().await;
    let proxy = Proxy::builder()
        .conf("backend_weight0 = 0")
        .pool_passwd(&entry(&role, pw, Stored::Aes))
        .key(KEY)
        .start();
    assert_eq!(first_auth_code(proxy.port, &role).await, Some(10));
    assert_login(&proxy, &role, pw).await;
    // Now a cached connection fits: the client must still prove the password with SCRAM.
    assert_eq!(first_auth_code(proxy.port, &role).await, Some(10));
    assert_eq!(
        login_error(&proxy, &role, "wrong").await,
        wrong_password(&role)
    );
    assert_login(&proxy, &role, pw).await;
}

#[tokio::test]
async fn env_credentials_alone_serve_a_scram_backend() {
    let pw = "from-the-env-Secret";
    let role = create_role(Backend::Scram, pw).await;
    wait_replica_caught_up().await;
    let proxy = Proxy::builder()
        .pool_passwd("someone:TEXTelse\n")
        .env("POSTGRES_USERNAME", &role)
        .env("POSTGRES_PASSWORD", pw)
        .env("PGPOOL_PCP_USER", "pcpadmin")
        .env("PGPOOL_PCP_PASSWORD", "pcp-Secret")
        .env("PGPOOL_LOG", "trace")
        .start();
    let dir = proxy.dir.path();
    // Merged into the existing file, AES with a key generated next to pgpool.conf.
    let stored = std::fs::read_to_string(dir.join("pool_passwd")).unwrap();
    let aes = stored
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{role}:")))
        .unwrap_or_else(|| panic!("no entry for {role}:\n{stored}"));
    assert!(aes.starts_with("AES"), "{stored}");
    assert!(stored.starts_with("someone:TEXTelse\n"), "{stored}");
    let pcp = std::fs::read_to_string(dir.join("pcp.conf")).unwrap();
    assert_eq!(
        pcp,
        format!("pcpadmin:{}\n", pgpool::auth::md5_hex(b"pcp-Secret"))
    );
    for file in ["pool_passwd", ".pgpoolkey", "pcp.conf"] {
        assert_private(&dir.join(file));
    }
    let ok = common::psql_cmd(proxy.port, &role, "postgres")
        .env("PGPASSWORD", pw)
        .args(["-c", "SELECT current_user"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(out.trim(), role);
    let bad = common::psql_cmd(proxy.port, &role, "postgres")
        .env("PGPASSWORD", "guess")
        .args(["-c", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&format!(
            "password authentication failed for user \"{role}\""
        )),
        "{err}"
    );
    assert_no_secret(&proxy, &[pw, "guess", aes, "pcp-Secret"]);
}

#[cfg(unix)]
fn assert_private(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", path.display());
}

/// No line of the proxy's log holds any of `secrets` (or the AES key).
fn assert_no_secret(proxy: &Proxy, secrets: &[&str]) {
    let log = proxy.log();
    assert!(
        log.contains("session"),
        "the log is empty: nothing was checked"
    );
    for s in secrets.iter().chain(&[KEY]) {
        assert!(!log.contains(s), "the log shows a secret {s:?}:\n{log}");
    }
    let key_file = proxy.dir.path().join(".pgpoolkey");
    if let Ok(key) = std::fs::read_to_string(key_file) {
        assert!(!log.contains(key.trim()), "the log shows the AES key");
    }
}

#[tokio::test]
async fn no_password_or_key_in_a_trace_log() {
    let (md5_pw, scram_pw, text_pw) = ("md5-Secret-1", "scram-Secret-2", "text-Secret-3");
    let md5_role = create_role(Backend::Md5, md5_pw).await;
    let scram_role = create_role(Backend::Scram, scram_pw).await;
    let text_role = create_role(Backend::Password, text_pw).await;
    wait_replica_caught_up().await;
    let aes = encrypt_password(scram_pw, KEY);
    let md5 = pg_md5_password(&md5_role, md5_pw);
    let passwd = format!("{md5_role}:{md5}\n{scram_role}:{aes}\n{text_role}:TEXT{text_pw}\n");
    let hba = format!(
        "host all {md5_role} 127.0.0.1/32 md5\n\
         host all {scram_role} 127.0.0.1/32 scram-sha-256\n\
         host all all 127.0.0.1/32 password\n"
    );
    let proxy = Proxy::builder()
        .conf("enable_pool_hba = on\nbackend_weight0 = 0")
        .hba(&hba)
        .pool_passwd(&passwd)
        .key(KEY)
        .env("PGPOOL_LOG", "trace")
        .start();
    for (role, pw) in [
        (&md5_role, md5_pw),
        (&scram_role, scram_pw),
        (&text_role, text_pw),
    ] {
        assert_login(&proxy, role, pw).await;
        let _ = login_error(&proxy, role, "wrong-Secret-4").await;
    }
    assert_no_secret(
        &proxy,
        &[md5_pw, scram_pw, text_pw, "wrong-Secret-4", &aes, &md5[3..]],
    );
}

#[tokio::test]
async fn a_client_stalling_in_authentication_is_closed() {
    let proxy = Proxy::builder()
        .conf("enable_pool_hba = on\nauthentication_timeout = 1")
        .hba("host all all 127.0.0.1/32 md5\n")
        .start();
    let mut s = TcpStream::connect(("127.0.0.1", proxy.port)).await.unwrap();
    s.write_all(&startup("postgres", "postgres")).await.unwrap();
    // Read the md5 challenge, never answer it: the proxy must hang up. The bound only keeps
    // a broken proxy from hanging the test.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the proxy kept a stalled client for 30 s");
    assert_eq!(rest.first(), Some(&b'R'));
}
