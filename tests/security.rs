//! Attacks from the security review, each through the real binary against the real primary
//! (which trusts the proxy's address, as the local cluster does): a startup packet that names
//! a second user, a cached connection reused on a credential nobody proved, trailing bytes in
//! a password message, `PGPOOL_ENABLE_POOL_PASSWD=false`, the Unix socket's mode, a deleted
//! pool_hba.conf on reload, a huge declared message. And protocol 3.1/3.2 startup, answered
//! with NegotiateProtocolVersion as PostgreSQL does. (Password guessing at full speed is in
//! `auth_delay.rs`.)

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::wire::{msg, query, startup, startup_version, Msg, Raw};
use common::{primary_client, Proxy};

/// Sanity bound for anything the proxy should do promptly (not a timing assertion).
const BOUND: Duration = Duration::from_secs(60);

/// The first DataRow's first column as text.
fn first_value(msgs: &[Msg]) -> Option<String> {
    let row = msgs.iter().find(|m| m.tag == b'D')?;
    let len = i32::from_be_bytes(row.body[2..6].try_into().ok()?);
    let v = row.body.get(6..6 + len as usize)?;
    Some(String::from_utf8_lossy(v).into_owned())
}

async fn current_user(proxy: &Proxy, user: &str) -> String {
    let c = proxy.connect(user, "postgres").await;
    c.query_one("select current_user::text", &[])
        .await
        .expect("current_user")
        .get(0)
}

fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with plain integers; the pid is our own child.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Sends SIGHUP and waits for the proxy to log the outcome of that reload.
fn reload(proxy: &Proxy) {
    let before = proxy.log().matches("SIGHUP: ").count();
    send_signal(proxy.pid(), libc::SIGHUP);
    let deadline = Instant::now() + BOUND;
    while proxy.log().matches("SIGHUP: ").count() == before {
        assert!(
            Instant::now() < deadline,
            "no reload logged:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------ 1. identity ---

#[tokio::test]
async fn a_second_user_in_the_startup_packet_is_refused_and_poisons_no_cache() {
    let proxy = Proxy::start("");
    let trusty = common::trusted_role("sec_trusty").await;
    let mut c = Raw::connect(proxy.port).await;
    c.send(&startup(&[
        ("user", &trusty),
        ("database", "postgres"),
        ("user", "postgres"),
    ]))
    .await;
    c.send(&query("select current_user")).await;
    let got = c.until_ready_or_closed().await;
    assert!(
        got.iter().all(|m| m.tag != b'R' && m.tag != b'D'),
        "a startup packet with two users was served: {got:?} (current_user {:?})",
        first_value(&got)
    );
    assert_eq!(got.last().and_then(Msg::sqlstate).as_deref(), Some("08P01"));
    // Parameter names are case-insensitive to PostgreSQL: `DateStyle` twice is a duplicate.
    let mut c = Raw::connect(proxy.port).await;
    c.send(&startup(&[
        ("user", &trusty),
        ("DateStyle", "ISO"),
        ("datestyle", "German"),
    ]))
    .await;
    let got = c.until_ready_or_closed().await;
    assert_eq!(got.last().and_then(Msg::sqlstate).as_deref(), Some("08P01"));
    // An innocent login later is who it says it is.
    assert_eq!(current_user(&proxy, &trusty).await, trusty);
}

#[tokio::test]
async fn startup_parameters_that_change_the_session_user_are_refused() {
    let proxy = Proxy::start("");
    let trusty = common::trusted_role("sec_trusty").await;
    let attempts: &[&[(&str, &str)]] = &[
        &[("options", "-c session_authorization=postgres")],
        &[("options", "-csession_authorization=postgres")],
        &[("options", "--session-authorization=postgres")],
        &[("options", "-c role=pg_read_server_files")],
        &[("role", "pg_read_server_files")],
        &[("session_authorization", "postgres")],
        &[("Session_Authorization", "postgres")],
        &[("replication", "database")],
    ];
    for extra in attempts {
        let mut params = vec![("user", trusty.as_str()), ("database", "postgres")];
        params.extend_from_slice(extra);
        let mut c = Raw::connect(proxy.port).await;
        c.send(&startup(&params)).await;
        c.send(&query("select current_user")).await;
        let got = c.until_ready_or_closed().await;
        let code = got.last().and_then(Msg::sqlstate);
        assert!(
            code.is_some() && got.iter().all(|m| m.tag != b'D'),
            "{extra:?} was served: {got:?}"
        );
    }
    // Other options still pass, and reach the backend.
    let mut c = Raw::connect(proxy.port).await;
    c.send(&startup(&[
        ("user", &trusty),
        ("database", "postgres"),
        ("options", "-c search_path=sec_test"),
    ]))
    .await;
    c.send(&query("show search_path")).await;
    let mut got = c.until_ready_or_closed().await;
    got.extend(c.until_ready_or_closed().await);
    assert_eq!(first_value(&got).as_deref(), Some("sec_test"), "{got:?}");
}

// ------------------------------------------------------------------ 2. reuse ---

#[tokio::test]
async fn a_credential_nobody_proved_does_not_reuse_a_cached_connection() {
    // Mirror mode: the backend asks for SCRAM and pool_passwd holds the password.
    let role = common::scram_role("sec_scram").await;
    let proxy = Proxy::builder()
        .conf("load_balance_mode = off")
        .pool_passwd(&format!("{role}:TEXTright\n"))
        .start();
    let first = proxy
        .try_connect(&role, "postgres", Some("right"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    // Its backend connection is in use across the reload, so the reload cannot drop it.
    first.simple_query("select 1").await.unwrap();
    // The operator switches the entry to an md5 hash, which cannot check SCRAM: the proxy
    // has nothing to verify a client against any more.
    let md5 = pgpool::auth::pg_md5_password(&role, "right");
    fs::write(
        proxy.dir.path().join("pool_passwd"),
        format!("{role}:{md5}\n"),
    )
    .unwrap();
    reload(&proxy);
    drop(first);
    wait_cached(&proxy, 1).await;
    match proxy.try_connect(&role, "postgres", Some("guess")).await {
        Ok(c) => {
            let r = c.simple_query("select 1").await;
            panic!(
                "logged in without proving anything ({r:?})\n{}",
                proxy.log()
            );
        }
        Err(e) => assert!(e.code().is_some(), "{e}"),
    }
}

#[tokio::test]
async fn a_reload_drops_the_cached_connections_its_changes_concern() {
    let changed = common::scram_role("sec_scram").await;
    let kept = common::scram_role("sec_scram").await;
    let passwd = |pw: &str| format!("{changed}:TEXT{pw}\n{kept}:TEXTright\n");
    let proxy = Proxy::builder()
        .conf("enable_pool_hba = on\nload_balance_mode = off")
        .hba("host all all 127.0.0.1/32 scram-sha-256\n")
        .pool_passwd(&passwd("right"))
        .start();
    let pid_of = |user: String, pw: &'static str| {
        let proxy = &proxy;
        async move {
            let c = proxy
                .try_connect(&user, "postgres", Some(pw))
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
            let pid: i32 = c
                .query_one("select pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            pid
        }
    };
    let before_changed = pid_of(changed.clone(), "right").await;
    wait_cached(&proxy, 1).await;
    let before_kept = pid_of(kept.clone(), "right").await;
    wait_cached(&proxy, 2).await;
    // Cached connections are reused while nothing changes.
    assert_eq!(pid_of(kept.clone(), "right").await, before_kept);
    wait_cached(&proxy, 2).await;
    primary_client()
        .await
        .batch_execute(&format!("alter role {changed} password 'new'"))
        .await
        .unwrap();
    fs::write(proxy.dir.path().join("pool_passwd"), passwd("new")).unwrap();
    reload(&proxy);
    assert_ne!(pid_of(changed.clone(), "new").await, before_changed);
    wait_cached(&proxy, 2).await;
    assert_eq!(pid_of(kept.clone(), "right").await, before_kept);
    wait_cached(&proxy, 2).await;
    // A comment in pool_hba.conf changes no rule; a new rule may concern anyone.
    let hba = proxy.dir.path().join("pool_hba.conf");
    fs::write(
        &hba,
        "# reviewed\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    reload(&proxy);
    assert_eq!(pid_of(kept.clone(), "right").await, before_kept);
    wait_cached(&proxy, 2).await;
    fs::write(
        &hba,
        "host all all 10.0.0.0/8 reject\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    reload(&proxy);
    assert_ne!(pid_of(kept.clone(), "right").await, before_kept);
}

/// Waits until the primary's connection cache holds `n` connections (sessions give theirs
/// back after the client has gone).
async fn wait_cached(proxy: &Proxy, n: usize) {
    let series = "pgpool_rs_cached_connections{node=\"0\"}";
    let deadline = Instant::now() + BOUND;
    while common::metric(proxy.metrics_port, series) != Some(n as f64) {
        assert!(
            Instant::now() < deadline,
            "cache never held {n}:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------ 3. strict auth ---

#[tokio::test]
async fn a_password_message_with_trailing_bytes_is_refused() {
    let role = common::trusted_role("sec_trusty").await;
    let proxy = Proxy::builder()
        .conf("enable_pool_hba = on")
        .hba("host all all 127.0.0.1/32 password\n")
        .pool_passwd(&format!("{role}:TEXTright\n"))
        .start();
    let mut c = Raw::connect(proxy.port).await;
    c.send(&startup(&[("user", &role), ("database", "postgres")]))
        .await;
    let ask = c.next().await.expect("a password request");
    assert_eq!((ask.tag, ask.body.as_slice()), (b'R', &[0, 0, 0, 3][..]));
    c.send(&msg(b'p', b"right\0junk")).await;
    let got = c.until_ready_or_closed().await;
    assert!(got.iter().all(|m| m.tag != b'R'), "accepted: {got:?}");
    assert_eq!(got.last().and_then(Msg::sqlstate).as_deref(), Some("08P01"));
}

// ------------------------------------------------------------------ 4. no pool_passwd ---

#[tokio::test]
async fn pool_passwd_disabled_in_the_environment_forces_tls_and_passwords() {
    let proxy = Proxy::builder()
        .env("PGPOOL_ENABLE_POOL_PASSWD", "false")
        .start();
    let role = common::trusted_role("sec_trusty").await;
    // Plain text, no password: the image's rules are `hostssl … password` only.
    match proxy.try_connect(&role, "postgres", None).await {
        Ok(_) => panic!(
            "a plain-text client got in without a password\n{}",
            proxy.log()
        ),
        Err(e) => assert_eq!(e.code().map(|c| c.code()), Some("28000"), "{e}"),
    }
    // A pool_hba.conf with no hostssl line would let passwords cross in clear text: the
    // image's entrypoint refuses to start, so does the proxy.
    let refused = Proxy::builder()
        .env("PGPOOL_ENABLE_POOL_PASSWD", "false")
        .hba("host all all 127.0.0.1/32 password\n")
        .try_start();
    match refused {
        Ok(p) => panic!("started without hostssl lines\n{}", p.log()),
        Err(e) => assert!(e.contains("hostssl"), "{e}"),
    }
}

// ------------------------------------------------------------------ 5. socket mode ---

#[test]
fn the_unix_socket_gets_unix_socket_permissions() {
    use std::os::unix::fs::PermissionsExt;
    for (setting, want) in [("0700", 0o700), ("0777", 0o777)] {
        let proxy = Proxy::start(&format!("unix_socket_permissions = {setting}"));
        let path = proxy.dir.path().join(format!(".s.PGSQL.{}", proxy.port));
        let mode = fs::metadata(&path)
            .expect("socket file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, want, "{setting}: {mode:o}");
    }
}

// ------------------------------------------------------------------ 6. hba reload ---

#[tokio::test]
async fn a_deleted_pool_hba_conf_on_reload_keeps_the_old_rules_and_says_so() {
    let proxy = Proxy::builder()
        .conf("enable_pool_hba = on")
        .hba("host all all 127.0.0.1/32 trust\n")
        .start();
    let role = common::trusted_role("sec_trusty").await;
    assert_eq!(current_user(&proxy, &role).await, role);
    fs::remove_file(proxy.dir.path().join("pool_hba.conf")).unwrap();
    reload(&proxy);
    let log = proxy.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("SIGHUP: "))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("failed") && line.contains("pool_hba.conf"),
        "{line}"
    );
    assert_eq!(current_user(&proxy, &role).await, role);
}

// ------------------------------------------------------------------ 7. memory ---

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[tokio::test]
async fn a_declared_huge_message_reserves_nothing_before_it_arrives() {
    let proxy = Proxy::start("");
    let before = proc_status_kb(proxy.pid(), "VmSize");
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut c = Raw::connect(proxy.port).await;
        c.send(&startup(&[("user", "postgres"), ("database", "postgres")]))
            .await;
        c.until_ready_or_closed().await;
        // A Query that says it is 1000 MB long (under max_message_size), then 1 KB of it.
        let mut m = vec![b'Q'];
        m.extend_from_slice(&(1_000_000_000i32).to_be_bytes());
        m.extend_from_slice(&[b'x'; 1024]);
        c.send(&m).await;
        clients.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown_mb = proc_status_kb(proxy.pid(), "VmSize").saturating_sub(before) / 1024;
    assert!(
        grown_mb < 512,
        "four clients that sent 1 KB each grew the proxy by {grown_mb} MB"
    );
    drop(clients);
}

#[tokio::test]
async fn a_message_over_max_message_size_is_refused_as_it_is_announced() {
    let proxy = Proxy::start("max_message_size = 1MB");
    let mut c = Raw::connect(proxy.port).await;
    c.send(&startup(&[("user", "postgres"), ("database", "postgres")]))
        .await;
    c.until_ready_or_closed().await;
    let mut m = vec![b'Q'];
    m.extend_from_slice(&(2_000_000i32).to_be_bytes());
    c.send(&m).await;
    let got = c.until_ready_or_closed().await;
    assert_eq!(got.last().and_then(Msg::sqlstate).as_deref(), Some("08P01"));
}

// ------------------------------------------------------------------ protocol 3.x ---

/// NegotiateProtocolVersion: (newest minor supported, unrecognized options).
fn negotiate(m: &Msg) -> (i32, Vec<String>) {
    assert_eq!(m.tag, b'v', "{m:?}");
    let minor = i32::from_be_bytes(m.body[0..4].try_into().unwrap());
    let n = i32::from_be_bytes(m.body[4..8].try_into().unwrap());
    let names: Vec<String> = m.body[8..]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    assert_eq!(names.len(), n as usize, "{m:?}");
    (minor, names)
}

#[tokio::test]
async fn newer_protocol_minors_are_negotiated_down_to_3_0() {
    let proxy = Proxy::start("");
    type Case = (
        u16,
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (2, &[], &[]),
        (
            1,
            &[("_pq_.foo", "x"), ("_pq_.bar", "y")],
            &["_pq_.foo", "_pq_.bar"],
        ),
        (0, &[("_pq_.foo", "x")], &["_pq_.foo"]),
    ];
    for (minor, extra, unknown) in cases {
        let mut params = vec![("user", "postgres"), ("database", "postgres")];
        params.extend_from_slice(extra);
        let mut c = Raw::connect(proxy.port).await;
        c.send(&startup_version(3, *minor, &params)).await;
        let got = c.until_ready_or_closed().await;
        assert_eq!(
            negotiate(&got[0]),
            (0, unknown.iter().map(|s| s.to_string()).collect()),
            "3.{minor}"
        );
        assert_eq!(got.last().map(|m| m.tag), Some(b'Z'), "3.{minor}: {got:?}");
        c.send(&query("select 1")).await;
        let rows = c.until_ready_or_closed().await;
        assert_eq!(first_value(&rows).as_deref(), Some("1"));
    }
    // Plain 3.0 gets no NegotiateProtocolVersion; another major is still refused.
    let mut c = Raw::connect(proxy.port).await;
    c.send(&startup(&[("user", "postgres")])).await;
    let got = c.until_ready_or_closed().await;
    assert_eq!(got[0].tag, b'R', "{got:?}");
    let mut c = Raw::connect(proxy.port).await;
    c.send(&startup_version(4, 0, &[("user", "postgres")]))
        .await;
    let got = c.until_ready_or_closed().await;
    assert_eq!(got.last().and_then(Msg::sqlstate).as_deref(), Some("0A000"));
}
