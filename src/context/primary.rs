//! How the primary is found, and who the checks that find it log in as: derived from the
//! configuration alone, so the shared context can set it up before any check runs.

use crate::config::Config;

use super::nodes::PrimaryMode;

/// How the primary is found under `cfg`: the first `ALWAYS_PRIMARY` node; else detection,
/// which needs a user to log in as (`sr_check_user` or `health_check_user`); without one,
/// node 0, as before detection existed (the caller warns).
pub fn primary_mode(cfg: &Config) -> PrimaryMode {
    if let Some(i) = cfg.backends.iter().position(|b| b.flag.always_primary) {
        return PrimaryMode::Fixed(i);
    }
    match checker_login(cfg) {
        Some(_) => PrimaryMode::Detect,
        None => PrimaryMode::Fixed(0),
    }
}

/// Who the replication check and the primary search log in as: `sr_check_user`, or
/// `health_check_user` when that is the only one set. `None`: no check user at all.
pub fn checker_login(cfg: &Config) -> Option<Login> {
    if !cfg.sr_check_user.is_empty() {
        return Some(Login {
            user: cfg.sr_check_user.clone(),
            password: cfg.sr_check_password.clone(),
            database: cfg.sr_check_database.clone(),
        });
    }
    (!cfg.health_check_user.is_empty()).then(|| Login {
        user: cfg.health_check_user.clone(),
        password: cfg.health_check_password.clone(),
        database: cfg.health_check_database.clone(),
    })
}

/// A check's user, password (as in pool_passwd) and database.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub database: String,
}
