//! `SHOW pool_backend_stats`: statements sent and errors returned, per node.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::admin::view::nodes;
use crate::admin::{Answer, Command, SessionAdmin};
use crate::context::Context;
use crate::protocol::PgError;
use crate::stats::NodeStats;

pub struct ShowBackendStats;

/// The node's own columns, before the counters.
const NODE_COLUMNS: [&str; 5] = ["node_id", "hostname", "port", "status", "role"];

/// Picks one counter of a node.
pub type PickCounter = fn(&NodeStats) -> &AtomicU64;

/// The counter columns and the counter each shows; `/metrics` exports the same list.
pub const BACKEND_COUNTERS: [(&str, PickCounter); 9] = [
    ("select_cnt", |s| &s.select),
    ("insert_cnt", |s| &s.insert),
    ("update_cnt", |s| &s.update),
    ("delete_cnt", |s| &s.delete),
    ("ddl_cnt", |s| &s.ddl),
    ("other_cnt", |s| &s.other),
    ("panic_cnt", |s| &s.panic),
    ("fatal_cnt", |s| &s.fatal),
    ("error_cnt", |s| &s.error),
];

impl Command for ShowBackendStats {
    fn execute(&self, ctx: &Context, _: &mut SessionAdmin) -> Result<Answer, PgError> {
        let rows = nodes(ctx)
            .into_iter()
            .map(|n| {
                let st = ctx.stats.node(n.index);
                let mut row = vec![
                    n.id.to_string(),
                    n.hostname.clone(),
                    n.port.to_string(),
                    n.status.to_string(),
                    n.role().to_string(),
                ];
                row.extend(
                    BACKEND_COUNTERS
                        .iter()
                        .map(|(_, pick)| pick(st).load(Relaxed).to_string()),
                );
                row
            })
            .collect();
        let columns: Vec<&str> = NODE_COLUMNS
            .into_iter()
            .chain(BACKEND_COUNTERS.iter().map(|(c, _)| *c))
            .collect();
        Ok(Answer::rows(&columns, rows))
    }
}
