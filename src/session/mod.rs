//! One client session: startup, authentication, then the relay loop (read a client request,
//! decide where it goes, forward it, stream the answer back) until the client leaves.

mod auth;
pub mod catalog;
mod checkout;
mod failover;
mod identity;
mod leaves_state;
mod logstmt;
mod relay;
mod request;
mod reset_list;
mod route;
mod ryw;
mod slot;
mod startup;
mod statements;
mod txnlb;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, Instrument};

use crate::backend::{BackendError, Credential};
use crate::protocol::{self, Frame, FrameDecoder, PgError, ProtocolError};
use crate::server::{CancelHandle, Context};
use crate::stream::Stream;

pub use auth::ClientInfo;
pub use identity::StartupParams;
pub use startup::FirstPacket;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client closed the connection")]
    ClientGone,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(ProtocolError),
    /// An error for the client; FATAL ends the session.
    #[error("{0}")]
    Client(PgError),
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("authentication timeout")]
    AuthTimeout,
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl SessionError {
    /// A login refused for its credentials, by pool_hba.conf or by the backend (SQLSTATE
    /// class 28): the answer waits `auth_failure_delay`.
    fn is_failed_login(&self) -> bool {
        self.to_client_error()
            .is_some_and(|e| e.code.starts_with("28"))
    }

    /// The ErrorResponse the client should get before the connection closes, if any.
    fn to_client_error(&self) -> Option<PgError> {
        match self {
            SessionError::ClientGone
            | SessionError::Io(_)
            | SessionError::AuthTimeout
            | SessionError::Tls(_) => None,
            SessionError::Protocol(p) => Some(p.to_pg_error()),
            SessionError::Client(e) => Some(e.clone()),
            SessionError::Backend(b) => {
                let mut e = b.to_pg_error();
                if matches!(b, BackendError::Closed { .. } | BackendError::Io(_)) {
                    e.code = "08006".into();
                }
                Some(e)
            }
        }
    }
}

/// Reads one whole frame from `stream`, buffering in `buf`.
pub(crate) async fn read_frame(
    stream: &mut Stream,
    buf: &mut BytesMut,
    dec: &FrameDecoder,
) -> Result<Frame, SessionError> {
    loop {
        if let Some(f) = dec.decode(buf).map_err(SessionError::Protocol)? {
            return Ok(f);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(SessionError::ClientGone);
        }
    }
}

/// Runs a client connection to its end. Errors are reported to the client here.
pub async fn run(ctx: Arc<Context>, mut stream: Stream, client: ClientInfo) {
    if ctx.config().log_connections {
        info!("new connection received: connecting {}", host_port(&client));
    }
    let clean = serve(&ctx, &mut stream, &client).await;
    // Closing the socket sends the FIN: a separate shutdown is needed only for TLS (its
    // close_notify) and, to be gentle, after an error.
    if !clean || stream.is_tls() {
        let _ = stream.shutdown().await;
    }
}

/// `host=… port=…` as Pgpool-II writes it in connection log lines.
fn host_port(client: &ClientInfo) -> String {
    match client.addr {
        Some(a) => format!("host={} port={}", client.host(), a.port()),
        None => format!("host={}", client.host()),
    }
}

/// The span of a session's logging. A session waiting for its first message holds none
/// (it logs nothing then, and a span costs memory for as long as it lives): startup and
/// the relay get one each.
fn session_span(client: &ClientInfo) -> tracing::Span {
    tracing::info_span!(
        "session",
        client = %client,
        user = tracing::field::Empty,
        database = tracing::field::Empty
    )
}

/// Runs the session's phases; false when it ended in an error.
async fn serve(ctx: &Arc<Context>, stream: &mut Stream, client: &ClientInfo) -> bool {
    // The task's future is as large as its largest state, and an idle client holds the task
    // for as long as it stays: each phase that needs a large state runs boxed, for its
    // moment only (startup with TLS and authentication; the relay and the release).
    let span = session_span(client);
    let opened = match Box::pin(open(ctx, stream, client).instrument(span.clone())).await {
        Ok(Some(opened)) => opened,
        Ok(None) => return true,
        Err(e) => {
            let failed_login = e.is_failed_login();
            let pause = async {
                if failed_login {
                    ctx.pause_after_failed_login(client.addr.map(|a| a.ip()))
                        .await;
                }
                report(stream, e).await
            };
            Box::pin(pause.instrument(span)).await;
            return false;
        }
    };
    drop(span);
    let waited = match opened.started.buf.is_empty() {
        true => first_message(ctx, stream).await,
        false => Ok(()),
    };
    Box::pin(after_first_message(ctx, stream, client, opened, waited)).await
}

/// The relay (or the end, when waiting for the first message failed), then the last words.
async fn after_first_message(
    ctx: &Arc<Context>,
    stream: &mut Stream,
    client: &ClientInfo,
    opened: Opened,
    waited: Result<(), NoMessage>,
) -> bool {
    let info = opened.entry.info.clone();
    let span = tracing::info_span!(
        "session",
        client = %client,
        user = info.user.as_str(),
        database = info.database.as_str()
    );
    let result = match waited {
        Ok(()) => {
            relay_phase(ctx, stream, opened)
                .instrument(span.clone())
                .await
        }
        Err(e) => {
            if let Some(slot) = opened.started.primary {
                checkout::release(ctx, *slot).await;
            }
            Err(e.into())
        }
    };
    let clean = result.is_ok();
    if let Err(e) = result {
        report(stream, e).instrument(span.clone()).await;
    }
    if ctx.config().log_disconnections {
        let _in_span = span.enter();
        log_disconnection(&info, client);
    }
    clean
}

/// Pgpool-II's `log_disconnections` line.
fn log_disconnection(info: &crate::admin::SessionInfo, client: &ClientInfo) {
    let ms = info.started.elapsed().unwrap_or_default().as_millis();
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    info!(
        "frontend disconnection: session time: {h}:{m:02}:{s:02}.{:03} user={} database={} {}",
        ms % 1000,
        info.user,
        info.database,
        host_port(client)
    );
}

/// Logs why a session ended and tells the client, when there is something to tell.
async fn report(stream: &mut Stream, e: SessionError) {
    match &e {
        SessionError::ClientGone => debug!("client disconnected"),
        other => info!("session ended: {other}"),
    }
    if let Some(pg) = e.to_client_error() {
        let mut out = BytesMut::new();
        pg.encode(&mut out);
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
    }
}

/// Why the wait for the first message ended without one (small: it is kept by the waiting
/// future, the error is built afterwards).
enum NoMessage {
    Io(std::io::Error),
    Shutdown,
    IdleLimit(u64),
}

impl From<NoMessage> for SessionError {
    fn from(n: NoMessage) -> SessionError {
        match n {
            NoMessage::Io(e) => SessionError::Io(e),
            NoMessage::Shutdown => SessionError::Client(crate::lifecycle::shutdown_error()),
            NoMessage::IdleLimit(limit) => relay::idle_limit_reached(limit),
        }
    }
}

/// Waits for the client's first message after the greeting. Until then a session holds
/// only what identifies it: no relay, no routing state, no buffers, no log span (most of
/// an idle client's cost). Ends the session on `client_idle_limit` or a shutdown. Under TLS
/// the decrypted bytes may be buffered already, so there it returns at once.
async fn first_message(ctx: &Context, stream: &Stream) -> Result<(), NoMessage> {
    let limit = ctx.config().client_idle_limit;
    // Boxed, and only with a limit: a timer is a large part of a small future.
    let mut idle_timer =
        (limit > 0).then(|| Box::pin(tokio::time::sleep(Duration::from_secs(limit))));
    let timed_out = std::future::poll_fn(|cx| match idle_timer.as_mut() {
        Some(t) => std::future::Future::poll(t.as_mut(), cx),
        None => std::task::Poll::Pending,
    });
    tokio::select! {
        // The socket's own readiness, not a read: no buffer is needed to wait.
        r = std::future::poll_fn(|cx| stream.poll_read_ready(cx)) => r.map_err(NoMessage::Io),
        // Nothing is in flight: a shutdown, even a graceful one, may end the session now.
        () = ctx.lifecycle.shutdown_begun() => Err(NoMessage::Shutdown),
        () = timed_out => Err(NoMessage::IdleLimit(limit)),
    }
}

/// The relay, from the client's first message to the release of its backends.
async fn relay_phase(
    ctx: &Arc<Context>,
    stream: &mut Stream,
    opened: Opened,
) -> Result<(), SessionError> {
    let Opened {
        permit,
        started,
        entry,
    } = opened;
    let admin = crate::admin::SessionAdmin::new(entry);
    // Transaction mode: the primary's cache key, to tell whether a connection is free.
    let shared = checkout::pool_key(ctx, ctx.router_config().primary_node, &started.params)
        .filter(|k| checkout::pools_transactions(ctx, k))
        .map(Box::new);
    let router = route::Router::new(ctx, started.params, started.credential);
    let mut s = relay::Relay::new(
        ctx.clone(),
        started.primary.map(|p| *p),
        started.cancel,
        started.buf,
        router,
        admin,
        shared,
    );
    let result = s.run(stream).await;
    // Boxed: the release's state would otherwise be carried by every session while it runs.
    Box::pin(s.finish()).await;
    drop(permit);
    result
}

/// A session through startup and authentication, greeted, waiting for its first message.
struct Opened {
    /// The client slot (`num_init_children`), held until the session ends.
    permit: tokio::sync::OwnedSemaphorePermit,
    started: Started,
    /// The session's registry entry (the rest of its admin state comes with the relay).
    entry: crate::admin::SessionEntry,
}

/// Reads the first packet, admits and authenticates the client and greets it; `None` when
/// the connection was a cancel request.
async fn open(
    ctx: &Arc<Context>,
    stream: &mut Stream,
    client: &ClientInfo,
) -> Result<Option<Opened>, SessionError> {
    let mut buf = BytesMut::with_capacity(512);
    let first = within_auth_timeout(
        ctx,
        startup::read_first_packet(stream, &mut buf, ctx.tls.acceptor()),
    )
    .await?;
    let params = match first {
        FirstPacket::Cancel { pid, key } => {
            ctx.cancel.cancel(pid, key).await;
            return Ok(None);
        }
        FirstPacket::Startup { minor, params } => {
            StartupParams::parse(minor, params).map_err(SessionError::Client)?
        }
    };
    if params.needs_negotiation() {
        // Before anything else, as PostgreSQL: the session goes on in 3.0.
        let mut out = BytesMut::new();
        let names: Vec<&str> = params
            .unrecognized_options
            .iter()
            .map(String::as_str)
            .collect();
        protocol::negotiate_protocol_version(&mut out, 0, &names);
        stream.write_all(&out).await?;
    }
    // Waiting for a free slot is not part of authentication: no timeout here (FIFO).
    let permit = ctx.admit().await.map_err(SessionError::Client)?;
    let (started, user, database) =
        within_auth_timeout(ctx, start_session(ctx, stream, client, params, buf))
            .await
            .inspect_err(|e| match e {
                SessionError::AuthTimeout => ctx.stats.auth_failed("timeout"),
                SessionError::Client(pg) if pg.code.starts_with("28") => {
                    crate::admin::auth_failed(ctx, &pg.code)
                }
                _ => {}
            })?;
    let new = crate::admin::NewSession {
        pid: started.cancel.pid(),
        client: client.addr,
        user,
        database,
        tls: stream.is_tls(),
    };
    let primary = started.primary.as_ref().map(|p| (p.conn.node, &p.conn));
    let Some(entry) = crate::admin::session_started(ctx, new, primary).entry else {
        return Err(SessionError::ClientGone);
    };
    Ok(Some(Opened {
        permit,
        started,
        entry,
    }))
}

/// Runs `fut` within `authentication_timeout` (0 = no limit, as in Pgpool-II).
async fn within_auth_timeout<T>(
    ctx: &Context,
    fut: impl std::future::Future<Output = Result<T, SessionError>>,
) -> Result<T, SessionError> {
    match ctx.config().authentication_timeout {
        0 => fut.await,
        secs => tokio::time::timeout(Duration::from_secs(secs), fut)
            .await
            .map_err(|_| SessionError::AuthTimeout)?,
    }
}

/// An authenticated session, ready for the relay.
struct Started {
    /// Held from the start only when connections are not cached (boxed: a parked session
    /// carries this inline otherwise).
    primary: Option<Box<slot::Slot>>,
    cancel: CancelHandle,
    /// Client bytes already read past the password message.
    buf: BytesMut,
    /// Startup parameters for further backend connections.
    params: Vec<(String, String)>,
    /// What authenticated the primary; reused for the other backends.
    credential: Credential,
}

/// Authentication, the primary connection and the greeting to the client; with the
/// session's user and database.
async fn start_session(
    ctx: &Arc<Context>,
    stream: &mut Stream,
    client: &ClientInfo,
    params: StartupParams,
    mut buf: BytesMut,
) -> Result<(Started, String, String), SessionError> {
    let StartupParams {
        user,
        database,
        backend: bparams,
        ..
    } = params;
    let span = tracing::Span::current();
    span.record("user", user.as_str());
    span.record("database", database.as_str());
    let cfg = ctx.config();
    let greeting = {
        let mut a = auth::ClientAuth {
            stream,
            buf: &mut buf,
            user: &user,
            stored: ctx.passwd().get(&user).cloned(),
            allow_clear_text: cfg.allow_clear_text_frontend_auth,
            scram: &ctx.scram,
        };
        // With pool_hba on, the client is authenticated here, before any backend.
        let verified = auth::pool_hba(&mut a, ctx, client, &database).await?;
        checkout::start(ctx, &mut a, &bparams, verified).await?
    };
    let cancel = ctx.cancel.register();
    if let Some(p) = &greeting.primary {
        cancel.add_backend(&p.conn);
    }
    greet(
        stream,
        &greeting.params,
        greeting.application_name.as_deref(),
        &cancel,
    )
    .await?;
    debug!(user, database, "session started");
    // Bytes pipelined after the password stay for the relay; otherwise no buffer is kept.
    let buf = if buf.is_empty() { BytesMut::new() } else { buf };
    let started = Started {
        credential: greeting.credential,
        primary: greeting.primary.map(Box::new),
        cancel,
        buf,
        params: bparams,
    };
    Ok((started, user, database))
}

/// AuthenticationOk, the server's ParameterStatus set (with `application_name` in place of
/// the server's, when given), our own BackendKeyData, ReadyForQuery: one write.
async fn greet(
    stream: &mut Stream,
    params: &[(String, String)],
    application_name: Option<&str>,
    cancel: &CancelHandle,
) -> Result<(), SessionError> {
    let mut out = BytesMut::with_capacity(1024);
    protocol::auth_ok(&mut out);
    let mut app_name_sent = false;
    for (k, v) in params {
        match application_name {
            Some(a) if k == "application_name" => {
                protocol::parameter_status(&mut out, k, a);
                app_name_sent = true;
            }
            _ => protocol::parameter_status(&mut out, k, v),
        }
    }
    if let (Some(a), false) = (application_name, app_name_sent) {
        protocol::parameter_status(&mut out, "application_name", a);
    }
    protocol::backend_key_data(&mut out, cancel.pid(), cancel.key());
    protocol::ready_for_query(&mut out, b'I');
    stream.write_all(&out).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle client holds its session task for as long as it stays: the task's future must
    /// stay small (startup, relay and release state are boxed, for their moment only), and a
    /// session waiting for its first message holds no buffer, span or relay inline.
    #[test]
    fn an_idle_session_future_stays_small() {
        let ctx = Context::new(Default::default(), Default::default());
        let session = run(ctx, Stream::Detached, ClientInfo::local());
        let size = std::mem::size_of_val(&session);
        assert!(size <= 1024, "session future is {size} bytes");
    }
}
