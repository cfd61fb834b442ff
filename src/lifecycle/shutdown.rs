//! The running proxy's main loop: serve, reload on request, and shut down in phases.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn};

use super::reload::{reload_logged, watch_files};
use super::sources::Sources;
use super::{Phase, ShutdownMode};
use crate::context::Context;
use crate::server;

/// After `drain_timeout`, how long closed sessions get to send their last message, cancel
/// their queries and say Terminate to the backends.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

struct Signals {
    term: Signal,
    int: Signal,
    quit: Signal,
    hup: Signal,
}

enum Event {
    Stop(ShutdownMode),
    Reload(&'static str),
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.term.recv() => Event::Stop(ShutdownMode::Smart),
            _ = self.int.recv() => Event::Stop(ShutdownMode::Fast),
            _ = self.quit.recv() => Event::Stop(ShutdownMode::Immediate),
            _ = self.hup.recv() => Event::Reload("SIGHUP"),
        }
    }
}

/// Serves until a shutdown signal (or PCP stop request) and the drain that follows are over.
pub async fn serve_until_stopped(
    ctx: Arc<Context>,
    sources: Arc<Sources>,
    tcp: Vec<TcpListener>,
    unix: Vec<UnixListener>,
) -> std::io::Result<()> {
    let mut signals = Signals::install()?;
    let server = tokio::spawn(server::serve(ctx.clone(), tcp, unix));
    let watcher = tokio::spawn(watch_files(ctx.clone(), sources.clone()));
    let mode = loop {
        let event = tokio::select! {
            e = signals.next() => e,
            () = ctx.shutdown_requested() => Event::Stop(ShutdownMode::Smart),
            () = ctx.reload_requested() => Event::Reload("reload requested"),
        };
        match event {
            Event::Stop(mode) => break mode,
            Event::Reload(why) => {
                let (ctx, sources) = (ctx.clone(), sources.clone());
                let _ =
                    tokio::task::spawn_blocking(move || reload_logged(&ctx, &sources, why)).await;
            }
        }
    };
    watcher.abort();
    shutdown(&ctx, server, &mut signals, mode).await;
    Ok(())
}

/// Smart: not ready at once, serve for `shutdown_delay`, stop accepting, let sessions end at
/// transaction boundaries for `drain_timeout`, then close the rest. Fast and immediate skip
/// to closing. A stronger signal during a smart shutdown skips ahead too.
async fn shutdown(
    ctx: &Context,
    server: tokio::task::JoinHandle<()>,
    signals: &mut Signals,
    mode: ShutdownMode,
) {
    ctx.start_draining();
    let cfg = ctx.config();
    info!(
        sessions = ctx.lifecycle.session_count(),
        "received {} shutdown request",
        mode.name()
    );
    let mut smart = mode == ShutdownMode::Smart;
    if smart {
        let delay = Duration::from_secs(cfg.shutdown_delay);
        smart = !interrupted(signals, tokio::time::sleep(delay)).await;
    }
    server.abort();
    let _ = server.await;
    ctx.lifecycle.close_sessions();
    info!("stopped accepting connections");
    if smart {
        ctx.lifecycle.advance(Phase::Draining);
        let timeout = Duration::from_secs(cfg.drain_timeout);
        let wait = tokio::time::timeout(timeout, ctx.lifecycle.sessions_ended());
        if !interrupted(signals, wait).await && ctx.lifecycle.session_count() == 0 {
            info!("all sessions ended; shutting down");
            return;
        }
    }
    let left = ctx.lifecycle.session_count();
    if left > 0 {
        warn!(sessions = left, "closing the sessions that are left");
    }
    ctx.lifecycle.advance(Phase::Closing);
    if tokio::time::timeout(CLOSE_GRACE, ctx.lifecycle.sessions_ended())
        .await
        .is_err()
    {
        warn!(
            sessions = ctx.lifecycle.session_count(),
            "sessions still closing; exiting anyway"
        );
    }
}

/// Runs `fut` unless a fast or immediate shutdown signal comes first (true). Another
/// SIGTERM or a SIGHUP changes nothing while shutting down.
async fn interrupted(signals: &mut Signals, fut: impl Future) -> bool {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            _ = &mut fut => return false,
            e = signals.next() => match e {
                Event::Stop(ShutdownMode::Smart) | Event::Reload(_) => {}
                Event::Stop(m) => {
                    info!("received {} shutdown request during the drain", m.name());
                    return true;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_drain_fits_kubernetes_default_grace_period() {
        let cfg = crate::config::Config::default();
        let total = Duration::from_secs(cfg.shutdown_delay + cfg.drain_timeout) + CLOSE_GRACE;
        assert!(total < Duration::from_secs(30), "{total:?}");
    }
}
