//! The relay loop: one task moves bytes both ways without ever blocking one direction on the
//! other (a client pipelining many queries while the backend streams results cannot
//! deadlock the proxy). Backend output is scanned by header only: DataRow and CopyData
//! bodies are copied through without being decoded or held whole.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio_util::io::poll_read_buf;

use super::request::{Assembler, Request};
use super::SessionError;
use crate::backend::{set_param, BackendConn, BackendError};
use crate::protocol::{
    btag, decode_parameter_status, decode_ready, FrameDecoder, PgError, HEADER_LEN,
};
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
    backend: BackendConn,
    /// Bytes for the backend.
    bout: BytesMut,
    /// ReadyForQuery messages still to come from the backend.
    outstanding: usize,
    /// Body bytes of an opaque backend message still to copy through.
    passthrough: usize,
    /// The backend reported a FATAL error: it is about to close.
    backend_fatal: bool,
    terminated: bool,
}

impl Relay {
    pub fn new(
        ctx: Arc<Context>,
        backend: BackendConn,
        cancel: CancelHandle,
        cbuf: BytesMut,
    ) -> Relay {
        let max = ctx.config().max_message_size;
        Relay {
            ctx,
            cancel,
            decoder: FrameDecoder::new(max),
            cbuf,
            out: BytesMut::with_capacity(16 * 1024),
            asm: Assembler::default(),
            queue: VecDeque::new(),
            backend,
            bout: BytesMut::with_capacity(4 * 1024),
            outstanding: 0,
            passthrough: 0,
            backend_fatal: false,
            terminated: false,
        }
    }

    /// Relays until the client terminates (Ok) or something breaks (Err).
    pub async fn run(&mut self, client: &mut Stream) -> Result<(), SessionError> {
        // The client may have pipelined messages right after its password.
        self.take_client_frames()?;
        loop {
            self.dispatch();
            if self.terminated
                && self.outstanding == 0
                && self.out.is_empty()
                && self.bout.is_empty()
            {
                return Ok(());
            }
            match self.next_event(client).await? {
                Event::ClientRead(0) => return Err(SessionError::ClientGone),
                Event::ClientRead(_) => self.take_client_frames()?,
                Event::BackendRead(0) => {
                    let node = self.backend.node;
                    return Err(if self.backend_fatal {
                        // The server already told the client why; nothing to add.
                        SessionError::ClientGone
                    } else {
                        BackendError::Closed { node }.into()
                    });
                }
                Event::BackendRead(_) => self.scan_backend()?,
                Event::Progress => {}
            }
        }
    }

    /// Waits until bytes arrive from either side or some output could be written.
    async fn next_event(&mut self, client: &mut Stream) -> Result<Event, SessionError> {
        let want_client =
            !self.terminated && self.bout.len() < HIGH_WATER && self.queue.len() < 1024;
        let want_backend = self.out.len() < HIGH_WATER;
        let Relay {
            cbuf,
            out,
            backend,
            bout,
            ..
        } = self;
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
            while !bout.is_empty() {
                match Pin::new(&mut backend.stream).poll_write(cx, bout) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Event::BackendRead(0))),
                    Poll::Ready(Ok(n)) => {
                        bout.advance(n);
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(BackendError::Io(e).into())),
                    Poll::Pending => break,
                }
            }
            if want_backend {
                if backend.rbuf.capacity() - backend.rbuf.len() < 4096 {
                    backend.rbuf.reserve(32 * 1024);
                }
                if let Poll::Ready(r) =
                    poll_read_buf(Pin::new(&mut backend.stream), cx, &mut backend.rbuf)
                {
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

    /// Moves queued requests to the backend's output.
    fn dispatch(&mut self) {
        while let Some(req) = self.queue.pop_front() {
            self.outstanding += req.expected_ready();
            req.encode(&mut self.bout);
        }
    }

    /// Copies complete or opaque backend messages to the client, noting the few that change
    /// session state.
    fn scan_backend(&mut self) -> Result<(), SessionError> {
        let rbuf = &mut self.backend.rbuf;
        loop {
            if self.passthrough > 0 {
                let n = self.passthrough.min(rbuf.len());
                if n == 0 {
                    return Ok(());
                }
                self.out.extend_from_slice(&rbuf[..n]);
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
                return Err(
                    BackendError::protocol_msg(format!("invalid message length {len}")).into(),
                );
            }
            let total = len as usize + 1;
            if matches!(
                tag,
                btag::DATA_ROW | btag::COPY_DATA | btag::ROW_DESCRIPTION | btag::NOTICE_RESPONSE
            ) {
                self.passthrough = total;
                continue;
            }
            if rbuf.len() < total {
                rbuf.reserve(total - rbuf.len());
                return Ok(());
            }
            let msg = rbuf.split_to(total);
            let body = &msg[HEADER_LEN..];
            match tag {
                btag::READY_FOR_QUERY => {
                    self.outstanding = self.outstanding.saturating_sub(1);
                    self.backend.txn_status = decode_ready(body).unwrap_or(b'I');
                }
                btag::PARAMETER_STATUS => {
                    if let Ok((k, v)) = decode_parameter_status(body) {
                        set_param(&mut self.backend.params, k, v);
                    }
                }
                btag::ERROR_RESPONSE => {
                    if PgError::decode(body).is_fatal() {
                        self.backend_fatal = true;
                    }
                }
                _ => {}
            }
            self.out.extend_from_slice(&msg);
        }
    }

    /// Ends the session's hold on its backend: a backend busy with a query is cancelled first
    /// so its locks go at once; then the connection is closed.
    pub async fn finish(self) {
        self.cancel.unregister();
        let _ = &self.ctx;
        if self.outstanding > 0 || self.backend.txn_status != b'I' {
            let addr = self.backend.addr.clone();
            if self.outstanding > 0 {
                let _ =
                    crate::backend::send_cancel(&addr, self.backend.pid, self.backend.key).await;
            }
        }
        self.backend.terminate().await;
    }
}
