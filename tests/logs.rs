//! Logging as Pgpool-II users expect: `log_statement` / `log_per_node_statement` lines,
//! `log_line_prefix`, `log_min_messages`, and `log_format = json` (pgpool-rs) for pipelines.

mod common;

use std::time::{Duration, Instant};

use common::Proxy;

/// The proxy's log once it contains `needle` (bounded: log lines are written as they come).
fn log_with(proxy: &Proxy, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = proxy.log();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn statements_are_logged_with_the_node_and_the_prefix() {
    let proxy = Proxy::start(
        "log_per_node_statement = on\nlog_line_prefix = '%t [%u@%d] '\n\
         backend_weight1 = 0\n",
    );
    let c = proxy.connect("postgres", "postgres").await;
    c.batch_execute("select 4242").await.unwrap();
    let log = log_with(&proxy, "select 4242");
    let line = log
        .lines()
        .find(|l| l.contains("select 4242"))
        .unwrap_or_else(|| panic!("no statement line:\n{log}"));
    assert!(line.contains("LOG:  DB node id: 0 backend pid: "), "{line}");
    assert!(line.contains("[postgres@postgres] "), "{line}");
    // Extended protocol: the Parse text.
    c.query_one("select $1::int + 1", &[&1i32]).await.unwrap();
    let log = log_with(&proxy, "Parse: select $1::int + 1");
    assert!(log.contains("Parse: select $1::int + 1"), "{log}");
}

#[tokio::test]
async fn json_lines_for_log_pipelines_and_fatal_level_hides_log_lines() {
    let proxy = Proxy::start("log_format = json\nlog_statement = on\n");
    let c = proxy.connect("postgres", "postgres").await;
    c.batch_execute("select 4343").await.unwrap();
    let log = log_with(&proxy, "select 4343");
    let line = log
        .lines()
        .find(|l| l.contains("select 4343"))
        .unwrap_or_else(|| panic!("no statement line:\n{log}"));
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(
        line.contains(r#""message":"statement: select 4343""#),
        "{line}"
    );
    // Every line the proxy wrote is one JSON object (the harness adds none).
    let proxy_lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(proxy_lines.iter().all(|l| l.starts_with('{')), "{log}");

    let quiet = Proxy::start("log_min_messages = fatal\nlog_statement = on\n");
    let c = quiet.connect("postgres", "postgres").await;
    c.batch_execute("select 4444").await.unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let log = quiet.log();
    assert!(!log.contains("select 4444"), "{log}");

    // log_min_messages reloads (SIGHUP), as in Pgpool-II.
    let conf = quiet.dir.path().join("pgpool.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("log_min_messages = warning\n");
    std::fs::write(&conf, text).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &quiet.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.batch_execute("select 4545").await.unwrap();
        if quiet.log().contains("select 4545") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "level not reloaded:\n{}",
            quiet.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
