//! Pgpool-II's `log_statement` and `log_per_node_statement`: each statement sent to a
//! backend is logged at LOG level, `statement: <sql>`, or with the node that ran it,
//! `DB node id: <n> backend pid: <pid> statement: <sql>`. Extended batches log their Parse
//! texts (`Parse: <sql>`) and Executes (`Execute: <portal>`).

use super::request::Request;
use crate::backend::BackendConn;
use crate::context::Context;
use crate::protocol::{decode_execute, decode_parse, decode_query, tag};

/// Logs `req`, sent to `conn`, when the configuration asks for it (one atomic load when not).
pub fn log_sent(ctx: &Context, conn: &BackendConn, req: &Request) {
    let (plain, per_node) = ctx.statement_logging();
    if !plain && !per_node {
        return;
    }
    for text in texts(req) {
        if per_node {
            tracing::info!(
                "DB node id: {} backend pid: {} statement: {text}",
                conn.node,
                conn.pid
            );
        } else {
            tracing::info!("statement: {text}");
        }
    }
}

/// What Pgpool-II would print for each message of the request.
fn texts(req: &Request) -> Vec<String> {
    match req {
        Request::Simple(f) => decode_query(&f.body)
            .map(|q| vec![q.to_string()])
            .unwrap_or_default(),
        Request::Extended { frames, .. } => frames
            .iter()
            .filter_map(|f| match f.tag {
                tag::PARSE => decode_parse(&f.body)
                    .ok()
                    .map(|p| format!("Parse: {}", p.query)),
                tag::EXECUTE => decode_execute(&f.body).ok().map(|(portal, _)| {
                    let portal = if portal.is_empty() {
                        "<unnamed>"
                    } else {
                        portal
                    };
                    format!("Execute: {portal}")
                }),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}
