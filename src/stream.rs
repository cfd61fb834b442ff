//! One byte-stream type for every transport the proxy speaks on either side (TCP, Unix
//! socket, TLS over TCP as server or as client), so the session and backend code are written
//! once.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A client connection after the TLS handshake (boxed: the TLS state is large).
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A backend connection after the TLS handshake.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// The transport was taken for a TLS handshake that did not complete; every operation
    /// fails and the socket is already closed.
    Detached,
}

impl Stream {
    /// Disables Nagle on TCP: the proxy batches its own writes, so delaying small packets
    /// only adds latency.
    pub fn tcp(s: TcpStream) -> Stream {
        let _ = s.set_nodelay(true);
        Stream::Tcp(s)
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    /// Whether the connection is encrypted (pool_hba `hostssl`/`hostnossl`, `SSL on|off`).
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::ServerTls(_) | Stream::ClientTls(_))
    }

    /// Ready when a read would not block (bytes, end of stream or an error). Under TLS
    /// decrypted bytes may already wait in the session's buffer: ready at once.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// For an idle connection: false if the peer closed it or sent something unasked (a
    /// server's FATAL before closing). Reads at most one byte, without waiting. On TLS the
    /// byte comes from the socket under the encryption: any byte there means the connection
    /// is not idle, and it is discarded either way.
    pub fn is_alive(&self) -> bool {
        let mut probe = [0u8; 1];
        let r = match self {
            Stream::Tcp(s) => s.try_read(&mut probe),
            Stream::Unix(s) => s.try_read(&mut probe),
            Stream::ServerTls(s) => s.get_ref().0.try_read(&mut probe),
            Stream::ClientTls(s) => s.get_ref().0.try_read(&mut probe),
            Stream::Detached => return false,
        };
        matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

fn detached() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection closed after a failed TLS handshake",
    )
}

/// Forwards one poll method to whichever transport the stream holds.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Stream::Tcp($s) => $e,
            Stream::Unix($s) => $e,
            Stream::ServerTls($s) => $e,
            Stream::ClientTls($s) => $e,
            Stream::Detached => Poll::Ready(Err(detached())),
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::ServerTls(s) => s.is_write_vectored(),
            Stream::ClientTls(s) => s.is_write_vectored(),
            Stream::Detached => false,
        }
    }
}
