//! The streaming-replication check (Pgpool-II's `sr_check_worker`, spec 5.9): every
//! `sr_check_period` seconds, over connections kept open as `sr_check_user`, read each node's
//! role and WAL position, the primary's `pg_stat_replication`, and publish delay and role in
//! the node states the router reads.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::check::{connect_checker, is_lagging, parse_lsn, simple_query, CheckError};
use crate::backend::BackendConn;
use crate::config::{Config, LogStandbyDelay};
use crate::context::nodes::{Measurement, PgRole, Transition};
use crate::context::Context;

/// One query gives role and position on any node: the primary's current LSN, a standby's
/// replayed LSN.
const ROLE_AND_LSN: &str = "SELECT pg_catalog.pg_is_in_recovery(), \
     CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
     ELSE pg_catalog.pg_current_wal_lsn() END";

const STAT_REPLICATION: &str = "SELECT application_name, state, sync_state, \
     (EXTRACT(EPOCH FROM replay_lag)*1000000)::BIGINT FROM pg_catalog.pg_stat_replication";

/// Bound on one check query, so a hung server cannot stall the checks of the others.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's answer to [`ROLE_AND_LSN`].
struct Position {
    in_recovery: bool,
    lsn: Option<u64>,
}

/// A `pg_stat_replication` row.
struct WalSender {
    application_name: String,
    state: String,
    sync_state: String,
    replay_lag_us: Option<u64>,
}

/// The check task; runs for the life of the process and follows reloads.
pub async fn run(ctx: Arc<Context>) {
    let mut conns: Vec<Option<BackendConn>> = Vec::new();
    let mut warned = false;
    loop {
        let cfg = ctx.config();
        if cfg.sr_check_period == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if cfg.sr_check_user.is_empty() {
            if !warned {
                warn!("sr_check_user is empty: replication delay is not checked");
                warned = true;
            }
        } else {
            check_once(&ctx, &cfg, &mut conns).await;
        }
        tokio::time::sleep(Duration::from_secs(cfg.sr_check_period)).await;
    }
}

async fn check_once(ctx: &Arc<Context>, cfg: &Config, conns: &mut Vec<Option<BackendConn>>) {
    conns.resize_with(cfg.backends.len(), || None);
    let mut positions: Vec<Option<Position>> = Vec::new();
    for id in 0..cfg.backends.len() {
        positions.push(position(ctx, cfg, conns, id).await);
    }
    let Some(primary) = ctx.nodes.primary() else {
        return; // no primary known: the search is on it
    };
    let Some(primary_lsn) = positions
        .get(primary)
        .and_then(|p| p.as_ref())
        .filter(|p| !p.in_recovery)
        .and_then(|p| p.lsn)
    else {
        return; // without the primary's position there is nothing to compare with
    };
    let senders = if cfg.backends.iter().any(|b| !b.application_name.is_empty()) {
        wal_senders(ctx, cfg, conns, primary).await
    } else {
        Vec::new()
    };
    for (id, pos) in positions.iter().enumerate() {
        let Some(pos) = pos.as_ref().filter(|_| id != primary) else {
            continue;
        };
        if !pos.in_recovery {
            continue;
        }
        let delay_bytes = pos.lsn.map_or(0, |lsn| primary_lsn.saturating_sub(lsn));
        let app = &cfg.backends[id].application_name;
        let sender = senders
            .iter()
            .find(|s| !app.is_empty() && &s.application_name == app);
        let delay_time_us = sender.map(|s| s.replay_lag_us.unwrap_or(0));
        let m = Measurement {
            delay_bytes,
            delay_time_us,
            lagging: is_lagging(cfg, delay_bytes, delay_time_us),
            replication_state: sender.map(|s| s.state.clone()).unwrap_or_default(),
            sync_state: sender.map(|s| s.sync_state.clone()).unwrap_or_default(),
        };
        log_delay(cfg, id, primary, &m);
        if ctx.nodes.set_delay(id, &m) == Transition::Changed {
            if m.lagging {
                info!(
                    node = id,
                    "replica is past the delay threshold: its reads go to the primary"
                );
            } else {
                info!(node = id, "replica caught up: it serves reads again");
            }
        }
    }
}

/// Asks node `id` for its role and position, (re)connecting as needed. A node that cannot
/// be reached is marked down and left to the background retry.
async fn position(
    ctx: &Arc<Context>,
    cfg: &Config,
    conns: &mut [Option<BackendConn>],
    id: usize,
) -> Option<Position> {
    if ctx.nodes.status(id) == super::NodeStatus::Down {
        conns[id] = None;
        return None;
    }
    let rows = match query(ctx, cfg, conns, id, ROLE_AND_LSN).await {
        Ok(rows) => rows,
        Err(e) => {
            if e.is_connectivity() {
                super::node_failed(ctx, id, &format!("replication check: {e}"));
            } else {
                warn!(node = id, "replication check failed: {e}");
            }
            return None;
        }
    };
    let row = rows.first()?;
    let in_recovery = row.first().cloned().flatten().as_deref() == Some("t");
    let role = if in_recovery {
        PgRole::Standby
    } else {
        PgRole::Primary
    };
    let was_primary = ctx.nodes.primary() == Some(id);
    if ctx.nodes.set_role(id, role) == Transition::Changed {
        if role == PgRole::Primary && ctx.nodes.primary() != Some(id) {
            warn!(
                node = id,
                "backend is not in recovery (a primary): it gets no replica reads"
            );
        } else if role == PgRole::Standby && was_primary {
            warn!(
                node = id,
                "the primary is in recovery now: searching for the primary"
            );
        }
    }
    let lsn = row.get(1).cloned().flatten().and_then(|t| parse_lsn(&t));
    Some(Position { in_recovery, lsn })
}

async fn wal_senders(
    ctx: &Arc<Context>,
    cfg: &Config,
    conns: &mut [Option<BackendConn>],
    primary: usize,
) -> Vec<WalSender> {
    let rows = match query(ctx, cfg, conns, primary, STAT_REPLICATION).await {
        Ok(rows) => rows,
        Err(e) => {
            warn!("could not read pg_stat_replication on the primary: {e}");
            return Vec::new();
        }
    };
    rows.into_iter()
        .map(|r| {
            let col = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            WalSender {
                application_name: col(0),
                state: col(1),
                sync_state: col(2),
                replay_lag_us: col(3).parse().ok(),
            }
        })
        .collect()
}

/// Runs `sql` on node `id` over the kept connection; a failed connection is dropped.
async fn query(
    ctx: &Arc<Context>,
    cfg: &Config,
    conns: &mut [Option<BackendConn>],
    id: usize,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, CheckError> {
    if conns[id].is_none() {
        let timeout = super::connect_timeout(ctx, id);
        let conn = connect_checker(ctx, cfg, id, timeout).await?;
        if ctx.nodes.mark_up(id) == Transition::Changed {
            info!(node = id, "backend answers: in use");
        }
        conns[id] = Some(conn);
    }
    let Some(conn) = conns[id].as_mut() else {
        return Err(CheckError::Answer("no connection".into()));
    };
    let result = tokio::time::timeout(QUERY_TIMEOUT, simple_query(conn, sql, cfg.max_message_size))
        .await
        .unwrap_or(Err(CheckError::Timeout));
    if result.is_err() {
        conns[id] = None;
    }
    result
}

/// `log_standby_delay` as Pgpool-II words it.
fn log_delay(cfg: &Config, id: usize, primary: usize, m: &Measurement) {
    let by_time = cfg.delay_threshold_by_time > 0;
    let lag = if by_time {
        m.delay_time_us.unwrap_or(0)
    } else {
        m.delay_bytes
    };
    let log = match cfg.log_standby_delay {
        LogStandbyDelay::Always => lag > 0,
        LogStandbyDelay::IfOverThreshold => m.lagging,
        LogStandbyDelay::None => false,
    };
    if !log {
        return;
    }
    if by_time {
        info!(
            "Replication of node: {id} is behind {:.6} second(s) from the primary server (node: {primary})",
            lag as f64 / 1_000_000.0
        );
    } else {
        info!(
            "Replication of node: {id} is behind {lag} bytes from the primary server (node: {primary})"
        );
    }
}
