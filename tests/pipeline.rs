//! Pipelines and batches behave as on PostgreSQL: everything between two sync points (Sync,
//! a simple Query) is one implicit transaction on one server, whatever the router would say
//! about its parts; a connection goes back to the cache only after its last ReadyForQuery
//! said idle; a statement exists only once the server answered its Parse; and a long batch
//! costs the proxy time linear in its messages.
//!
//! Each scenario runs twice, straight to the primary and through the proxy, and the two
//! transcripts (and what got committed) must be the same.

mod common;

use std::time::Duration;

use common::wire::{self, batch, bind, describe, execute, flush, parse, sync, Msg, Wire};
use common::{cluster, primary_client, unique_name, wait_replica_caught_up, Proxy};

/// Every read the router may balance goes to the replica (node 1): a batch split between the
/// servers shows at once.
const READS_ON_REPLICA: &str = "backend_weight0 = 0\nbackend_weight1 = 1\n";

/// A table on the primary (and, once replayed, the replica).
async fn new_table() -> String {
    let t = unique_name("pl");
    primary_client()
        .await
        .batch_execute(&format!("CREATE TABLE {t} (id serial PRIMARY KEY, v int)"))
        .await
        .unwrap();
    t
}

/// Rows of `t` committed on the primary, as seen by another session.
async fn committed(t: &str) -> i64 {
    primary_client()
        .await
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// A request the server leaves unanswered.
const NOTHING: u8 = 0;

/// One request and what ends its answer (`b'Z'`, a tag of a Flush-ended batch's answer, or
/// [`NOTHING`]).
struct Step {
    send: Vec<u8>,
    until: u8,
}

fn step(parts: &[Vec<u8>], until: u8) -> Step {
    Step {
        send: batch(parts),
        until,
    }
}

/// What a client saw: per step, the message tags with SQLSTATEs and first values spelled out.
fn transcript(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|m| match (m.sqlstate(), m.first_value()) {
            (Some(code), _) => format!("E[{code}]"),
            (_, Some(v)) if m.tag == b'D' => format!("D[{v}]"),
            _ if m.tag == b'Z' => format!("Z[{}]", m.body[0] as char),
            _ => (m.tag as char).to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `steps` (built for table `t`) on a connection to `port`; returns the transcript and
/// the rows of `t` committed while the session is still open.
async fn run(port: u16, t: &str, steps: &dyn Fn(&str) -> Vec<Step>) -> (Vec<String>, i64) {
    let mut w = Wire::connect(port, "postgres", "postgres").await;
    let mut seen = Vec::new();
    for s in steps(t) {
        w.send(&s.send).await;
        if s.until == NOTHING {
            let quiet = w.quiet_for(Duration::from_millis(300)).await;
            seen.push(if quiet { "(nothing)" } else { "(an answer)" }.to_string());
        } else {
            seen.push(transcript(&w.read_until(s.until).await));
        }
    }
    // One ReadyForQuery per sync point, no more.
    assert!(
        w.quiet_for(Duration::from_millis(300)).await,
        "more answers than requests"
    );
    let rows = committed(t).await;
    w.terminate().await;
    (seen, rows)
}

/// The scenario straight to the primary and through a proxy with `conf`: same answers,
/// same rows committed.
async fn same_as_postgres(conf: &str, steps: &dyn Fn(&str) -> Vec<Step>) -> (Vec<String>, i64) {
    let (direct_t, proxied_t) = (new_table().await, new_table().await);
    wait_replica_caught_up().await;
    let direct = run(cluster().primary_port, &direct_t, steps).await;
    let proxy = Proxy::start(conf);
    let proxied = run(proxy.port, &proxied_t, steps).await;
    assert_eq!(
        proxied, direct,
        "through the proxy vs. straight to PostgreSQL"
    );
    direct
}

fn insert(t: &str, v: i32) -> Vec<u8> {
    parse(
        "",
        &format!("INSERT INTO {t} (v) VALUES ({v}) RETURNING id"),
    )
}

fn count(t: &str) -> Vec<u8> {
    parse("", &format!("SELECT count(*) FROM {t}"))
}

/// psycopg's pipeline: INSERT … RETURNING fetched with a Flush, then a read batch with Sync.
fn insert_flush_then_read_sync(t: &str) -> Vec<Step> {
    vec![
        step(
            &[
                insert(t, 1),
                bind("", ""),
                describe(b'P', ""),
                execute(""),
                flush(),
            ],
            b'C',
        ),
        step(
            &[
                count(t),
                bind("", ""),
                describe(b'P', ""),
                execute(""),
                sync(),
            ],
            b'Z',
        ),
    ]
}

#[tokio::test]
async fn a_write_before_a_flush_commits_with_the_read_batch_that_syncs() {
    let (seen, rows) = same_as_postgres(READS_ON_REPLICA, &insert_flush_then_read_sync).await;
    assert_eq!(rows, 1, "{seen:?}");
    // The read ran in the same implicit transaction: it saw the row.
    assert!(seen[1].contains("D[1]"), "{seen:?}");
}

#[tokio::test]
async fn a_write_before_a_flush_commits_with_disable_load_balance_on_write_always() {
    let conf = format!("{READS_ON_REPLICA}disable_load_balance_on_write = 'always'\n");
    let (_, rows) = same_as_postgres(&conf, &insert_flush_then_read_sync).await;
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_write_before_a_flush_commits_with_a_describe_only_batch_that_syncs() {
    let steps = |t: &str| {
        vec![
            step(&[insert(t, 1), bind("", ""), execute(""), flush()], b'C'),
            step(&[count(t), describe(b'S', ""), sync()], b'Z'),
        ]
    };
    let (_, rows) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_simple_query_after_a_flush_commits_the_batch() {
    let steps = |t: &str| {
        vec![
            step(&[insert(t, 1), bind("", ""), execute(""), flush()], b'C'),
            step(&[wire::query(&format!("SELECT count(*) FROM {t}"))], b'Z'),
        ]
    };
    let (seen, rows) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert_eq!(rows, 1, "{seen:?}");
}

/// After an error PostgreSQL skips everything up to Sync, across Flushes: the write before
/// the error and the one after it both roll back.
#[tokio::test]
async fn an_error_after_a_flush_discards_the_unit_up_to_sync() {
    let steps = |t: &str| {
        vec![
            step(&[insert(t, 1), bind("", ""), execute(""), flush()], b'C'),
            step(
                &[parse("", "SELECT 1/0"), bind("", ""), execute(""), flush()],
                b'E',
            ),
            step(&[insert(t, 2), bind("", ""), execute(""), sync()], b'Z'),
        ]
    };
    let (seen, rows) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert_eq!(rows, 0, "{seen:?}");
}

/// The override shows: while a unit is open `PGPOOL EXPLAIN ROUTE` names it (and runs no
/// catalog look-up inside it), and its requests are counted under their own routing reason.
#[tokio::test]
async fn an_open_unit_shows_in_explain_and_metrics() {
    let t = new_table().await;
    wait_replica_caught_up().await;
    let proxy = Proxy::start(READS_ON_REPLICA);
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    w.send(&wire::query("PGPOOL EXPLAIN ROUTE SELECT 1")).await;
    let before = w.read_until_ready().await;
    w.send(&batch(&[insert(&t, 1), bind("", ""), execute(""), flush()]))
        .await;
    w.read_until(b'C').await;
    // A function the proxy has never looked up: outside a unit it would ask the primary's
    // catalog, which inside the unit would commit the client's INSERT early.
    let unknown = unique_name("fn");
    w.send(&wire::query(&format!(
        "PGPOOL EXPLAIN ROUTE SELECT {unknown}()"
    )))
    .await;
    let during = w.read_until_ready().await;
    assert_eq!(committed(&t).await, 0, "the unit is still open");
    w.send(&batch(&[count(&t), bind("", ""), execute(""), sync()]))
        .await;
    w.read_until_ready().await;
    assert_eq!(committed(&t).await, 1);
    let text = |m: &[Msg]| {
        m.iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect::<String>()
    };
    assert!(
        !text(&before).contains("unsynced_batch"),
        "{}",
        text(&before)
    );
    assert!(
        text(&during).contains("unsynced_batch"),
        "{}",
        text(&during)
    );
    let series = r#"pgpool_rs_queries_routed_total{node="0",reason="unsynced_batch"}"#;
    assert_eq!(common::metric(proxy.metrics_port, series), Some(2.0));
}

/// While the server skips to Sync after an error in a Flush-ended batch it ignores a simple
/// Query outright (no answer at all); the Sync then ends the unit, and the session goes on,
/// reads on the replica included.
#[tokio::test]
async fn a_simple_query_while_skipping_to_sync_is_ignored() {
    let steps = |t: &str| {
        vec![
            step(&[insert(t, 1), bind("", ""), execute(""), flush()], b'C'),
            step(
                &[parse("", "SELECT 1/0"), bind("", ""), execute(""), flush()],
                b'E',
            ),
            step(&[wire::query("SELECT 42")], NOTHING),
            step(&[sync()], b'Z'),
            step(
                &[parse("", "SELECT 7"), bind("", ""), execute(""), sync()],
                b'Z',
            ),
            step(&[wire::close(b'S', "never_prepared"), sync()], b'Z'),
        ]
    };
    let (seen, rows) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert_eq!(rows, 0, "{seen:?}");
    assert_eq!(seen[2], "(nothing)");
    assert!(seen[4].contains("D[7]"), "{seen:?}");
}

/// A backend left with an implicit transaction open (Flush, then the client went away) is
/// not cached: else the next session's statement commits the orphaned write.
#[tokio::test]
async fn a_connection_left_without_sync_is_not_cached() {
    let t = new_table().await;
    let proxy = Proxy::start("connection_cache = on\n");
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    w.send(&batch(&[insert(&t, 1), bind("", ""), execute(""), flush()]))
        .await;
    w.read_until(b'C').await;
    w.terminate().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same startup parameters, so the same cache entry.
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    w.send(&wire::query(&format!("INSERT INTO {t} (v) VALUES (2)")))
        .await;
    w.read_until_ready().await;
    let vs: Vec<i32> = primary_client()
        .await
        .query(&format!("SELECT v FROM {t} ORDER BY v"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(vs, [2], "the abandoned INSERT must never commit");
}

/// A Parse after an error is skipped by the server: the name stays unknown (26000)
/// wherever a later Describe or Bind goes. A Close after an error is skipped too: the
/// statement still exists.
#[tokio::test]
async fn statements_exist_only_when_the_server_prepared_them() {
    let steps = |t: &str| {
        let failing = || vec![parse("", "SELECT 1/0"), bind("", ""), execute("")];
        vec![
            step(
                &[failing(), vec![parse("never", "SELECT 2"), sync()]].concat(),
                b'Z',
            ),
            step(&[describe(b'S', "never"), sync()], b'Z'),
            step(&[bind("", "never"), execute(""), sync()], b'Z'),
            step(&[parse("kept", "SELECT 3"), sync()], b'Z'),
            step(
                &[failing(), vec![wire::close(b'S', "kept"), sync()]].concat(),
                b'Z',
            ),
            step(&[describe(b'S', "kept"), sync()], b'Z'),
            step(&[bind("", "kept"), execute(""), sync()], b'Z'),
            step(&[wire::close(b'S', "no_such_name"), sync()], b'Z'),
            // A name that exists cannot be parsed again (42P05), on whichever server.
            step(
                &[
                    parse("dup", &format!("INSERT INTO {t} (v) VALUES (1)")),
                    sync(),
                ],
                b'Z',
            ),
            step(&[parse("dup", "SELECT 4"), sync()], b'Z'),
            step(&[describe(b'S', "dup"), sync()], b'Z'),
        ]
    };
    let (seen, _) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert!(seen[1].contains("E[26000]"), "{seen:?}");
    assert!(seen[6].contains("D[3]"), "{seen:?}");
    assert!(seen[9].contains("E[42P05]"), "{seen:?}");
}

/// CPU seconds (user + system) the process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_name.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// 100,000 Parse messages before one Sync: the proxy's work grows with the messages, not
/// with their square.
#[tokio::test]
async fn a_long_batch_costs_linear_time() {
    const N: usize = 100_000;
    let proxy = Proxy::start("");
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    let one = parse("", "SELECT 1");
    let mut req = Vec::with_capacity(one.len() * N + 5);
    for _ in 0..N {
        req.extend_from_slice(&one);
    }
    req.extend(sync());
    let before = cpu_seconds(proxy.pid());
    w.send(&req).await;
    let got = w.read_until_ready().await;
    let spent = cpu_seconds(proxy.pid()) - before;
    eprintln!("{N} Parse messages before a Sync: {spent:.2} s of proxy CPU");
    assert_eq!(got.len(), N + 1);
    assert!(got[..N].iter().all(|m| m.tag == b'1'));
    assert!(
        spent < 3.0,
        "{N} Parse messages cost the proxy {spent:.1} s of CPU"
    );
}

/// psycopg 3 in pipeline mode (libpq's pipeline, Flush to fetch a result before the Sync),
/// writes and reads interleaved: every write commits, every read in the pipeline sees the
/// writes before it, and the rows read back afterwards.
#[tokio::test]
async fn psycopg_pipeline_with_interleaved_writes_and_reads_commits_every_write() {
    if !common::have_psycopg() {
        return;
    }
    const N: i64 = 20;
    let t = new_table().await;
    wait_replica_caught_up().await;
    let proxy = Proxy::start(READS_ON_REPLICA);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/psycopg_pipeline.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(proxy.conn_str("postgres", "postgres"))
        .arg(&t)
        .arg(N.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(committed(&t).await, 2 * N, "{stdout}");
    wait_replica_caught_up().await;
    let c = proxy.connect("postgres", "postgres").await;
    let row = c
        .query_one(&format!("SELECT count(*), sum(v)::int8 FROM {t}"), &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (2 * N, N * (N - 1))
    );
}

/// The proxy re-prepares `s1` on the primary inside a unit whose first batch fails: the
/// client's own ParseComplete, answered before the error, still reaches it.
#[tokio::test]
async fn an_injected_parse_after_an_error_does_not_eat_the_clients_parse_complete() {
    let steps = |t: &str| {
        vec![
            step(
                &[parse("s1", &format!("SELECT count(*) FROM {t}")), sync()],
                b'Z',
            ),
            // Pipelined: the second request is sent before the first one's answers arrive.
            step(
                &[
                    parse("s2", "SELECT 2"),
                    execute("p3"),
                    flush(),
                    bind("", "s1"),
                    sync(),
                ],
                b'Z',
            ),
        ]
    };
    let (seen, _) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert_eq!(seen[1], "1 E[34000] Z[I]");
}

/// A statement re-prepared on the primary for a Flush-ended batch is there for the rest of
/// the unit: it is not prepared twice (42P05) when the next batch follows at once.
#[tokio::test]
async fn a_statement_reprepared_in_a_unit_is_prepared_once() {
    let steps = |t: &str| {
        vec![
            step(
                &[parse("s1", &format!("SELECT id, v FROM {t}")), sync()],
                b'Z',
            ),
            step(
                &[
                    describe(b'S', "s1"),
                    flush(),
                    bind("", "s1"),
                    execute(""),
                    sync(),
                ],
                b'Z',
            ),
        ]
    };
    let (seen, _) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert!(!seen[1].contains('E'), "{seen:?}");
}

/// A named statement the proxy prepared on a backend by itself (the client prepared it on
/// the replica, then used it in a unit on the primary) is gone before another client gets
/// that cached connection: the next client can prepare the same name.
#[tokio::test]
async fn a_reprepared_statement_does_not_outlive_its_session() {
    let t = new_table().await;
    wait_replica_caught_up().await;
    let proxy = Proxy::start(&format!("{READS_ON_REPLICA}connection_cache = on\n"));
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    w.send(&batch(&[parse("s1", "SELECT 1"), sync()])).await;
    w.read_until_ready().await;
    w.send(&batch(&[describe(b'S', "s1"), flush()])).await;
    w.read_until(b'T').await;
    w.send(&sync()).await;
    w.read_until_ready().await;
    w.terminate().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A write: it goes to the primary, and gets the connection cached there.
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    let insert = format!("INSERT INTO {t} (v) VALUES (1)");
    w.send(&batch(&[parse("s1", &insert), sync()])).await;
    let seen = transcript(&w.read_until_ready().await);
    assert_eq!(seen, "1 Z[I]");
    w.terminate().await;
}

/// A Parse of a name that exists is rejected (42P05): the statement keeps its first text,
/// and a later Bind runs where that text must run (here FOR UPDATE: on the primary).
#[tokio::test]
async fn a_rejected_parse_does_not_change_where_its_name_runs() {
    let steps = |t: &str| {
        vec![
            step(
                &[
                    parse("s3", &format!("SELECT v FROM {t} FOR UPDATE")),
                    parse("s3", "SELECT 10"),
                    sync(),
                ],
                b'Z',
            ),
            step(&[bind("", "s3"), execute(""), sync()], b'Z'),
        ]
    };
    let (seen, _) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert!(seen[0].contains("E[42P05]"), "{seen:?}");
    assert!(!seen[1].contains('E'), "{seen:?}");
}

/// A simple Query pipelined right behind a Flush-ended batch that fails: PostgreSQL ignores
/// it (it skips to Sync), and the proxy must not wait for its ReadyForQuery.
#[tokio::test]
async fn a_simple_query_pipelined_behind_a_failing_flush_batch_is_ignored() {
    let steps = |t: &str| {
        vec![
            step(
                &[
                    parse("", "SELECT 1/0"),
                    bind("", ""),
                    execute(""),
                    flush(),
                    wire::query("SELECT 42"),
                ],
                b'E',
            ),
            step(&[sync()], b'Z'),
            step(&[wire::query(&format!("SELECT count(*) FROM {t}"))], b'Z'),
        ]
    };
    let (seen, _) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert_eq!(seen[1], "Z[I]", "{seen:?}");
    assert!(seen[2].contains("D[0]"), "{seen:?}");
}

/// A temp table created by a later statement of a multi-statement Query exists only on the
/// primary: the session's reads stay there (else 42P01 on the replica).
#[tokio::test]
async fn a_temp_table_made_inside_a_multi_statement_query_keeps_reads_on_the_primary() {
    let steps = |t: &str| {
        vec![
            step(
                &[wire::query(&format!(
                    "UPDATE {t} SET v = 1; CREATE TEMP TABLE tmp_multi (id int); SELECT 1"
                ))],
                b'Z',
            ),
            step(
                &[
                    parse("", "SELECT count(*) FROM tmp_multi"),
                    bind("", ""),
                    execute(""),
                    sync(),
                ],
                b'Z',
            ),
        ]
    };
    let (seen, _) = same_as_postgres(READS_ON_REPLICA, &steps).await;
    assert!(seen[1].contains("D[0]"), "{seen:?}");
}
