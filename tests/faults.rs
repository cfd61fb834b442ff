//! Faults around a session: the client dies mid-transaction, PostgreSQL terminates the
//! session's backend, the backend refuses connections (role connection limit). Clients get
//! PostgreSQL's own errors, nothing is left holding locks, and the proxy keeps serving.

mod common;

use std::time::Duration;

use common::{connect_str, primary_client, unique_name, Proxy};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// Sanity bound for anything that should happen promptly (not a timing assertion).
const BOUND: Duration = Duration::from_secs(30);

/// A client through the proxy whose connection task can be killed like a crashed process:
/// aborting it drops the socket without a Terminate message.
async fn killable_client(proxy: &Proxy, app: &str) -> (Client, JoinHandle<()>) {
    let conn = format!(
        "{} application_name={app}",
        proxy.conn_str("postgres", "postgres")
    );
    let (client, connection) = tokio_postgres::connect(&conn, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect through the proxy: {e}\n{}", proxy.log()));
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

/// A table with one row, made on the primary.
async fn table_with_a_row() -> String {
    let table = unique_name("faults");
    primary_client()
        .await
        .batch_execute(&format!(
            "create table {table} (id int primary key, v int); insert into {table} values (1, 0)"
        ))
        .await
        .expect("create table");
    table
}

/// Waits (bounded) until no backend with this application_name is left on the primary.
async fn wait_backend_gone(app: &str) {
    let primary = primary_client().await;
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let rows = primary
            .query(
                "select state from pg_stat_activity where application_name = $1",
                &[&app],
            )
            .await
            .expect("pg_stat_activity");
        if rows.is_empty() {
            return;
        }
        let states: Vec<Option<String>> = rows.iter().map(|r| r.get(0)).collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "backend of the dead client still there: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Another client takes the row lock; `lock_timeout` bounds the wait.
async fn row_lock_is_free(proxy: &Proxy, table: &str) {
    let c = proxy.connect("postgres", "postgres").await;
    c.batch_execute("set lock_timeout = '20s'").await.unwrap();
    let tx_sql = format!("begin; select v from {table} where id = 1 for update; rollback");
    c.batch_execute(&tx_sql)
        .await
        .unwrap_or_else(|e| panic!("row lock still held: {e}"));
}

#[tokio::test]
async fn client_killed_idle_in_transaction_leaves_no_backend_and_no_lock() {
    let proxy = Proxy::start("");
    let table = table_with_a_row().await;
    let app = unique_name("killed_idle");
    let (client, task) = killable_client(&proxy, &app).await;
    client
        .batch_execute(&format!("begin; update {table} set v = v + 1 where id = 1"))
        .await
        .unwrap();
    task.abort();
    drop(client);
    wait_backend_gone(&app).await;
    row_lock_is_free(&proxy, &table).await;
    // The killed transaction did not commit.
    let v: i32 = primary_client()
        .await
        .query_one(&format!("select v from {table} where id = 1"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 0);
}

#[tokio::test]
async fn client_killed_while_its_query_runs_frees_locks_at_once() {
    let proxy = Proxy::start("");
    let table = table_with_a_row().await;
    let app = unique_name("killed_busy");
    let (client, task) = killable_client(&proxy, &app).await;
    client
        .batch_execute(&format!(
            "begin; select v from {table} where id = 1 for update"
        ))
        .await
        .unwrap();
    // A long query holds the lock; the client dies while it runs.
    let sleeper = tokio::spawn(async move { client.batch_execute("select pg_sleep(600)").await });
    let primary = primary_client().await;
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let running = primary
            .query_opt(
                "select 1 from pg_stat_activity where application_name = $1 and query like '%pg_sleep%' and state = 'active'",
                &[&app],
            )
            .await
            .unwrap();
        if running.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sleep never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    sleeper.abort();
    // Without the cancel the sleep would hold the lock for ten minutes.
    wait_backend_gone(&app).await;
    row_lock_is_free(&proxy, &table).await;
}

/// The pid of the primary backend serving a client (through the proxy).
async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn terminate(pid: i32) {
    let ok: bool = primary_client()
        .await
        .query_one("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(ok, "pg_terminate_backend({pid})");
}

#[tokio::test]
async fn terminated_backend_gives_the_client_a_clean_error() {
    // Everything on the primary, where pg_backend_pid() and the terminate happen.
    let proxy = Proxy::start("backend_weight1 = 0\n");
    let bystander = proxy.connect("postgres", "postgres").await;

    // Terminated while a query runs: that query fails with PostgreSQL's error.
    let busy = proxy.connect("postgres", "postgres").await;
    let pid = backend_pid(&busy).await;
    let running = tokio::spawn(async move { busy.batch_execute("select pg_sleep(600)").await });
    let primary = primary_client().await;
    let deadline = tokio::time::Instant::now() + BOUND;
    while primary
        .query_opt(
            "select 1 from pg_stat_activity where pid = $1 and state = 'active'",
            &[&pid],
        )
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sleep never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate(pid).await;
    let err = tokio::time::timeout(BOUND, running)
        .await
        .expect("the query ended within the bound")
        .unwrap()
        .expect_err("the query of a terminated backend fails");
    assert_eq!(err.code().map(|c| c.code()), Some("57P01"), "{err}");

    // Terminated while idle: the next query fails promptly instead of hanging.
    let idle = proxy.connect("postgres", "postgres").await;
    terminate(backend_pid(&idle).await).await;
    let next = tokio::time::timeout(BOUND, idle.query_one("select 1", &[])).await;
    let err = next
        .expect("the next query ended within the bound")
        .expect_err("a terminated session cannot run queries");
    assert!(
        err.code().map(|c| c.code()) == Some("57P01") || err.is_closed(),
        "{err}"
    );

    // Nobody else noticed.
    let one: i32 = bystander.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let fresh = proxy.connect("postgres", "postgres").await;
    fresh.query_one("select 1", &[]).await.unwrap();
}

/// Connects and runs one query (a session may take its backend only at its first query);
/// the error of whichever step fails.
async fn connect_and_query(conn_str: &str) -> Result<Client, tokio_postgres::Error> {
    let c = connect_str(conn_str).await?;
    c.query_one("select 1", &[]).await?;
    Ok(c)
}

#[tokio::test]
async fn backend_connection_limit_reaches_the_client_as_53300() {
    let proxy = Proxy::start("");
    let role = unique_name("limited");
    primary_client()
        .await
        .batch_execute(&format!("create role {role} login connection limit 2"))
        .await
        .expect("create role");
    let conn_str = proxy.conn_str(&role, "postgres");
    // Two sessions hold the role's two backend connections.
    let first = connect_and_query(&conn_str).await.expect("first session");
    let second = connect_and_query(&conn_str).await.expect("second session");
    let err = match connect_and_query(&conn_str).await {
        Ok(_) => panic!("a third session for a role limited to two\n{}", proxy.log()),
        Err(e) => e,
    };
    assert_eq!(err.code().map(|c| c.code()), Some("53300"), "{err}");
    // The proxy stays up for everyone, and the role gets its slot back once one is free.
    let c = proxy.connect("postgres", "postgres").await;
    c.query_one("select 1", &[]).await.unwrap();
    drop(first);
    let deadline = tokio::time::Instant::now() + BOUND;
    let again = loop {
        match connect_and_query(&conn_str).await {
            Ok(c) => break c,
            Err(e) if e.code().map(|c| c.code()) == Some("53300") => {
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    again.query_one("select 1", &[]).await.unwrap();
    second.query_one("select 1", &[]).await.unwrap();
}

#[tokio::test]
async fn replica_backend_terminated_after_the_row_description_the_read_runs_on_the_primary() {
    // The sleep runs after the server produced the RowDescription: the termination
    // interrupts an answer that has begun. The client, which has seen none of it, gets the
    // primary's answer. (A STABLE wrapper: pg_sleep itself is VOLATILE, a write.)
    let sleep = unique_name("stable_sleep");
    primary_client()
        .await
        .batch_execute(&format!(
            "create function {sleep}(float8) returns int stable language sql \
             as 'select 1 from pg_sleep($1)'"
        ))
        .await
        .unwrap();
    common::wait_replica_caught_up().await;
    let proxy = Proxy::start("backend_weight0 = 0\nbackend_weight1 = 1\n");
    let app = unique_name("rowdesc");
    let client = connect_str(&format!(
        "{} application_name={app}",
        proxy.conn_str("postgres", "postgres")
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    let running = tokio::spawn(async move {
        client
            .query_one(&format!("select inet_server_port(), {sleep}(2)"), &[])
            .await
            .map(|r| r.get::<_, i32>(0))
    });
    let replica = common::replica_client().await;
    let sql = "select pid from pg_stat_activity \
               where application_name = $1 and query like '%sleep%' and state = 'active'";
    let deadline = tokio::time::Instant::now() + BOUND;
    let pid: i32 = loop {
        if let Some(row) = replica.query_opt(sql, &[&app]).await.unwrap() {
            break row.get(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sleep never started on the replica\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ok: bool = replica
        .query_one("select pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(ok, "pg_terminate_backend({pid})");
    let port = tokio::time::timeout(BOUND, running)
        .await
        .expect("the read ended within the bound")
        .unwrap()
        .unwrap_or_else(|e| panic!("the read failed: {e}\n{}", proxy.log()));
    assert_eq!(i32::from(common::cluster().primary_port), port);
}
