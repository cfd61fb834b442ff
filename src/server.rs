//! The running proxy: shared context (config snapshot, credentials, cancel registry),
//! listeners on TCP and the Unix socket, and the client limit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::{TcpListener, UnixListener};
use tracing::{info, warn};

use crate::auth::hba::HbaFile;
use crate::auth::passwd::PoolPasswd;
use crate::backend::{send_cancel, BackendAddr, BackendConn};
use crate::config::Config;
use crate::router::{Classifier, ClassifyOptions, RouterConfig};
use crate::session::router_config;
use crate::stream::Stream;

/// Everything sessions share. Config and credentials are swapped whole on reload, so readers
/// never wait.
pub struct Context {
    config: ArcSwap<Config>,
    passwd: ArcSwap<PoolPasswd>,
    router: ArcSwap<RouterConfig>,
    /// Statement verdicts, cached by text across sessions.
    pub classifier: Arc<Classifier>,
    pub cancel: Arc<CancelRegistry>,
    /// Function name -> "is a write" (VOLATILE in the primary's pg_proc), looked up once.
    pub volatility: Mutex<HashMap<String, bool>>,
    /// Set at the first shutdown signal: `/readyz` fails from then on.
    pub draining: AtomicBool,
    /// Shutdown phases, the session tracker and PCP's stop/reload requests.
    pub lifecycle: crate::lifecycle::Control,
    /// pool_hba.conf when `enable_pool_hba` is on; swapped whole on reload.
    hba: ArcSwapOption<HbaFile>,
}

impl Context {
    pub fn new(config: Config, passwd: PoolPasswd) -> Arc<Context> {
        let classifier = Classifier::new(ClassifyOptions {
            allow_sql_comments: config.allow_sql_comments,
            ignore_leading_white_space: config.ignore_leading_white_space,
        });
        let router = router_config(&config);
        Arc::new(Context {
            router: ArcSwap::from_pointee(router),
            classifier: Arc::new(classifier),
            config: ArcSwap::from_pointee(config),
            passwd: ArcSwap::from_pointee(passwd),
            cancel: Arc::new(CancelRegistry::default()),
            volatility: Mutex::new(HashMap::new()),
            draining: AtomicBool::new(false),
            lifecycle: Default::default(),
            hba: ArcSwapOption::empty(),
        })
    }

    /// Swaps in a reloaded configuration (sessions pick it up at their next decision).
    pub fn replace_config(&self, config: Config) {
        self.router.store(Arc::new(router_config(&config)));
        self.config.store(Arc::new(config));
    }

    pub fn replace_passwd(&self, passwd: PoolPasswd) {
        self.passwd.store(Arc::new(passwd));
    }

    pub fn replace_hba(&self, hba: Option<HbaFile>) {
        self.hba.store(hba.map(Arc::new));
    }

    /// pool_hba.conf as last loaded; `None` when `enable_pool_hba` is off.
    pub fn hba(&self) -> Option<Arc<HbaFile>> {
        self.hba.load_full()
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    pub fn router_config(&self) -> Arc<RouterConfig> {
        self.router.load_full()
    }

    /// What the primary's catalog said about `func`, if it was asked before.
    pub fn known_volatility(&self, func: &str) -> Option<bool> {
        let map = self.volatility.lock().unwrap_or_else(|p| p.into_inner());
        map.get(func).copied()
    }

    pub fn passwd(&self) -> Arc<PoolPasswd> {
        self.passwd.load_full()
    }
}

/// One backend a session holds, as a cancel needs it.
#[derive(Clone, Debug)]
struct CancelTarget {
    addr: BackendAddr,
    pid: i32,
    key: i32,
}

#[derive(Default)]
struct CancelEntry {
    key: i32,
    targets: Vec<CancelTarget>,
}

/// Maps the (pid, key) the proxy gave each client to the backends that session holds, so a
/// CancelRequest reaches the server running that client's query with the server's real key.
#[derive(Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, CancelEntry>>,
}

impl CancelRegistry {
    /// Gives a new session its own process id and secret key.
    pub fn register(self: &Arc<Self>) -> CancelHandle {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let pid = (rand::random::<u32>() >> 1) as i32;
            if pid == 0 || map.contains_key(&pid) {
                continue;
            }
            let key = rand::random::<i32>();
            map.insert(
                pid,
                CancelEntry {
                    key,
                    targets: Vec::new(),
                },
            );
            return CancelHandle {
                registry: self.clone(),
                pid,
                key,
            };
        }
    }

    /// Forwards a client's cancel to every backend of the matching session.
    pub async fn cancel(&self, pid: i32, key: i32) {
        let targets = {
            let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&pid) {
                Some(e) if e.key == key => e.targets.clone(),
                _ => {
                    info!(pid, "invalid cancel key");
                    return;
                }
            }
        };
        for t in targets {
            if let Err(e) = send_cancel(&t.addr, t.pid, t.key).await {
                warn!("could not forward cancel request: {e}");
            }
        }
    }
}

/// A session's entry in the cancel registry.
pub struct CancelHandle {
    registry: Arc<CancelRegistry>,
    pid: i32,
    key: i32,
}

impl CancelHandle {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn key(&self) -> i32 {
        self.key
    }

    pub fn add_backend(&self, conn: &BackendConn) {
        self.update(|e| {
            e.targets.push(CancelTarget {
                addr: conn.addr.clone(),
                pid: conn.pid,
                key: conn.key,
            })
        });
    }

    pub fn remove_backend(&self, conn: &BackendConn) {
        self.update(|e| e.targets.retain(|t| t.pid != conn.pid));
    }

    fn update(&self, f: impl FnOnce(&mut CancelEntry)) {
        let mut map = self
            .registry
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&self.pid) {
            f(e);
        }
    }

    pub fn unregister(&self) {
        let mut map = self
            .registry
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.remove(&self.pid);
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Binds every configured listener. An empty `listen_addresses` means Unix socket only.
pub async fn bind(cfg: &Config) -> anyhow::Result<(Vec<TcpListener>, Vec<UnixListener>)> {
    let mut tcp = Vec::new();
    for a in &cfg.listen_addresses {
        let a = a.trim();
        if a.is_empty() {
            continue;
        }
        let hosts: Vec<&str> = if a == "*" {
            vec!["0.0.0.0", "::"]
        } else {
            vec![a]
        };
        for h in hosts {
            match bind_tcp(h, cfg.port).await {
                Ok(l) => tcp.push(l),
                Err(e) if a == "*" && h == "::" => {
                    warn!("could not listen on [::]:{}: {e}", cfg.port)
                }
                Err(e) => anyhow::bail!("could not listen on {h}:{}: {e}", cfg.port),
            }
        }
    }
    let mut unix = Vec::new();
    for dir in &cfg.unix_socket_directories {
        if dir.trim().is_empty() {
            continue;
        }
        let path = PathBuf::from(dir.trim()).join(format!(".s.PGSQL.{}", cfg.port));
        let _ = std::fs::remove_file(&path);
        match UnixListener::bind(&path) {
            Ok(l) => unix.push(l),
            Err(e) => warn!("could not create Unix socket {}: {e}", path.display()),
        }
    }
    if tcp.is_empty() && unix.is_empty() {
        anyhow::bail!("no listening socket could be created");
    }
    Ok((tcp, unix))
}

async fn bind_tcp(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    if addr.is_ipv6() {
        // Keep [::] from also claiming the IPv4 port that 0.0.0.0 holds.
        socket2::SockRef::from(&sock).set_only_v6(true)?;
    }
    sock.bind(addr)?;
    sock.listen(1024)
}

/// Accepts clients on every listener until the process ends; one task per session.
pub async fn serve(ctx: Arc<Context>, tcp: Vec<TcpListener>, unix: Vec<UnixListener>) {
    let mut tasks = tokio::task::JoinSet::new();
    for l in tcp {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, peer)) => {
                        ctx.lifecycle.spawn_session(crate::session::run(
                            ctx.clone(),
                            Stream::tcp(s),
                            peer.to_string(),
                        ));
                    }
                    Err(e) => accept_error(e).await,
                }
            }
        });
    }
    for l in unix {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        ctx.lifecycle.spawn_session(crate::session::run(
                            ctx.clone(),
                            Stream::Unix(s),
                            "[local]".into(),
                        ));
                    }
                    Err(e) => accept_error(e).await,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Out of file descriptors and the like: log, back off briefly, keep serving.
async fn accept_error(e: std::io::Error) {
    warn!("accept failed: {e}");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}
