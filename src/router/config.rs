//! Routing settings: the parts of the configuration the router reads, with the regex lists
//! compiled once per (re)load.

use regex::Regex;

/// The settings the configuration parses are its types; the router reads them as they are.
pub use crate::config::{DisableLbOnWrite, RedirectNode, RedirectRule};

/// Everything the router needs from the configuration.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// `load_balance_mode` (default on).
    pub load_balance_mode: bool,
    /// `backend_weightN`, indexed by node id.
    pub weights: Vec<f64>,
    /// The primary's node id (backend 0 in our deployment).
    pub primary_node: usize,
    pub disable_lb_on_write: DisableLbOnWrite,
    /// `statement_level_load_balance`: the session re-picks its node before each statement
    /// (call [`super::SessionRouting::repick_node`]).
    pub statement_level_load_balance: bool,
    /// `write_function_list`, compiled anchored and case-insensitive.
    pub write_function_list: Vec<Regex>,
    /// `read_only_function_list`, compiled anchored and case-insensitive.
    pub read_only_function_list: Vec<Regex>,
    /// `primary_routing_query_pattern_list`, compiled anchored and case-insensitive.
    pub primary_routing_query_patterns: Vec<Regex>,
    /// `check_unlogged_table` (default on): reads of unlogged tables go to the primary.
    pub check_unlogged_table: bool,
    pub user_redirect: Vec<RedirectRule>,
    pub database_redirect: Vec<RedirectRule>,
    pub app_name_redirect: Vec<RedirectRule>,
}

impl RouterConfig {
    /// Pgpool-II defaults for a cluster with these weights.
    pub fn new(weights: Vec<f64>) -> Self {
        Self {
            load_balance_mode: true,
            weights,
            primary_node: 0,
            disable_lb_on_write: DisableLbOnWrite::Transaction,
            statement_level_load_balance: false,
            write_function_list: Vec::new(),
            read_only_function_list: Vec::new(),
            primary_routing_query_patterns: Vec::new(),
            check_unlogged_table: true,
            user_redirect: Vec::new(),
            database_redirect: Vec::new(),
            app_name_redirect: Vec::new(),
        }
    }
}

impl RouterConfig {
    /// The routing settings of `cfg`.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self {
            load_balance_mode: cfg.load_balance_mode,
            weights: cfg.backends.iter().map(|b| b.weight).collect(),
            primary_node: 0,
            disable_lb_on_write: cfg.disable_load_balance_on_write,
            statement_level_load_balance: cfg.statement_level_load_balance,
            write_function_list: compile_valid(&cfg.write_function_list),
            read_only_function_list: compile_valid(&cfg.read_only_function_list),
            primary_routing_query_patterns: compile_valid(&cfg.primary_routing_query_pattern_list),
            check_unlogged_table: cfg.check_unlogged_table,
            user_redirect: cfg.user_redirect_preference_list.to_vec(),
            database_redirect: cfg.database_redirect_preference_list.to_vec(),
            app_name_redirect: cfg.app_name_redirect_preference_list.to_vec(),
        }
    }
}

/// Patterns were validated when the configuration was loaded; one that still fails to
/// compile is skipped.
fn compile_valid(list: &[String]) -> Vec<Regex> {
    list.iter()
        .filter_map(|p| compile_anchored(p).ok())
        .collect()
}

/// Compile one regex the way Pgpool-II matches them: anchored `^…$`, case-insensitive.
pub fn compile_anchored(pattern: &str) -> Result<Regex, RouterError> {
    Regex::new(&format!("^(?i:{pattern})$")).map_err(|e| RouterError::BadRegex {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

/// A comma-separated function list (`write_function_list = 'nextval,setval,my_.*'`).
pub fn compile_function_list(list: &str) -> Result<Vec<Regex>, RouterError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(compile_anchored)
        .collect()
}

/// `primary_routing_query_pattern_list`: `;`-separated, `\;` is a literal semicolon.
pub fn compile_pattern_list(list: &str) -> Result<Vec<Regex>, RouterError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = list.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' if chars.peek() == Some(&';') => {
                cur.push(';');
                chars.next();
            }
            ';' => {
                if !cur.trim().is_empty() {
                    out.push(compile_anchored(cur.trim())?);
                }
                cur.clear();
            }
            c => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(compile_anchored(cur.trim())?);
    }
    Ok(out)
}

/// Errors building routing settings from configuration values.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("invalid regular expression {pattern:?}: {reason}")]
    BadRegex { pattern: String, reason: String },
    #[error("invalid value {value:?} for {param}")]
    BadValue { param: &'static str, value: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_list_splits_on_unescaped_semicolons() {
        let list = compile_pattern_list(r"select .* from t1;select 'a\;b'.*;").unwrap_or_default();
        assert_eq!(list.len(), 2);
        assert!(list[0].is_match("SELECT x FROM T1"));
        assert!(!list[0].is_match("xselect x from t1"));
        assert!(list[1].is_match("select 'a;b' x"));
    }
}
