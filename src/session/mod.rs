//! One client session: startup, authentication, then the relay loop (read a client request,
//! decide where it goes, forward it, stream the answer back) until the client leaves.

mod auth;
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

use crate::backend::{self, BackendConn, BackendError, Credential, NodeAddr, Startup};
use crate::protocol::{self, Frame, FrameDecoder, PgError, ProtocolError};
use crate::server::{CancelHandle, Context};
use crate::stream::Stream;

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
pub async fn run(ctx: Arc<Context>, mut stream: Stream, peer: String) {
    let span = tracing::info_span!("session", client = %peer, user = tracing::field::Empty);
    async move {
        let result = serve(&ctx, &mut stream).await;
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

async fn serve(ctx: &Arc<Context>, stream: &mut Stream) -> Result<(), SessionError> {
    let timeout = Duration::from_secs(ctx.config().authentication_timeout.max(1));
    let started = tokio::time::timeout(timeout, start_session(ctx, stream))
        .await
        .map_err(|_| SessionError::AuthTimeout)??;
    let Some(started) = started else {
        return Ok(());
    };
    let router = route::Router::new(ctx, started.params, started.credential);
    let mut s = relay::Relay::new(
        ctx.clone(),
        slot::Slot::new(started.primary),
        started.cancel,
        started.buf,
        router,
    );
    let result = s.run(stream).await;
    s.finish().await;
    result
}

/// An authenticated session, ready for the relay.
struct Started {
    primary: BackendConn,
    cancel: CancelHandle,
    /// Client bytes already read past the password message.
    buf: BytesMut,
    /// Startup parameters for further backend connections.
    params: Vec<(String, String)>,
    /// What authenticated the primary; reused for the other backends.
    credential: Credential,
}

/// Startup packet, authentication, backend connection and the greeting to the client.
async fn start_session(
    ctx: &Arc<Context>,
    stream: &mut Stream,
) -> Result<Option<Started>, SessionError> {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let params = match startup::read_first_packet(stream, &mut buf, ctx.tls.acceptor()).await? {
        FirstPacket::Cancel { pid, key } => {
            ctx.cancel.cancel(pid, key).await;
            return Ok(None);
        }
        FirstPacket::Startup(p) => p,
    };
    let (user, database) = startup::user_and_database(&params).ok_or_else(|| {
        SessionError::Client(PgError::fatal(
            "28000",
            "no PostgreSQL user name specified in startup packet",
        ))
    })?;
    tracing::Span::current().record("user", user.as_str());
    let cfg = ctx.config();
    let node = cfg
        .backends
        .first()
        .ok_or_else(|| SessionError::Client(PgError::fatal("08006", "no backend is configured")))?;
    let addr = NodeAddr {
        node: node.id,
        host: node.hostname.clone(),
        port: node.port,
        tls: ctx.tls.backend(),
    };
    let bparams = startup::backend_params(&params, &database);
    let connect_timeout = Duration::from_millis(cfg.connect_timeout.max(1));
    let mut credential = Credential::None;
    let conn = match backend::start(&addr, &bparams, connect_timeout, cfg.max_message_size).await? {
        Startup::Ready(c) => c,
        Startup::NeedsAuth(pending) => {
            let mut a = auth::ClientAuth {
                stream,
                buf: &mut buf,
                user: &user,
                stored: ctx.passwd().get(&user).cloned(),
                allow_clear_text: cfg.allow_clear_text_frontend_auth,
            };
            credential = a.mirror(&pending).await?;
            pending.complete(&credential).await.map_err(|e| match e {
                BackendError::Server(pg) if pg.code == "28P01" => {
                    SessionError::Client(PgError::fatal(
                        "28P01",
                        format!("password authentication failed for user \"{user}\""),
                    ))
                }
                other => other.into(),
            })?
        }
    };
    let cancel = ctx.cancel.register();
    cancel.add_backend(&conn);
    greet(stream, &conn, &cancel).await?;
    debug!(user, database, backend_pid = conn.pid, "session started");
    Ok(Some(Started {
        primary: conn,
        cancel,
        buf,
        params: bparams,
        credential,
    }))
}

/// AuthenticationOk, the server's ParameterStatus set, our own BackendKeyData, ReadyForQuery.
async fn greet(
    stream: &mut Stream,
    conn: &BackendConn,
    cancel: &CancelHandle,
) -> Result<(), SessionError> {
    let mut out = BytesMut::with_capacity(512);
    protocol::auth_ok(&mut out);
    for (k, v) in &conn.params {
        protocol::parameter_status(&mut out, k, v);
    }
    protocol::backend_key_data(&mut out, cancel.pid(), cancel.key());
    protocol::ready_for_query(&mut out, conn.txn_status);
    stream.write_all(&out).await?;
    Ok(())
}
