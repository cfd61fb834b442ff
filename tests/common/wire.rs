//! A raw protocol-v3 client for tests that must control every message (Flush vs Sync, what
//! follows an error): build frontend messages, read whole backend messages.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One frontend message: tag, length, body.
pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Parse `sql` as statement `name` (no parameter types).
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&0i16.to_be_bytes());
    msg(b'P', &b)
}

/// Bind statement `stmt` to portal `portal`, no parameters, text results.
pub fn bind(portal: &str, stmt: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    cstr(&mut b, stmt);
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    msg(b'B', &b)
}

/// Describe a statement (`b'S'`) or portal (`b'P'`).
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    msg(b'D', &b)
}

/// Close a statement (`b'S'`) or portal (`b'P'`).
pub fn close(kind: u8, name: &str) -> Vec<u8> {
    let mut b = vec![kind];
    cstr(&mut b, name);
    msg(b'C', &b)
}

/// Execute `portal`, all rows.
pub fn execute(portal: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, portal);
    b.extend_from_slice(&0i32.to_be_bytes());
    msg(b'E', &b)
}

pub fn sync() -> Vec<u8> {
    msg(b'S', b"")
}

pub fn flush() -> Vec<u8> {
    msg(b'H', b"")
}

/// A simple Query.
pub fn query(sql: &str) -> Vec<u8> {
    let mut b = Vec::new();
    cstr(&mut b, sql);
    msg(b'Q', &b)
}

/// The messages of a request joined into one write.
pub fn batch(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A backend message: tag and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// SQLSTATE of an ErrorResponse.
    pub fn sqlstate(&self) -> Option<String> {
        (self.tag == b'E')
            .then(|| field(&self.body, b'C'))
            .flatten()
    }

    /// First column of a DataRow, as text.
    pub fn first_value(&self) -> Option<String> {
        if self.tag != b'D' || self.body.len() < 6 {
            return None;
        }
        let len = i32::from_be_bytes(self.body[2..6].try_into().ok()?);
        let v = self.body.get(6..6 + usize::try_from(len).ok()?)?;
        Some(String::from_utf8_lossy(v).into_owned())
    }
}

fn field(body: &[u8], code: u8) -> Option<String> {
    let mut rest = body;
    while let Some((&c, tail)) = rest.split_first() {
        let end = tail.iter().position(|&b| b == 0)?;
        if c == code {
            return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
        }
        rest = &tail[end + 1..];
    }
    None
}

/// Sanity bound for any answer (not a timing assertion).
const BOUND: Duration = Duration::from_secs(60);

/// A StartupMessage of protocol `major.minor` with `params`.
pub fn startup_version(major: u16, minor: u16, params: &[(&str, &str)]) -> Vec<u8> {
    let code = (u32::from(major) << 16) | u32::from(minor);
    let mut body = code.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

/// A protocol 3.0 StartupMessage with `params`.
pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    startup_version(3, 0, params)
}

/// A connection that speaks the protocol by hand from its first byte, so a test can send
/// any startup packet or misbehave (`s` is the socket itself).
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("connect to the proxy: {e}"));
        Raw { s, buf: Vec::new() }
    }

    /// Logs in as a trust user and reads up to the first ReadyForQuery.
    pub async fn login(port: u16, params: &[(&str, &str)]) -> Raw {
        let mut c = Raw::connect(port).await;
        c.send(&startup(params)).await;
        for m in c.until_ready().await {
            assert!(m.tag != b'E', "login failed: {:?}", m.sqlstate());
        }
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write to the proxy");
    }

    /// The next whole message, or `None` at end of stream.
    pub async fn next(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let total = len as usize + 1;
                if self.buf.len() >= total {
                    let m: Vec<u8> = self.buf.drain(..total).collect();
                    return Some(Msg {
                        tag: m[0],
                        body: m[5..].to_vec(),
                    });
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = tokio::time::timeout(BOUND, self.s.read(&mut chunk))
                .await
                .expect("the proxy answered within the sanity bound")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Messages up to and including ReadyForQuery; panics if the stream ends first.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self.next().await;
            let m = m.unwrap_or_else(|| panic!("connection closed; got {out:?}"));
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Messages up to ReadyForQuery, or up to the end of the stream.
    pub async fn until_ready_or_closed(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.next().await {
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// Everything until the proxy closes the connection.
    pub async fn until_closed(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.next().await {
            out.push(m);
        }
        out
    }
}

/// A logged-in connection (trust auth) speaking raw protocol.
pub struct Wire {
    raw: Raw,
}

impl Wire {
    /// Connects as `user` to `db` and waits for the first ReadyForQuery.
    pub async fn connect(port: u16, user: &str, db: &str) -> Wire {
        let mut w = Wire {
            raw: Raw::connect(port).await,
        };
        w.send(&startup(&[("user", user), ("database", db)])).await;
        let got = w.read_until_ready().await;
        assert!(
            got.iter().any(|m| m.tag == b'R'),
            "no authentication answer: {got:?}"
        );
        w
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.raw.send(bytes).await;
    }

    /// Reads one whole message (bounded by a timeout); panics if the connection closed.
    pub async fn read_msg(&mut self) -> Msg {
        self.raw.next().await.expect("connection closed")
    }

    /// Messages up to and including the first one with `tag`.
    pub async fn read_until(&mut self, tag: u8) -> Vec<Msg> {
        let mut got = Vec::new();
        loop {
            let m = self.read_msg().await;
            let done = m.tag == tag;
            got.push(m);
            if done {
                return got;
            }
        }
    }

    /// Messages up to and including the next ReadyForQuery.
    pub async fn read_until_ready(&mut self) -> Vec<Msg> {
        self.read_until(b'Z').await
    }

    /// Nothing more arrives within `wait` (e.g. no second ReadyForQuery).
    pub async fn quiet_for(&mut self, wait: Duration) -> bool {
        if !self.raw.buf.is_empty() {
            return false;
        }
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(wait, self.raw.s.read(&mut chunk)).await {
            Err(_) => true,
            Ok(Ok(n)) => {
                self.raw.buf.extend_from_slice(&chunk[..n]);
                false
            }
            Ok(Err(_)) => false,
        }
    }

    /// Sends Terminate and closes.
    pub async fn terminate(mut self) {
        let _ = self.raw.s.write_all(&msg(b'X', b"")).await;
        let _ = self.raw.s.shutdown().await;
    }
}

/// Tags of `msgs`, as a string (`"12CZ"`) for assertions.
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}
