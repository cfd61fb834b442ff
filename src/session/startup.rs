//! The first phase of a client connection: read the startup packet, answer SSL/GSS
//! negotiation, and hand back either a startup message or a cancel request.

use std::sync::Arc;

use bytes::BytesMut;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::SessionError;
use crate::protocol::StartupPacket;
use crate::stream::Stream;

pub enum FirstPacket {
    Startup {
        minor: u16,
        params: Vec<(String, String)>,
    },
    Cancel {
        pid: i32,
        key: i32,
    },
}

/// Reads packets until a StartupMessage or CancelRequest arrives. With `tls` (ssl = on), an
/// SSLRequest on TCP is answered `S` and the handshake runs, and a client that opens with a
/// TLS handshake (PostgreSQL 17 direct TLS) is accepted; otherwise SSLRequest and
/// GSSENCRequest get `N` and the client may go on in plain text. Bytes the client sent after
/// the packet stay in `buf` for the next phase.
pub async fn read_first_packet(
    stream: &mut Stream,
    buf: &mut BytesMut,
    tls: Option<Arc<ServerConfig>>,
) -> Result<FirstPacket, SessionError> {
    if let Some(cfg) = &tls {
        if buf.is_empty() && crate::tls::is_direct_tls(stream).await {
            crate::tls::accept(stream, cfg.clone(), true).await?;
        }
    }
    loop {
        let packet = read_packet(stream, buf).await?;
        match StartupPacket::decode(&packet).map_err(SessionError::Protocol)? {
            StartupPacket::SslRequest => {
                refuse_early_bytes(buf)?;
                match &tls {
                    // PostgreSQL offers no TLS on Unix sockets, nor a second handshake.
                    Some(cfg) if !stream.is_unix() && !stream.is_tls() => {
                        stream.write_all(b"S").await?;
                        crate::tls::accept(stream, cfg.clone(), false).await?;
                    }
                    _ => stream.write_all(b"N").await?,
                }
            }
            StartupPacket::GssEncRequest => {
                refuse_early_bytes(buf)?;
                stream.write_all(b"N").await?;
            }
            StartupPacket::Cancel { pid, key } => return Ok(FirstPacket::Cancel { pid, key }),
            StartupPacket::Startup { minor, params } => {
                return Ok(FirstPacket::Startup { minor, params })
            }
        }
    }
}

/// Bytes after an SSLRequest before our answer: a buffer-stuffing attempt (CVE-2021-23214
/// class: they would be taken as if sent inside TLS); PostgreSQL refuses these too.
fn refuse_early_bytes(buf: &BytesMut) -> Result<(), SessionError> {
    if buf.is_empty() {
        return Ok(());
    }
    Err(SessionError::Protocol(
        crate::protocol::ProtocolError::Malformed("unencrypted data after SSL request"),
    ))
}

async fn read_packet(stream: &mut Stream, buf: &mut BytesMut) -> Result<Vec<u8>, SessionError> {
    loop {
        if let Some(len) = StartupPacket::peek_len(buf).map_err(SessionError::Protocol)? {
            if buf.len() >= len {
                return Ok(buf.split_to(len).to_vec());
            }
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(SessionError::ClientGone);
        }
    }
}
