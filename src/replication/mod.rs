//! Backend node health and replication delay.
//!
//! * [`NodeStates`] (in `Context::nodes`) is the one place that says whether a node is up,
//!   what its live role is and how far it lags; the router consults it on every read.
//! * The delay check ([`monitor`]) runs every `sr_check_period` (spec 5.9).
//! * A node found unreachable — by a session or by the check — is marked down and retried in
//!   the background with backoff ([`node_failed`]); sessions use it again as soon as it
//!   answers. Reads never wait on a node marked down.

mod check;
mod monitor;
mod state;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

pub use check::{cannot_connect_now, is_lagging, parse_lsn};
pub use state::{Measurement, NodeSnapshot, NodeState, NodeStates, NodeStatus, PgRole, Transition};

use crate::server::Context;

/// First wait before retrying a node marked down; doubles up to [`PROBE_MAX`].
const PROBE_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between retries: a restarted replica is back in use within this.
const PROBE_MAX: Duration = Duration::from_secs(2);

/// Starts the replication check; it lives as long as the runtime.
pub fn spawn_monitor(ctx: Arc<Context>) {
    tokio::spawn(monitor::run(ctx));
}

/// The connect timeout for sessions: replicas, and a primary marked down, get the short
/// `replica_connect_timeout`, so nothing waits long on a dead server; a primary believed up
/// gets Pgpool-II's `connect_timeout`.
pub fn connect_timeout(ctx: &Context, node: usize) -> Duration {
    let cfg = ctx.config();
    let primary_up = ctx.nodes.status(node) != NodeStatus::Down;
    // 0 means "no limit" for both, as in Pgpool-II; a day stands for that.
    let limit = |ms: u64| if ms == 0 { 86_400_000 } else { ms };
    let ms = if node == 0 && primary_up {
        limit(cfg.connect_timeout)
    } else {
        limit(cfg.replica_connect_timeout).min(limit(cfg.connect_timeout))
    };
    Duration::from_millis(ms)
}

/// A connection to `node` succeeded.
pub fn node_answered(ctx: &Context, node: usize) {
    if ctx.nodes.mark_up(node) == Transition::Changed {
        info!(node, "backend answers: in use");
    }
}

/// `node` could not be reached or its connection broke: mark it down (reads stop going
/// there at once) and, once per outage, retry it in the background until it answers.
pub fn node_failed(ctx: &Arc<Context>, node: usize, reason: &str) {
    if ctx.nodes.mark_down(node, reason) == Transition::Changed {
        warn!(node, "backend marked down: {reason}");
    }
    start_probe(ctx, node);
}

fn start_probe(ctx: &Arc<Context>, node: usize) {
    let Some(state) = ctx.nodes.node(node) else {
        return;
    };
    if state.probing.swap(true, Ordering::AcqRel) {
        return; // already being retried
    }
    tokio::spawn(probe_until_up(ctx.clone(), node));
}

/// Retries `node` with backoff until it answers or someone else saw it answer.
async fn probe_until_up(ctx: Arc<Context>, node: usize) {
    loop {
        let mut wait = PROBE_FIRST;
        while ctx.nodes.status(node) == NodeStatus::Down {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(PROBE_MAX);
            match probe(&ctx, node).await {
                Ok(()) => node_answered(&ctx, node),
                Err(e) => debug!(node, "backend still unreachable: {e}"),
            }
        }
        let Some(state) = ctx.nodes.node(node) else {
            return;
        };
        state.probing.store(false, Ordering::Release);
        // Marked down again after the loop looked: take the job back unless another took it.
        if ctx.nodes.status(node) != NodeStatus::Down || state.probing.swap(true, Ordering::AcqRel)
        {
            return;
        }
    }
}

/// Does the node serve connections? Any answer but "cannot connect now" counts: an auth or
/// role error still proves the server is up. With a full connection, its role is read too.
async fn probe(ctx: &Arc<Context>, node: usize) -> Result<(), check::CheckError> {
    let cfg = ctx.config();
    let timeout = connect_timeout(ctx, node);
    match check::connect_checker(ctx, &cfg, node, timeout).await {
        Ok(mut conn) => {
            let sql = "SELECT pg_catalog.pg_is_in_recovery()";
            if let Ok(rows) = check::simple_query(&mut conn, sql, cfg.max_message_size).await {
                let in_recovery = rows.first().and_then(|r| r.first().cloned().flatten());
                let role = match in_recovery.as_deref() {
                    Some("t") => PgRole::Standby,
                    _ => PgRole::Primary,
                };
                ctx.nodes.set_role(node, role);
            }
            conn.terminate().await;
            Ok(())
        }
        Err(e) if e.is_connectivity() => Err(e),
        Err(_) => Ok(()),
    }
}
