//! The metrics and health HTTP server: `/metrics` parses as OpenMetrics (Python's strict
//! `prometheus_client` parser when installed, and the `prometheus-parse` crate always), its
//! counters move with traffic proven by `inet_server_port()`, and `/healthz` `/readyz`
//! answer as Kubernetes probes expect.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{cluster, http_get, Proxy};
use prometheus_parse::{Scrape, Value};

/// Weights that send every session's reads to the replica.
const READS_TO_REPLICA: &str = "backend_weight0 = 0\nbackend_weight1 = 1\n";

/// GET `path`; returns (status code, content type, body).
/// Validates with the strict OpenMetrics parser of Python's prometheus_client, if present.
fn strict_parse(text: &str) {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        print(len(list(text_string_to_metric_families(sys.stdin.read()))))\n";
    let child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("python3 not found: strict OpenMetrics check skipped");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named 'prometheus_client'") {
        eprintln!("prometheus_client not installed: strict OpenMetrics check skipped");
        return;
    }
    assert!(
        out.status.success(),
        "OpenMetrics parse failed: {err}\n{text}"
    );
}

fn scrape(proxy: &Proxy) -> Scrape {
    let (status, ctype, body) = http_get(proxy.metrics_port, "/metrics");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(body.ends_with("# EOF\n"));
    strict_parse(&body);
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parse /metrics")
}

/// The value of `metric` whose labels include every `(k, v)` of `labels`.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)));
    match sample.map(|x| &x.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(Value::Histogram(h)) => h.last().map_or(0.0, |b| b.count),
        other => panic!("{metric}{labels:?}: {other:?}"),
    }
}

#[tokio::test]
async fn metrics_parse_and_counters_move_with_traffic() {
    let proxy = Proxy::start(READS_TO_REPLICA);
    let replica_port = cluster().replica_port.to_string();
    let standby = [("hostname", "127.0.0.1"), ("port", replica_port.as_str())];
    let before = scrape(&proxy);
    assert_eq!(value(&before, "pgpool2_up", &[]), 1.0);
    let c = proxy.connect("postgres", "postgres").await;
    for _ in 0..5 {
        let port: i32 = c
            .query_one("select inet_server_port()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(port, cluster().replica_port as i32);
    }
    let after = scrape(&proxy);
    let moved = |m: &str, l: &[(&str, &str)]| value(&after, m, l) - value(&before, m, l);
    assert_eq!(moved("pgpool2_pool_nodes_select_cnt", &standby), 5.0);
    assert_eq!(
        moved("pgpool2_pool_backend_stats_select_cnt", &standby),
        5.0
    );
    let routed = after
        .samples
        .iter()
        .filter(|s| s.metric == "pgpool_rs_queries_routed_total")
        .filter(|s| s.labels.get("node") == Some("1"))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum::<f64>();
    assert!(routed >= 5.0, "reads routed to node 1: {routed}");
    // tokio-postgres prepares, then executes: two requests (two ReadyForQuery) per query.
    let answered = value(&after, "pgpool_rs_query_duration_seconds", &[("node", "1")]);
    assert_eq!(answered, 10.0);
    assert_eq!(
        value(&after, "pgpool_rs_client_sessions", &[("state", "active")]),
        1.0
    );
    let opened = [("node", "1"), ("event", "opened")];
    assert_eq!(
        value(&after, "pgpool_rs_backend_connections_total", &opened),
        1.0
    );
    let used = [("username", "postgres"), ("database", "postgres")];
    assert_eq!(value(&after, "pgpool2_frontend_used", &used), 1.0);
    assert_eq!(value(&after, "pgpool2_frontend_total", &[]), 32.0);
}

#[tokio::test]
async fn failed_logins_are_counted_by_reason() {
    let proxy = Proxy::start("");
    let role = common::unique_name("mx");
    let admin = common::primary_client().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'right'; GRANT md5_users TO {role}"
        ))
        .await
        .unwrap();
    let failures = |s: &Scrape| -> f64 {
        ["password", "rejected", "timeout", "other"]
            .iter()
            .map(|r| value(s, "pgpool_rs_auth_failures_total", &[("reason", r)]))
            .sum()
    };
    let before = failures(&scrape(&proxy));
    assert!(proxy
        .try_connect(&role, "postgres", Some("wrong"))
        .await
        .is_err());
    let after = failures(&scrape(&proxy));
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    assert_eq!(after - before, 1.0);
}

#[test]
fn health_and_readiness_endpoints() {
    let proxy = Proxy::start("");
    assert_eq!(http_get(proxy.metrics_port, "/healthz").0, 200);
    assert_eq!(http_get(proxy.metrics_port, "/readyz").0, 200);
    assert_eq!(http_get(proxy.metrics_port, "/nope").0, 404);
    // A primary nobody listens on: alive, but not ready.
    let down = Proxy::start(&format!("backend_port0 = {}\n", common::free_port()));
    assert_eq!(http_get(down.metrics_port, "/healthz").0, 200);
    let (status, _, body) = http_get(down.metrics_port, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("unreachable") || body.contains("did not answer"),
        "{body}"
    );
}

/// A second session's read runs on the replica connection the first one left in the cache
/// (same server pid): counted as reused, not opened.
#[tokio::test]
async fn a_cached_connection_taken_again_counts_as_reused() {
    let proxy = Proxy::start(READS_TO_REPLICA);
    let ran_on = |c: tokio_postgres::Client| async move {
        let row = c
            .query_one("select inet_server_port(), pg_backend_pid()", &[])
            .await
            .unwrap();
        let (port, pid): (i32, i32) = (row.get(0), row.get(1));
        assert_eq!(port, cluster().replica_port as i32);
        pid
    };
    let first = ran_on(proxy.connect("postgres", "postgres").await).await;
    let cached = "pgpool_rs_cached_connections{node=\"1\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while common::metric(proxy.metrics_port, cached) != Some(1.0) {
        assert!(std::time::Instant::now() < deadline, "never cached");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = scrape(&proxy);
    let second = ran_on(proxy.connect("postgres", "postgres").await).await;
    assert_eq!(
        second, first,
        "the second session ran on the cached connection"
    );
    let after = scrape(&proxy);
    let moved = |event: &str| {
        let l = [("node", "1"), ("event", event)];
        value(&after, "pgpool_rs_backend_connections_total", &l)
            - value(&before, "pgpool_rs_backend_connections_total", &l)
    };
    assert_eq!((moved("reused"), moved("opened")), (1.0, 0.0));
}

/// `*` is every interface, IPv6 as well as IPv4: Kubernetes probes on an IPv6-only pod
/// reach `/healthz` over `::1`.
#[test]
fn metrics_and_probes_listen_on_ipv6_and_ipv4_for_star() {
    use std::io::{Read, Write};
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("this machine has no IPv6 loopback (::1): skipped");
        return;
    }
    let proxy = Proxy::start("metrics_listen_addresses = '*'\n");
    for host in ["::1", "127.0.0.1"] {
        let mut s = std::net::TcpStream::connect((host, proxy.metrics_port))
            .unwrap_or_else(|e| panic!("connect to the metrics port on {host}: {e}"));
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        assert!(raw.starts_with("HTTP/1.1 200"), "{host}: {raw}");
    }
}

/// With every client slot taken (num_init_children = 1, no reserved connections), a second
/// client waits in the queue: the gauge shows it, and drops back once the slot came free.
#[tokio::test]
async fn a_client_waiting_for_a_slot_is_shown_until_it_gets_one() {
    let proxy = Proxy::start("num_init_children = 1\nreserved_connections = 0");
    let first = proxy.connect("postgres", "postgres").await;
    first.simple_query("select 1").await.expect("first client");
    let waiting = [("state", "waiting")];
    let gauge = |proxy: &Proxy| value(&scrape(proxy), "pgpool_rs_client_sessions", &waiting);
    assert_eq!(gauge(&proxy), 0.0);
    let conn = proxy.conn_str("postgres", "postgres");
    let second = tokio::spawn(async move { common::connect_str(&conn).await });
    let mut seen = 0.0;
    for _ in 0..100 {
        seen = gauge(&proxy);
        if seen == 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 1.0, "the waiting client is counted");
    drop(first);
    let second = second
        .await
        .expect("second client task")
        .expect("second client connects once the slot is free");
    second
        .simple_query("select 1")
        .await
        .expect("second client, admitted");
    assert_eq!(gauge(&proxy), 0.0, "an admitted client no longer waits");
}
