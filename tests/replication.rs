//! Replica health and replication delay: a replica that dies, lags or is promoted costs
//! reads nothing but a trip to the primary; a primary that dies gives clean errors and the
//! proxy recovers by itself. Fault tests run on a private cluster each (they stop servers).
//! Routing is proven by `inet_server_port()`, never by the proxy's own counters.

mod common;

use std::time::{Duration, Instant};

use common::{cluster, free_port, Node, PrivateCluster, Proxy};
use tokio_postgres::Client;

/// Weights that send every session's reads to the replica.
const ALL_READS_TO_REPLICA: &str = "backend_weight0 = 0\nbackend_weight1 = 1\n";

/// Bound for anything that waits on a server or a check period.
const WAIT: Duration = Duration::from_secs(30);

async fn answered_by(c: &Client, sql: &str) -> i32 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// Polls a fresh session's plain read until it is answered on `port` (bounded by [`WAIT`]).
async fn wait_reads_on(proxy: &Proxy, port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(c) = proxy.try_connect("postgres", "postgres", None).await {
            if let Ok(row) = c.query_one("select inet_server_port()", &[]).await {
                if row.get::<_, i32>(0) == port as i32 {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: reads did not go to port {port} within {WAIT:?}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn unreachable_replica_sends_reads_to_the_primary_without_error() {
    let conf = format!("{ALL_READS_TO_REPLICA}backend_port1 = {}\n", free_port());
    let proxy = Proxy::start(&conf);
    let primary = cluster().primary_port as i32;
    for _ in 0..2 {
        let c = proxy.connect("postgres", "postgres").await;
        for _ in 0..3 {
            assert_eq!(answered_by(&c, "select inet_server_port()").await, primary);
        }
    }
    let log = proxy.log();
    assert!(log.contains("backend marked down"), "{log}");
}

/// `pgbench -i` directly on the private primary, then wait until the replica has it.
async fn init_pgbench(pc: &PrivateCluster) {
    common::pgbench_init(pc.primary_port, "postgres");
    wait_caught_up(pc).await;
}

async fn wait_caught_up(pc: &PrivateCluster) {
    let (p, r) = (
        pc.client(Node::Primary).await,
        pc.client(Node::Replica).await,
    );
    let target: String = p
        .query_one("select pg_current_wal_lsn()::text", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    let deadline = Instant::now() + WAIT;
    let sql = "select pg_last_wal_replay_lsn() >= $1::text::pg_lsn";
    while !r
        .query_one(sql, &[&target])
        .await
        .is_ok_and(|row| row.get(0))
    {
        assert!(Instant::now() < deadline, "replica did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sessions of `application_name` connected to the replica right now.
async fn sessions_on_replica(pc: &PrivateCluster, app: &str) -> i64 {
    let Ok(c) = common::connect_str(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
        pc.replica_port
    ))
    .await
    else {
        return 0;
    };
    let sql = "select count(*) from pg_stat_activity where application_name = $1";
    c.query_one(sql, &[&app]).await.map_or(0, |r| r.get(0))
}

#[tokio::test]
async fn replica_stop_during_pgbench_fails_no_transaction_and_reads_come_back() {
    let pc = PrivateCluster::start("pc_stop");
    init_pgbench(&pc).await;
    let proxy = Proxy::start(&format!("{ALL_READS_TO_REPLICA}{}", pc.proxy_conf()));
    let port = proxy.port;
    let bench = std::thread::spawn(move || {
        let args = ["-S", "-n", "-c", "8", "-j", "2", "-T", "15", "postgres"];
        common::pgbench(port, &args)
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sessions_on_replica(&pc, "pgbench").await > 0,
        "reads ran on the replica"
    );
    pc.stop(Node::Replica);
    wait_reads_on(&proxy, pc.primary_port, "replica stopped").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pc.restart(Node::Replica);
    // The running pgbench sessions (not only new ones) come back to the replica.
    let deadline = Instant::now() + Duration::from_secs(8);
    while sessions_on_replica(&pc, "pgbench").await == 0 {
        assert!(
            Instant::now() < deadline,
            "pgbench reads did not return to the replica\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_reads_on(&proxy, pc.replica_port, "replica restarted").await;
    let out = bench
        .join()
        .unwrap_or_else(|_| panic!("pgbench thread panicked"));
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pgbench: {text}\n{err}\n{}",
        proxy.log()
    );
    assert!(
        text.contains("number of failed transactions: 0 (0.000%)"),
        "{text}\n{err}"
    );
    assert!(!err.contains("aborted"), "{err}");
    assert!(
        proxy.log().contains("backend marked down"),
        "{}",
        proxy.log()
    );
}

#[tokio::test]
async fn paused_replay_moves_reads_to_the_primary_until_resumed() {
    let pc = PrivateCluster::start("pc_lag");
    let threshold: u64 = 1_000_000;
    let conf = format!(
        "{ALL_READS_TO_REPLICA}{}sr_check_period = 1\nsr_check_user = 'postgres'\n\
         delay_threshold = {threshold}\nlog_standby_delay = 'always'\n",
        pc.proxy_conf()
    );
    let proxy = Proxy::start(&conf);
    wait_reads_on(&proxy, pc.replica_port, "before the pause").await;
    let replica = pc.client(Node::Replica).await;
    let primary = pc.client(Node::Primary).await;
    replica
        .batch_execute("select pg_wal_replay_pause()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t = common::unique_name("lag");
    let fill =
        format!("create table {t} as select g, repeat('x', 200) from generate_series(1, 50000) g");
    primary
        .batch_execute(&fill)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_reads_on(&proxy, pc.primary_port, "replay paused").await;

    // The delay the proxy reports matches the test's own measurement (replay is paused and
    // nothing writes, so both sides stand still).
    let replay: String = replica
        .query_one("select pg_last_wal_replay_lsn()::text", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    let own: i64 = primary
        .query_one(
            "select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::bigint",
            &[&replay],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert!(
        own as u64 > threshold,
        "the test wrote {own} bytes, not past {threshold}"
    );
    let lines_before = proxy.log().lines().count();
    let deadline = Instant::now() + WAIT;
    let reported = loop {
        let log = proxy.log();
        let last = log
            .lines()
            .skip(lines_before)
            .filter_map(|l| l.split("Replication of node: 1 is behind ").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<i64>().ok())
            .last();
        if let Some(n) = last {
            break n;
        }
        assert!(Instant::now() < deadline, "no delay logged\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        (reported - own).abs() <= 64 * 1024,
        "proxy says {reported} bytes, the servers say {own}"
    );
    // SHOW pool_nodes reports the same delay, with the replica's live role and state.
    let admin = proxy.connect("postgres", "postgres").await;
    let rows: Vec<Vec<String>> = admin
        .simple_query("SHOW pool_nodes")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    let node1 = rows.iter().find(|r| r[0] == "1").expect("node 1 row");
    // Columns: node_id hostname port status pg_status lb_weight role pg_role select_cnt
    // load_balance_node replication_delay replication_state replication_sync_state …
    let shown: i64 = node1[10].parse().unwrap_or(-1);
    assert!(
        (shown - own).abs() <= 64 * 1024,
        "SHOW pool_nodes says {shown} bytes, the servers say {own}"
    );
    assert_eq!(node1[7], "standby", "pg_role of the replica");

    replica
        .batch_execute("select pg_wal_replay_resume()")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_reads_on(&proxy, pc.replica_port, "replay resumed").await;
    primary
        .batch_execute(&format!("drop table {t}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn primary_failure_gives_clean_errors_and_recovers_without_restart() {
    let pc = PrivateCluster::start("pc_primary");
    let proxy = Proxy::start(&pc.proxy_conf());
    let busy = proxy.connect("postgres", "postgres").await;
    let running = tokio::spawn(async move { busy.batch_execute("select pg_sleep(60)").await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    pc.stop(Node::Primary);
    let e = running
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .expect_err("the query cannot survive the primary");
    let code = e.code().map(|c| c.code().to_string());
    assert!(
        matches!(code.as_deref(), Some("57P01") | Some("08006")),
        "in-flight error {e:?}"
    );

    let started = Instant::now();
    let refused = proxy
        .try_connect("postgres", "postgres", None)
        .await
        .err()
        .unwrap_or_else(|| panic!("a session started while the primary is down"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "new sessions must fail fast"
    );
    let message = refused.as_db_error().map(|d| d.message().to_string());
    assert!(
        message.is_some_and(|m| m.contains("failed to create a backend 0 connection")),
        "{refused:?}"
    );

    pc.restart(Node::Primary);
    let deadline = Instant::now() + WAIT;
    let c = loop {
        if let Ok(c) = proxy.try_connect("postgres", "postgres", None).await {
            break c;
        }
        assert!(Instant::now() < deadline, "no recovery\n{}", proxy.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let t = common::unique_name("back");
    c.batch_execute(&format!("create table {t}(x int); drop table {t}"))
        .await
        .unwrap_or_else(|e| panic!("a write after recovery: {e}"));
}

#[tokio::test]
async fn promoted_replica_gets_no_replica_reads() {
    let pc = PrivateCluster::start("pc_promote");
    let conf = format!(
        "{ALL_READS_TO_REPLICA}{}sr_check_period = 1\nsr_check_user = 'postgres'\n",
        pc.proxy_conf()
    );
    let proxy = Proxy::start(&conf);
    wait_reads_on(&proxy, pc.replica_port, "before promotion").await;
    let session = proxy.connect("postgres", "postgres").await;
    assert_eq!(
        answered_by(&session, "select inet_server_port()").await,
        pc.replica_port as i32
    );
    pc.promote_replica();
    wait_reads_on(&proxy, pc.primary_port, "replica promoted").await;
    // The session that read from the replica before reads from the primary now too.
    assert_eq!(
        answered_by(&session, "select inet_server_port()").await,
        pc.primary_port as i32
    );
    assert!(proxy.log().contains("not in recovery"), "{}", proxy.log());
}
