//! The untagged first packet of a connection: StartupMessage, SSLRequest, GSSENCRequest or
//! CancelRequest.

use bytes::{BufMut, BytesMut};

use super::frame::BodyReader;
use super::violation::ProtocolError;

pub const PROTOCOL_3_0: i32 = 196608;
pub const CANCEL_CODE: i32 = 80877102;
pub const SSL_CODE: i32 = 80877103;
pub const GSSENC_CODE: i32 = 80877104;

/// PostgreSQL's own limit for a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartupPacket {
    Startup {
        /// The protocol minor version the client asked for (major is always 3). Newer
        /// minors are answered with NegotiateProtocolVersion and served as 3.0.
        minor: u16,
        /// Parameters in the order the client sent them (user, database, options, …).
        params: Vec<(String, String)>,
    },
    SslRequest,
    GssEncRequest,
    Cancel {
        pid: i32,
        key: i32,
    },
}

impl StartupPacket {
    /// Length of the packet at the start of `buf`, once its 4-byte length word is there.
    pub fn peek_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as i64;
        if len < 8 || len as usize > MAX_STARTUP_LEN {
            return Err(ProtocolError::BadStartupLength(len));
        }
        Ok(Some(len as usize))
    }

    /// Decodes a whole packet including its length word.
    pub fn decode(packet: &[u8]) -> Result<StartupPacket, ProtocolError> {
        let mut r = BodyReader::new(packet, "startup packet");
        r.i32()?;
        let code = r.i32()?;
        match code {
            SSL_CODE => Ok(StartupPacket::SslRequest),
            GSSENC_CODE => Ok(StartupPacket::GssEncRequest),
            CANCEL_CODE => {
                let pid = r.i32()?;
                let key = r.i32()?;
                Ok(StartupPacket::Cancel { pid, key })
            }
            // Any 3.x, as PostgreSQL: the minor version is negotiated down, not refused.
            code if code >> 16 == 3 => Ok(StartupPacket::Startup {
                minor: (code & 0xffff) as u16,
                params: decode_params(&mut r)?,
            }),
            other => Err(ProtocolError::UnsupportedProtocol {
                major: (other >> 16) as u16,
                minor: (other & 0xffff) as u16,
            }),
        }
    }

    /// Encodes a StartupMessage with the given parameters (the proxy's side toward a backend).
    pub fn encode_startup(params: &[(String, String)], out: &mut BytesMut) {
        let at = out.len();
        out.put_i32(0);
        out.put_i32(PROTOCOL_3_0);
        for (k, v) in params {
            out.extend_from_slice(k.as_bytes());
            out.put_u8(0);
            out.extend_from_slice(v.as_bytes());
            out.put_u8(0);
        }
        out.put_u8(0);
        let len = (out.len() - at) as i32;
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }

    pub fn encode_cancel(pid: i32, key: i32) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[0..4].copy_from_slice(&16i32.to_be_bytes());
        out[4..8].copy_from_slice(&CANCEL_CODE.to_be_bytes());
        out[8..12].copy_from_slice(&pid.to_be_bytes());
        out[12..16].copy_from_slice(&key.to_be_bytes());
        out
    }

    pub fn encode_ssl_request() -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0..4].copy_from_slice(&8i32.to_be_bytes());
        out[4..8].copy_from_slice(&SSL_CODE.to_be_bytes());
        out
    }
}

fn decode_params(r: &mut BodyReader<'_>) -> Result<Vec<(String, String)>, ProtocolError> {
    let mut params = Vec::new();
    loop {
        if r.rest().is_empty() {
            // PostgreSQL requires the terminating NUL; be as strict.
            return Err(ProtocolError::Malformed("startup packet"));
        }
        let key = r.cstr()?;
        if key.is_empty() {
            return Ok(params);
        }
        let value = r.cstr()?;
        params.push((key.to_string(), value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((8 + rest.len()) as i32).to_be_bytes());
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(rest);
        v
    }

    #[test]
    fn startup_round_trips() {
        let params = vec![
            ("user".to_string(), "alice".to_string()),
            ("database".to_string(), "app".to_string()),
        ];
        let mut out = BytesMut::new();
        StartupPacket::encode_startup(&params, &mut out);
        assert_eq!(StartupPacket::peek_len(&out).unwrap(), Some(out.len()));
        assert_eq!(
            StartupPacket::decode(&out).unwrap(),
            StartupPacket::Startup { minor: 0, params }
        );
    }

    #[test]
    fn any_3_x_minor_is_a_startup_and_other_majors_are_refused() {
        let cases: &[(i32, Option<u16>)] = &[
            (0x0003_0000, Some(0)),
            (0x0003_0001, Some(1)),
            (0x0003_0002, Some(2)),
            (0x0003_ffff, Some(0xffff)),
            (0x0004_0000, None),
            (0x0002_0000, None),
        ];
        for &(code, want) in cases {
            let got = match StartupPacket::decode(&packet(code, b"user\0a\0\0")) {
                Ok(StartupPacket::Startup { minor, .. }) => Some(minor),
                _ => None,
            };
            assert_eq!(got, want, "{code:#x}");
        }
    }

    #[test]
    fn decodes_the_special_requests() {
        assert_eq!(
            StartupPacket::decode(&StartupPacket::encode_ssl_request()).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            StartupPacket::decode(&packet(GSSENC_CODE, b"")).unwrap(),
            StartupPacket::GssEncRequest
        );
        assert_eq!(
            StartupPacket::decode(&StartupPacket::encode_cancel(7, -9)).unwrap(),
            StartupPacket::Cancel { pid: 7, key: -9 }
        );
    }

    #[test]
    fn rejects_malformed_packets() {
        let cases: Vec<Vec<u8>> = vec![
            packet(PROTOCOL_3_0, b"user\0alice"),   // unterminated value
            packet(PROTOCOL_3_0, b"user\0alice\0"), // no final NUL
            packet(0x0002_0000, b"user\0a\0\0"),    // protocol 2.0
            packet(CANCEL_CODE, b"\0\0"),           // short cancel
            packet(PROTOCOL_3_0, b"user\0\xff\xfe\0\0"), // not UTF-8
        ];
        for c in cases {
            assert!(StartupPacket::decode(&c).is_err(), "{c:?}");
        }
        for len in [0i32, 7, -1, 10001, i32::MAX] {
            assert!(
                StartupPacket::peek_len(&len.to_be_bytes()).is_err(),
                "{len}"
            );
        }
    }
}
