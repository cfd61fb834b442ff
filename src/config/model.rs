//! The typed `Config`. Field names are Pgpool-II's parameter names; defaults live in the
//! parameter table (`params.rs`), which `Config::default()` applies, so the documented
//! default and the effective one cannot drift apart.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::types::{
    BackendConfig, BackendSsl, DisableLbOnWrite, LogStandbyDelay, PoolMode, PoolModeOverride,
    RedirectList,
};

/// Declares `Config` and a private all-zero constructor the defaults are applied onto.
macro_rules! config_struct {
    ($(#[$meta:meta])* pub struct Config { $( $(#[$fmeta:meta])* pub $f:ident : $t:ty, )* }) => {
        $(#[$meta])*
        pub struct Config { $( $(#[$fmeta])* pub $f: $t, )* }
        impl Config {
            /// Every field zero/empty; only a base for applying the table's defaults.
            pub(crate) fn blank() -> Self {
                Self { $( $f: Default::default(), )* }
            }
        }
    };
}

config_struct! {
/// Pgpool-II's configuration, typed. Each field says: Pgpool-II name, default, meaning.
/// Durations are integers in the parameter's base unit (units such as `5min` are accepted
/// on input). Fields marked *pgpool-rs extension* are not Pgpool-II parameters.
#[derive(Clone, Debug)]
pub struct Config {
    // --- connections --------------------------------------------------------------
    /// `listen_addresses`, default `localhost`: TCP addresses; `*` = all, empty = no TCP.
    pub listen_addresses: Vec<String>,
    /// `port`, default 9999: the client port.
    pub port: u16,
    /// `unix_socket_directories` (alias `socket_dir`), default `/tmp`: dirs for `.s.PGSQL.<port>`.
    pub unix_socket_directories: Vec<String>,
    /// `unix_socket_permissions`, default 0777: mode of the client socket file.
    pub unix_socket_permissions: u32,
    /// `backend_*N`: configured backend slots (those with `backend_portN`), ordered by id.
    pub backends: Vec<BackendConfig>,
    /// `num_init_children`, default 32: maximum concurrent client sessions.
    pub num_init_children: u32,
    /// `max_pool`, default 4: cached backend connection slots per child (per client slot).
    pub max_pool: u32,
    /// `reserved_connections`, default 0: >0 refuses (53300) instead of queueing when full.
    pub reserved_connections: u32,
    /// `child_life_time` (s), default 300: an idle child's cache is dropped after this long.
    pub child_life_time: u64,
    /// `child_max_connections`, default 0: recycle a child after this many sessions (0 = never).
    pub child_max_connections: u32,
    /// `connection_life_time` (s), default 0: close a cached connection idle this long (0 = never).
    pub connection_life_time: u64,
    /// `client_idle_limit` (s), default 0: disconnect a client silent this long (0 = never).
    pub client_idle_limit: u64,
    /// `authentication_timeout` (s), default 60: limit for the startup/auth exchange.
    pub authentication_timeout: u64,
    /// `connection_cache`, default on: cache backend connections between sessions.
    pub connection_cache: bool,
    /// `reset_query_list`, default `ABORT;DISCARD ALL`: run before caching a connection.
    pub reset_query_list: Vec<String>,
    /// `pool_mode` (pgpool-rs extension), default `session`: `transaction` returns a
    /// session's backend connections to the cache at the end of each transaction.
    pub pool_mode: PoolMode,
    /// `pool_mode_overrides` (pgpool-rs extension), default '': `user@database:mode`
    /// items; the first that matches a session decides its mode instead of `pool_mode`.
    pub pool_mode_overrides: Vec<PoolModeOverride>,
    /// `default_pool_size` (pgpool-rs extension), default 20: backend connections per
    /// user, database and node that transaction-mode sessions may hold (idle ones included).
    pub default_pool_size: u32,
    /// `query_wait_timeout` (s, pgpool-rs extension), default 120: how long a
    /// transaction-mode client waits for a free backend connection (0 = no limit) before
    /// it gets `53300`.
    pub query_wait_timeout: u64,
    // --- load balancing -------------------------------------------------------------
    /// `load_balance_mode`, default on: send reads to the load-balance node.
    pub load_balance_mode: bool,
    /// `statement_level_load_balance`, default off: pick the read node per statement.
    pub statement_level_load_balance: bool,
    /// `disable_load_balance_on_write`, default `transaction`.
    pub disable_load_balance_on_write: DisableLbOnWrite,
    /// `write_function_list`, default '': function-name regexes that write (→ primary).
    pub write_function_list: Vec<String>,
    /// `read_only_function_list`, default '': if set, every other function counts as writing.
    pub read_only_function_list: Vec<String>,
    /// `primary_routing_query_pattern_list`, default '': whole-query regexes forcing the primary.
    pub primary_routing_query_pattern_list: Vec<String>,
    /// `user_redirect_preference_list`, default '': user-regex:node[(ratio)] items.
    pub user_redirect_preference_list: RedirectList,
    /// `database_redirect_preference_list`, default '': db-regex:node[(ratio)] items.
    pub database_redirect_preference_list: RedirectList,
    /// `app_name_redirect_preference_list`, default '': app-regex:node[(ratio)] items.
    pub app_name_redirect_preference_list: RedirectList,
    /// `allow_sql_comments`, default off: ignore comments when judging read-only-ness.
    pub allow_sql_comments: bool,
    /// `ignore_leading_white_space`, default on: skip leading blanks before that check.
    pub ignore_leading_white_space: bool,
    /// `check_unlogged_table`, default on: detect unlogged tables (→ primary).
    pub check_unlogged_table: bool,
    // --- replication delay ------------------------------------------------------------
    /// `delay_threshold` (bytes), default 0: a replica further behind gets no reads (0 = off).
    pub delay_threshold: u64,
    /// `delay_threshold_by_time` (ms), default 0: same in replay lag; overrides the byte limit.
    pub delay_threshold_by_time: u64,
    /// `prefer_lower_delay_standby`, default off: on lag, pick the least-delayed standby.
    pub prefer_lower_delay_standby: bool,
    /// `log_standby_delay`, default `if_over_threshold`.
    pub log_standby_delay: LogStandbyDelay,
    /// `sr_check_period` (s), default 10: delay check interval (0 = off).
    pub sr_check_period: u64,
    /// `sr_check_user`, default '': user for the delay check.
    pub sr_check_user: String,
    /// `sr_check_password`, default '': its password ('' = look up pool_passwd).
    pub sr_check_password: String,
    /// `sr_check_database`, default `postgres`.
    pub sr_check_database: String,
    /// `health_check_period` (s), default 0: health check interval (0 = off).
    pub health_check_period: u64,
    /// `health_check_timeout` (s), default 20.
    pub health_check_timeout: u64,
    /// `health_check_user`, default ''.
    pub health_check_user: String,
    /// `health_check_password`, default ''.
    pub health_check_password: String,
    /// `health_check_database`, default `postgres`.
    pub health_check_database: String,
    /// `health_check_max_retries`, default 0.
    pub health_check_max_retries: u32,
    /// `health_check_retry_delay` (s), default 1.
    pub health_check_retry_delay: u64,
    /// `connect_timeout` (ms), default 10000: also the backend connect timeout for sessions.
    pub connect_timeout: u64,
    // --- authentication and TLS -------------------------------------------------------
    /// `enable_pool_hba`, default off: authenticate clients with `pool_hba.conf`.
    pub enable_pool_hba: bool,
    /// `pool_passwd`, default `pool_passwd` (relative to the config dir; '' disables).
    pub pool_passwd: String,
    /// `allow_clear_text_frontend_auth`, default off: ask clients for a clear-text password.
    pub allow_clear_text_frontend_auth: bool,
    /// `ssl`, default off: TLS for clients.
    pub ssl: bool,
    /// `ssl_key`, default '': server private key (relative to the config dir).
    pub ssl_key: String,
    /// `ssl_cert`, default '': server certificate chain (relative to the config dir).
    pub ssl_cert: String,
    /// `ssl_ca_cert`, default '': CA for client certificates.
    pub ssl_ca_cert: String,
    /// `ssl_ca_cert_dir`, default ''.
    pub ssl_ca_cert_dir: String,
    /// `ssl_crl_file`, default ''.
    pub ssl_crl_file: String,
    /// `ssl_ciphers`, default `HIGH:MEDIUM:+3DES:!aNULL` (OpenSSL syntax; informational).
    pub ssl_ciphers: String,
    /// `ssl_prefer_server_ciphers`, default off.
    pub ssl_prefer_server_ciphers: bool,
    /// `ssl_min_protocol_version`, default `TLSv1.2`.
    pub ssl_min_protocol_version: String,
    /// `ssl_max_protocol_version`, default '' (no limit).
    pub ssl_max_protocol_version: String,
    /// `ssl_extra_names` (pgpool-rs extension), default '': extra DNS names for the
    /// self-signed certificate made when `ssl = on` and no `ssl_cert` is given.
    pub ssl_extra_names: Vec<String>,
    /// `ssl_generated_dir` (pgpool-rs extension), default `/opt/pgpool-II/tls` (where
    /// Pgpool-II's image keeps them): where the self-signed `tls.key`/`tls.crt` are looked
    /// for and written when `ssl_key`/`ssl_cert` are not set. Not writable: `tls/` next to
    /// the config file.
    pub ssl_generated_dir: String,
    /// `backend_ssl` (pgpool-rs extension), default `prefer`: TLS to the backends.
    pub backend_ssl: BackendSsl,
    /// `backend_ssl_ca_cert` (pgpool-rs extension), default '': CA to verify backends
    /// ('' = no verification, as Pgpool-II/libpq `sslmode=prefer`).
    pub backend_ssl_ca_cert: String,
    // --- PCP ------------------------------------------------------------------------------
    /// `pcp_listen_addresses`, default `localhost`.
    pub pcp_listen_addresses: Vec<String>,
    /// `pcp_port`, default 9898.
    pub pcp_port: u16,
    /// `pcp_socket_dir`, default `/tmp`.
    pub pcp_socket_dir: Vec<String>,
    /// `pcp_protocol_version` (pgpool-rs extension), default `4.4`: the `pcp_node_info`
    /// reply layout; `4.3` for PCP clients 4.0–4.3 (Debian 12 ships 4.3.5), which read
    /// the newer layout shifted by one field.
    pub pcp_protocol_version: String,
    // --- logging ------------------------------------------------------------------------
    /// `log_min_messages`, default `warning`.
    pub log_min_messages: String,
    /// `log_statement`, default off: log every statement.
    pub log_statement: bool,
    /// `log_per_node_statement`, default off: log each statement with the node that ran it.
    pub log_per_node_statement: bool,
    /// `log_connections`, default off.
    pub log_connections: bool,
    /// `log_disconnections`, default off.
    pub log_disconnections: bool,
    /// `log_line_prefix`, default `%m: %a pid %p: `: starts every text log line (`%m` time
    /// with ms, `%t` time, `%p` pid, `%a` application, `%u` user, `%d` database, `%%`).
    pub log_line_prefix: String,
    /// `log_format` (pgpool-rs extension), default `text`; `json`: one JSON object per line.
    pub log_format: String,
    // --- process ----------------------------------------------------------------------
    /// `pid_file_name`, default `/var/run/pgpool/pgpool.pid`.
    pub pid_file_name: String,
    // --- pgpool-rs extensions -----------------------------------------------------------
    /// `max_message_size` (bytes, pgpool-rs extension), default 1GB (PostgreSQL's own
    /// limit): longer client messages are refused with SQLSTATE 08P01 as soon as their
    /// length word arrives, and an extended-query batch larger than this without a Sync
    /// with 54000. It bounds what one client can make the proxy hold; buffers grow only
    /// with the bytes that actually arrive, never with a declared length.
    pub max_message_size: u64,
    /// `metrics_listen_addresses` (pgpool-rs extension), default `*`: metrics/health HTTP.
    pub metrics_listen_addresses: Vec<String>,
    /// `metrics_port` (pgpool-rs extension), default 9930; 0 = no metrics listener.
    pub metrics_port: u16,
    /// `worker_threads` (pgpool-rs extension), default 0: the threads that run sessions.
    /// 0 = one per CPU the process may use (its cgroup quota included); 1 = a single
    /// event loop, as PgBouncer runs — on a machine shared with the database it spends
    /// the least CPU per transaction, since no thread wakes another.
    pub worker_threads: u16,
    /// `shutdown_delay` (s, pgpool-rs extension), default 5: on SIGTERM keep accepting
    /// this long (readiness goes down first) so Kubernetes can remove the endpoint.
    pub shutdown_delay: u64,
    /// `drain_timeout` (s, pgpool-rs extension), default 20: then wait this long for
    /// sessions to finish before closing them. With `shutdown_delay` and the last close it
    /// fits inside Kubernetes' default 30 s grace period.
    pub drain_timeout: u64,
    /// `replica_connect_timeout` (ms, pgpool-rs extension), default 1000: connect timeout
    /// for replicas (a dead replica never holds a read longer), for background retries of a
    /// node marked down, and for the primary while it is marked down (new sessions fail fast).
    pub replica_connect_timeout: u64,
    /// `auth_failure_delay` (ms, pgpool-rs extension), default 500 (0 = off): a failed
    /// client login (SQLSTATE 28xxx) or PCP login is answered only after this pause, and
    /// failures from one source address are answered one per pause however many
    /// connections it opens (PostgreSQL's `auth_delay`). Other clients are not slowed.
    pub auth_failure_delay: u64,
    /// `read_your_writes` (pgpool-rs extension), default off: after a session commits a
    /// write, its reads go to a replica only once that replica has replayed the primary's
    /// WAL up to where it was at the session's first read after the write (checked on the
    /// session's own replica connection); else they wait or go to the primary.
    pub read_your_writes: bool,
    /// `read_your_writes_timeout` (ms, pgpool-rs extension), default 50: how long such a
    /// read waits for the replica to replay that far before it goes to the primary
    /// (0 = check once, never wait).
    pub read_your_writes_timeout: u64,
    // --- where it came from ---------------------------------------------------------------
    /// The file read, if any (`-f`).
    pub config_file: Option<PathBuf>,
    /// Directory relative paths are resolved against: the file's dir, or the cwd.
    pub config_dir: PathBuf,
    // --- checked and shown, not acted on ----------------------------------------------
    /// Pgpool-II parameters whose value is validated and shown (`PGPOOL SHOW`) but that
    /// nothing in pgpool-rs reads: `listen_backlog_multiplier`, `check_temp_table`,
    /// `dml_adaptive_object_relationship_list`, `failover_on_backend_error`,
    /// `ssl_ecdh_curve`, `client_min_messages`, `log_hostname`, `log_client_messages`,
    /// `logdir` (alias `work_dir`; no status file is written), `backend_clustering_mode`
    /// (only `streaming_replication`), `memory_cache_enabled` (only off). Name → value as
    /// shown.
    pub not_acted_on: BTreeMap<&'static str, String>,
}
}
