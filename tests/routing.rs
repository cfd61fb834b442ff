//! Read/write splitting, proven by the server that answered (`inet_server_port()`,
//! `pg_is_in_recovery()`), never by the proxy's own counters.

mod common;

use common::{cluster, Proxy};

/// Weights that send every session's reads to the replica.
const ALL_READS_TO_REPLICA: &str = "backend_weight0 = 0\nbackend_weight1 = 1\n";

async fn answered_by(c: &tokio_postgres::Client, sql: &str) -> i32 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

#[tokio::test]
async fn autocommit_reads_go_to_the_replica_and_writes_to_the_primary() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let (p, r) = (cluster().primary_port as i32, cluster().replica_port as i32);
    assert_eq!(answered_by(&c, "select inet_server_port()").await, r);
    // Quoted identifiers (as ORMs write every name) are still reads.
    let quoted = common::unique_name("Quoted");
    common::primary_client()
        .await
        .batch_execute(&format!(
            "create table public.\"{quoted}\"(\"Id\" int); insert into \"{quoted}\" values (1)"
        ))
        .await
        .unwrap();
    common::wait_replica_caught_up().await;
    let sql = format!(
        "select inet_server_port() from \"public\".\"{quoted}\" \"q\" where \"q\".\"Id\" = 1"
    );
    assert_eq!(answered_by(&c, &sql).await, r);
    common::primary_client()
        .await
        .batch_execute(&format!("drop table public.\"{quoted}\""))
        .await
        .unwrap();
    // pg_is_in_recovery() is VOLATILE in pg_proc, so (as in Pgpool-II) it is routed like a write.
    let rec: bool = c
        .query_one("select pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!rec, "a volatile function runs on the primary");
    let t = common::unique_name("rt");
    c.batch_execute(&format!("create table {t}(id serial, port int)"))
        .await
        .unwrap();
    let port: i32 = c
        .query_one(
            &format!("insert into {t}(port) values (inet_server_port()) returning port"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(port, p, "a write must run on the primary");
    // A SELECT calling a write function runs on the primary.
    assert_eq!(
        answered_by(
            &c,
            &format!("select inet_server_port() from (select nextval('{t}_id_seq')) s")
        )
        .await,
        p
    );
    c.batch_execute(&format!("drop table {t}")).await.unwrap();
}

#[tokio::test]
async fn weights_one_zero_keep_every_read_on_the_primary() {
    let proxy = Proxy::start("backend_weight0 = 1\nbackend_weight1 = 0\n");
    let c = proxy.connect("postgres", "postgres").await;
    for _ in 0..5 {
        assert_eq!(
            answered_by(&c, "select inet_server_port()").await,
            cluster().primary_port as i32
        );
    }
}

#[tokio::test]
async fn reads_inside_a_transaction_that_wrote_see_its_writes() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let t = common::unique_name("txn");
    c.batch_execute(&format!("create table {t}(v int)"))
        .await
        .unwrap();
    c.batch_execute("begin").await.unwrap();
    c.batch_execute(&format!("insert into {t} values (1)"))
        .await
        .unwrap();
    let n: i64 = c
        .query_one(&format!("select count(*) from {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the read must see the transaction's own write");
    assert_eq!(
        answered_by(&c, "select inet_server_port()").await,
        cluster().primary_port as i32
    );
    c.batch_execute("rollback").await.unwrap();
    c.batch_execute(&format!("drop table {t}")).await.unwrap();
}

#[tokio::test]
async fn extended_protocol_reads_are_balanced_and_prepared_statements_follow() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let stmt = c
        .prepare("select inet_server_port(), $1::int")
        .await
        .unwrap();
    for i in 0..20 {
        let row = c.query_one(&stmt, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), cluster().replica_port as i32);
        assert_eq!(row.get::<_, i32>(1), i);
    }
    // Inside a transaction it is balanced too; after a savepoint the rest of the
    // transaction runs on the primary, where the proxy prepares it transparently.
    c.batch_execute("begin").await.unwrap();
    let row = c.query_one(&stmt, &[&7]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), cluster().replica_port as i32);
    c.batch_execute("savepoint s").await.unwrap();
    let row = c.query_one(&stmt, &[&8]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), cluster().primary_port as i32);
    assert_eq!(row.get::<_, i32>(1), 8);
    c.batch_execute("commit").await.unwrap();
}

#[tokio::test]
async fn session_settings_hold_on_the_replica_and_temp_tables_stay_on_the_primary() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    // Open the replica connection first, then change a setting: it must reach both.
    assert_eq!(
        answered_by(&c, "select inet_server_port()").await,
        cluster().replica_port as i32
    );
    c.batch_execute("set application_name = 'routing_test'")
        .await
        .unwrap();
    let row = c
        .query_one(
            "select current_setting('application_name'), inet_server_port()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "routing_test");
    assert_eq!(row.get::<_, i32>(1), cluster().replica_port as i32);
    let t = common::unique_name("tmp");
    c.batch_execute(&format!(
        "create temp table {t}(v int); insert into {t} values (5)"
    ))
    .await
    .unwrap();
    let v: i32 = c
        .query_one(&format!("select v from {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 5, "a temp table exists only on the primary");
}

#[tokio::test]
async fn pgbench_select_only_reads_land_on_the_replica() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let db = common::unique_name("lbbench");
    common::create_database(&db).await;
    common::pgbench_init(proxy.port, &db);
    common::wait_replica_caught_up().await;
    let count = |sql: &str| {
        let o = common::psql(cluster().replica_port, "postgres", &db, sql);
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let before =
        count("select xact_commit from pg_stat_database where datname = current_database()");
    for mode in ["simple", "extended", "prepared"] {
        common::pgbench_ok(
            proxy.port,
            &["-S", "-M", mode, "-c", "4", "-T", "3", &db],
            mode,
        );
    }
    let parse = |s: &str| {
        s.lines()
            .filter_map(|l| l.trim().parse::<i64>().ok())
            .next()
            .unwrap_or(0)
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await; // stats are flushed about every 500 ms
    let after =
        count("select xact_commit from pg_stat_database where datname = current_database()");
    assert!(
        parse(&after) - parse(&before) > 1000,
        "replica commits before {before} after {after}"
    );
}

/// The first column of the only row of a simple-protocol query.
async fn simple_value(c: &tokio_postgres::Client, sql: &str) -> String {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// `postgres` on database `db` of the primary, not through the proxy.
async fn db_client(db: &str) -> tokio_postgres::Client {
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres dbname={db}",
        cluster().primary_port
    );
    common::connect_str(&conn)
        .await
        .unwrap_or_else(|e| panic!("{db}: {e}"))
}

async fn drop_database(db: &str) {
    common::primary_client()
        .await
        .batch_execute(&format!("drop database {db} with (force)"))
        .await
        .unwrap_or_else(|e| panic!("drop database {db}: {e}"));
}

/// Runs `sql` on the primary directly, then waits until the replica has replayed it.
async fn on_primary_replayed(sql: &str) {
    common::primary_client()
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    common::wait_replica_caught_up().await;
}

/// Issue 17 item 2: `check_unlogged_table` (default on). On the replica the read would fail
/// with "cannot access temporary or unlogged relations during recovery".
#[tokio::test]
async fn reads_of_unlogged_tables_go_to_the_primary_until_ddl_makes_them_logged() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let (p, r) = (cluster().primary_port as i32, cluster().replica_port as i32);
    let (u, l) = (common::unique_name("unl"), common::unique_name("logd"));
    on_primary_replayed(&format!(
        "create unlogged table {u}(v int); insert into {u} values (1);
         create table {l}(v int); insert into {l} values (1)"
    ))
    .await;
    let read = |t: &str| format!("select inet_server_port() from {t}");
    for _ in 0..6 {
        assert_eq!(answered_by(&c, &read(&u)).await, p, "unlogged: primary");
        assert_eq!(answered_by(&c, &read(&format!("public.{u}"))).await, p);
        assert_eq!(answered_by(&c, &read(&l)).await, r, "logged: replica");
    }
    let join = format!("select inet_server_port() from {l} join {u} using (v)");
    assert_eq!(answered_by(&c, &join).await, p);
    // DDL through the proxy drops the cached answers: both tables change sides.
    c.batch_execute(&format!(
        "alter table {u} set logged; alter table {l} set unlogged"
    ))
    .await
    .unwrap();
    common::wait_replica_caught_up().await;
    assert_eq!(answered_by(&c, &read(&u)).await, r, "now logged: replica");
    assert_eq!(answered_by(&c, &read(&l)).await, p, "now unlogged: primary");
    c.batch_execute(&format!("drop table {u}, {l}"))
        .await
        .unwrap();
}

/// Issue 17 item 3: a user's VOLATILE overload of a built-in name is decided by the
/// catalog, not by the built-in shortcut (on the replica it would fail with 25006).
#[tokio::test]
async fn a_volatile_overload_of_a_built_in_name_runs_on_the_primary() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let (p, r) = (cluster().primary_port as i32, cluster().replica_port as i32);
    // A database of its own: the overload must not change other tests' routing.
    let db = common::unique_name("ovl_db");
    common::create_database(&db).await;
    let s = common::unique_name("ovl");
    let direct = db_client(&db).await;
    direct
        .batch_execute(&format!(
            "create schema {s}; create table {s}.calls(arg text);
             create function {s}.abs(text) returns int volatile language sql as
               'insert into {s}.calls values ($1); select inet_server_port()'"
        ))
        .await
        .unwrap();
    common::wait_replica_caught_up().await;
    let c = proxy.connect("postgres", &db).await;
    assert_eq!(answered_by(&c, "select inet_server_port()").await, r);
    c.batch_execute(&format!("set search_path = {s}, public"))
        .await
        .unwrap();
    for proto in ["simple", "extended"] {
        let sql = "select abs('q'::text)";
        let port: i32 = if proto == "simple" {
            simple_value(&c, sql).await.parse().unwrap()
        } else {
            answered_by(&c, sql).await
        };
        assert_eq!(
            port, p,
            "{proto}: the overload writes, so it runs on the primary"
        );
    }
    let calls: i64 = direct
        .query_one(&format!("select count(*) from {s}.calls"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(calls, 2, "both calls wrote their row");
    // A read calling no volatile function is still balanced.
    assert_eq!(answered_by(&c, "select inet_server_port()").await, r);
    drop((c, direct));
    drop_database(&db).await;
}

/// Issue 17 item 4: `set_config(…, false)` is session state like SET: its result reaches the
/// client, it is mirrored to the replica connection already open and replayed on one opened
/// later; forms the proxy cannot replay keep the session on the primary.
#[tokio::test]
async fn set_config_search_path_follows_the_session_to_the_replica() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let (p, r) = (cluster().primary_port as i32, cluster().replica_port as i32);
    let s = common::unique_name("sp");
    let t = common::unique_name("only_in_sp");
    on_primary_replayed(&format!(
        "create schema {s}; create table {s}.{t}(v text); insert into {s}.{t} values ('{s}')"
    ))
    .await;
    let read = format!("select inet_server_port(), v from {t}");
    let set = format!("select set_config('search_path', '{s}, public', false)");
    let check = |row: tokio_postgres::Row, port: i32, what: &str| {
        assert_eq!(row.get::<_, i32>(0), port, "{what}: answered by");
        assert_eq!(row.get::<_, String>(1), s, "{what}: rows of {s}.{t}");
    };
    // Replica connection open before the change: mirrored.
    let c = proxy.connect("postgres", "postgres").await;
    assert_eq!(answered_by(&c, "select inet_server_port()").await, r);
    assert_eq!(simple_value(&c, &set).await, format!("{s}, public"));
    check(c.query_one(&read, &[]).await.unwrap(), r, "mirrored");
    // Replica connection opened after the change: replayed.
    let c = proxy.connect("postgres", "postgres").await;
    let forms = format!("select pg_catalog.set_config('search_path', '{s}', 'off')");
    assert_eq!(simple_value(&c, &forms).await, s);
    check(c.query_one(&read, &[]).await.unwrap(), r, "replayed");
    // A bound parameter cannot be replayed: the session stays on the primary.
    let c = proxy.connect("postgres", "postgres").await;
    let path = format!("{s}, public");
    c.query_one(
        "select set_config('search_path', $1::text, false)",
        &[&path],
    )
    .await
    .unwrap();
    check(c.query_one(&read, &[]).await.unwrap(), p, "pinned");
    common::primary_client()
        .await
        .batch_execute(&format!("drop schema {s} cascade"))
        .await
        .unwrap();
}

/// Catalog facts are cached: a change made outside the proxy is seen after a reload.
/// A setting made inside a data change (`set_config` in an UPDATE) cannot be replayed on
/// the replica: the session's later reads stay on the primary, where the setting holds.
#[tokio::test]
async fn a_setting_made_by_a_data_change_keeps_the_session_on_the_primary() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let (p, r) = (cluster().primary_port as i32, cluster().replica_port as i32);
    assert_eq!(answered_by(&c, "select inet_server_port()").await, r);
    let t = common::unique_name("setdml");
    c.batch_execute(&format!(
        "create table {t}(id int, note text); insert into {t} values (1, '')"
    ))
    .await
    .unwrap();
    c.batch_execute(&format!(
        "update {t} set note = set_config('app.dml_note', 'kept', false) where id = 1"
    ))
    .await
    .unwrap();
    let row = c
        .query_one(
            "select coalesce(current_setting('app.dml_note', true), ''), inet_server_port()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "kept");
    assert_eq!(row.get::<_, i32>(1), p);
    c.batch_execute(&format!("drop table {t}")).await.unwrap();
}

#[tokio::test]
async fn a_table_made_unlogged_outside_the_proxy_is_seen_after_a_reload() {
    let proxy = Proxy::start(ALL_READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let (p, r) = (cluster().primary_port as i32, cluster().replica_port as i32);
    let t = common::unique_name("later_unl");
    on_primary_replayed(&format!(
        "create table {t}(v int); insert into {t} values (1)"
    ))
    .await;
    let read = format!("select inet_server_port() from {t}");
    assert_eq!(answered_by(&c, &read).await, r);
    on_primary_replayed(&format!("alter table {t} set unlogged")).await;
    let err = c.query_one(&read, &[]).await.err();
    assert!(
        err.as_ref().and_then(|e| e.as_db_error()).is_some_and(|e| e
            .message()
            .contains("cannot access temporary or unlogged relations during recovery")),
        "the cached answer (logged) still sends the read to the replica: {err:?}"
    );
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &proxy.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !proxy.log().contains("SIGHUP: configuration reloaded") {
        assert!(std::time::Instant::now() < deadline, "{}", proxy.log());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(answered_by(&c, &read).await, p, "after the reload");
    c.batch_execute(&format!("drop table {t}")).await.unwrap();
}

/// A user's VOLATILE overload of a built-in "safe" name may leave session state behind, so
/// the connection is reset (not cached as clean) before the next client gets it.
#[tokio::test]
async fn state_left_by_an_overload_of_a_built_in_name_is_reset_before_reuse() {
    let proxy = Proxy::start("backend_weight1 = 0\n");
    // A database of its own: the overload must not change other tests' reset skips.
    let db = common::unique_name("ovs_db");
    common::create_database(&db).await;
    let direct = db_client(&db).await;
    let s = common::unique_name("ovs");
    direct
        .batch_execute(&format!(
            "create schema {s};
             create function {s}.abs(text) returns int volatile language plpgsql as
               $$ begin perform set_config('work_mem', '77MB', false); return 1; end $$"
        ))
        .await
        .unwrap();
    let conn = format!(
        "{} options='-c search_path={s},public'",
        proxy.conn_str("postgres", &db)
    );
    let c1 = common::connect_str(&conn).await.unwrap();
    let mark = format!("select 1 as {s}");
    c1.simple_query(&mark).await.unwrap();
    let pid: i32 = direct
        .query_one(
            "select pid from pg_stat_activity where query = $1",
            &[&mark],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(simple_value(&c1, "select abs('q'::text)").await, "1");
    drop(c1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let row = direct
            .query_opt(
                "select query from pg_stat_activity where pid = $1 and state = 'idle'",
                &[&pid],
            )
            .await
            .unwrap();
        if row.is_some_and(|r| r.get::<_, Option<String>>(0).as_deref() == Some("DISCARD ALL")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the connection went back to the cache without a reset"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let c2 = common::connect_str(&conn).await.unwrap();
    let leaked = "select current_setting('work_mem') = '77MB', pg_backend_pid()";
    let rows = c2.simple_query(leaked).await.unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("a row");
    assert_eq!(row.get(1), Some(pid.to_string().as_str()), "not reused");
    assert_eq!(row.get(0), Some("f"), "work_mem leaked to the next client");
    drop((c2, direct));
    drop(proxy);
    drop_database(&db).await;
}
