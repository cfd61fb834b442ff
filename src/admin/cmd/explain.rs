//! `PGPOOL EXPLAIN ROUTE <sql>` (pgpool-rs extension): the node this session would send the
//! statement to right now, and the router's reason code. Nothing is executed.

use crate::admin::view::nodes;
use crate::admin::{Answer, Command, SessionAdmin};
use crate::context::Context;
use crate::protocol::PgError;

pub struct ExplainRoute;

const COLUMNS: [&str; 5] = ["node_id", "hostname", "port", "role", "reason"];

impl Command for ExplainRoute {
    fn execute(&self, ctx: &Context, s: &mut SessionAdmin) -> Result<Answer, PgError> {
        let Some(e) = s.explain.take() else {
            return Err(PgError::error(
                "0A000",
                "PGPOOL EXPLAIN ROUTE is not available here",
            ));
        };
        let row = match nodes(ctx).into_iter().find(|n| n.index == e.node) {
            Some(n) => vec![
                n.id.to_string(),
                n.hostname.clone(),
                n.port.to_string(),
                n.role().to_string(),
                e.reason.to_string(),
            ],
            None => vec![
                e.node.to_string(),
                String::new(),
                String::new(),
                String::new(),
                e.reason.to_string(),
            ],
        };
        Ok(Answer::rows(&COLUMNS, vec![row]))
    }
}
