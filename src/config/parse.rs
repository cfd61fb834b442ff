//! The parse loop (Pgpool-II's `ParseConfigFile`): KEY, optional `=`, then any token as
//! the value; `include` handled on the spot. Assignments, from files and from the
//! environment alike, go through `Builder::apply`, which knows the table, the indexed
//! backend parameters, aliases, renamed and unsupported names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::lexer::{tokenize, TokenKind};
use super::model::Config;
use super::params::{self, PARAMS};
use super::types::{BackendConfig, BackendFlag, HealthCheckOverrides};
use super::values::{parse_int, parse_real, Invalid, Unit};
use super::{ConfigError, Location};

/// Pgpool-II's limit on nested `include` directives.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 10;

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
const RENAMED: &[(&str, &str)] = &[
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
const UNSUPPORTED: &[&str] = &[
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
    "unix_socket_permissions",
    "listen_backlog_multiplier",
    "dml_adaptive_object_relationship_list",
    "check_unlogged_table",
    "failover_on_backend_error",
    "ssl_ecdh_curve",
    "client_min_messages",
    "log_hostname",
    "log_client_messages",
];

/// Per-node variants (`health_check_period0`) Pgpool-II accepts; pgpool-rs reads only
/// the index-free parameter.
const UNSUPPORTED_INDEXED: &[&str] = &[
    "backend_data_directory",
    "connect_timeout",
    "heartbeat_hostname",
    "heartbeat_port",
    "heartbeat_device",
    "hostname",
    "wd_port",
    "pgpool_port",
];

/// A backend slot while values arrive; it becomes a `BackendConfig` iff its port is set.
#[derive(Debug, Clone, Default)]
struct Slot {
    hostname: String,
    port: Option<u16>,
    weight: f64,
    flag: BackendFlag,
    application_name: String,
    health_check: HealthCheckOverrides,
}

/// Accumulates assignments in order (the last one wins) and collects warnings.
pub(crate) struct Builder {
    config: Config,
    slots: BTreeMap<usize, Slot>,
    pub warnings: Vec<String>,
    pub unsupported: Vec<String>,
}

impl Builder {
    pub fn new(config_file: Option<PathBuf>, config_dir: PathBuf) -> Self {
        Self {
            config: Config {
                config_file,
                config_dir,
                ..Config::default()
            },
            slots: BTreeMap::new(),
            warnings: Vec::new(),
            unsupported: Vec::new(),
        }
    }

    /// Applies one `name = value`. Unknown names warn; invalid values are errors.
    pub fn apply(&mut self, name: &str, value: &str, loc: &Location) -> Result<(), ConfigError> {
        let invalid = |e: Invalid| ConfigError::InvalidValue {
            loc: loc.clone(),
            name: name.to_string(),
            value: value.to_string(),
            accepted: e.accepted,
        };
        if let Some(def) = params::find(name) {
            (def.set)(&mut self.config, value).map_err(invalid)?;
            if PARSED_NOT_IMPLEMENTED.contains(&name) {
                self.ignored(name, loc);
            }
            return Ok(());
        }
        if name == "use_watchdog" && super::values::parse_bool(value).unwrap_or(false) {
            return Err(ConfigError::Invalid(format!(
                "{loc}: use_watchdog = on: pgpool-rs has no watchdog (no virtual IP, no \
                 consensus); run several pgpool-rs pods behind one Kubernetes Service instead, \
                 and set use_watchdog = off"
            )));
        }
        if let Some((_, target, note)) = ALIASES.iter().find(|(a, _, _)| *a == name) {
            if let Some(note) = note {
                self.warnings
                    .push(format!("{loc}: parameter \"{name}\" {note}"));
            }
            let def = params::find(target).ok_or_else(|| missing(target))?;
            return (def.set)(&mut self.config, value).map_err(invalid);
        }
        if let Some(parsed) = backend_name(name) {
            let (field, index) = parsed;
            let id = index.map_err(|reason| ConfigError::BadIndex {
                loc: loc.clone(),
                name: name.to_string(),
                reason: reason.to_string(),
            })?;
            return self.apply_backend(field, id, value).map_err(invalid);
        }
        if let Some((base, id)) = health_check_name(name) {
            let slot = self.slots.entry(id).or_default();
            return apply_health_override(&mut slot.health_check, base, value).map_err(invalid);
        }
        self.unknown(name, loc);
        Ok(())
    }

    fn apply_backend(&mut self, field: BackendField, id: usize, v: &str) -> Result<(), Invalid> {
        let slot = self.slots.entry(id).or_default();
        match field {
            BackendField::Hostname => slot.hostname = v.to_string(),
            BackendField::Port => slot.port = Some(parse_int(v, 1024, 65535, Unit::None)?),
            BackendField::Weight => slot.weight = parse_real(v, 0.0, 100_000_000.0)?,
            BackendField::Flag => slot.flag = BackendFlag::parse(v)?,
            BackendField::ApplicationName => slot.application_name = v.to_string(),
        }
        Ok(())
    }

    fn unknown(&mut self, name: &str, loc: &Location) {
        if let Some((_, new)) = RENAMED.iter().find(|(old, _)| *old == name) {
            self.warnings.push(format!(
                "{loc}: parameter \"{name}\" was renamed to \"{new}\" in Pgpool-II; \
                 this setting is ignored, use \"{new}\""
            ));
            return;
        }
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
        let indexed = base.len() < name.len() && UNSUPPORTED_INDEXED.contains(&base);
        if UNSUPPORTED.contains(&name) || indexed {
            self.ignored(name, loc);
            return;
        }
        let hint = suggestion(name)
            .map(|s| format!(" (did you mean \"{s}\"?)"))
            .unwrap_or_default();
        self.warnings.push(format!(
            "{loc}: unrecognized configuration parameter \"{name}\"{hint}"
        ));
    }

    /// A Pgpool-II parameter that is accepted but has no effect in pgpool-rs.
    fn ignored(&mut self, name: &str, loc: &Location) {
        self.unsupported.push(format!("{name} ({loc})"));
    }

    pub fn finish(mut self) -> (Config, Vec<String>, Vec<String>) {
        // One warning names them all, so a long Pgpool-II file does not bury the log.
        if !self.unsupported.is_empty() {
            self.warnings.push(format!(
                "these Pgpool-II parameters are accepted but ignored by pgpool-rs (not \
                 implemented): {}",
                self.unsupported.join(", ")
            ));
        }
        self.config.backends = self
            .slots
            .into_iter()
            .filter_map(|(id, s)| {
                s.port.map(|port| BackendConfig {
                    id,
                    hostname: s.hostname,
                    port,
                    weight: s.weight,
                    flag: s.flag,
                    application_name: s.application_name,
                    health_check: s.health_check,
                })
            })
            .collect();
        (self.config, self.warnings, self.unsupported)
    }
}

fn missing(name: &str) -> ConfigError {
    ConfigError::Invalid(format!(
        "internal: alias target \"{name}\" is not in the table"
    ))
}

/// A name that matches a known parameter only when case is ignored (Pgpool-II matches
/// case-sensitively, so `SR_CHECK_PERIOD` would silently do nothing).
fn suggestion(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if let Some(p) = PARAMS.iter().find(|p| p.name == lower) {
        return Some(p.name.to_string());
    }
    if ALIASES.iter().any(|(a, _, _)| *a == lower) || backend_name(&lower).is_some() {
        return Some(lower);
    }
    None
}

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

/// Sets one per-node health check value, with the same bounds as the global parameter.
fn apply_health_override(h: &mut HealthCheckOverrides, base: &str, v: &str) -> Result<(), Invalid> {
    let secs = |v: &str| parse_int::<u64>(v, 0, i32::MAX as i64, Unit::S);
    match base {
        "health_check_period" => h.period = Some(secs(v)?),
        "health_check_timeout" => h.timeout = Some(secs(v)?),
        "health_check_retry_delay" => h.retry_delay = Some(secs(v)?),
        "health_check_max_retries" => {
            h.max_retries = Some(parse_int(v, 0, i32::MAX as i64, Unit::None)?)
        }
        "health_check_user" => h.user = Some(v.to_string()),
        "health_check_password" => h.password = Some(v.to_string()),
        _ => h.database = Some(v.to_string()),
    }
    Ok(())
}

/// For `context()`: a valid indexed backend parameter name.
pub(crate) fn split_backend_name(name: &str) -> Option<(BackendField, usize)> {
    match backend_name(name)? {
        (field, Ok(id)) => Some((field, id)),
        _ => None,
    }
}

/// Parses one file's text into `b`; `path` names it in messages and anchors relative
/// `include` paths.
pub(crate) fn parse_text(
    b: &mut Builder,
    text: &str,
    path: &Path,
    depth: usize,
) -> Result<(), ConfigError> {
    let file = path.display().to_string();
    let tokens = tokenize(text);
    let mut it = tokens.iter();
    while let Some(tok) = it.next() {
        if tok.kind == TokenKind::Eol {
            continue;
        }
        let loc = Location::at(&file, tok.line);
        let syntax = |token: &str| ConfigError::Syntax {
            loc: loc.clone(),
            token: token.to_string(),
        };
        if tok.kind != TokenKind::Key {
            return Err(syntax(&tok.text));
        }
        let mut value = it.next();
        if value.is_some_and(|v| v.kind == TokenKind::Equals) {
            value = it.next();
        }
        let value = value.ok_or_else(|| syntax("end of file"))?;
        let text = match value.kind {
            TokenKind::Eol => "",
            TokenKind::Other if value.text == "'" => return Err(syntax("unterminated string")),
            _ => value.text.as_str(),
        };
        if tok.text == "include" {
            include(b, text, path, depth, &loc)?;
        } else {
            b.apply(&tok.text, text, &loc)?;
        }
    }
    Ok(())
}

fn include(
    b: &mut Builder,
    target: &str,
    from: &Path,
    depth: usize,
    loc: &Location,
) -> Result<(), ConfigError> {
    if depth + 1 > MAX_INCLUDE_DEPTH {
        return Err(ConfigError::IncludeDepth { loc: loc.clone() });
    }
    let target = Path::new(target);
    let path = if target.is_absolute() {
        target.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new("")).join(target)
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
        path: path.clone(),
        source,
    })?;
    parse_text(b, &text, &path, depth + 1)
}

/// `PGPOOL_PARAMS_<NAME>=value` sets `<name>` (lower-cased) to the value verbatim, after
/// the file, so the environment wins.
pub(crate) fn apply_env(b: &mut Builder, env: &[(String, String)]) -> Result<(), ConfigError> {
    for (key, value) in env {
        let Some(name) = key.strip_prefix("PGPOOL_PARAMS_") else {
            continue;
        };
        let loc = Location::env(key);
        if name.is_empty() {
            b.warnings.push(format!("{loc}: no parameter name"));
            continue;
        }
        b.apply(&name.to_ascii_lowercase(), value, &loc)?;
    }
    Ok(())
}
