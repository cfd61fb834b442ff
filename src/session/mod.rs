//! One client session: startup, authentication, then the relay loop (read a client request,
//! decide where it goes, forward it, stream the answer back) until the client leaves.

mod auth;
mod checkout;
mod failover;
mod relay;
mod request;
mod route;
mod routecfg;
mod slot;
mod startup;

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
pub use routecfg::router_config;
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
    let span = tracing::info_span!("session", client = %client, user = tracing::field::Empty);
    async move {
        let result = serve(&ctx, &mut stream, &client).await;
        if let Err(e) = result {
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
        let _ = stream.shutdown().await;
    }
    .instrument(span)
    .await
}

async fn serve(
    ctx: &Arc<Context>,
    stream: &mut Stream,
    client: &ClientInfo,
) -> Result<(), SessionError> {
    let mut buf = BytesMut::with_capacity(512);
    let first = within_auth_timeout(
        ctx,
        startup::read_first_packet(stream, &mut buf, ctx.tls.acceptor()),
    )
    .await?;
    let params = match first {
        FirstPacket::Cancel { pid, key } => {
            ctx.cancel.cancel(pid, key).await;
            return Ok(());
        }
        FirstPacket::Startup(p) => p,
    };
    // Waiting for a free slot is not part of authentication: no timeout here (FIFO).
    let _permit = ctx.admit().await.map_err(SessionError::Client)?;
    let started = within_auth_timeout(ctx, start_session(ctx, stream, client, params, buf))
        .await
        .inspect_err(|e| match e {
            SessionError::AuthTimeout => ctx.stats.auth_failed("timeout"),
            SessionError::Client(pg) if pg.code.starts_with("28") => {
                crate::admin::auth_failed(ctx, &pg.code)
            }
            _ => {}
        })?;
    let param = |k: &str| {
        let found = started.params.iter().find(|(n, _)| n == k);
        found.map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let new = crate::admin::NewSession {
        pid: started.cancel.pid(),
        client: client.to_string(),
        user: param("user"),
        database: param("database"),
        tls: stream.is_tls(),
    };
    let primary = started.primary.as_ref().map(|p| (p.conn.node, &p.conn));
    let admin = crate::admin::session_started(ctx, new, primary);
    let router = route::Router::new(ctx, started.params, started.credential);
    let mut s = relay::Relay::new(
        ctx.clone(),
        started.primary,
        started.cancel,
        started.buf,
        router,
        admin,
    );
    let result = s.run(stream).await;
    s.finish().await;
    result
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
    /// Held from the start only when connections are not cached.
    primary: Option<slot::Slot>,
    cancel: CancelHandle,
    /// Client bytes already read past the password message.
    buf: BytesMut,
    /// Startup parameters for further backend connections.
    params: Vec<(String, String)>,
    /// What authenticated the primary; reused for the other backends.
    credential: Credential,
}

/// Authentication, the primary connection and the greeting to the client.
async fn start_session(
    ctx: &Arc<Context>,
    stream: &mut Stream,
    client: &ClientInfo,
    params: Vec<(String, String)>,
    mut buf: BytesMut,
) -> Result<Started, SessionError> {
    let (user, database) = startup::user_and_database(&params).ok_or_else(|| {
        SessionError::Client(PgError::fatal(
            "28000",
            "no PostgreSQL user name specified in startup packet",
        ))
    })?;
    tracing::Span::current().record("user", user.as_str());
    let cfg = ctx.config();
    let bparams = startup::backend_params(&params, &database);
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
    greet(stream, &greeting.params, &cancel).await?;
    debug!(user, database, "session started");
    Ok(Started {
        credential: greeting.credential,
        primary: greeting.primary,
        cancel,
        buf,
        params: bparams,
    })
}

/// AuthenticationOk, the server's ParameterStatus set, our own BackendKeyData, ReadyForQuery.
async fn greet(
    stream: &mut Stream,
    params: &[(String, String)],
    cancel: &CancelHandle,
) -> Result<(), SessionError> {
    let mut out = BytesMut::with_capacity(512);
    protocol::auth_ok(&mut out);
    for (k, v) in params {
        protocol::parameter_status(&mut out, k, v);
    }
    protocol::backend_key_data(&mut out, cancel.pid(), cancel.key());
    protocol::ready_for_query(&mut out, b'I');
    stream.write_all(&out).await?;
    Ok(())
}
