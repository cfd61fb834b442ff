//! The running proxy: shared context (config snapshot, credentials, cancel registry),
//! listeners on TCP and the Unix socket, and the client limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::admin::SessionRegistry;
use crate::auth::passwd::PoolPasswd;
use crate::auth::pcp_conf::PcpUsers;
use crate::auth::{HbaFile, ScramSecretCache};
use crate::backend::{send_cancel, BackendAddr, BackendConn, Pool, PoolLimits};
use crate::config::Config;
use crate::listen;
use crate::protocol::PgError;
use crate::router::{Classifier, ClassifyOptions, RouterConfig};
use crate::session::ClientInfo;
use crate::stats::Stats;
use crate::stream::Stream;

/// Everything sessions share. Config and credentials are swapped whole on reload, so readers
/// never wait.
pub struct Context {
    config: ArcSwap<Config>,
    passwd: ArcSwap<PoolPasswd>,
    /// pool_hba.conf; `None` when it is missing or invalid (every client is then refused
    /// while `enable_pool_hba` is on).
    hba: ArcSwapOption<HbaFile>,
    /// SCRAM secrets derived from pool_passwd entries, so repeated logins skip PBKDF2.
    pub scram: ScramSecretCache,
    router: ArcSwap<RouterConfig>,
    /// Statement verdicts, cached by text across sessions.
    pub classifier: Arc<Classifier>,
    pub cancel: Arc<CancelRegistry>,
    /// What the primary's catalog said about function and relation names (routing).
    pub catalog: crate::session::catalog::CatalogCache,
    /// Each backend's health, role and replication delay (see `replication`).
    pub nodes: crate::replication::NodeStates,
    /// Client acceptor and backend connector; filled by `tls::init`, swapped by `reload_tls`.
    pub tls: crate::tls::Tls,
    /// Idle backend connections shared by all sessions.
    pub pool: Pool,
    /// `default_pool_size`: the bound on transaction-mode sessions' backend connections.
    pub conn_limits: crate::backend::ConnLimits,
    /// Client sessions allowed at once: `num_init_children - reserved_connections`.
    client_slots: Arc<Semaphore>,
    /// With `reserved_connections > 0`, clients past the limit are refused, not queued.
    refuse_when_full: bool,
    /// Clients waiting for a slot now.
    pub waiting_clients: AtomicUsize,
    /// Counters read by SHOW pool_*, PCP and /metrics.
    pub stats: Arc<Stats>,
    /// Client sessions now running (SHOW pool_processes / pool_pools, PCP proc_info).
    pub sessions: Arc<SessionRegistry>,
    /// Set when shutting down: /readyz fails so Kubernetes stops sending clients.
    pub draining: AtomicBool,
    /// Shutdown phases and the session tracker (see `lifecycle`).
    pub lifecycle: crate::lifecycle::Control,
    /// Notified by PCP `pcp_stop_pgpool`: the owner of the process lifecycle shuts down.
    pub shutdown_requested: tokio::sync::Notify,
    /// Notified by PCP `pcp_reload_config`: the owner of the configuration reloads it.
    pub reload_requested: tokio::sync::Notify,
    /// `pcp.conf` users (`-F`); empty refuses every PCP login.
    pcp_users: ArcSwap<PcpUsers>,
    /// When failed logins may be answered, per source address (`auth_failure_delay`).
    pub auth_delay: crate::auth::AuthDelay,
    /// `log_statement` (bit 0) and `log_per_node_statement` (bit 1), read on every request
    /// without loading the configuration.
    statement_logging: std::sync::atomic::AtomicU8,
    /// The process's logger, when this context owns it (the binary; not tests).
    logging: std::sync::OnceLock<crate::logging::LogHandle>,
}

fn statement_logging_bits(cfg: &Config) -> u8 {
    u8::from(cfg.log_statement) | (u8::from(cfg.log_per_node_statement) << 1)
}

impl Context {
    pub fn new(config: Config, passwd: PoolPasswd) -> Arc<Context> {
        let classifier = Classifier::new(ClassifyOptions {
            allow_sql_comments: config.allow_sql_comments,
            ignore_leading_white_space: config.ignore_leading_white_space,
        });
        let router = RouterConfig::from_config(&config);
        let logging = statement_logging_bits(&config);
        let nodes = crate::replication::NodeStates::new(config.backends.len());
        nodes.set_primary_mode(crate::replication::primary_mode(&config));
        let limits = PoolLimits {
            max_idle_per_node: (config.num_init_children as usize)
                .saturating_mul(config.max_pool as usize),
            idle_lifetime: idle_lifetime(&config),
            max_sessions: config.child_max_connections,
        };
        let slots = config
            .num_init_children
            .saturating_sub(config.reserved_connections)
            .max(1);
        Arc::new(Context {
            nodes,
            pool: Pool::new(limits, config.backends.len()),
            conn_limits: crate::backend::ConnLimits::new(config.default_pool_size as usize),
            client_slots: Arc::new(Semaphore::new(slots as usize)),
            refuse_when_full: config.reserved_connections > 0,
            waiting_clients: AtomicUsize::new(0),
            router: ArcSwap::from_pointee(router),
            classifier: Arc::new(classifier),
            config: ArcSwap::from_pointee(config),
            passwd: ArcSwap::from_pointee(passwd),
            hba: ArcSwapOption::empty(),
            scram: ScramSecretCache::default(),
            cancel: Arc::new(CancelRegistry::default()),
            catalog: Default::default(),
            tls: crate::tls::Tls::default(),
            stats: Arc::new(Stats::default()),
            sessions: Arc::new(SessionRegistry::default()),
            draining: AtomicBool::new(false),
            lifecycle: Default::default(),
            shutdown_requested: tokio::sync::Notify::new(),
            reload_requested: tokio::sync::Notify::new(),
            pcp_users: ArcSwap::from_pointee(PcpUsers::default()),
            auth_delay: Default::default(),
            statement_logging: std::sync::atomic::AtomicU8::new(logging),
            logging: std::sync::OnceLock::new(),
        })
    }

    /// Swaps in a reloaded configuration (sessions pick it up at their next decision). The
    /// cached catalog facts are dropped too: a reload is how changes made outside the proxy
    /// are picked up.
    pub fn replace_config(&self, config: Config) {
        self.nodes
            .set_primary_mode(crate::replication::primary_mode(&config));
        self.router
            .store(Arc::new(RouterConfig::from_config(&config)));
        self.statement_logging
            .store(statement_logging_bits(&config), Ordering::Relaxed);
        if let Some(h) = self.logging.get() {
            h.apply_config(&config);
        }
        self.config.store(Arc::new(config));
        self.catalog.clear();
    }

    /// Hands the process's logger to the context, so reloads re-apply the log settings.
    pub fn set_logging(&self, handle: crate::logging::LogHandle) {
        let _ = self.logging.set(handle);
    }

    /// (`log_statement`, `log_per_node_statement`).
    pub fn statement_logging(&self) -> (bool, bool) {
        let bits = self.statement_logging.load(Ordering::Relaxed);
        (bits & 1 != 0, bits & 2 != 0)
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The router's configuration, its `primary_node` following the node states: a new
    /// primary is swapped in by the first reader that sees it (sessions keep theirs).
    pub fn router_config(&self) -> Arc<RouterConfig> {
        let rc = self.router.load_full();
        match self.nodes.primary() {
            Some(p) if p != rc.primary_node => {
                let mut next = (*rc).clone();
                next.primary_node = p;
                let next = Arc::new(next);
                self.router.store(next.clone());
                next
            }
            _ => rc,
        }
    }

    /// Admits a client session: waits in FIFO order for a free slot, or with
    /// `reserved_connections > 0` refuses at once as Pgpool-II does.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, PgError> {
        let too_many = || PgError::fatal("53300", "Sorry, too many clients already");
        if self.refuse_when_full {
            return self
                .client_slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| too_many());
        }
        if let Ok(p) = self.client_slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        self.waiting_clients.fetch_add(1, Ordering::Relaxed);
        let permit = self.client_slots.clone().acquire_owned().await;
        self.waiting_clients.fetch_sub(1, Ordering::Relaxed);
        permit.map_err(|_| too_many())
    }

    pub fn passwd(&self) -> Arc<PoolPasswd> {
        self.passwd.load_full()
    }

    pub fn pcp_users(&self) -> Arc<PcpUsers> {
        self.pcp_users.load_full()
    }

    /// Installs the `pcp.conf` users (at start and on reload).
    pub fn set_pcp_users(&self, users: PcpUsers) {
        self.pcp_users.store(Arc::new(users));
    }

    /// Swaps in a new pool_passwd (start-up and reload).
    pub fn set_passwd(&self, passwd: PoolPasswd) {
        self.passwd.store(Arc::new(passwd));
    }

    /// Waits out `auth_failure_delay` after a failed login from `addr` (`None`: the Unix
    /// socket): asynchronously, in the failing connection only.
    pub async fn pause_after_failed_login(&self, addr: Option<std::net::IpAddr>) {
        let delay = Duration::from_millis(self.config().auth_failure_delay);
        let until = self.auth_delay.book(addr, delay, std::time::Instant::now());
        tokio::time::sleep_until(until.into()).await;
    }

    /// The pool_hba.conf in force, if a valid one was loaded.
    pub fn hba(&self) -> Option<Arc<HbaFile>> {
        self.hba.load_full()
    }

    /// Swaps in a new pool_hba.conf, or `None` when the file is missing or invalid.
    pub fn set_hba(&self, hba: Option<HbaFile>) {
        self.hba.store(hba.map(Arc::new));
    }
}

/// How long an idle cached connection may live: `connection_life_time`, and also
/// `child_life_time` (a Pgpool-II child closes its cache after waiting that long for a
/// client; here every idle connection ages out after it) — the shorter non-zero one.
fn idle_lifetime(cfg: &Config) -> Option<Duration> {
    [cfg.connection_life_time, cfg.child_life_time]
        .into_iter()
        .filter(|&s| s > 0)
        .min()
        .map(Duration::from_secs)
}

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
    let tcp = listen::bind_tcp(&cfg.listen_addresses, cfg.port).await?;
    let mut unix = Vec::new();
    for dir in &cfg.unix_socket_directories {
        if let Some((l, path)) = listen::bind_unix(dir, cfg.port, "Unix") {
            // The file is made under the umask; access is what the setting says.
            set_socket_mode(&path, cfg.unix_socket_permissions)?;
            unix.push(l);
        }
    }
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
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reap_idle(ctx.clone()));
    for l in tcp {
        let ctx = ctx.clone();
        let nodelay_inherited = listen::accepted_inherit_nodelay(&l);
        tasks.spawn(listen::accept_tcp(l, "client", move |s, peer| {
            let stream = match nodelay_inherited {
                true => Stream::Tcp(s),
                false => Stream::tcp(s),
            };
            ctx.lifecycle.spawn_session(crate::session::run(
                ctx.clone(),
                stream,
                ClientInfo::tcp(peer),
            ));
        }));
    }
    for l in unix {
        let ctx = ctx.clone();
        tasks.spawn(listen::accept_unix(l, "client", move |s| {
            ctx.lifecycle.spawn_session(crate::session::run(
                ctx.clone(),
                Stream::Unix(s),
                ClientInfo::local(),
            ));
        }));
    }
    while tasks.join_next().await.is_some() {}
}
