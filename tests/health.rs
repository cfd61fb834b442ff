//! Health checks and primary detection against real servers: a stopped replica is detached
//! by the health check (before any session trips over it) and back in load balancing once
//! it answers; a switchover without `ALWAYS_PRIMARY` moves writes to the promoted node
//! within a check period, no write ever reaches a node in recovery (SQLSTATE 25006), and
//! `/readyz` follows. Each test runs on a private cluster (they stop and promote servers).

mod common;

use std::time::{Duration, Instant};

use common::{http_get, Node, PrivateCluster, Proxy};

/// Bound for anything that waits on a server or a check period.
const WAIT: Duration = Duration::from_secs(30);

/// A one-second health check as `postgres` (the test servers trust it).
const HEALTH_CHECK: &str = "health_check_period = 1\nhealth_check_user = 'postgres'\n\
                            health_check_timeout = 2\nhealth_check_max_retries = 1\n\
                            health_check_retry_delay = 1\n";

/// `SHOW pool_nodes` rows as (status, pg_status, role, pg_role) for nodes 0 and 1.
async fn pool_nodes(proxy: &Proxy) -> Vec<(String, String, String, String)> {
    let c = proxy.connect("postgres", "postgres").await;
    let rows = c
        .simple_query("SHOW pool_nodes")
        .await
        .unwrap_or_else(|e| panic!("SHOW pool_nodes: {e}"));
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                r.get("status").unwrap_or_default().to_string(),
                r.get("pg_status").unwrap_or_default().to_string(),
                r.get("role").unwrap_or_default().to_string(),
                r.get("pg_role").unwrap_or_default().to_string(),
            )),
            _ => None,
        })
        .collect()
}

/// Polls `SHOW pool_nodes` until `want` holds (bounded by [`WAIT`]).
async fn wait_nodes(
    proxy: &Proxy,
    what: &str,
    want: impl Fn(&[(String, String, String, String)]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let nodes = pool_nodes(proxy).await;
        if want(&nodes) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: SHOW pool_nodes is {nodes:?}\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `SHOW pool_health_check_stats` column `col` of node `node`.
async fn health_stat(proxy: &Proxy, node: usize, col: &str) -> u64 {
    let c = proxy.connect("postgres", "postgres").await;
    let rows = c
        .simple_query("SHOW pool_health_check_stats")
        .await
        .unwrap_or_else(|e| panic!("SHOW pool_health_check_stats: {e}"));
    let rows: Vec<_> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(r.get(col).unwrap_or("").to_string())
            }
            _ => None,
        })
        .collect();
    rows[node]
        .parse()
        .unwrap_or_else(|e| panic!("{col} {rows:?}: {e}"))
}

async fn read_port(proxy: &Proxy) -> i32 {
    let c = proxy.connect("postgres", "postgres").await;
    c.query_one("select inet_server_port()", &[])
        .await
        .unwrap_or_else(|e| panic!("read: {e}"))
        .get(0)
}

#[tokio::test]
async fn health_check_detaches_a_stopped_replica_and_restores_it() {
    let pc = PrivateCluster::start("hc-replica");
    // No cached connections: none of them can see the replica stop, only the check can.
    let conf = format!(
        "{}{HEALTH_CHECK}backend_weight0 = 0\nbackend_weight1 = 1\nconnection_cache = off\n",
        pc.proxy_conf()
    );
    let proxy = Proxy::start(&conf);
    // Checked and reached: both up without any session having read from the replica.
    wait_nodes(&proxy, "both nodes checked", |n| {
        n.len() == 2 && n.iter().all(|r| r.0 == "up" && r.1 == "up")
    })
    .await;
    let nodes = pool_nodes(&proxy).await;
    assert_eq!(
        (nodes[0].3.as_str(), nodes[1].3.as_str()),
        ("primary", "standby")
    );
    assert_eq!(read_port(&proxy).await, pc.replica_port as i32);

    // Let the session that read end, so that no session holds a replica connection.
    tokio::time::sleep(Duration::from_secs(1)).await;
    pc.stop(Node::Replica);
    wait_nodes(&proxy, "replica detached", |n| n[1].0 == "down").await;
    let log = proxy.log();
    assert!(log.contains("backend marked down: health check"), "{log}");
    // The health check counts the failure (after its one retry).
    let deadline = Instant::now() + WAIT;
    while health_stat(&proxy, 1, "fail_count").await == 0 {
        assert!(
            Instant::now() < deadline,
            "no failed health check\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(health_stat(&proxy, 1, "retry_count").await >= 1);
    // The same counts on /metrics (pgpool2_exporter's names).
    let (_, _, body) = http_get(proxy.metrics_port, "/metrics");
    let port = format!("port=\"{}\"", pc.replica_port);
    let fails = body
        .lines()
        .find(|l| l.starts_with("pgpool2_pool_health_check_stats_fail_count{") && l.contains(&port))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no fail_count for the replica:\n{body}"));
    assert!(fails >= 1.0, "{fails}");
    for _ in 0..3 {
        assert_eq!(read_port(&proxy).await, pc.primary_port as i32);
    }

    pc.restart(Node::Replica);
    wait_nodes(&proxy, "replica back", |n| n[1].0 == "up").await;
    assert_eq!(read_port(&proxy).await, pc.replica_port as i32);
    assert!(health_stat(&proxy, 0, "success_count").await >= 2);
}

/// Inserts one row through a fresh session; Ok(port of the server that took the write).
async fn write_once(proxy: &Proxy) -> Result<i32, String> {
    let c = proxy
        .try_connect("postgres", "postgres", None)
        .await
        .map_err(|e| e.to_string())?;
    match c
        .query_one(
            "insert into sw values (1) returning inet_server_port()",
            &[],
        )
        .await
    {
        Ok(row) => Ok(row.get(0)),
        Err(e) => {
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            assert_ne!(code, "25006", "a write reached a node in recovery: {e}");
            Err(e.to_string())
        }
    }
}

fn ready(proxy: &Proxy) -> u16 {
    http_get(proxy.metrics_port, "/readyz").0
}

#[tokio::test]
async fn switchover_without_always_primary_moves_writes_to_the_promoted_node() {
    let pc = PrivateCluster::start("hc-switchover");
    // Later lines win: no ALWAYS_PRIMARY anywhere, the primary is detected.
    let conf = format!(
        "{}{HEALTH_CHECK}backend_flag0 = 'ALLOW_TO_FAILOVER'\nbackend_flag1 = 'ALLOW_TO_FAILOVER'\n",
        pc.proxy_conf()
    );
    let proxy = Proxy::start(&conf);
    let direct = pc.client(Node::Primary).await;
    direct
        .batch_execute("create table sw (i int)")
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    drop(direct);
    assert_eq!(write_once(&proxy).await, Ok(pc.primary_port as i32));
    assert_eq!(ready(&proxy), 200);
    let before = proxy.connect("postgres", "postgres").await;

    pc.stop(Node::Primary);
    // No writable primary while the old one is gone and the replica is not promoted.
    let deadline = Instant::now() + WAIT;
    while ready(&proxy) == 200 {
        assert!(
            Instant::now() < deadline,
            "/readyz stayed 200\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pc.promote_replica();
    pc.follow(Node::Primary, Node::Replica);
    pc.restart(Node::Primary);

    // Writes follow within a check period or so, and none goes to the old primary (now
    // in recovery): `write_once` fails the test on SQLSTATE 25006.
    let promoted = Instant::now();
    let deadline = promoted + WAIT;
    loop {
        match write_once(&proxy).await {
            Ok(port) if port == pc.replica_port as i32 => break,
            Ok(port) => panic!("a write went to port {port}, which is in recovery"),
            Err(e) => assert!(
                Instant::now() < deadline,
                "writes did not follow the switchover: {e}\n{}",
                proxy.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        promoted.elapsed() < Duration::from_secs(10),
        "writes took {:?} to follow",
        promoted.elapsed()
    );
    assert_eq!(ready(&proxy), 200, "{}", proxy.log());
    assert_eq!(
        common::metric(proxy.metrics_port, "pgpool_rs_primary_node"),
        Some(1.0)
    );
    wait_nodes(&proxy, "roles swapped", |n| {
        n[0].2 == "standby" && n[0].3 == "standby" && n[1].2 == "primary" && n[1].3 == "primary"
    })
    .await;
    // A session from before the switchover does not write to the old primary.
    let old = before
        .query_one(
            "insert into sw values (2) returning inet_server_port()",
            &[],
        )
        .await;
    if let Err(e) = &old {
        let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
        assert_ne!(code, "25006", "{e}");
    }
    // Reads are balanced over the new standby again.
    let deadline = Instant::now() + WAIT;
    while read_port(&proxy).await != pc.primary_port as i32 {
        assert!(Instant::now() < deadline, "no read reached the new standby");
    }
}

/// `pgpool -f <conf> [-a <hba>] check` in `dir`: (exit ok, stdout, stderr).
fn check_cli(dir: &std::path::Path, conf: &str, hba: Option<&str>) -> (bool, String, String) {
    let conf_path = dir.join("pgpool.conf");
    std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgpool"));
    cmd.arg("-f").arg(&conf_path);
    if let Some(hba) = hba {
        let hba_path = dir.join("pool_hba.conf");
        std::fs::write(&hba_path, hba).unwrap_or_else(|e| panic!("{e}"));
        cmd.arg("-a").arg(&hba_path);
    }
    let out = cmd
        .arg("check")
        .output()
        .unwrap_or_else(|e| panic!("pgpool check: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_names_ignored_settings_once_and_validates_pool_hba() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let base = "backend_hostname0 = 'localhost'\nbackend_port0 = 5432\n";
    let conf = format!("{base}wd_interval = 10\nfailover_command = 'x'\n");
    let (ok, _, err) = check_cli(dir.path(), &conf, None);
    assert!(ok, "{err}");
    let warnings: Vec<_> = err
        .lines()
        .filter(|l| l.contains("accepted but ignored"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("wd_interval") && warnings[0].contains("failover_command"));

    let (ok, _, err) = check_cli(dir.path(), &format!("{base}use_watchdog = on\n"), None);
    assert!(!ok && err.contains("several pgpool-rs pods"), "{err}");
    assert_eq!(
        err.matches("has no watchdog").count(),
        1,
        "said once: {err}"
    );

    let hba = "host all all 127.0.0.1/32 nonsense\n";
    let conf = format!("{base}enable_pool_hba = on\n");
    let (ok, _, err) = check_cli(dir.path(), &conf, Some(hba));
    assert!(!ok && err.contains("pool_hba.conf"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("nonsense")).count(),
        1,
        "{err}"
    );
}

#[tokio::test]
async fn a_primary_detected_at_node_1_takes_the_writes_and_node_0_the_reads() {
    // The shared cluster listed the other way round: node 0 is the replica. Nothing is
    // stopped or promoted, so the shared cluster is safe to use.
    let cluster = common::cluster();
    let conf = format!(
        "backend_port0 = {}\nbackend_port1 = {}\nbackend_flag0 = 'ALLOW_TO_FAILOVER'\n\
         backend_flag1 = 'ALLOW_TO_FAILOVER'\nbackend_weight0 = 1\nbackend_weight1 = 0\n\
         sr_check_user = 'postgres'\n",
        cluster.replica_port, cluster.primary_port
    );
    let proxy = Proxy::start(&conf);
    let c = proxy.connect("postgres", "postgres").await;
    let table = common::unique_name("hc_detected");
    c.batch_execute(&format!("create table {table} (i int)"))
        .await
        .unwrap_or_else(|e| panic!("create: {e}"));
    let wrote: i32 = c
        .query_one(
            &format!("insert into {table} values (1) returning inet_server_port()"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("insert: {e}"))
        .get(0);
    assert_eq!(wrote, cluster.primary_port as i32);
    let read = proxy.connect("postgres", "postgres").await;
    // (pg_is_in_recovery() is VOLATILE: asking it would count as a write.)
    let row = read
        .query_one("select inet_server_port()", &[])
        .await
        .unwrap_or_else(|e| panic!("read: {e}"));
    assert_eq!(row.get::<_, i32>(0), cluster.replica_port as i32);
    let nodes = pool_nodes(&proxy).await;
    assert_eq!(
        (nodes[0].2.as_str(), nodes[1].2.as_str()),
        ("standby", "primary")
    );
    assert_eq!(ready(&proxy), 200);
    c.batch_execute(&format!("drop table {table}"))
        .await
        .unwrap();
}
