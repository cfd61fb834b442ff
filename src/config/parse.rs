//! The parse loop (Pgpool-II's `ParseConfigFile`): KEY, optional `=`, then any token as
//! the value; `include` handled on the spot. Assignments, from files and from the
//! environment alike, go through `Builder::apply`, which knows the table, the indexed
//! backend parameters, aliases, renamed and unsupported names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Location, MAX_INCLUDE_DEPTH};
use super::lexer::{tokenize, TokenKind};
use super::model::Config;
use super::names::{
    backend_name, health_check_name, BackendField, ALIASES, PARSED_NOT_IMPLEMENTED, RENAMED,
    UNSUPPORTED, UNSUPPORTED_INDEXED,
};
use super::params::{self, PARAMS};
use super::types::{BackendConfig, BackendFlag, HealthCheckOverrides};
use super::values::{parse_int, parse_real, Invalid, Unit};

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
