//! Frontend authentication. With `enable_pool_hba = on` the proxy authenticates the client
//! itself (pool_hba.conf picks the method, pool_passwd holds the secret) before any backend
//! is touched, then logs in to backends with what it holds; with it off, the client mirrors
//! whatever the primary asks for, as Pgpool-II does (spec 4.4). Opening, caching and
//! re-proving backend connections is `checkout`'s job.

mod exchange;
mod hba;
mod mirror;

use std::fmt;
use std::net::SocketAddr;

use super::SessionError;
use crate::backend::Credential;
use crate::server::Context;

pub use exchange::ClientAuth;

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

/// With `enable_pool_hba = on`: checks pool_hba.conf and runs its method with the client.
/// Returns the credential for the backends (the client is then authenticated and cached
/// connections need no second proof), or `None` when hba is off and the client is to
/// mirror the backend instead.
pub async fn pool_hba(
    a: &mut ClientAuth<'_>,
    ctx: &Context,
    client: &ClientInfo,
    database: &str,
) -> Result<Option<Credential>, SessionError> {
    if !ctx.config().enable_pool_hba {
        return Ok(None);
    }
    let q = hba::HbaQuery {
        client,
        ssl: a.stream.is_tls(),
        user: a.user,
        database,
    };
    let method = hba::choose_method(ctx.hba().as_deref(), &q)?;
    a.hba_method(method).await.map(Some)
}
