//! Reading a `Config` back out (`PGPOOL SHOW`, `SHOW pool_status`, `pgpool check`),
//! `PGPOOL SET`, paths relative to the config file, and whole-config validation.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Location};
use super::model::Config;
use super::names::{split_backend_name, BackendField};
use super::params::{self, PARAMS};
use super::values::show_real;

impl Default for Config {
    /// Pgpool-II's defaults (and ours for the extensions), from the parameter table.
    fn default() -> Self {
        let mut c = Config::blank();
        for p in PARAMS {
            // Every default is checked to parse by a test; nothing here comes from a user.
            let _ = (p.set)(&mut c, p.default);
        }
        c.config_dir = PathBuf::from(".");
        c
    }
}

/// Names accepted by `show`/`set` in place of a table parameter.
fn canonical(name: &str) -> &str {
    match name {
        "socket_dir" => "unix_socket_directories",
        "work_dir" => "logdir",
        other => other,
    }
}

impl Config {
    /// `ShowOption` formatting of one parameter: `on`/`off`, `5min`, `*****` for
    /// passwords, `backend_flag0` → `ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER`. None if unknown.
    pub fn show(&self, name: &str) -> Option<String> {
        let name = canonical(name);
        if let Some(p) = params::find(name) {
            return Some(if p.secret {
                "*****".to_string()
            } else {
                (p.show)(self)
            });
        }
        let (field, id) = split_backend_name(name)?;
        let b = self.backends.iter().find(|b| b.id == id);
        Some(match field {
            BackendField::Hostname => b.map(|b| b.hostname.clone()).unwrap_or_default(),
            BackendField::Port => b.map_or(0, |b| b.port).to_string(),
            BackendField::Weight => show_real(&b.map_or(0.0, |b| b.weight)),
            BackendField::Flag => b.map(|b| b.flag).unwrap_or_default().show(),
            BackendField::ApplicationName => {
                b.map(|b| b.application_name.clone()).unwrap_or_default()
            }
        })
    }

    /// Every parameter as (name, shown value, description), table order, then the
    /// configured backend slots; for `PGPOOL SHOW ALL`, `SHOW pool_status`, PCP.
    pub fn items(&self) -> Vec<(String, String, String)> {
        let mut items: Vec<(String, String, String)> = PARAMS
            .iter()
            .map(|p| {
                let value = self.show(p.name).unwrap_or_default();
                (p.name.to_string(), value, p.description.to_string())
            })
            .collect();
        for b in &self.backends {
            let fields = [
                ("backend_hostname", "hostname"),
                ("backend_port", "port number"),
                ("backend_weight", "weight"),
                ("backend_flag", "flag"),
                ("backend_application_name", "application_name"),
            ];
            for (base, what) in fields {
                let name = format!("{base}{}", b.id);
                let value = self.show(&name).unwrap_or_default();
                items.push((name, value, format!("backend #{} {what}", b.id)));
            }
        }
        items
    }

    /// Sets one non-indexed parameter, as `PGPOOL SET` does. Whether the parameter may be
    /// changed in a session is the caller's check (`is_session_settable`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let def = params::find(canonical(name)).ok_or_else(|| ConfigError::Unknown(name.into()))?;
        (def.set)(self, value).map_err(|e| ConfigError::InvalidValue {
            loc: Location {
                file: "PGPOOL SET".to_string(),
                line: None,
            },
            name: name.to_string(),
            value: value.to_string(),
            accepted: e.accepted,
        })
    }

    /// `name = 'value'` lines of the effective configuration (passwords masked), for
    /// `pgpool -f FILE check`. It parses back to the same configuration, except for the
    /// masked passwords.
    pub fn render_effective(&self) -> String {
        let mut out = String::new();
        for (name, value, _) in self.items() {
            out.push_str(&format!("{name} = '{value}'\n"));
        }
        out
    }

    /// `pool_passwd` resolved against the config directory; `''` disables it.
    pub fn pool_passwd_path(&self) -> Option<PathBuf> {
        if self.pool_passwd.is_empty() {
            None
        } else {
            Some(self.resolve_path(&self.pool_passwd))
        }
    }

    /// A path from the config (ssl_cert, ssl_key, …): absolute as is, else relative to
    /// the directory of the config file, as Pgpool-II resolves them.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.config_dir.join(path)
        }
    }

    /// The pool mode of a session of `user` on `database`: the first matching
    /// `pool_mode_overrides` item, else `pool_mode`.
    pub fn pool_mode_for(&self, user: &str, database: &str) -> super::types::PoolMode {
        self.pool_mode_overrides
            .iter()
            .find(|o| o.matches(user, database))
            .map_or(self.pool_mode, |o| o.mode)
    }

    /// Checks that the settings together make a configuration pgpool-rs can serve.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError::Invalid(m));
        if !self.backends.iter().any(|b| b.id == 0) {
            return fail(
                "backend_hostname0 is not set: backend 0 (the primary) needs \
                 backend_hostname0 and backend_port0"
                    .into(),
            );
        }
        if self.load_balance_mode
            && self.backends.len() > 1
            && self.backends.iter().all(|b| b.weight <= 0.0)
        {
            return fail(
                "every backend_weightN is 0: give at least one backend a weight above 0".into(),
            );
        }
        if self.reserved_connections >= self.num_init_children {
            return fail(format!(
                "reserved_connections ({}) must be less than num_init_children ({})",
                self.reserved_connections, self.num_init_children
            ));
        }
        let pools_transactions = self.pool_mode == super::types::PoolMode::Transaction
            || self
                .pool_mode_overrides
                .iter()
                .any(|o| o.mode == super::types::PoolMode::Transaction);
        if pools_transactions && !self.connection_cache {
            return fail(
                "pool_mode = transaction needs connection_cache = on (connections are shared \
                 through the cache)"
                    .into(),
            );
        }
        if self.listen_addresses.is_empty() && self.unix_socket_directories.is_empty() {
            return fail(
                "listen_addresses and unix_socket_directories are both empty: nothing to listen on"
                    .into(),
            );
        }
        self.validate_ports()?;
        self.validate_tls_versions()
    }

    fn validate_ports(&self) -> Result<(), ConfigError> {
        let mut ports = vec![("port", self.port), ("pcp_port", self.pcp_port)];
        if self.metrics_port != 0 {
            ports.push(("metrics_port", self.metrics_port));
        }
        for (i, (a, pa)) in ports.iter().enumerate() {
            if let Some((b, _)) = ports.iter().skip(i + 1).find(|(_, pb)| pb == pa) {
                return Err(ConfigError::Invalid(format!("{a} and {b} are both {pa}")));
            }
        }
        Ok(())
    }

    fn validate_tls_versions(&self) -> Result<(), ConfigError> {
        const ORDER: &[&str] = &["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
        let rank = |v: &str| ORDER.iter().position(|o| *o == v);
        if let (Some(min), Some(max)) = (
            rank(&self.ssl_min_protocol_version),
            rank(&self.ssl_max_protocol_version),
        ) {
            if min > max {
                return Err(ConfigError::Invalid(format!(
                    "ssl_min_protocol_version ({}) is above ssl_max_protocol_version ({})",
                    self.ssl_min_protocol_version, self.ssl_max_protocol_version
                )));
            }
        }
        Ok(())
    }

    /// Node `index`'s health check settings: its `health_check_*N` where given, else the
    /// global ones (Pgpool-II's per-node override rule).
    pub fn health_check(&self, index: usize) -> super::HealthCheck {
        let o = self
            .backends
            .get(index)
            .map(|b| b.health_check.clone())
            .unwrap_or_default();
        super::HealthCheck {
            period: o.period.unwrap_or(self.health_check_period),
            timeout: o.timeout.unwrap_or(self.health_check_timeout),
            user: o.user.unwrap_or_else(|| self.health_check_user.clone()),
            password: o
                .password
                .unwrap_or_else(|| self.health_check_password.clone()),
            database: o
                .database
                .unwrap_or_else(|| self.health_check_database.clone()),
            max_retries: o.max_retries.unwrap_or(self.health_check_max_retries),
            retry_delay: o.retry_delay.unwrap_or(self.health_check_retry_delay),
        }
    }

    /// Each backend's share of reads, `w / Σw` as Pgpool-II normalises weights at load
    /// (SHOW pool_nodes `lb_weight`); all zero when every weight is zero.
    pub fn normalized_weights(&self) -> Vec<(usize, f64)> {
        let total: f64 = self.backends.iter().map(|b| b.weight).sum();
        self.backends
            .iter()
            .map(|b| (b.id, if total > 0.0 { b.weight / total } else { 0.0 }))
            .collect()
    }

    /// The backend configured as slot `id`, if any.
    pub fn backend(&self, id: usize) -> Option<&super::BackendConfig> {
        self.backends.iter().find(|b| b.id == id)
    }
}
