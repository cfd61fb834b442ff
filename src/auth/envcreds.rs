//! The Kubernetes image's environment convention (spec 2.4, 2.5): `<X>_USERNAME` /
//! `<X>_PASSWORD` pairs become pool_passwd entries, `PGPOOL_PCP_USER` /
//! `PGPOOL_PCP_PASSWORD` a pcp.conf entry. Unlike the image's shell script, prefixes may
//! contain `_` (`MY_APP_USERNAME` pairs with `MY_APP_PASSWORD`), an existing key file is
//! reused instead of replaced (so AES entries already in pool_passwd stay readable), and
//! entries are merged into the files rather than appended twice on every restart.

use crate::auth::error::AuthError;
use crate::auth::{aes, keyfile, md5, passwd};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::Rng;
use std::fmt;
use std::path::Path;

/// How pool_passwd entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionMethod {
    /// `scram-sha-256` (the image's default): AES entries, so any method can use them.
    ScramSha256,
    /// `md5`: md5 entries (usable for md5 only).
    Md5,
}

/// The credentials and switches found in the environment. Debug prints no password.
#[derive(Clone)]
pub struct EnvCredentials {
    /// `PGPOOL_ENABLE_POOL_PASSWD` (default true).
    pub pool_passwd_enabled: bool,
    /// `PGPOOL_PASSWORD_ENCRYPTION_METHOD` (default `scram-sha-256`); `None` if unknown.
    pub method: Option<EncryptionMethod>,
    /// The raw method text, for messages.
    pub method_name: String,
    /// `PGPOOL_SKIP_PASSWORD_ENCRYPTION`: write the password as given (it may carry its own
    /// `md5`/`AES`/`TEXT` prefix).
    pub skip_encryption: bool,
    users: Vec<(String, String)>,
    missing_password: Vec<(String, String)>,
    pcp: Option<(String, String)>,
}

impl fmt::Debug for EnvCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvCredentials")
            .field("pool_passwd_enabled", &self.pool_passwd_enabled)
            .field("method", &self.method)
            .field("skip_encryption", &self.skip_encryption)
            .field("users", &self.users().collect::<Vec<_>>())
            .field("pcp_user", &self.pcp.as_ref().map(|p| &p.0))
            .finish()
    }
}

fn is_true(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "on")
}

impl EnvCredentials {
    /// Reads the variables; pairs are kept in environment order.
    pub fn from_env(env: &[(String, String)]) -> EnvCredentials {
        let get = |name: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let method_name = get("PGPOOL_PASSWORD_ENCRYPTION_METHOD")
            .unwrap_or("scram-sha-256")
            .to_string();
        let method = match method_name.to_ascii_lowercase().as_str() {
            "scram-sha-256" => Some(EncryptionMethod::ScramSha256),
            "md5" => Some(EncryptionMethod::Md5),
            _ => None,
        };
        let mut users = Vec::new();
        let mut missing_password = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, user) in env {
            let Some(prefix) = name.strip_suffix("_USERNAME") else {
                continue;
            };
            // PGPOOL_PARAMS_* are pgpool.conf settings, not credentials.
            if prefix.is_empty() || name.starts_with("PGPOOL_PARAMS_") || user.is_empty() {
                continue;
            }
            if !seen.insert(prefix.to_string()) {
                continue;
            }
            let pw_var = format!("{prefix}_PASSWORD");
            match get(&pw_var).filter(|p| !p.is_empty()) {
                Some(pw) => users.push((user.clone(), pw.to_string())),
                None => missing_password.push((user.clone(), pw_var)),
            }
        }
        let pcp = match (get("PGPOOL_PCP_USER"), get("PGPOOL_PCP_PASSWORD")) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
                Some((u.to_string(), p.to_string()))
            }
            _ => None,
        };
        EnvCredentials {
            pool_passwd_enabled: get("PGPOOL_ENABLE_POOL_PASSWD").is_none_or(is_true),
            method,
            method_name,
            skip_encryption: get("PGPOOL_SKIP_PASSWORD_ENCRYPTION").is_some_and(is_true),
            users,
            missing_password,
            pcp,
        }
    }

    /// User names that have a password in the environment, in order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|(u, _)| u.as_str())
    }

    /// The PCP user name, if both PCP variables are set.
    pub fn pcp_user(&self) -> Option<&str> {
        self.pcp.as_ref().map(|(u, _)| u.as_str())
    }
}

/// Writes the environment's credentials into pool_passwd and pcp.conf (either may be
/// `None` = not configured). Returns log lines; none of them contains a password.
pub fn apply_env_credentials(
    env: &[(String, String)],
    pool_passwd: Option<&Path>,
    pcp_conf: Option<&Path>,
    key_file: &Path,
) -> Result<Vec<String>, AuthError> {
    let creds = EnvCredentials::from_env(env);
    let mut log = Vec::new();
    for (user, var) in &creds.missing_password {
        log.push(format!(
            "password for user \"{user}\" is not defined ({var} is unset or empty), skipped"
        ));
    }
    match pool_passwd {
        _ if !creds.pool_passwd_enabled => {
            log.push("PGPOOL_ENABLE_POOL_PASSWD is off: pool_passwd not generated".into())
        }
        None => log.push("pool_passwd is disabled in the configuration: not generated".into()),
        Some(_) if creds.users.is_empty() => {
            log.push("no <X>_USERNAME/<X>_PASSWORD pair in the environment".into())
        }
        Some(path) => write_pool_passwd(&creds, path, key_file, &mut log)?,
    }
    match (pcp_conf, &creds.pcp) {
        (Some(path), Some((user, pw))) => {
            if user.contains([':', '\n', '\0']) || pw.contains(['\n', '\0']) {
                return Err(AuthError::BadEntry(
                    "PGPOOL_PCP_USER or PGPOOL_PCP_PASSWORD",
                ));
            }
            let stored = match creds.skip_encryption {
                true => pw.clone(),
                false => md5::md5_hex(pw.as_bytes()),
            };
            let line = format!("{user}:{stored}");
            passwd::upsert_line(path, &line, |l| {
                !l.starts_with('#') && l.split_once(':').is_some_and(|(u, _)| u.trim() == user)
            })?;
            log.push(format!("pcp.conf: wrote entry for user \"{user}\""));
        }
        _ => log.push("Skip generating pcp.conf".into()),
    }
    Ok(log)
}

/// Upserts every user, encrypting per the method.
fn write_pool_passwd(
    creds: &EnvCredentials,
    path: &Path,
    key_file: &Path,
    log: &mut Vec<String>,
) -> Result<(), AuthError> {
    let method = match (creds.skip_encryption, creds.method) {
        (true, _) => None,
        (false, Some(m)) => Some(m),
        (false, None) => {
            return Err(AuthError::Env(format!(
                "unsupported PGPOOL_PASSWORD_ENCRYPTION_METHOD \"{}\" (use scram-sha-256 or md5)",
                creds.method_name
            )))
        }
    };
    let key = match method {
        Some(EncryptionMethod::ScramSha256) => Some(ensure_key(key_file, log)?),
        _ => None,
    };
    for (user, pw) in &creds.users {
        let (stored, kind) = match (method, &key) {
            (Some(EncryptionMethod::ScramSha256), Some(k)) => (aes::encrypt_password(pw, k), "AES"),
            (Some(EncryptionMethod::Md5), _) => (md5::pg_md5_password(user, pw), "md5"),
            _ => (pw.clone(), "unencrypted"),
        };
        passwd::upsert_entry(path, user, &stored)?;
        log.push(format!(
            "pool_passwd: wrote {kind} entry for user \"{user}\""
        ));
    }
    Ok(())
}

/// The key from `key_file`, or a new one (20 random bytes, base64, as the image makes)
/// written there with mode 0600 when the file is missing or empty.
fn ensure_key(key_file: &Path, log: &mut Vec<String>) -> Result<String, AuthError> {
    match keyfile::read_key(key_file) {
        Ok(key) => {
            log.push(format!("using AES key from \"{}\"", key_file.display()));
            return Ok(key);
        }
        Err(AuthError::EmptyKey(_)) => {}
        Err(AuthError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut raw = [0u8; 20];
    rand::rng().fill_bytes(&mut raw);
    let key = B64.encode(raw);
    passwd::write_private_atomic(key_file, format!("{key}\n").as_bytes())?;
    log.push(format!("generated AES key file \"{}\"", key_file.display()));
    Ok(key)
}

#[cfg(test)]
mod tests;
