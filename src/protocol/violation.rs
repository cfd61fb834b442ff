//! What can be wrong with the bytes a peer sent (the ErrorResponse each becomes is in
//! `error.rs`, beside the other ErrorResponse code).

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
