//! What the proxy knows about each backend node right now: reachable or not, its live role,
//! how far it lags. One source for the router (may this node serve reads?), `SHOW pool_nodes`,
//! PCP and `/metrics` alike. The router asks on every read, so that answer is one atomic
//! load; the rest sits behind a mutex only writers and admin views take.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

/// `primary` when no writable primary is known.
const NO_PRIMARY: usize = usize::MAX;

/// Pgpool-II's `status` column: `waiting` until the first successful connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    Waiting,
    Up,
    Down,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Waiting => "waiting",
            NodeStatus::Up => "up",
            NodeStatus::Down => "down",
        }
    }
}

/// The node's live role from `pg_is_in_recovery()`; `Unknown` until the check has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgRole {
    Unknown,
    Primary,
    Standby,
}

impl PgRole {
    /// As `SHOW pool_nodes` prints `pg_role`.
    pub fn as_str(self) -> &'static str {
        match self {
            PgRole::Unknown => "unknown",
            PgRole::Primary => "primary",
            PgRole::Standby => "standby",
        }
    }
}

/// A copy of one node's state, for admin views.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSnapshot {
    pub status: NodeStatus,
    pub pg_role: PgRole,
    /// Bytes of WAL the node has not replayed yet (0 for the primary).
    pub delay_bytes: u64,
    /// `replay_lag` in µs from `pg_stat_replication` (needs `backend_application_nameN`).
    pub delay_time_us: Option<u64>,
    /// Past `delay_threshold` / `delay_threshold_by_time` at the last check.
    pub lagging: bool,
    /// `pg_stat_replication.state`, e.g. `streaming` ('' when unknown).
    pub replication_state: String,
    /// `pg_stat_replication.sync_state`, e.g. `async` ('' when unknown).
    pub sync_state: String,
    /// When `status` or `pg_role` last changed (start time at first).
    pub last_change: SystemTime,
    /// Why the node was last marked down.
    pub down_reason: String,
}

/// One node's shared state.
pub struct NodeState {
    /// May a read meant for a replica go here: up, not lagging, not a primary.
    readable: AtomicBool,
    detail: Mutex<NodeSnapshot>,
    /// Wakes the node's background retry when the node is marked down.
    wake: tokio::sync::Notify,
    /// Reads that went to the primary because this node failed (connect or mid-session).
    fallbacks: AtomicU64,
    /// Requests retried on the primary after this node died under them.
    retries: AtomicU64,
    /// Health check counts (`SHOW pool_health_check_stats`).
    health: Mutex<HealthStats>,
}

/// How the primary is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryMode {
    /// `backend_flagN = ALWAYS_PRIMARY` (or no way to ask): this node, whatever it answers.
    Fixed(usize),
    /// Pgpool-II's `find_primary_node`: the first reachable node not in recovery.
    Detect,
}

/// Every configured node's state, indexed by node id.
pub struct NodeStates {
    nodes: Vec<NodeState>,
    /// The node writes go to, or [`NO_PRIMARY`]; one atomic load for every session.
    primary: AtomicUsize,
    /// [`PrimaryMode::Fixed`] node, or [`NO_PRIMARY`] when detecting.
    fixed: AtomicUsize,
    /// Wakes sessions waiting for a primary and the primary search.
    primary_changed: tokio::sync::Notify,
    /// Wakes the primary search (the primary failed or was found in recovery).
    search: tokio::sync::Notify,
}

/// One node's health check record, as Pgpool-II's `POOL_HEALTH_CHECK_STATISTICS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthStats {
    pub total_count: u64,
    pub success_count: u64,
    pub fail_count: u64,
    pub skip_count: u64,
    pub retry_count: u64,
    pub max_retry_count: u64,
    /// Durations of whole checks (retries included).
    pub max_duration: Duration,
    pub min_duration: Duration,
    pub total_duration: Duration,
    pub last_health_check: Option<SystemTime>,
    pub last_successful_health_check: Option<SystemTime>,
    pub last_skip_health_check: Option<SystemTime>,
    pub last_failed_health_check: Option<SystemTime>,
}

impl HealthStats {
    /// Records one finished check: `retries` extra attempts, `ok` its outcome.
    pub fn record(&mut self, ok: bool, retries: u64, took: Duration, at: SystemTime) {
        self.total_count += 1;
        if ok {
            self.success_count += 1;
            self.last_successful_health_check = Some(at);
        } else {
            self.fail_count += 1;
            self.last_failed_health_check = Some(at);
        }
        self.retry_count += retries;
        self.max_retry_count = self.max_retry_count.max(retries);
        self.max_duration = self.max_duration.max(took);
        if self.min_duration.is_zero() || took < self.min_duration {
            self.min_duration = took;
        }
        self.total_duration += took;
        self.last_health_check = Some(at);
    }

    pub fn average_retry_count(&self) -> f64 {
        match self.total_count {
            0 => 0.0,
            n => self.retry_count as f64 / n as f64,
        }
    }

    /// Average duration in milliseconds (Pgpool-II's unit).
    pub fn average_duration_ms(&self) -> f64 {
        match self.total_count {
            0 => 0.0,
            n => self.total_duration.as_secs_f64() * 1000.0 / n as f64,
        }
    }
}

/// What a change did, so the caller can log or start a probe once, not on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Changed,
    Unchanged,
}

impl NodeStates {
    /// Wakes the primary search (the primary failed or was found in recovery).
    pub fn request_primary_search(&self) {
        self.search.notify_one();
    }

    /// Resolves at the next [`NodeStates::request_primary_search`] (one made while nobody
    /// waited is kept for the next wait).
    pub fn primary_search_requested(&self) -> tokio::sync::futures::Notified<'_> {
        self.search.notified()
    }

    pub fn new(count: usize) -> NodeStates {
        let now = SystemTime::now();
        let nodes = (0..count.max(1))
            .map(|_| NodeState {
                readable: AtomicBool::new(true),
                detail: Mutex::new(NodeSnapshot {
                    status: NodeStatus::Waiting,
                    pg_role: PgRole::Unknown,
                    delay_bytes: 0,
                    delay_time_us: None,
                    lagging: false,
                    replication_state: String::new(),
                    sync_state: String::new(),
                    last_change: now,
                    down_reason: String::new(),
                }),
                wake: tokio::sync::Notify::new(),
                fallbacks: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                health: Mutex::new(HealthStats::default()),
            })
            .collect();
        NodeStates {
            nodes,
            primary: AtomicUsize::new(0),
            fixed: AtomicUsize::new(0),
            primary_changed: tokio::sync::Notify::new(),
            search: tokio::sync::Notify::new(),
        }
    }

    /// How the primary is found; called at start and on reload. Detecting starts with no
    /// primary known, so nothing is written anywhere before a node said it is the primary.
    pub fn set_primary_mode(&self, mode: PrimaryMode) {
        let fixed = match mode {
            PrimaryMode::Fixed(n) => n,
            PrimaryMode::Detect => NO_PRIMARY,
        };
        let before = self.fixed.swap(fixed, Ordering::AcqRel);
        if before != fixed {
            if fixed == NO_PRIMARY {
                self.primary.store(NO_PRIMARY, Ordering::Release);
            }
            self.elect_primary();
        }
    }

    pub fn primary_mode(&self) -> PrimaryMode {
        match self.fixed.load(Ordering::Acquire) {
            NO_PRIMARY => PrimaryMode::Detect,
            n => PrimaryMode::Fixed(n),
        }
    }

    /// The node writes go to now, if a writable primary is known.
    pub fn primary(&self) -> Option<usize> {
        match self.primary.load(Ordering::Acquire) {
            NO_PRIMARY => None,
            n => Some(n),
        }
    }

    /// The primary, waiting up to `limit` for the search to find one.
    pub async fn wait_for_primary(&self, limit: Duration) -> Option<usize> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.primary_changed.notified();
            if let Some(p) = self.primary() {
                return Some(p);
            }
            self.search.notify_one();
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.primary();
            }
        }
    }

    /// Pgpool-II's `find_primary_node` over what the checks know: the fixed node, else the
    /// first node that is not down and answered `pg_is_in_recovery() = f`.
    fn elect_primary(&self) {
        let fixed = self.fixed.load(Ordering::Acquire);
        let next = if fixed != NO_PRIMARY {
            fixed
        } else {
            (0..self.nodes.len())
                .find(|&i| {
                    let s = self.nodes[i].lock();
                    s.status != NodeStatus::Down && s.pg_role == PgRole::Primary
                })
                .unwrap_or(NO_PRIMARY)
        };
        let before = self.primary.swap(next, Ordering::AcqRel);
        if before == next {
            return;
        }
        match next {
            NO_PRIMARY => {
                warn!("no writable primary is known: writes wait for the primary search");
                self.search.notify_one();
            }
            n => info!(node = n, "primary node is {n}"),
        }
        self.primary_changed.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, id: usize) -> Option<&NodeState> {
        self.nodes.get(id)
    }

    /// May a read the router meant for replica `id` go there? False for an unknown node.
    pub fn is_readable(&self, id: usize) -> bool {
        self.nodes
            .get(id)
            .is_some_and(|n| n.readable.load(Ordering::Relaxed))
            || (id < self.nodes.len() && self.primary.load(Ordering::Relaxed) == id)
    }

    pub fn status(&self, id: usize) -> NodeStatus {
        self.snapshot(id).map_or(NodeStatus::Down, |s| s.status)
    }

    pub fn snapshot(&self, id: usize) -> Option<NodeSnapshot> {
        self.nodes.get(id).map(|n| n.lock().clone())
    }

    /// A connection to the node succeeded.
    pub fn mark_up(&self, id: usize) -> Transition {
        self.update(id, |s| {
            if s.status == NodeStatus::Up {
                return Transition::Unchanged;
            }
            s.status = NodeStatus::Up;
            s.down_reason.clear();
            s.last_change = SystemTime::now();
            Transition::Changed
        })
    }

    /// The node could not be reached or its connection broke.
    pub fn mark_down(&self, id: usize, reason: &str) -> Transition {
        self.update(id, |s| {
            if s.status == NodeStatus::Down {
                return Transition::Unchanged;
            }
            s.status = NodeStatus::Down;
            s.down_reason = reason.to_string();
            s.last_change = SystemTime::now();
            Transition::Changed
        })
    }

    /// `pg_is_in_recovery()` answered.
    pub fn set_role(&self, id: usize, role: PgRole) -> Transition {
        self.update(id, |s| {
            if s.pg_role == role {
                return Transition::Unchanged;
            }
            s.pg_role = role;
            s.last_change = SystemTime::now();
            Transition::Changed
        })
    }

    /// The delay check measured the node.
    pub fn set_delay(&self, id: usize, m: &Measurement) -> Transition {
        self.update(id, |s| {
            let changed = s.lagging != m.lagging;
            s.delay_bytes = m.delay_bytes;
            s.delay_time_us = m.delay_time_us;
            s.lagging = m.lagging;
            s.replication_state = m.replication_state.clone();
            s.sync_state = m.sync_state.clone();
            if changed {
                Transition::Changed
            } else {
                Transition::Unchanged
            }
        })
    }

    fn update(&self, id: usize, f: impl FnOnce(&mut NodeSnapshot) -> Transition) -> Transition {
        let Some(node) = self.nodes.get(id) else {
            return Transition::Unchanged;
        };
        let mut s = node.lock();
        let t = f(&mut s);
        // Only replicas are judged here: the primary serves reads whenever it is used at
        // all (`is_readable` says so).
        let readable = s.status != NodeStatus::Down && !s.lagging && s.pg_role != PgRole::Primary;
        node.readable.store(readable, Ordering::Relaxed);
        drop(s);
        if t == Transition::Changed {
            self.elect_primary();
        }
        t
    }

    /// One finished health check of node `id`.
    pub fn record_health_check(&self, id: usize, ok: bool, retries: u64, took: Duration) {
        if let Some(n) = self.nodes.get(id) {
            let mut h = n.health.lock().unwrap_or_else(|p| p.into_inner());
            h.record(ok, retries, took, SystemTime::now());
        }
    }

    pub fn health_stats(&self, id: usize) -> HealthStats {
        self.nodes.get(id).map_or_else(HealthStats::default, |n| {
            n.health.lock().unwrap_or_else(|p| p.into_inner()).clone()
        })
    }

    /// With `prefer_lower_delay_standby`: the readable standby with the least delay, ties
    /// broken by weight with `r` uniform in `[0, 1)` (spec 5.1 step 4); `None` → primary.
    pub fn least_delayed_standby(&self, weights: &[f64], primary: usize, r: f64) -> Option<usize> {
        let candidates: Vec<(usize, u64)> = (0..self.nodes.len())
            .filter(|&i| i != primary && weights.get(i).copied().unwrap_or(0.0) > 0.0)
            .filter(|&i| self.is_readable(i))
            .filter_map(|i| {
                let s = self.snapshot(i)?;
                Some((i, s.delay_time_us.unwrap_or(0).max(s.delay_bytes)))
            })
            .collect();
        let best = candidates.iter().map(|c| c.1).min()?;
        let tied: Vec<usize> = candidates
            .iter()
            .filter(|c| c.1 == best)
            .map(|c| c.0)
            .collect();
        let tied_weights: Vec<f64> = (0..self.nodes.len())
            .map(|i| {
                if tied.contains(&i) {
                    weights.get(i).copied().unwrap_or(0.0)
                } else {
                    0.0
                }
            })
            .collect();
        crate::router::weighted_pick(&tied_weights, r, |_| true)
    }
}

impl NodeState {
    /// Wakes the node's background retry (it was just marked down).
    pub fn wake_retry(&self) {
        self.wake.notify_one();
    }

    /// Resolves at the next [`NodeState::wake_retry`]; a wake sent while nobody waited is
    /// kept for the next wait.
    pub fn retry_woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// A read meant for this node went to the primary because the node failed.
    pub fn note_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` requests were retried on the primary after this node died under them.
    pub fn note_retries(&self, n: u64) {
        self.retries.fetch_add(n, Ordering::Relaxed);
    }

    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NodeSnapshot> {
        self.detail.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One delay check's result for one standby.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    pub delay_bytes: u64,
    pub delay_time_us: Option<u64>,
    pub lagging: bool,
    pub replication_state: String,
    pub sync_state: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_serves_reads_only_when_up_caught_up_and_in_recovery() {
        let s = NodeStates::new(2);
        assert!(s.is_readable(1), "waiting nodes are tried");
        assert_eq!(s.mark_down(1, "refused"), Transition::Changed);
        assert_eq!(s.mark_down(1, "refused"), Transition::Unchanged);
        assert!(!s.is_readable(1));
        assert!(s.is_readable(0), "the primary is never judged here");
        assert_eq!(s.mark_up(1), Transition::Changed);
        assert!(s.is_readable(1));
        let lag = Measurement {
            delay_bytes: 10,
            lagging: true,
            ..Default::default()
        };
        assert_eq!(s.set_delay(1, &lag), Transition::Changed);
        assert!(!s.is_readable(1));
        s.set_delay(1, &Measurement::default());
        assert!(s.is_readable(1));
        s.set_role(1, PgRole::Primary);
        assert!(
            !s.is_readable(1),
            "a promoted replica gets no replica reads"
        );
        assert!(!s.is_readable(7), "unknown node");
    }

    #[test]
    fn detection_elects_the_first_reachable_node_not_in_recovery() {
        let s = NodeStates::new(3);
        assert_eq!(s.primary(), Some(0), "node 0 until configured");
        s.set_primary_mode(PrimaryMode::Detect);
        assert_eq!(s.primary(), None, "detecting: nothing known yet");
        s.set_role(0, PgRole::Standby);
        s.set_role(2, PgRole::Primary);
        assert_eq!(s.primary(), Some(2));
        assert!(s.is_readable(2), "the primary serves reads");
        assert!(s.is_readable(0), "a standby serves reads");
        s.mark_down(2, "refused");
        assert_eq!(s.primary(), None, "a primary marked down is no primary");
        s.set_role(1, PgRole::Primary);
        assert_eq!(s.primary(), Some(1), "switchover: the promoted node");
        s.mark_up(2);
        assert_eq!(
            s.primary(),
            Some(1),
            "first found wins, as find_primary_node"
        );
        s.set_role(1, PgRole::Standby);
        assert_eq!(s.primary(), Some(2));
        s.set_primary_mode(PrimaryMode::Fixed(0));
        assert_eq!(s.primary(), Some(0), "ALWAYS_PRIMARY: whatever it answers");
        assert_eq!(s.primary_mode(), PrimaryMode::Fixed(0));
    }

    #[test]
    fn health_stats_count_checks_retries_and_durations() {
        let mut h = HealthStats::default();
        let now = SystemTime::now();
        h.record(true, 0, Duration::from_millis(4), now);
        h.record(false, 2, Duration::from_millis(10), now);
        assert_eq!((h.total_count, h.success_count, h.fail_count), (2, 1, 1));
        assert_eq!((h.retry_count, h.max_retry_count), (2, 2));
        assert_eq!(h.min_duration, Duration::from_millis(4));
        assert_eq!(h.max_duration, Duration::from_millis(10));
        assert!((h.average_duration_ms() - 7.0).abs() < 1e-9);
        assert!((h.average_retry_count() - 1.0).abs() < 1e-9);
        assert!(h.last_failed_health_check.is_some() && h.last_successful_health_check.is_some());
    }

    #[test]
    fn least_delayed_standby_skips_lagging_and_weightless_nodes() {
        let s = NodeStates::new(4);
        let m = |b, lagging| Measurement {
            delay_bytes: b,
            lagging,
            ..Default::default()
        };
        s.set_delay(1, &m(500, true));
        s.set_delay(2, &m(100, false));
        s.set_delay(3, &m(50, false));
        let w = [1.0, 1.0, 1.0, 0.0];
        assert_eq!(s.least_delayed_standby(&w, 0, 0.5), Some(2));
        s.set_delay(3, &m(100, false));
        let w = [1.0, 1.0, 1.0, 1.0];
        assert_eq!(s.least_delayed_standby(&w, 0, 0.1), Some(2));
        assert_eq!(s.least_delayed_standby(&w, 0, 0.9), Some(3));
        s.set_delay(2, &m(100, true));
        s.set_delay(3, &m(100, true));
        assert_eq!(s.least_delayed_standby(&w, 0, 0.5), None);
    }
}
