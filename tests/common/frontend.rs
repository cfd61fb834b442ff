//! A raw frontend that never panics or hangs (see [`Wire`]): every read has a deadline and
//! ends in a value, so a test can report a hang or a closed connection as a finding (the
//! differential fuzzer). For simple scripted exchanges `wire.rs` is shorter.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use super::wire::msg as frame;

/// One backend message: its type byte and its body (without the length word).
#[derive(Debug, Clone)]
pub struct BackendMsg {
    pub tag: u8,
    pub body: Vec<u8>,
}

/// Why no message came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadEnd {
    /// Nothing complete arrived before the deadline.
    Timeout,
    /// The server closed the connection (or reading failed).
    Closed,
}

/// A logged-in raw connection.
pub struct Wire {
    s: TcpStream,
    buf: Vec<u8>,
    /// BackendKeyData (process id, secret key), for a CancelRequest.
    pub key: Option<(i32, i32)>,
}

/// Appends `s` and its terminating zero byte.
pub fn put_cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

impl Wire {
    /// Connects to 127.0.0.1:`port` and logs in as a trust user, up to the first
    /// ReadyForQuery, all within `bound`.
    pub async fn login(port: u16, user: &str, db: &str, bound: Duration) -> Result<Wire, String> {
        let deadline = Instant::now() + bound;
        let s = tokio::time::timeout(bound, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| format!("connect to port {port} timed out"))?
            .map_err(|e| format!("connect to port {port}: {e}"))?;
        let _ = s.set_nodelay(true);
        let mut w = Wire {
            s,
            buf: Vec::new(),
            key: None,
        };
        w.send(&super::wire::startup(&[("user", user), ("database", db)]))
            .await?;
        loop {
            let m = w
                .next(deadline)
                .await
                .map_err(|e| format!("login on port {port}: {e:?}"))?;
            match m.tag {
                b'K' if m.body.len() >= 8 => {
                    let b = &m.body;
                    w.key = Some((
                        i32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                        i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    ));
                }
                b'E' => return Err(format!("login on port {port} refused: {}", fields(&m))),
                b'Z' => return Ok(w),
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.s
            .write_all(bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    /// The next whole message, unless `deadline` passes or the stream ends first.
    pub async fn next(&mut self, deadline: Instant) -> Result<BackendMsg, ReadEnd> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let m: Vec<u8> = self.buf.drain(..total).collect();
                    return Ok(BackendMsg {
                        tag: m[0],
                        body: m[5..].to_vec(),
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout(left, self.s.read(&mut chunk)).await {
                Err(_) => return Err(ReadEnd::Timeout),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(ReadEnd::Closed),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Whether a message (or part of one) is waiting to be read, looking for at most `wait`.
    pub async fn has_input(&mut self, wait: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(wait, self.s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(_) => true, // end of stream: let `next` report it
            Err(_) => false,
        }
    }

    /// Sends Terminate and closes.
    pub async fn terminate(mut self) {
        let _ = self.send(&frame(b'X', &[])).await;
        let _ = self.s.shutdown().await;
    }
}

/// Sends a CancelRequest for `key` to 127.0.0.1:`port` on a new connection.
pub async fn send_cancel(port: u16, key: (i32, i32)) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect for cancel: {e}"))?;
    let mut p = 16i32.to_be_bytes().to_vec();
    p.extend_from_slice(&80877102i32.to_be_bytes());
    p.extend_from_slice(&key.0.to_be_bytes());
    p.extend_from_slice(&key.1.to_be_bytes());
    s.write_all(&p).await.map_err(|e| format!("cancel: {e}"))?;
    // The server closes the connection once it has handled the request.
    let mut sink = [0u8; 16];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut sink)).await;
    Ok(())
}

/// The fields of an ErrorResponse or NoticeResponse as `code=value` pairs.
pub fn fields(m: &BackendMsg) -> String {
    error_fields(&m.body)
        .iter()
        .map(|(c, v)| format!("{}={v}", *c as char))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The (code, value) fields of an ErrorResponse or NoticeResponse body.
pub fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    body.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}
