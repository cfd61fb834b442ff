//! Transaction pooling (`pool_mode = transaction`): many clients share a bounded number of
//! backend connections, one per open transaction, seen from the server's side.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Proxy;

/// Transaction pooling with every statement on the primary, so the primary's
/// `pg_stat_activity` shows every backend connection the proxy holds.
fn txn_proxy(pool_size: u32, extra: &str) -> Proxy {
    Proxy::start(&format!(
        "pool_mode = transaction\n\
         default_pool_size = {pool_size}\n\
         num_init_children = 256\n\
         backend_weight1 = 0\n\
         {extra}"
    ))
}

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Backend connections to `db` the primary has now (the proxy's, as clients go through it).
async fn connections_to(direct: &tokio_postgres::Client, db: &str) -> i64 {
    direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND backend_type = 'client backend'",
            &[&db],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn pgbench_clients_share_a_bounded_pool_in_every_protocol() {
    let proxy = txn_proxy(10, "");
    let db = common::unique_name("txnbench");
    common::create_database(&db).await;
    common::pgbench_init(common::cluster().primary_port, &db);
    // The most connections to the database the primary ever showed during the runs.
    let most = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (most, done, db) = (most.clone(), done.clone(), db.clone());
        tokio::spawn(async move {
            let direct = common::primary_client().await;
            while !done.load(Ordering::SeqCst) {
                let n = connections_to(&direct, &db).await;
                most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    for mode in ["simple", "extended", "prepared"] {
        let args: Vec<String> = ["-M", mode, "-c", "200", "-j", "2", "-T", "4", &db]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Blocking: the sampler keeps running on the test's runtime meanwhile.
        let port = proxy.port;
        let text = tokio::task::spawn_blocking(move || common::pgbench_ok(port, &args, mode))
            .await
            .unwrap();
        assert!(text.contains("number of clients: 200"), "{mode}: {text}");
    }
    done.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let most = most.load(Ordering::SeqCst);
    assert!(most >= 1, "no backend connection was ever seen");
    assert!(
        most <= 10,
        "{most} backend connections for 200 clients with default_pool_size = 10\n{}",
        proxy.log()
    );
}

#[tokio::test]
async fn named_prepared_statements_work_on_whichever_backend_runs_the_transaction() {
    // Every connection serves one transaction and is closed: each runs on a new backend.
    let proxy = txn_proxy(10, "child_max_connections = 1\n");
    let a = proxy.connect("postgres", "postgres").await;
    let stmt = a
        .prepare("SELECT $1::int + 1, pg_backend_pid()")
        .await
        .unwrap();
    let mut pids = HashSet::new();
    for i in 0..20i32 {
        let row = a.query_one(&stmt, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        pids.insert(row.get::<_, i32>(1));
    }
    // And inside a transaction, several statements on one backend.
    a.batch_execute("BEGIN").await.unwrap();
    let one = a.query_one(&stmt, &[&1]).await.unwrap().get::<_, i32>(1);
    let two = a.query_one(&stmt, &[&2]).await.unwrap().get::<_, i32>(1);
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(one, two, "a transaction moved between backends");
    pids.insert(one);
    assert!(
        pids.len() >= 20,
        "the statements did not change backends: {pids:?}"
    );
}

#[tokio::test]
async fn session_settings_follow_the_client_and_never_reach_another() {
    // One connection for both clients: b always gets the connection a used last, reset
    // in between, so what a sees afterwards was replayed.
    let proxy = txn_proxy(1, "");
    let a = proxy.connect("postgres", "postgres").await;
    let b = proxy.connect("postgres", "postgres").await;
    let default_path: String = b.query_one("SHOW search_path", &[]).await.unwrap().get(0);
    a.batch_execute("SET search_path TO pg_catalog, public")
        .await
        .unwrap();
    a.batch_execute("SET statement_timeout = '12s'")
        .await
        .unwrap();
    a.execute("SET lock_timeout = '7s'", &[]).await.unwrap();
    let settings = "SELECT current_setting('search_path'), current_setting('statement_timeout'), \
                    current_setting('lock_timeout'), pg_backend_pid()";
    for _ in 0..5 {
        let row = a.query_one(settings, &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "pg_catalog, public");
        assert_eq!(row.get::<_, String>(1), "12s");
        assert_eq!(row.get::<_, String>(2), "7s");
        let row_b = b
            .query_one(
                "SELECT current_setting('search_path'), pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            row_b.get::<_, i32>(1),
            row.get::<_, i32>(3),
            "not the same connection"
        );
        assert_eq!(
            row_b.get::<_, String>(0),
            default_path,
            "b inherited a's search_path"
        );
    }
    // SHOW through the proxy (simple protocol) sees the same.
    let shown = a.simple_query("SHOW lock_timeout").await.unwrap();
    let value = shown.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("7s"));
    // RESET goes along too.
    a.batch_execute("RESET lock_timeout").await.unwrap();
    let _ = b.query_one("SELECT 1", &[]).await.unwrap();
    let lock: String = a.query_one("SHOW lock_timeout", &[]).await.unwrap().get(0);
    assert_eq!(lock, "0");
}

fn assert_refused(e: tokio_postgres::Error, what: &str) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("{what}: not a server error: {e}"));
    assert_eq!(db.code().code(), "0A000", "{what}: {db:?}");
    assert!(
        db.message().contains("transaction pooling"),
        "{what}: {}",
        db.message()
    );
}

#[tokio::test]
async fn state_that_outlives_a_transaction_is_refused_with_0a000() {
    let proxy = txn_proxy(10, "");
    let c = proxy.connect("postgres", "postgres").await;
    let refused = [
        "LISTEN txn_pool_chan",
        "SELECT pg_advisory_lock(4242)",
        "CREATE TEMP TABLE txn_pool_tmp (a int)",
        "PREPARE txn_pool_p AS SELECT 1",
        "SET SESSION AUTHORIZATION postgres",
        // A SET among other statements could not be replayed on its own.
        "SET search_path TO public; SELECT 1",
    ];
    for sql in refused {
        // Simple protocol, then extended.
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_refused(e, sql);
        if !sql.contains(';') {
            let e = c.execute(sql, &[]).await.expect_err(sql);
            assert_refused(e, sql);
        }
        assert_eq!(
            c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
            1
        );
    }
    // Inside a transaction the refusal fails the transaction, as a server error does.
    c.batch_execute("BEGIN").await.unwrap();
    let e = c
        .batch_execute("DECLARE txn_pool_c CURSOR WITH HOLD FOR SELECT 1")
        .await
        .expect_err("WITH HOLD");
    assert_refused(e, "WITH HOLD");
    let e = c.batch_execute("SELECT 1").await.expect_err("aborted");
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"), "{e}");
    c.batch_execute("ROLLBACK").await.unwrap();
    // What stays allowed: transaction-scoped locks and temp tables dropped at commit.
    c.batch_execute(
        "BEGIN; SELECT pg_advisory_xact_lock(4242); \
         CREATE TEMP TABLE txn_pool_ok (a int) ON COMMIT DROP; COMMIT",
    )
    .await
    .unwrap();
    let direct = common::primary_client().await;
    let locks: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(locks, 0);
}

/// Session state need not come from a statement of its own: a data change may take a
/// session-level advisory lock, a later statement of a query may, and `pg_temp.x` is a
/// temporary table by its schema. Each is refused before it runs.
#[tokio::test]
async fn state_left_by_a_data_change_or_a_later_statement_is_refused() {
    let proxy = txn_proxy(10, "");
    let direct = common::primary_client().await;
    let t = common::unique_name("txn_pool_dml");
    direct
        .batch_execute(&format!("CREATE TABLE {t} (a int)"))
        .await
        .unwrap();
    let c = proxy.connect("postgres", "postgres").await;
    let refused = [
        format!("INSERT INTO {t} SELECT 1 WHERE pg_try_advisory_lock(4343)"),
        "SELECT 1; SELECT pg_advisory_lock(4343)".to_string(),
        format!("CREATE TABLE pg_temp.{t} (a int)"),
    ];
    for sql in &refused {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_refused(e, sql);
    }
    let held: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4343",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "a refused statement ran");
    let temp: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = $1 AND relpersistence = 't'",
            &[&t],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(temp, 0, "a refused temporary table was made");
    let rows: i64 = direct
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    // The same data change without the lock runs.
    c.batch_execute(&format!("INSERT INTO {t} SELECT 1 WHERE now() IS NOT NULL"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_client_gone_mid_transaction_is_rolled_back_and_its_backend_reused() {
    let proxy = txn_proxy(1, "");
    let table = common::unique_name("txn_gone");
    let direct = common::primary_client().await;
    direct
        .batch_execute(&format!("CREATE TABLE {table} (a int)"))
        .await
        .unwrap();
    let a = proxy.connect("postgres", "postgres").await;
    a.batch_execute(&format!("BEGIN; INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap();
    let pid = backend_pid(&a).await;
    drop(a);
    // With one connection allowed, b gets a's once the proxy has rolled it back.
    let b = proxy.connect("postgres", "postgres").await;
    assert_eq!(backend_pid(&b).await, pid, "the connection was not reused");
    let n: i64 = b
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the abandoned insert was committed");
    let state: Option<String> = direct
        .query_one("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert_eq!(state.as_deref(), Some("idle"));
}

#[tokio::test]
async fn a_client_finding_every_connection_busy_gets_53300_after_query_wait_timeout() {
    let proxy = txn_proxy(1, "query_wait_timeout = 1\n");
    let a = proxy.connect("postgres", "postgres").await;
    let b = proxy.connect("postgres", "postgres").await;
    a.batch_execute("BEGIN").await.unwrap();
    let e = b
        .batch_execute("SELECT 1")
        .await
        .expect_err("no connection was free");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(db.code().code(), "53300", "{db:?}");
    assert!(
        db.message().contains("query_wait_timeout"),
        "{}",
        db.message()
    );
    // The holder is unharmed, and its connection serves others once it is done.
    a.batch_execute("COMMIT").await.unwrap();
    let c = proxy.connect("postgres", "postgres").await;
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

/// psycopg 3 with its statement cache (named statements prepared after five runs, closed
/// when evicted), many clients on two connections.
#[tokio::test]
async fn psycopg_prepared_statements_survive_transaction_pooling() {
    if !common::have_psycopg() {
        return;
    }
    let proxy = txn_proxy(2, "");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/psycopg_txn_pool.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(proxy.conn_str("postgres", "postgres"))
        .args(["6", "30"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    let backends: usize = stdout
        .trim()
        .strip_prefix("backends: ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!((1..=2).contains(&backends), "{stdout}");
}

/// A login the cached connection cannot admit (the password it proved does not match the one
/// that opened it) needs a connection of its own: with every connection of the bound idle in
/// the cache, one of them makes room instead of the login waiting for a free one.
#[tokio::test]
async fn a_login_that_needs_its_own_connection_makes_room_under_the_bound() {
    // Clear text from the client, SCRAM to the backend: the proxy cannot check a password.
    let proxy = txn_proxy(
        1,
        "query_wait_timeout = 5\nallow_clear_text_frontend_auth = on\n",
    );
    let role = common::unique_name("txnauth");
    common::primary_client()
        .await
        .batch_execute(&format!(
            "SET password_encryption = 'scram-sha-256'; \
             CREATE ROLE {role} LOGIN PASSWORD 'right' IN ROLE scram_users"
        ))
        .await
        .unwrap();
    let first = proxy
        .try_connect(&role, "postgres", Some("right"))
        .await
        .unwrap();
    assert_eq!(
        first
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    drop(first);
    // The backend judges the wrong password on a connection of its own.
    let Err(e) = proxy.try_connect(&role, "postgres", Some("wrong")).await else {
        panic!("a wrong password logged in");
    };
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(db.code().code(), "28P01", "{db:?}");
    let again = proxy
        .try_connect(&role, "postgres", Some("right"))
        .await
        .unwrap();
    assert_eq!(
        again
            .query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn an_idle_connection_of_other_startup_parameters_makes_room_under_the_bound() {
    // The one connection the bound allows is opened by a client that sends only user and
    // database, and stays cached; tokio-postgres sends client_encoding and more, so it cannot
    // use that connection and needs a new one.
    let proxy = txn_proxy(1, "query_wait_timeout = 3\n");
    let mut bare = common::wire::Raw::login(
        proxy.port,
        &[("user", "postgres"), ("database", "postgres")],
    )
    .await;
    bare.send(&common::wire::query("select 1")).await;
    let answers = bare.until_ready().await;
    assert!(answers.iter().all(|m| m.tag != b'E'), "{answers:?}");
    drop(bare);
    let c = common::connect_str(&proxy.conn_str("postgres", "postgres"))
        .await
        .unwrap_or_else(|e| panic!("login under a full bound: {e}\n{}", proxy.log()));
    let one: i32 = c
        .query_one("select 1", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()))
        .get(0);
    assert_eq!(one, 1);
}
