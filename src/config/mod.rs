//! TEMPORARY stand-in until the real config module lands (same names, minimal parsing).
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct BackendFlag {
    pub always_primary: bool,
    pub disallow_to_failover: bool,
}
#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub id: usize,
    pub hostname: String,
    pub port: u16,
    pub weight: f64,
    pub flag: BackendFlag,
    pub application_name: String,
}
#[derive(Clone, Debug)]
pub struct Config {
    pub listen_addresses: Vec<String>,
    pub port: u16,
    pub unix_socket_directories: Vec<String>,
    pub backends: Vec<BackendConfig>,
    pub num_init_children: u32,
    pub max_pool: u32,
    pub reserved_connections: u32,
    pub authentication_timeout: u64,
    pub connect_timeout: u64,
    pub max_message_size: u64,
    pub pool_passwd: String,
    pub config_dir: PathBuf,
    pub client_idle_limit: u64,
    pub connection_cache: bool,
    pub reset_query_list: Vec<String>,
    pub enable_pool_hba: bool,
    pub allow_clear_text_frontend_auth: bool,
}
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let text = path
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default();
    let mut c = Config {
        listen_addresses: vec!["localhost".into()],
        port: 9999,
        unix_socket_directories: vec!["/tmp".into()],
        backends: vec![],
        num_init_children: 32,
        max_pool: 4,
        reserved_connections: 0,
        authentication_timeout: 60,
        connect_timeout: 10000,
        max_message_size: 1 << 30,
        pool_passwd: "pool_passwd".into(),
        config_dir: path
            .and_then(|p| p.parent())
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from(".")),
        client_idle_limit: 0,
        connection_cache: true,
        reset_query_list: vec!["ABORT".into(), "DISCARD ALL".into()],
        enable_pool_hba: false,
        allow_clear_text_frontend_auth: false,
    };
    let mut kv: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let (k, v) = l.split_once('=')?;
            Some((
                k.trim().to_string(),
                v.trim().trim_matches('\'').to_string(),
            ))
        })
        .collect();
    for (k, v) in env {
        if let Some(n) = k.strip_prefix("PGPOOL_PARAMS_") {
            kv.push((n.to_lowercase(), v.clone()));
        }
    }
    for (k, v) in kv {
        let idx = |p: &str| k.strip_prefix(p).and_then(|n| n.parse::<usize>().ok());
        let slot = |c: &mut Config, i: usize| -> usize {
            if let Some(p) = c.backends.iter().position(|b| b.id == i) {
                p
            } else {
                c.backends.push(BackendConfig {
                    id: i,
                    hostname: String::new(),
                    port: 0,
                    weight: 1.0,
                    flag: BackendFlag {
                        always_primary: false,
                        disallow_to_failover: false,
                    },
                    application_name: String::new(),
                });
                c.backends.len() - 1
            }
        };
        match k.as_str() {
            "port" => c.port = v.parse().map_err(|_| ConfigError(k.clone()))?,
            "listen_addresses" => {
                c.listen_addresses = v.split(',').map(|s| s.trim().to_string()).collect()
            }
            "unix_socket_directories" => {
                c.unix_socket_directories = v.split(',').map(|s| s.trim().to_string()).collect()
            }
            "num_init_children" => {
                c.num_init_children = v.parse().map_err(|_| ConfigError(k.clone()))?
            }
            "pool_passwd" => c.pool_passwd = v,
            _ => {
                if let Some(i) = idx("backend_hostname") {
                    let s = slot(&mut c, i);
                    c.backends[s].hostname = v;
                } else if let Some(i) = idx("backend_port") {
                    let s = slot(&mut c, i);
                    c.backends[s].port = v.parse().map_err(|_| ConfigError(k.clone()))?;
                } else if let Some(i) = idx("backend_weight") {
                    let s = slot(&mut c, i);
                    c.backends[s].weight = v.parse().unwrap_or(1.0);
                }
            }
        }
    }
    c.backends.sort_by_key(|b| b.id);
    Ok(Loaded {
        config: c,
        warnings: vec![],
    })
}
impl Config {
    pub fn pool_passwd_path(&self) -> Option<PathBuf> {
        if self.pool_passwd.is_empty() {
            None
        } else {
            Some(self.config_dir.join(&self.pool_passwd))
        }
    }
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.backends.is_empty() {
            return Err(ConfigError("backend_hostname0 is not set".into()));
        }
        Ok(())
    }
    pub fn render_effective(&self) -> String {
        format!("{self:#?}")
    }
}
