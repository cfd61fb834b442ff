//! `SHOW pool_health_check_stats`: the health check's counts per node (all zero while
//! `health_check_period` is 0, as Pgpool-II shows with the check off).

use crate::admin::view::{nodes, timestamp, NodeView};
use crate::admin::{Answer, Command, SessionAdmin};
use crate::context::Context;
use crate::protocol::PgError;
use crate::replication::HealthStats;

pub struct ShowHealthCheckStats;

/// The node's own columns, before the counts.
const NODE_COLUMNS: [&str; 6] = [
    "node_id",
    "hostname",
    "port",
    "status",
    "role",
    "last_status_change",
];

/// The counts and durations (ms) of the check, after the node's columns; `/metrics`
/// exports the same list.
pub const HEALTH_COUNTS: [(&str, CountOf); 10] = [
    ("total_count", |h| Count::Int(h.total_count)),
    ("success_count", |h| Count::Int(h.success_count)),
    ("fail_count", |h| Count::Int(h.fail_count)),
    ("skip_count", |h| Count::Int(h.skip_count)),
    ("retry_count", |h| Count::Int(h.retry_count)),
    ("average_retry_count", |h| {
        Count::Real(h.average_retry_count())
    }),
    ("max_retry_count", |h| Count::Int(h.max_retry_count)),
    ("max_duration", |h| Count::Int(millis(h.max_duration))),
    ("min_duration", |h| Count::Int(millis(h.min_duration))),
    ("average_duration", |h| Count::Real(h.average_duration_ms())),
];

/// The times of the last checks, after the counts.
const WHEN_COLUMNS: [&str; 4] = [
    "last_health_check",
    "last_successful_health_check",
    "last_skip_health_check",
    "last_failed_health_check",
];

/// Reads one count of a node's check.
pub type CountOf = fn(&HealthStats) -> Count;

/// One count as SHOW prints it (integers plain, averages with six decimals) and as
/// `/metrics` exports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Count {
    Int(u64),
    Real(f64),
}

impl Count {
    pub fn value(self) -> f64 {
        match self {
            Count::Int(v) => v as f64,
            Count::Real(v) => v,
        }
    }

    fn show(self) -> String {
        match self {
            Count::Int(v) => v.to_string(),
            Count::Real(v) => format!("{v:.6}"),
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Column names, in order.
pub fn health_check_columns() -> Vec<&'static str> {
    NODE_COLUMNS
        .into_iter()
        .chain(HEALTH_COUNTS.iter().map(|(c, _)| *c))
        .chain(WHEN_COLUMNS)
        .collect()
}

/// The 20 values of one node, in column order (also PCP's `health_check_stats` answer).
pub fn health_check_row(n: &NodeView, h: &HealthStats) -> Vec<String> {
    let when = |t: Option<std::time::SystemTime>| t.map(timestamp).unwrap_or_default();
    let mut row = vec![
        n.id.to_string(),
        n.hostname.clone(),
        n.port.to_string(),
        n.status.to_string(),
        n.role().to_string(),
        timestamp(n.last_status_change),
    ];
    row.extend(HEALTH_COUNTS.iter().map(|(_, count)| count(h).show()));
    row.extend(
        [
            h.last_health_check,
            h.last_successful_health_check,
            h.last_skip_health_check,
            h.last_failed_health_check,
        ]
        .map(when),
    );
    row
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
        Ok(Answer::rows(
            &health_check_columns(),
            health_check_rows(ctx),
        ))
    }
}
