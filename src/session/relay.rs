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

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

use super::request::{Assembler, Request};
use super::route::{Router, Target};
use super::slot::Slot;
use super::SessionError;
use crate::backend::BackendError;
use crate::protocol::{FrameDecoder, PgError};
use crate::server::{CancelHandle, Context};
use crate::stream::Stream;

/// Stop reading from one side while this much is waiting to be written to the other.
const HIGH_WATER: usize = 256 * 1024;

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
}

impl Relay {
    pub fn new(
        ctx: Arc<Context>,
        primary: Slot,
        cancel: CancelHandle,
        cbuf: BytesMut,
        router: Router,
    ) -> Relay {
        let cfg = ctx.config();
        let mut slots: Vec<Option<Slot>> = (0..cfg.backends.len().max(1)).map(|_| None).collect();
        slots[0] = Some(primary);
        Relay {
            decoder: FrameDecoder::new(cfg.max_message_size),
            ctx,
            cancel,
            cbuf,
            out: BytesMut::with_capacity(16 * 1024),
            asm: Assembler::default(),
            queue: VecDeque::new(),
            slots,
            active: 0,
            router,
            terminated: false,
        }
    }

    fn active_slot(&mut self) -> Result<&mut Slot, SessionError> {
        let node = self.active;
        self.slots[node]
            .as_mut()
            .ok_or(SessionError::Backend(BackendError::Closed { node }))
    }

    /// Relays until the client terminates (Ok) or something breaks (Err).
    pub async fn run(&mut self, client: &mut Stream) -> Result<(), SessionError> {
        // The client may have pipelined messages right after its password.
        self.take_client_frames()?;
        let mut shutdown = self.ctx.lifecycle.watch();
        loop {
            self.dispatch().await?;
            if self.terminated
                && self.queue.is_empty()
                && self.out.is_empty()
                && self.active_slot()?.idle()
            {
                return Ok(());
            }
            if let Some(e) = shutdown.end_session(self.between_transactions()) {
                return Err(SessionError::Client(e));
            }
            let event = tokio::select! {
                e = self.next_event(client) => e?,
                () = shutdown.changed() => Event::Progress,
            };
            match event {
                Event::ClientRead(0) => return Err(SessionError::ClientGone),
                Event::ClientRead(_) => self.take_client_frames()?,
                Event::BackendRead(0) => return Err(self.backend_closed()),
                Event::BackendRead(_) => {
                    let Relay {
                        slots,
                        active,
                        out,
                        router,
                        ..
                    } = self;
                    if let Some(slot) = slots[*active].as_mut() {
                        slot.scan(out)?;
                        for (stmts, ok, status) in slot.done.drain(..) {
                            router.completed(&stmts, ok, status);
                        }
                    }
                }
                Event::Progress => {}
            }
        }
    }

    /// Lifecycle: nothing queued, in flight or unsent, and no transaction open — where a
    /// draining proxy may end the session without the client losing work.
    fn between_transactions(&self) -> bool {
        self.queue.is_empty()
            && self.out.is_empty()
            && self.asm.pending_bytes() == 0
            && self.slots.iter().flatten().all(Slot::idle)
            && self.slots[0]
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
    async fn next_event(&mut self, client: &mut Stream) -> Result<Event, SessionError> {
        let node = self.active;
        let Relay {
            cbuf,
            out,
            slots,
            terminated,
            queue,
            ..
        } = self;
        let slot = slots[node]
            .as_mut()
            .ok_or(SessionError::Backend(BackendError::Closed { node }))?;
        let want_client = !*terminated && slot.bout.len() < HIGH_WATER && queue.len() < 1024;
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
            while !slot.bout.is_empty() {
                match Pin::new(&mut slot.conn.stream).poll_write(cx, &slot.bout) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Event::BackendRead(0))),
                    Poll::Ready(Ok(n)) => {
                        slot.bout.advance(n);
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(BackendError::Io(e).into())),
                    Poll::Pending => break,
                }
            }
            if want_backend {
                let rbuf = &mut slot.conn.rbuf;
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(32 * 1024);
                }
                if let Poll::Ready(r) = poll_read_buf(Pin::new(&mut slot.conn.stream), cx, rbuf) {
                    return Poll::Ready(
                        r.map(Event::BackendRead)
                            .map_err(|e| BackendError::Io(e).into()),
                    );
                }
            }
            if want_client {
                if cbuf.capacity() - cbuf.len() < 1024 {
                    cbuf.reserve(8 * 1024);
                }
                if let Poll::Ready(r) = poll_read_buf(Pin::new(&mut *client), cx, cbuf) {
                    return Poll::Ready(r.map(Event::ClientRead).map_err(Into::into));
                }
            }
            if progressed {
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
                req.encode(&mut self.active_slot()?.bout);
                continue;
            }
            let in_txn = self.slots[0]
                .as_ref()
                .is_some_and(|s| s.conn.txn_status != b'I');
            let node = match self.router.route(&self.ctx, req, in_txn) {
                Target::Node(n) => n,
                Target::Lookup(funcs) => {
                    if !self.look_up_volatility(&funcs).await? {
                        return Ok(()); // the primary is busy; try again when it answers
                    }
                    continue;
                }
                Target::Admin(cmd) => {
                    if !self.active_slot()?.idle() {
                        return Ok(());
                    }
                    self.queue.pop_front();
                    let status = self.slots[0].as_ref().map_or(b'I', |s| s.conn.txn_status);
                    crate::admin::answer(&self.ctx, &cmd, &mut self.out, status);
                    continue;
                }
            };
            if node != self.active && !self.active_slot()?.idle() {
                return Ok(()); // answers still due from the active backend
            }
            let node = self.ensure_connected(node).await?;
            let req = self.queue.pop_front().ok_or(SessionError::ClientGone)?;
            self.active = node;
            self.send(node, req).await?;
        }
        Ok(())
    }

    /// Asks the primary's catalog whether `funcs` are VOLATILE (writes) and caches the
    /// answers for every session. Returns false when the primary is busy right now.
    async fn look_up_volatility(&mut self, funcs: &[String]) -> Result<bool, SessionError> {
        let max = self.decoder.max_len;
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
    async fn ensure_connected(&mut self, node: usize) -> Result<usize, SessionError> {
        if self.slots.get(node).is_some_and(|s| s.is_some()) {
            return Ok(node);
        }
        match self.router.connect(&self.ctx, node).await {
            Ok(mut slot) => {
                if let Err(e) = self
                    .router
                    .replay_state(&mut slot, self.decoder.max_len)
                    .await
                {
                    tracing::warn!(node, "could not bring backend up to session state: {e}");
                    self.router.mark_unusable(node);
                    return Ok(0);
                }
                self.cancel.add_backend(&slot.conn);
                self.slots[node] = Some(slot);
                Ok(node)
            }
            Err(e) => {
                tracing::warn!(node, "backend unreachable, using the primary: {e}");
                self.router.mark_unusable(node);
                Ok(0)
            }
        }
    }

    /// Writes `req` to `node`, with whatever the backend needs first (statement re-prepare)
    /// and state commands mirrored to the other backends.
    async fn send(&mut self, node: usize, req: Request) -> Result<(), SessionError> {
        let max = self.decoder.max_len;
        for other in self.router.mirror_targets(&req, node, &self.slots) {
            if let Some(slot) = self.slots[other].as_mut() {
                if let Some(sql) = Router::simple_text(&req) {
                    if let Some(e) = slot.exec_silent(&sql, max).await? {
                        tracing::debug!(node = other, "mirrored statement failed: {e}");
                    }
                }
            }
        }
        let slot = self.slots[node]
            .as_mut()
            .ok_or(SessionError::Backend(BackendError::Closed { node }))?;
        self.router.prepare_for(&req, slot);
        let stmts = self.router.take_current();
        for _ in 0..req.expected_ready() {
            slot.inflight.push_back((stmts.clone(), false));
        }
        slot.outstanding += req.expected_ready();
        req.encode(&mut slot.bout);
        self.router.after_send(&req, node);
        self.router.record_prepared(&req, slot);
        Ok(())
    }

    /// Ends the session's hold on its backends: a backend busy with a query is cancelled
    /// first so its locks go at once; then the connections are closed.
    pub async fn finish(self) {
        self.cancel.unregister();
        for slot in self.slots.into_iter().flatten() {
            if !slot.idle() {
                let _ = crate::backend::send_cancel(&slot.conn.addr, slot.conn.pid, slot.conn.key)
                    .await;
            }
            slot.conn.terminate().await;
        }
    }
}
