//! Where the configuration comes from, read the same way at start and on every reload.
//!
//! The Kubernetes image of Pgpool-II starts `pgpool -f /opt/pgpool-II/etc/pgpool.conf …`
//! after its entrypoint copied `/config/pgpool.conf` there when one was mounted (and then
//! ignored `PGPOOL_PARAMS_*`). Our image has no entrypoint script, so the binary does the
//! same: with `PGPOOL_CONF_VOLUME` set (the image sets `/config`) and
//! `$PGPOOL_CONF_VOLUME/pgpool.conf` present, that file is the configuration, without
//! `PGPOOL_PARAMS_*`; relative paths in it still resolve against the `-f` folder, where the
//! image keeps pool_passwd and the key, exactly as after the copy. `pool_hba.conf` there
//! replaces `-a`, and `tls/tls.crt` + `tls/tls.key` there turn TLS on with that pair. The
//! files are read in place, not copied, so a changed ConfigMap or Secret is seen on reload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::auth::setup::{self, AuthPaths};
use crate::auth::{AuthError, ConnType, HbaError, HbaFile, PcpUsers, PoolPasswd};
use crate::config::{self, Config, ConfigError};

/// The variable naming the mounted configuration folder (as in the Pgpool-II image).
pub const CONF_VOLUME_ENV: &str = "PGPOOL_CONF_VOLUME";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // Transparent: `{e:#}` prints the source chain, so "{0}" would print each message twice.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Hba(#[from] HbaError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("pool_passwd \"{}\" is gone; keeping the users loaded before", .0.display())]
    PasswdMissing(PathBuf),
    #[error("pool_hba.conf \"{}\" is gone; keeping the rules loaded before", .0.display())]
    HbaMissing(PathBuf),
    #[error("{}: PGPOOL_ENABLE_POOL_PASSWD is off, so clients authenticate with a clear-text password: add hostssl lines to pool_hba.conf to secure all connections", .0.display())]
    HbaWithoutHostssl(PathBuf),
}

/// The files the proxy was started with, after the config-volume rule.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The pgpool.conf actually read (`None`: defaults plus environment).
    pub config_file: Option<PathBuf>,
    /// The `-f` path: relative paths resolve against its folder even when the mounted
    /// file is read instead.
    pub anchor_file: Option<PathBuf>,
    /// `-k`, `-a` (or the mounted pool_hba.conf), `-F`; resolved as the auth module does.
    pub paths: AuthPaths,
    /// A mounted `tls.crt` / `tls.key` pair that overrides ssl_cert / ssl_key.
    pub tls_pair: Option<(PathBuf, PathBuf)>,
    /// The environment for `PGPOOL_PARAMS_*` (empty when the mounted config is used).
    env: Vec<(String, String)>,
    /// The rules in force came from a pool_hba.conf file: its disappearance is an error,
    /// not a switch to the generated rules.
    hba_from_file: Arc<AtomicBool>,
}

/// Everything a reload swaps in, parsed and validated.
pub struct Snapshot {
    pub config: Config,
    pub passwd: PoolPasswd,
    /// `None` when `enable_pool_hba` is off.
    pub hba: Option<HbaFile>,
    pub pcp: PcpUsers,
    /// Things the operator should fix (unknown parameters, bad pool_passwd lines).
    pub warnings: Vec<String>,
}

impl Sources {
    /// Applies the config-volume rule to the command-line paths.
    pub fn resolve(
        config_file: Option<PathBuf>,
        hba_file: Option<PathBuf>,
        pcp_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        env: Vec<(String, String)>,
    ) -> Sources {
        let volume = env
            .iter()
            .rev()
            .find(|(k, _)| k == CONF_VOLUME_ENV)
            .map(|(_, v)| PathBuf::from(v))
            .filter(|v| !v.as_os_str().is_empty());
        let mut s = Sources {
            anchor_file: config_file.clone(),
            config_file,
            paths: AuthPaths {
                key_file,
                hba_file,
                pcp_file,
            },
            tls_pair: None,
            env,
            hba_from_file: Arc::default(),
        };
        if let Some(vol) = volume {
            s.apply_volume(&vol);
        }
        s
    }

    fn apply_volume(&mut self, vol: &Path) {
        let conf = vol.join("pgpool.conf");
        if conf.is_file() {
            tracing::info!(
                "using {} (mounted); PGPOOL_PARAMS_* variables are ignored",
                conf.display()
            );
            self.config_file = Some(conf);
            self.env.retain(|(k, _)| !k.starts_with("PGPOOL_PARAMS_"));
        }
        let hba = vol.join("pool_hba.conf");
        if hba.is_file() {
            self.paths.hba_file = Some(hba);
        }
        let (crt, key) = (
            vol.join("tls").join("tls.crt"),
            vol.join("tls").join("tls.key"),
        );
        if crt.is_file() && key.is_file() {
            self.tls_pair = Some((crt, key));
        }
    }

    /// Parses pgpool.conf (plus environment and the mounted TLS pair) and validates it.
    pub fn load_config(&self) -> Result<(Config, Vec<String>), LoadError> {
        let loaded = config::load(self.config_file.as_deref(), &self.env)?;
        let mut cfg = loaded.config;
        if let (Some(read), Some(anchor)) = (&self.config_file, &self.anchor_file) {
            if read != anchor {
                cfg.config_dir = folder_of(anchor);
            }
        }
        if let Some((crt, key)) = &self.tls_pair {
            cfg.ssl = true;
            cfg.ssl_cert = crt.display().to_string();
            cfg.ssl_key = key.display().to_string();
        }
        if !self.pool_passwd_enabled() {
            // What the image's entrypoint appends to pgpool.conf in this case: clients then
            // send clear-text passwords, so only over TLS and only by pool_hba.conf's rules.
            cfg.ssl = true;
            cfg.enable_pool_hba = true;
        }
        cfg.validate()?;
        Ok((cfg, loaded.warnings))
    }

    /// Reads pool_passwd as start-up does. A missing file is an empty one only when
    /// `missing_ok`: a reload must not drop every user on a transient miss.
    pub fn load_passwd(
        &self,
        cfg: &Config,
        missing_ok: bool,
    ) -> Result<(PoolPasswd, Vec<String>), LoadError> {
        if let Some(path) = cfg.pool_passwd_path() {
            if !missing_ok && !path.exists() {
                return Err(LoadError::PasswdMissing(path));
            }
        }
        Ok(setup::load_passwd(cfg, &self.paths.key(cfg)))
    }

    /// pcp.conf users; a missing file means none (PCP then refuses every login).
    pub fn load_pcp(&self, cfg: &Config) -> Result<PcpUsers, LoadError> {
        let path = self.paths.pcp(cfg);
        if !path.exists() {
            return Ok(PcpUsers::default());
        }
        Ok(PcpUsers::load(&path)?)
    }

    /// Reads pool_hba.conf when `enable_pool_hba` is on. With no file (none given, or the
    /// image's `-a` path that only its entrypoint would have written), the rules that
    /// entrypoint generates are used instead (spec 2.6).
    pub fn load_hba(&self, cfg: &Config) -> Result<Option<HbaFile>, LoadError> {
        if !cfg.enable_pool_hba {
            return Ok(None);
        }
        let path = self.paths.hba(cfg);
        if path.exists() {
            let hba = HbaFile::load(&path)?;
            if !self.pool_passwd_enabled()
                && !hba.lines().iter().any(|l| l.conn_type == ConnType::HostSsl)
            {
                return Err(LoadError::HbaWithoutHostssl(path));
            }
            self.hba_from_file.store(true, Ordering::Relaxed);
            return Ok(Some(hba));
        }
        if self.hba_from_file.load(Ordering::Relaxed) {
            // A deleted file must not silently become the generated rules.
            return Err(LoadError::HbaMissing(path));
        }
        let text = self.generated_hba(cfg);
        Ok(Some(HbaFile::parse(&text, &cfg.config_dir)?))
    }

    /// `PGPOOL_ENABLE_POOL_PASSWD` (default on; `yes`, `true`, `on` in any case).
    fn pool_passwd_enabled(&self) -> bool {
        self.var("PGPOOL_ENABLE_POOL_PASSWD")
            .is_none_or(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "on"))
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// What the Pgpool-II image's entrypoint writes when no pool_hba.conf is mounted.
    pub fn generated_hba(&self, cfg: &Config) -> String {
        let method = if self.pool_passwd_enabled() {
            self.var("PGPOOL_PASSWORD_ENCRYPTION_METHOD")
                .unwrap_or("scram-sha-256")
        } else {
            "password"
        };
        let kind = if cfg.ssl { "hostssl" } else { "host" };
        format!("local   all    all        trust\n{kind}    all    all    all    {method}\n")
    }

    /// Every file, parsed and checked; nothing is swapped in unless all of them are good.
    pub fn load_all(&self, passwd_missing_ok: bool) -> Result<Snapshot, LoadError> {
        let (config, mut warnings) = self.load_config()?;
        let (passwd, pw_warnings) = self.load_passwd(&config, passwd_missing_ok)?;
        warnings.extend(pw_warnings);
        let hba = self.load_hba(&config)?;
        let pcp = self.load_pcp(&config)?;
        Ok(Snapshot {
            config,
            passwd,
            hba,
            pcp,
            warnings,
        })
    }

    /// The files whose change triggers a reload under `cfg`.
    pub fn watched_files(&self, cfg: &Config) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.config_file.iter().cloned().collect();
        files.push(self.paths.hba(cfg));
        files.push(self.paths.pcp(cfg));
        files.push(self.paths.key(cfg));
        files.extend(cfg.pool_passwd_path());
        for p in [&cfg.ssl_cert, &cfg.ssl_key, &cfg.ssl_ca_cert] {
            if !p.is_empty() {
                files.push(cfg.resolve_path(p));
            }
        }
        files
    }
}

fn folder_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_mounted_pgpool_conf_replaces_f_and_ignores_pgpool_params() {
        let vol = tempfile::tempdir().unwrap();
        let etc = tempfile::tempdir().unwrap();
        std::fs::write(
            vol.path().join("pgpool.conf"),
            "backend_hostname0 = 'mounted'\nbackend_port0 = 5432\nport = 9999\n",
        )
        .unwrap();
        let anchor = etc.path().join("pgpool.conf");
        let s = Sources::resolve(
            Some(anchor.clone()),
            None,
            None,
            Some(etc.path().join(".pgpoolkey")),
            env(&[
                (CONF_VOLUME_ENV, &vol.path().display().to_string()),
                ("PGPOOL_PARAMS_PORT", "7777"),
            ]),
        );
        let (cfg, _) = s.load_config().unwrap();
        assert_eq!(cfg.backends[0].hostname, "mounted");
        assert_eq!(
            cfg.port, 9999,
            "PGPOOL_PARAMS_* ignored with a mounted file"
        );
        assert_eq!(
            cfg.pool_passwd_path(),
            Some(etc.path().join("pool_passwd")),
            "relative paths resolve against the -f folder, as after the image's copy"
        );
    }

    #[test]
    fn without_a_mounted_file_f_and_the_environment_apply() {
        let vol = tempfile::tempdir().unwrap();
        let s = Sources::resolve(
            None,
            None,
            None,
            None,
            env(&[
                (CONF_VOLUME_ENV, &vol.path().display().to_string()),
                ("PGPOOL_PARAMS_BACKEND_HOSTNAME0", "fromenv"),
                ("PGPOOL_PARAMS_BACKEND_PORT0", "5432"),
            ]),
        );
        let (cfg, _) = s.load_config().unwrap();
        assert_eq!(cfg.backends[0].hostname, "fromenv");
    }

    #[test]
    fn a_mounted_tls_pair_turns_ssl_on() {
        let vol = tempfile::tempdir().unwrap();
        let tls = vol.path().join("tls");
        std::fs::create_dir(&tls).unwrap();
        std::fs::write(tls.join("tls.crt"), "x").unwrap();
        std::fs::write(tls.join("tls.key"), "x").unwrap();
        let s = Sources::resolve(
            None,
            None,
            None,
            None,
            env(&[
                (CONF_VOLUME_ENV, &vol.path().display().to_string()),
                ("PGPOOL_PARAMS_BACKEND_HOSTNAME0", "h"),
                ("PGPOOL_PARAMS_BACKEND_PORT0", "5432"),
            ]),
        );
        let (cfg, _) = s.load_config().unwrap();
        assert!(cfg.ssl);
        assert_eq!(cfg.ssl_cert, tls.join("tls.crt").display().to_string());
        assert!(s.watched_files(&cfg).contains(&tls.join("tls.key")));
    }

    #[test]
    fn hba_on_without_a_file_uses_the_image_rules() {
        let s = Sources::resolve(None, None, None, None, env(&[]));
        let mut cfg = Config {
            enable_pool_hba: true,
            ssl: true,
            ..Default::default()
        };
        assert_eq!(
            s.generated_hba(&cfg),
            "local   all    all        trust\nhostssl    all    all    all    scram-sha-256\n"
        );
        assert_eq!(s.load_hba(&cfg).unwrap().map(|h| h.lines().len()), Some(2));
        let md5 = Sources::resolve(
            None,
            None,
            None,
            None,
            env(&[("PGPOOL_PASSWORD_ENCRYPTION_METHOD", "md5")]),
        );
        cfg.ssl = false;
        assert!(md5
            .generated_hba(&cfg)
            .ends_with("host    all    all    all    md5\n"));
    }
}
