//! `SHOW pool_processes`: one row per client session, then free rows (`Wait for
//! connection`) up to `num_init_children`, so that pgpool2_exporter's used/total ratio
//! means what it means with Pgpool-II (sessions in use out of the client limit).

use crate::admin::view::timestamp;
use crate::admin::{Answer, Command, SessionAdmin};
use crate::context::Context;
use crate::protocol::PgError;

pub struct ShowProcesses;

const COLUMNS: [&str; 8] = [
    "pool_pid",
    "start_time",
    "client_connection_count",
    "database",
    "username",
    "backend_connection_time",
    "pool_counter",
    "status",
];

impl Command for ShowProcesses {
    fn execute(&self, ctx: &Context, _: &mut SessionAdmin) -> Result<Answer, PgError> {
        let sessions = ctx.sessions.snapshot();
        let mut rows: Vec<Vec<String>> = sessions
            .iter()
            .map(|s| {
                let primary = ctx.router_config().primary_node;
                let backend_time = s
                    .backend(primary)
                    .map(|b| timestamp(b.connected))
                    .unwrap_or_default();
                vec![
                    s.pid.to_string(),
                    timestamp(s.started),
                    "1".to_string(),
                    s.database.clone(),
                    s.user.clone(),
                    backend_time,
                    "1".to_string(),
                    s.status().as_str().to_string(),
                ]
            })
            .collect();
        let limit = ctx.config().num_init_children as usize;
        let started = timestamp(ctx.stats.started);
        while rows.len() < limit {
            rows.push(vec![
                String::new(),
                started.clone(),
                "0".to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                "Wait for connection".to_string(),
            ]);
        }
        Ok(Answer::rows(&COLUMNS, rows))
    }
}
