//! Proves the test cluster itself (no proxy involved): a writable primary, a hot-standby
//! replica that streams from it, and the harness helpers the other integration tests rely on.

mod common;

use common::{
    cluster, create_database, primary_client, psql, replica_client, unique_name,
    wait_replica_caught_up, Proxy,
};

#[tokio::test]
async fn primary_is_writable_and_replica_is_in_recovery() {
    let c = cluster();
    // (port, expected pg_is_in_recovery())
    let cases = [(c.primary_port, false), (c.replica_port, true)];
    for (port, in_recovery) in cases {
        let client = common::connect_str(&format!(
            "host=127.0.0.1 port={port} user=postgres dbname=postgres"
        ))
        .await
        .unwrap_or_else(|e| panic!("connect to {port}: {e}"));
        let row = client
            .query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[])
            .await
            .unwrap_or_else(|e| panic!("query on {port}: {e}"));
        assert_eq!(row.get::<_, bool>(0), in_recovery, "port {port}");
        assert_eq!(row.get::<_, i32>(1), i32::from(port), "port {port}");
    }
}

#[tokio::test]
async fn replica_streams_from_the_primary() {
    let primary = primary_client().await;
    let row = primary
        .query_one(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE application_name = $1 AND state = 'streaming'",
            &[&common::REPLICA_APP_NAME],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_stat_replication: {e}"));
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn row_written_on_primary_is_visible_on_replica_after_catch_up() {
    let table = unique_name("smoke");
    let primary = primary_client().await;
    primary
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int, note text); \
             INSERT INTO {table} VALUES (1, 'written on the primary')"
        ))
        .await
        .unwrap_or_else(|e| panic!("write on the primary: {e}"));

    wait_replica_caught_up().await;

    let replica = replica_client().await;
    let row = replica
        .query_one(&format!("SELECT note FROM {table} WHERE id = 1"), &[])
        .await
        .unwrap_or_else(|e| panic!("read on the replica: {e}"));
    assert_eq!(row.get::<_, String>(0), "written on the primary");
    primary
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap_or_else(|e| panic!("drop: {e}"));
}

#[tokio::test]
async fn replica_refuses_writes() {
    let replica = replica_client().await;
    let err = replica
        .batch_execute("CREATE TABLE must_not_exist_on_a_standby (id int)")
        .await
        .err()
        .unwrap_or_else(|| panic!("the replica accepted a write"));
    // 25006 read_only_sql_transaction
    assert_eq!(err.code().map(|c| c.code()), Some("25006"), "{err}");
}

#[tokio::test]
async fn database_created_on_primary_reaches_replica() {
    let db = unique_name("smoke_db");
    create_database(&db).await;
    wait_replica_caught_up().await;
    let out = psql(
        cluster().replica_port,
        "postgres",
        &db,
        "SELECT current_database()",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), db);
    primary_client()
        .await
        .batch_execute(&format!("DROP DATABASE {db}"))
        .await
        .unwrap_or_else(|e| panic!("drop database: {e}"));
}

#[test]
fn auth_group_roles_exist_for_choosing_the_backend_method() {
    let sql = "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles \
               WHERE rolname IN ('md5_users', 'scram_users', 'password_users') \
               AND NOT rolcanlogin";
    for port in [cluster().primary_port, cluster().replica_port] {
        let out = psql(port, "postgres", "postgres", sql);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "md5_users,password_users,scram_users",
            "port {port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn unique_names_differ_and_are_identifiers() {
    let names: Vec<String> = (0..100).map(|_| unique_name("T")).collect();
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), names.len());
    for name in &names {
        assert!(name.len() < 63, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
    }
}

#[test]
fn proxy_start_reports_a_binary_that_exits_early() {
    // Not valid pgpool.conf: the proxy must refuse to start, and the harness must say so
    // instead of waiting for a port that never opens.
    let err = Proxy::builder()
        .conf("this line = = is not 'valid")
        .try_start()
        .err()
        .unwrap_or_else(|| panic!("the proxy started with a broken pgpool.conf"));
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("proxy log"), "{err}");
}

#[test]
fn proxy_start_error_quotes_the_config_syntax_error() {
    let err = Proxy::builder()
        .conf("this line = = is not 'valid")
        .try_start()
        .err()
        .unwrap_or_else(|| panic!("the proxy started with a broken pgpool.conf"));
    // Pgpool-II: `syntax error in configuration file "<path>"`.
    assert!(err.contains("syntax error"), "{err}");
    assert!(err.contains("pgpool.conf"), "{err}");
}
