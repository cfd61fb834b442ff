//! Counters the proxy keeps about itself: per-node statement and error counts, backend
//! connections, sessions, auth failures and query latency. One source, three views: `SHOW
//! pool_*` and PCP read the atomics, `/metrics` encodes the same atomics at scrape time.
//! Bumping a counter on the hot path is one relaxed atomic add.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::router::Reason;
pub use crate::router::StmtClass;

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
    /// Backend connections sessions gave up (opened and reused ones are the pool's count).
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
    /// Statements sent for a reason code that is no [`Reason`], by (node, code).
    routed: Mutex<Vec<(usize, &'static str, u64)>>,
    /// Routing decisions by node and [`Reason::index`].
    routed_fixed: Vec<AtomicU64>,
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
            routed_fixed: (0..MAX_NODES * Reason::ALL.len())
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

    /// A routing decision: one relaxed add.
    pub fn routed(&self, node: usize, reason: Reason) {
        match self
            .routed_fixed
            .get(node * Reason::ALL.len() + reason.index())
        {
            Some(c) => {
                c.fetch_add(1, Relaxed);
            }
            None => self.routed_other(node, reason.code()),
        }
    }

    /// A node past [`MAX_NODES`]: still counted, under a lock.
    fn routed_other(&self, node: usize, code: &'static str) {
        let mut v = self.routed.lock().unwrap_or_else(|p| p.into_inner());
        match v.iter_mut().find(|(n, r, _)| *n == node && *r == code) {
            Some(e) => e.2 += 1,
            None => v.push((node, code, 1)),
        }
    }

    pub fn routed_counts(&self) -> Vec<(usize, &'static str, u64)> {
        let per_node = Reason::ALL.len();
        let mut out: Vec<(usize, &'static str, u64)> = self
            .routed_fixed
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let n = c.load(Relaxed);
                let reason = Reason::ALL[i % per_node].code();
                (n > 0).then_some((i / per_node, reason, n))
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
    fn routing_counters_keep_the_reason_codes_as_labels() {
        let s = Stats::default();
        s.routed(1, Reason::LoadBalance);
        s.routed(1, Reason::LoadBalance);
        s.routed(0, Reason::SessionPinned);
        s.routed(MAX_NODES + 1, Reason::Write);
        let mut got = s.routed_counts();
        got.sort();
        assert_eq!(
            got,
            [
                (0, "session_pinned", 1),
                (1, "load_balance", 2),
                (MAX_NODES + 1, "write", 1),
            ]
        );
    }

    #[test]
    fn out_of_range_nodes_do_not_panic() {
        let s = Stats::default();
        s.node(100_000).count_statement(StmtClass::Select);
        s.auth_failed("nonsense");
        assert_eq!(s.auth_failures()[3].1, 1);
    }
}
