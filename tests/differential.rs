//! The differential protocol fuzzer: random but valid client message sequences run once
//! straight against the primary and once through the proxy (reads load-balanced to the
//! replica), and the two normalized answer streams, the final table contents and the
//! sessions the proxy leaves behind are compared. A difference is shrunk and printed as a
//! pgproto script with both streams.
//!
//! Lag cannot cause a difference: the test's own cluster commits with
//! `synchronous_commit = remote_apply` and the replica as synchronous standby, so whatever
//! the primary committed is visible on the replica before the commit returns.
//!
//! CI runs the regression cases (`differential/cases.rs`) and then a fixed seed for
//! [`CI_SEQUENCES`] sequences. `PGRS_DIFF_SECONDS` runs for that long instead and
//! `PGRS_DIFF_SEED` picks the seed (`scripts/difffuzz.sh SECONDS [SEED]`);
//! `PGRS_DIFF_SEQUENCES` runs that many sequences (one seed, with the seed: a replay).

#[path = "differential/cases.rs"]
mod cases;
mod common;
#[path = "differential/gen.rs"]
mod gen;
#[path = "differential/run.rs"]
mod run;
#[path = "differential/script.rs"]
mod script;

use std::time::{Duration, Instant};

use common::{connect_str, Node, PrivateCluster, Proxy, REPLICA_APP_NAME};
use script::Sequence;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Random sequences per CI run (after the regression cases).
const CI_SEQUENCES: u64 = 500;
const DEFAULT_SEED: u64 = 0x5EED_0016;
/// Distinct differences reported before the run stops (each one is shrunk first): in CI,
/// and in a run of `PGRS_DIFF_SECONDS`.
const MAX_FINDINGS: usize = 4;
const MAX_FINDINGS_TIMED: usize = 25;
/// Bounds for shrinking one difference.
const SHRINK_TRIES: usize = 120;
const SHRINK_TIME: Duration = Duration::from_secs(90);

const DIRECT_DB: &str = "diff_direct";
const PROXY_DB: &str = "diff_proxy";

const SCHEMA: &str = "CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL, note text);
    CREATE TABLE log (id int PRIMARY KEY, acct int, msg text)";
const RESET: &str = "TRUNCATE acct, log;
    INSERT INTO acct SELECT g, g * 10, 'seed' || g FROM generate_series(1, 5) g";
const DUMP: &str = "SELECT id, n, note FROM acct ORDER BY id;
    SELECT id, acct, msg FROM log ORDER BY id";

/// Reads go to the replica (weight 0 for the primary), connections are cached.
const LOAD_BALANCED: &str = "load_balance_mode = on\nbackend_weight0 = 0\n\
    backend_weight1 = 1\nconnection_cache = on\n";

/// The proxies under test, each with its `pgpool.conf` lines on top of [`LOAD_BALANCED`].
const PROXIES: &[(&str, &str)] = &[
    ("load balanced", ""),
    // On one event loop (tokio's current-thread runtime) rather than the worker pool.
    (
        "load balanced, disable_load_balance_on_write = always, worker_threads = 1",
        "disable_load_balance_on_write = 'always'\nworker_threads = 1\n",
    ),
    // Reads after a write of the transaction stay on the replica (other tables): the
    // paths where a failing balanced read must abort a transaction that wrote.
    (
        "load balanced, disable_load_balance_on_write = dml_adaptive",
        "disable_load_balance_on_write = 'dml_adaptive'\n",
    ),
    // Reads after writes are checked first with silent queries on the session's own
    // primary and replica connections, between and around the client's messages.
    (
        "load balanced, read_your_writes = on",
        "read_your_writes = on\n",
    ),
    (TXN_POOLING, "pool_mode = transaction\n"),
];

/// The proxy that shares backend connections between transactions: it refuses what would
/// outlive one (temp tables, a SET among other statements, set_config in a data change), so
/// sequences using those are not run through it.
const TXN_POOLING: &str = "load balanced, pool_mode = transaction";

/// Whether `seq` uses nothing transaction pooling refuses.
fn poolable(seq: &Sequence) -> bool {
    use script::Msg;
    seq.msgs.iter().all(|m| {
        let sql = match m {
            Msg::Query(sql) | Msg::Cancel(sql) | Msg::Parse { sql, .. } => sql.to_lowercase(),
            _ => return true,
        };
        let multi_set = sql.contains(';') && (sql.contains("set ") || sql.contains("reset "));
        !(sql.contains("tmp") || sql.contains("temp") || multi_set || sql.contains("set_config"))
    })
}

/// A backend session of the proxy's database that is not idle: in a transaction, or in the
/// middle of an extended-protocol batch that never got its Sync (`active`, reading).
const STUCK: &str = "backend_type = 'client backend' AND state <> 'idle'";

fn start_proxy(cluster: &PrivateCluster, extra: &str) -> Proxy {
    Proxy::builder()
        .conf(&cluster.proxy_conf())
        .conf(LOAD_BALANCED)
        .conf(extra)
        .start()
}

/// The test's cluster, the two databases and the proxies under test.
struct Rig {
    cluster: PrivateCluster,
    primary: Client,
    replica: Client,
    direct_db: Client,
    proxy_db: Client,
    /// (name, extra pgpool.conf lines, the running proxy)
    proxies: Vec<(&'static str, &'static str, Proxy)>,
    /// The sequence each proxy ran last (a difference may need what it left behind).
    last: Vec<Option<Sequence>>,
}

/// What differed for one sequence.
#[derive(Debug)]
struct Finding {
    direct: Vec<String>,
    proxied: Vec<String>,
    tables: Option<(Vec<String>, Vec<String>)>,
    leftovers: Vec<String>,
}

impl Finding {
    /// Which comparisons failed, so shrinking keeps the same kind of difference.
    fn kind(&self) -> (bool, bool, bool) {
        (
            self.direct != self.proxied,
            self.tables.is_some(),
            !self.leftovers.is_empty(),
        )
    }

    /// The first differing pair of lines (or the kind), to tell distinct differences apart.
    fn signature(&self) -> String {
        let at = first_difference(&self.direct, &self.proxied);
        let line = |v: &[String]| v.get(at).cloned().unwrap_or_else(|| "(end)".into());
        format!(
            "{:?} {} <> {}",
            self.kind(),
            line(&self.direct),
            line(&self.proxied)
        )
    }
}

fn first_difference(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

async fn connect_db(port: u16, db: &str) -> Client {
    let conn = format!("host=127.0.0.1 port={port} user=postgres dbname={db}");
    connect_str(&conn)
        .await
        .unwrap_or_else(|e| panic!("connect to {db} on port {port}: {e}"))
}

async fn rows(client: &Client, sql: &str) -> Vec<String> {
    let msgs = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

impl Rig {
    async fn start() -> Rig {
        let cluster = PrivateCluster::start("difffuzz");
        let primary = cluster.client(Node::Primary).await;
        for sql in [
            format!("ALTER SYSTEM SET synchronous_standby_names = '\"{REPLICA_APP_NAME}\"'"),
            "ALTER SYSTEM SET synchronous_commit = 'remote_apply'".into(),
            "SELECT pg_reload_conf()".into(),
        ] {
            primary.batch_execute(&sql).await.unwrap();
        }
        wait_for_sync_standby(&primary).await;
        for db in [DIRECT_DB, PROXY_DB] {
            primary
                .batch_execute(&format!("CREATE DATABASE {db}"))
                .await
                .unwrap();
            let c = connect_db(cluster.primary_port, db).await;
            c.batch_execute(SCHEMA).await.unwrap();
        }
        let direct_db = connect_db(cluster.primary_port, DIRECT_DB).await;
        let proxy_db = connect_db(cluster.primary_port, PROXY_DB).await;
        for c in [&direct_db, &proxy_db] {
            c.batch_execute("SET lock_timeout = '3s'").await.unwrap();
        }
        let replica = cluster.client(Node::Replica).await;
        let proxies = PROXIES
            .iter()
            .map(|&(name, extra)| (name, extra, start_proxy(&cluster, extra)))
            .collect();
        Rig {
            cluster,
            primary,
            replica,
            direct_db,
            proxy_db,
            last: vec![None; PROXIES.len()],
            proxies,
        }
    }

    /// Both databases back to the seed rows; the commit returns once the replica applied it.
    async fn reset(&self) {
        for c in [&self.direct_db, &self.proxy_db] {
            if let Err(e) = c.batch_execute(RESET).await {
                // A session left in a transaction can hold a lock: it is reported by
                // `leftovers`; end it and try again.
                self.end_leftovers().await;
                if let Err(e2) = c.batch_execute(RESET).await {
                    let sql = "SELECT datname, state, wait_event, query, backend_type FROM pg_stat_activity";
                    let mut who = rows(&self.primary, sql).await;
                    who.extend(rows(&self.replica, sql).await);
                    panic!("reset: {e:?}, then {e2:?}\n{who:#?}");
                }
            }
        }
    }

    /// Sessions of the proxy's database that are still in a transaction (on either server)
    /// after the client disconnected, polled for a bounded time.
    async fn leftovers(&self) -> Vec<String> {
        let sql = format!(
            "SELECT state || ' (' || coalesce(wait_event, '') || '): ' || left(query, 80)
             FROM pg_stat_activity
             WHERE datname = '{PROXY_DB}' AND {STUCK}"
        );
        let mut found = Vec::new();
        for _ in 0..15 {
            found = rows(&self.primary, &sql).await;
            found.extend(
                rows(&self.replica, &sql)
                    .await
                    .into_iter()
                    .map(|r| format!("on the replica: {r}")),
            );
            if found.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        found
    }

    async fn end_leftovers(&self) {
        let sql = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{PROXY_DB}' AND {STUCK}"
        );
        rows(&self.primary, &sql).await;
        rows(&self.replica, &sql).await;
    }

    /// Runs `seq` both ways; `None` when everything matched.
    async fn check(&mut self, which: usize, seq: &Sequence) -> Option<Finding> {
        if self.proxies[which].0 == TXN_POOLING && !poolable(seq) {
            return None;
        }
        self.reset().await;
        let direct = run::run(self.cluster.primary_port, DIRECT_DB, seq).await;
        let proxied = run::run(self.proxies[which].2.port, PROXY_DB, seq).await;
        let leftovers = self.leftovers().await;
        if !leftovers.is_empty() {
            // The proxy may still hold (or have cached) the stuck connection: start the
            // next sequence with a fresh proxy, so one difference does not cause others.
            self.end_leftovers().await;
            self.fresh_proxy(which);
        }
        self.last[which] = Some(seq.clone());
        let (t_direct, t_proxy) = (
            rows(&self.direct_db, DUMP).await,
            rows(&self.proxy_db, DUMP).await,
        );
        let tables = (t_direct != t_proxy).then_some((t_direct, t_proxy));
        let finding = Finding {
            direct,
            proxied,
            tables,
            leftovers,
        };
        (finding.kind() != (false, false, false)).then_some(finding)
    }

    /// Replaces proxy `which` by a new process: nothing cached, nothing remembered.
    fn fresh_proxy(&mut self, which: usize) {
        let (_, extra, _) = self.proxies[which];
        self.proxies[which].2 = start_proxy(&self.cluster, extra);
    }

    /// Checks `seq` on a fresh proxy; if it differs only after what the previous sequence
    /// left in the proxy (a cached connection, say), checks both as one sequence with a
    /// new session in between. Returns the sequence that reproduces on a fresh proxy.
    async fn reproduce(&mut self, which: usize, seq: Sequence) -> Option<(Sequence, Finding)> {
        let prev = self.last[which].clone();
        self.fresh_proxy(which);
        if let Some(f) = self.check(which, &seq).await {
            return Some((seq, f));
        }
        let mut msgs = prev?.msgs;
        msgs.push(script::Msg::Terminate);
        msgs.extend(seq.msgs);
        let joined = Sequence {
            pipelined: seq.pipelined,
            msgs,
        }
        .fixed_up();
        self.fresh_proxy(which);
        let f = self.check(which, &joined).await?;
        Some((joined, f))
    }

    /// Deletes rounds, then single messages, while the same kind of difference persists
    /// (each try on a fresh proxy, so a try cannot depend on the one before).
    async fn shrink(&mut self, which: usize, seq: Sequence, kind: (bool, bool, bool)) -> Sequence {
        let deadline = Instant::now() + SHRINK_TIME;
        let mut best = seq;
        let mut tries = 0;
        'outer: loop {
            let mut candidates = Vec::new();
            if best.pipelined {
                candidates.push(Sequence {
                    pipelined: false,
                    msgs: best.msgs.clone(),
                });
            }
            let mut at = 0;
            for round in best.rounds() {
                let mut msgs = best.msgs.clone();
                msgs.drain(at..at + round.len());
                candidates.push(Sequence {
                    msgs,
                    ..best.clone()
                });
                at += round.len();
            }
            for i in 0..best.msgs.len() {
                let mut msgs = best.msgs.clone();
                msgs.remove(i);
                candidates.push(Sequence {
                    msgs,
                    ..best.clone()
                });
            }
            for cand in candidates {
                let cand = cand.fixed_up();
                if cand == best || cand.msgs.is_empty() {
                    continue;
                }
                if tries >= SHRINK_TRIES || Instant::now() > deadline {
                    break 'outer;
                }
                tries += 1;
                self.fresh_proxy(which);
                if let Some(f) = self.check(which, &cand).await {
                    if f.kind() == kind {
                        best = cand;
                        continue 'outer;
                    }
                }
            }
            break;
        }
        best
    }
}

async fn wait_for_sync_standby(primary: &Client) {
    let sql = format!(
        "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{REPLICA_APP_NAME}'"
    );
    for _ in 0..200 {
        if rows(primary, &sql).await.first().map(String::as_str) == Some("sync") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the replica did not become a synchronous standby");
}

/// The difference as a person reads it: the script, then both streams side by side.
fn report(title: &str, proxy: &str, seq: &Sequence, f: &Finding) -> String {
    let mut s = format!("=== difference: {title} (proxy: {proxy})\n");
    s.push_str("--- sequence (pgproto script):\n");
    s.push_str(&seq.script());
    let at = first_difference(&f.direct, &f.proxied);
    for (label, lines) in [
        ("straight to the primary", &f.direct),
        ("through the proxy", &f.proxied),
    ] {
        s.push_str(&format!("--- answers {label}:\n"));
        for (i, l) in lines.iter().enumerate() {
            let mark = if i == at && f.direct != f.proxied {
                ">>"
            } else {
                "  "
            };
            s.push_str(&format!("{mark} {l}\n"));
        }
    }
    if let Some((d, p)) = &f.tables {
        s.push_str(&format!(
            "--- final tables differ:\n   direct: {d:?}\n   proxy:  {p:?}\n"
        ));
    }
    for l in &f.leftovers {
        s.push_str(&format!(
            "--- left in a transaction after the client left: {l}\n"
        ));
    }
    s
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sequence_answers_through_the_proxy_as_on_the_primary() {
    let mut rig = Rig::start().await;
    let started = Instant::now();
    let mut findings = Vec::new();
    let mut seen = Vec::new();

    for (name, text) in cases::CASES {
        let seq = Sequence::parse(text);
        for which in 0..rig.proxies.len() {
            let pname = rig.proxies[which].0;
            rig.fresh_proxy(which); // a case must not depend on the one before
            if let Some(f) = rig.check(which, &seq).await {
                seen.push(f.signature());
                findings.push(report(&format!("regression case {name}"), pname, &seq, &f));
            }
        }
    }
    let cases_done = started.elapsed();
    let from_cases = findings.len();

    let seed = env_u64("PGRS_DIFF_SEED").unwrap_or(DEFAULT_SEED);
    let limit = env_u64("PGRS_DIFF_SECONDS").map(Duration::from_secs);
    let count = env_u64("PGRS_DIFF_SEQUENCES").unwrap_or(CI_SEQUENCES);
    let mut runs = 0u64;
    let mut repeats = 0u64;
    let mut checking = Duration::ZERO; // random sequences only, without shrinking
    loop {
        let done = match limit {
            Some(limit) => started.elapsed() >= limit,
            None => runs >= count,
        };
        let max = if limit.is_some() {
            MAX_FINDINGS_TIMED
        } else {
            MAX_FINDINGS
        };
        if done || findings.len() - from_cases >= max {
            break;
        }
        let seq_seed = seed.wrapping_add(runs);
        let which = (runs % rig.proxies.len() as u64) as usize;
        let pname = rig.proxies[which].0;
        runs += 1;
        if runs % 50 == 0 {
            eprintln!("{runs} sequences, {:?}", started.elapsed());
        }
        let seq = gen::sequence(seq_seed);
        let check_started = Instant::now();
        let found = rig.check(which, &seq).await;
        checking += check_started.elapsed();
        let Some(f) = found else {
            continue;
        };
        if seen.contains(&f.signature()) {
            repeats += 1;
            continue;
        }
        seen.push(f.signature());
        let mut title = format!("seed {seq_seed:#x}");
        let (seq, f) = match rig.reproduce(which, seq.clone()).await {
            Some((seq, f)) => {
                let small = rig.shrink(which, seq, f.kind()).await;
                rig.fresh_proxy(which);
                let f2 = rig.check(which, &small).await;
                (small, f2.unwrap_or(f))
            }
            None => {
                title.push_str(", NOT reproduced on a fresh proxy, not shrunk");
                (seq, f)
            }
        };
        eprintln!("{}", report(&title, pname, &seq, &f));
        findings.push(report(&title, pname, &seq, &f));
    }
    eprintln!(
        "differential fuzzer: seed {seed:#x}, {} regression cases in {cases_done:?}, \
         {runs} random sequences in {checking:?}, {} differences ({repeats} more of a kind \
         seen), {:?} in all",
        cases::CASES.len(),
        findings.len(),
        started.elapsed()
    );
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}
