//! The parameter table: one row per non-indexed parameter with its name, default, context,
//! description, and how to set and show it. `Config::default()`, the parser, `show()`,
//! `items()` and `PGPOOL SET` are all driven by this table.

use super::model::Config;
use super::types::{parse_pool_mode_overrides, parse_redirect_list, CheckTempTable};
use super::values::{
    parse_bool, parse_choice, parse_enum, parse_escaped_list, parse_int, parse_list, parse_string,
    show_bool, show_enum, show_int, show_string, Invalid, Unit,
};

/// When a parameter may change, as in Pgpool-II.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Only at start-up.
    Init,
    /// At start-up and on reload (SIGHUP).
    Reload,
    /// Also per session with `PGPOOL SET`.
    Session,
}

pub(crate) struct ParamDef {
    pub name: &'static str,
    pub context: Context,
    pub default: &'static str,
    pub description: &'static str,
    /// Passwords: `show` prints `*****`.
    pub secret: bool,
    pub set: fn(&mut Config, &str) -> Result<(), Invalid>,
    pub show: fn(&Config) -> String,
}

/// One table row: `p!(field, Context, "default", kind, "description")`.
macro_rules! p {
    (@row $f:ident, $ctx:ident, $def:literal, $secret:literal, $parse:expr, $show:expr, $desc:literal) => {
        ParamDef {
            name: stringify!($f),
            context: Context::$ctx,
            default: $def,
            description: $desc,
            secret: $secret,
            set: |c, v| {
                c.$f = ($parse)(v)?;
                Ok(())
            },
            show: |c| ($show)(&c.$f),
        }
    };
    // A parameter nothing reads: its value is still checked, and kept as shown.
    (@unread $f:ident, $ctx:ident, $def:literal, $parse:expr, $show:expr, $desc:literal) => {
        ParamDef {
            name: stringify!($f),
            context: Context::$ctx,
            default: $def,
            description: $desc,
            secret: false,
            set: |c, v| {
                let shown = ($show)(&($parse)(v)?);
                c.not_acted_on.insert(stringify!($f), shown);
                Ok(())
            },
            show: |c| c.not_acted_on.get(stringify!($f)).cloned().unwrap_or_default(),
        }
    };
    ($f:ident, $ctx:ident, $def:literal, bool, $desc:literal) => {
        p!(@row $f, $ctx, $def, false, parse_bool, show_bool, $desc)
    };
    ($f:ident, $ctx:ident, $def:literal, int($min:expr, $max:expr, $unit:ident), $desc:literal) => {
        p!(@row $f, $ctx, $def, false,
            |v| parse_int(v, $min, $max, Unit::$unit), |x| show_int(x, Unit::$unit), $desc)
    };
    ($f:ident, $ctx:ident, $def:literal, octal, $desc:literal) => {
        p!(@row $f, $ctx, $def, false,
            |v| parse_int(v, 0, 0o777, Unit::None), |x: &u32| format!("{x:04o}"), $desc)
    };
    ($f:ident, $ctx:ident, $def:literal, string, $desc:literal) => {
        p!(@row $f, $ctx, $def, false, parse_string, show_string, $desc)
    };
    ($f:ident, $ctx:ident, $def:literal, secret, $desc:literal) => {
        p!(@row $f, $ctx, $def, true, parse_string, show_string, $desc)
    };
    ($f:ident, $ctx:ident, $def:literal, choice($($c:literal),*), $desc:literal) => {
        p!(@row $f, $ctx, $def, false, |v| parse_choice(v, &[$($c),*]), show_string, $desc)
    };
    ($f:ident, $ctx:ident, $def:literal, enum, $desc:literal) => {
        p!(@row $f, $ctx, $def, false, parse_enum, show_enum, $desc)
    };
    ($f:ident, $ctx:ident, $def:literal, list($d:literal), $desc:literal) => {
        p!(@row $f, $ctx, $def, false,
            |v| Ok::<_, Invalid>(parse_list(v, $d)), |x: &Vec<String>| x.join($d), $desc)
    };
    ($f:ident, $ctx:ident, $def:literal, escaped_list($d:literal), $desc:literal) => {
        p!(@row $f, $ctx, $def, false,
            |v| Ok::<_, Invalid>(parse_escaped_list(v, $d)),
            |x: &Vec<String>| x.iter().map(|s| s.replace($d, concat!("\\", $d)))
                .collect::<Vec<_>>().join($d), $desc)
    };
    ($f:ident, $ctx:ident, $def:literal, redirect, $desc:literal) => {
        p!(@row $f, $ctx, $def, false, parse_redirect_list,
            |x: &super::types::RedirectList| x.as_str().to_string(), $desc)
    };
}

/// Accepted only as `off`: pgpool-rs has no query cache, so `on` must stop start-up
/// rather than silently serve uncached results the user thinks are cached.
fn parse_memory_cache(v: &str) -> Result<bool, Invalid> {
    match parse_bool(v) {
        Ok(false) => Ok(false),
        _ => Err(super::values::invalid(
            "off (pgpool-rs does not implement the in-memory query cache)",
        )),
    }
}

// One row per parameter reads as a table; rustfmt would spread each over six lines.
#[rustfmt::skip]
pub(crate) static PARAMS: &[ParamDef] = &[
    p!(listen_addresses, Init, "localhost", list(","), "host name(s) or IP address(es) to listen on"),
    p!(port, Init, "9999", int(1024, 65535, None), "pgpool accepting port number"),
    p!(unix_socket_directories, Init, "/tmp", list(","), "pgpool socket directories"),
    p!(unix_socket_permissions, Init, "0777", octal, "access permissions of the Unix-domain socket"),
    p!(num_init_children, Init, "32", int(1, 100_000, None), "# of children initially pre-forked"),
    p!(max_pool, Init, "4", int(0, 1000, None), "max # of connection pool per child"),
    p!(reserved_connections, Init, "0", int(0, 100_000, None), "# of reserved connections"),
    p!(@unread listen_backlog_multiplier, Init, "2", |v| parse_int::<u32>(v, 1, 1000, Unit::None), |x: &u32| show_int(x, Unit::None), "listen backlog length = num_init_children * this"),
    p!(child_life_time, Init, "300", int(0, i32::MAX as i64, S), "if idle for this seconds, child exits"),
    p!(child_max_connections, Init, "0", int(0, i32::MAX as i64, None), "if max_connections received, child exits"),
    p!(connection_life_time, Init, "0", int(0, i32::MAX as i64, S), "if idle for this seconds, connection closes"),
    p!(client_idle_limit, Session, "0", int(0, i32::MAX as i64, S), "if idle for this seconds, client disconnected"),
    p!(authentication_timeout, Init, "60", int(0, i32::MAX as i64, S), "maximum time in seconds to complete client authentication"),
    p!(connection_cache, Init, "on", bool, "if true, cache connection pool"),
    p!(reset_query_list, Reload, "ABORT;DISCARD ALL", list(";"), "queries issued at the end of session"),
    p!(pool_mode, Reload, "session", enum, "pgpool-rs: session or transaction pooling"),
    p!(@row pool_mode_overrides, Reload, "", false, parse_pool_mode_overrides,
        |x: &Vec<super::types::PoolModeOverride>| x.iter().map(|o| o.source()).collect::<Vec<_>>().join(","),
        "pgpool-rs: user@database:mode items overriding pool_mode"),
    p!(default_pool_size, Init, "20", int(1, 100_000, None), "pgpool-rs: backend connections per user, database and node in transaction mode"),
    p!(query_wait_timeout, Reload, "120", int(0, 86_400, S), "pgpool-rs: seconds a transaction-mode client waits for a backend connection"),
    p!(load_balance_mode, Init, "on", bool, "if true, run in load balance mode"),
    p!(statement_level_load_balance, Reload, "off", bool, "if true, choose the load balance node per statement"),
    p!(disable_load_balance_on_write, Reload, "transaction", enum, "load balance behavior when write query is received"),
    p!(@unread dml_adaptive_object_relationship_list, Reload, "", parse_string, show_string, "list of object dependencies for dml_adaptive"),
    p!(write_function_list, Reload, "", list(","), "functions that write the database"),
    p!(read_only_function_list, Reload, "", list(","), "functions that do not write the database"),
    p!(primary_routing_query_pattern_list, Reload, "", escaped_list(";"), "query patterns that go to the primary"),
    p!(user_redirect_preference_list, Reload, "", redirect, "redirect by user name to a node"),
    p!(database_redirect_preference_list, Reload, "", redirect, "redirect by database name to a node"),
    p!(app_name_redirect_preference_list, Reload, "", redirect, "redirect by application name to a node"),
    p!(allow_sql_comments, Session, "off", bool, "if on, ignore SQL comments when judging load balancing"),
    p!(ignore_leading_white_space, Reload, "on", bool, "ignore leading white spaces"),
    p!(@unread check_temp_table, Reload, "catalog", parse_enum::<CheckTempTable>, show_enum, "how temporary tables are detected"),
    p!(check_unlogged_table, Session, "on", bool, "enable unlogged table check"),
    p!(delay_threshold, Reload, "0", int(0, i64::MAX, Bytes), "standby delay threshold in bytes"),
    p!(delay_threshold_by_time, Reload, "0", int(0, i32::MAX as i64, Ms), "standby delay threshold in time"),
    p!(prefer_lower_delay_standby, Reload, "off", bool, "prefer the least delayed standby when over the threshold"),
    p!(log_standby_delay, Reload, "if_over_threshold", enum, "how to log standby delay"),
    p!(sr_check_period, Reload, "10", int(0, i32::MAX as i64, S), "sr check period"),
    p!(sr_check_user, Reload, "", string, "sr check user"),
    p!(sr_check_password, Reload, "", secret, "password for sr check user"),
    p!(sr_check_database, Reload, "postgres", string, "database name for streaming replication check"),
    p!(health_check_period, Reload, "0", int(0, i32::MAX as i64, S), "health check period"),
    p!(health_check_timeout, Reload, "20", int(0, i32::MAX as i64, S), "health check timeout"),
    p!(health_check_user, Reload, "", string, "health check user"),
    p!(health_check_password, Reload, "", secret, "password for health check user"),
    p!(health_check_database, Reload, "postgres", string, "database name for health check"),
    p!(health_check_max_retries, Reload, "0", int(0, i32::MAX as i64, None), "maximum number of times to retry a failed health check"),
    p!(health_check_retry_delay, Reload, "1", int(0, i32::MAX as i64, S), "delay between health check retries"),
    p!(connect_timeout, Reload, "10000", int(0, i32::MAX as i64, Ms), "timeout value for connect() to backends"),
    p!(@unread failover_on_backend_error, Reload, "on", parse_bool, show_bool, "trigger fail over on backend error"),
    p!(enable_pool_hba, Reload, "off", bool, "if true, use pool_hba.conf for client authentication"),
    p!(pool_passwd, Init, "pool_passwd", string, "file name of pool_passwd for md5 authentication"),
    p!(allow_clear_text_frontend_auth, Reload, "off", bool, "allow to use clear text password authentication with clients"),
    p!(ssl, Init, "off", bool, "SSL support"),
    p!(ssl_key, Init, "", string, "SSL private key file"),
    p!(ssl_cert, Init, "", string, "SSL public certificate file"),
    p!(ssl_ca_cert, Init, "", string, "single PEM format file containing CA root certificate(s)"),
    p!(ssl_ca_cert_dir, Init, "", string, "directory containing CA root certificate(s)"),
    p!(ssl_crl_file, Init, "", string, "SSL certificate revocation list file"),
    p!(ssl_ciphers, Init, "HIGH:MEDIUM:+3DES:!aNULL", string, "allowed SSL ciphers"),
    p!(ssl_prefer_server_ciphers, Init, "off", bool, "use server's SSL cipher preferences"),
    p!(@unread ssl_ecdh_curve, Init, "prime256v1", parse_string, show_string, "the curve to use in ECDH key exchange"),
    p!(ssl_min_protocol_version, Init, "TLSv1.2", choice("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"), "minimum SSL/TLS protocol version"),
    p!(ssl_max_protocol_version, Init, "", choice("", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"), "maximum SSL/TLS protocol version"),
    p!(ssl_extra_names, Init, "", list(","), "pgpool-rs: extra DNS names for the self-signed certificate"),
    p!(ssl_generated_dir, Init, "/opt/pgpool-II/tls", string, "pgpool-rs: folder of the self-signed tls.key/tls.crt"),
    p!(backend_ssl, Init, "prefer", enum, "pgpool-rs: TLS to backends (prefer, disable, require)"),
    p!(backend_ssl_ca_cert, Init, "", string, "pgpool-rs: CA file to verify backend certificates"),
    p!(pcp_listen_addresses, Init, "localhost", list(","), "PCP process listen address"),
    p!(pcp_port, Init, "9898", int(1024, 65535, None), "PCP port # to bind"),
    p!(pcp_socket_dir, Init, "/tmp", list(","), "PCP socket directories"),
    p!(pcp_protocol_version, Init, "4.4", choice("4.3", "4.4"), "pgpool-rs: pcp_node_info reply layout (4.3 for pcp tools 4.0-4.3)"),
    p!(log_min_messages, Session, "warning", choice("debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning", "error", "log", "fatal", "panic"), "which messages are logged"),
    p!(@unread client_min_messages, Session, "notice", |v| parse_choice(v, &["debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error"]), show_string, "which messages are sent to the client"),
    p!(log_statement, Session, "off", bool, "if on, print all statements"),
    p!(log_per_node_statement, Session, "off", bool, "if on, print all statements with the node they ran on"),
    p!(log_connections, Reload, "off", bool, "if true, print incoming connections"),
    p!(log_disconnections, Reload, "off", bool, "if true, print closing connections"),
    p!(@unread log_hostname, Reload, "off", parse_bool, show_bool, "if true, resolve hostname for ps and log"),
    p!(@unread log_client_messages, Session, "off", parse_bool, show_bool, "if on, print client messages"),
    p!(log_line_prefix, Reload, "%m: %a pid %p: ", string, "printf-style string to output at beginning of each log line"),
    p!(log_format, Init, "text", choice("text", "json"), "pgpool-rs: log line format (text as Pgpool-II, or json)"),
    p!(pid_file_name, Init, "/var/run/pgpool/pgpool.pid", string, "path to pid file"),
    p!(@unread logdir, Init, "/tmp", parse_string, show_string, "directory of the node status file"),
    p!(@unread backend_clustering_mode, Init, "streaming_replication", |v| parse_choice(v, &["streaming_replication"]), show_string, "backend clustering mode (pgpool-rs: streaming_replication only)"),
    p!(@unread memory_cache_enabled, Init, "off", parse_memory_cache, show_bool, "if on, use the memory cache functionality (pgpool-rs: off only)"),
    p!(max_message_size, Init, "1GB", int(1024, i32::MAX as i64, Bytes), "pgpool-rs: largest client message accepted"),
    p!(metrics_listen_addresses, Init, "*", list(","), "pgpool-rs: metrics and health HTTP listen addresses"),
    p!(metrics_port, Init, "9930", int(0, 65535, None), "pgpool-rs: metrics and health HTTP port (0 = off)"),
    p!(worker_threads, Init, "0", int(0, 1024, None), "pgpool-rs: threads that run sessions (0 = one per CPU available, 1 = one event loop)"),
    p!(shutdown_delay, Reload, "5", int(0, 3600, S), "pgpool-rs: seconds to keep accepting after SIGTERM"),
    p!(drain_timeout, Reload, "20", int(0, 86_400, S), "pgpool-rs: seconds to wait for sessions to end on shutdown"),
    p!(replica_connect_timeout, Reload, "1000", int(0, i32::MAX as i64, Ms), "pgpool-rs: connect timeout for replicas, and for the primary while it is down"),
    p!(read_your_writes, Reload, "off", bool, "pgpool-rs: after a write, read from a replica only once it has replayed that write"),
    p!(read_your_writes_timeout, Reload, "50", int(0, 60_000, Ms), "pgpool-rs: how long a read waits for the replica to replay the session's writes"),
    p!(auth_failure_delay, Reload, "500", int(0, 60_000, Ms), "pgpool-rs: pause before answering a failed client or PCP login, per source address (0 = off)"),
];

pub(crate) fn find(name: &str) -> Option<&'static ParamDef> {
    PARAMS.iter().find(|p| p.name == name)
}

/// Whether `PGPOOL SET name` may change this parameter for one session.
pub fn is_session_settable(name: &str) -> bool {
    context(name) == Some(Context::Session)
}

/// The context of a parameter (indexed backend parameters are `Reload`), or None if unknown.
pub fn context(name: &str) -> Option<Context> {
    if let Some(p) = find(name) {
        return Some(p.context);
    }
    super::names::split_backend_name(name)
        .map(|_| Context::Reload)
        .or_else(|| super::names::health_check_name(name).map(|_| Context::Reload))
}
