//! Extended-protocol behaviour Pgpool-II gets wrong: portals and cursors across round trips,
//! unknown statements answered with PostgreSQL's 26000 (the session goes on), Parse + Flush.

mod common;

use std::time::Duration;

use common::{cluster, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads are balanced 1:1 so sessions really use both servers.
const BALANCED: &str = "backend_weight0 = 1\nbackend_weight1 = 1\n";

#[tokio::test]
async fn a_named_portal_is_fetched_in_steps_across_several_syncs() {
    let proxy = Proxy::start(BALANCED);
    let mut c = proxy.connect("postgres", "postgres").await;
    let tx = c.transaction().await.unwrap();
    let stmt = tx
        .prepare("select g, inet_server_port() from generate_series(1, 10) g")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut seen = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..4 {
        let rows = tx.query_portal(&portal, 3).await.unwrap();
        for r in rows {
            seen.push(r.get::<_, i32>(0));
            ports.push(r.get::<_, i32>(1));
        }
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    assert!(
        ports.iter().all(|&p| p == ports[0]),
        "one server ran the portal: {ports:?}"
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn sql_cursors_work_across_round_trips() {
    let proxy = Proxy::start(BALANCED);
    let c = proxy.connect("postgres", "postgres").await;
    c.batch_execute("begin; declare cur cursor for select g from generate_series(1, 5) g")
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        for m in c.simple_query("fetch 2 from cur").await.unwrap() {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                got.push(r.get(0).unwrap_or("").to_string());
            }
        }
    }
    assert_eq!(got, ["1", "2", "3", "4", "5"]);
    c.batch_execute("close cur; commit").await.unwrap();
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

async fn login(port: u16) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut body = 196608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0postgres\0database\0postgres\0\0");
    let mut pkt = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    s.write_all(&pkt).await.unwrap();
    read_until(&mut s, |b| {
        b.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I'])
    })
    .await;
    s
}

/// Reads until `done` holds for everything read so far (bounded by a timeout).
async fn read_until(s: &mut tokio::net::TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !done(&seen) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed; got {seen:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("no complete answer; got {seen:?}"));
    seen
}

#[tokio::test]
async fn bind_of_an_unknown_statement_gets_26000_and_the_session_goes_on() {
    let proxy = Proxy::start(BALANCED);
    let mut s = login(proxy.port).await;
    let mut req = msg(b'B', b"\0no_such_stmt\0\0\0\0\0\0\0");
    req.extend(msg(b'E', b"\0\0\0\0\0"));
    req.extend(msg(b'S', b""));
    s.write_all(&req).await.unwrap();
    let reply = read_until(&mut s, |b| b.windows(5).any(|w| w == [b'Z', 0, 0, 0, 5])).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(
        reply.first() == Some(&b'E') && text.contains("C26000"),
        "{text}"
    );
    // The same connection still works.
    s.write_all(&msg(b'Q', b"select 41 + 1\0")).await.unwrap();
    let reply = read_until(&mut s, |b| b.windows(5).any(|w| w == [b'Z', 0, 0, 0, 5])).await;
    assert!(String::from_utf8_lossy(&reply).contains("42"));
}

#[tokio::test]
async fn parse_then_flush_answers_parse_complete_at_once() {
    let proxy = Proxy::start(BALANCED);
    let mut s = login(proxy.port).await;
    let mut req = msg(b'P', b"s1\0select 1\0\0\0");
    req.extend(msg(b'H', b""));
    s.write_all(&req).await.unwrap();
    // ParseComplete arrives without a Sync.
    let reply = read_until(&mut s, |b| b.starts_with(&[b'1', 0, 0, 0, 4])).await;
    assert_eq!(&reply[..5], &[b'1', 0, 0, 0, 4]);
    let mut req = msg(b'B', b"\0s1\0\0\0\0\0\0\0");
    req.extend(msg(b'E', b"\0\0\0\0\0"));
    req.extend(msg(b'S', b""));
    s.write_all(&req).await.unwrap();
    let reply = read_until(&mut s, |b| b.windows(5).any(|w| w == [b'Z', 0, 0, 0, 5])).await;
    assert!(
        reply.starts_with(&[b'2', 0, 0, 0, 4]),
        "BindComplete first: {reply:?}"
    );
}

#[tokio::test]
async fn a_statement_prepared_on_the_replica_runs_on_the_primary_after_a_write() {
    let proxy = Proxy::start("backend_weight0 = 0\nbackend_weight1 = 1\n");
    let c = proxy.connect("postgres", "postgres").await;
    let read = c.prepare("select inet_server_port()").await.unwrap();
    let replica: i32 = c.query_one(&read, &[]).await.unwrap().get(0);
    assert_eq!(replica, cluster().replica_port as i32);
    let t = common::unique_name("ext");
    c.batch_execute(&format!("create table {t}(v int)"))
        .await
        .unwrap();
    c.batch_execute("begin").await.unwrap();
    c.execute(&format!("insert into {t} values (1)") as &str, &[])
        .await
        .unwrap();
    let primary: i32 = c.query_one(&read, &[]).await.unwrap().get(0);
    assert_eq!(primary, cluster().primary_port as i32);
    c.batch_execute("rollback").await.unwrap();
    c.batch_execute(&format!("drop table {t}")).await.unwrap();
}
