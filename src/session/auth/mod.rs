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
use crate::context::Context;

pub use exchange::ClientAuth;

/// What the client proved while authenticating: decides whether it may use a backend
/// connection someone else's login opened (see `checkout::may_reuse`).
#[derive(Clone, Debug)]
pub enum Proof {
    /// pool_hba.conf admitted the client by a method that needs no secret (`trust`, `cert`).
    Hba,
    /// The client proved the secret pool_passwd holds (md5, SCRAM, or a clear-text password
    /// checked against the entry).
    Entry,
    /// A clear-text password nothing could check (no pool_passwd entry): the backend is the
    /// judge, so it proves only the connection it opens itself.
    Unchecked(String),
    /// The backend asked for nothing (it trusts the proxy for this user).
    BackendTrust,
    /// Nothing: pool_passwd holds a secret that cannot run the backend's method (an md5
    /// hash for SCRAM). The proxy answers the backend with it and the backend decides.
    Nothing,
}

/// An authenticated client: what the proxy answers backends with, and what the client proved.
#[derive(Clone, Debug)]
pub struct Verified {
    pub credential: Credential,
    pub proof: Proof,
}

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
/// Returns the credential for the backends with what the client proved, or `None` when hba
/// is off and the client is to mirror the backend instead.
pub async fn pool_hba(
    a: &mut ClientAuth<'_>,
    ctx: &Context,
    client: &ClientInfo,
    database: &str,
) -> Result<Option<Verified>, SessionError> {
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
