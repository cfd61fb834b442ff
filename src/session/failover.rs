//! A replica failure is not a client failure. What a session keeps per replica connection
//! so it can undo the replica's death: the requests it has not answered yet (to retry them on
//! the primary), whether any of the current answer already reached the client (then the
//! client gets an ERROR instead and the session goes on), and the FATAL the server sent while
//! going away (held back from the client). Also the bookkeeping around the primary's
//! connect at session start.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use bytes::BytesMut;
use tokio_util::io::poll_read_buf;

use super::request::Request;
use super::slot::Slot;
use crate::backend::{BackendError, Startup};
use crate::context::Context;
use crate::protocol::{self, PgError};
use crate::replication;

/// Unanswered requests of one replica connection and the state of the current answer.
#[derive(Default)]
pub struct ReplicaWatch {
    /// Requests sent and not answered by ReadyForQuery, oldest first.
    pending: VecDeque<Request>,
    /// Some message of the oldest pending request's answer went to the client.
    pub answer_started: bool,
    /// The start of the oldest pending request's answer, not yet given to the client.
    held: BytesMut,
    /// The FATAL the server sent before closing, kept from the client.
    pub fatal: Option<PgError>,
}

/// How much of a replica's answer is held back before it streams to the client.
const HOLD_BACK: usize = 16 * 1024;

impl ReplicaWatch {
    pub fn sent(&mut self, req: &Request) {
        self.pending.push_back(req.clone());
    }

    /// Answer bytes for the client. The start of each answer (up to [`HOLD_BACK`] bytes, so
    /// any short answer whole) waits for its ReadyForQuery: a server that goes away before
    /// then (shutdown may interrupt a query after its RowDescription) has shown the client
    /// nothing, and the request runs again on the primary instead of failing.
    pub fn hold(&mut self, out: &mut BytesMut, bytes: &[u8]) {
        if self.answer_started {
            out.extend_from_slice(bytes);
            return;
        }
        self.held.extend_from_slice(bytes);
        if self.held.len() > HOLD_BACK {
            out.extend_from_slice(&self.held);
            self.held = BytesMut::new();
            self.answer_started = true;
        }
    }

    /// A ReadyForQuery arrived (the caller relays it next): the held answer goes first, and
    /// the oldest request that expects one is done (with any Flush-only batches before it).
    pub fn answered(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(&self.held);
        self.held.clear();
        self.answer_started = false;
        while let Some(req) = self.pending.pop_front() {
            if req.expected_ready() > 0 {
                break;
            }
        }
    }

    /// Splits the unanswered requests: those whose answer already began (lost; the client
    /// must be told) and those that can be sent again elsewhere.
    fn split(mut self) -> (Vec<Request>, VecDeque<Request>) {
        let mut lost = Vec::new();
        if self.answer_started {
            while let Some(req) = self.pending.pop_front() {
                let ends = req.expected_ready() > 0;
                lost.push(req);
                if ends {
                    break;
                }
            }
        }
        (lost, self.pending)
    }
}

/// Whether the server ended this connection because it is shutting down, crashed, or
/// cannot serve: then the node is down for everyone, not only for this session.
fn node_is_gone(fatal: Option<&PgError>) -> bool {
    fatal.is_none_or(|e| matches!(e.code.as_str(), "57P01" | "57P02" | "57P03"))
}

/// What became of a replica connection that died under a session.
pub struct Recovery {
    /// Requests to route again, in order (they go to the primary now).
    pub retry: VecDeque<Request>,
    /// Requests answered with an ERROR instead.
    pub failed: usize,
}

/// The replica connection `slot` of `node` broke. Marks the node down if the server is gone,
/// queues an ERROR + ReadyForQuery for a request whose answer had begun, and returns the
/// requests to run again. `Err` when the client's stream cannot be kept consistent.
/// `status`: the ReadyForQuery status after such an ERROR (`E` inside a transaction).
pub fn replica_died(
    ctx: &Arc<Context>,
    node: usize,
    slot: Slot,
    why: &str,
    out: &mut BytesMut,
    status: u8,
) -> Result<Recovery, BackendError> {
    let mid_message = slot.mid_message();
    let watch = slot.replica.unwrap_or_default();
    let gone = node_is_gone(watch.fatal.as_ref());
    let reason = match &watch.fatal {
        Some(e) => format!("{why}: {}", e.message),
        None => why.to_string(),
    };
    if gone {
        replication::node_failed(ctx, node, &reason);
    }
    if let Some(n) = ctx.nodes.node(node) {
        n.note_fallback();
    }
    if mid_message {
        tracing::warn!(
            node,
            "replica died in the middle of a row: closing the client"
        );
        return Err(BackendError::Closed { node });
    }
    let code = watch.fatal.as_ref().map_or("08006", |e| e.code.as_str());
    let code = code.to_string();
    let (lost, retry) = watch.split();
    for req in &lost {
        if req.expected_ready() > 0 {
            PgError::error(&code, format!("lost the connection to replica node {node}"))
                .with_detail(reason.clone())
                .with_hint("The session goes on with the primary; run the query again.")
                .encode(out);
            protocol::ready_for_query(out, status);
        }
    }
    if let Some(n) = ctx.nodes.node(node) {
        n.note_retries(retry.len() as u64);
    }
    tracing::info!(
        node,
        retried = retry.len(),
        failed = lost.len(),
        "replica connection lost ({reason}): reads go to the primary"
    );
    Ok(Recovery {
        retry,
        failed: lost.len(),
    })
}

/// How an idle connection looks when checked without waiting.
#[derive(Debug, PartialEq, Eq)]
pub enum Liveness {
    Open,
    /// The server sent something unasked (typically a FATAL before closing).
    Spoke,
    /// End of stream or a socket error: the server is gone.
    Closed,
}

/// Checks an idle connection for a server that went away between statements, so a read is
/// not sent to a dead replica only to be retried.
pub fn liveness(slot: &mut Slot) -> Liveness {
    let mut cx = TaskContext::from_waker(Waker::noop());
    let mut spoke = false;
    for _ in 0..2 {
        let rbuf = &mut slot.conn.rbuf;
        rbuf.reserve(1024);
        match poll_read_buf(std::pin::Pin::new(&mut slot.conn.stream), &mut cx, rbuf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Liveness::Closed,
            Poll::Ready(Ok(_)) => spoke = true,
            Poll::Pending => break,
        }
    }
    if spoke {
        Liveness::Spoke
    } else {
        Liveness::Open
    }
}

/// Bookkeeping for the primary's connect at session start: a failure to reach it marks it
/// down (new sessions then fail fast) and starts the background retry; success marks it up.
pub fn primary_started(
    ctx: &Context,
    started: Result<Startup, BackendError>,
) -> Result<Startup, BackendError> {
    let node = ctx.nodes.primary().unwrap_or(0);
    match &started {
        Ok(_) => replication::node_answered(ctx, node),
        Err(e @ (BackendError::Connect { .. } | BackendError::Io(_))) => {
            replication::node_failed(ctx, node, &e.to_string())
        }
        Err(BackendError::Server(e)) if replication::cannot_connect_now(e) => {
            replication::node_failed(ctx, node, &e.message)
        }
        Err(_) => {}
    }
    started
}

/// A connect error that says the node is unreachable (as opposed to refusing this user).
pub fn is_unreachable(e: &BackendError) -> bool {
    match e {
        BackendError::Connect { .. } | BackendError::Io(_) | BackendError::Closed { .. } => true,
        BackendError::Server(pg) => replication::cannot_connect_now(pg),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Frame;

    fn simple() -> Request {
        Request::Simple(Frame::new(b'Q', &b"SELECT 1\0"[..]))
    }

    fn flush_batch() -> Request {
        Request::Extended {
            frames: vec![Frame::new(b'H', &b""[..])],
            sync: false,
        }
    }

    #[test]
    fn answered_requests_leave_the_watch() {
        let mut w = ReplicaWatch::default();
        w.sent(&flush_batch());
        w.sent(&simple());
        w.sent(&simple());
        w.answered(&mut BytesMut::new());
        let (lost, retry) = w.split();
        assert!(lost.is_empty());
        assert_eq!(retry.len(), 1);
    }

    #[test]
    fn a_short_answer_reaches_the_client_only_with_its_ready_for_query() {
        let mut w = ReplicaWatch::default();
        let mut out = BytesMut::new();
        w.sent(&simple());
        w.hold(&mut out, b"T-row-description");
        assert!(out.is_empty());
        // The server went away here: nothing was shown, the read runs again.
        let (lost, retry) = std::mem::take(&mut w).split();
        assert!(lost.is_empty());
        assert_eq!(retry.len(), 1);

        w.sent(&simple());
        w.hold(&mut out, b"T-row-description");
        w.answered(&mut out);
        assert_eq!(&out[..], b"T-row-description");
    }

    #[test]
    fn a_long_answer_streams_and_then_cannot_be_retried() {
        let mut w = ReplicaWatch::default();
        let mut out = BytesMut::new();
        w.sent(&simple());
        w.hold(&mut out, &vec![b'D'; HOLD_BACK + 1]);
        assert_eq!(out.len(), HOLD_BACK + 1);
        w.hold(&mut out, b"D");
        assert_eq!(out.len(), HOLD_BACK + 2);
        let (lost, retry) = w.split();
        assert_eq!(lost.len(), 1);
        assert!(retry.is_empty());
    }

    #[test]
    fn a_started_answer_is_lost_the_rest_is_retried() {
        let mut w = ReplicaWatch::default();
        w.sent(&simple());
        w.sent(&flush_batch());
        w.sent(&simple());
        w.answer_started = true;
        let (lost, retry) = w.split();
        assert_eq!(lost.len(), 1);
        assert_eq!(retry.len(), 2);
    }

    #[test]
    fn only_shutdown_and_crash_mark_the_node_down() {
        assert!(node_is_gone(None));
        assert!(node_is_gone(Some(&PgError::fatal(
            "57P01",
            "admin shutdown"
        ))));
        assert!(!node_is_gone(Some(&PgError::fatal(
            "40001",
            "recovery conflict"
        ))));
    }
}
