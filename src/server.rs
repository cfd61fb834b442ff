//! The accept loop: binds the configured listeners (TCP and the Unix socket) and runs one
//! session task per client, with the cancel registry those sessions share. It sits on top
//! of the module graph: everything it starts lives below it.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};

use crate::config::Config;
use crate::context::Context;
use crate::listen;
use crate::session::{CancelRegistry, ClientInfo};
use crate::stream::Stream;

/// Closes cached connections that outlived their idle lifetime, once a second.
pub async fn reap_idle(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for conn in ctx.pool.expire() {
            conn.terminate().await;
        }
    }
}

/// Binds every configured listener. An empty `listen_addresses` means Unix socket only.
pub async fn bind(cfg: &Config) -> anyhow::Result<(Vec<TcpListener>, Vec<UnixListener>)> {
    // The socket files first: a client that reached the TCP port finds them there.
    let mut unix = Vec::new();
    for dir in &cfg.unix_socket_directories {
        if let Some((l, path)) = listen::bind_unix(dir, cfg.port, "Unix") {
            // The file is made under the umask; access is what the setting says.
            set_socket_mode(&path, cfg.unix_socket_permissions)?;
            unix.push(l);
        }
    }
    let tcp = listen::bind_tcp(&cfg.listen_addresses, cfg.port).await?;
    if tcp.is_empty() && unix.is_empty() {
        anyhow::bail!("no listening socket could be created");
    }
    Ok((tcp, unix))
}

/// Applies `unix_socket_permissions` to a socket file, as PostgreSQL does with its own
/// setting; failing to restrict access stops start-up rather than leave it open.
fn set_socket_mode(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o777)).map_err(|e| {
        anyhow::anyhow!(
            "could not set permissions of {} to {mode:04o}: {e}",
            path.display()
        )
    })
}

/// Accepts clients on every listener until the process ends; one task per session.
pub async fn serve(ctx: Arc<Context>, tcp: Vec<TcpListener>, unix: Vec<UnixListener>) {
    // A cancel arrives on a connection of its own: every listener must see every session.
    let cancels = Arc::new(CancelRegistry::default());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reap_idle(ctx.clone()));
    for l in tcp {
        let (ctx, cancels) = (ctx.clone(), cancels.clone());
        let nodelay_inherited = listen::accepted_inherit_nodelay(&l);
        tasks.spawn(listen::accept_tcp(l, "client", move |s, peer| {
            let stream = match nodelay_inherited {
                true => Stream::Tcp(s),
                false => Stream::tcp(s),
            };
            ctx.lifecycle.spawn_session(crate::session::run(
                ctx.clone(),
                cancels.clone(),
                stream,
                ClientInfo::tcp(peer),
            ));
        }));
    }
    for l in unix {
        let (ctx, cancels) = (ctx.clone(), cancels.clone());
        tasks.spawn(listen::accept_unix(l, "client", move |s| {
            ctx.lifecycle.spawn_session(crate::session::run(
                ctx.clone(),
                cancels.clone(),
                Stream::Unix(s),
                ClientInfo::local(),
            ));
        }));
    }
    while tasks.join_next().await.is_some() {}
}
