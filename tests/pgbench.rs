//! pgbench through the proxy in every query mode finishes with zero failed transactions.

mod common;

use common::Proxy;

#[tokio::test]
async fn pgbench_all_modes_without_failures() {
    let proxy = Proxy::start("");
    let db = common::unique_name("bench");
    common::create_database(&db).await;
    common::pgbench_init(proxy.port, &db);
    for mode in ["simple", "extended", "prepared"] {
        let text = common::pgbench_ok(
            proxy.port,
            &["-M", mode, "-c", "8", "-j", "2", "-T", "5", &db],
            mode,
        );
        let processed = text
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
            .and_then(|v| v.split('/').next())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        assert!(processed > 0, "{mode}: {text}");
    }
}
