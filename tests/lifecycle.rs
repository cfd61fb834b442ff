//! Lifecycle on Kubernetes: SIGTERM drains sessions at transaction boundaries with 57P01 and
//! exits 0; `pgpool -m fast stop` works through the pid file; a rewrite of pgpool.conf and
//! pool_passwd under a running proxy is applied (or, if broken, rejected) without dropping
//! sessions. Routing is proven by `inet_server_port()`.

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cluster, Proxy};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// Sanity bound for anything that should take a few seconds.
const LIMIT: Duration = Duration::from_secs(60);

fn send_signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) with plain integers; the pid is our own child.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// A connection whose end (and the error that ended it) the test can await.
async fn connect_watched(
    proxy: &Proxy,
    db: &str,
) -> (Client, JoinHandle<Result<(), tokio_postgres::Error>>) {
    let (client, conn) = tokio_postgres::connect(&proxy.conn_str("postgres", db), NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect through the proxy: {e}\n{}", proxy.log()));
    (client, tokio::spawn(conn))
}

/// Waits for the connection to be ended by the server and returns the SQLSTATE it sent.
async fn ended_with(conn: JoinHandle<Result<(), tokio_postgres::Error>>) -> Option<SqlState> {
    let ended = tokio::time::timeout(LIMIT, conn)
        .await
        .expect("the proxy did not end the session")
        .expect("connection task panicked");
    ended.err().and_then(|e| e.code().cloned())
}

async fn answered_by(c: &Client) -> i32 {
    c.query_one("select inet_server_port()", &[])
        .await
        .unwrap_or_else(|e| panic!("select inet_server_port(): {e}"))
        .get(0)
}

async fn direct(port: u16, db: &str) -> Client {
    common::connect_str(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname={db}"
    ))
    .await
    .unwrap_or_else(|e| panic!("direct connection: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_idle_sessions_and_lets_open_transactions_commit_first() {
    let mut proxy = Proxy::start("shutdown_delay = 1\ndrain_timeout = 120\n");
    let db = common::unique_name("drain");
    common::create_database(&db).await;
    let (idle, idle_conn) = connect_watched(&proxy, &db).await;
    let (busy, busy_conn) = connect_watched(&proxy, &db).await;
    busy.batch_execute("create table t (n int); begin; insert into t values (1)")
        .await
        .unwrap();

    send_signal(proxy.pid() as i32, libc::SIGTERM);
    // After shutdown_delay the idle session is told why it ends, with a retryable code.
    assert_eq!(ended_with(idle_conn).await, Some(SqlState::ADMIN_SHUTDOWN));
    assert!(idle.is_closed());
    assert!(
        proxy.try_connect("postgres", &db, None).await.is_err(),
        "a draining proxy accepts no new sessions"
    );
    // The open transaction goes on and commits; only then is its session ended.
    busy.batch_execute("insert into t values (2)")
        .await
        .unwrap_or_else(|e| panic!("statement in an open transaction failed while draining: {e}"));
    busy.batch_execute("commit").await.unwrap();
    assert_eq!(ended_with(busy_conn).await, Some(SqlState::ADMIN_SHUTDOWN));
    let n: i64 = direct(cluster().primary_port, &db)
        .await
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "the drained transaction committed");

    let status = proxy.wait_exit(LIMIT).expect("pgpool did not exit");
    assert!(status.success(), "exit status {status}\n{}", proxy.log());
    assert!(
        !proxy.dir.path().join("pgpool.pid").exists(),
        "pid file removed at exit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_pgbench_ends_clients_only_between_transactions() {
    let mut proxy = Proxy::start("shutdown_delay = 1\ndrain_timeout = 120\n");
    let db = common::unique_name("drainbench");
    common::create_database(&db).await;
    common::pgbench_init(cluster().primary_port, &db);

    let (port, db2) = (proxy.port, db.clone());
    // -T bounds the run; the drain ends it much earlier.
    let bench = std::thread::spawn(move || {
        common::pgbench(
            port,
            &["-M", "simple", "-c", "6", "-j", "2", "-T", "120", &db2],
        )
    });
    let check = direct(cluster().primary_port, &db).await;
    let deadline = Instant::now() + LIMIT;
    loop {
        let n: i64 = check
            .query_one("select count(*) from pgbench_history", &[])
            .await
            .unwrap()
            .get(0);
        if n >= 200 {
            break;
        }
        assert!(Instant::now() < deadline, "pgbench made no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    send_signal(proxy.pid() as i32, libc::SIGTERM);
    let status = proxy.wait_exit(LIMIT).expect("pgpool did not exit");
    assert!(status.success(), "exit status {status}\n{}", proxy.log());
    let out = bench.join().expect("pgbench thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Two wordings, by where libpq noticed the end: "client N script 0 aborted in command 4
    // query 0: FATAL: …" or "client N aborted in command 4 (SQL) …" after a "FATAL: …" line.
    let aborts: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("pgbench: error: client ") && l.contains(" aborted in command "))
        .collect();
    assert_eq!(aborts.len(), 6, "every client is ended:\n{stderr}");
    for line in aborts {
        // tpcb-like: commands 0-3 are \set, 4 is BEGIN; anything later is mid-transaction.
        assert!(
            line.contains("aborted in command 4 "),
            "a client was ended inside a transaction: {line}\n{stderr}"
        );
    }
    assert_eq!(
        stderr
            .matches("FATAL:  terminating connection due to administrator command")
            .count(),
        6,
        "every client is told it is a shutdown (57P01):\n{stderr}"
    );
    for broken in ["unexpectedly", "lost", "reset by peer"] {
        assert!(!stderr.contains(broken), "broken connection:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pgpool_fast_stop_through_the_pid_file_ends_transactions_at_once() {
    // A smart shutdown would wait 60 s here; fast must not.
    let mut proxy = Proxy::start("shutdown_delay = 60\ndrain_timeout = 600\n");
    let (busy, busy_conn) = connect_watched(&proxy, "postgres").await;
    busy.batch_execute("begin; select 1").await.unwrap();
    let conf = proxy.dir.path().join("pgpool.conf");
    let stop = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_pgpool"))
            .arg("-f")
            .arg(&conf)
            .args(["-m", "fast", "stop"])
            .output()
            .expect("run pgpool stop")
    });
    assert_eq!(ended_with(busy_conn).await, Some(SqlState::ADMIN_SHUTDOWN));
    let status = proxy.wait_exit(LIMIT).expect("pgpool did not exit");
    assert!(status.success(), "exit status {status}\n{}", proxy.log());
    let out = stop.join().expect("stop thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("done"), "{stdout}");
}

/// Waits until `cond` holds for the proxy log.
fn wait_for_log(proxy: &Proxy, what: &str) {
    let deadline = Instant::now() + LIMIT;
    while !proxy.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "log never said {what:?}:\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens sessions until one reads from `port` (the watcher reloads within seconds).
async fn wait_reads_from(proxy: &Proxy, port: u16) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let c = proxy.connect("postgres", "postgres").await;
        if answered_by(&c).await == port as i32 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reads never moved to {port}:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rewritten_files_reload_without_dropping_sessions_and_a_broken_one_is_rejected() {
    let (primary, replica) = (cluster().primary_port, cluster().replica_port);
    let user = common::unique_name("reload_user");
    let password = "reload-pw-1";
    common::primary_client()
        .await
        .batch_execute(&format!(
            "create role {user} login password '{password}'; grant md5_users to {user}"
        ))
        .await
        .unwrap();
    common::wait_replica_caught_up().await;
    let proxy = Proxy::builder()
        .conf("backend_weight0 = 1\nbackend_weight1 = 0\n")
        .pool_passwd("someone:TEXTelse\n")
        .start();
    let conf_path = proxy.dir.path().join("pgpool.conf");
    let base = fs::read_to_string(&conf_path).unwrap();
    let kept = proxy.connect("postgres", "postgres").await;
    assert_eq!(answered_by(&kept).await, primary as i32);
    assert!(
        proxy
            .try_connect(&user, "postgres", Some(password))
            .await
            .is_err(),
        "not in pool_passwd yet"
    );

    // Rewrite both files; no signal: the watcher must see it.
    fs::write(
        &conf_path,
        format!("{base}backend_weight0 = 0\nbackend_weight1 = 1\nnum_init_children = 7\n"),
    )
    .unwrap();
    fs::write(
        proxy.dir.path().join("pool_passwd"),
        format!("someone:TEXTelse\n{user}:{password}\n"),
    )
    .unwrap();
    wait_reads_from(&proxy, replica).await;
    let u = proxy
        .try_connect(&user, "postgres", Some(password))
        .await
        .unwrap_or_else(|e| panic!("new pool_passwd user cannot log in: {e}\n{}", proxy.log()));
    u.simple_query("select 1").await.unwrap();
    kept.simple_query("select 1")
        .await
        .expect("a session from before the reload was dropped");
    wait_for_log(&proxy, "\"num_init_children\" changed but needs a restart");

    // A broken file is rejected as a whole: weights and users stay as they were.
    fs::write(
        &conf_path,
        format!("{base}backend_weight0 = 1\nbackend_weight1 = 'heavy'\n"),
    )
    .unwrap();
    wait_for_log(&proxy, "reload failed, keeping the current configuration");
    for _ in 0..3 {
        let c = proxy.connect("postgres", "postgres").await;
        assert_eq!(answered_by(&c).await, replica as i32, "old weights kept");
    }
    proxy
        .try_connect(&user, "postgres", Some(password))
        .await
        .expect("old pool_passwd kept");

    // SIGHUP reloads a fixed file (Pgpool-II's `pgpool reload`).
    fs::write(
        &conf_path,
        format!("{base}backend_weight0 = 1\nbackend_weight1 = 0\n"),
    )
    .unwrap();
    let reload = Command::new(env!("CARGO_BIN_EXE_pgpool"))
        .arg("-f")
        .arg(&conf_path)
        .arg("reload")
        .output()
        .expect("run pgpool reload");
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    wait_for_log(&proxy, "SIGHUP: configuration reloaded");
    wait_reads_from(&proxy, primary).await;
    kept.simple_query("select 1")
        .await
        .expect("a session from before the reloads was dropped");
    u.simple_query("select 1")
        .await
        .expect("a session from before the reloads was dropped");
}

/// Connects, runs a query, disconnects, then stops the proxy so its log is complete.
async fn one_session_then_stop(mut proxy: Proxy) -> String {
    let (client, conn) = connect_watched(&proxy, "postgres").await;
    client.simple_query("select 1").await.unwrap();
    drop(client);
    let _ = tokio::time::timeout(LIMIT, conn).await;
    send_signal(proxy.pid() as i32, libc::SIGINT);
    let status = proxy.wait_exit(LIMIT).expect("pgpool did not exit");
    assert!(status.success(), "exit status {status}\n{}", proxy.log());
    proxy.log()
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_logged_only_with_log_connections_and_log_disconnections() {
    let quiet = one_session_then_stop(Proxy::start("")).await;
    assert!(!quiet.contains("new connection received"), "{quiet}");
    assert!(!quiet.contains("frontend disconnection"), "{quiet}");

    let conf = "log_connections = on\nlog_disconnections = on\n";
    let logged = one_session_then_stop(Proxy::start(conf)).await;
    assert!(
        logged.contains("new connection received: connecting host=127.0.0.1 port="),
        "{logged}"
    );
    let line = logged
        .lines()
        .find(|l| l.contains("frontend disconnection: session time: "))
        .unwrap_or_else(|| panic!("no disconnection line\n{logged}"));
    assert!(
        line.contains("user=postgres database=postgres host=127.0.0.1 port="),
        "{line}"
    );
}
