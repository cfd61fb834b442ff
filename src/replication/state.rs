//! What the proxy knows about each backend node right now: reachable or not, its live role,
//! how far it lags. One source for the router (may this node serve reads?), `SHOW pool_nodes`,
//! PCP and `/metrics` alike. The router asks on every read, so that answer is one atomic
//! load; the rest sits behind a mutex only writers and admin views take.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

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
    pub(crate) wake: tokio::sync::Notify,
    /// Reads that went to the primary because this node failed (connect or mid-session).
    pub fallbacks: AtomicU64,
    /// Requests retried on the primary after this node died under them.
    pub retries: AtomicU64,
}

/// Every configured node's state, indexed by node id.
pub struct NodeStates {
    nodes: Vec<NodeState>,
}

/// What a change did, so the caller can log or start a probe once, not on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Changed,
    Unchanged,
}

impl NodeStates {
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
            })
            .collect();
        NodeStates { nodes }
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
        // Node 0 is the primary in this deployment: it serves reads whenever it is used at
        // all, so only replicas are judged here.
        let readable = s.status != NodeStatus::Down && !s.lagging && s.pg_role != PgRole::Primary;
        node.readable.store(readable || id == 0, Ordering::Relaxed);
        t
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
