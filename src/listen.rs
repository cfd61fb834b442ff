//! Binding and accepting, the same for every listener: client connections, PCP and the
//! metrics/health HTTP server. An address list is Pgpool-II's: comma-separated host names
//! or IP addresses, `*` for every interface, `''` for none. `*` is one dual-stack socket
//! on `[::]` (IPv4 clients arrive as mapped addresses and are unmapped here), or `0.0.0.0`
//! where the machine has no IPv6, so the same setting serves IPv4-only, IPv6-only and
//! dual-stack pods.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};
use tracing::warn;

/// Binds every address of `addresses` on `port`. A name that resolves to several
/// addresses is bound on each (as PostgreSQL does); one that binds on none is an error.
pub async fn bind_tcp(addresses: &[String], port: u16) -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for a in addresses.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
        if a == "*" {
            out.push(bind_any(port)?);
        } else {
            out.extend(bind_host(a, port).await?);
        }
    }
    Ok(out)
}

/// `*`: `[::]` taking IPv4 too; `0.0.0.0` when IPv6 is not there.
fn bind_any(port: u16) -> io::Result<TcpListener> {
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match bind_addr(v6, true) {
        Ok(l) => Ok(l),
        Err(e) if no_ipv6(&e) => {
            warn!("IPv6 is not available ({e}): listening on 0.0.0.0:{port} only");
            bind_addr(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)
        }
        Err(e) => Err(context(e, v6)),
    }
}

/// The errors that mean "this machine has no IPv6", not "the port is taken".
fn no_ipv6(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

async fn bind_host(host: &str, port: u16) -> io::Result<Vec<TcpListener>> {
    let addrs: BTreeSet<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("could not resolve \"{host}\": {e}")))?
        .collect();
    let mut out = Vec::new();
    let mut failed = None;
    for addr in addrs {
        match bind_addr(addr, false) {
            Ok(l) => out.push(l),
            Err(e) => {
                let e = context(e, addr);
                warn!("{e}");
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) if out.is_empty() => Err(e),
        _ if out.is_empty() => Err(io::Error::other(format!("\"{host}\" has no address"))),
        _ => Ok(out),
    }
}

fn bind_addr(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        // Explicit: the system default (`bindv6only`) differs between distributions.
        socket2::SockRef::from(&sock).set_only_v6(!dual_stack)?;
    }
    // Accepted connections inherit TCP_NODELAY from the listener on Linux: one setsockopt
    // here instead of one per connection.
    sock.set_nodelay(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

fn context(e: io::Error, addr: SocketAddr) -> io::Error {
    io::Error::new(e.kind(), format!("could not listen on {addr}: {e}"))
}

/// Whether connections accepted on `l` come with TCP_NODELAY already set (inherited from
/// the listener, which Linux does), so the per-connection setsockopt can be skipped.
pub fn accepted_inherit_nodelay(l: &TcpListener) -> bool {
    cfg!(target_os = "linux") && socket2::SockRef::from(l).tcp_nodelay().unwrap_or(false)
}

/// Makes the socket `<dir>/.s.PGSQL.<port>`, replacing a stale one. A socket that cannot
/// be made is a warning: TCP may still serve.
pub fn bind_unix(dir: &str, port: u16, what: &str) -> Option<(UnixListener, PathBuf)> {
    let dir = dir.trim();
    if dir.is_empty() {
        return None;
    }
    let path = PathBuf::from(dir).join(format!(".s.PGSQL.{port}"));
    let _ = std::fs::remove_file(&path);
    match UnixListener::bind(&path) {
        Ok(l) => Some((l, path)),
        Err(e) => {
            warn!("could not create {what} socket {}: {e}", path.display());
            None
        }
    }
}

/// An IPv4 client of the dual-stack socket as the IPv4 address it is, so logs and the
/// admin views see `127.0.0.1`, not `::ffff:127.0.0.1` (hba and login delays canonicalise
/// on their own).
pub fn unmapped(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// Accepts on `l` until the process ends, handing each connection to `on`.
pub async fn accept_tcp<F>(l: TcpListener, what: &'static str, mut on: F)
where
    F: FnMut(TcpStream, SocketAddr),
{
    loop {
        match l.accept().await {
            Ok((s, peer)) => on(s, unmapped(peer)),
            Err(e) => accept_error(what, e).await,
        }
    }
}

/// Accepts on the Unix socket `l` until the process ends.
pub async fn accept_unix<F>(l: UnixListener, what: &'static str, mut on: F)
where
    F: FnMut(UnixStream),
{
    loop {
        match l.accept().await {
            Ok((s, _)) => on(s),
            Err(e) => accept_error(what, e).await,
        }
    }
}

/// Out of file descriptors and the like: log, back off briefly, keep serving.
async fn accept_error(what: &str, e: io::Error) {
    warn!("{what} accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_peers_are_unmapped() {
        let cases = [
            ("[::ffff:127.0.0.1]:5", "127.0.0.1:5"),
            ("[::1]:5", "[::1]:5"),
            ("10.0.0.1:5", "10.0.0.1:5"),
            ("[2001:db8::1]:5", "[2001:db8::1]:5"),
        ];
        for (peer, want) in cases {
            let got = peer.parse().map(unmapped).map(|a| a.to_string());
            assert_eq!(got.ok().as_deref(), Some(want), "{peer}");
        }
    }
}
