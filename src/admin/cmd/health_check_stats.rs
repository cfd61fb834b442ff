//! `SHOW pool_health_check_stats`: the health check's counts per node (all zero while
//! `health_check_period` is 0, as Pgpool-II shows with the check off).

use crate::admin::view::{nodes, timestamp, NodeView};
use crate::admin::{Answer, Command, SessionAdmin};
use crate::protocol::PgError;
use crate::replication::HealthStats;
use crate::server::Context;

pub struct ShowHealthCheckStats;

pub const COLUMNS: [&str; 20] = [
    "node_id",
    "hostname",
    "port",
    "status",
    "role",
    "last_status_change",
    "total_count",
    "success_count",
    "fail_count",
    "skip_count",
    "retry_count",
    "average_retry_count",
    "max_retry_count",
    "max_duration",
    "min_duration",
    "average_duration",
    "last_health_check",
    "last_successful_health_check",
    "last_skip_health_check",
    "last_failed_health_check",
];

/// The 20 values of one node, in column order (also PCP's `health_check_stats` answer
/// and the `/metrics` series).
pub fn health_check_row(n: &NodeView, h: &HealthStats) -> Vec<String> {
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    let when = |t: Option<std::time::SystemTime>| t.map(timestamp).unwrap_or_default();
    vec![
        n.id.to_string(),
        n.hostname.clone(),
        n.port.to_string(),
        n.status.to_string(),
        n.role().to_string(),
        timestamp(n.last_status_change),
        h.total_count.to_string(),
        h.success_count.to_string(),
        h.fail_count.to_string(),
        h.skip_count.to_string(),
        h.retry_count.to_string(),
        format!("{:.6}", h.average_retry_count()),
        h.max_retry_count.to_string(),
        ms(h.max_duration),
        ms(h.min_duration),
        format!("{:.6}", h.average_duration_ms()),
        when(h.last_health_check),
        when(h.last_successful_health_check),
        when(h.last_skip_health_check),
        when(h.last_failed_health_check),
    ]
}

/// Every node's row.
pub fn health_check_rows(ctx: &Context) -> Vec<Vec<String>> {
    nodes(ctx)
        .iter()
        .map(|n| health_check_row(n, &ctx.nodes.health_stats(n.index)))
        .collect()
}

impl Command for ShowHealthCheckStats {
    fn execute(&self, ctx: &Context, _: &mut SessionAdmin) -> Result<Answer, PgError> {
        Ok(Answer::rows(&COLUMNS, health_check_rows(ctx)))
    }
}
