//! Transaction pooling keeps named prepared statements on the backend connections: a
//! statement is prepared once per connection, not once per transaction, and clients that
//! use one name for different statements each get their own — seen from the server's side
//! (`pg_prepared_statements` of the connection that answered).

mod common;

use common::wire::{self, tags, Wire};
use common::Proxy;

/// Transaction pooling over one backend connection on the primary: every client's
/// transaction runs on that connection, so its `pg_prepared_statements` shows what the
/// earlier clients left there.
fn one_connection_proxy() -> Proxy {
    Proxy::start(
        "pool_mode = transaction\n\
         default_pool_size = 1\n\
         num_init_children = 64\n\
         backend_weight1 = 0\n",
    )
}

/// The named statements the connection that answers `w` holds: (name, text, times it ran).
/// Asked with the raw protocol: its startup packet matches pgbench's, so it shares their
/// connection (tokio-postgres sends client_encoding, which makes a pool of its own).
async fn held_statements(w: &mut Wire) -> Vec<(String, String, i64)> {
    w.send(&wire::query(
        "SELECT name || '|' || (generic_plans + custom_plans) || '|' || statement \
         FROM pg_prepared_statements WHERE from_sql = false ORDER BY name",
    ))
    .await;
    let got = Box::pin(w.read_until_ready()).await;
    assert!(got.iter().all(|m| m.tag != b'E'), "{got:?}");
    got.iter()
        .filter_map(|m| m.first_value())
        .map(|row| {
            let mut parts = row.splitn(3, '|');
            let name = parts.next().unwrap_or_default().to_string();
            let runs = parts.next().and_then(|n| n.parse().ok()).unwrap_or(-1);
            (name, parts.next().unwrap_or_default().to_string(), runs)
        })
        .collect()
}

#[tokio::test]
async fn pgbench_prepares_its_statements_once_per_backend_connection() {
    let proxy = one_connection_proxy();
    let db = common::unique_name("stmtshare");
    common::create_database(&db).await;
    common::pgbench_init(common::cluster().primary_port, &db);
    let args = [
        "-M", "prepared", "-S", "-c", "8", "-j", "2", "-t", "50", &db,
    ];
    let text = tokio::task::spawn_blocking({
        let (port, args) = (proxy.port, args.map(String::from));
        move || common::pgbench_ok(port, &args, "prepared")
    })
    .await
    .unwrap();
    assert!(
        text.contains("number of transactions actually processed: 400/400"),
        "{text}"
    );
    let mut w = Box::pin(Wire::connect(proxy.port, "postgres", &db)).await;
    let held = held_statements(&mut w).await;
    // pgbench -S prepares one statement per client; all eight clients named and defined it
    // alike, so the one connection holds it once.
    assert_eq!(held.len(), 1, "{held:?}\n{}", proxy.log());
    let (name, statement, runs) = &held[0];
    assert!(
        statement.contains("pgbench_accounts"),
        "{name}: {statement}"
    );
    // Prepared per transaction, it would have run once since its Parse; prepared once per
    // client at most, the last client's 50 transactions alone ran it 50 times.
    assert!(*runs >= 50, "{name} ran {runs} times since it was prepared");
}

/// Parse, Bind, Execute, Sync of `name` as `sql`; the first column of the row.
async fn prepare_and_run(w: &mut Wire, name: &str, sql: &str) -> String {
    w.send(&wire::batch(&[
        wire::parse(name, sql),
        wire::bind("", name),
        wire::execute(""),
        wire::sync(),
    ]))
    .await;
    let got = Box::pin(w.read_until_ready()).await;
    assert_eq!(tags(&got), "12DCZ", "{name} as {sql}: {got:?}");
    got.iter().find_map(|m| m.first_value()).unwrap_or_default()
}

/// Bind, Execute, Sync of `name`; the first column of the row.
async fn run(w: &mut Wire, name: &str) -> String {
    w.send(&wire::batch(&[
        wire::bind("", name),
        wire::execute(""),
        wire::sync(),
    ]))
    .await;
    let got = Box::pin(w.read_until_ready()).await;
    assert_eq!(tags(&got), "2DCZ", "{name}: {got:?}");
    got.iter().find_map(|m| m.first_value()).unwrap_or_default()
}

#[tokio::test]
async fn clients_sharing_a_connection_and_a_statement_name_each_get_their_own() {
    let proxy = one_connection_proxy();
    let mut a = Box::pin(Wire::connect(proxy.port, "postgres", "postgres")).await;
    let mut b = Box::pin(Wire::connect(proxy.port, "postgres", "postgres")).await;
    let mut c = Box::pin(Wire::connect(proxy.port, "postgres", "postgres")).await;
    assert_eq!(prepare_and_run(&mut a, "q", "SELECT 'one'").await, "one");
    // The same name and text: PostgreSQL would refuse a second Parse on the connection
    // (42P05), which no client here did wrong.
    assert_eq!(prepare_and_run(&mut b, "q", "SELECT 'one'").await, "one");
    // The same name, another text.
    assert_eq!(prepare_and_run(&mut c, "q", "SELECT 'two'").await, "two");
    assert_eq!(run(&mut a, "q").await, "one");
    assert_eq!(run(&mut c, "q").await, "two");
    assert_eq!(run(&mut b, "q").await, "one");
    // A client's Close drops its statement; the others' are prepared again when they need
    // them.
    b.send(&wire::batch(&[wire::close(b'S', "q"), wire::sync()]))
        .await;
    assert_eq!(tags(&Box::pin(b.read_until_ready()).await), "3Z");
    assert_eq!(run(&mut c, "q").await, "two");
    b.send(&wire::batch(&[
        wire::bind("", "q"),
        wire::execute(""),
        wire::sync(),
    ]))
    .await;
    let got = Box::pin(b.read_until_ready()).await;
    assert_eq!(
        got.iter().find_map(|m| m.sqlstate()).as_deref(),
        Some("26000"),
        "{got:?}"
    );
    assert_eq!(run(&mut c, "q").await, "two");
    // The connection kept the statement between those clients' transactions.
    let held = held_statements(&mut a).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].1, "SELECT 'two'");
}
