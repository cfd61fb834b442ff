//! Admin SQL commands answered by the proxy: `SHOW pool_*` with Pgpool-II's columns,
//! `PGPOOL SHOW/SET/RESET`, `PGPOOL EXPLAIN ROUTE`, the extended protocol, and the exact
//! queries pgpool2_exporter sends, parsed the way it parses them.

mod common;

use std::collections::HashMap;

use common::{cluster, Proxy};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Weights that send every session's reads to the replica.
const READS_TO_REPLICA: &str = "backend_weight0 = 0\nbackend_weight1 = 1\n";

/// A simple-protocol result: column names and rows of text.
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    /// The value of `column` in the row whose `key` column equals `key_value`.
    fn get(&self, key: &str, key_value: &str, column: &str) -> String {
        let (k, c) = (self.col(key), self.col(column));
        let row = self.rows.iter().find(|r| r[k] == key_value);
        row.unwrap_or_else(|| panic!("no row with {key} = {key_value}"))[c].clone()
    }
}

async fn table(c: &Client, sql: &str) -> Table {
    let msgs = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut t = Table {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for m in msgs {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                t.columns = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(r) => {
                let row = (0..r.len())
                    .map(|i| r.get(i).expect("admin values are never NULL").to_string())
                    .collect();
                t.rows.push(row);
            }
            _ => {}
        }
    }
    t
}

const EXPECTED_COLUMNS: [(&str, &str); 8] = [
    ("pool_nodes", "node_id hostname port status pg_status lb_weight role pg_role select_cnt load_balance_node replication_delay replication_state replication_sync_state last_status_change"),
    ("pool_backend_stats", "node_id hostname port status role select_cnt insert_cnt update_cnt delete_cnt ddl_cnt other_cnt panic_cnt fatal_cnt error_cnt"),
    ("pool_health_check_stats", "node_id hostname port status role last_status_change total_count success_count fail_count skip_count retry_count average_retry_count max_retry_count max_duration min_duration average_duration last_health_check last_successful_health_check last_skip_health_check last_failed_health_check"),
    ("pool_processes", "pool_pid start_time client_connection_count database username backend_connection_time pool_counter status"),
    ("pool_pools", "pool_pid start_time client_connection_count pool_id backend_id database username backend_connection_time client_connection_time client_disconnection_time client_idle_duration majorversion minorversion pool_counter pool_backendpid pool_connected status load_balance_node client_host client_port statement"),
    ("pool_version", "pool_version"),
    ("pool_status", "item value description"),
    ("pool_cache", "num_cache_hits num_selects cache_hit_ratio num_hash_entries used_hash_entries num_cache_entries used_cache_entries_size free_cache_entries_size fragment_cache_entries_size"),
];

#[tokio::test]
async fn every_show_command_has_the_spec_columns_in_order() {
    let proxy = Proxy::start("");
    let c = proxy.connect("postgres", "postgres").await;
    for (name, cols) in EXPECTED_COLUMNS {
        // Any case works, with or without a trailing semicolon.
        for sql in [
            format!("SHOW {name}"),
            format!("show {};", name.to_uppercase()),
        ] {
            let t = table(&c, &sql).await;
            let want: Vec<&str> = cols.split(' ').collect();
            assert_eq!(t.columns, want, "{sql}");
            assert!(!t.rows.is_empty(), "{sql} returned no row");
            assert!(t.rows.iter().all(|r| r.len() == want.len()));
        }
    }
    let nodes = table(&c, "SHOW pool_nodes").await;
    assert_eq!(nodes.rows.len(), 2);
    let port = cluster().replica_port.to_string();
    assert_eq!(nodes.get("node_id", "1", "port"), port);
    assert_eq!(nodes.get("node_id", "1", "role"), "standby");
    assert_eq!(nodes.get("node_id", "0", "role"), "primary");
    assert_eq!(nodes.get("node_id", "0", "lb_weight"), "0.500000");
}

#[tokio::test]
async fn select_cnt_counts_reads_on_the_node_that_answered() {
    let proxy = Proxy::start(READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let before = table(&c, "SHOW pool_nodes").await;
    let count =
        |t: &Table, node: &str| -> u64 { t.get("node_id", node, "select_cnt").parse().unwrap() };
    for _ in 0..7 {
        let port: i32 = c
            .query_one("select inet_server_port()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(port, cluster().replica_port as i32);
    }
    let after = table(&c, "SHOW pool_nodes").await;
    // The extended protocol's Parse/Bind/Execute of one statement counts once.
    assert_eq!(count(&after, "1") - count(&before, "1"), 7);
    assert_eq!(count(&after, "0"), count(&before, "0"));
    assert_eq!(after.get("node_id", "1", "load_balance_node"), "true");
    assert_eq!(after.get("node_id", "0", "load_balance_node"), "false");
    assert_eq!(after.get("node_id", "1", "status"), "up");
}

#[tokio::test]
async fn backend_stats_count_statement_kinds_and_errors_per_node() {
    let proxy = Proxy::start(READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let t = common::unique_name("adm");
    let before = table(&c, "SHOW pool_backend_stats").await;
    c.batch_execute(&format!("CREATE TABLE {t} (a int)"))
        .await
        .unwrap();
    c.batch_execute(&format!("INSERT INTO {t} VALUES (1)"))
        .await
        .unwrap();
    c.batch_execute(&format!("UPDATE {t} SET a = 2"))
        .await
        .unwrap();
    c.batch_execute(&format!("DELETE FROM {t}")).await.unwrap();
    c.batch_execute(&format!("DROP TABLE {t}")).await.unwrap();
    // A write that fails on the primary.
    assert!(c
        .batch_execute(&format!("INSERT INTO {t} VALUES (1)"))
        .await
        .is_err());
    let after = table(&c, "SHOW pool_backend_stats").await;
    let delta = |col: &str| -> u64 {
        let a: u64 = after.get("node_id", "0", col).parse().unwrap();
        let b: u64 = before.get("node_id", "0", col).parse().unwrap();
        a - b
    };
    assert_eq!(delta("ddl_cnt"), 2);
    assert_eq!(delta("insert_cnt"), 2);
    assert_eq!(delta("update_cnt"), 1);
    assert_eq!(delta("delete_cnt"), 1);
    assert_eq!(delta("error_cnt"), 1);
    assert_eq!(delta("fatal_cnt"), 0);
}

#[tokio::test]
async fn pool_processes_lists_sessions_and_pads_to_num_init_children() {
    let proxy = Proxy::start("num_init_children = 5\n");
    let db = common::unique_name("admdb");
    common::create_database(&db).await;
    let other = proxy.connect("postgres", &db).await;
    let c = proxy.connect("postgres", "postgres").await;
    // A session takes its primary connection at its first query; make both take one.
    for s in [&other, &c] {
        s.batch_execute("/*NO LOAD BALANCE*/ select 1")
            .await
            .unwrap();
    }
    let t = table(&c, "SHOW pool_processes").await;
    assert_eq!(t.rows.len(), 5);
    let used: Vec<&Vec<String>> = t
        .rows
        .iter()
        .filter(|r| !r[t.col("database")].is_empty())
        .collect();
    assert_eq!(used.len(), 2);
    assert!(used.iter().any(|r| r[t.col("database")] == db));
    assert!(used.iter().all(|r| r[t.col("username")] == "postgres"));
    let free = &t.rows[4];
    assert_eq!(free[t.col("status")], "Wait for connection");
    let pools = table(&c, "SHOW pool_pools").await;
    // Two sessions × two nodes; each session now holds its primary connection.
    assert_eq!(pools.rows.len(), 4);
    let primary_rows = pools
        .rows
        .iter()
        .filter(|r| r[pools.col("backend_id")] == "0");
    for r in primary_rows {
        assert!(r[pools.col("pool_backendpid")].parse::<i32>().unwrap() > 0);
        assert_eq!(r[pools.col("client_host")], "127.0.0.1");
    }
    drop(other);
}

#[tokio::test]
async fn pgpool_set_is_per_session_and_reset_restores() {
    let proxy = Proxy::start("");
    let a = proxy.connect("postgres", "postgres").await;
    let b = proxy.connect("postgres", "postgres").await;
    let show = |t: Table| t.rows[0][0].clone();
    let initial = show(table(&a, "PGPOOL SHOW check_unlogged_table").await);
    assert_eq!(initial, "on");
    let set = a
        .simple_query("PGPOOL SET check_unlogged_table = off")
        .await;
    assert!(set.is_ok(), "{set:?}");
    assert_eq!(
        show(table(&a, "PGPOOL SHOW check_unlogged_table").await),
        "off"
    );
    assert_eq!(
        show(table(&b, "PGPOOL SHOW check_unlogged_table").await),
        "on"
    );
    a.simple_query("PGPOOL RESET check_unlogged_table")
        .await
        .unwrap();
    assert_eq!(
        show(table(&a, "PGPOOL SHOW check_unlogged_table").await),
        "on"
    );
    a.simple_query("PGPOOL SET check_unlogged_table TO off")
        .await
        .unwrap();
    a.simple_query("PGPOOL RESET ALL").await.unwrap();
    assert_eq!(
        show(table(&a, "PGPOOL SHOW check_unlogged_table").await),
        "on"
    );
    // Not session-settable / unknown: an error, and the session goes on.
    let err = a.simple_query("PGPOOL SET port = 1").await.unwrap_err();
    assert!(format!("{err:?}").contains("cannot be changed"), "{err:?}");
    let err = a
        .simple_query("PGPOOL SHOW no_such_param")
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("not found"), "{err:?}");
    let all = table(&a, "PGPOOL SHOW ALL").await;
    assert_eq!(all.columns, ["item", "value", "description"]);
    assert_eq!(all.get("item", "port", "value"), proxy.port.to_string());
}

#[tokio::test]
async fn extended_protocol_admin_commands_answer_in_process() {
    let proxy = Proxy::start("");
    let c = proxy.connect("postgres", "postgres").await;
    // tokio-postgres prepares (Parse/Describe/Sync) then binds and executes.
    let rows = c.query("SHOW pool_nodes", &[]).await.unwrap();
    assert_eq!(rows.len(), 2);
    let host: String = rows[1].get("hostname");
    assert_eq!(host, "127.0.0.1");
    let port: String = rows[1].get("port");
    assert_eq!(port, cluster().replica_port.to_string());
    let stmt = c.prepare("SHOW pool_version").await.unwrap();
    for _ in 0..2 {
        let v: String = c.query_one(&stmt, &[]).await.unwrap().get(0);
        assert!(v.starts_with("4.3.5"), "{v}");
    }
    // A normal statement after the admin ones still reaches PostgreSQL.
    let one: i32 = match c.query_one("select 1", &[]).await {
        Ok(r) => r.get(0),
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(one, 1);
}

#[tokio::test]
async fn explain_route_names_the_node_that_then_answers() {
    let proxy = Proxy::start(READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let read = table(&c, "PGPOOL EXPLAIN ROUTE select inet_server_port()").await;
    assert_eq!(
        read.columns,
        ["node_id", "hostname", "port", "role", "reason"]
    );
    let port: i32 = c
        .query_one("select inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(read.rows[0][2], port.to_string());
    assert_eq!(read.rows[0][3], "standby");
    let write = table(&c, "PGPOOL EXPLAIN ROUTE insert into t values (1)").await;
    assert_eq!(write.rows[0][0], "0");
    assert_eq!(write.rows[0][4], "write");
    c.batch_execute("BEGIN").await.unwrap();
    let in_txn = table(&c, "PGPOOL EXPLAIN ROUTE select inet_server_port()").await;
    assert_eq!(
        in_txn.rows[0][3], "standby",
        "reads in a transaction balance"
    );
    assert_eq!(in_txn.rows[0][4], "load_balance");
    let port: i32 = c
        .query_one("select inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_txn.rows[0][2], port.to_string());
    c.batch_execute("SAVEPOINT s").await.unwrap();
    let pinned = table(&c, "PGPOOL EXPLAIN ROUTE select inet_server_port()").await;
    assert_eq!(
        pinned.rows[0][0], "0",
        "a savepoint keeps the rest on the primary"
    );
    assert_eq!(pinned.rows[0][4], "transaction_pinned");
    let port: i32 = c
        .query_one("select inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pinned.rows[0][2], port.to_string());
    c.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn explain_route_of_a_commented_statement_matches_where_it_runs() {
    let proxy = Proxy::start(READS_TO_REPLICA);
    let c = proxy.connect("postgres", "postgres").await;
    let sql = "/* hi */ select inet_server_port()";
    let explained = table(&c, &format!("PGPOOL EXPLAIN ROUTE {sql}")).await;
    let rows = c.simple_query(sql).await.unwrap();
    let Some(row) = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    }) else {
        panic!("no row from {sql}");
    };
    let answered = row.get(0).unwrap_or_default().to_string();
    assert_eq!(
        answered,
        cluster().primary_port.to_string(),
        "{sql} ran on the primary"
    );
    assert_eq!(
        explained.rows[0][2], answered,
        "the explanation names that node"
    );
    assert_eq!(explained.rows[0][4], "hint_comment");
}

/// pgpool2_exporter's version check: `^(\d+)(\.\d+)(\.\d+)?` at least 4.2.0.
fn exporter_version_ok(v: &str) -> bool {
    let nums: Vec<u32> = v
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    nums.len() == 3 && (nums[0], nums[1]) >= (4, 2)
}

#[tokio::test]
async fn pgpool2_exporter_queries_parse_as_the_exporter_parses_them() {
    let proxy = Proxy::start("");
    let c = proxy.connect("postgres", "postgres").await;
    let v = table(&c, "SHOW POOL_VERSION;").await;
    assert_eq!(v.columns, ["pool_version"]);
    assert!(exporter_version_ok(&v.rows[0][0]), "{}", v.rows[0][0]);
    let numeric: HashMap<&str, Vec<&str>> = HashMap::from([
        ("pool_nodes", vec!["select_cnt", "replication_delay"]),
        (
            "pool_backend_stats",
            vec![
                "select_cnt",
                "insert_cnt",
                "update_cnt",
                "delete_cnt",
                "ddl_cnt",
                "other_cnt",
                "panic_cnt",
                "fatal_cnt",
                "error_cnt",
            ],
        ),
        (
            "pool_health_check_stats",
            vec![
                "total_count",
                "success_count",
                "fail_count",
                "skip_count",
                "retry_count",
                "average_retry_count",
                "max_retry_count",
                "max_duration",
                "min_duration",
                "average_duration",
            ],
        ),
        (
            "pool_cache",
            vec![
                "num_cache_hits",
                "num_selects",
                "cache_hit_ratio",
                "num_hash_entries",
                "used_hash_entries",
                "num_cache_entries",
                "used_cache_entries_size",
                "free_cache_entries_size",
                "fragment_cache_entries_size",
            ],
        ),
    ]);
    for (name, cols) in &numeric {
        let t = table(&c, &format!("SHOW {name};")).await;
        for r in &t.rows {
            for col in cols {
                let v = &r[t.col(col)];
                assert!(
                    v.parse::<f64>().is_ok(),
                    "{name}.{col} = {v:?} is not a number"
                );
            }
            if name != &"pool_cache" {
                for label in ["hostname", "port", "role"] {
                    assert!(!r[t.col(label)].is_empty());
                }
                assert!(["up", "waiting"].contains(&r[t.col("status")].as_str()));
            }
        }
    }
    let procs = table(&c, "SHOW pool_processes;").await;
    let used = procs
        .rows
        .iter()
        .filter(|r| !r[procs.col("database")].is_empty() && !r[procs.col("username")].is_empty())
        .count();
    assert_eq!(used, 1, "the exporter counts this session as used");
    assert_eq!(procs.rows.len(), 32, "num_init_children rows");
    c.batch_execute("/*NO LOAD BALANCE*/ select 1")
        .await
        .unwrap();
    let pools = table(&c, "SHOW pool_pools;").await;
    for col in ["pool_pid", "pool_id", "backend_id", "database", "username"] {
        pools.col(col);
    }
    assert!(pools
        .rows
        .iter()
        .any(|r| !r[pools.col("username")].is_empty()));
}
