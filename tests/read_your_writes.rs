//! `read_your_writes = on`: after a session commits a write, its reads never see the
//! replica's older state, and they still go to the replica once it has replayed that far.
//! The test cluster's replica replays asynchronously, so staleness is real; pausing replay
//! (on a private cluster) makes it certain. Routing is proven by `inet_server_port()`.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, unique_name, Node, PrivateCluster, Proxy};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Every read to the replica; writes do not keep later reads on the primary.
const READS_TO_REPLICA: &str = "backend_weight0 = 0\nbackend_weight1 = 1\n\
     disable_load_balance_on_write = 'off'\n";

/// Bound for anything that waits on a server.
const WAIT: Duration = Duration::from_secs(30);

/// Write-then-read tries in the concurrency test, over [`CLIENTS`] sessions.
const TRIES: usize = 10_000;
const CLIENTS: usize = 4;

fn ryw_conf(on: bool, timeout_ms: u64) -> String {
    format!(
        "{READS_TO_REPLICA}read_your_writes = {}\nread_your_writes_timeout = {timeout_ms}\n",
        if on { "on" } else { "off" }
    )
}

async fn create_table(primary: &Client, t: &str, rows: usize) {
    primary
        .batch_execute(&format!(
            "create table {t} (id int primary key, v int not null);\
             insert into {t} select g, 0 from generate_series(0, {rows}) g"
        ))
        .await
        .unwrap_or_else(|e| panic!("create {t}: {e}"));
}

/// First row of a simple query, as text.
async fn row(c: &Client, sql: &str) -> Vec<String> {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no row from {sql}"))
}

/// `(v, port that answered)` of row `id`.
async fn read_v(c: &Client, t: &str, id: i32) -> (i32, i32) {
    let r = row(
        c,
        &format!("select v, inet_server_port() from {t} where id = {id}"),
    )
    .await;
    (r[0].parse().unwrap_or(-1), r[1].parse().unwrap_or(-1))
}

/// Waits until the replica of `pc` has replayed what its primary wrote so far.
async fn private_caught_up(pc: &PrivateCluster) {
    let primary = pc.client(Node::Primary).await;
    let replica = pc.client(Node::Replica).await;
    let target: String = primary
        .query_one("select pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    let deadline = Instant::now() + WAIT;
    loop {
        let done: Option<bool> = replica
            .query_one(
                "select pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&target],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .get(0);
        if done == Some(true) {
            return;
        }
        assert!(Instant::now() < deadline, "replica did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How a session writes in [`write_then_read`].
#[derive(Clone, Copy, PartialEq)]
enum Writes {
    /// Autocommit UPDATEs with the session's `synchronous_commit` on: acknowledged once
    /// flushed (the replica still replays asynchronously).
    Flushed,
    /// Autocommit UPDATEs with the server's `synchronous_commit = off` (the test cluster's
    /// setting): acknowledged before the WAL is flushed.
    Unflushed,
    /// A transaction with `SET LOCAL synchronous_commit = off` in a session where it is
    /// on: after the commit, the session's setting no longer shows how it committed.
    LocallyUnflushed,
}

/// One session's tries: write a new value, read it back at once. Returns (stale reads,
/// reads answered by the replica). `extended`: the extended protocol, else simple queries.
async fn write_then_read(
    c: Client,
    t: String,
    id: i32,
    tries: usize,
    writes: Writes,
    extended: bool,
) -> (usize, usize) {
    let replica = cluster().replica_port as i32;
    if writes != Writes::Unflushed {
        c.batch_execute("set synchronous_commit = on")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (mut stale, mut on_replica) = (0, 0);
    let update = format!("update {t} set v = $1 where id = $2");
    let select = format!("select v, inet_server_port() from {t} where id = $1");
    for i in 1..=tries as i32 {
        let (v, port) = if writes == Writes::LocallyUnflushed {
            // One statement per query: a multi-statement text with SET keeps the whole
            // session on the primary.
            let update = format!("update {t} set v = {i} where id = {id}");
            for sql in [
                "begin",
                "set local synchronous_commit = off",
                &update,
                "commit",
            ] {
                c.batch_execute(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            read_v(&c, &t, id).await
        } else if extended {
            c.execute(&update, &[&i, &id])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let r = c
                .query_one(&select, &[&id])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (r.get::<_, i32>(0), r.get::<_, i32>(1))
        } else {
            c.batch_execute(&format!("update {t} set v = {i} where id = {id}"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            read_v(&c, &t, id).await
        };
        if v != i {
            stale += 1;
        }
        if port == replica {
            on_replica += 1;
        }
    }
    (stale, on_replica)
}

/// Runs `sessions` (write mode, extended protocol, tries) at once through `proxy`, each on
/// its own row of `t`; returns (stale reads, reads answered by the replica).
async fn run_sessions(
    proxy: &Proxy,
    t: &str,
    sessions: &[(Writes, bool, usize)],
) -> (usize, usize) {
    let mut tasks = Vec::new();
    for (id, &(writes, extended, tries)) in sessions.iter().enumerate() {
        let c = proxy.connect("postgres", "postgres").await;
        let t = t.to_string();
        tasks.push(tokio::spawn(write_then_read(
            c, t, id as i32, tries, writes, extended,
        )));
    }
    let (mut stale, mut on_replica) = (0, 0);
    for task in tasks {
        let (s, r) = task.await.unwrap_or_else(|e| panic!("{e}"));
        stale += s;
        on_replica += r;
    }
    (stale, on_replica)
}

#[tokio::test]
async fn reads_right_after_own_writes_are_never_stale_and_still_reach_the_replica() {
    let t = unique_name("ryw");
    let primary = common::primary_client().await;
    create_table(&primary, &t, CLIENTS).await;
    common::wait_replica_caught_up().await;
    let proxy = Proxy::start(&ryw_conf(true, 50));
    let sessions: Vec<_> = (0..CLIENTS)
        .map(|i| (Writes::Flushed, i % 2 == 1, TRIES / CLIENTS))
        .collect();
    let (stale, on_replica) = run_sessions(&proxy, &t, &sessions).await;
    assert_eq!(
        stale,
        0,
        "stale reads of the session's own write\n{}",
        proxy.log()
    );
    assert!(
        on_replica > 0,
        "no read of {TRIES} reached the replica once it had caught up"
    );
    eprintln!("{on_replica} of {TRIES} reads answered by the replica");
}

#[tokio::test]
async fn commits_acknowledged_before_the_wal_flush_are_never_read_stale() {
    let t = unique_name("ryw_async");
    let primary = common::primary_client().await;
    create_table(&primary, &t, 2).await;
    common::wait_replica_caught_up().await;
    // Such WAL reaches the replica only at the WAL writer's next flush (200 ms apart), so
    // most of these reads wait in vain and go to the primary: fewer tries.
    let proxy = Proxy::start(&ryw_conf(true, 50));
    let sessions = [
        (Writes::Unflushed, false, 150),
        (Writes::LocallyUnflushed, false, 150),
    ];
    let (stale, on_replica) = run_sessions(&proxy, &t, &sessions).await;
    assert_eq!(
        stale,
        0,
        "stale reads of the session's own write\n{}",
        proxy.log()
    );
    eprintln!("{on_replica} of 300 reads answered by the replica");
}

#[tokio::test]
async fn paused_replay_sends_reads_after_a_write_to_the_primary_until_it_resumes() {
    let pc = PrivateCluster::start("pc_ryw");
    let (primary_port, replica_port) = (pc.primary_port as i32, pc.replica_port as i32);
    let t = unique_name("ryw_pause");
    let primary = pc.client(Node::Primary).await;
    let replica = pc.client(Node::Replica).await;
    create_table(&primary, &t, 1).await;
    private_caught_up(&pc).await;
    let on = Proxy::start(&format!("{}{}", ryw_conf(true, 50), pc.proxy_conf()));
    let off = Proxy::start(&format!("{}{}", ryw_conf(false, 50), pc.proxy_conf()));
    let c = on.connect("postgres", "postgres").await;
    let plain = off.connect("postgres", "postgres").await;
    assert_eq!(
        read_v(&c, &t, 1).await,
        (0, replica_port),
        "before any write"
    );

    replica
        .batch_execute("select pg_wal_replay_pause()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Without the setting the same write and read give the replica's old value: the setup
    // really produces stale reads.
    plain
        .batch_execute(&format!("update {t} set v = 1 where id = 1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        read_v(&plain, &t, 1).await,
        (0, replica_port),
        "read_your_writes = off"
    );

    c.batch_execute(&format!("update {t} set v = 2 where id = 1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let explained = row(&c, &format!("PGPOOL EXPLAIN ROUTE select v from {t}")).await;
    assert_eq!(explained[4], "read_your_writes_check", "{explained:?}");
    for _ in 0..3 {
        assert_eq!(read_v(&c, &t, 1).await, (2, primary_port), "replay paused");
    }
    let routed = common::metric(
        on.metrics_port,
        "pgpool_rs_queries_routed_total{node=\"0\",reason=\"read_your_writes\"}",
    );
    assert!(routed.is_some_and(|n| n >= 3.0), "{routed:?}");

    replica
        .batch_execute("select pg_wal_replay_resume()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + WAIT;
    loop {
        let (v, port) = read_v(&c, &t, 1).await;
        assert_eq!(v, 2, "never stale");
        if port == replica_port {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads never went back to the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Caught up: the next reads stay on the replica without waiting for another write.
    assert_eq!(read_v(&c, &t, 1).await, (2, replica_port));
}

#[tokio::test]
async fn a_replica_that_stops_during_the_wait_costs_the_read_nothing() {
    let pc = PrivateCluster::start("pc_ryw_stop");
    let t = unique_name("ryw_stop");
    let primary = pc.client(Node::Primary).await;
    create_table(&primary, &t, 1).await;
    private_caught_up(&pc).await;
    // Far longer than the test: the read is still waiting when the replica stops.
    let proxy = Proxy::start(&format!("{}{}", ryw_conf(true, 60_000), pc.proxy_conf()));
    let c = proxy.connect("postgres", "postgres").await;
    assert_eq!(read_v(&c, &t, 1).await, (0, pc.replica_port as i32));
    pc.client(Node::Replica)
        .await
        .batch_execute("select pg_wal_replay_pause()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c.batch_execute(&format!("update {t} set v = 5 where id = 1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read = tokio::spawn(async move { read_v(&c, &t, 1).await });
    // The read waits for replay, which is paused: it is still waiting when the replica stops
    // (an answer before then would be from a replica that cannot have the row).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !read.is_finished(),
        "the read did not wait for the paused replica"
    );
    pc.stop(Node::Replica);
    let answer = read.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer, (5, pc.primary_port as i32), "{}", proxy.log());
    assert!(
        proxy.log().contains("read_your_writes check"),
        "{}",
        proxy.log()
    );
}

/// The primary's last statement on the backend serving `app` (pg_stat_activity shows an
/// idle backend's last query), if it has one there.
async fn last_primary_query(primary: &Client, app: &str) -> Vec<String> {
    primary
        .query(
            "select query from pg_stat_activity where application_name = $1",
            &[&app],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_session_that_never_writes_asks_the_primary_nothing() {
    let t = unique_name("ryw_ro");
    let primary = common::primary_client().await;
    create_table(&primary, &t, 1).await;
    common::wait_replica_caught_up().await;
    // A long timeout: the writer's read must find the replica caught up, so its primary
    // connection's last statement stays the position query.
    let proxy = Proxy::start(&ryw_conf(true, 10_000));
    let replica = cluster().replica_port as i32;
    let connect = |app: String| {
        let conn = format!(
            "{} application_name={app}",
            proxy.conn_str("postgres", "postgres")
        );
        async move {
            common::connect_str(&conn)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };

    // Control: a session that writes, then reads, leaves the position query as its
    // primary connection's last statement, so the check below can see one.
    let writer_app = unique_name("writer");
    let writer = connect(writer_app.clone()).await;
    writer
        .batch_execute(&format!("update {t} set v = 1 where id = 1"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read_v(&writer, &t, 1).await, (1, replica));
    let seen = last_primary_query(&primary, &writer_app).await;
    assert!(
        seen.iter().any(|q| q.contains("pg_current_wal_")),
        "{seen:?}"
    );

    common::wait_replica_caught_up().await;
    let reader_app = unique_name("reader");
    let reader = connect(reader_app.clone()).await;
    for _ in 0..20 {
        assert_eq!(read_v(&reader, &t, 1).await, (1, replica));
    }
    let seen = last_primary_query(&primary, &reader_app).await;
    assert!(
        !seen.iter().any(|q| q.contains("wal")),
        "a read-only session asked the primary for its WAL position: {seen:?}"
    );
    drop(writer);
}
