//! Messages a client sends (decoded by the proxy) and the ones the proxy itself sends to a
//! backend as a client (encoded).

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::Frame;
use super::frame::{put_message, BodyReader};
use super::violation::ProtocolError;

/// Frontend message tags.
pub mod tag {
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const CLOSE: u8 = b'C';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const TERMINATE: u8 = b'X';
    /// PasswordMessage, SASLInitialResponse and SASLResponse share this tag.
    pub const PASSWORD: u8 = b'p';
}

/// What a Describe or Close names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

impl Target {
    fn decode(b: u8, what: &'static str) -> Result<Target, ProtocolError> {
        match b {
            b'S' => Ok(Target::Statement),
            b'P' => Ok(Target::Portal),
            _ => Err(ProtocolError::Malformed(what)),
        }
    }

    fn byte(self) -> u8 {
        match self {
            Target::Statement => b'S',
            Target::Portal => b'P',
        }
    }
}

/// Text of a simple Query.
pub fn decode_query(body: &[u8]) -> Result<&str, ProtocolError> {
    BodyReader::new(body, "Query").cstr()
}

pub struct Parse<'a> {
    pub name: &'a str,
    pub query: &'a str,
}

pub fn decode_parse(body: &[u8]) -> Result<Parse<'_>, ProtocolError> {
    let mut r = BodyReader::new(body, "Parse");
    let name = r.cstr()?;
    let query = r.cstr()?;
    let n = r.i16()?;
    if n < 0 || r.rest().len() != n as usize * 4 {
        return Err(ProtocolError::Malformed("Parse"));
    }
    Ok(Parse { name, query })
}

pub struct Bind<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
}

/// Only the names: the parameter values are relayed untouched.
pub fn decode_bind(body: &[u8]) -> Result<Bind<'_>, ProtocolError> {
    let mut r = BodyReader::new(body, "Bind");
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    Ok(Bind { portal, statement })
}

/// Describe and Close have the same body: a target byte and a name.
pub fn decode_target<'a>(
    body: &'a [u8],
    what: &'static str,
) -> Result<(Target, &'a str), ProtocolError> {
    let mut r = BodyReader::new(body, what);
    let t = Target::decode(r.u8()?, what)?;
    let name = r.cstr()?;
    Ok((t, name))
}

pub fn decode_execute(body: &[u8]) -> Result<(&str, i32), ProtocolError> {
    let mut r = BodyReader::new(body, "Execute");
    let portal = r.cstr()?;
    let max_rows = r.i32()?;
    Ok((portal, max_rows))
}

/// A PasswordMessage's password (cleartext or md5 response).
/// PasswordMessage: one string and nothing after it (PostgreSQL refuses anything else with
/// "invalid password packet size").
pub fn decode_password(body: &[u8]) -> Result<&str, ProtocolError> {
    let mut r = BodyReader::new(body, "PasswordMessage");
    let pw = r.cstr()?;
    if !r.rest().is_empty() {
        return Err(ProtocolError::Invalid("invalid password packet size"));
    }
    Ok(pw)
}

/// SASLInitialResponse: mechanism name and the client-first-message.
pub fn decode_sasl_initial(body: &[u8]) -> Result<(&str, &[u8]), ProtocolError> {
    let mut r = BodyReader::new(body, "SASLInitialResponse");
    let mech = r.cstr()?;
    let len = r.i32()?;
    let data = match len {
        -1 => &[][..],
        len if len < 0 => return Err(ProtocolError::Malformed("SASLInitialResponse")),
        len => r.take(len as usize)?,
    };
    // As PostgreSQL's pq_getmsgend: bytes past the declared data are an error.
    if !r.rest().is_empty() {
        return Err(ProtocolError::Invalid("invalid message format"));
    }
    Ok((mech, data))
}

// --- Encoders for what the proxy sends to a backend ---

pub fn query(out: &mut BytesMut, sql: &str) {
    put_message(out, tag::QUERY, |b| put_cstr(b, sql));
}

pub fn sync(out: &mut BytesMut) {
    put_message(out, tag::SYNC, |_| {});
}

pub fn terminate(out: &mut BytesMut) {
    put_message(out, tag::TERMINATE, |_| {});
}

pub fn close(out: &mut BytesMut, target: Target, name: &str) {
    put_message(out, tag::CLOSE, |b| {
        b.put_u8(target.byte());
        put_cstr(b, name);
    });
}

pub fn password(out: &mut BytesMut, pw: &str) {
    put_message(out, tag::PASSWORD, |b| put_cstr(b, pw));
}

pub fn sasl_initial_response(out: &mut BytesMut, mechanism: &str, data: &[u8]) {
    put_message(out, tag::PASSWORD, |b| {
        put_cstr(b, mechanism);
        b.put_i32(data.len() as i32);
        b.extend_from_slice(data);
    });
}

pub fn sasl_response(out: &mut BytesMut, data: &[u8]) {
    put_message(out, tag::PASSWORD, |b| b.extend_from_slice(data));
}

/// A simple Query as a frame (a request the proxy puts in a client's place).
pub fn query_frame(sql: &str) -> Frame {
    let mut b = BytesMut::with_capacity(sql.len() + 1);
    put_cstr(&mut b, sql);
    Frame::new(tag::QUERY, b.freeze())
}

/// Rebuilds a Parse message as a frame (used to re-prepare a statement on another backend).
pub fn parse_frame(name: &str, query: &str, param_types: &[u8]) -> Frame {
    let mut b = BytesMut::with_capacity(name.len() + query.len() + 4 + param_types.len());
    put_cstr(&mut b, name);
    put_cstr(&mut b, query);
    b.put_i16((param_types.len() / 4) as i16);
    b.extend_from_slice(param_types);
    Frame::new(tag::PARSE, b.freeze())
}

/// The parameter-type array of a Parse body (raw OIDs), kept to rebuild the Parse later.
pub fn parse_param_types(body: &[u8]) -> Bytes {
    let mut r = BodyReader::new(body, "Parse");
    let ok = r.cstr().and_then(|_| r.cstr()).and_then(|_| r.i16());
    match ok {
        Ok(_) => Bytes::copy_from_slice(r.rest()),
        Err(_) => Bytes::new(),
    }
}

pub(crate) fn put_cstr(b: &mut BytesMut, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameDecoder;

    fn frame(out: BytesMut) -> Frame {
        let mut out = out;
        FrameDecoder::new(1 << 20)
            .decode(&mut out)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn parse_round_trips_with_param_types() {
        let f = parse_frame("s1", "select $1", &23u32.to_be_bytes());
        let p = decode_parse(&f.body).unwrap();
        assert_eq!((p.name, p.query), ("s1", "select $1"));
        assert_eq!(&parse_param_types(&f.body)[..], &23u32.to_be_bytes());
    }

    #[test]
    fn simple_messages_decode() {
        let mut out = BytesMut::new();
        query(&mut out, "select 1");
        assert_eq!(decode_query(&frame(out).body).unwrap(), "select 1");
        let mut out = BytesMut::new();
        close(&mut out, Target::Portal, "p");
        let f = frame(out);
        assert_eq!(
            decode_target(&f.body, "Close").unwrap(),
            (Target::Portal, "p")
        );
        let mut out = BytesMut::new();
        sasl_initial_response(&mut out, "SCRAM-SHA-256", b"n,,n=,r=x");
        let f = frame(out);
        assert_eq!(
            decode_sasl_initial(&f.body).unwrap(),
            ("SCRAM-SHA-256", &b"n,,n=,r=x"[..])
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(decode_parse(b"s\0select\0\x00\x02\0\0\0\x17").is_err());
        assert!(decode_parse(b"s\0select").is_err());
        assert!(decode_bind(b"portal").is_err());
        assert!(decode_target(b"Xname\0", "Describe").is_err());
        assert!(decode_execute(b"\0\0").is_err());
        assert!(decode_sasl_initial(b"SCRAM\0\x00\x00\x00\x09ab").is_err());
        assert!(decode_sasl_initial(b"SCRAM\0\x00\x00\x00\x01abc").is_err());
        assert!(decode_sasl_initial(b"SCRAM\0\xff\xff\xff\xfe").is_err());
        assert!(decode_sasl_initial(b"SCRAM\0\xff\xff\xff\xff").is_ok());
        assert!(decode_password(b"pw\0junk").is_err());
        assert!(decode_password(b"pw\0\0").is_err());
        assert!(decode_password(b"pw").is_err());
        assert_eq!(decode_password(b"pw\0").unwrap(), "pw");
    }
}
