//! Getting requests onto backends: a connection opened on first use (or the primary when a
//! replica cannot be reached), catalog look-ups for routing, and the send itself with what
//! the backend needs first.

use bytes::BytesMut;

use super::Relay;
use crate::backend::BackendError;
use crate::session::leaves_state::leaves_state;
use crate::session::request::Request;
use crate::session::route::Router;
use crate::session::SessionError;

impl Relay {
    /// Asks the primary's catalog whether `funcs` are VOLATILE (writes) and caches the
    /// answers for every session. Returns false when the primary is busy right now.
    pub(super) async fn look_up_volatility(
        &mut self,
        funcs: &[String],
    ) -> Result<bool, SessionError> {
        let max = self.decoder.max_len;
        if self.active != 0 && !self.active_idle() {
            return Ok(false);
        }
        self.ensure_connected(0).await?;
        let Some(primary) = self.slots[0].as_mut() else {
            return Err(BackendError::Closed { node: 0 }.into());
        };
        if !primary.idle() {
            return Ok(false);
        }
        for f in funcs {
            let (err, value) = primary
                .exec_collect(&crate::router::volatility_query(f), max)
                .await?;
            // No answer (an error) counts as a write: the primary is the safe side.
            let writes = match (err, value) {
                (None, Some(v)) => crate::router::parse_volatility_answer(&v).unwrap_or(true),
                _ => true,
            };
            let mut map = self
                .ctx
                .volatility
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.insert(f.clone(), writes);
        }
        Ok(true)
    }

    /// Opens the connection to `node` on first use, or falls back to the primary when it
    /// cannot be reached (a replica failure must never fail a read the primary can serve).
    pub(super) async fn ensure_connected(&mut self, node: usize) -> Result<usize, SessionError> {
        if node != 0 && self.replica_went_away(node) {
            return Box::pin(self.ensure_connected(0)).await;
        }
        if self.slots.get(node).is_some_and(|s| s.is_some()) {
            return Ok(node);
        }
        let max = self.decoder.max_len;
        let opened = match self.router.connect(&self.ctx, node).await {
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
                if node != 0 {
                    slot.replica = Some(Default::default());
                }
                self.cancel.add_backend(&slot.conn);
                crate::admin::note_backend(&self.ctx, &self.admin, node, &slot.conn);
                self.slots[node] = Some(slot.with_stats(self.ctx.stats.clone()));
                Ok(node)
            }
            // Without the primary there is nothing to fall back to.
            Err(e) if node == 0 => {
                if crate::session::failover::is_unreachable(&e) {
                    crate::replication::node_failed(&self.ctx, 0, &e.to_string());
                }
                Err(e.into())
            }
            Err(e) if crate::session::failover::is_unreachable(&e) => {
                // Down for everyone until the background retry reaches it again.
                crate::replication::node_failed(&self.ctx, node, &e.to_string());
                if let Some(n) = self.ctx.nodes.node(node) {
                    n.fallbacks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Box::pin(self.ensure_connected(0)).await
            }
            Err(e) => {
                tracing::warn!(
                    node,
                    "backend refused this session, reads go to the primary: {e}"
                );
                self.router.mark_unusable(node);
                Box::pin(self.ensure_connected(0)).await
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
        for other in self.router.mirror_targets(&req, node, &self.slots) {
            if let Some(slot) = self.slots[other].as_mut() {
                slot.dirty = true;
                if let Some(sql) = Router::simple_text(&req) {
                    match slot.exec_silent(&sql, max).await {
                        Ok(None) => {}
                        Ok(Some(e)) => {
                            tracing::debug!(node = other, "mirrored statement failed: {e}")
                        }
                        // A replica lost here costs nothing: it is opened again when needed.
                        Err(e) if other != 0 => {
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
        let slot = self.slots[node]
            .as_mut()
            .ok_or(SessionError::Backend(BackendError::Closed { node }))?;
        let n = slot.ready_due(&req);
        self.router.prepare_for(&req, slot);
        let stmts = self.router.take_current();
        crate::admin::count_sent(&self.ctx, node, &stmts, self.router.last_reason());
        slot.dirty = slot.dirty || leaves_state(&req, &stmts);
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
        slot.sent_request(n);
        req.encode(&mut slot.bout);
        if let Some(watch) = slot.replica.as_mut() {
            watch.sent(&req);
        }
        self.router.sent(&req, n, node, slot);
        Ok(())
    }
}
