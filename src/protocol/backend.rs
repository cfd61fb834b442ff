//! Messages a backend sends (the few the proxy reads) and the ones the proxy itself sends to
//! a client as a server (encoded).

use bytes::{BufMut, BytesMut};

use super::frame::{put_message, BodyReader};
use super::frontend::put_cstr;
use super::violation::ProtocolError;

/// Backend message tags.
pub mod btag {
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const EMPTY_QUERY: u8 = b'I';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const NO_DATA: u8 = b'n';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const COPY_IN: u8 = b'G';
    pub const COPY_OUT: u8 = b'H';
    pub const COPY_BOTH: u8 = b'W';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const NOTIFICATION: u8 = b'A';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    pub const NEGOTIATE_PROTOCOL: u8 = b'v';
}

/// An Authentication request from a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthRequest {
    Ok,
    Cleartext,
    Md5 { salt: [u8; 4] },
    Sasl { mechanisms: Vec<String> },
    SaslContinue { data: Vec<u8> },
    SaslFinal { data: Vec<u8> },
    Other(i32),
}

pub fn decode_auth(body: &[u8]) -> Result<AuthRequest, ProtocolError> {
    let mut r = BodyReader::new(body, "Authentication");
    let code = r.i32()?;
    Ok(match code {
        0 => AuthRequest::Ok,
        3 => AuthRequest::Cleartext,
        5 => {
            let s = r.take(4)?;
            AuthRequest::Md5 {
                salt: [s[0], s[1], s[2], s[3]],
            }
        }
        10 => {
            let mut mechanisms = Vec::new();
            loop {
                let m = r.cstr()?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m.to_string());
            }
            AuthRequest::Sasl { mechanisms }
        }
        11 => AuthRequest::SaslContinue {
            data: r.rest().to_vec(),
        },
        12 => AuthRequest::SaslFinal {
            data: r.rest().to_vec(),
        },
        other => AuthRequest::Other(other),
    })
}

pub fn decode_parameter_status(body: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let mut r = BodyReader::new(body, "ParameterStatus");
    Ok((r.cstr()?, r.cstr()?))
}

pub fn decode_backend_key(body: &[u8]) -> Result<(i32, i32), ProtocolError> {
    let mut r = BodyReader::new(body, "BackendKeyData");
    Ok((r.i32()?, r.i32()?))
}

pub fn decode_ready(body: &[u8]) -> Result<u8, ProtocolError> {
    BodyReader::new(body, "ReadyForQuery").u8()
}

/// The first column of a DataRow as text (`None` for NULL or a malformed row).
pub fn first_text_value(body: &[u8]) -> Option<String> {
    let mut r = BodyReader::new(body, "DataRow");
    if r.i16().ok()? < 1 {
        return None;
    }
    let len = r.i32().ok()?;
    if len < 0 {
        return None;
    }
    let v = r.take(len as usize).ok()?;
    Some(String::from_utf8_lossy(v).into_owned())
}

/// Every column of a DataRow as text (`None` for NULL); for the proxy's own queries.
pub fn decode_data_row(body: &[u8]) -> Result<Vec<Option<String>>, ProtocolError> {
    let mut r = BodyReader::new(body, "DataRow");
    let n = r.i16()?;
    let mut values = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        let len = r.i32()?;
        if len < 0 {
            values.push(None);
        } else {
            let v = r.take(len as usize)?;
            values.push(Some(String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(values)
}

// --- Encoders for what the proxy sends to a client ---

pub fn auth_ok(out: &mut BytesMut) {
    put_message(out, btag::AUTHENTICATION, |b| b.put_i32(0));
}

pub fn auth_cleartext(out: &mut BytesMut) {
    put_message(out, btag::AUTHENTICATION, |b| b.put_i32(3));
}

pub fn auth_md5(out: &mut BytesMut, salt: [u8; 4]) {
    put_message(out, btag::AUTHENTICATION, |b| {
        b.put_i32(5);
        b.extend_from_slice(&salt);
    });
}

pub fn auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    put_message(out, btag::AUTHENTICATION, |b| {
        b.put_i32(10);
        for m in mechanisms {
            put_cstr(b, m);
        }
        b.put_u8(0);
    });
}

pub fn auth_sasl_continue(out: &mut BytesMut, data: &[u8]) {
    put_message(out, btag::AUTHENTICATION, |b| {
        b.put_i32(11);
        b.extend_from_slice(data);
    });
}

pub fn auth_sasl_final(out: &mut BytesMut, data: &[u8]) {
    put_message(out, btag::AUTHENTICATION, |b| {
        b.put_i32(12);
        b.extend_from_slice(data);
    });
}

/// NegotiateProtocolVersion: the newest minor version the server speaks and the protocol
/// options (`_pq_.…`) it did not recognise.
pub fn negotiate_protocol_version(out: &mut BytesMut, newest_minor: i32, unrecognized: &[&str]) {
    put_message(out, btag::NEGOTIATE_PROTOCOL, |b| {
        b.put_i32(newest_minor);
        b.put_i32(unrecognized.len() as i32);
        for name in unrecognized {
            put_cstr(b, name);
        }
    });
}

pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    put_message(out, btag::PARAMETER_STATUS, |b| {
        put_cstr(b, name);
        put_cstr(b, value);
    });
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, key: i32) {
    put_message(out, btag::BACKEND_KEY_DATA, |b| {
        b.put_i32(pid);
        b.put_i32(key);
    });
}

pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    put_message(out, btag::READY_FOR_QUERY, |b| b.put_u8(status));
}

/// RowDescription for text columns exactly as Pgpool-II describes its SHOW results: type OID 0,
/// size -1, typmod 0 (pgpool2_exporter's driver then hands the values over as raw bytes).
pub fn row_description_text(out: &mut BytesMut, columns: &[&str]) {
    row_description_typed(out, columns, 0);
}

/// RowDescription of text-format columns all of type `type_oid` (25 = text for answers in
/// the extended protocol, where drivers look the column types up).
pub fn row_description_typed(out: &mut BytesMut, columns: &[&str], type_oid: i32) {
    put_message(out, btag::ROW_DESCRIPTION, |b| {
        b.put_i16(columns.len() as i16);
        for (i, c) in columns.iter().enumerate() {
            put_cstr(b, c);
            b.put_i32(0); // table oid
            b.put_i16(i as i16); // attribute number: the column index, as Pgpool-II
            b.put_i32(type_oid);
            b.put_i16(-1);
            b.put_i32(0);
            b.put_i16(0); // text format
        }
    });
}

pub fn data_row<S: AsRef<str>>(out: &mut BytesMut, values: &[S]) {
    put_message(out, btag::DATA_ROW, |b| {
        b.put_i16(values.len() as i16);
        for v in values {
            let v = v.as_ref();
            b.put_i32(v.len() as i32);
            b.extend_from_slice(v.as_bytes());
        }
    });
}

pub fn command_complete(out: &mut BytesMut, tag: &str) {
    put_message(out, btag::COMMAND_COMPLETE, |b| put_cstr(b, tag));
}

pub fn parse_complete(out: &mut BytesMut) {
    put_message(out, btag::PARSE_COMPLETE, |_| {});
}

pub fn bind_complete(out: &mut BytesMut) {
    put_message(out, btag::BIND_COMPLETE, |_| {});
}

pub fn close_complete(out: &mut BytesMut) {
    put_message(out, btag::CLOSE_COMPLETE, |_| {});
}

pub fn no_data(out: &mut BytesMut) {
    put_message(out, btag::NO_DATA, |_| {});
}

/// ParameterDescription with `n` parameters of unspecified type.
pub fn parameter_description(out: &mut BytesMut, n: usize) {
    put_message(out, btag::PARAMETER_DESCRIPTION, |b| {
        b.put_i16(n as i16);
        for _ in 0..n {
            b.put_i32(0);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameDecoder;

    fn one(mut out: BytesMut) -> crate::protocol::Frame {
        FrameDecoder::new(1 << 20)
            .decode(&mut out)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn auth_requests_round_trip() {
        type Case = (fn(&mut BytesMut), AuthRequest);
        let cases: Vec<Case> = vec![
            (auth_ok, AuthRequest::Ok),
            (auth_cleartext, AuthRequest::Cleartext),
        ];
        for (enc, want) in cases {
            let mut out = BytesMut::new();
            enc(&mut out);
            assert_eq!(decode_auth(&one(out).body).unwrap(), want);
        }
        let mut out = BytesMut::new();
        auth_md5(&mut out, [1, 2, 3, 4]);
        assert_eq!(
            decode_auth(&one(out).body).unwrap(),
            AuthRequest::Md5 { salt: [1, 2, 3, 4] }
        );
        let mut out = BytesMut::new();
        auth_sasl(&mut out, &["SCRAM-SHA-256"]);
        assert_eq!(
            decode_auth(&one(out).body).unwrap(),
            AuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256".into()]
            }
        );
    }

    #[test]
    fn status_messages_round_trip() {
        let mut out = BytesMut::new();
        parameter_status(&mut out, "TimeZone", "UTC");
        assert_eq!(
            decode_parameter_status(&one(out).body).unwrap(),
            ("TimeZone", "UTC")
        );
        let mut out = BytesMut::new();
        backend_key_data(&mut out, 42, -7);
        assert_eq!(decode_backend_key(&one(out).body).unwrap(), (42, -7));
        let mut out = BytesMut::new();
        ready_for_query(&mut out, b'T');
        assert_eq!(decode_ready(&one(out).body).unwrap(), b'T');
    }
}
