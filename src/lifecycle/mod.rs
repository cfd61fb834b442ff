//! The process lifecycle on Kubernetes: signals, graceful drain, reload and the pid file.
//!
//! Kubernetes sends SIGTERM on every rollout, so SIGTERM must not drop clients. It starts a
//! drain: `/readyz` fails at once (`Context::draining`), the proxy keeps serving for
//! `shutdown_delay` while the endpoint is removed from the Service, then stops accepting and
//! ends each session at its next transaction boundary with FATAL 57P01 (which poolers and
//! drivers retry); after `drain_timeout` whatever is left is cancelled and closed. Pgpool-II's
//! other modes map as in Pgpool-II: SIGINT = fast, SIGQUIT = immediate (the same as fast).
//!
//! Reload (SIGHUP, `pgpool reload`, PCP, or a change of the mounted files) reads every file
//! first and swaps them in only if all of them parse and validate; sessions keep running.
//! PCP's `pcp_stop_pgpool` / `pcp_reload_config` arrive through `Context::shutdown_requested`
//! / `reload_requested`.

mod pidfile;
mod reload;
mod shutdown;
mod sources;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::protocol::PgError;

pub use pidfile::{read_pid, send_command, Command, PidFile, PidFileError};
pub use reload::{reload, reload_logged, watch_files, ReloadReport};
pub use shutdown::serve_until_stopped;
pub use sources::{LoadError, Snapshot, Sources, CONF_VOLUME_ENV};

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

/// Pgpool-II's `-m` shutdown modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// SIGTERM: the Kubernetes drain described in the module comment.
    Smart,
    /// SIGINT: no delay, no waiting for transactions: sessions end at once with 57P01.
    Fast,
    /// SIGQUIT: as fast (Pgpool-II documents immediate as the same as fast).
    Immediate,
}

impl ShutdownMode {
    /// Parses `-m`: `s`/`smart`, `f`/`fast`, `i`/`immediate`, as Pgpool-II does.
    pub fn parse(text: &str) -> Option<ShutdownMode> {
        match text {
            "s" | "smart" => Some(ShutdownMode::Smart),
            "f" | "fast" => Some(ShutdownMode::Fast),
            "i" | "immediate" => Some(ShutdownMode::Immediate),
            _ => None,
        }
    }

    /// The signal Pgpool-II's `pgpool -m MODE stop` sends for this mode.
    pub fn signal(self) -> libc::c_int {
        match self {
            ShutdownMode::Smart => libc::SIGTERM,
            ShutdownMode::Fast => libc::SIGINT,
            ShutdownMode::Immediate => libc::SIGQUIT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ShutdownMode::Smart => "smart",
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
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

    #[test]
    fn shutdown_modes_parse_like_pgpool() {
        let cases = [
            ("s", Some(ShutdownMode::Smart)),
            ("smart", Some(ShutdownMode::Smart)),
            ("f", Some(ShutdownMode::Fast)),
            ("fast", Some(ShutdownMode::Fast)),
            ("i", Some(ShutdownMode::Immediate)),
            ("immediate", Some(ShutdownMode::Immediate)),
            ("SMART", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(ShutdownMode::parse(text), want, "{text}");
        }
    }

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
