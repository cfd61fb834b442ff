//! `SHOW pool_backend_stats`: statements sent and errors returned, per node.

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::view::nodes;
use crate::admin::{Answer, Command, SessionAdmin};
use crate::protocol::PgError;
use crate::server::Context;

pub struct ShowBackendStats;

const COLUMNS: [&str; 14] = [
    "node_id",
    "hostname",
    "port",
    "status",
    "role",
    "select_cnt",
    "insert_cnt",
    "update_cnt",
    "delete_cnt",
    "ddl_cnt",
    "other_cnt",
    "panic_cnt",
    "fatal_cnt",
    "error_cnt",
];

impl Command for ShowBackendStats {
    fn execute(&self, ctx: &Context, _: &mut SessionAdmin) -> Result<Answer, PgError> {
        let rows = nodes(ctx)
            .into_iter()
            .map(|n| {
                let st = ctx.stats.node(n.index);
                let counters = [
                    &st.select, &st.insert, &st.update, &st.delete, &st.ddl, &st.other, &st.panic,
                    &st.fatal, &st.error,
                ];
                let mut row = vec![
                    n.id.to_string(),
                    n.hostname.clone(),
                    n.port.to_string(),
                    n.status.to_string(),
                    n.role().to_string(),
                ];
                row.extend(counters.iter().map(|c| c.load(Relaxed).to_string()));
                row
            })
            .collect();
        Ok(Answer::rows(&COLUMNS, rows))
    }
}
