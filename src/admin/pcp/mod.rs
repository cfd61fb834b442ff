//! The PCP server (spec 8) on `pcp_listen_addresses:pcp_port` and the Unix socket
//! `<pcp_socket_dir>/.s.PGSQL.<pcp_port>`, authenticated with `pcp.conf` (md5 with salt).
//! Pgpool-II's tools (`pcp_node_count`, `pcp_node_info`, …) talk to it unchanged.

mod commands;
pub(crate) mod wire;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::listen;
use crate::stream::Stream;
use wire::{read_packet, PcpError};

/// Binds every PCP listener. A TCP address that cannot be bound stops start-up; a Unix
/// socket that cannot be made is only a warning (as for the client socket).
pub async fn bind(ctx: &Context) -> std::io::Result<(Vec<TcpListener>, Vec<UnixListener>)> {
    let cfg = ctx.config();
    let tcp = listen::bind_tcp(&cfg.pcp_listen_addresses, cfg.pcp_port).await?;
    let unix = cfg
        .pcp_socket_dir
        .iter()
        .filter_map(|dir| listen::bind_unix(dir, cfg.pcp_port, "PCP"))
        .map(|(l, _)| l)
        .collect();
    Ok((tcp, unix))
}

/// Accepts PCP connections until the process ends; one task per connection.
pub async fn serve(ctx: Arc<Context>, tcp: Vec<TcpListener>, unix: Vec<UnixListener>) {
    let mut tasks = tokio::task::JoinSet::new();
    for l in tcp {
        let ctx = ctx.clone();
        tasks.spawn(listen::accept_tcp(l, "PCP", move |s, peer| {
            tokio::spawn(connection(ctx.clone(), Stream::tcp(s), Some(peer.ip())));
        }));
    }
    for l in unix {
        let ctx = ctx.clone();
        tasks.spawn(listen::accept_unix(l, "PCP", move |s| {
            tokio::spawn(connection(ctx.clone(), Stream::Unix(s), None));
        }));
    }
    while tasks.join_next().await.is_some() {}
}

/// How long a PCP client may take to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// One PCP connection; `peer` is the client's address (`None`: the Unix socket).
async fn connection(ctx: Arc<Context>, mut stream: Stream, peer: Option<IpAddr>) {
    let mut out = BytesMut::new();
    let authed =
        tokio::time::timeout(AUTH_TIMEOUT, authenticate(&ctx, &mut stream, &mut out)).await;
    let result = match authed {
        Ok(Ok(true)) => commands::serve(&ctx, &mut stream, &mut out).await,
        Ok(Ok(false)) => {
            // Refused (the FATAL is in `out`; a client that only said goodbye has none).
            if !out.is_empty() {
                ctx.pause_after_failed_login(peer).await;
            }
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => {
            wire::error(&mut out, true, "authentication timeout", "");
            Ok(())
        }
    };
    match result {
        Ok(()) | Err(PcpError::Closed) => {}
        Err(PcpError::Length(n)) => {
            wire::error(
                &mut out,
                true,
                "invalid PCP packet",
                &format!("incorrect packet length ({n})"),
            );
        }
        Err(e) => debug!("PCP connection ended: {e}"),
    }
    if !out.is_empty() {
        let _ = stream.write_all(&out).await;
    }
    let _ = stream.shutdown().await;
}

/// The salt exchange and login (spec 8.2). Ok(false): refused, the FATAL error is in `out`.
async fn authenticate(
    ctx: &Context,
    stream: &mut Stream,
    out: &mut BytesMut,
) -> Result<bool, PcpError> {
    let mut salt: Option<[u8; 4]> = None;
    loop {
        let p = read_packet(stream).await?;
        match p.tag {
            b'M' => {
                let s: [u8; 4] = rand::random();
                wire::raw(out, b'm', &s);
                stream.write_all(out).await?;
                out.clear();
                salt = Some(s);
            }
            b'R' => {
                let fields = p.strings();
                // Exactly user and hash, as the PCP client sends them; anything else fails.
                let (user, hash) = match fields.as_slice() {
                    [u, h] => (u.as_str(), h.as_str()),
                    _ => ("", ""),
                };
                let Some(salt) = salt else {
                    wire::error(out, true, "authentication failed", "");
                    return Ok(false);
                };
                if ctx.pcp_users().verify(user, salt, hash) {
                    wire::strings(out, b'r', &["AuthenticationOK"]);
                    stream.write_all(out).await?;
                    out.clear();
                    info!(user, "PCP login");
                    return Ok(true);
                }
                warn!(user, "PCP authentication failed");
                wire::error(
                    out,
                    true,
                    &format!("authentication failed for user \"{user}\""),
                    "username and/or password does not match",
                );
                return Ok(false);
            }
            b'X' => return Ok(false),
            _ => {
                wire::error(
                    out,
                    true,
                    "authentication failed for new PCP connection",
                    "connection not authorized",
                );
                return Ok(false);
            }
        }
    }
}
