//! Read-your-writes checks (see `session::ryw`): before a read goes to a replica after the
//! session's write, ask the primary how far its WAL goes (once per write) and the replica
//! how far it has replayed, on the session's own connections and invisibly to the client.

use std::time::{Duration, Instant};

use super::Relay;
use crate::backend::BackendError;
use crate::protocol::PgError;
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
const REASON: crate::router::Reason = crate::router::Reason::ReadYourWrites;

/// Pauses between later checks of a replica that is behind: short at first (replay on a
/// healthy replica is a matter of a millisecond or two), then capped.
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
        if let Some(slot) = self.slots[node].as_ref() {
            if self.router.ryw.due(node, conn_id(slot)) == Due::Nothing {
                // Caught up already: pipelined reads go on without waiting for each other.
                return Ok(Some(node));
            }
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
        let mut first = None;
        let due = match self.router.ryw.due(node, conn) {
            Due::Target => {
                let (target, replayed) = self.positions(node).await?;
                let Some(target) = target else {
                    return Ok(Some(self.send_to_primary()));
                };
                self.router.ryw.set_target(target);
                first = replayed;
                self.router.ryw.due(node, conn)
            }
            due => due,
        };
        let Due::Replay { target, waited } = due else {
            return Ok(Some(node));
        };
        let limit = if waited {
            Duration::ZERO
        } else {
            Duration::from_millis(self.ctx.config().read_your_writes_timeout)
        };
        match self.wait_for_replay(node, target, limit, first).await {
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

    /// The primary's WAL position (`None` if it would not say) and, asked at the same time,
    /// replica `node`'s replay position: one round trip instead of two, and a replica past
    /// the target is past it whenever it was asked.
    async fn positions(
        &mut self,
        node: usize,
    ) -> Result<(Option<u64>, Option<Replay>), SessionError> {
        let primary = self.ensure_connected(self.primary()).await?;
        let max = self.decoder.max_len;
        let sql = if self.router.ryw.async_commit() {
            PRIMARY_INSERT_POSITION
        } else {
            PRIMARY_POSITION
        };
        let Some((p, r)) = two_slots(&mut self.slots, primary, node) else {
            return Ok((None, None));
        };
        if !p.idle() || !r.idle() {
            return Ok((None, None));
        }
        let (position, replayed) =
            tokio::join!(p.exec_collect(sql, max), r.exec_collect(REPLAYED, max));
        let (err, value) = position?;
        if let Some(e) = err {
            tracing::warn!("read_your_writes: the primary's WAL position is unknown: {e}");
        }
        Ok((
            value.as_deref().and_then(parse_lsn),
            Some(Replay::from(replayed)),
        ))
    }

    /// Asks replica `node` how far it has replayed until it reaches `target` or `limit`
    /// has passed (`first`: an answer already at hand): `Some(reached)`, or `None` if the
    /// replica connection failed (it is dropped, as any replica failure between statements
    /// is).
    async fn wait_for_replay(
        &mut self,
        node: usize,
        target: u64,
        limit: Duration,
        mut first: Option<Replay>,
    ) -> Option<bool> {
        let deadline = Instant::now() + limit;
        let max = self.decoder.max_len;
        // The first retry goes at once: its round trip is often all the time replay needs.
        let mut pause = Duration::ZERO;
        loop {
            let answer = match first.take() {
                Some(answer) => answer,
                None => {
                    let slot = self.slots[node].as_mut().filter(|s| s.idle())?;
                    Replay::from(slot.exec_collect(REPLAYED, max).await)
                }
            };
            match answer {
                Replay::At(lsn) if lsn >= target => return Some(true),
                Replay::At(_) => {}
                Replay::Refused(e) => {
                    tracing::debug!(node, "read_your_writes: replay position unknown: {e}");
                    return Some(false);
                }
                Replay::Broken(e) => {
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
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            pause = (pause * 2).clamp(FIRST_PAUSE, MAX_PAUSE);
        }
    }

    /// The read goes to the primary because of read-your-writes.
    fn send_to_primary(&mut self) -> usize {
        self.router.set_reason(REASON);
        self.primary()
    }
}

/// A replica's answer to [`REPLAYED`].
enum Replay {
    /// Replayed up to here (0 for NULL: a server not in recovery is no replica to trust).
    At(u64),
    /// The server answered with an error.
    Refused(PgError),
    /// The connection failed.
    Broken(BackendError),
}

impl From<Result<(Option<PgError>, Option<String>), BackendError>> for Replay {
    fn from(answer: Result<(Option<PgError>, Option<String>), BackendError>) -> Replay {
        match answer {
            Ok((None, value)) => Replay::At(value.as_deref().and_then(parse_lsn).unwrap_or(0)),
            Ok((Some(e), _)) => Replay::Refused(e),
            Err(e) => Replay::Broken(e),
        }
    }
}

/// The slots of two different nodes, both open.
fn two_slots(slots: &mut [Option<Slot>], a: usize, b: usize) -> Option<(&mut Slot, &mut Slot)> {
    if a == b || a.max(b) >= slots.len() {
        return None;
    }
    let (low, high) = slots.split_at_mut(a.max(b));
    let (first, second) = (low[a.min(b)].as_mut()?, high[0].as_mut()?);
    Some(if a < b {
        (first, second)
    } else {
        (second, first)
    })
}

fn conn_id(slot: &Slot) -> ConnId {
    (slot.conn.pid, slot.conn.key)
}
