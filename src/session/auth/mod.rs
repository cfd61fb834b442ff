//! Frontend authentication and the first backend connection. With `enable_pool_hba = on`
//! the proxy authenticates the client itself (pool_hba.conf picks the method, pool_passwd
//! holds the secret) and then logs in to the backend with what it holds; with it off, it
//! mirrors whatever the primary asks for, as Pgpool-II does (spec 4.4).

mod exchange;
mod hba;
mod mirror;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::SessionError;
use crate::backend::{self, BackendConn, BackendError, Credential, NodeAddr, Startup};
use crate::config::Config;
use crate::server::Context;
use crate::stream::Stream;
use exchange::{password_failed, ClientAuth};

/// Who is connecting, as pool_hba.conf and the logs need it.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// The peer of a TCP connection; `None` for the Unix socket.
    pub addr: Option<SocketAddr>,
}

impl ClientInfo {
    pub fn tcp(addr: SocketAddr) -> Self {
        ClientInfo { addr: Some(addr) }
    }

    pub fn local() -> Self {
        ClientInfo { addr: None }
    }

    /// The host as PostgreSQL names it in messages: the IP address, or `[local]`.
    pub fn host(&self) -> String {
        match self.addr {
            Some(a) => a.ip().to_canonical().to_string(),
            None => "[local]".into(),
        }
    }
}

impl fmt::Display for ClientInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("[local]"),
        }
    }
}

/// One login: who, to which database, through which primary.
pub struct Login<'a> {
    pub ctx: &'a Arc<Context>,
    pub client: &'a ClientInfo,
    pub user: &'a str,
    pub database: &'a str,
    pub primary: &'a NodeAddr,
    /// Startup parameters for the backend.
    pub params: &'a [(String, String)],
}

/// Authenticates the client and opens the primary connection. Returns the connection and
/// the credential that further backends are answered with.
pub async fn login(
    stream: &mut Stream,
    buf: &mut BytesMut,
    l: &Login<'_>,
) -> Result<(BackendConn, Credential), SessionError> {
    let cfg = l.ctx.config();
    let stored = l.ctx.passwd().get(l.user).cloned();
    let ssl = stream.is_tls();
    let mut a = ClientAuth {
        stream,
        buf,
        user: l.user,
    };
    if cfg.enable_pool_hba {
        let q = hba::HbaQuery {
            client: l.client,
            ssl,
            user: l.user,
            database: l.database,
        };
        let method = hba::choose_method(l.ctx.hba().as_deref(), &q)?;
        let credential = hba::authenticate(&mut a, method, stored, &l.ctx.scram).await?;
        let conn = match start_primary(l, &cfg).await? {
            Startup::Ready(c) => c,
            Startup::NeedsAuth(p) => finish_backend(p, &credential, l.user).await?,
        };
        return Ok((conn, credential));
    }
    match start_primary(l, &cfg).await? {
        Startup::Ready(c) => Ok((c, Credential::None)),
        Startup::NeedsAuth(pending) => {
            let m = mirror::Mirror {
                stored,
                allow_clear_text: cfg.allow_clear_text_frontend_auth,
                scram: &l.ctx.scram,
            };
            let credential = m.run(&mut a, &pending.request).await?;
            let conn = finish_backend(pending, &credential, l.user).await?;
            Ok((conn, credential))
        }
    }
}

async fn start_primary(l: &Login<'_>, cfg: &Config) -> Result<Startup, SessionError> {
    let connect_timeout = Duration::from_millis(cfg.connect_timeout.max(1));
    Ok(backend::start(l.primary, l.params, connect_timeout, cfg.max_message_size).await?)
}

/// Answers the backend; its own "wrong password" reaches the client as PostgreSQL's 28P01.
async fn finish_backend(
    pending: backend::PendingAuth,
    credential: &Credential,
    user: &str,
) -> Result<BackendConn, SessionError> {
    pending.complete(credential).await.map_err(|e| match e {
        BackendError::Server(pg) if pg.code == "28P01" => password_failed(user),
        other => other.into(),
    })
}
