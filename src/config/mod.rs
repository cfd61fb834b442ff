//! `pgpool.conf`: Pgpool-II's file format read the way Pgpool-II reads it (lexer quirks,
//! units, indexed `backend_*N` parameters, `include`), into one typed `Config`, then
//! overridden by `PGPOOL_PARAMS_*` environment variables as the Kubernetes image does.
//!
//! Where Pgpool-II is silent or sloppy we are stricter but compatible: an invalid value
//! (including a boolean Pgpool-II would take as true) stops start-up with file, line,
//! parameter and the accepted values; an unknown, misspelled or renamed name is a warning.
//!
//! Layers, each importing only those before it: `lexer`, `values`, `error`, `types` →
//! `model` → `names` (indexed, aliased, renamed, ignored names) → `params` (the typed
//! table) → `parse` (the loop) → `access` (show/set by name) → this file.

mod access;
mod error;
mod lexer;
mod model;
mod names;
mod params;
mod parse;
mod types;
mod values;

#[cfg(test)]
mod env_tests;
#[cfg(test)]
mod sample_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, Location};
pub use model::Config;
pub use params::{context, is_session_settable, Context};
#[cfg(test)]
pub(crate) use types::parse_redirect_list;
pub use types::{
    anchored_regex, BackendConfig, BackendFlag, BackendSsl, CheckTempTable, DisableLbOnWrite,
    HealthCheck, HealthCheckOverrides, LogStandbyDelay, PoolMode, PoolModeOverride, RedirectList,
    RedirectNode, RedirectRule,
};

/// A parsed configuration and what the operator should be told about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Unknown, misspelled or renamed parameters, a missing file: log at WARNING.
    pub warnings: Vec<String>,
    /// Pgpool-II parameters that pgpool-rs accepts but ignores: log at INFO/DEBUG.
    pub unsupported: Vec<String>,
}

/// Reads `path` (None or a missing file → Pgpool-II's defaults, with a warning for the
/// missing file), then applies `PGPOOL_PARAMS_*` from `env`. Call `Config::validate`
/// before serving.
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let Some(path) = path else {
        return finish(parse::Builder::new(None, cwd()), env);
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => cwd(),
    };
    let mut b = parse::Builder::new(Some(path.to_path_buf()), dir);
    match std::fs::read_to_string(path) {
        Ok(text) => parse::parse_text(&mut b, &text, path, 0)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => b.warnings.push(format!(
            "could not open configuration file: \"{}\"; using default configuration parameter values",
            path.display()
        )),
        Err(source) => {
            return Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    finish(b, env)
}

/// Parses configuration text; `origin` names it in messages and anchors relative
/// `include`s and paths. Then applies `PGPOOL_PARAMS_*` from `env`.
pub fn parse_str(
    text: &str,
    origin: &str,
    env: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    let origin_path = Path::new(origin);
    let dir = match origin_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => cwd(),
    };
    let mut b = parse::Builder::new(None, dir);
    parse::parse_text(&mut b, text, origin_path, 0)?;
    finish(b, env)
}

fn finish(mut b: parse::Builder, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    parse::apply_env(&mut b, env)?;
    let (config, warnings, unsupported) = b.finish();
    Ok(Loaded {
        config,
        warnings,
        unsupported,
    })
}

fn cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// The process environment as `load` expects it (names and values that are not UTF-8 are
/// skipped: they cannot be `PGPOOL_PARAMS_*` settings we understand).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
