//! The core relay against a real primary + replica: every protocol flow a client uses goes
//! through the proxy and comes back exactly as PostgreSQL would answer it.

mod common;

use std::time::{Duration, Instant};

use common::Proxy;
use futures_util::{pin_mut, SinkExt, StreamExt, TryStreamExt};
use tokio_postgres::{AsyncMessage, NoTls, SimpleQueryMessage};

fn rows_of(msgs: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn simple_and_extended_queries_round_trip() {
    let proxy = Proxy::start("");
    let c = proxy.connect("postgres", "postgres").await;
    let msgs = c
        .simple_query("select 1 as a; select 'x' as b, null as c")
        .await
        .unwrap();
    assert_eq!(
        rows_of(&msgs),
        vec![vec!["1".to_string()], vec!["x".into(), "".into()]]
    );
    let row = c
        .query_one("select $1::int + 1, $2::text", &[&41i32, &"hello"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, String>(1), "hello");
    // A named prepared statement reused many times.
    let stmt = c.prepare("select $1::bigint * 2").await.unwrap();
    for i in 0..50i64 {
        let r = c.query_one(&stmt, &[&i]).await.unwrap();
        assert_eq!(r.get::<_, i64>(0), i * 2);
    }
}

#[tokio::test]
async fn error_mid_transaction_then_rollback() {
    let proxy = Proxy::start("");
    let c = proxy.connect("postgres", "postgres").await;
    c.batch_execute("begin").await.unwrap();
    let err = c.simple_query("select 1/0").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("22012"));
    let err = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("25P02"));
    c.batch_execute("rollback").await.unwrap();
    let r = c.query_one("select 7", &[]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 7);
}

#[tokio::test]
async fn copy_in_and_out_of_100k_rows() {
    // COPY TO right after COPY FROM would race the replica's replay: primary only here.
    let proxy = Proxy::start("backend_weight1 = 0\n");
    let c = proxy.connect("postgres", "postgres").await;
    let table = common::unique_name("copy_t");
    c.batch_execute(&format!("create table {table}(a int, b text)"))
        .await
        .unwrap();
    let sink = c
        .copy_in(&format!("copy {table} from stdin"))
        .await
        .unwrap();
    pin_mut!(sink);
    let mut chunk = String::new();
    for i in 0..100_000 {
        chunk.push_str(&format!("{i}\trow {i}\n"));
        if chunk.len() > 64 * 1024 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut chunk)))
                .await
                .unwrap();
        }
    }
    sink.send(bytes::Bytes::from(chunk)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 100_000);
    let stream = c
        .copy_out(&format!("copy {table} to stdout"))
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let lines = chunks
        .iter()
        .flat_map(|b| b.iter())
        .filter(|&&b| b == b'\n')
        .count();
    assert_eq!(lines, 100_000);
    c.batch_execute(&format!("drop table {table}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_million_row_result_streams_through() {
    let proxy = Proxy::start("");
    let c = proxy.connect("postgres", "postgres").await;
    let rows = c
        .query_raw(
            "select g, repeat('x', 20) from generate_series(1, 1000000) g",
            Vec::<i32>::new(),
        )
        .await
        .unwrap();
    pin_mut!(rows);
    let mut n = 0u64;
    let mut sum = 0i64;
    while let Some(r) = rows.next().await {
        let r = r.unwrap();
        sum += r.get::<_, i32>(0) as i64;
        n += 1;
    }
    assert_eq!(n, 1_000_000);
    assert_eq!(sum, 500_000_500_000);
}

#[tokio::test]
async fn listen_notify_reaches_the_listener() {
    let proxy = Proxy::start("");
    let (listener, mut conn) =
        tokio_postgres::connect(&proxy.conn_str("postgres", "postgres"), NoTls)
            .await
            .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    let channel = common::unique_name("chan");
    listener
        .batch_execute(&format!("listen {channel}"))
        .await
        .unwrap();
    let notifier = proxy.connect("postgres", "postgres").await;
    notifier
        .batch_execute(&format!("notify {channel}, 'hello'"))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("notification within 10 s")
        .unwrap();
    assert_eq!(got, (channel, "hello".to_string()));
}

#[tokio::test]
async fn cancel_reaches_the_backend_running_the_query() {
    let proxy = Proxy::start("");
    let c = proxy.connect("postgres", "postgres").await;
    let token = c.cancel_token();
    let started = Instant::now();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    let err = c.simple_query("select pg_sleep(30)").await.unwrap_err();
    canceller.await.unwrap();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    // Bounded sanity check, not a timing assertion: without the cancel this takes 30 s.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn psql_describe_multistatement_and_copy_from_stdin() {
    // Reads right after writes in autocommit would race the replica's replay (Pgpool-II
    // semantics); this test is about the relay, so keep every read on the primary.
    let proxy = Proxy::start("backend_weight1 = 0\n");
    let table = common::unique_name("psql_t");
    let out = common::psql_stdin(
        proxy.port,
        "postgres",
        "postgres",
        &format!(
            "create table {table}(id int primary key, v text); select 1 as one; select 2 as two;\n"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("one") && text.contains("two"), "{text}");
    let out = common::psql_stdin(
        proxy.port,
        "postgres",
        "postgres",
        &format!("\\d {table}\n"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("integer") && text.contains("PRIMARY KEY"),
        "{text}"
    );
    let out = common::psql_stdin(
        proxy.port,
        "postgres",
        "postgres",
        &format!("copy {table} from stdin;\n1\ta\n2\tb\n\\.\nselect count(*) from {table};\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("COPY 2"));
    common::psql(
        proxy.port,
        "postgres",
        "postgres",
        &format!("drop table {table}"),
    );
}

/// The threads a proxy runs with `worker_threads`: 1 is one event loop on the main thread
/// (no worker pool at all), N a pool of N workers besides it. Counted from /proc after
/// queries on both servers, so the sessions ran on what the setting asked for.
#[tokio::test]
async fn worker_threads_sets_the_threads_sessions_run_on() {
    for (setting, threads) in [(1, 1), (3, 4)] {
        let proxy = Proxy::start(&format!(
            "worker_threads = {setting}\nload_balance_mode = on\nbackend_weight0 = 1\nbackend_weight1 = 1"
        ));
        let mut ports = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let c = proxy.connect("postgres", "postgres").await;
            let row = c
                .query_one("select inet_server_port()", &[])
                .await
                .expect("query");
            ports.insert(row.get::<_, i32>(0));
        }
        assert_eq!(
            ports.len(),
            2,
            "worker_threads = {setting}: both servers answered"
        );
        let tasks = std::fs::read_dir(format!("/proc/{}/task", proxy.pid()))
            .expect("/proc")
            .count();
        assert_eq!(tasks, threads, "worker_threads = {setting}");
    }
}
