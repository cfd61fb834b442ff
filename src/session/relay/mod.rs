//! The relay loop: one task moves bytes both ways without ever blocking one direction on the
//! other (a client pipelining many queries while the backend streams results cannot
//! deadlock the proxy). Only the *active* backend is read and written; a request that goes
//! elsewhere waits until the active one has answered everything, so answers never
//! interleave.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

mod forward;
mod ryw;
mod txn_pool;

use super::request::{Assembler, Request};
use super::route::{Router, Target};
use super::slot::Slot;
use super::SessionError;
use crate::admin::{ProcStatus, SessionAdmin};
use crate::backend::BackendError;
use crate::context::Context;
use crate::protocol::{FrameDecoder, PgError};
use crate::router::AdminCommand;
use crate::session::cancel::CancelHandle;
use crate::stream::Stream;

/// Stop reading from one side while this much is waiting to be written to the other.
const HIGH_WATER: usize = 256 * 1024;

/// Writes pending bytes to the backend and reads what it sent; `Some` when an event is ready.
fn poll_backend(
    slot: &mut Slot,
    cx: &mut std::task::Context<'_>,
    want_read: bool,
    progressed: &mut bool,
) -> Option<Result<Event, SessionError>> {
    while !slot.bout.is_empty() {
        match Pin::new(&mut slot.conn.stream).poll_write(cx, &slot.bout) {
            Poll::Ready(Ok(0)) => return Some(Ok(Event::BackendRead(0))),
            Poll::Ready(Ok(n)) => {
                slot.bout.advance(n);
                *progressed = true;
            }
            Poll::Ready(Err(e)) => return Some(Err(BackendError::Io(e).into())),
            Poll::Pending => break,
        }
    }
    if want_read {
        let rbuf = &mut slot.conn.rbuf;
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(32 * 1024);
        }
        if let Poll::Ready(r) = poll_read_buf(Pin::new(&mut slot.conn.stream), cx, rbuf) {
            return Some(
                r.map(Event::BackendRead)
                    .map_err(|e| BackendError::Io(e).into()),
            );
        }
    }
    None
}

/// Pgpool-II's words for a client idle past `client_idle_limit` (sent as FATAL, not its
/// quirky DEBUG severity, so drivers report it).
pub(super) fn idle_limit_reached(limit: u64) -> SessionError {
    SessionError::Client(
        PgError::fatal("57000", "unable to read data").with_detail(format!(
            "child connection forced to terminate due to client_idle_limit:{limit} is reached"
        )),
    )
}

enum Event {
    ClientRead(usize),
    BackendRead(usize),
    Progress,
}

pub struct Relay {
    ctx: Arc<Context>,
    cancel: CancelHandle,
    decoder: FrameDecoder,
    /// Client bytes not yet framed.
    cbuf: BytesMut,
    /// Bytes for the client.
    out: BytesMut,
    asm: Assembler,
    queue: VecDeque<Request>,
    /// Backend connections by node index; `None` until first needed.
    slots: Vec<Option<Slot>>,
    /// The backend whose answers are being relayed.
    active: usize,
    router: Router,
    terminated: bool,
    /// `client_idle_limit` in seconds (0 = none).
    idle_limit: u64,
    /// Admin state: registry entry, PGPOOL SET values, admin statements prepared.
    admin: SessionAdmin,
    /// `pool_mode = transaction`: backends go back to the cache between transactions; the
    /// primary's cache key.
    shared: Option<Box<crate::backend::PoolKey>>,
}

impl Relay {
    pub fn new(
        ctx: Arc<Context>,
        primary: Option<Slot>,
        cancel: CancelHandle,
        cbuf: BytesMut,
        router: Router,
        admin: SessionAdmin,
        shared: Option<Box<crate::backend::PoolKey>>,
    ) -> Relay {
        let cfg = ctx.config();
        let mut slots: Vec<Option<Slot>> = (0..cfg.backends.len().max(1)).map(|_| None).collect();
        let primary_node = router.primary();
        if let Some(mut p) = primary {
            let at = p.conn.node.min(slots.len() - 1);
            if at != primary_node {
                // The primary moved between login and now: that connection serves reads.
                p.replica = Some(Default::default());
            }
            slots[at] = Some(p.with_stats(ctx.stats.clone()));
        }
        Relay {
            decoder: FrameDecoder::new(cfg.max_message_size),
            ctx,
            cancel,
            cbuf,
            out: BytesMut::new(),
            asm: Assembler::default(),
            queue: VecDeque::new(),
            slots,
            active: primary_node,
            router,
            terminated: false,
            idle_limit: cfg.client_idle_limit,
            admin,
            shared,
        }
    }

    /// The active backend has answered everything (or there is none yet).
    fn active_idle(&self) -> bool {
        self.slots[self.active].as_ref().is_none_or(Slot::idle)
    }

    /// Relays until the client terminates (Ok) or something breaks (Err).
    pub async fn run(&mut self, client: &mut Stream) -> Result<(), SessionError> {
        // The client may have pipelined messages right after its password.
        self.take_client_frames()?;
        let mut shutdown = self.ctx.lifecycle.watch();
        loop {
            self.dispatch().await?;
            if self.shared.is_some() && self.between_units() {
                self.release_backends().await;
            }
            self.report_status();
            if self.terminated && self.queue.is_empty() && self.out.is_empty() && self.active_idle()
            {
                return Ok(());
            }
            if shutdown.stopping() {
                if let Some(e) = shutdown.end_session(self.between_transactions()) {
                    return Err(SessionError::Client(e));
                }
            }
            let limit = self.idle_limit;
            let watching = limit > 0 || shutdown.stopping();
            let idle_for = (limit > 0 && self.is_idle()).then(|| Duration::from_secs(limit));
            let idle_timer = async {
                match idle_for {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                biased;
                e = self.next_event(client, watching) => e,
                () = shutdown.changed() => Ok(Event::Progress),
                () = idle_timer => return Err(idle_limit_reached(limit)),
            };
            let event = match next {
                // A replica failure is not a client failure (see `failover`).
                Err(SessionError::Backend(e)) if self.on_replica() => {
                    self.lost_replica(&e.to_string())?;
                    continue;
                }
                other => other?,
            };
            match event {
                Event::ClientRead(0) => return Err(SessionError::ClientGone),
                Event::ClientRead(_) => self.take_client_frames()?,
                Event::BackendRead(0) if self.on_replica() => {
                    self.lost_replica("the replica closed the connection")?
                }
                Event::BackendRead(0) => return Err(self.backend_closed()),
                Event::BackendRead(_) => {
                    let Relay {
                        slots,
                        active,
                        out,
                        router,
                        ctx,
                        ..
                    } = self;
                    let mut broken = None;
                    let on_replica = *active != router.primary();
                    if let Some(slot) = slots[*active].as_mut() {
                        if let Err(e) = slot.scan(out) {
                            broken = Some(e);
                        }
                        for (stmts, ok, status) in slot.done.drain(..) {
                            router.completed(ctx, &stmts, ok, status, on_replica);
                        }
                        for op in slot.stmts.settled.drain(..) {
                            router.settle(op);
                        }
                    }
                    match broken {
                        Some(e) if self.on_replica() => self.lost_replica(&e.to_string())?,
                        Some(e) => return Err(e.into()),
                        None if !on_replica => self.end_replica_txns(false).await,
                        None => {}
                    }
                }
                Event::Progress => {}
            }
        }
    }

    fn on_replica(&self) -> bool {
        self.active != self.primary()
    }

    /// The node this session writes to.
    fn primary(&self) -> usize {
        self.router.primary()
    }

    /// The active replica connection broke: its unanswered reads go back to the queue (and
    /// from there to the primary); a read whose answer had begun gets an ERROR instead.
    fn lost_replica(&mut self, why: &str) -> Result<(), SessionError> {
        let node = self.active;
        self.active = self.primary();
        let Some(slot) = self.slots[node].take() else {
            return Ok(());
        };
        self.cancel.remove_backend(&slot.conn);
        let in_txn = self.in_txn();
        let status = if in_txn { b'E' } else { b'I' };
        let recovery =
            super::failover::replica_died(&self.ctx, node, slot, why, &mut self.out, status)
                .map_err(|_| SessionError::ClientGone)?;
        if in_txn && recovery.failed > 0 {
            // The client was told its read failed: its transaction fails on the primary too.
            self.router.txn.read_failed();
        }
        for req in recovery.retry.into_iter().rev() {
            self.queue.push_front(req);
        }
        Ok(())
    }

    /// Nothing is in flight: the session is waiting for its client's next request.
    fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.asm.pending_bytes() == 0
            && self.out.is_empty()
            && self.slots.iter().flatten().all(Slot::idle)
    }

    /// Lifecycle: idle and no transaction open — where a draining proxy may end the session
    /// without the client losing work.
    fn between_transactions(&self) -> bool {
        self.is_idle()
            && !self.router.unit_open()
            && self.slots[self.primary()]
                .as_ref()
                .is_none_or(|s| s.conn.txn_status == b'I')
    }

    fn backend_closed(&mut self) -> SessionError {
        let node = self.active;
        let fatal = self.slots[node].as_ref().is_some_and(|s| s.fatal);
        self.slots[node] = None;
        if fatal {
            // The server already told the client why; nothing to add.
            SessionError::ClientGone
        } else {
            BackendError::Closed { node }.into()
        }
    }

    /// Waits until bytes arrive from either side or some output could be written.
    /// `watching`: the loop re-checks something when output drains (shutdown, idle limit),
    /// so finished writes are reported; otherwise only a read or unblocked flow control is.
    async fn next_event(
        &mut self,
        client: &mut Stream,
        watching: bool,
    ) -> Result<Event, SessionError> {
        let node = self.active;
        let report_writes = watching || self.terminated || !self.queue.is_empty();
        let Relay {
            cbuf,
            out,
            slots,
            terminated,
            queue,
            ..
        } = self;
        // No backend yet: the session has not sent a query that needs one.
        let mut slot = slots[node].as_mut();
        let bout_len = slot.as_ref().map_or(0, |s| s.bout.len());
        let want_client = !*terminated && bout_len < HIGH_WATER && queue.len() < 1024;
        let want_backend = out.len() < HIGH_WATER;
        poll_fn(|cx| {
            let mut progressed = false;
            while !out.is_empty() {
                match Pin::new(&mut *client).poll_write(cx, out) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Event::ClientRead(0))),
                    Poll::Ready(Ok(n)) => {
                        out.advance(n);
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                    Poll::Pending => break,
                }
            }
            if let Some(slot) = slot.as_deref_mut() {
                if let Some(ev) = poll_backend(slot, cx, want_backend, &mut progressed) {
                    return Poll::Ready(ev);
                }
            }
            if want_client {
                // Small: an idle client should cost a few KiB; the decoder reserves the full
                // length of a long message once its header is in.
                if cbuf.capacity() - cbuf.len() < 512 {
                    cbuf.reserve(2 * 1024);
                }
                if let Poll::Ready(r) = poll_read_buf(Pin::new(&mut *client), cx, cbuf) {
                    return Poll::Ready(r.map(Event::ClientRead).map_err(Into::into));
                }
            }
            // A write that unblocked reading the other side needs the loop to run again.
            let unblocked = (!want_backend && out.len() < HIGH_WATER)
                || (!want_client
                    && slot
                        .as_ref()
                        .is_some_and(|s| s.bout.len() < HIGH_WATER && bout_len >= HIGH_WATER));
            if progressed && (report_writes || unblocked) {
                Poll::Ready(Ok(Event::Progress))
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Frames complete client messages into requests.
    fn take_client_frames(&mut self) -> Result<(), SessionError> {
        while let Some(frame) = self
            .decoder
            .decode(&mut self.cbuf)
            .map_err(SessionError::Protocol)?
        {
            if self.terminated {
                break;
            }
            if let Some(req) = self.asm.push(frame).map_err(SessionError::Client)? {
                if matches!(req, Request::Terminate) {
                    self.terminated = true;
                } else {
                    self.queue.push_back(req);
                }
            }
            if self.asm.pending_bytes() as u64 > self.decoder.max_len {
                return Err(SessionError::Client(PgError::fatal(
                    "54000",
                    "extended query batch exceeds max_message_size without Sync",
                )));
            }
        }
        Ok(())
    }

    /// Moves queued requests to their backends, in order, as far as routing allows.
    async fn dispatch(&mut self) -> Result<(), SessionError> {
        while let Some(req) = self.queue.front() {
            if let Request::Copy(_) = req {
                // COPY data belongs to the COPY running on the active backend.
                let req = self.queue.pop_front().ok_or(SessionError::ClientGone)?;
                if let Some(slot) = self.slots[self.active].as_mut() {
                    req.encode(&mut slot.bout);
                }
                continue;
            }
            if let Request::Extended { frames, .. } = req {
                if self.admin.extended.claims(frames, &self.ctx.classifier) {
                    if !self.active_idle() {
                        return Ok(());
                    }
                    let Some(Request::Extended { frames, .. }) = self.queue.pop_front() else {
                        continue;
                    };
                    self.answer_admin(|ctx, admin, explain, out, status| {
                        crate::admin::extended::answer_batch(
                            ctx, &frames, admin, explain, out, status,
                        )
                    });
                    continue;
                }
            }
            let in_txn = self.in_txn();
            let node = match self.router.route(&self.ctx, req, in_txn) {
                Target::Node(n) => n,
                Target::TxnDefaults => {
                    if !self.ask_txn_defaults().await? {
                        return Ok(());
                    }
                    continue;
                }
                Target::Lookup(questions) => {
                    if !self.look_up_catalog(&questions).await? {
                        return Ok(()); // the primary is busy; try again when it answers
                    }
                    continue;
                }
                Target::Admin(cmd) => {
                    if !self.active_idle() {
                        return Ok(());
                    }
                    if let AdminCommand::ExplainRoute(sql) = &cmd {
                        // Explain with the same catalog knowledge the real routing uses.
                        let questions = self.router.explain_lookups(&self.ctx, sql);
                        if !questions.is_empty() {
                            if !self.look_up_catalog(&questions).await? {
                                return Ok(());
                            }
                            continue;
                        }
                    }
                    self.queue.pop_front();
                    self.answer_admin(|ctx, admin, explain, out, status| {
                        crate::admin::answer(ctx, &cmd, admin, explain, out, status)
                    });
                    continue;
                }
            };
            let Some(node) = self.read_your_writes(node).await? else {
                return Ok(());
            };
            let Some(req) = self.queue.front() else {
                return Ok(());
            };
            if node != self.active && !self.active_idle() {
                return Ok(()); // answers still due from the active backend
            }
            if matches!(req, Request::Simple(_) | Request::FunctionCall(_))
                && self.slots[node].as_ref().is_some_and(Slot::unit_unsettled)
            {
                return Ok(()); // whether the server runs or ignores it is not known yet
            }
            if let Some(e) = crate::replication::primary_moved(&self.ctx, self.primary()) {
                if self.between_transactions() {
                    return Err(SessionError::Client(e));
                }
            }
            if self.shared.is_some() && (self.refuse_unpoolable()? || self.answer_prepare_locally())
            {
                continue;
            }
            let node = self.ensure_connected(node).await?;
            let req = self.queue.pop_front().ok_or(SessionError::ClientGone)?;
            self.active = node;
            self.send(node, req).await?;
        }
        Ok(())
    }

    fn in_txn(&self) -> bool {
        self.slots[self.primary()]
            .as_ref()
            .is_some_and(|s| s.conn.txn_status != b'I')
    }

    /// Runs an admin answer with this session's admin state and router at hand.
    fn answer_admin(
        &mut self,
        f: impl FnOnce(
            &crate::context::Context,
            &mut SessionAdmin,
            crate::admin::Explainer<'_>,
            &mut BytesMut,
            u8,
        ),
    ) {
        let status = self.slots[self.primary()]
            .as_ref()
            .map_or(b'I', |s| s.conn.txn_status);
        let in_txn = self.in_txn();
        self.admin.lb_node = self.router.lb_node();
        let (router, ctx) = (&self.router, &self.ctx);
        let mut explain = |sql: &str| router.explain(ctx, sql, in_txn);
        f(ctx, &mut self.admin, &mut explain, &mut self.out, status);
    }

    /// Keeps `SHOW pool_processes` current: executing, idle, or idle in a transaction.
    fn report_status(&self) {
        let busy = !self.queue.is_empty() || self.slots.iter().flatten().any(|s| s.outstanding > 0);
        let status = if busy {
            ProcStatus::Executing
        } else if self.in_txn() {
            ProcStatus::IdleInTransaction
        } else {
            ProcStatus::Idle
        };
        self.admin.set_status(status);
        if let Some(e) = &self.admin.entry {
            e.info.set_lb_node(self.router.lb_node());
        }
    }

    /// Ends the session's hold on its backends: each goes back to the cache when idle and
    /// clean (after `reset_query_list`), else it is cancelled if busy and closed, so a
    /// vanished client's locks go at once.
    pub async fn finish(self) {
        self.cancel.unregister();
        for slot in self.slots.into_iter().flatten() {
            super::checkout::release(&self.ctx, slot).await;
        }
    }
}
