//! `SHOW pool_nodes`: one row per configured backend (spec 7.2).

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::view::{nodes, timestamp};
use crate::admin::{Answer, Command, SessionAdmin};
use crate::context::Context;
use crate::protocol::PgError;

pub struct ShowNodes;

const COLUMNS: [&str; 14] = [
    "node_id",
    "hostname",
    "port",
    "status",
    "pg_status",
    "lb_weight",
    "role",
    "pg_role",
    "select_cnt",
    "load_balance_node",
    "replication_delay",
    "replication_state",
    "replication_sync_state",
    "last_status_change",
];

impl Command for ShowNodes {
    fn execute(&self, ctx: &Context, s: &mut SessionAdmin) -> Result<Answer, PgError> {
        let rows = nodes(ctx)
            .into_iter()
            .map(|n| {
                vec![
                    n.id.to_string(),
                    n.hostname.clone(),
                    n.port.to_string(),
                    n.status.to_string(),
                    n.pg_status.to_string(),
                    format!("{:.6}", n.weight),
                    n.role().to_string(),
                    n.pg_role.to_string(),
                    ctx.stats.node(n.index).select.load(Relaxed).to_string(),
                    (n.index == s.lb_node).to_string(),
                    n.delay.to_string(),
                    n.replication_state.clone(),
                    n.replication_sync_state.clone(),
                    timestamp(n.last_status_change),
                ]
            })
            .collect();
        Ok(Answer::rows(&COLUMNS, rows))
    }
}
