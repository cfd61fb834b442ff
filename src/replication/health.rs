//! Pgpool-II's health check (one worker per node, spec 1.4) and its `find_primary_node`.
//!
//! * Every `health_check_period` seconds (per node: `health_check_periodN`) the node is
//!   logged into as `health_check_user` and asked `pg_is_in_recovery()`, retried up to
//!   `health_check_max_retries` times `health_check_retry_delay` apart, each attempt bounded
//!   by `health_check_timeout`. A node that cannot be reached is marked down (no reads go
//!   there; a primary marked down starts the primary search); one that answers again is
//!   marked up (auto failback). The answer's role feeds the primary election.
//! * Unlike Pgpool-II, `DISALLOW_TO_FAILOVER` does not keep an unreachable node in load
//!   balancing: "down" here is never permanent, the node is back as soon as it answers.
//! * The primary search runs at start, while no primary is known (every second, as
//!   Pgpool-II's `search_primary_node_timeout` loop), when a session finds its primary
//!   gone or in recovery, and every 10 s when no other check reads roles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::check::{self, CheckError};
use crate::config::{Config, HealthCheck};
use crate::context::nodes::{PgRole, PrimaryMode};
use crate::context::primary::{checker_login, primary_mode, Login};
use crate::context::Context;

const IN_RECOVERY: &str = "SELECT pg_catalog.pg_is_in_recovery()";

/// How often the search asks while no primary is known.
const SEARCH_RETRY: Duration = Duration::from_secs(1);
/// How often the search re-reads roles when neither the health check nor the
/// replication check does.
const SEARCH_RECHECK: Duration = Duration::from_secs(10);

/// Applies `primary_mode` to the node states, with a warning when detection is wanted but
/// impossible.
pub fn configure_primary(ctx: &Context, cfg: &Config) {
    let mode = primary_mode(cfg);
    let no_flag = !cfg.backends.iter().any(|b| b.flag.always_primary);
    if no_flag && mode == PrimaryMode::Fixed(0) && cfg.backends.len() > 1 {
        warn!(
            "no backend_flagN has ALWAYS_PRIMARY and neither sr_check_user nor \
             health_check_user is set: the primary cannot be detected, node 0 is taken as the primary"
        );
    }
    ctx.nodes.set_primary_mode(mode);
}

/// The health check of node `node`; runs for the life of the process and follows reloads.
pub async fn run(ctx: Arc<Context>, node: usize) {
    let mut warned_user = false;
    loop {
        let cfg = ctx.config();
        if node >= cfg.backends.len() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let hc = cfg.health_check(node);
        if hc.period == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if hc.user.is_empty() {
            if !warned_user {
                warn!(
                    node,
                    "health_check_period is set but health_check_user is empty: no health check"
                );
                warned_user = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        check_with_retries(&ctx, &cfg, &hc, node).await;
        tokio::time::sleep(Duration::from_secs(hc.period)).await;
    }
}

/// One health check round of one node, retries included, recorded and acted on.
async fn check_with_retries(ctx: &Context, cfg: &Config, hc: &HealthCheck, node: usize) {
    let started = Instant::now();
    let mut retries = 0u64;
    let result = loop {
        match check_once(ctx, cfg, hc, node).await {
            Ok(role) => break Ok(role),
            Err(e) if retries < u64::from(hc.max_retries) => {
                retries += 1;
                debug!(node, retries, "health check failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(hc.retry_delay)).await;
            }
            Err(e) => break Err(e),
        }
    };
    ctx.nodes
        .record_health_check(node, result.is_ok(), retries, started.elapsed());
    match result {
        Ok(role) => {
            // The role first: a node coming back must not be elected on an old answer.
            if let Some(role) = role {
                note_role(ctx, node, role);
            }
            super::node_answered(ctx, node);
        }
        Err(e) if e.is_connectivity() => {
            super::node_failed(ctx, node, &format!("health check: {e}"));
        }
        // The server answers but refuses the check (password, database): it is up.
        Err(e) => warn!(node, "health check could not log in: {e}"),
    }
}

/// Logs into `node` as the health check user and reads its role (`None` if the query
/// failed: the node still counts as reachable).
async fn check_once(
    ctx: &Context,
    cfg: &Config,
    hc: &HealthCheck,
    node: usize,
) -> Result<Option<PgRole>, CheckError> {
    let limit = match hc.timeout {
        0 => Duration::from_secs(86_400),
        s => Duration::from_secs(s),
    };
    let login = Login {
        user: hc.user.clone(),
        password: hc.password.clone(),
        database: hc.database.clone(),
    };
    let attempt = async {
        let mut conn =
            check::connect_as(ctx, cfg, node, &login, "pgpool-rs health_check", limit).await?;
        let role = read_role(&mut conn, cfg).await;
        conn.terminate().await;
        Ok(role)
    };
    tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or(Err(CheckError::Timeout))
}

/// `pg_is_in_recovery()` over an open check connection.
pub(super) async fn read_role(
    conn: &mut crate::backend::BackendConn,
    cfg: &Config,
) -> Option<PgRole> {
    let rows = check::simple_query(conn, IN_RECOVERY, cfg.max_message_size)
        .await
        .ok()?;
    match rows.first()?.first()?.as_deref() {
        Some("t") => Some(PgRole::Standby),
        Some("f") => Some(PgRole::Primary),
        _ => None,
    }
}

/// Publishes a role a check read, with the words an operator needs on a change.
pub(super) fn note_role(ctx: &Context, node: usize, role: PgRole) {
    if ctx.nodes.set_role(node, role) == super::Transition::Changed {
        info!(node, "backend role is now {}", role.as_str());
    }
}

/// Pgpool-II's `find_primary_node`, repeated: while detecting and no primary is known,
/// asks every node for its role each second; otherwise re-reads roles now and then (when
/// no other check does) or when woken (a session found its primary gone or in recovery).
pub async fn search_primary(ctx: Arc<Context>) {
    loop {
        let cfg = ctx.config();
        let detecting = ctx.nodes.primary_mode() == PrimaryMode::Detect;
        // With a fixed primary the roles are still read (for SHOW pool_nodes), when a
        // check user exists.
        if checker_login(&cfg).is_some() {
            read_roles(&ctx, &cfg).await;
        }
        let wait = if detecting && ctx.nodes.primary().is_none() {
            SEARCH_RETRY
        } else if others_read_roles(&cfg) {
            Duration::from_secs(3600)
        } else {
            SEARCH_RECHECK
        };
        let _ = tokio::time::timeout(wait, ctx.nodes.primary_search_requested()).await;
    }
}

/// The health check or the replication check reads every node's role each period.
fn others_read_roles(cfg: &Config) -> bool {
    let hc = (0..cfg.backends.len()).all(|i| {
        let h = cfg.health_check(i);
        h.period > 0 && !h.user.is_empty()
    });
    hc || (cfg.sr_check_period > 0 && !cfg.sr_check_user.is_empty())
}

/// One role read of every node, as the replication check's user.
async fn read_roles(ctx: &Arc<Context>, cfg: &Config) {
    for node in 0..cfg.backends.len() {
        let timeout = super::connect_timeout(ctx, node);
        match check::connect_checker(ctx, cfg, node, timeout).await {
            Ok(mut conn) => {
                if let Some(role) = read_role(&mut conn, cfg).await {
                    note_role(ctx, node, role);
                }
                super::node_answered(ctx, node);
                conn.terminate().await;
            }
            Err(e) if e.is_connectivity() => {
                super::node_failed(ctx, node, &format!("primary search: {e}"))
            }
            Err(e) => debug!(node, "primary search could not log in: {e}"),
        }
    }
}
