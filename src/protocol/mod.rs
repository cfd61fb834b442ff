//! The PostgreSQL v3 wire protocol, as far as a proxy needs it.
//!
//! Messages the proxy must understand get a type with `decode`/`encode`; everything it only
//! relays stays an opaque [`Frame`] (tag + body as `Bytes`). All byte-level knowledge of the
//! protocol lives here, so the rest of the crate never writes `buf[0] == b'Q'`.

mod backend;
mod error;
mod frame;
mod frontend;
mod startup;

pub use backend::*;
pub use error::{PgError, Severity};
pub use frame::{Frame, FrameDecoder, HEADER_LEN};
pub use frontend::*;
pub use startup::{StartupPacket, CANCEL_CODE, GSSENC_CODE, PROTOCOL_3_0, SSL_CODE};

/// Errors while decoding what a peer sent.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid message length {len} for message type \"{tag}\"")]
    BadLength { tag: char, len: i64 },
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: u64, limit: u64 },
    #[error("invalid startup packet length {0}")]
    BadStartupLength(i64),
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("malformed {0} message")]
    Malformed(&'static str),
    #[error("invalid string in message: {0}")]
    BadString(&'static str),
    /// PostgreSQL's own words for a message it refuses.
    #[error("{0}")]
    Invalid(&'static str),
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
