//! Counters the proxy keeps about itself: per-node statement and error counts, backend
//! connections, sessions, auth failures and query latency. One source, three views: `SHOW
//! pool_*` and PCP read the atomics, `/metrics` encodes the same atomics at scrape time.
//! Bumping a counter on the hot path is one relaxed atomic add.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Pgpool-II's statement classes (`SHOW pool_backend_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StmtClass {
    Select,
    Insert,
    Update,
    Delete,
    Ddl,
    Other,
}

impl StmtClass {
    /// The class of a statement text, from its first keyword (comments and parentheses
    /// skipped). `WITH` counts as a select: a data-modifying CTE is rare and still a query.
    pub fn of(sql: &str) -> StmtClass {
        let word = first_keyword(sql);
        let is = |k: &str| word.eq_ignore_ascii_case(k);
        if is("select") || is("with") || is("values") || is("table") {
            StmtClass::Select
        } else if is("insert") {
            StmtClass::Insert
        } else if is("update") {
            StmtClass::Update
        } else if is("delete") {
            StmtClass::Delete
        } else if [
            "create", "alter", "drop", "truncate", "comment", "grant", "revoke", "reindex",
            "cluster", "security", "import", "refresh",
        ]
        .iter()
        .any(|k| is(k))
        {
            StmtClass::Ddl
        } else {
            StmtClass::Other
        }
    }
}

/// The first keyword of `sql` as written, skipping blanks, `--`/`/* */` comments and `(`.
fn first_keyword(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let end = rest
        .bytes()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    &rest[..end]
}

/// ErrorResponse severities Pgpool-II counts per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Error,
    Fatal,
    Panic,
}

impl ErrorClass {
    /// The class of a backend ErrorResponse; PANIC is told apart from FATAL by its raw
    /// severity field, which `PgError` folds into FATAL.
    pub fn of(e: &crate::protocol::PgError, body: &[u8]) -> ErrorClass {
        if !e.is_fatal() {
            ErrorClass::Error
        } else if body.windows(7).any(|w| w == b"VPANIC\0") {
            ErrorClass::Panic
        } else {
            ErrorClass::Fatal
        }
    }
}

/// Counters of one backend node.
#[derive(Debug)]
pub struct NodeStats {
    pub select: AtomicU64,
    pub insert: AtomicU64,
    pub update: AtomicU64,
    pub delete: AtomicU64,
    pub ddl: AtomicU64,
    pub other: AtomicU64,
    pub error: AtomicU64,
    pub fatal: AtomicU64,
    pub panic: AtomicU64,
    pub conns_opened: AtomicU64,
    pub conns_reused: AtomicU64,
    pub conns_closed: AtomicU64,
    /// Requests answered (ReadyForQuery), with their latency.
    pub latency: Latency,
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats {
            select: AtomicU64::new(0),
            insert: AtomicU64::new(0),
            update: AtomicU64::new(0),
            delete: AtomicU64::new(0),
            ddl: AtomicU64::new(0),
            other: AtomicU64::new(0),
            error: AtomicU64::new(0),
            fatal: AtomicU64::new(0),
            panic: AtomicU64::new(0),
            conns_opened: AtomicU64::new(0),
            conns_reused: AtomicU64::new(0),
            conns_closed: AtomicU64::new(0),
            latency: Latency::default(),
        }
    }
}

impl NodeStats {
    pub fn count_statement(&self, class: StmtClass) {
        let c = match class {
            StmtClass::Select => &self.select,
            StmtClass::Insert => &self.insert,
            StmtClass::Update => &self.update,
            StmtClass::Delete => &self.delete,
            StmtClass::Ddl => &self.ddl,
            StmtClass::Other => &self.other,
        };
        c.fetch_add(1, Relaxed);
    }

    pub fn count_error(&self, class: ErrorClass) {
        let c = match class {
            ErrorClass::Error => &self.error,
            ErrorClass::Fatal => &self.fatal,
            ErrorClass::Panic => &self.panic,
        };
        c.fetch_add(1, Relaxed);
    }

    pub fn observe_latency(&self, d: Duration) {
        self.latency.observe(d);
    }
}

/// Upper bounds of the latency buckets in microseconds: 100 µs × 4ⁿ, up to ~26 s.
pub const LATENCY_BOUNDS_US: [u64; 10] = [
    100, 400, 1_600, 6_400, 25_600, 102_400, 409_600, 1_638_400, 6_553_600, 26_214_400,
];

/// A latency histogram every session of a node bumps at each answer: relaxed atomic adds,
/// no lock (a locked histogram was a point of contention between worker threads).
#[derive(Debug, Default)]
pub struct Latency {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// (sum in seconds, count, per-bucket (upper bound in seconds, count)), the last bound
    /// being +Inf — the shape Prometheus' histogram encoding takes.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let n = b.load(Relaxed);
                count += n;
                let bound = LATENCY_BOUNDS_US
                    .get(i)
                    .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
                (bound, n)
            })
            .collect();
        (self.sum_ns.load(Relaxed) as f64 / 1e9, count, buckets)
    }
}

/// Why a client failed to authenticate (metric label).
pub const AUTH_REASONS: [&str; 4] = ["password", "rejected", "timeout", "other"];

/// Counters of the whole proxy. Nodes are allocated once for the configured maximum, so a
/// reload that adds a backend still finds its counters.
#[derive(Debug)]
pub struct Stats {
    nodes: Vec<NodeStats>,
    /// When the proxy started (`last_status_change` until a status changes).
    pub started: SystemTime,
    /// Clients queued for a free session slot (the client limit sets this).
    pub sessions_waiting: AtomicI64,
    pub sessions_tls: AtomicU64,
    pub sessions_plain: AtomicU64,
    auth_failures: [AtomicU64; AUTH_REASONS.len()],
    /// Statements sent, by (node, routing reason code).
    routed: Mutex<Vec<(usize, &'static str, u64)>>,
    /// Routing decisions by node and [`ROUTE_REASONS`] index.
    routed_fixed: Vec<AtomicU64>,
}

/// Backend slots Pgpool-II allows (`MAX_NUM_BACKENDS`).
pub const MAX_NODES: usize = 128;

/// The routing reason codes counted without a lock (the policy's and the session's).
pub const ROUTE_REASONS: &[&str] = &[
    "load_balance",
    "write",
    "primary_default",
    "in_transaction",
    "session_pinned",
    "unsynced_batch",
    "node_unusable",
    "replica_unavailable",
    "volatility_unknown",
    "volatile_function",
    "in_write_transaction",
    "wrote_in_session",
    "hint_comment",
    "temp_table",
    "unparseable",
    "weight",
    "redirect",
    "system_catalog",
    "pattern",
    "serializable",
    "read_write_transaction",
    "failed_transaction",
    "multi_statement",
    "session_command",
    "transaction_control",
    "two_phase",
    "load_balance_off",
    "cursor",
    "listen",
    "explain",
    "copy_to_file",
    "dml_adaptive",
    "unknown_prepared",
    "prepared_on_primary",
    "admin",
    "empty",
];

impl Default for Stats {
    fn default() -> Self {
        Stats {
            nodes: (0..MAX_NODES).map(|_| NodeStats::default()).collect(),
            started: SystemTime::now(),
            sessions_waiting: AtomicI64::new(0),
            sessions_tls: AtomicU64::new(0),
            sessions_plain: AtomicU64::new(0),
            auth_failures: Default::default(),
            routed: Mutex::new(Vec::new()),
            routed_fixed: (0..MAX_NODES * ROUTE_REASONS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Stats {
    /// The counters of `node`; out-of-range ids share a scratch slot rather than panic.
    pub fn node(&self, node: usize) -> &NodeStats {
        let last = self.nodes.len() - 1;
        &self.nodes[node.min(last)]
    }

    pub fn session_started(&self, tls: bool) {
        let c = if tls {
            &self.sessions_tls
        } else {
            &self.sessions_plain
        };
        c.fetch_add(1, Relaxed);
    }

    /// `reason` is one of [`AUTH_REASONS`]; anything else counts as `other`.
    pub fn auth_failed(&self, reason: &str) {
        let i = AUTH_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(AUTH_REASONS.len() - 1);
        self.auth_failures[i].fetch_add(1, Relaxed);
    }

    pub fn auth_failures(&self) -> Vec<(&'static str, u64)> {
        AUTH_REASONS
            .iter()
            .zip(&self.auth_failures)
            .map(|(r, c)| (*r, c.load(Relaxed)))
            .collect()
    }

    /// One statement went to `node` because of `reason` (the router's reason code).
    /// Counts a routing decision: a relaxed add for the known reasons, a lock only for a
    /// reason missing from [`ROUTE_REASONS`].
    pub fn routed(&self, node: usize, reason: &'static str) {
        if let Some(r) = ROUTE_REASONS.iter().position(|&k| k == reason) {
            if let Some(c) = self.routed_fixed.get(node * ROUTE_REASONS.len() + r) {
                c.fetch_add(1, Relaxed);
                return;
            }
        }
        let mut v = self.routed.lock().unwrap_or_else(|p| p.into_inner());
        match v.iter_mut().find(|(n, r, _)| *n == node && *r == reason) {
            Some(e) => e.2 += 1,
            None => v.push((node, reason, 1)),
        }
    }

    pub fn routed_counts(&self) -> Vec<(usize, &'static str, u64)> {
        let mut out: Vec<(usize, &'static str, u64)> = self
            .routed_fixed
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Relaxed);
                let reason = ROUTE_REASONS[i % ROUTE_REASONS.len()];
                (n > 0).then_some((i / ROUTE_REASONS.len(), reason, n))
            })
            .collect();
        out.extend(
            self.routed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_classes_follow_the_first_keyword() {
        let table = [
            ("SELECT 1", StmtClass::Select),
            ("  /* c */ (select 1)", StmtClass::Select),
            (
                "-- x\nWITH a AS (SELECT 1) SELECT * FROM a",
                StmtClass::Select,
            ),
            ("insert into t values (1)", StmtClass::Insert),
            ("UPDATE t SET a = 1", StmtClass::Update),
            ("delete from t", StmtClass::Delete),
            ("CREATE TABLE t (a int)", StmtClass::Ddl),
            ("drop table t", StmtClass::Ddl),
            ("BEGIN", StmtClass::Other),
            ("SET x = 1", StmtClass::Other),
            ("", StmtClass::Other),
            ("/* unterminated", StmtClass::Other),
        ];
        for (sql, want) in table {
            assert_eq!(StmtClass::of(sql), want, "{sql}");
        }
    }

    #[test]
    fn out_of_range_nodes_do_not_panic() {
        let s = Stats::default();
        s.node(100_000).count_statement(StmtClass::Select);
        s.auth_failed("nonsense");
        assert_eq!(s.auth_failures()[3].1, 1);
    }
}
