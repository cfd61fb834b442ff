//! The shutdown as sessions see it: the phase, a watch per session that wakes it when the
//! phase moves, and the tracker the shutdown waits on. The process lifecycle (signals,
//! drain) moves the phase; this state lives in the shared context so that sessions need
//! nothing above it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::protocol::PgError;

/// How far a shutdown has gone, as sessions see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Serving normally (also during `shutdown_delay`).
    Running,
    /// No longer accepting: end each session when it is between transactions.
    Draining,
    /// Time is up: end every session now, cancelling what runs.
    Closing,
}

/// The lifecycle's shared state, held in `Context`.
pub struct Control {
    shared: Arc<Shared>,
    /// Cancelled when the shutdown begins: what a session waiting for its first message
    /// watches (no registration, no allocation).
    begun: CancellationToken,
    sessions: TaskTracker,
}

/// What sessions watch: the phase, and where to wake each of them when it moves.
#[derive(Default)]
struct Shared {
    phase: AtomicU8,
    /// One waker slot per live session, by watch id. Touched when a session starts or ends
    /// and when the phase moves; a session's own slot is all it locks per wait.
    watchers: Mutex<HashMap<u64, Arc<WakeSlot>>>,
    next_id: AtomicU64,
}

/// The waker a session last waited with.
#[derive(Default)]
struct WakeSlot(Mutex<Option<Waker>>);

impl WakeSlot {
    fn register(&self, waker: &Waker) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn wake(&self) {
        let waker = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Default for Control {
    fn default() -> Self {
        Control {
            shared: Arc::default(),
            begun: CancellationToken::new(),
            sessions: TaskTracker::new(),
        }
    }
}

fn phase_of(n: u8) -> Phase {
    match n {
        0 => Phase::Running,
        1 => Phase::Draining,
        _ => Phase::Closing,
    }
}

impl Control {
    pub fn phase(&self) -> Phase {
        phase_of(self.shared.phase.load(Ordering::Acquire))
    }

    /// Moves the shutdown forward (never back) and wakes every session.
    pub(crate) fn advance(&self, to: Phase) {
        let n = match to {
            Phase::Running => return,
            Phase::Draining => 1,
            Phase::Closing => 2,
        };
        self.shared.phase.fetch_max(n, Ordering::AcqRel);
        self.begun.cancel();
        let slots: Vec<Arc<WakeSlot>> = {
            let w = self
                .shared
                .watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            w.values().cloned().collect()
        };
        slots.iter().for_each(|s| s.wake());
    }

    /// Runs a client session as a task the shutdown waits for.
    pub fn spawn_session<F>(&self, session: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.sessions.spawn(session);
    }

    /// No session is spawned after this: [`Control::sessions_ended`] can then resolve.
    pub(crate) fn close_sessions(&self) {
        self.sessions.close();
    }

    /// Resolves once sessions are closed and every spawned session has ended.
    pub(crate) async fn sessions_ended(&self) {
        self.sessions.wait().await
    }

    /// Sessions still running.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Resolves once a shutdown has begun (draining or closing): enough for a session that
    /// is between transactions anyway, and it costs no allocation.
    pub async fn shutdown_begun(&self) {
        self.begun.cancelled().await
    }

    /// A session's view of the shutdown, made once per session.
    pub fn watch(&self) -> SessionWatch {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(WakeSlot::default());
        self.shared
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, slot.clone());
        SessionWatch {
            shared: self.shared.clone(),
            id,
            slot,
            seen: 0,
        }
    }
}

/// Wakes a session when the shutdown moves on, and says when the session must end.
/// Waiting costs an atomic load and an uncontended lock of the session's own slot.
pub struct SessionWatch {
    shared: Arc<Shared>,
    id: u64,
    slot: Arc<WakeSlot>,
    /// The last phase this session reacted to.
    seen: u8,
}

impl Drop for SessionWatch {
    fn drop(&mut self) {
        let mut w = self
            .shared
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        w.remove(&self.id);
    }
}

/// What a client is told when the proxy ends its session for a shutdown (PostgreSQL's text).
pub fn shutdown_error() -> PgError {
    PgError::fatal(
        "57P01",
        "terminating connection due to administrator command",
    )
}

impl SessionWatch {
    /// A shutdown has begun (the session should check [`SessionWatch::end_session`]).
    pub fn stopping(&self) -> bool {
        self.seen > 0
    }

    /// The error to end the session with, if it must end now. `idle`: the session is between
    /// transactions with nothing queued, in flight or unsent.
    pub fn end_session(&self, idle: bool) -> Option<PgError> {
        let (draining, closing) = (self.seen >= 1, self.seen >= 2);
        (closing || (draining && idle)).then(shutdown_error)
    }

    /// Resolves when the shutdown moves to another phase. Cancel-safe; pending for ever once
    /// the last phase was seen.
    pub async fn changed(&mut self) {
        std::future::poll_fn(|cx| {
            if self.poll_phase() {
                return std::task::Poll::Ready(());
            }
            self.slot.register(cx.waker());
            // The phase may have moved between the check and the registration.
            if self.poll_phase() {
                return std::task::Poll::Ready(());
            }
            std::task::Poll::Pending
        })
        .await
    }

    fn poll_phase(&mut self) -> bool {
        let now = self.shared.phase.load(Ordering::Acquire);
        if now > self.seen {
            self.seen = now;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_ends_at_a_boundary_when_draining_and_at_once_when_closing() {
        let c = Control::default();
        let mut w = c.watch();
        assert!(w.end_session(true).is_none());
        c.advance(Phase::Draining);
        w.changed().await;
        assert!(w.end_session(false).is_none(), "busy sessions go on");
        let e = w.end_session(true).map(|e| e.code);
        assert_eq!(e.as_deref(), Some("57P01"));
        c.advance(Phase::Closing);
        w.changed().await;
        assert!(w.end_session(false).is_some());
        assert_eq!(c.phase(), Phase::Closing);
        c.advance(Phase::Draining);
        assert_eq!(c.phase(), Phase::Closing, "a shutdown never goes back");
    }
}
