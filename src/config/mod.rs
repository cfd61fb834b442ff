//! `pgpool.conf`: Pgpool-II's file format read the way Pgpool-II reads it (lexer quirks,
//! units, indexed `backend_*N` parameters, `include`), into one typed `Config`, then
//! overridden by `PGPOOL_PARAMS_*` environment variables as the Kubernetes image does.
//!
//! Where Pgpool-II is silent or sloppy we are stricter but compatible: an invalid value
//! (including a boolean Pgpool-II would take as true) stops start-up with file, line,
//! parameter and the accepted values; an unknown, misspelled or renamed name is a warning.

mod access;
mod lexer;
mod model;
mod params;
mod parse;
mod types;
mod values;

#[cfg(test)]
mod sample_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::Config;
pub use params::{context, is_session_settable, Context};
pub use types::{
    anchored_regex, BackendConfig, BackendFlag, BackendSsl, CheckTempTable, DisableLbOnWrite,
    HealthCheck, HealthCheckOverrides, LogStandbyDelay, PoolMode, PoolModeOverride, RedirectNode,
    RedirectRule,
};

/// Where a setting came from: a file and line, or an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: Option<usize>,
}

impl Location {
    pub(crate) fn at(file: &str, line: usize) -> Self {
        Self {
            file: file.to_string(),
            line: Some(line),
        }
    }

    pub(crate) fn env(var: &str) -> Self {
        Self {
            file: format!("environment variable {var}"),
            line: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value the parameter does not accept; names the accepted values.
    #[error("{loc}: invalid value for parameter \"{name}\": \"{value}\" (accepted: {accepted})")]
    InvalidValue {
        loc: Location,
        name: String,
        value: String,
        accepted: String,
    },
    /// The file is not a sequence of `KEY [=] value` (Pgpool-II's "syntax error").
    #[error("{loc}: syntax error in configuration file: parse error at '{token}'")]
    Syntax { loc: Location, token: String },
    /// `backend_hostname` with no index, or an index over 127.
    #[error("{loc}: parameter \"{name}\" {reason}")]
    BadIndex {
        loc: Location,
        name: String,
        reason: String,
    },
    #[error("{loc}: could not process include: maximum nesting depth exceeded ({max})", max = parse::MAX_INCLUDE_DEPTH)]
    IncludeDepth { loc: Location },
    #[error("could not read configuration file \"{}\": {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `PGPOOL SHOW`/`SET` of a name that is not a parameter (Pgpool-II's wording).
    #[error("config variable \"{0}\" not found")]
    Unknown(String),
    /// The settings are each valid but do not make a runnable configuration.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

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
