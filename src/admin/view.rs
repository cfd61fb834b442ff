//! What the proxy knows about each backend node, gathered once for every view of it
//! (`SHOW pool_nodes`, `pool_backend_stats`, `pool_health_check_stats`, PCP `node_info`,
//! `/metrics`), plus Pgpool-II's time format.

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use crate::context::Context;
pub use crate::logging::chrono_like::timestamp;
use crate::replication::NodeStatus;

/// One backend node as the admin views report it.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Position in the backend list (the index sessions and counters use).
    pub index: usize,
    /// `backend_*N` slot number.
    pub id: usize,
    pub hostname: String,
    pub port: u16,
    /// `up` once a connection to it succeeded, `waiting` before (Pgpool-II's view).
    pub status: &'static str,
    /// What the checks last found: `up` (answered), `down`, `unknown` (not checked yet).
    pub pg_status: &'static str,
    /// Normalised weight `w / Σw`.
    pub weight: f64,
    pub primary: bool,
    /// Live role from `pg_is_in_recovery()`; `unknown` until a check has asked.
    pub pg_role: &'static str,
    /// Replication delay in bytes (0 until a delay check reports one).
    pub delay: u64,
    pub replication_state: String,
    pub replication_sync_state: String,
    pub last_status_change: SystemTime,
}

impl NodeView {
    pub fn role(&self) -> &'static str {
        if self.primary {
            "primary"
        } else {
            "standby"
        }
    }

    /// PCP's status digit: 1 waiting, 2 up, 3 down.
    pub fn status_digit(&self) -> u8 {
        match self.status {
            "up" => 2,
            "down" => 3,
            _ => 1,
        }
    }
}

/// Every configured node, in configuration order.
pub fn nodes(ctx: &Context) -> Vec<NodeView> {
    let cfg = ctx.config();
    let primary = ctx.nodes.primary();
    let weights = cfg.normalized_weights();
    cfg.backends
        .iter()
        .enumerate()
        .map(|(index, b)| {
            let seen = ctx
                .pool
                .counters
                .get(index)
                .is_some_and(|c| c.opened.load(Relaxed) + c.reused.load(Relaxed) > 0);
            // The replication monitor's view, when it has one: status, live role, delay.
            let snap = ctx.nodes.snapshot(index);
            let status = match snap.as_ref().map(|s| s.status) {
                Some(NodeStatus::Down) => "down",
                Some(NodeStatus::Up) => "up",
                _ if seen => "up",
                _ => "waiting",
            };
            NodeView {
                index,
                id: b.id,
                hostname: b.hostname.clone(),
                port: b.port,
                status,
                pg_status: match snap.as_ref().map(|s| s.status) {
                    Some(NodeStatus::Up) => "up",
                    Some(NodeStatus::Down) => "down",
                    _ => "unknown",
                },
                weight: weights.get(index).map_or(0.0, |w| w.1),
                primary: Some(index) == primary,
                pg_role: snap.as_ref().map_or("unknown", |s| s.pg_role.as_str()),
                delay: snap.as_ref().map_or(0, |s| s.delay_bytes),
                replication_state: snap
                    .as_ref()
                    .map(|s| s.replication_state.clone())
                    .unwrap_or_default(),
                replication_sync_state: snap
                    .as_ref()
                    .map(|s| s.sync_state.clone())
                    .unwrap_or_default(),
                last_status_change: snap.map_or(ctx.stats.started, |s| s.last_change),
            }
        })
        .collect()
}

/// Seconds since the epoch, for PCP's status change time.
pub fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_pgpool_shape() {
        let s = timestamp(SystemTime::now());
        assert_eq!(s.len(), 19, "{s}");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], " ");
        assert_eq!(&s[13..14], ":");
    }
}
