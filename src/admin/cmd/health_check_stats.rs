//! `SHOW pool_health_check_stats`: pgpool-rs runs no health check of its own (Kubernetes
//! probes the pods), so every count is zero, as Pgpool-II shows with the check off.

use crate::admin::view::{nodes, timestamp, NodeView};
use crate::admin::{Answer, Command, SessionAdmin};
use crate::protocol::PgError;
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

/// The 20 values of one node, in column order (also PCP's `health_check_stats` answer).
pub fn health_check_row(n: &NodeView) -> Vec<String> {
    let mut row = vec![
        n.id.to_string(),
        n.hostname.clone(),
        n.port.to_string(),
        n.status.to_string(),
        n.role().to_string(),
        timestamp(n.last_status_change),
    ];
    for c in &COLUMNS[6..16] {
        let zero = if c.starts_with("average") {
            "0.000000"
        } else {
            "0"
        };
        row.push(zero.to_string());
    }
    row.extend(std::iter::repeat_n(String::new(), 4));
    row
}

impl Command for ShowHealthCheckStats {
    fn execute(&self, ctx: &Context, _: &mut SessionAdmin) -> Result<Answer, PgError> {
        let rows = nodes(ctx).iter().map(health_check_row).collect();
        Ok(Answer::rows(&COLUMNS, rows))
    }
}
