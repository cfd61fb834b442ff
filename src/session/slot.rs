//! One backend connection as a session uses it: its output buffer, how many answers are
//! still to come, which prepared statements it holds, and the scanner that copies its
//! output to the client.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;

use super::request::Request;
use crate::backend::{set_param, AuthMemo, BackendConn, BackendError, Credential, Idle, PoolKey};
use crate::protocol::{self, btag, decode_parameter_status, decode_ready, PgError, HEADER_LEN};
use crate::router::Statement;
use crate::stats::{ErrorClass, Stats};

/// The statements of one request: almost always one, kept inline (no allocation per request).
pub type Stmts = smallvec::SmallVec<[Arc<Statement>; 2]>;

pub struct Slot {
    pub conn: BackendConn,
    /// Bytes for the backend.
    pub bout: BytesMut,
    /// ReadyForQuery messages still to come.
    pub outstanding: usize,
    /// Body bytes of an opaque message still to copy through.
    passthrough: usize,
    /// Statements prepared on this backend: name → definition key (see
    /// `statements::definition`). It travels with the connection through the cache.
    pub prepared: HashMap<String, u64>,
    /// Parses and Closes sent here, until the server answers them; it also tells which
    /// answers belong to the proxy's own re-Parses and Closes (dropped, not relayed).
    pub stmts: super::statements::Tracker,
    /// Messages went here since the last sync point (a batch ended by Flush): the backend
    /// holds an open implicit transaction even though its last ReadyForQuery said idle.
    pub unsynced: bool,
    /// An error answered a Flush-ended batch: the server ignores everything up to Sync.
    pub skipping: bool,
    /// Answers still due to the open unit's Flush-ended batches, one per message that gets
    /// an answer of its own; counted down once nothing awaiting a ReadyForQuery is ahead.
    unit_due: usize,
    /// Statements of the Flush-ended batches of that open unit, reported with its Sync.
    pub unit_stmts: Stmts,
    /// The backend sent a FATAL error and will close.
    pub fatal: bool,
    /// Something sent may have left session state behind (see `route::leaves_state`):
    /// `reset_query_list` must run before another client gets the connection.
    pub dirty: bool,
    /// The backend is in COPY IN/BOTH: client CopyData goes here.
    pub in_copy: bool,
    /// Statements of each request awaiting its ReadyForQuery, and whether it failed.
    pub inflight: VecDeque<(Stmts, bool)>,
    /// Requests answered since the router last looked: statements, success, status byte.
    pub done: Vec<(Stmts, bool, u8)>,
    /// What a replica failure needs: unanswered requests, whether the answer reached the
    /// client, the FATAL held back (see `failover`). `None` on the primary.
    pub replica: Option<super::failover::ReplicaWatch>,
    /// Where the connection goes back when the session ends (None: never cached).
    pub pool_key: Option<PoolKey>,
    /// Its share of a transaction-mode bound, kept with it in the cache.
    pub permit: Option<crate::backend::ConnPermit>,
    /// What authenticated it, kept with it in the cache.
    pub credential: Credential,
    pub auth: AuthMemo,
    /// Where to count this backend's errors and answer latency (none in unit tests).
    pub stats: Option<Arc<Stats>>,
    /// When each request awaiting its ReadyForQuery was sent.
    pub sent_at: VecDeque<Instant>,
    /// Answers to the proxy's own simple queries (a replica's BEGIN and ROLLBACK, the
    /// primary's abort) still to come, each up to its ReadyForQuery: dropped. They are only
    /// sent to an idle backend, so they come before any other answer.
    silent: usize,
    /// Re-prepares the proxy sent with a Sync of their own ahead of a client's batch (see
    /// `Registry::write_batch`), answered up to that ReadyForQuery: dropped.
    presync: usize,
    /// The transaction (the session's count) of the read-only transaction the proxy began
    /// here for reads inside the client's transaction, while it is open.
    pub lb_txn: Option<u64>,
    /// The requests in flight here are reads of the client's READ COMMITTED transaction
    /// run in autocommit: their ReadyForQuery says `T` (`E` after an error), not `I`.
    pub in_client_txn: bool,
}

impl Slot {
    /// A connection just opened for this session.
    pub fn opened(
        conn: BackendConn,
        credential: Credential,
        auth: AuthMemo,
        pool_key: Option<PoolKey>,
    ) -> Slot {
        let mut s = Slot::new(conn);
        s.credential = credential;
        s.auth = auth;
        s.pool_key = pool_key;
        s
    }

    /// A connection taken from the cache.
    pub fn from_idle(idle: Idle, pool_key: Option<PoolKey>) -> Slot {
        let mut s = Slot::new(idle.conn);
        s.credential = idle.credential;
        s.auth = idle.auth;
        s.permit = idle.permit;
        s.prepared = idle.prepared;
        s.pool_key = pool_key;
        s
    }

    /// Transaction pooling (the connection counts against a bound): named statements stay
    /// on the connection for the next client instead of making it dirty.
    pub fn shares_statements(&self) -> bool {
        self.permit.is_some()
    }

    /// A statement run here dropped named statements (`DISCARD ALL`, `DEALLOCATE`): the
    /// connection no longer holds what it remembered.
    pub fn forget_deallocated(&mut self, stmts: &[Arc<Statement>]) {
        use crate::router::StmtKind;
        for s in stmts {
            match &s.kind {
                StmtKind::Discard {
                    deallocates: true, ..
                }
                | StmtKind::Deallocate { name: None } => self.prepared.clear(),
                StmtKind::Deallocate { name: Some(n) } => {
                    self.prepared.remove(n.as_str());
                }
                _ => {}
            }
        }
    }

    fn new(conn: BackendConn) -> Slot {
        Slot {
            conn,
            bout: BytesMut::new(),
            outstanding: 0,
            passthrough: 0,
            prepared: HashMap::default(),
            stmts: Default::default(),
            unsynced: false,
            skipping: false,
            unit_due: 0,
            unit_stmts: Stmts::new(),
            fatal: false,
            dirty: false,
            in_copy: false,
            inflight: VecDeque::new(),
            done: Vec::new(),
            replica: None,
            pool_key: None,
            permit: None,
            credential: Credential::None,
            auth: AuthMemo::Trust,
            stats: None,
            sent_at: VecDeque::new(),
            silent: 0,
            presync: 0,
            lb_txn: None,
            in_client_txn: false,
        }
    }

    /// Counts this backend's answers in `stats` from now on.
    pub fn with_stats(mut self, stats: Arc<Stats>) -> Slot {
        self.stats = Some(stats);
        self
    }

    /// A message of an answer is being copied through: a replica failure now cannot be
    /// hidden, nor even reported inside the protocol.
    pub fn mid_message(&self) -> bool {
        self.passthrough > 0 && self.replica.as_ref().is_none_or(|w| w.answer_started)
    }

    /// Nothing sent to this backend is still unanswered.
    pub fn idle(&self) -> bool {
        self.outstanding == 0
            && self.bout.is_empty()
            && self.passthrough == 0
            && !self.in_copy
            && self.presync == 0
    }

    /// Re-prepares ahead of a client's batch go with a Sync of their own (see
    /// `Registry::write_batch`): its ReadyForQuery and everything before it are the proxy's.
    pub fn presynced(&mut self) {
        self.presync += 1;
    }

    /// How many ReadyForQuery `req` will get here: none for a simple Query or FunctionCall
    /// while the server skips to Sync after an error in a Flush-ended batch (it ignores
    /// them, unanswered).
    pub fn ready_due(&self, req: &Request) -> usize {
        match req {
            Request::Simple(_) | Request::FunctionCall(_) if self.skipping => 0,
            _ => req.expected_ready(),
        }
    }

    /// A Flush-ended batch went here with `messages` messages that each get an answer (the
    /// proxy's re-Parses included); while the server skips to Sync it answers none.
    pub fn flush_batch_sent(&mut self, messages: usize) {
        if !self.skipping {
            self.unit_due += messages;
        }
    }

    /// A simple Query or FunctionCall must not go here yet: a Flush-ended batch ahead of it
    /// may still fail, and then the server ignores it (no ReadyForQuery), which the proxy
    /// can only know once that batch has answered.
    pub fn unit_unsettled(&self) -> bool {
        self.unsynced && (self.outstanding > 0 || self.unit_due > 0)
    }

    /// Keeps the open implicit transaction's books: a Flush-ended batch opens or extends it
    /// and its statements wait; a request that ends in ReadyForQuery closes it and reports
    /// them with its own.
    pub fn join_unit(&mut self, req: &Request, ready: usize, stmts: Stmts) -> Stmts {
        if ready > 0 {
            self.unsynced = false;
            self.skipping = false;
            // Whatever the unit's batches still answer comes before this request's own.
            self.unit_due = 0;
            if self.unit_stmts.is_empty() {
                return stmts;
            }
            let mut all = std::mem::take(&mut self.unit_stmts);
            all.extend(stmts);
            all
        } else {
            if let Request::Extended { .. } = req {
                self.unsynced = true;
                self.unit_stmts.extend(stmts.iter().cloned());
            }
            stmts
        }
    }

    /// Idle, and nothing was sent since a ReadyForQuery that said idle (`I`): no
    /// transaction, explicit or implicit, is open. Only such a connection may be cached.
    pub fn at_rest(&self) -> bool {
        self.idle() && !self.unsynced && self.conn.txn_status == b'I' && self.silent == 0
    }

    /// Writes `sql` ahead of what is sent next, its answer to be dropped. Only on an idle
    /// backend (its answer must come first).
    pub fn inject_silent(&mut self, sql: &str) {
        protocol::query(&mut self.bout, sql);
        self.silent += 1;
        // A simple Query destroys the unnamed statement: the client's is prepared again
        // before it is next used here.
        self.prepared.remove("");
    }

    /// A read-only transaction of the proxy's is open here, or answers to its own queries
    /// are still due.
    pub fn owes_proxy_queries(&self) -> bool {
        self.lb_txn.is_some() || self.silent > 0
    }

    /// Gives this idle replica connection a read-only transaction for the client's
    /// transaction `epoch` (ending one left from an earlier transaction first).
    pub fn begin_lb_txn(&mut self, begin: &str, epoch: u64) {
        if self.lb_txn.replace(epoch).is_some() {
            self.inject_silent("ROLLBACK");
        }
        self.inject_silent(begin);
    }

    /// Ends the read-only transaction of this idle replica connection at once, without
    /// waiting for the answer (read whenever the connection is next used).
    pub async fn end_lb_txn(&mut self) -> Result<(), BackendError> {
        if self.lb_txn.take().is_none() {
            return Ok(());
        }
        self.send_silent_now("ROLLBACK").await
    }

    /// Sends `sql` to this idle connection now (it need not be the active one), its answer
    /// to be dropped whenever the connection is next read.
    pub async fn send_silent_now(&mut self, sql: &str) -> Result<(), BackendError> {
        self.inject_silent(sql);
        let bytes = self.bout.split();
        self.conn.stream.write_all(&bytes).await?;
        Ok(())
    }

    /// Reads the answers to the proxy's own queries still due on this idle connection.
    pub async fn drain_silent(&mut self, max_len: u64) -> Result<(), BackendError> {
        while self.silent > 0 {
            let f = self.conn.read_frame(max_len).await?;
            match f.tag {
                btag::READY_FOR_QUERY => {
                    self.silent -= 1;
                    self.conn.txn_status = decode_ready(&f.body).unwrap_or(b'I');
                }
                btag::ERROR_RESPONSE if PgError::decode(&f.body).is_fatal() => self.fatal = true,
                _ => {}
            }
        }
        Ok(())
    }

    /// Drops one whole message of the answer to re-prepares synced on their own, keeping the
    /// statement books; false when it has not fully arrived. An error (the statement no
    /// longer prepares) is not the client's: its own message then fails as PostgreSQL's would.
    fn drop_presync(&mut self, tag: u8, total: usize) -> bool {
        let rbuf = &mut self.conn.rbuf;
        if rbuf.len() < total {
            rbuf.reserve(total - rbuf.len());
            return false;
        }
        let body = &rbuf[HEADER_LEN..total];
        match tag {
            btag::PARSE_COMPLETE | btag::CLOSE_COMPLETE => {
                self.stmts.answered(tag, &mut self.prepared);
            }
            btag::READY_FOR_QUERY => {
                self.presync -= 1;
                self.conn.txn_status = decode_ready(body).unwrap_or(b'I');
                self.stmts.synced();
            }
            btag::PARAMETER_STATUS => {
                if let Ok((k, v)) = decode_parameter_status(body) {
                    set_param(&mut self.conn.params, k, v);
                }
            }
            btag::ERROR_RESPONSE => {
                let e = PgError::decode(body);
                if e.is_fatal() {
                    self.fatal = true;
                    if let Some(w) = self.replica.as_mut() {
                        w.fatal = Some(e);
                    }
                }
            }
            _ => {}
        }
        self.conn.rbuf.advance(total);
        true
    }

    /// Drops one whole message of an answer to the proxy's own query from the front of the
    /// read buffer; false when it has not fully arrived.
    fn drop_silent(&mut self, tag: u8, total: usize) -> bool {
        let rbuf = &mut self.conn.rbuf;
        if rbuf.len() < total {
            rbuf.reserve(total - rbuf.len());
            return false;
        }
        match tag {
            btag::READY_FOR_QUERY => {
                self.silent -= 1;
                self.conn.txn_status = decode_ready(&rbuf[HEADER_LEN..total]).unwrap_or(b'I');
            }
            btag::ERROR_RESPONSE => {
                let e = PgError::decode(&rbuf[HEADER_LEN..total]);
                if e.is_fatal() {
                    self.fatal = true;
                    if let Some(w) = self.replica.as_mut() {
                        w.fatal = Some(e);
                    }
                }
            }
            _ => {}
        }
        rbuf.advance(total);
        true
    }

    /// Copies whole or opaque messages from the backend's buffer to `out`, noting the few
    /// that change session state and dropping answers to injected requests.
    pub fn scan(&mut self, out: &mut BytesMut) -> Result<(), BackendError> {
        loop {
            let rbuf = &mut self.conn.rbuf;
            if self.passthrough > 0 {
                let n = self.passthrough.min(rbuf.len());
                if n == 0 {
                    return Ok(());
                }
                relay_answer(&mut self.replica, out, &rbuf[..n]);
                rbuf.advance(n);
                self.passthrough -= n;
                continue;
            }
            if rbuf.len() < HEADER_LEN {
                return Ok(());
            }
            let tag = rbuf[0];
            let len = i32::from_be_bytes([rbuf[1], rbuf[2], rbuf[3], rbuf[4]]);
            if len < 4 {
                return Err(BackendError::protocol_msg(format!(
                    "invalid message length {len}"
                )));
            }
            let total = len as usize + 1;
            if self.silent > 0 {
                if !self.drop_silent(tag, total) {
                    return Ok(());
                }
                continue;
            }
            if self.presync > 0 {
                if !self.drop_presync(tag, total) {
                    return Ok(());
                }
                continue;
            }
            if matches!(
                tag,
                btag::DATA_ROW | btag::COPY_DATA | btag::ROW_DESCRIPTION
            ) {
                unit_answered(&mut self.unit_due, self.outstanding, tag);
                self.passthrough = total;
                continue;
            }
            if rbuf.len() < total {
                rbuf.reserve(total - rbuf.len());
                return Ok(());
            }
            // Looked at in place: copied to `out` (or dropped), then consumed.
            let body = &rbuf[HEADER_LEN..total];
            unit_answered(&mut self.unit_due, self.outstanding, tag);
            // ParseComplete and CloseComplete answer the oldest Parse or Close still pending,
            // in order: one the proxy injected is dropped.
            if matches!(tag, btag::PARSE_COMPLETE | btag::CLOSE_COMPLETE)
                && self.stmts.answered(tag, &mut self.prepared)
            {
                rbuf.advance(total);
                continue;
            }
            let mut forward = true;
            match tag {
                btag::READY_FOR_QUERY => {
                    self.outstanding = self.outstanding.saturating_sub(1);
                    self.conn.txn_status = decode_ready(body).unwrap_or(b'I');
                    self.in_copy = false;
                    self.stmts.synced();
                    let failed = self.inflight.front().is_some_and(|f| f.1);
                    // A read of the client's READ COMMITTED transaction ran in autocommit
                    // here: the client gets the status its transaction has.
                    let status = match (self.in_client_txn, self.conn.txn_status, failed) {
                        (true, b'I', false) => b'T',
                        (true, b'I', true) => b'E',
                        (_, s, _) => s,
                    };
                    if let Some((stmts, failed)) = self.inflight.pop_front() {
                        self.done.push((stmts, !failed, status));
                    }
                    if let (Some(st), Some(t)) = (&self.stats, self.sent_at.pop_front()) {
                        st.node(self.conn.node).observe_latency(t.elapsed());
                    }
                    if let Some(w) = self.replica.as_mut() {
                        w.answered(out);
                    }
                    out.extend_from_slice(&rbuf[..total - 1]);
                    out.extend_from_slice(&[status]);
                    rbuf.advance(total);
                    continue;
                }
                btag::PARAMETER_STATUS => {
                    if let Ok((k, v)) = decode_parameter_status(body) {
                        set_param(&mut self.conn.params, k, v);
                    }
                }
                btag::ERROR_RESPONSE => {
                    // Nothing awaiting a ReadyForQuery is in flight: the error answers a
                    // Flush-ended batch.
                    if self.unsynced && self.outstanding == 0 {
                        self.skipping = true;
                        self.unit_due = 0;
                    }
                    self.in_copy = false;
                    if let Some(front) = self.inflight.front_mut() {
                        front.1 = true;
                    }
                    let e = PgError::decode(body);
                    if let Some(st) = &self.stats {
                        if !(e.is_fatal() && self.replica.is_some()) {
                            st.node(self.conn.node)
                                .count_error(ErrorClass::of(&e, body));
                        }
                    }
                    if e.is_fatal() {
                        self.fatal = true;
                        if let Some(w) = self.replica.as_mut() {
                            // The replica is going away: the relay decides what the client
                            // hears (often nothing: the read is retried on the primary).
                            w.fatal = Some(e);
                            forward = false;
                        }
                    }
                }
                btag::COPY_IN | btag::COPY_BOTH => self.in_copy = true,
                _ => {}
            }
            if forward {
                relay_answer(&mut self.replica, out, &rbuf[..total]);
            }
            rbuf.advance(total);
        }
    }

    /// Runs `sql` on this idle backend without involving the client; returns the server's
    /// error, if any. Used to bring a backend up to the session's state.
    pub async fn exec_silent(
        &mut self,
        sql: &str,
        max_len: u64,
    ) -> Result<Option<PgError>, BackendError> {
        Ok(self.exec_collect(sql, max_len).await?.0)
    }

    /// As [`Slot::exec_silent`], also returning the first column of the first row.
    pub async fn exec_collect(
        &mut self,
        sql: &str,
        max_len: u64,
    ) -> Result<(Option<PgError>, Option<String>), BackendError> {
        self.drain_silent(max_len).await?;
        let mut q = BytesMut::new();
        protocol::query(&mut q, sql);
        self.prepared.remove("");
        self.conn.stream.write_all(&q).await?;
        let mut error = None;
        let mut value = None;
        loop {
            let f = self.conn.read_frame(max_len).await?;
            match f.tag {
                btag::READY_FOR_QUERY => {
                    self.conn.txn_status = decode_ready(&f.body).unwrap_or(b'I');
                    return Ok((error, value));
                }
                btag::DATA_ROW if value.is_none() => value = protocol::first_text_value(&f.body),
                btag::ERROR_RESPONSE => {
                    let e = PgError::decode(&f.body);
                    if e.is_fatal() {
                        self.fatal = true;
                    }
                    error.get_or_insert(e);
                }
                btag::PARAMETER_STATUS => {
                    if let Ok((k, v)) = decode_parameter_status(&f.body) {
                        set_param(&mut self.conn.params, k, v);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Counts down the open unit's answers (`due`): `tag` ends the answer to one message of a
/// Flush-ended batch when nothing awaiting a ReadyForQuery is ahead of it (`outstanding`).
fn unit_answered(due: &mut usize, outstanding: usize, tag: u8) {
    let ends_one = matches!(
        tag,
        btag::PARSE_COMPLETE
            | btag::BIND_COMPLETE
            | btag::CLOSE_COMPLETE
            | btag::NO_DATA
            | btag::ROW_DESCRIPTION
            | btag::COMMAND_COMPLETE
            | btag::EMPTY_QUERY
            | btag::PORTAL_SUSPENDED
    );
    if ends_one && outstanding == 0 {
        *due = due.saturating_sub(1);
    }
}

/// Copies answer bytes to the client's buffer — for a replica, through the watch's hold-back
/// (see [`ReplicaWatch::hold`](super::failover::ReplicaWatch::hold)).
fn relay_answer(
    replica: &mut Option<super::failover::ReplicaWatch>,
    out: &mut BytesMut,
    bytes: &[u8],
) {
    match replica {
        Some(w) => w.hold(out, bytes),
        None => out.extend_from_slice(bytes),
    }
}
