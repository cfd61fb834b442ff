//! Reads inside explicit transactions on the load-balance node, proven by the server that
//! answered (`inet_server_port()`), with PostgreSQL's own answers (status bytes, errors,
//! command tags) as the standard.

mod common;

use std::time::{Duration, Instant};

use common::wire::{self, Wire};
use common::{cluster, unique_name, Proxy};

/// Weights that send every session's reads to the replica.
const ALL_READS_TO_REPLICA: &str = "backend_weight0 = 0\nbackend_weight1 = 1\n";

/// What a simple Query got: first column of each row, the error's SQLSTATE, the last
/// command tag, and the ReadyForQuery status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    values: Vec<String>,
    error: Option<String>,
    tag: Option<String>,
    status: char,
}

async fn q(w: &mut Wire, sql: &str) -> Answer {
    // Boxed: the tests' futures hold many of these and would overflow the test thread.
    Box::pin(async move {
        w.send(&wire::query(sql)).await;
        let mut a = Answer {
            values: Vec::new(),
            error: None,
            tag: None,
            status: '?',
        };
        for m in w.read_until_ready().await {
            match m.tag {
                b'D' => a.values.push(m.first_value().unwrap_or_default()),
                b'E' => a.error = m.sqlstate(),
                b'C' => {
                    let end = m.body.iter().position(|&b| b == 0).unwrap_or(m.body.len());
                    a.tag = Some(String::from_utf8_lossy(&m.body[..end]).into_owned());
                }
                b'Z' => a.status = m.body.first().map_or('?', |&b| b as char),
                _ => {}
            }
        }
        a
    })
    .await
}

/// The one value `sql` returned, asserting it succeeded.
async fn value(w: &mut Wire, sql: &str) -> String {
    let a = q(w, sql).await;
    assert!(a.error.is_none(), "{sql}: {a:?}");
    assert_eq!(a.values.len(), 1, "{sql}: {a:?}");
    a.values[0].clone()
}

fn ports() -> (String, String) {
    let c = cluster();
    (c.primary_port.to_string(), c.replica_port.to_string())
}

/// A table `name(id int, v int)` with one row (1, 0), on the replica too.
async fn table(name: &str) {
    common::primary_client()
        .await
        .batch_execute(&format!(
            "create table {name}(id int, v int); insert into {name} values (1, 0)"
        ))
        .await
        .unwrap();
    common::wait_replica_caught_up().await;
}

async fn drop_table(name: &str) {
    let _ = common::primary_client()
        .await
        .batch_execute(&format!("drop table if exists {name}"))
        .await;
}

#[tokio::test]
async fn reads_of_a_transaction_run_on_the_replica_in_the_simple_protocol() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let (_, r) = ports();
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    let begin = q(&mut w, "BEGIN").await;
    assert_eq!((begin.tag.as_deref(), begin.status), (Some("BEGIN"), 'T'));
    for _ in 0..2 {
        let a = q(&mut w, "SELECT inet_server_port()").await;
        assert_eq!(a.values, vec![r.clone()], "{a:?}");
        assert_eq!(a.status, 'T', "the client sees the transaction open");
    }
    let commit = q(&mut w, "COMMIT").await;
    assert_eq!(
        (commit.tag.as_deref(), commit.status),
        (Some("COMMIT"), 'I')
    );
    w.terminate().await;
}

#[tokio::test]
async fn reads_of_a_transaction_run_on_the_replica_in_the_extended_protocol() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let r = cluster().replica_port as i32;
    let mut c = proxy.connect("postgres", "postgres").await;
    let tx = c.transaction().await.unwrap();
    for _ in 0..2 {
        let port: i32 = tx
            .query_one("select inet_server_port()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(port, r);
    }
    tx.commit().await.unwrap();

    // As JDBC sends it: BEGIN in one batch with the first query (that batch starts the
    // transaction, on the primary), then a statement per batch.
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    let read = |name: &str| {
        vec![
            wire::parse(name, "select inet_server_port()"),
            wire::bind("", name),
            wire::execute(""),
        ]
    };
    let mut first = vec![
        wire::parse("", "BEGIN"),
        wire::bind("", ""),
        wire::execute(""),
    ];
    first.extend(read("s1"));
    first.push(wire::sync());
    w.send(&wire::batch(&first)).await;
    let got = w.read_until_ready().await;
    assert_eq!(got.last().map(|m| m.body.clone()), Some(b"T".to_vec()));
    for _ in 0..2 {
        let mut next = read("s1")[1..].to_vec();
        next.push(wire::sync());
        w.send(&wire::batch(&next)).await;
        let got = w.read_until_ready().await;
        let port = got.iter().find_map(|m| m.first_value());
        assert_eq!(port, Some(r.to_string()), "{}", wire::tags(&got));
        assert_eq!(got.last().map(|m| m.body.clone()), Some(b"T".to_vec()));
    }
    let mut commit = vec![
        wire::parse("", "COMMIT"),
        wire::bind("", ""),
        wire::execute(""),
    ];
    commit.push(wire::sync());
    w.send(&wire::batch(&commit)).await;
    let got = w.read_until_ready().await;
    assert_eq!(got.last().map(|m| m.body.clone()), Some(b"I".to_vec()));
    w.terminate().await;
}

#[tokio::test]
async fn a_read_after_a_write_in_the_transaction_runs_on_the_primary_and_sees_it() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let (p, r) = ports();
    let t = unique_name("lbt_rw");
    table(&t).await;
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    let read = format!("SELECT v || ':' || inet_server_port() FROM {t}");
    q(&mut w, "BEGIN").await;
    assert_eq!(value(&mut w, &read).await, format!("0:{r}"));
    q(&mut w, &format!("UPDATE {t} SET v = 1")).await;
    assert_eq!(value(&mut w, &read).await, format!("1:{p}"));
    q(&mut w, "ROLLBACK").await;
    assert_eq!(value(&mut w, &read).await, format!("0:{r}"));
    w.terminate().await;
    drop_table(&t).await;
}

/// Each mode: a transaction that reads, writes, reads; then a second transaction and an
/// autocommit read. Expected nodes per read ('p' / 'r').
#[tokio::test]
async fn each_disable_load_balance_on_write_mode_inside_transactions() {
    let (p, r) = ports();
    let t = unique_name("lbt_modes");
    let u = unique_name("lbt_other");
    table(&t).await;
    table(&u).await;
    let cases: &[(&str, &str)] = &[
        // read t, write t, read t, read u | next txn: read t | autocommit read t
        ("transaction", "rpp|r|r"),
        ("trans_transaction", "rpp|p|r"),
        ("always", "rpp|p|p"),
        ("dml_adaptive", "rpr|r|r"),
        ("off", "rpp|r|r"),
    ];
    for (mode, want) in cases {
        let proxy = Proxy::start(&format!(
            "{ALL_READS_TO_REPLICA}disable_load_balance_on_write = '{mode}'\n"
        ));
        let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
        let read = |x: &str| format!("SELECT inet_server_port() FROM {x}");
        let mut got = String::new();
        let node = |port: String| {
            if port == p {
                'p'
            } else if port == r {
                'r'
            } else {
                '?'
            }
        };
        q(&mut w, "BEGIN").await;
        got.push(node(value(&mut w, &read(&t)).await));
        let upd = q(&mut w, &format!("UPDATE {t} SET v = v")).await;
        assert!(upd.error.is_none(), "{upd:?}");
        got.push(node(value(&mut w, &read(&t)).await));
        got.push(node(value(&mut w, &read(&u)).await));
        q(&mut w, "COMMIT").await;
        got.push('|');
        q(&mut w, "BEGIN").await;
        got.push(node(value(&mut w, &read(&t)).await));
        q(&mut w, "COMMIT").await;
        got.push('|');
        got.push(node(value(&mut w, &read(&t)).await));
        assert_eq!(&got, want, "disable_load_balance_on_write = {mode}");
        w.terminate().await;
    }
    drop_table(&t).await;
    drop_table(&u).await;
}

#[tokio::test]
async fn a_repeatable_read_read_only_transaction_keeps_one_snapshot_on_the_replica() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let (p, r) = ports();
    let t = unique_name("lbt_rr");
    table(&t).await;
    let count = format!("SELECT count(*) || ':' || inet_server_port() FROM {t}");
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    q(&mut w, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await;
    assert_eq!(value(&mut w, &count).await, format!("1:{r}"));
    common::primary_client()
        .await
        .batch_execute(&format!("insert into {t} values (2, 0)"))
        .await
        .unwrap();
    common::wait_replica_caught_up().await;
    assert_eq!(
        value(&mut w, &count).await,
        format!("1:{r}"),
        "same snapshot"
    );
    q(&mut w, "COMMIT").await;
    assert_eq!(value(&mut w, &count).await, format!("2:{r}"));

    // The other ways to make a transaction read only.
    for (setup, begin, want) in [
        ("", "BEGIN ISOLATION LEVEL REPEATABLE READ", &p),
        ("", "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", &p),
        (
            "",
            "START TRANSACTION READ ONLY, ISOLATION LEVEL REPEATABLE READ",
            &r,
        ),
        (
            "SET default_transaction_read_only = on",
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            &r,
        ),
        (
            "SET default_transaction_isolation = 'repeatable read'",
            "BEGIN",
            &r,
        ),
        ("SET default_transaction_read_only = off", "BEGIN", &p),
        ("RESET ALL", "BEGIN", &r),
    ] {
        if !setup.is_empty() {
            assert!(q(&mut w, setup).await.error.is_none(), "{setup}");
        }
        assert_eq!(q(&mut w, begin).await.status, 'T', "{begin}");
        let got = value(&mut w, &count).await;
        assert_eq!(got, format!("2:{want}"), "{setup}; {begin}");
        q(&mut w, "COMMIT").await;
    }
    q(&mut w, "BEGIN ISOLATION LEVEL REPEATABLE READ").await;
    q(&mut w, "SET TRANSACTION READ ONLY").await;
    assert_eq!(value(&mut w, &count).await, format!("2:{r}"));
    q(&mut w, "COMMIT").await;
    w.terminate().await;
    drop_table(&t).await;
}

#[tokio::test]
async fn a_read_failing_on_the_replica_aborts_the_transaction_as_postgresql_would() {
    let proxy = Proxy::start(&format!(
        "{ALL_READS_TO_REPLICA}disable_load_balance_on_write = 'dml_adaptive'\n"
    ));
    let r = cluster().replica_port;
    let (t, u) = (unique_name("lbt_fail_w"), unique_name("lbt_fail_r"));
    table(&t).await;
    table(&u).await;
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    q(&mut w, "BEGIN").await;
    let ins = q(&mut w, &format!("INSERT INTO {t} VALUES (2, 2)")).await;
    assert_eq!(ins.error, None);
    // Divides by zero on the replica only: the error proves where the read ran.
    let failed = q(
        &mut w,
        &format!("SELECT 1/(inet_server_port() - {r}) FROM {u}"),
    )
    .await;
    assert_eq!(
        (failed.error.as_deref(), failed.status),
        (Some("22012"), 'E')
    );
    let next = q(&mut w, &format!("SELECT v FROM {u}")).await;
    assert_eq!((next.error.as_deref(), next.status), (Some("25P02"), 'E'));
    let commit = q(&mut w, "COMMIT").await;
    assert_eq!(
        (commit.tag.as_deref(), commit.status),
        (Some("ROLLBACK"), 'I')
    );
    let rows: i64 = common::primary_client()
        .await
        .query_one(&format!("select count(*) from {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the transaction's insert was not committed");
    w.terminate().await;
    drop_table(&t).await;
    drop_table(&u).await;
}

/// Scripts with savepoints and failing reads give the same answers through the proxy as
/// straight from the primary (`@`: the transaction's reads so far ran on the replica).
#[tokio::test]
async fn savepoints_and_failures_answer_as_postgresql_does() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let (p, r) = ports();
    let t = unique_name("lbt_sp");
    table(&t).await;
    let scripts: &[&[&str]] = &[
        &[
            "BEGIN",
            "@",
            "SELECT count(*) FROM {t}",
            "SAVEPOINT a",
            "SELECT count(*) FROM {t}",
            "SELECT 1/0 FROM {t}",
            "SELECT 1",
            "ROLLBACK TO a",
            "SELECT count(*) FROM {t}",
            "RELEASE a",
            "SELECT count(*) FROM {t}",
            "COMMIT",
        ],
        &[
            "BEGIN",
            "@",
            "SELECT 1/0 FROM {t}",
            "ROLLBACK TO a",
            "SELECT 1",
            "SAVEPOINT b",
            "COMMIT",
        ],
        &[
            "BEGIN",
            "@",
            "SELECT count(*) FROM {t}",
            "SAVEPOINT a",
            "INSERT INTO {t} VALUES (3, 3)",
            "ROLLBACK TO a",
            "SELECT count(*) FROM {t}",
            "ROLLBACK",
        ],
        &[
            "BEGIN",
            "@",
            "SELECT 1/0 FROM {t}",
            "ROLLBACK",
            "SELECT count(*) FROM {t}",
        ],
    ];
    for script in scripts {
        let mut direct = Wire::connect(cluster().primary_port, "postgres", "postgres").await;
        let mut proxied = Wire::connect(proxy.port, "postgres", "postgres").await;
        for step in *script {
            if *step == "@" {
                // Where the transaction's reads run so far: the replica, through the proxy.
                let read = "SELECT inet_server_port()";
                assert_eq!(value(&mut proxied, read).await, r, "{script:?}");
                assert_eq!(value(&mut direct, read).await, p);
                continue;
            }
            let sql = step.replace("{t}", &t);
            let want = q(&mut direct, &sql).await;
            let got = q(&mut proxied, &sql).await;
            assert_eq!(got, want, "{sql} in {script:?}");
        }
        direct.terminate().await;
        proxied.terminate().await;
    }
    drop_table(&t).await;
}

/// Sessions of `app` that are idle in a transaction, on `port`.
async fn idle_in_transaction(port: u16, app: &str) -> i64 {
    let c = common::connect_str(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres"
    ))
    .await
    .unwrap();
    c.query_one(
        "select count(*) from pg_stat_activity \
         where application_name = $1 and state like 'idle in transaction%'",
        &[&app],
    )
    .await
    .unwrap()
    .get(0)
}

/// Waits (bounded) until no backend of `app` is idle in a transaction on either server.
async fn no_backend_idle_in_transaction(app: &str, after: &str) {
    let c = cluster();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = idle_in_transaction(c.primary_port, app).await;
        let r = idle_in_transaction(c.replica_port, app).await;
        if p + r == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after {after}: {p} on the primary, {r} on the replica idle in transaction"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn no_backend_is_left_idle_in_transaction() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let r = cluster().replica_port as i32;
    let app = unique_name("lbt_idle");
    let conn = format!(
        "{} application_name={app}",
        proxy.conn_str("postgres", "postgres")
    );
    // READ COMMITTED reads run in autocommit on the replica; a REPEATABLE READ READ ONLY
    // transaction keeps its snapshot in a transaction there.
    let begins = [
        ("BEGIN", 0),
        ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 1),
    ];
    for (begin, replica_txns) in begins {
        for end in ["COMMIT", "ROLLBACK", "disconnect"] {
            let c = common::connect_str(&conn).await.unwrap();
            c.batch_execute(begin).await.unwrap();
            let port: i32 = c
                .query_one("select inet_server_port()", &[])
                .await
                .unwrap()
                .get(0);
            assert_eq!(port, r);
            assert_eq!(
                idle_in_transaction(cluster().replica_port, &app).await,
                replica_txns,
                "{begin}"
            );
            match end {
                "disconnect" => drop(c),
                sql => c.batch_execute(sql).await.unwrap(),
            }
            no_backend_idle_in_transaction(&app, &format!("{begin}; …; {end}")).await;
        }
    }
}

#[tokio::test]
async fn a_replica_lost_mid_transaction_leaves_its_reads_to_the_primary() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let (p, r) = ports();
    let mut w = Wire::connect(proxy.port, "postgres", "postgres").await;
    q(&mut w, "BEGIN").await;
    let got = value(
        &mut w,
        "SELECT inet_server_port() || ':' || pg_backend_pid()",
    )
    .await;
    let (port, pid) = got.split_once(':').unwrap();
    assert_eq!(port, r);
    let replica = common::replica_client().await;
    let pid: i32 = pid.parse().unwrap();
    replica
        .execute("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    assert!(
        common::wait_backend_ended(&replica, pid, Duration::from_secs(20)).await,
        "the replica backend did not end"
    );
    let a = q(&mut w, "SELECT inet_server_port()").await;
    assert_eq!((a.values, a.error, a.status), (vec![p], None, 'T'));
    let commit = q(&mut w, "COMMIT").await;
    assert_eq!(
        (commit.tag.as_deref(), commit.status),
        (Some("COMMIT"), 'I')
    );
    w.terminate().await;
}
