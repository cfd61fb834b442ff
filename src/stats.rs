//! Counters the proxy keeps about itself: per-node statement and error counts, backend
//! connections, sessions, auth failures and query latency. One source, three views: `SHOW
//! pool_*` and PCP read the atomics, `/metrics` encodes the same atomics at scrape time.
//! Bumping a counter on the hot path is one relaxed atomic add.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

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
        match word.as_str() {
            "select" | "with" | "values" | "table" => StmtClass::Select,
            "insert" => StmtClass::Insert,
            "update" => StmtClass::Update,
            "delete" => StmtClass::Delete,
            "create" | "alter" | "drop" | "truncate" | "comment" | "grant" | "revoke"
            | "reindex" | "cluster" | "security" | "import" | "refresh" => StmtClass::Ddl,
            _ => StmtClass::Other,
        }
    }
}

/// The first keyword of `sql`, lower-cased, skipping blanks, `--`/`/* */` comments and `(`.
fn first_keyword(sql: &str) -> String {
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
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase()
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
    pub latency: Histogram,
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
            // 100 µs … ~26 s.
            latency: Histogram::new(exponential_buckets(0.0001, 4.0, 10)),
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
        self.latency.observe(d.as_secs_f64());
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
}

/// Backend slots Pgpool-II allows (`MAX_NUM_BACKENDS`).
pub const MAX_NODES: usize = 128;

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
    pub fn routed(&self, node: usize, reason: &'static str) {
        let mut v = self.routed.lock().unwrap_or_else(|p| p.into_inner());
        match v.iter_mut().find(|(n, r, _)| *n == node && *r == reason) {
            Some(e) => e.2 += 1,
            None => v.push((node, reason, 1)),
        }
    }

    pub fn routed_counts(&self) -> Vec<(usize, &'static str, u64)> {
        self.routed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
