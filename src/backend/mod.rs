//! Backend connections: connecting and authenticating to PostgreSQL as a client, and (later)
//! the cache of idle connections keyed by user and database.

mod conn;
mod limits;
mod pool;

pub use conn::{
    send_cancel, set_param, start, BackendAddr, BackendConn, Credential, NodeAddr, Startup,
};

pub use limits::{Acquired, ConnLimits, ConnPermit};
pub use pool::{AuthMemo, CachedLogin, Idle, Pool, PoolCounters, PoolKey, PoolLimits};

use crate::protocol::{AuthRequest, PgError};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("failed to create a backend {node} connection to {target}: {reason}")]
    Connect {
        node: usize,
        target: String,
        reason: String,
    },
    #[error("backend {node} closed the connection")]
    Closed { node: usize },
    #[error("i/o error talking to a backend: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Server(PgError),
    #[error("protocol error from a backend: {0}")]
    Protocol(String),
    #[error("failed to authenticate with backend {node}: {reason}")]
    Auth { node: usize, reason: String },
}

impl BackendError {
    pub(crate) fn protocol(msg: &str) -> Self {
        BackendError::Protocol(msg.to_string())
    }

    pub(crate) fn protocol_msg(msg: String) -> Self {
        BackendError::Protocol(msg)
    }

    pub(crate) fn unsupported(node: usize, what: &str) -> Self {
        BackendError::Auth {
            node,
            reason: format!("unsupported authentication request: {what}"),
        }
    }

    /// The classic Kubernetes misconfiguration gets a message that says what to do.
    pub(crate) fn no_credential(node: usize, req: &AuthRequest, cred: &Credential) -> Self {
        let reason = match (req, cred) {
            (AuthRequest::Sasl { .. }, Credential::Md5Hash(_)) => {
                "the backend asks for scram-sha-256 but pool_passwd holds only an md5 hash for this user; \
                 store the password as AES (pg_enc -m) or TEXT in pool_passwd"
                    .to_string()
            }
            (AuthRequest::Cleartext, Credential::Md5Hash(_)) => {
                "the backend asks for a clear-text password but pool_passwd holds only an md5 hash; \
                 store the password as AES (pg_enc -m) or TEXT in pool_passwd"
                    .to_string()
            }
            (AuthRequest::Other(code), _) => format!("unsupported authentication request {code}"),
            _ => "valid password not found in pool_passwd".to_string(),
        };
        BackendError::Auth { node, reason }
    }

    /// What the client sees. A server's own error is passed on unchanged.
    pub fn to_pg_error(&self) -> PgError {
        match self {
            BackendError::Server(e) => e.clone(),
            BackendError::Auth { .. } => PgError::fatal("28000", self.to_string()),
            BackendError::Connect { .. } => PgError::fatal("08006", self.to_string()),
            _ => PgError::fatal("08006", self.to_string()),
        }
    }
}
