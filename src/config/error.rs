//! Where a setting came from and what can be wrong with it.

use std::fmt;
use std::path::PathBuf;

/// Pgpool-II's limit on nested `include` directives.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 10;

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
    #[error("{loc}: could not process include: maximum nesting depth exceeded ({max})", max = MAX_INCLUDE_DEPTH)]
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
