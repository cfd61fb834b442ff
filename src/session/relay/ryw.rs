//! Read-your-writes checks (see `session::ryw`): before a read goes to a replica after the
//! session's write, ask the primary how far its WAL goes (once per write) and the replica
//! how far it has replayed, on the session's own connections and invisibly to the client.

use std::time::{Duration, Instant};

use super::Relay;
use crate::replication::parse_lsn;
use crate::session::ryw::{ConnId, Due};
use crate::session::slot::Slot;
use crate::session::SessionError;

/// The primary's WAL position at or past the end of every transaction acknowledged as
/// committed: the flush position when commits wait for the flush (any `synchronous_commit`
/// but `off`), else the insert position. Not always the insert position: WAL inserted but
/// not flushed yet (other sessions' open transactions, page pruning by reads) reaches a
/// replica only at the next flush, up to `wal_writer_delay` later, and reads would wait
/// for it in vain.
const PRIMARY_POSITION: &str =
    "SELECT CASE WHEN pg_catalog.current_setting('synchronous_commit') = 'off' \
     THEN pg_catalog.pg_current_wal_insert_lsn() ELSE pg_catalog.pg_current_wal_flush_lsn() END";

/// For a session that may have committed with `synchronous_commit = off` for one
/// transaction only (`SET LOCAL`), which its setting no longer shows.
const PRIMARY_INSERT_POSITION: &str = "SELECT pg_catalog.pg_current_wal_insert_lsn()";

/// How far the replica has replayed: every transaction that committed before this position
/// is visible there (NULL on a server that is not in recovery).
const REPLAYED: &str = "SELECT pg_catalog.pg_last_wal_replay_lsn()";

/// Routing reason for a read sent to the primary because the replica had not replayed the
/// session's writes in time.
const REASON: &str = "read_your_writes";

/// Pauses between checks of a replica that is behind: short at first (replay on a healthy
/// replica is a matter of a millisecond or two), then capped.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(8);

impl Relay {
    /// `node` is where routing sends the next request. With `read_your_writes` on and a
    /// write committed since, a replica gets it only once it has replayed that write;
    /// returns the node to use, or `None` while a backend is still busy (dispatch comes
    /// back when it answers).
    pub(super) async fn read_your_writes(
        &mut self,
        node: usize,
    ) -> Result<Option<usize>, SessionError> {
        let primary = self.primary();
        if node == primary
            || !self.router.ryw.owed()
            || self.router.unit_open()
            || !self.ctx.config().read_your_writes
        {
            return Ok(Some(node));
        }
        if !self.active_idle() {
            return Ok(None); // the checks use connections that must be quiet
        }
        let node = self.ensure_connected(node).await?;
        if node == primary {
            return Ok(Some(node)); // the replica could not be reached
        }
        let Some(conn) = self.slots[node].as_ref().map(conn_id) else {
            return Ok(Some(primary));
        };
        let mut due = self.router.ryw.due(node, conn);
        if due == Due::Target {
            match self.primary_position().await? {
                Some(lsn) => self.router.ryw.set_target(lsn),
                None => return Ok(Some(self.send_to_primary())),
            }
            due = self.router.ryw.due(node, conn);
        }
        let Due::Replay { target, waited } = due else {
            return Ok(Some(node));
        };
        let limit = if waited {
            Duration::ZERO
        } else {
            Duration::from_millis(self.ctx.config().read_your_writes_timeout)
        };
        match self.wait_for_replay(node, target, limit).await {
            Some(true) => {
                self.router.ryw.reached(node, conn);
                Ok(Some(node))
            }
            Some(false) => {
                self.router.ryw.gave_up(node);
                Ok(Some(self.send_to_primary()))
            }
            // The replica failed: the read goes to the primary as any read would.
            None => Ok(Some(primary)),
        }
    }

    /// The primary's WAL insert position; `None` if it would not say.
    async fn primary_position(&mut self) -> Result<Option<u64>, SessionError> {
        let node = self.ensure_connected(self.primary()).await?;
        let max = self.decoder.max_len;
        let Some(slot) = self.slots[node].as_mut().filter(|s| s.idle()) else {
            return Ok(None);
        };
        let sql = if self.router.ryw.async_commit() {
            PRIMARY_INSERT_POSITION
        } else {
            PRIMARY_POSITION
        };
        let (err, value) = slot.exec_collect(sql, max).await?;
        if let Some(e) = err {
            tracing::warn!("read_your_writes: the primary's WAL position is unknown: {e}");
        }
        Ok(value.as_deref().and_then(parse_lsn))
    }

    /// Asks replica `node` how far it has replayed until it reaches `target` or `limit`
    /// has passed: `Some(reached)`, or `None` if the replica connection failed (it is
    /// dropped, as any replica failure between statements is).
    async fn wait_for_replay(&mut self, node: usize, target: u64, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        let max = self.decoder.max_len;
        let mut pause = FIRST_PAUSE;
        loop {
            let slot = self.slots[node].as_mut().filter(|s| s.idle())?;
            match slot.exec_collect(REPLAYED, max).await {
                Ok((None, Some(v))) if parse_lsn(&v).is_some_and(|lsn| lsn >= target) => {
                    return Some(true)
                }
                // Behind, or not in recovery any more (NULL): not a replica to trust.
                Ok((None, _)) => {}
                Ok((Some(e), _)) => {
                    tracing::debug!(node, "read_your_writes: replay position unknown: {e}");
                    return Some(false);
                }
                Err(e) => {
                    self.active = node;
                    // Nothing is pending there, so nothing is retried and the client
                    // hears nothing.
                    let _ = self.lost_replica(&format!("read_your_writes check: {e}"));
                    return None;
                }
            }
            let now = Instant::now();
            if now + pause > deadline {
                return Some(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// The read goes to the primary because of read-your-writes.
    fn send_to_primary(&mut self) -> usize {
        self.router.set_reason(REASON);
        self.primary()
    }
}

fn conn_id(slot: &Slot) -> ConnId {
    (slot.conn.pid, slot.conn.key)
}
