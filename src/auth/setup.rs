//! Where the credential files are and how they are loaded at start (and again on reload):
//! the environment's `<X>_USERNAME`/`<X>_PASSWORD` pairs are merged into pool_passwd and
//! pcp.conf first, then pool_passwd is read with the AES key, then pool_hba.conf.
//!
//! Paths: `-k`/`-a`/`-F` win; otherwise the files sit next to pgpool.conf, which is where
//! the Kubernetes image keeps them (`/opt/pgpool-II/etc`). The key file falls back to
//! `$PGPOOLKEYFILE` and `~/.pgpoolkey` like Pgpool-II when no key sits next to the config.

use std::path::{Path, PathBuf};

use crate::auth::keyfile::{KEY_FILE_ENV, KEY_FILE_NAME};
use crate::auth::{apply_env_credentials, read_key, AuthError, HbaError, HbaFile, PoolPasswd};
use crate::config::Config;

/// The `-k`, `-a` and `-F` command-line options.
#[derive(Debug, Clone, Default)]
pub struct AuthPaths {
    pub key_file: Option<PathBuf>,
    pub hba_file: Option<PathBuf>,
    pub pcp_file: Option<PathBuf>,
}

/// What start-up loaded, plus the lines to log (none holds a password or key).
#[derive(Debug)]
pub struct Loaded {
    pub passwd: PoolPasswd,
    /// `None` when the file is missing or invalid; see `hba_error`.
    pub hba: Option<HbaFile>,
    pub hba_error: Option<HbaError>,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

impl AuthPaths {
    /// `-a`, else `pool_hba.conf` next to pgpool.conf.
    pub fn hba(&self, cfg: &Config) -> PathBuf {
        self.hba_file
            .clone()
            .unwrap_or_else(|| cfg.config_dir.join("pool_hba.conf"))
    }

    /// `-F`, else `pcp.conf` next to pgpool.conf.
    pub fn pcp(&self, cfg: &Config) -> PathBuf {
        self.pcp_file
            .clone()
            .unwrap_or_else(|| cfg.config_dir.join("pcp.conf"))
    }

    /// `-k`, else `$PGPOOLKEYFILE`, else an existing `.pgpoolkey` next to pgpool.conf, else
    /// an existing `~/.pgpoolkey`, else (to be created) `.pgpoolkey` next to pgpool.conf.
    /// Reading and generating use this one answer, so a generated key is the one read.
    pub fn key(&self, cfg: &Config) -> PathBuf {
        let env = std::env::var_os(KEY_FILE_ENV);
        let home = std::env::var_os("HOME").map(PathBuf::from);
        self.key_from(cfg, env.map(PathBuf::from), home)
    }

    fn key_from(&self, cfg: &Config, env: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
        if let Some(k) = &self.key_file {
            return k.clone();
        }
        if let Some(e) = env.filter(|e| !e.as_os_str().is_empty()) {
            return e;
        }
        let beside = cfg.config_dir.join(KEY_FILE_NAME);
        if beside.exists() {
            return beside;
        }
        match home.map(|h| h.join(KEY_FILE_NAME)) {
            Some(h) if h.exists() => h,
            _ => beside,
        }
    }
}

/// Start-up: environment credentials into the files, then load pool_passwd and hba.
/// Fails only when the environment asks for something impossible or a file cannot be
/// written; unreadable files become warnings, like Pgpool-II.
pub fn load_at_start(
    cfg: &Config,
    paths: &AuthPaths,
    env: &[(String, String)],
) -> Result<Loaded, AuthError> {
    let key_file = paths.key(cfg);
    let pool_passwd = cfg.pool_passwd_path();
    let notes = apply_env_credentials(
        env,
        pool_passwd.as_deref(),
        Some(&paths.pcp(cfg)),
        &key_file,
    )?;
    let (passwd, warnings) = load_passwd(cfg, &key_file);
    let (hba, hba_error) = match HbaFile::load(&paths.hba(cfg)) {
        Ok(h) => (Some(h), None),
        Err(e) => (None, Some(e)),
    };
    Ok(Loaded {
        passwd,
        hba,
        hba_error,
        notes,
        warnings,
    })
}

/// Reads pool_passwd (missing file = empty) with the key from `key_file` if it has one.
/// Malformed lines are skipped with a warning naming the line.
pub fn load_passwd(cfg: &Config, key_file: &Path) -> (PoolPasswd, Vec<String>) {
    let mut warnings = Vec::new();
    let Some(path) = cfg.pool_passwd_path() else {
        return (PoolPasswd::default(), warnings);
    };
    let key = match read_key(key_file) {
        Ok(k) => Some(k),
        Err(AuthError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            warnings.push(format!("AES key not loaded: {e}"));
            None
        }
    };
    match PoolPasswd::load(&path, key.as_deref()) {
        Ok((p, w)) => {
            warnings.extend(w.into_iter().map(|w| format!("{}: {w}", path.display())));
            (p, warnings)
        }
        Err(AuthError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            (PoolPasswd::default(), warnings)
        }
        Err(e) => {
            warnings.push(format!("could not read pool_passwd: {e}"));
            (PoolPasswd::default(), warnings)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn cfg_in(dir: &Path) -> Config {
        Config {
            config_dir: dir.to_path_buf(),
            ..Config::default()
        }
    }

    #[test]
    fn key_file_order() {
        let conf = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let home = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cfg = cfg_in(conf.path());
        let beside = conf.path().join(KEY_FILE_NAME);
        let in_home = home.path().join(KEY_FILE_NAME);
        let none = AuthPaths::default();
        let home_dir = Some(home.path().to_path_buf());
        // Nothing exists: the key goes next to the config.
        assert_eq!(none.key_from(&cfg, None, home_dir.clone()), beside);
        fs::write(&in_home, "k\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(none.key_from(&cfg, None, home_dir.clone()), in_home);
        fs::write(&beside, "k\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(none.key_from(&cfg, None, home_dir.clone()), beside);
        let env = Some(PathBuf::from("/env/key"));
        assert_eq!(
            none.key_from(&cfg, env.clone(), home_dir.clone()),
            PathBuf::from("/env/key")
        );
        let cli = AuthPaths {
            key_file: Some(PathBuf::from("/cli/key")),
            ..AuthPaths::default()
        };
        assert_eq!(cli.key_from(&cfg, env, home_dir), PathBuf::from("/cli/key"));
    }

    #[test]
    fn env_credentials_are_written_then_loaded_with_the_generated_key() {
        let conf = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cfg = cfg_in(conf.path());
        let paths = AuthPaths {
            key_file: Some(conf.path().join(KEY_FILE_NAME)),
            ..AuthPaths::default()
        };
        let env = vec![
            ("POSTGRES_USERNAME".to_string(), "postgres".to_string()),
            ("POSTGRES_PASSWORD".to_string(), "s3cret".to_string()),
        ];
        let loaded = load_at_start(&cfg, &paths, &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            loaded.passwd.get("postgres"),
            Some(&crate::auth::StoredPassword::Plain("s3cret".into()))
        );
        let text = fs::read_to_string(conf.path().join("pool_passwd")).unwrap_or_default();
        assert!(text.starts_with("postgres:AES"), "{text}");
        assert!(loaded.hba.is_none() && loaded.hba_error.is_some());
        for line in loaded.notes.iter().chain(&loaded.warnings) {
            assert!(!line.contains("s3cret"), "{line}");
        }
    }

    #[test]
    fn malformed_lines_warn_with_their_number_and_the_rest_loads() {
        let conf = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cfg = cfg_in(conf.path());
        fs::write(
            conf.path().join("pool_passwd"),
            "alice:TEXTsecret\nno colon here\nbob:md54a0a68b43b6cd5cf266fa02f196e2371\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let (p, warnings) = load_passwd(&cfg, &conf.path().join("missing-key"));
        assert_eq!(p.len(), 2);
        assert!(
            warnings.iter().any(|w| w.contains("line 2")),
            "{warnings:?}"
        );
    }
}
