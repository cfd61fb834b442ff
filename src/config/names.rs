//! The parameter names pgpool-rs recognises besides the typed table: the indexed
//! `backend_*N` and `health_check_*N` families, aliases, names Pgpool-II renamed, and
//! Pgpool-II parameters that are accepted but not acted on. Both the table (for a
//! parameter's context) and the parse loop read these, so they sit below both.

/// Highest backend slot number Pgpool-II accepts (`MAX_NUM_BACKENDS` - 1).
const MAX_BACKEND_ID: usize = 127;

/// The indexed `backend_*N` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendField {
    Hostname,
    Port,
    Weight,
    Flag,
    ApplicationName,
}

const BACKEND_FIELDS: &[(&str, BackendField)] = &[
    ("backend_hostname", BackendField::Hostname),
    ("backend_port", BackendField::Port),
    ("backend_weight", BackendField::Weight),
    ("backend_flag", BackendField::Flag),
    ("backend_application_name", BackendField::ApplicationName),
];

/// Old names that Pgpool-II silently stopped reading; we say what replaced them.
pub(crate) const RENAMED: &[(&str, &str)] = &[
    ("black_function_list", "write_function_list"),
    ("white_function_list", "read_only_function_list"),
    (
        "black_query_pattern_list",
        "primary_routing_query_pattern_list",
    ),
    (
        "black_memqcache_table_list",
        "cache_unsafe_memqcache_table_list",
    ),
    (
        "white_memqcache_table_list",
        "cache_safe_memqcache_table_list",
    ),
    ("master_slave_mode", "backend_clustering_mode"),
    ("master_slave_sub_mode", "backend_clustering_mode"),
    ("replication_mode", "backend_clustering_mode"),
];

/// Alternative names applied to a table parameter: `(alias, parameter, note)`.
pub(crate) const ALIASES: &[(&str, &str, Option<&str>)] = &[
    (
        "socket_dir",
        "unix_socket_directories",
        Some("was renamed to \"unix_socket_directories\" in Pgpool-II 4.4; applied as that"),
    ),
    ("work_dir", "logdir", None),
];

/// Pgpool-II parameters pgpool-rs reads but does not act on; reported apart from typos.
pub(crate) const UNSUPPORTED: &[&str] = &[
    "unix_socket_group",
    "serialize_accept",
    "process_management_mode",
    "process_management_strategy",
    "min_spare_children",
    "max_spare_children",
    "failover_on_backend_shutdown",
    "log_destination",
    "log_error_verbosity",
    "notice_per_node_statement",
    "log_backend_messages",
    "log_pcp_processes",
    "logging_collector",
    "log_directory",
    "log_filename",
    "log_rotation_age",
    "log_rotation_size",
    "log_truncate_on_rotation",
    "log_file_mode",
    "syslog_facility",
    "syslog_ident",
    "ssl_dh_params_file",
    "ssl_passphrase_command",
    "memqcache_method",
    "memqcache_total_size",
    "memqcache_max_num_cache",
    "memqcache_expire",
    "memqcache_maxcache",
    "memqcache_cache_block_size",
    "memqcache_auto_cache_invalidation",
    "memqcache_oiddir",
    "memqcache_memcached_host",
    "memqcache_memcached_port",
    "cache_safe_memqcache_table_list",
    "cache_unsafe_memqcache_table_list",
    "relcache_expire",
    "relcache_size",
    "relcache_query_target",
    "enable_shared_relcache",
    "enable_consensus_with_half_votes",
    "use_watchdog",
    "wd_ipc_socket_dir",
    "wd_port",
    "delegate_ip",
    "failover_command",
    "failback_command",
    "follow_primary_command",
    "search_primary_node_timeout",
    "detach_false_primary",
    "auto_failback",
    "auto_failback_interval",
    "recovery_user",
    "recovery_password",
    "recovery_1st_stage_command",
    "recovery_2nd_stage_command",
    "recovery_timeout",
    "client_idle_limit_in_recovery",
    "insert_lock",
    "lobj_lock_table",
    "replicate_select",
    "replication_stop_on_mismatch",
    "failover_if_affected_tuples_mismatch",
    "allow_multiple_failover_requests_from_node",
    "failover_require_consensus",
    "health_check_test",
    "pool_passwd_key",
    "trusted_servers",
    "trusted_server_command",
    "ping_path",
    "backend_data_directory",
    "clear_memqcache_on_escalation",
    "failover_when_quorum_exists",
    "if_cmd_path",
    "if_up_cmd",
    "if_down_cmd",
    "arping_path",
    "arping_cmd",
    "wd_priority",
    "wd_authkey",
    "wd_escalation_command",
    "wd_de_escalation_command",
    "wd_monitoring_interfaces_list",
    "wd_lifecheck_method",
    "wd_interval",
    "wd_heartbeat_keepalive",
    "wd_heartbeat_deadtime",
    "wd_life_point",
    "wd_lifecheck_query",
    "wd_lifecheck_dbname",
    "wd_lifecheck_user",
    "wd_lifecheck_password",
    "wd_remove_shutdown_nodes",
    "wd_lost_node_removal_timeout",
    "wd_no_show_node_removal_timeout",
];

/// Parameters of the table that pgpool-rs parses (so values are still checked, shown and
/// settable) but does not act on: setting one is reported like an unsupported one.
pub(crate) const PARSED_NOT_IMPLEMENTED: &[&str] = &[
    "listen_backlog_multiplier",
    "dml_adaptive_object_relationship_list",
    "failover_on_backend_error",
    "ssl_ecdh_curve",
    "client_min_messages",
    "log_hostname",
    "log_client_messages",
];

/// Per-node variants (`health_check_period0`) Pgpool-II accepts; pgpool-rs reads only
/// the index-free parameter.
pub(crate) const UNSUPPORTED_INDEXED: &[&str] = &[
    "backend_data_directory",
    "connect_timeout",
    "heartbeat_hostname",
    "heartbeat_port",
    "heartbeat_device",
    "hostname",
    "wd_port",
    "pgpool_port",
];

/// Splits `backend_portN` into its field and index. `Some((field, Err(reason)))` when the
/// base name matches but the index is missing or out of range.
pub(crate) fn backend_name(name: &str) -> Option<(BackendField, Result<usize, &'static str>)> {
    BACKEND_FIELDS.iter().find_map(|(base, field)| {
        let digits = name.strip_prefix(base)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let index = match digits.parse::<usize>() {
            _ if digits.is_empty() => Err("expects the index value"),
            Ok(i) if i <= MAX_BACKEND_ID => Ok(i),
            _ => Err("has an invalid index value (0 .. 127)"),
        };
        Some((*field, index))
    })
}

/// The per-node health check parameters (`health_check_periodN` …).
const HEALTH_CHECK_INDEXED: &[&str] = &[
    "health_check_period",
    "health_check_timeout",
    "health_check_user",
    "health_check_password",
    "health_check_database",
    "health_check_max_retries",
    "health_check_retry_delay",
];

/// Splits `health_check_timeout1` into `health_check_timeout` and 1.
pub(crate) fn health_check_name(name: &str) -> Option<(&'static str, usize)> {
    HEALTH_CHECK_INDEXED.iter().find_map(|base| {
        let digits = name.strip_prefix(base)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id = digits.parse::<usize>().ok()?;
        (id <= MAX_BACKEND_ID).then_some(*base).map(|b| (b, id))
    })
}

/// A valid indexed backend parameter name.
pub(crate) fn split_backend_name(name: &str) -> Option<(BackendField, usize)> {
    match backend_name(name)? {
        (field, Ok(id)) => Some((field, id)),
        _ => None,
    }
}
