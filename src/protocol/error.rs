//! ErrorResponse / NoticeResponse fields, written the way PostgreSQL writes them so drivers
//! classify our errors like the server's (severity, non-localized severity, SQLSTATE).

use bytes::{BufMut, BytesMut};

use super::frame::put_message;
use super::violation::ProtocolError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Notice,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
        }
    }
}

/// An error (or notice) the proxy itself reports to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgError {
    pub severity: Severity,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl PgError {
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        PgError {
            severity,
            code: code.to_string(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Fatal, code, message)
    }

    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, message)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_fatal(&self) -> bool {
        self.severity == Severity::Fatal
    }

    /// Appends an ErrorResponse (`E`), or a NoticeResponse (`N`) for notice severities.
    pub fn encode(&self, out: &mut BytesMut) {
        let tag = match self.severity {
            Severity::Error | Severity::Fatal => b'E',
            Severity::Notice | Severity::Warning => b'N',
        };
        put_message(out, tag, |b| {
            let sev = self.severity.as_str();
            put_field(b, b'S', sev);
            put_field(b, b'V', sev);
            put_field(b, b'C', &self.code);
            put_field(b, b'M', &self.message);
            if let Some(d) = &self.detail {
                put_field(b, b'D', d);
            }
            if let Some(h) = &self.hint {
                put_field(b, b'H', h);
            }
            b.put_u8(0);
        });
    }

    /// Reads the fields of an ErrorResponse/NoticeResponse body (e.g. from a backend).
    pub fn decode(body: &[u8]) -> PgError {
        let mut err = PgError::error("XX000", "");
        for field in body.split(|&b| b == 0) {
            let Some((&kind, value)) = field.split_first() else {
                continue;
            };
            let value = String::from_utf8_lossy(value).into_owned();
            match kind {
                b'V' => {
                    err.severity = match value.as_str() {
                        "FATAL" | "PANIC" => Severity::Fatal,
                        "WARNING" => Severity::Warning,
                        "NOTICE" | "INFO" | "DEBUG" | "LOG" => Severity::Notice,
                        _ => Severity::Error,
                    }
                }
                b'C' => err.code = value,
                b'M' => err.message = value,
                b'D' => err.detail = Some(value),
                b'H' => err.hint = Some(value),
                _ => {}
            }
        }
        err
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.severity.as_str(),
            self.code,
            self.message
        )?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

fn put_field(b: &mut BytesMut, kind: u8, value: &str) {
    b.put_u8(kind);
    // A NUL inside a field would end it early and shift the rest; strip it.
    b.extend(value.bytes().filter(|&c| c != 0));
    b.put_u8(0);
}

impl ProtocolError {
    /// What the client is told: PostgreSQL uses 08P01 (protocol_violation) for all of these.
    pub fn to_pg_error(&self) -> PgError {
        let code = match self {
            ProtocolError::UnsupportedProtocol { .. } => "0A000",
            _ => "08P01",
        };
        PgError::fatal(code, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FrameDecoder;

    #[test]
    fn error_round_trips_through_the_wire_format() {
        let e = PgError::fatal("28P01", "password authentication failed for user \"a\"")
            .with_detail("d")
            .with_hint("h");
        let mut out = BytesMut::new();
        e.encode(&mut out);
        let f = FrameDecoder::new(1 << 20)
            .decode(&mut out)
            .unwrap()
            .unwrap();
        assert_eq!(f.tag, b'E');
        assert_eq!(PgError::decode(&f.body), e);
    }

    #[test]
    fn notices_use_the_notice_tag() {
        let mut out = BytesMut::new();
        PgError::new(Severity::Warning, "01000", "w").encode(&mut out);
        assert_eq!(out[0], b'N');
    }
}
