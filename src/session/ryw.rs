//! Read-your-writes (`read_your_writes = on`): once a session has committed a write, a read
//! goes to a replica only after that replica has replayed the primary's WAL at least as far
//! as it reached at the session's first read after the write; until then the read waits
//! (`read_your_writes_timeout`) or runs on the primary.
//!
//! This is the session's bookkeeping, free of I/O; the relay asks the servers
//! (`relay/ryw.rs`). The position to wait for is asked lazily, at the first read meant for a
//! replica, so a session that only writes pays nothing; once a replica connection has shown
//! it replayed that far, later reads there need no check until the next write.

use crate::router::{Statement, StmtKind};

/// Identifies one backend connection (process id and cancel key): a replica reached
/// through a Service may be another server once the connection is replaced, so a replica
/// proven caught up is proven so only for the connection that answered.
pub type ConnId = (i32, i32);

/// What a read meant for a replica needs first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing: no write since, or this connection has shown it replayed far enough.
    Nothing,
    /// The primary's WAL position to wait for is not known yet.
    Target,
    /// The replica must have replayed up to this position; `waited`: a read already waited
    /// for it in vain, so check once without waiting (a lagging replica must not slow
    /// every read by the timeout).
    Replay { target: u64, waited: bool },
}

const SYNC_COMMIT: &[u8] = b"synchronous_commit";

/// Per-session state.
#[derive(Debug, Default)]
pub struct ReadYourWrites {
    /// A write ran in the open transaction; it is owed once the transaction ends.
    wrote_in_txn: bool,
    /// A committed write that replicas may not have replayed yet.
    owed: bool,
    /// The primary's WAL position at or after the last committed write.
    target: Option<u64>,
    /// Per node.
    marks: Vec<Mark>,
    /// The session has mentioned `synchronous_commit` (e.g. `SET LOCAL … = off`): a commit
    /// of its may be acknowledged before its WAL is flushed, so the position to wait for is
    /// the primary's insert position, not its flush position.
    async_commit: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Mark {
    /// The connection that showed it replayed up to `target`.
    reached_by: Option<ConnId>,
    /// A read gave up waiting for this node since the last write.
    waited: bool,
}

impl ReadYourWrites {
    /// A request finished with ReadyForQuery `status`; `wrote`: one of its statements may
    /// have changed data. A write counts once its transaction has ended (`I`): a rolled-back
    /// one costs one needless check, never a stale read.
    pub fn after_request(&mut self, wrote: bool, status: u8) {
        self.wrote_in_txn |= wrote;
        if status == b'I' && std::mem::take(&mut self.wrote_in_txn) {
            self.owed = true;
            self.target = None;
            self.marks.clear();
        }
    }

    /// `stmt` of the session ran (successfully or not: part of a failed request may have
    /// been committed, such as a COMMIT ahead of the error in a pipeline); `wrote`: it may
    /// have changed data. Returns `wrote`.
    pub fn ran(&mut self, stmt: &Statement, wrote: bool) -> bool {
        // Only these can turn synchronous_commit off (DO and CALL count as writes).
        if matches!(stmt.kind, StmtKind::SessionSet { .. })
            || stmt.writes
            || !stmt.functions.is_empty()
        {
            self.saw_text(&stmt.text);
        }
        wrote
    }

    /// A statement of the session ran whose text is `text`: one that may turn off
    /// synchronous commit for a transaction (`SET LOCAL`, `set_config`, a DO block) marks
    /// the session for good.
    fn saw_text(&mut self, text: &str) {
        if !self.async_commit {
            self.async_commit = text
                .as_bytes()
                .windows(SYNC_COMMIT.len())
                .any(|w| w.eq_ignore_ascii_case(SYNC_COMMIT));
        }
    }

    /// Whether the session may have committed without waiting for the WAL flush.
    pub fn async_commit(&self) -> bool {
        self.async_commit
    }

    /// Whether any read meant for a replica may need a check (cheap, for the hot path).
    pub fn owed(&self) -> bool {
        self.owed
    }

    /// What a read on `node`, over connection `conn`, needs first.
    pub fn due(&self, node: usize, conn: ConnId) -> Due {
        if !self.owed {
            return Due::Nothing;
        }
        let mark = self.marks.get(node).copied().unwrap_or_default();
        if mark.reached_by == Some(conn) {
            return Due::Nothing;
        }
        match self.target {
            None => Due::Target,
            Some(target) => Due::Replay {
                target,
                waited: mark.waited,
            },
        }
    }

    /// Whether a read on `node` would be checked first (`PGPOOL EXPLAIN ROUTE`).
    pub fn pending(&self, node: usize) -> bool {
        self.owed && self.marks.get(node).is_none_or(|m| m.reached_by.is_none())
    }

    /// The primary's position, asked after the write.
    pub fn set_target(&mut self, lsn: u64) {
        self.target = Some(lsn);
    }

    /// Connection `conn` to `node` has replayed up to the target.
    pub fn reached(&mut self, node: usize, conn: ConnId) {
        self.mark(node).reached_by = Some(conn);
    }

    /// A read gave up waiting for `node` and went to the primary.
    pub fn gave_up(&mut self, node: usize) {
        self.mark(node).waited = true;
    }

    fn mark(&mut self, node: usize) -> &mut Mark {
        if self.marks.len() <= node {
            self.marks.resize(node + 1, Mark::default());
        }
        &mut self.marks[node]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ConnId = (10, 1);
    const B: ConnId = (11, 2);

    #[test]
    fn nothing_is_due_before_a_write_is_committed() {
        let mut r = ReadYourWrites::default();
        assert_eq!(r.due(1, A), Due::Nothing, "a session that never wrote");
        r.after_request(false, b'I');
        assert_eq!(r.due(1, A), Due::Nothing, "a read");
        r.after_request(true, b'T');
        assert_eq!(r.due(1, A), Due::Nothing, "a write in an open transaction");
        r.after_request(false, b'T');
        assert_eq!(r.due(1, A), Due::Nothing, "still open");
        r.after_request(false, b'I');
        assert_eq!(r.due(1, A), Due::Target, "COMMIT");
    }

    #[test]
    fn a_write_ended_by_rollback_or_in_autocommit_is_owed() {
        let cases = [
            (vec![(true, b'I')], Due::Target),
            (
                vec![(true, b'T'), (false, b'E'), (false, b'I')],
                Due::Target,
            ),
            (vec![(false, b'T'), (false, b'I')], Due::Nothing),
        ];
        for (steps, want) in cases {
            let mut r = ReadYourWrites::default();
            for (wrote, status) in &steps {
                r.after_request(*wrote, *status);
            }
            assert_eq!(r.due(1, A), want, "{steps:?}");
        }
    }

    #[test]
    fn a_replica_connection_that_reached_the_target_needs_no_check_until_the_next_write() {
        let mut r = ReadYourWrites::default();
        r.after_request(true, b'I');
        r.set_target(500);
        assert_eq!(
            r.due(1, A),
            Due::Replay {
                target: 500,
                waited: false
            }
        );
        r.reached(1, A);
        assert_eq!(r.due(1, A), Due::Nothing);
        assert!(!r.pending(1));
        assert_eq!(
            r.due(1, B),
            Due::Replay {
                target: 500,
                waited: false
            },
            "another connection (maybe another server) proves nothing"
        );
        assert_eq!(
            r.due(2, A),
            Due::Replay {
                target: 500,
                waited: false
            },
            "each replica has its own position"
        );
        r.after_request(true, b'I');
        assert_eq!(
            r.due(1, A),
            Due::Target,
            "a new write asks for a new target"
        );
        assert!(r.pending(1));
    }

    #[test]
    fn a_session_that_mentions_synchronous_commit_waits_for_the_insert_position() {
        let cases = [
            ("set local synchronous_commit = off", true),
            ("SET LOCAL Synchronous_Commit TO 'off'", true),
            ("select set_config('synchronous_commit', 'off', true)", true),
            ("set work_mem = '1MB'", false),
            ("insert into t values (1)", false),
        ];
        for (text, want) in cases {
            let mut r = ReadYourWrites::default();
            r.saw_text(text);
            r.saw_text("select 1");
            assert_eq!(r.async_commit(), want, "{text}");
        }
    }

    #[test]
    fn after_a_wait_in_vain_later_reads_check_without_waiting_until_the_next_write() {
        let mut r = ReadYourWrites::default();
        r.after_request(true, b'I');
        r.set_target(7);
        r.gave_up(3);
        assert_eq!(
            r.due(3, A),
            Due::Replay {
                target: 7,
                waited: true
            }
        );
        r.after_request(true, b'I');
        r.set_target(9);
        assert_eq!(
            r.due(3, A),
            Due::Replay {
                target: 9,
                waited: false
            }
        );
    }
}
