//! The connection cache and client limits, seen from the server's side.

mod common;

use std::time::{Duration, Instant};

use common::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::NoTls;

/// Every read on the primary, so `pg_backend_pid()` names the cached primary connection.
const PRIMARY_ONLY: &str = "backend_weight1 = 0\n";

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Waits (bounded) until the primary shows `pid` idle after the proxy's reset, i.e. back in
/// the cache.
async fn wait_cached(pid: i32) {
    let direct = common::primary_client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let row = direct
            .query_opt(
                "select state, query from pg_stat_activity where pid = $1",
                &[&pid],
            )
            .await
            .unwrap();
        if let Some(r) = row {
            let (state, query): (Option<String>, Option<String>) = (r.get(0), r.get(1));
            if state.as_deref() == Some("idle") && query.as_deref() == Some("DISCARD ALL") {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend {pid} was not returned to the cache");
}

async fn wait_gone(pid: i32) -> bool {
    common::wait_backend_ended(
        &common::primary_client().await,
        pid,
        Duration::from_secs(15),
    )
    .await
}

#[tokio::test]
async fn sequential_clients_reuse_the_backend_and_see_none_of_its_state() {
    let proxy = Proxy::start(PRIMARY_ONLY);
    let c1 = proxy.connect("postgres", "postgres").await;
    let pid = backend_pid(&c1).await;
    let chan = common::unique_name("chan");
    c1.batch_execute(&format!(
        "set work_mem = '77MB'; create temp table pool_tmp(v int); prepare pool_p as select 1; \
         listen {chan}; select pg_advisory_lock(4242);"
    ))
    .await
    .unwrap();
    drop(c1);
    wait_cached(pid).await;

    let c2 = proxy.connect("postgres", "postgres").await;
    assert_eq!(
        backend_pid(&c2).await,
        pid,
        "the second client must get the cached backend"
    );
    let row = c2
        .query_one(
            "select current_setting('work_mem'), to_regclass('pool_tmp') is null, \
             (select count(*) from pg_prepared_statements where name = 'pool_p'), \
             (select count(*) from pg_listening_channels()), \
             (select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid())",
            &[],
        )
        .await
        .unwrap();
    assert_ne!(row.get::<_, String>(0), "77MB", "SET leaked");
    assert!(row.get::<_, bool>(1), "temp table leaked");
    assert_eq!(row.get::<_, i64>(2), 0, "prepared statement leaked");
    assert_eq!(row.get::<_, i64>(3), 0, "LISTEN leaked");
    assert_eq!(row.get::<_, i64>(4), 0, "advisory lock leaked");
    drop(c2);
    wait_cached(pid).await;

    // Another user never gets that connection.
    let role = common::trusted_role("pool_role").await;
    let direct = common::primary_client().await;
    let c3 = proxy.connect(&role, "postgres").await;
    assert_ne!(backend_pid(&c3).await, pid);
    drop(c3);
    direct
        .batch_execute(&format!("drop role {role}"))
        .await
        .ok();
}

#[tokio::test]
async fn application_name_of_the_new_client_is_applied_on_reuse() {
    let proxy = Proxy::start(PRIMARY_ONLY);
    let conn = |app: &str| {
        format!(
            "{} application_name={app}",
            proxy.conn_str("postgres", "postgres")
        )
    };
    let c1 = common::connect_str(&conn("first_app")).await.unwrap();
    let pid = backend_pid(&c1).await;
    drop(c1);
    wait_cached(pid).await;
    let c2 = common::connect_str(&conn("second_app")).await.unwrap();
    let row = c2
        .query_one(
            "select pg_backend_pid(), current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), pid);
    assert_eq!(row.get::<_, String>(1), "second_app");
}

#[tokio::test]
async fn a_backend_terminated_while_cached_is_never_handed_out() {
    let proxy = Proxy::start(PRIMARY_ONLY);
    let c1 = proxy.connect("postgres", "postgres").await;
    let pid = backend_pid(&c1).await;
    drop(c1);
    wait_cached(pid).await;
    let direct = common::primary_client().await;
    direct
        .query_one("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    assert!(wait_gone(pid).await);
    let c2 = proxy.connect("postgres", "postgres").await;
    let new_pid = backend_pid(&c2).await;
    assert_ne!(new_pid, pid);
}

#[tokio::test]
async fn connection_life_time_closes_idle_cached_connections() {
    let proxy = Proxy::start(&format!("{PRIMARY_ONLY}connection_life_time = 1\n"));
    let c1 = proxy.connect("postgres", "postgres").await;
    let pid = backend_pid(&c1).await;
    drop(c1);
    wait_cached(pid).await;
    assert!(
        wait_gone(pid).await,
        "cached connection outlived connection_life_time"
    );
}

#[tokio::test]
async fn clients_past_num_init_children_wait_in_line() {
    let proxy = Proxy::start("num_init_children = 2\n");
    let a = proxy.connect("postgres", "postgres").await;
    let b = proxy.connect("postgres", "postgres").await;
    let conn_str = proxy.conn_str("postgres", "postgres");
    let third = tokio::spawn(async move {
        let c = common::connect_str(&conn_str).await.unwrap();
        c.query_one("select 3", &[]).await.unwrap().get::<_, i32>(0)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !third.is_finished(),
        "a third client must wait while two sessions run"
    );
    drop(a);
    let v = tokio::time::timeout(Duration::from_secs(15), third)
        .await
        .expect("the waiting client gets the freed slot")
        .unwrap();
    assert_eq!(v, 3);
    assert_eq!(
        b.query_one("select 2", &[]).await.unwrap().get::<_, i32>(0),
        2
    );
}

#[tokio::test]
async fn reserved_connections_refuse_with_53300() {
    let proxy = Proxy::start("num_init_children = 2\nreserved_connections = 1\n");
    let _a = proxy.connect("postgres", "postgres").await;
    let err = tokio_postgres::connect(&proxy.conn_str("postgres", "postgres"), NoTls)
        .await
        .err()
        .expect("the client past the limit is refused");
    assert_eq!(err.code().map(|c| c.code()), Some("53300"), "{err}");
    let msg = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert_eq!(msg, "Sorry, too many clients already");
}

/// Speaks just enough protocol to log in as a trust user and wait for what comes next.
async fn raw_login(port: u16) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in [("user", "postgres"), ("database", "postgres")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut pkt = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    s.write_all(&pkt).await.unwrap();
    // Read up to and including ReadyForQuery.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed during login");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

#[tokio::test]
async fn client_idle_limit_disconnects_an_idle_client_with_57000() {
    let proxy = Proxy::start("client_idle_limit = 1\n");
    let mut s = raw_login(proxy.port).await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the idle client was not disconnected");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        reply.first() == Some(&b'E') && text.contains("C57000"),
        "{text}"
    );
    assert!(text.contains("client_idle_limit:1 is reached"), "{text}");
    // A busy client is not idle: a query longer than the limit completes.
    let c = proxy.connect("postgres", "postgres").await;
    c.batch_execute("select pg_sleep(1.5)").await.unwrap();
}

#[tokio::test]
async fn a_vanished_client_releases_its_row_lock_at_once() {
    let proxy = Proxy::start(PRIMARY_ONLY);
    let direct = common::primary_client().await;
    let t = common::unique_name("locked");
    direct
        .batch_execute(&format!(
            "create table {t}(id int primary key); insert into {t} values (1)"
        ))
        .await
        .unwrap();
    let (holder, conn) = tokio_postgres::connect(&proxy.conn_str("postgres", "postgres"), NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    holder.batch_execute("begin").await.unwrap();
    holder
        .batch_execute(&format!("select * from {t} where id = 1 for update"))
        .await
        .unwrap();
    let pid = backend_pid(&holder).await;
    // The client vanishes: its socket closes without a Terminate message.
    task.abort();
    drop(holder);
    let other = proxy.connect("postgres", "postgres").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match other
            .batch_execute(&format!(
                "begin; select * from {t} where id = 1 for update nowait; commit"
            ))
            .await
        {
            Ok(()) => break,
            Err(e) => {
                other.batch_execute("rollback").await.ok();
                assert!(Instant::now() < deadline, "row lock still held: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // And no backend is left idle in transaction.
    let n: i64 = direct
        .query_one(
            "select count(*) from pg_stat_activity where pid = $1 and state like 'idle in transaction%'",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    direct
        .batch_execute(&format!("drop table {t}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn pgbench_with_a_new_connection_per_transaction() {
    let proxy = Proxy::start("");
    let script = proxy.dir.path().join("select1.sql");
    std::fs::write(&script, "select 1;\n").unwrap();
    common::pgbench_ok(
        proxy.port,
        &[
            "-C",
            "-c",
            "4",
            "-T",
            "3",
            "-n",
            "-f",
            script.to_str().unwrap(),
            "postgres",
        ],
        "pgbench -C",
    );
}

/// The pid of the primary backend whose last statement was exactly `sql`.
async fn pid_that_ran(direct: &tokio_postgres::Client, sql: &str) -> i32 {
    direct
        .query_one("select pid from pg_stat_activity where query = $1", &[&sql])
        .await
        .unwrap()
        .get(0)
}

/// Waits (bounded) until `series` on /metrics reaches at least `want`.
async fn wait_metric(proxy: &Proxy, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if common::metric(proxy.metrics_port, series).is_some_and(|v| v >= want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{series} never reached {want}");
}

/// A session of plain reads and writes leaves nothing on its backend, so the connection is
/// cached without `reset_query_list`: the server shows the client's last statement, not a
/// DISCARD ALL, once the connection is back in the cache — and the next client gets it.
#[tokio::test]
async fn a_session_that_left_no_state_is_cached_without_a_reset() {
    let proxy = Proxy::start(PRIMARY_ONLY);
    let direct = common::primary_client().await;
    let table = common::unique_name("pool_clean");
    direct
        .batch_execute(&format!("create table {table}(v int)"))
        .await
        .unwrap();
    let c1 = proxy.connect("postgres", "postgres").await;
    let last = format!("select count(*) as {table} from {table} where v > 0");
    for sql in [
        format!("insert into {table} values (1)"),
        "begin".to_string(),
        format!("update {table} set v = v + 1"),
        "commit".to_string(),
        last.clone(),
    ] {
        c1.simple_query(&sql).await.unwrap();
    }
    let pid = pid_that_ran(&direct, &last).await;
    drop(c1);
    wait_metric(&proxy, "pgpool_rs_cached_connections{node=\"0\"}", 1.0).await;
    let row = direct
        .query_one(
            "select state, query from pg_stat_activity where pid = $1",
            &[&pid],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("idle"));
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some(last.as_str()),
        "a reset ran on a connection that needed none"
    );
    let skipped = "pgpool_rs_connection_cache_events_total{node=\"0\",event=\"reset_skipped\"}";
    assert_eq!(common::metric(proxy.metrics_port, skipped), Some(1.0));

    let c2 = proxy.connect("postgres", "postgres").await;
    let again = format!("select 2 as {table}");
    c2.simple_query(&again).await.unwrap();
    assert_eq!(pid_that_ran(&direct, &again).await, pid, "not reused");
    drop(c2);
    direct
        .batch_execute(&format!("drop table {table}"))
        .await
        .unwrap();
}

/// Each statement alone (not hidden in a multi-statement text) leaves state behind, so the
/// connection is reset before the next client gets it and that client sees none of it.
#[tokio::test]
async fn state_left_by_a_single_statement_is_reset_before_reuse() {
    let proxy = Proxy::start(PRIMARY_ONLY);
    let direct = common::primary_client().await;
    let chan = common::unique_name("chan");
    // (statement, query answering whether its state is visible: 't' when it leaked)
    let cases = [
        (
            "select set_config('work_mem', '77MB', false)".to_string(),
            "select current_setting('work_mem') = '77MB'",
        ),
        (
            "select pg_advisory_lock(4243)".to_string(),
            "select count(*) > 0 from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()",
        ),
        (
            "do $$ begin perform set_config('work_mem', '77MB', false); end $$".to_string(),
            "select current_setting('work_mem') = '77MB'",
        ),
        (
            "declare pool_cur cursor with hold for select 1".to_string(),
            "select count(*) > 0 from pg_cursors",
        ),
        (
            "select 1 as v into temp pool_tmp_into".to_string(),
            "select to_regclass('pool_tmp_into') is not null",
        ),
        (
            format!("listen {chan}"),
            "select count(*) > 0 from pg_listening_channels()",
        ),
        (
            "set work_mem = '77MB'".to_string(),
            "select current_setting('work_mem') = '77MB'",
        ),
    ];
    for (i, (stmt, leaked)) in cases.iter().enumerate() {
        let c1 = proxy.connect("postgres", "postgres").await;
        let mark = format!("select {i} as pool_case_{}", std::process::id());
        c1.simple_query(&mark).await.unwrap();
        let pid = pid_that_ran(&direct, &mark).await;
        c1.simple_query(stmt).await.unwrap();
        drop(c1);
        wait_cached(pid).await;

        let c2 = proxy.connect("postgres", "postgres").await;
        let rows = c2
            .simple_query(&format!("select ({leaked}), pg_backend_pid()"))
            .await
            .unwrap();
        let row = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .expect("a row");
        assert_eq!(
            row.get(1),
            Some(pid.to_string().as_str()),
            "{stmt}: not reused"
        );
        assert_eq!(row.get(0), Some("f"), "{stmt}: its state leaked");
        drop(c2);
        wait_metric(&proxy, "pgpool_rs_cached_connections{node=\"0\"}", 1.0).await;
    }
}
