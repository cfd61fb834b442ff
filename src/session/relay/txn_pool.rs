//! Transaction pooling (`pool_mode = transaction`): the session gives its backend
//! connections back whenever no transaction is open on them, and refuses what would leave
//! state on a connection that the next client, not this one, would find.

use std::sync::Arc;

use super::Relay;
use crate::protocol::{tag, Frame, PgError};
use crate::router::{Outlives, Statement};
use crate::session::request::Request;
use crate::session::slot::Slot;
use crate::session::SessionError;

impl Relay {
    /// Every backend this session holds has answered everything and has no transaction
    /// open, explicit or implicit (a Flush-ended batch): they can serve other clients.
    pub(super) fn between_units(&self) -> bool {
        !self.router.unit_open()
            && self.slots.iter().any(Option::is_some)
            && self.slots.iter().flatten().all(Slot::at_rest)
    }

    /// Gives the session's backends back to the cache. One that must be reset first is
    /// reset on its own task: the client's answer does not wait for the reset.
    pub(super) async fn release_backends(&mut self) {
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots[i].take() else {
                continue;
            };
            self.cancel.remove_backend(&slot.conn);
            if slot.dirty {
                let ctx = self.ctx.clone();
                tokio::spawn(async move { crate::session::checkout::release(&ctx, slot).await });
            } else {
                crate::session::checkout::release(&self.ctx, slot).await;
            }
        }
    }

    /// A batch that only prepares or closes statements, while the session holds no backend
    /// and none is free, is answered here (see [`Router::prepare_locally`]) rather than
    /// waiting: the connections may all be held by the same program's other clients, which
    /// cannot go on while it waits for this answer. True when it was.
    ///
    /// [`Router::prepare_locally`]: crate::session::route::Router::prepare_locally
    pub(super) fn answer_prepare_locally(&mut self) -> bool {
        if self.slots.iter().any(Option::is_some) || self.router.unit_open() {
            return false;
        }
        let Some(key) = self.shared.as_deref() else {
            return false;
        };
        if self.ctx.pool.has_idle(key) || self.ctx.conn_limits.of(key).has_room() {
            return false; // a backend judges it, as PostgreSQL would at once
        }
        let Some(Request::Extended { frames, sync: true }) = self.queue.front() else {
            return false;
        };
        if !self.router.prepare_locally(frames) {
            return false;
        }
        for f in frames {
            match f.tag {
                tag::PARSE => crate::protocol::parse_complete(&mut self.out),
                tag::CLOSE => crate::protocol::close_complete(&mut self.out),
                _ => {}
            }
        }
        crate::protocol::ready_for_query(&mut self.out, b'I');
        self.queue.pop_front();
        true
    }

    /// The request at the head of the queue, just routed, would leave state on its backend
    /// that outlives the transaction: it is replaced by a statement that makes the server
    /// answer 0A000 (so an open transaction fails as PostgreSQL fails it). True when the
    /// queue changed and routing must look again.
    pub(super) fn refuse_unpoolable(&mut self) -> Result<bool, SessionError> {
        let Some(what) = unpoolable(self.router.current()) else {
            return Ok(false);
        };
        match self.queue.pop_front() {
            Some(Request::Simple(_) | Request::Extended { sync: true, .. }) => {
                // An error at a batch's first message: ErrorResponse, then ReadyForQuery.
                let mut q = bytes::BytesMut::new();
                crate::protocol::query(&mut q, &refusal_sql(what));
                let body = q.split_off(crate::protocol::HEADER_LEN).freeze();
                self.queue
                    .push_front(Request::Simple(Frame::new(tag::QUERY, body)));
                Ok(true)
            }
            // A Flush-ended batch expects no ReadyForQuery: the session ends instead.
            _ => Err(SessionError::Client(PgError {
                severity: crate::protocol::Severity::Fatal,
                ..refusal(what)
            })),
        }
    }
}

/// Why a refused statement cannot run under transaction pooling, in the words of the error.
fn refusal(what: &str) -> PgError {
    PgError::error(
        "0A000",
        format!("{what} is not supported with transaction pooling (pool_mode = transaction)"),
    )
    .with_hint(
        "The backend connection goes to other clients when the transaction ends; give this \
         user and database session pooling with pool_mode_overrides.",
    )
}

/// A statement whose only effect is the server raising [`refusal`].
fn refusal_sql(what: &str) -> String {
    let e = refusal(what);
    let lit = postgres_protocol::escape::escape_literal;
    format!(
        "DO $pgpool_rs$BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', \
         MESSAGE = {}, HINT = {}; END$pgpool_rs$",
        lit(&e.message),
        lit(e.hint.as_deref().unwrap_or(""))
    )
}

/// What in `stmts` would outlive its transaction on the backend, if anything. SET and RESET
/// are not here: the session replays them on each connection it gets.
pub(super) fn unpoolable(stmts: &[Arc<Statement>]) -> Option<&'static str> {
    stmts.iter().find_map(|s| unpoolable_stmt(s))
}

fn unpoolable_stmt(s: &Statement) -> Option<&'static str> {
    match s.outlives {
        Some(Outlives::AdvisoryLock) => Some("a session-level advisory lock"),
        // A setting the session cannot replay: set_config(…, false), or SET in a
        // multi-statement query.
        _ if s.pins_session => Some("a session setting in this form (send SET on its own)"),
        Some(Outlives::Listen) => Some("LISTEN"),
        Some(Outlives::SqlPrepare) => Some("PREPARE (SQL prepared statements)"),
        Some(Outlives::HoldCursor) => Some("a WITH HOLD cursor"),
        Some(Outlives::SessionAuthorization) => Some("SET SESSION AUTHORIZATION"),
        Some(Outlives::TempTable) => Some("a temporary table that outlives its transaction"),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_outlives_a_transaction_is_refused() {
        let cases = [
            ("LISTEN chan", Some("LISTEN")),
            ("UNLISTEN chan", None),
            (
                "SELECT pg_advisory_lock(1)",
                Some("a session-level advisory lock"),
            ),
            (
                "SELECT pg_catalog.pg_try_advisory_lock(1)",
                Some("a session-level advisory lock"),
            ),
            ("SELECT pg_advisory_xact_lock(1)", None),
            ("SELECT pg_advisory_unlock(1)", None),
            (
                "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                Some("a WITH HOLD cursor"),
            ),
            ("DECLARE c CURSOR FOR SELECT 1", None),
            (
                "CREATE TEMP TABLE t (a int)",
                Some("a temporary table that outlives its transaction"),
            ),
            ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", None),
            ("CREATE TABLE t (a int)", None),
            (
                "PREPARE p AS SELECT 1",
                Some("PREPARE (SQL prepared statements)"),
            ),
            ("PREPARE TRANSACTION 'x'", None),
            (
                "SET SESSION AUTHORIZATION bob",
                Some("SET SESSION AUTHORIZATION"),
            ),
            ("SET search_path TO a", None),
            ("SET SESSION search_path TO a", None),
            ("SELECT 1; LISTEN chan", Some("LISTEN")),
            (
                "SET a.b = 1; SELECT 1",
                Some("a session setting in this form (send SET on its own)"),
            ),
            (
                "SELECT set_config('a.b', v, false) FROM t",
                Some("a session setting in this form (send SET on its own)"),
            ),
            ("SELECT set_config('a.b', '1', true)", None),
            ("SELECT 1", None),
            ("INSERT INTO t VALUES (1)", None),
        ];
        for (sql, want) in cases {
            let stmt = crate::router::classify_uncached(sql, &Default::default());
            assert_eq!(unpoolable(&[Arc::new(stmt)]), want, "{sql}");
        }
    }
}
