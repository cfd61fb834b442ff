//! Getting requests onto backends: a connection opened on first use (or the primary when a
//! replica cannot be reached), catalog look-ups for routing, and the send itself with what
//! the backend needs first.

use bytes::BytesMut;

use super::Relay;
use crate::backend::BackendError;
use crate::router::CatalogKey;
use crate::session::catalog::Questions;
use crate::session::leaves_state::leaves_state;
use crate::session::request::Request;
use crate::session::route::Router;
use crate::session::SessionError;

impl Relay {
    /// The primary (its connection opened if need be) when it and the active backend have
    /// answered everything, for the proxy's own queries; None when busy right now.
    async fn idle_primary(&mut self) -> Result<Option<usize>, SessionError> {
        let node = self.primary();
        if self.active != node && !self.active_idle() {
            return Ok(None);
        }
        self.ensure_connected(node).await?;
        match self.slots[node].as_ref() {
            Some(slot) => Ok(slot.idle().then_some(node)),
            None => Err(BackendError::Closed { node }.into()),
        }
    }

    /// Asks the primary's catalog whether functions are VOLATILE (writes) and relations
    /// unlogged, and caches the answers for every session. Returns false when the primary is
    /// busy right now.
    pub(super) async fn look_up_catalog(&mut self, q: &Questions) -> Result<bool, SessionError> {
        let max = self.decoder.max_len;
        let Some(node) = self.idle_primary().await? else {
            return Ok(false);
        };
        let primary = self.slots[node]
            .as_mut()
            .ok_or(BackendError::Closed { node })?;
        let asked_at = self.ctx.catalog.generation();
        let functions = q
            .functions
            .iter()
            .map(|f| (CatalogKey::Function(f), crate::router::volatility_query(f)));
        let relations = q
            .relations
            .iter()
            .map(|r| (CatalogKey::Relation(r), crate::router::unlogged_query(r)));
        let db = self.router.database();
        if self.ctx.catalog.builtins_unknown(db) {
            let sql = crate::router::overloaded_builtins_query();
            let (err, value) = primary.exec_collect(&sql, max).await?;
            let overloaded = match (err, value) {
                (None, Some(v)) => crate::router::parse_volatility_answer(&v).unwrap_or(true),
                _ => true,
            };
            self.ctx
                .catalog
                .set_builtins_overloaded(asked_at, db, overloaded);
        }
        for (key, sql) in functions.chain(relations) {
            let (err, value) = primary.exec_collect(&sql, max).await?;
            // No answer (an error) counts as "yes": the primary is the safe side.
            let yes = match (err, value) {
                (None, Some(v)) => crate::router::parse_volatility_answer(&v).unwrap_or(true),
                _ => true,
            };
            self.ctx.catalog.insert(asked_at, db, key, yes);
        }
        Ok(true)
    }

    /// Asks the idle primary, outside any transaction, for the session's transaction
    /// defaults (see [`crate::session::txnlb`]). Returns false when it is busy right now.
    pub(super) async fn ask_txn_defaults(&mut self) -> Result<bool, SessionError> {
        let max = self.decoder.max_len;
        let Some(node) = self.idle_primary().await? else {
            return Ok(false);
        };
        let primary = self.slots[node]
            .as_mut()
            .ok_or(BackendError::Closed { node })?;
        // Never inside an open transaction or implicit unit (a server skipping to Sync
        // would not even answer).
        let answer = match primary.at_rest() {
            true => primary
                .exec_collect(crate::session::txnlb::DEFAULTS_QUERY, max)
                .await?
                .1
                .filter(|_| primary.conn.txn_status == b'I'),
            false => None,
        };
        self.router.set_txn_defaults(answer.as_deref());
        Ok(true)
    }

    /// Ends the replicas' read-only transactions whose client transaction has ended (all of
    /// them with `all`: a SET is about to be mirrored there, and must outlive them). A
    /// replica lost here costs nothing: it is opened again when needed.
    pub(super) async fn end_replica_txns(&mut self, all: bool) {
        let primary = self.primary();
        for node in 0..self.slots.len() {
            let Some(slot) = self.slots[node].as_mut() else {
                continue;
            };
            let stale = match slot.lb_txn {
                Some(epoch) => all || !self.router.txn.replica_txn_current(epoch),
                None => false,
            };
            if node == primary || !stale || !slot.idle() {
                continue;
            }
            if let Err(e) = slot.end_lb_txn().await {
                tracing::debug!(node, "replica lost while ending its transaction: {e}");
                if let Some(slot) = self.slots[node].take() {
                    self.cancel.remove_backend(&slot.conn);
                }
            }
        }
    }

    /// Opens the connection to `node` on first use, or falls back to the primary when it
    /// cannot be reached (a replica failure must never fail a read the primary can serve).
    pub(super) async fn ensure_connected(&mut self, node: usize) -> Result<usize, SessionError> {
        let primary = self.primary();
        if node != primary && self.replica_went_away(node) {
            return Box::pin(self.ensure_connected(primary)).await;
        }
        if self.slots.get(node).is_some_and(|s| s.is_some()) {
            return Ok(node);
        }
        let max = self.decoder.max_len;
        let opened = match self
            .router
            .connect(&self.ctx, node, self.shared.is_some())
            .await
        {
            // Never a write to a standby: a "primary" that came back in recovery ends this
            // session, and the primary search starts.
            Ok(slot)
                if node == primary
                    && crate::replication::reports_standby(&self.ctx, &slot.conn.params) =>
            {
                slot.conn.terminate().await; // closed, never cached under the primary
                crate::replication::primary_in_recovery(&self.ctx, node);
                return Err(SessionError::Client(crate::replication::not_primary(node)));
            }
            Ok(mut slot) => {
                crate::replication::node_answered(&self.ctx, node);
                match self.router.replay_state(&mut slot, max).await {
                    Ok(()) => Ok(slot),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match opened {
            Ok(mut slot) => {
                if node != primary {
                    slot.replica = Some(Default::default());
                }
                self.cancel.add_backend(&slot.conn);
                crate::admin::note_backend(&self.ctx, &self.admin, node, &slot.conn);
                self.slots[node] = Some(slot.with_stats(self.ctx.stats.clone()));
                Ok(node)
            }
            // Without the primary there is nothing to fall back to.
            Err(e) if node == primary => {
                if crate::session::failover::is_unreachable(&e) {
                    crate::replication::node_failed(&self.ctx, node, &e.to_string());
                }
                Err(e.into())
            }
            Err(e) if crate::session::failover::is_unreachable(&e) => {
                // Down for everyone until the background retry reaches it again.
                crate::replication::node_failed(&self.ctx, node, &e.to_string());
                if let Some(n) = self.ctx.nodes.node(node) {
                    n.note_fallback();
                }
                Box::pin(self.ensure_connected(primary)).await
            }
            Err(e) => {
                tracing::warn!(
                    node,
                    "backend refused this session, reads go to the primary: {e}"
                );
                self.router.mark_unusable(node);
                Box::pin(self.ensure_connected(primary)).await
            }
        }
    }

    /// An idle replica connection whose server went away between statements is dropped
    /// before a read is sent to it (the read then goes to the primary, unharmed).
    fn replica_went_away(&mut self, node: usize) -> bool {
        use crate::session::failover::{liveness, Liveness};
        let Some(slot) = self.slots.get_mut(node).and_then(|s| s.as_mut()) else {
            return false;
        };
        if !slot.idle() {
            return false;
        }
        let gone = match liveness(slot) {
            Liveness::Open => false,
            Liveness::Closed => true,
            Liveness::Spoke => {
                // Unasked messages on an idle connection: a notice is dropped, a FATAL
                // (shutdown) means the server is leaving.
                let mut unasked = BytesMut::new();
                slot.scan(&mut unasked).is_err() || slot.fatal
            }
        };
        if !gone {
            return false;
        }
        self.active = node;
        // Nothing is pending, so nothing is retried and the client hears nothing.
        let _ = self.lost_replica("the replica connection was closed while idle");
        true
    }

    /// Writes `req` to `node`, with whatever the backend needs first (statement re-prepare)
    /// and state commands mirrored to the other backends.
    pub(super) async fn send(&mut self, node: usize, req: Request) -> Result<(), SessionError> {
        let max = self.decoder.max_len;
        let mirrors = self.router.mirror_targets(&req, node, &self.slots);
        if !mirrors.is_empty() {
            self.end_replica_txns(true).await;
        }
        for other in mirrors {
            if let Some(slot) = self.slots[other].as_mut() {
                slot.dirty = true;
                slot.forget_deallocated(self.router.current());
                if let Some(sql) = Router::simple_text(&req) {
                    match slot.exec_silent(&sql, max).await {
                        Ok(None) => {}
                        Ok(Some(e)) => {
                            tracing::debug!(node = other, "mirrored statement failed: {e}")
                        }
                        // A replica lost here costs nothing: it is opened again when needed.
                        Err(e) if other != self.primary() => {
                            if let Some(slot) = self.slots[other].take() {
                                self.cancel.remove_backend(&slot.conn);
                            }
                            if crate::session::failover::is_unreachable(&e) {
                                crate::replication::node_failed(&self.ctx, other, &e.to_string());
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        self.prepare_txn(node);
        let Some(slot) = self.slots[node].as_mut() else {
            return Err(BackendError::Closed { node }.into());
        };
        let n = slot.ready_due(&req);
        let injected = self.router.write_request(&req, slot);
        if let Request::Extended {
            frames,
            sync: false,
        } = &req
        {
            let answered = frames.iter().filter(|f| answers_on_its_own(f.tag)).count();
            slot.flush_batch_sent(answered + injected);
        }
        let stmts = self.router.take_current();
        crate::admin::count_sent(&self.ctx, node, &stmts, self.router.last_reason());
        crate::session::logstmt::log_sent(&self.ctx, &slot.conn, &req);
        let catalog = &self.ctx.catalog;
        let shared = slot.shares_statements();
        slot.dirty = slot.dirty
            || leaves_state(&req, &stmts, shared, || {
                catalog.builtins_safe(self.router.database())
            });
        slot.forget_deallocated(&stmts);
        let stmts = slot.join_unit(&req, n, stmts);
        if n > 0 {
            let now = std::time::Instant::now();
            for _ in 1..n {
                slot.inflight.push_back((stmts.clone(), false));
                slot.sent_at.push_back(now);
            }
            slot.inflight.push_back((stmts, false));
            slot.sent_at.push_back(now);
        }
        slot.outstanding += n;
        if let Some(watch) = slot.replica.as_mut() {
            watch.sent(&req);
        }
        self.router.sent(&req, n, node, slot);
        Ok(())
    }
}

impl Relay {
    /// Before a request goes to `node` inside the client's transaction: a replica gets its
    /// read-only transaction, the primary the failure of a read the replica answered with an
    /// error (PostgreSQL would have aborted the transaction there).
    fn prepare_txn(&mut self, node: usize) {
        let primary = self.primary();
        let in_txn = self.in_txn();
        if node == primary {
            // Not into an implicit transaction still open (a batch ended by Flush): the
            // server may be skipping to Sync, and the first batch of it got them already.
            if !in_txn || self.slots[node].as_ref().is_none_or(|s| s.unsynced) {
                return;
            }
            let abort = self.router.txn.take_abort_primary();
            // The transaction ran a query (on the replica): PostgreSQL refuses SET
            // TRANSACTION ISOLATION and the like from then on, so the primary must too.
            let query = self.router.needs_primary_query();
            if let Some(slot) = self.slots[node].as_mut() {
                if abort {
                    slot.inject_silent(crate::session::txnlb::ABORT_PRIMARY);
                }
                if query {
                    slot.inject_silent("SELECT 1");
                }
            }
            return;
        }
        let txn = &mut self.router.txn;
        let Some(slot) = self.slots[node].as_mut() else {
            return;
        };
        slot.in_client_txn = false;
        if !in_txn {
            return;
        }
        txn.replica_used();
        if !txn.replica_needs_txn() {
            // READ COMMITTED: each read takes a new snapshot anyway, so it runs in
            // autocommit and only the status byte tells the client about its transaction.
            slot.in_client_txn = true;
            if slot.lb_txn.take().is_some() {
                slot.inject_silent("ROLLBACK");
            }
        } else if slot.lb_txn != Some(txn.epoch()) {
            slot.begin_lb_txn(txn.replica_begin(), txn.epoch());
        }
    }
}

/// Whether a message of an extended batch gets an answer of its own (Flush and Sync do
/// not: Sync's is the ReadyForQuery).
fn answers_on_its_own(t: u8) -> bool {
    use crate::protocol::tag;
    matches!(
        t,
        tag::PARSE | tag::BIND | tag::DESCRIBE | tag::EXECUTE | tag::CLOSE
    )
}
