//! The state every part of the running proxy shares: the configuration snapshot and
//! credentials (swapped whole on reload), the backend pool, node states, counters, the
//! session registry and the shutdown phase. It sits low in the module graph: it imports only
//! the layers below it (config, auth, backend, router, stats, tls, protocol, logging), so the
//! session, admin, replication and lifecycle code above can all take a `Context` without
//! importing one another through it.

pub mod catalog;
pub mod control;
pub mod nodes;
pub mod primary;
pub mod registry;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::auth::passwd::PoolPasswd;
use crate::auth::pcp_conf::PcpUsers;
use crate::auth::{AuthDelay, HbaFile, ScramSecretCache};
use crate::backend::{ConnLimits, Pool, PoolLimits};
use crate::config::Config;
use crate::logging::LogHandle;
use crate::protocol::PgError;
use crate::router::{Classifier, ClassifyOptions, RouterConfig};
use crate::stats::Stats;
use crate::tls::Tls;

use catalog::CatalogCache;
use control::Control;
use nodes::NodeStates;
use primary::primary_mode;
use registry::SessionRegistry;

/// Everything the running proxy shares. Config and credentials are swapped whole on reload,
/// so readers never wait.
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
    /// What the primary's catalog said about function and relation names (routing).
    pub catalog: CatalogCache,
    /// Each backend's health, role and replication delay (see `replication`).
    pub nodes: NodeStates,
    /// Client acceptor and backend connector; filled by `tls::init`, swapped by `reload_tls`.
    pub tls: Tls,
    /// Idle backend connections shared by all sessions.
    pub pool: Pool,
    /// `default_pool_size`: the bound on transaction-mode sessions' backend connections.
    pub conn_limits: ConnLimits,
    /// Client sessions allowed at once: `num_init_children - reserved_connections`.
    client_slots: Arc<Semaphore>,
    /// With `reserved_connections > 0`, clients past the limit are refused, not queued.
    refuse_when_full: bool,
    /// Counters read by SHOW pool_*, PCP and /metrics.
    pub stats: Arc<Stats>,
    /// Client sessions now running (SHOW pool_processes / pool_pools, PCP proc_info).
    pub sessions: Arc<SessionRegistry>,
    /// Set when shutting down: /readyz fails so Kubernetes stops sending clients.
    draining: AtomicBool,
    /// Shutdown phases and the session tracker (see `lifecycle`).
    pub lifecycle: Control,
    /// Notified by PCP `pcp_stop_pgpool`: the owner of the process lifecycle shuts down.
    shutdown_requested: Notify,
    /// Notified by PCP `pcp_reload_config`: the owner of the configuration reloads it.
    reload_requested: Notify,
    /// `pcp.conf` users (`-F`); empty refuses every PCP login.
    pcp_users: ArcSwap<PcpUsers>,
    /// When failed logins may be answered, per source address (`auth_failure_delay`).
    pub auth_delay: AuthDelay,
    /// `log_statement` (bit 0) and `log_per_node_statement` (bit 1), read on every request
    /// without loading the configuration.
    statement_logging: AtomicU8,
    /// The process's logger, when this context owns it (the binary; not tests).
    logging: OnceLock<LogHandle>,
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
        let nodes = NodeStates::new(config.backends.len());
        nodes.set_primary_mode(primary_mode(&config));
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
            conn_limits: ConnLimits::new(config.default_pool_size as usize),
            client_slots: Arc::new(Semaphore::new(slots as usize)),
            refuse_when_full: config.reserved_connections > 0,
            router: ArcSwap::from_pointee(router),
            classifier: Arc::new(classifier),
            config: ArcSwap::from_pointee(config),
            passwd: ArcSwap::from_pointee(passwd),
            hba: ArcSwapOption::empty(),
            scram: ScramSecretCache::default(),
            catalog: Default::default(),
            tls: Tls::default(),
            stats: Arc::new(Stats::default()),
            sessions: Arc::new(SessionRegistry::default()),
            draining: AtomicBool::new(false),
            lifecycle: Default::default(),
            shutdown_requested: Notify::new(),
            reload_requested: Notify::new(),
            pcp_users: ArcSwap::from_pointee(PcpUsers::default()),
            auth_delay: Default::default(),
            statement_logging: AtomicU8::new(logging),
            logging: OnceLock::new(),
        })
    }

    /// Swaps in a reloaded configuration (sessions pick it up at their next decision). The
    /// cached catalog facts are dropped too: a reload is how changes made outside the proxy
    /// are picked up.
    pub fn replace_config(&self, config: Config) {
        self.nodes.set_primary_mode(primary_mode(&config));
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
    pub fn set_logging(&self, handle: LogHandle) {
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
        // Counted while waiting, also when the client leaves before a slot frees up.
        let waiting = &self.stats.sessions_waiting;
        waiting.fetch_add(1, Ordering::Relaxed);
        let _counted = scopeguard(|| {
            waiting.fetch_sub(1, Ordering::Relaxed);
        });
        self.client_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| too_many())
    }

    /// Marks the proxy as shutting down: from now on `/readyz` fails.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Asks the owner of the process lifecycle for a smart shutdown (PCP `pcp_stop_pgpool`).
    pub fn request_shutdown(&self) {
        // Wakes a waiter now, and leaves a permit for one that is between two waits.
        self.shutdown_requested.notify_waiters();
        self.shutdown_requested.notify_one();
    }

    /// Resolves when a shutdown was requested with [`Context::request_shutdown`].
    pub fn shutdown_requested(&self) -> Notified<'_> {
        self.shutdown_requested.notified()
    }

    /// Asks the owner of the configuration to reload it (PCP `pcp_reload_config`).
    pub fn request_reload(&self) {
        self.reload_requested.notify_waiters();
    }

    /// Resolves when a reload was requested with [`Context::request_reload`].
    pub fn reload_requested(&self) -> Notified<'_> {
        self.reload_requested.notified()
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

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
