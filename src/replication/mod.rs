//! Backend node health and replication delay.
//!
//! * [`NodeStates`] (in `Context::nodes`) is the one place that says whether a node is up,
//!   what its live role is and how far it lags; the router consults it on every read.
//! * The delay check ([`monitor`]) runs every `sr_check_period` (spec 5.9).
//! * A node found unreachable — by a session or by the check — is marked down and retried in
//!   the background with backoff ([`node_failed`]); sessions use it again as soon as it
//!   answers. Reads never wait on a node marked down.

mod check;
mod health;
mod monitor;

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

pub use crate::context::nodes::{
    HealthStats, Measurement, NodeSnapshot, NodeState, NodeStates, NodeStatus, PgRole, PrimaryMode,
    Transition,
};
pub use crate::context::primary::primary_mode;
pub use check::{cannot_connect_now, is_lagging, parse_lsn};
pub use health::configure_primary;

use crate::context::Context;
use crate::protocol::PgError;

/// First wait before retrying a node marked down; doubles up to [`PROBE_MAX`].
const PROBE_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between retries: a restarted replica is back in use within this.
const PROBE_MAX: Duration = Duration::from_secs(2);

/// Starts the replication check, the primary search, and per node a health check and a
/// background retry; they live as long as the runtime.
pub fn spawn_monitor(ctx: Arc<Context>) {
    configure_primary(&ctx, &ctx.config());
    for node in 0..ctx.nodes.len() {
        tokio::spawn(retry_when_down(ctx.clone(), node));
        tokio::spawn(health::run(ctx.clone(), node));
    }
    tokio::spawn(health::search_primary(ctx.clone()));
    tokio::spawn(monitor::run(ctx));
}

/// The connect timeout for sessions: replicas, and a primary marked down, get the short
/// `replica_connect_timeout`, so nothing waits long on a dead server; a primary believed up
/// gets Pgpool-II's `connect_timeout`.
pub fn connect_timeout(ctx: &Context, node: usize) -> Duration {
    let cfg = ctx.config();
    let primary_up = ctx.nodes.status(node) != NodeStatus::Down;
    // (A node that is not the primary gets the short limit.)
    // 0 means "no limit" for both, as in Pgpool-II; a day stands for that.
    let limit = |ms: u64| if ms == 0 { 86_400_000 } else { ms };
    let ms = if ctx.nodes.primary() == Some(node) && primary_up {
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

/// A session's new connection to the node it took for the primary reports
/// `in_hot_standby = on` (PostgreSQL 14+): the node is a standby now. Its role is noted
/// (which starts the primary search) and the caller must not write there.
pub fn primary_in_recovery(ctx: &Context, node: usize) {
    health::note_role(ctx, node, PgRole::Standby);
    ctx.nodes.request_primary_search();
}

/// The FATAL a session gets when the node it writes to is no longer the primary: the
/// client reconnects and reaches the new one.
pub fn not_primary(node: usize) -> PgError {
    PgError::fatal(
        "57P01",
        format!("backend node {node} is no longer the primary"),
    )
    .with_hint("Reconnect: new sessions go to the new primary.")
}

/// `Some(FATAL)` when another node than `session_primary` is the primary now (a switchover
/// happened under the session). With no primary known the session carries on: its writes
/// fail on their own if the old primary is gone.
pub fn primary_moved(ctx: &Context, session_primary: usize) -> Option<PgError> {
    match ctx.nodes.primary() {
        Some(p) if p != session_primary => Some(not_primary(session_primary)),
        _ => None,
    }
}

/// The FATAL for a client that arrives while no primary is known.
pub fn no_primary() -> PgError {
    PgError::fatal("57P03", "no primary node is available")
        .with_detail("The primary search has not found a node that is not in recovery.")
}

/// While the primary is detected: a new connection to the node taken for the primary whose
/// startup parameters say it is a hot standby must not be written to. With
/// `ALWAYS_PRIMARY` the node is the primary whatever it says (Pgpool-II's rule), as before.
pub fn reports_standby(ctx: &Context, params: &[(String, String)]) -> bool {
    ctx.nodes.primary_mode() == PrimaryMode::Detect
        && params
            .iter()
            .any(|(k, v)| k == "in_hot_standby" && v == "on")
}

/// `node` could not be reached or its connection broke: mark it down (reads stop going
/// there at once) and wake its background retry, which runs until the node answers.
pub fn node_failed(ctx: &Context, node: usize, reason: &str) {
    if ctx.nodes.mark_down(node, reason) == Transition::Changed {
        warn!(node, "backend marked down: {reason}");
    }
    if let Some(state) = ctx.nodes.node(node) {
        state.wake_retry();
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
            state.retry_woken().await;
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
            // The role first: a node back up must not be elected primary on an old answer.
            if let Some(role) = health::read_role(&mut conn, &cfg).await {
                health::note_role(ctx, node, role);
            }
            conn.terminate().await;
            Ok(())
        }
        Err(e) if e.is_connectivity() => Err(e),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> crate::config::Config {
        crate::config::parse_str(text, "pgpool.conf", &[])
            .unwrap_or_else(|e| panic!("{e}"))
            .config
    }

    #[test]
    fn the_primary_is_fixed_by_always_primary_else_detected_when_a_check_user_exists() {
        let two = "backend_port0 = 5432\nbackend_port1 = 5433\n";
        let cases = [
            ("", PrimaryMode::Fixed(0)),
            ("sr_check_user = 'u'\n", PrimaryMode::Detect),
            ("health_check_user = 'u'\n", PrimaryMode::Detect),
            (
                "sr_check_user = 'u'\nbackend_flag1 = 'ALWAYS_PRIMARY'\n",
                PrimaryMode::Fixed(1),
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(
                primary_mode(&config(&format!("{two}{extra}"))),
                want,
                "{extra}"
            );
        }
    }

    #[test]
    fn a_hot_standby_is_refused_as_primary_only_while_detecting() {
        let standby = vec![("in_hot_standby".to_string(), "on".to_string())];
        let primary = vec![("in_hot_standby".to_string(), "off".to_string())];
        let detect = config("backend_port0 = 5432\nbackend_port1 = 5433\nsr_check_user = 'u'\n");
        let ctx = Context::new(detect, Default::default());
        assert!(reports_standby(&ctx, &standby));
        assert!(!reports_standby(&ctx, &primary));
        assert!(
            !reports_standby(&ctx, &[]),
            "before PostgreSQL 14: no parameter"
        );
        let fixed = config("backend_port0 = 5432\nbackend_flag0 = 'ALWAYS_PRIMARY'\n");
        let ctx = Context::new(fixed, Default::default());
        assert!(
            !reports_standby(&ctx, &standby),
            "ALWAYS_PRIMARY keeps today's behaviour"
        );
    }
}
