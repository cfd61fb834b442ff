//! PCP framing (spec 8.1): a type byte, a big-endian length that counts itself but not the
//! type, then the payload; strings are NUL-terminated. Errors use the SQL side's field
//! layout (spec 8.3).

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Pgpool-II refuses client packets of this length or more.
const MAX_LEN: usize = 260;

#[derive(Debug, thiserror::Error)]
pub enum PcpError {
    #[error("client closed the connection")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("incorrect packet length ({0})")]
    Length(i32),
}

/// One client packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Packet {
    /// The NUL-terminated strings of the body (lossy UTF-8).
    pub fn strings(&self) -> Vec<String> {
        let body = self.body.strip_suffix(&[0]).unwrap_or(&self.body);
        if body.is_empty() {
            return Vec::new();
        }
        body.split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }
}

pub async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> Result<Packet, PcpError> {
    let mut head = [0u8; 5];
    if let Err(e) = r.read_exact(&mut head).await {
        return Err(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => PcpError::Closed,
            _ => e.into(),
        });
    }
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len < 4 || len as usize >= MAX_LEN {
        return Err(PcpError::Length(len));
    }
    let mut body = vec![0u8; len as usize - 4];
    r.read_exact(&mut body).await?;
    Ok(Packet { tag: head[0], body })
}

/// A packet whose payload is `fields`, each NUL-terminated.
pub fn strings<S: AsRef<str>>(out: &mut BytesMut, tag: u8, fields: &[S]) {
    let len: usize = 4 + fields.iter().map(|f| f.as_ref().len() + 1).sum::<usize>();
    out.put_u8(tag);
    out.put_i32(len as i32);
    for f in fields {
        out.put_slice(f.as_ref().as_bytes());
        out.put_u8(0);
    }
}

/// A raw packet.
pub fn raw(out: &mut BytesMut, tag: u8, payload: &[u8]) {
    out.put_u8(tag);
    out.put_i32(payload.len() as i32 + 4);
    out.put_slice(payload);
}

/// An error packet; `fatal` ones are followed by closing the connection.
pub fn error(out: &mut BytesMut, fatal: bool, message: &str, detail: &str) {
    let severity = if fatal { "FATAL" } else { "ERROR" };
    let mut payload = BytesMut::new();
    for (k, v) in [
        (b'S', severity),
        (b'C', "XX000"),
        (b'M', message),
        (b'D', detail),
        (b'F', "pcp_worker.c"),
        (b'L', "0"),
    ] {
        if v.is_empty() {
            continue;
        }
        payload.put_u8(k);
        payload.put_slice(v.as_bytes());
        payload.put_u8(0);
    }
    payload.put_u8(0);
    raw(out, b'E', &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn packets_round_trip_and_bad_lengths_fail() {
        let mut out = BytesMut::new();
        strings(&mut out, b'I', &["-1"]);
        let p = read_packet(&mut &out[..]).await.unwrap();
        assert_eq!(p.tag, b'I');
        assert_eq!(p.strings(), vec!["-1".to_string()]);
        let huge = [b'R', 0, 0, 1, 0];
        assert!(matches!(
            read_packet(&mut &huge[..]).await,
            Err(PcpError::Length(256 | 0..=3)) | Err(PcpError::Io(_)) | Err(PcpError::Closed)
        ));
        let huge = [b'R', 0, 0, 4, 0];
        assert!(matches!(
            read_packet(&mut &huge[..]).await,
            Err(PcpError::Length(1024))
        ));
    }
}
