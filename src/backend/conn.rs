//! One connection from the proxy to a PostgreSQL server: connect (resolving the Service
//! name anew every time, never caching an IP), start up, authenticate as a client, and keep
//! what the server said at start (ParameterStatus, BackendKeyData) for replay to clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::BackendError;
use crate::auth::md5::md5_salted;
use crate::protocol::{
    self, btag, decode_auth, decode_backend_key, decode_parameter_status, decode_ready,
    AuthRequest, Frame, FrameDecoder, PgError, StartupPacket,
};
use crate::stream::Stream;
use crate::tls::{BackendMode, BackendTls};

/// Where a backend listens; kept so a CancelRequest can be sent to the same server.
#[derive(Clone, Debug)]
pub enum BackendAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// How to reach a node, from `backend_hostnameN` / `backend_portN`.
#[derive(Clone, Debug)]
pub struct NodeAddr {
    pub node: usize,
    pub host: String,
    pub port: u16,
    /// Whether to ask this node for TLS (`backend_ssl`), and how to verify it.
    pub tls: BackendTls,
}

impl NodeAddr {
    /// `''` means the Unix socket in /tmp, a leading `/` a socket directory (as Pgpool-II).
    fn unix_path(&self) -> Option<PathBuf> {
        if self.host.is_empty() {
            Some(PathBuf::from(format!("/tmp/.s.PGSQL.{}", self.port)))
        } else if self.host.starts_with('/') {
            Some(PathBuf::from(&self.host).join(format!(".s.PGSQL.{}", self.port)))
        } else {
            None
        }
    }
}

/// What the proxy can answer a backend's password request with.
#[derive(Clone, Debug)]
pub enum Credential {
    None,
    /// A plain password (cleartext, md5 and SCRAM all work from it).
    Password(String),
    /// `md5` + hex(md5(password + user)): enough for md5, not for SCRAM or cleartext.
    Md5Hash(String),
}

/// An authenticated backend connection, idle and ready for queries.
pub struct BackendConn {
    pub node: usize,
    pub stream: Stream,
    /// Bytes read from the server and not yet processed.
    pub rbuf: BytesMut,
    pub pid: i32,
    pub key: i32,
    /// ParameterStatus values the server sent at start, kept up to date by the session.
    /// Shared: every client greeted from this cached connection gets the same list, and a
    /// copy is made only when the server reports a change.
    pub params: ServerParams,
    /// Last ReadyForQuery status: `I`, `T` or `E`.
    pub txn_status: u8,
    pub addr: BackendAddr,
    pub created_at: Instant,
    pub user: String,
    pub database: String,
    /// Client sessions this connection has served (for `child_max_connections`).
    pub sessions_served: u32,
}

/// A connection whose server asked for a password the proxy has not supplied yet.
pub struct PendingAuth {
    conn: BackendConn,
    pub request: AuthRequest,
    max_len: u64,
}

pub enum Startup {
    Ready(BackendConn),
    NeedsAuth(PendingAuth),
}

/// Opens a connection and sends the startup packet; returns once the server either accepted
/// (trust) or asked for a password.
pub async fn start(
    addr: &NodeAddr,
    params: &[(String, String)],
    connect_timeout: Duration,
    max_len: u64,
) -> Result<Startup, BackendError> {
    let (stream, baddr) = tokio::time::timeout(connect_timeout, connect(addr))
        .await
        .map_err(|_| BackendError::Connect {
            node: addr.node,
            target: format!("{}:{}", addr.host, addr.port),
            reason: format!("timeout after {} ms", connect_timeout.as_millis()),
        })??;
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut conn = BackendConn {
        node: addr.node,
        stream,
        rbuf: BytesMut::with_capacity(16 * 1024),
        pid: 0,
        key: 0,
        params: ServerParams::default(),
        txn_status: b'I',
        addr: baddr,
        created_at: Instant::now(),
        user: get("user"),
        database: get("database"),
        sessions_served: 0,
    };
    let mut out = BytesMut::new();
    StartupPacket::encode_startup(params, &mut out);
    conn.stream.write_all(&out).await?;
    let request = conn.read_auth_request(max_len).await?;
    if request == AuthRequest::Ok {
        conn.finish_startup(max_len).await?;
        return Ok(Startup::Ready(conn));
    }
    Ok(Startup::NeedsAuth(PendingAuth {
        conn,
        request,
        max_len,
    }))
}

async fn connect(addr: &NodeAddr) -> Result<(Stream, BackendAddr), BackendError> {
    let fail = |reason: String| BackendError::Connect {
        node: addr.node,
        target: format!("{}:{}", addr.host, addr.port),
        reason,
    };
    if let Some(path) = addr.unix_path() {
        let s = UnixStream::connect(&path)
            .await
            .map_err(|e| fail(e.to_string()))?;
        return Ok((Stream::Unix(s), BackendAddr::Unix(path)));
    }
    let addrs = tokio::net::lookup_host((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| fail(format!("could not resolve: {e}")))?;
    let mut last = String::from("no address");
    for sa in addrs {
        match TcpStream::connect(sa).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                let stream = negotiate_tls(s, addr).await.map_err(fail)?;
                return Ok((stream, BackendAddr::Tcp(sa)));
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(fail(last))
}

/// SSLRequest when `backend_ssl` asks for it: `S` → handshake, `N` → plain unless required.
/// Exactly one byte is read before the handshake, so nothing a server (or someone in between)
/// sends in plain text after `S` can be taken as encrypted data (CVE-2021-23222 class).
async fn negotiate_tls(mut tcp: TcpStream, addr: &NodeAddr) -> Result<Stream, String> {
    if addr.tls.mode == BackendMode::Disable {
        return Ok(Stream::Tcp(tcp));
    }
    let io = |e: std::io::Error| format!("SSL negotiation: {e}");
    tcp.write_all(&StartupPacket::encode_ssl_request())
        .await
        .map_err(io)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(io)?;
    match answer[0] {
        b'S' => crate::tls::connect(tcp, &addr.tls, &addr.host)
            .await
            .map_err(|e| e.to_string()),
        b'N' if addr.tls.mode == BackendMode::Prefer => Ok(Stream::Tcp(tcp)),
        b'N' => Err("the server does not accept SSL connections and backend_ssl = require".into()),
        other => Err(format!(
            "unexpected answer {:?} to SSLRequest",
            char::from(other)
        )),
    }
}

impl PendingAuth {
    /// Answers the server's password request(s) with `cred` and completes the startup.
    pub async fn complete(mut self, cred: &Credential) -> Result<BackendConn, BackendError> {
        let node = self.conn.node;
        let mut request = self.request.clone();
        let mut scram: Option<ScramSha256> = None;
        loop {
            let mut out = BytesMut::new();
            match (&request, cred) {
                (AuthRequest::Ok, _) => break,
                (AuthRequest::Cleartext, Credential::Password(pw)) => {
                    protocol::password(&mut out, pw)
                }
                (AuthRequest::Md5 { salt }, Credential::Password(pw)) => {
                    let hash = crate::auth::md5::pg_md5_password(&self.conn.user, pw);
                    protocol::password(&mut out, &md5_salted(&hash, *salt));
                }
                (AuthRequest::Md5 { salt }, Credential::Md5Hash(hash)) => {
                    protocol::password(&mut out, &md5_salted(hash, *salt))
                }
                (AuthRequest::Sasl { mechanisms }, Credential::Password(pw)) => {
                    if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                        return Err(BackendError::unsupported(
                            node,
                            "SASL without SCRAM-SHA-256",
                        ));
                    }
                    let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                    protocol::sasl_initial_response(&mut out, "SCRAM-SHA-256", s.message());
                    scram = Some(s);
                }
                (AuthRequest::SaslContinue { data }, _) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| BackendError::protocol("unexpected SASLContinue"))?;
                    s.update(data)
                        .map_err(|e| BackendError::protocol(&e.to_string()))?;
                    protocol::sasl_response(&mut out, s.message());
                }
                (AuthRequest::SaslFinal { data }, _) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| BackendError::protocol("unexpected SASLFinal"))?;
                    s.finish(data)
                        .map_err(|e| BackendError::protocol(&e.to_string()))?;
                }
                (req, cred) => return Err(BackendError::no_credential(node, req, cred)),
            }
            if !out.is_empty() {
                self.conn.stream.write_all(&out).await?;
            }
            request = self.conn.read_auth_request(self.max_len).await?;
        }
        self.conn.finish_startup(self.max_len).await?;
        Ok(self.conn)
    }
}

impl BackendConn {
    /// Reads one whole message (startup phase only; the relay streams instead).
    pub async fn read_frame(&mut self, max_len: u64) -> Result<Frame, BackendError> {
        let dec = FrameDecoder::new(max_len);
        loop {
            if let Some(f) = dec
                .decode(&mut self.rbuf)
                .map_err(|e| BackendError::protocol(&e.to_string()))?
            {
                return Ok(f);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(BackendError::Closed { node: self.node });
            }
        }
    }

    async fn read_auth_request(&mut self, max_len: u64) -> Result<AuthRequest, BackendError> {
        loop {
            let f = self.read_frame(max_len).await?;
            match f.tag {
                btag::AUTHENTICATION => {
                    return decode_auth(&f.body).map_err(|e| BackendError::protocol(&e.to_string()))
                }
                btag::ERROR_RESPONSE => return Err(BackendError::Server(PgError::decode(&f.body))),
                btag::NEGOTIATE_PROTOCOL | btag::NOTICE_RESPONSE => continue,
                t => {
                    return Err(BackendError::protocol(&format!(
                        "unexpected message \"{}\" during authentication",
                        t as char
                    )))
                }
            }
        }
    }

    /// After AuthenticationOk: ParameterStatus…, BackendKeyData, ReadyForQuery.
    async fn finish_startup(&mut self, max_len: u64) -> Result<(), BackendError> {
        loop {
            let f = self.read_frame(max_len).await?;
            let bad = |e: crate::protocol::ProtocolError| BackendError::protocol(&e.to_string());
            match f.tag {
                btag::PARAMETER_STATUS => {
                    let (k, v) = decode_parameter_status(&f.body).map_err(bad)?;
                    self.set_param(k, v);
                }
                btag::BACKEND_KEY_DATA => {
                    (self.pid, self.key) = decode_backend_key(&f.body).map_err(bad)?;
                }
                btag::READY_FOR_QUERY => {
                    self.txn_status = decode_ready(&f.body).map_err(bad)?;
                    return Ok(());
                }
                btag::ERROR_RESPONSE => return Err(BackendError::Server(PgError::decode(&f.body))),
                _ => continue,
            }
        }
    }

    pub fn set_param(&mut self, name: &str, value: &str) {
        set_param(&mut self.params, name, value);
    }

    /// Says goodbye politely so the server logs no "unexpected EOF".
    pub async fn terminate(mut self) {
        let mut out = BytesMut::new();
        protocol::terminate(&mut out);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.write_all(&out)).await;
    }
}

/// A server's ParameterStatus values, shared copy-on-write.
pub type ServerParams = Arc<Vec<(String, String)>>;

/// Records a ParameterStatus value (replayed to the next client of a cached connection).
/// An unchanged value copies nothing.
pub fn set_param(params: &mut ServerParams, name: &str, value: &str) {
    match params.iter().position(|(k, _)| k == name) {
        Some(i) if params[i].1 == value => {}
        Some(i) => Arc::make_mut(params)[i].1 = value.to_string(),
        None => Arc::make_mut(params).push((name.to_string(), value.to_string())),
    }
}

/// Sends a CancelRequest for (`pid`, `key`) to the server at `addr`.
pub async fn send_cancel(addr: &BackendAddr, pid: i32, key: i32) -> std::io::Result<()> {
    let packet = StartupPacket::encode_cancel(pid, key);
    let mut s = match addr {
        BackendAddr::Tcp(sa) => Stream::tcp(TcpStream::connect(sa).await?),
        BackendAddr::Unix(p) => Stream::Unix(UnixStream::connect(p).await?),
    };
    s.write_all(&packet).await?;
    // The server closes the connection once it has read the packet.
    let mut sink = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut sink)).await;
    Ok(())
}
