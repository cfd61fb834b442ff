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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
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
    phase: AtomicU8,
    /// Cancelled when sessions should end at their next boundary.
    drain: CancellationToken,
    /// Cancelled when sessions should end now.
    close: CancellationToken,
    sessions: TaskTracker,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            phase: AtomicU8::new(0),
            drain: CancellationToken::new(),
            close: CancellationToken::new(),
            sessions: TaskTracker::new(),
        }
    }
}

impl Control {
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Closing,
        }
    }

    /// Moves the shutdown forward (never back) and wakes every session.
    pub(crate) fn advance(&self, to: Phase) {
        let n = match to {
            Phase::Running => return,
            Phase::Draining => 1,
            Phase::Closing => 2,
        };
        self.phase.fetch_max(n, Ordering::AcqRel);
        self.drain.cancel();
        if to == Phase::Closing {
            self.close.cancel();
        }
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
        self.drain.cancelled().await
    }

    /// A session's view of the shutdown, made once per session.
    pub fn watch(&self) -> SessionWatch {
        SessionWatch {
            // Clones, not child tokens: a child costs an allocation and a lock on the
            // parent per session, and sessions never cancel anything themselves.
            on_drain: Some(Box::pin(self.drain.clone().cancelled_owned())),
            on_close: Some(Box::pin(self.close.clone().cancelled_owned())),
            closing: false,
            draining: false,
        }
    }
}

type Wait = Pin<Box<WaitForCancellationFutureOwned>>;

/// Wakes a session when the shutdown moves on, and says when the session must end.
pub struct SessionWatch {
    on_drain: Option<Wait>,
    on_close: Option<Wait>,
    draining: bool,
    closing: bool,
}

/// What a client is told when the proxy ends its session for a shutdown (PostgreSQL's text).
pub fn shutdown_error() -> PgError {
    PgError::fatal(
        "57P01",
        "terminating connection due to administrator command",
    )
}

impl SessionWatch {
    /// The error to end the session with, if it must end now. `idle`: the session is between
    /// transactions with nothing queued, in flight or unsent.
    pub fn end_session(&self, idle: bool) -> Option<PgError> {
        (self.closing || (self.draining && idle)).then(shutdown_error)
    }

    /// Resolves when the shutdown moves to another phase. Cancel-safe; pending for ever once
    /// the last phase was seen.
    pub async fn changed(&mut self) {
        std::future::poll_fn(|cx| {
            if let Some(f) = self.on_drain.as_mut() {
                if f.as_mut().poll(cx).is_ready() {
                    self.on_drain = None;
                    self.draining = true;
                    return std::task::Poll::Ready(());
                }
            }
            if let Some(f) = self.on_close.as_mut() {
                if f.as_mut().poll(cx).is_ready() {
                    self.on_close = None;
                    self.closing = true;
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        })
        .await
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
