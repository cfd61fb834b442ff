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

/// Starts the replication check and one background retry task per node; they live as
/// long as the runtime.
pub fn spawn_monitor(ctx: Arc<Context>) {
    for node in 0..ctx.nodes.len() {
        tokio::spawn(retry_when_down(ctx.clone(), node));
    }
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
/// there at once) and wake its background retry, which runs until the node answers.
pub fn node_failed(ctx: &Context, node: usize, reason: &str) {
    if ctx.nodes.mark_down(node, reason) == Transition::Changed {
        warn!(node, "backend marked down: {reason}");
    }
    if let Some(state) = ctx.nodes.node(node) {
        state.wake.notify_one();
    }
}

/// Sleeps until `node` is marked down, then retries it with backoff until it answers (or a
/// session saw it answer), and sleeps again.
async fn retry_when_down(ctx: Arc<Context>, node: usize) {
    let Some(state) = ctx.nodes.node(node) else {
        return;
    };
    loop {
        if ctx.nodes.status(node) != NodeStatus::Down {
            // A wake sent before this wait is kept by Notify, so none is lost.
            state.wake.notified().await;
            continue;
        }
        let mut wait = PROBE_FIRST;
        while ctx.nodes.status(node) == NodeStatus::Down {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(PROBE_MAX);
            match probe(&ctx, node).await {
                Ok(()) => node_answered(&ctx, node),
                Err(e) => debug!(node, "backend still unreachable: {e}"),
            }
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
