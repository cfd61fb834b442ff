//! The few calls the session makes into admin bookkeeping, kept here so the session code
//! stays about sessions: a backend opened or closed, a request sent, a session started.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::SystemTime;

use super::{NewSession, SessionAdmin};
use crate::backend::BackendConn;
use crate::context::registry::BackendInfo;
use crate::context::Context;
use crate::router::{Reason, Statement};

/// The session took a connection to `node` (opened or from the cache: the pool counts
/// which, so `_ctx` is not needed here).
pub fn note_backend(_ctx: &Context, admin: &SessionAdmin, node: usize, conn: &BackendConn) {
    if let Some(e) = &admin.entry {
        let server_version = conn
            .params
            .iter()
            .find(|(k, _)| k == "server_version")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        e.info.set_backend(
            node,
            Some(BackendInfo {
                pid: conn.pid,
                connected: SystemTime::now(),
                server_version,
            }),
        );
    }
}

/// The session closed its connection to `node`.
pub fn note_backend_closed(ctx: &Context, node: usize) {
    ctx.stats.node(node).conns_closed.fetch_add(1, Relaxed);
}

/// A request with `stmts` went to `node` because of `reason`.
pub fn count_sent(ctx: &Context, node: usize, stmts: &[Arc<Statement>], reason: Reason) {
    let counters = ctx.stats.node(node);
    for s in stmts {
        counters.count_statement(s.class);
    }
    ctx.stats.routed(node, reason);
}

/// An authenticated session begins: its registry entry and admin state.
pub fn session_started(
    ctx: &Context,
    new: NewSession,
    primary: Option<(usize, &BackendConn)>,
) -> SessionAdmin {
    ctx.stats.session_started(new.tls);
    let admin = SessionAdmin::new(ctx.sessions.register(new));
    if let Some((node, conn)) = primary {
        note_backend(ctx, &admin, node, conn);
    }
    admin
}

/// Counts a failed client authentication from the error that ended the session start.
pub fn auth_failed(ctx: &Context, code: &str) {
    let reason = match code {
        "28P01" => "password",
        "28000" => "rejected",
        _ => "other",
    };
    ctx.stats.auth_failed(reason);
}
