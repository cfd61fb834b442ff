//! Routing settings, built from plain values (the config module maps `pgpool.conf` onto this).

use std::str::FromStr;

use regex::Regex;

/// Pgpool-II `disable_load_balance_on_write` (spec 5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DisableLbOnWrite {
    Off,
    #[default]
    Transaction,
    TransTransaction,
    Always,
    DmlAdaptive,
}

impl FromStr for DisableLbOnWrite {
    type Err = RouterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "transaction" => Ok(Self::Transaction),
            "trans_transaction" => Ok(Self::TransTransaction),
            "always" => Ok(Self::Always),
            "dml_adaptive" => Ok(Self::DmlAdaptive),
            other => Err(RouterError::BadValue {
                param: "disable_load_balance_on_write",
                value: other.to_string(),
            }),
        }
    }
}

/// Where a redirect rule points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectNode {
    Id(usize),
    Primary,
    Standby,
}

/// One entry of a `*_redirect_preference_list`: `pattern:node(ratio)`.
#[derive(Debug, Clone)]
pub struct RedirectRule {
    pub pattern: Regex,
    pub node: RedirectNode,
    pub ratio: f64,
}

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

/// A redirect preference list: `pattern:node[(ratio)]` entries, comma-separated; node is a
/// number, `primary` or `standby`; ratio defaults to 1.
pub fn parse_redirect_list(list: &str) -> Result<Vec<RedirectRule>, RouterError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_redirect_rule)
        .collect()
}

fn parse_redirect_rule(entry: &str) -> Result<RedirectRule, RouterError> {
    let bad = || RouterError::BadValue {
        param: "redirect_preference_list",
        value: entry.to_string(),
    };
    let (pattern, target) = entry.rsplit_once(':').ok_or_else(bad)?;
    let (node, ratio) = match target.split_once('(') {
        Some((n, r)) => {
            let r = r.strip_suffix(')').ok_or_else(bad)?;
            (n.trim(), r.trim().parse::<f64>().map_err(|_| bad())?)
        }
        None => (target.trim(), 1.0),
    };
    let node = match node.to_ascii_lowercase().as_str() {
        "primary" => RedirectNode::Primary,
        "standby" => RedirectNode::Standby,
        n => RedirectNode::Id(n.parse().map_err(|_| bad())?),
    };
    if !(0.0..=1.0).contains(&ratio) {
        return Err(bad());
    }
    Ok(RedirectRule {
        pattern: compile_anchored(pattern.trim())?,
        node,
        ratio,
    })
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

    #[test]
    fn redirect_list_parses_pgpool_syntax() {
        let rules = parse_redirect_list("postgres:primary, mydb\\d+:standby(0.3),app:1(0.5)")
            .unwrap_or_default();
        let got: Vec<_> = rules.iter().map(|r| (r.node, r.ratio)).collect();
        assert_eq!(
            got,
            vec![
                (RedirectNode::Primary, 1.0),
                (RedirectNode::Standby, 0.3),
                (RedirectNode::Id(1), 0.5)
            ]
        );
        for bad in ["nocolon", "x:node", "x:1(2.0)", "x:1(0.5"] {
            assert!(parse_redirect_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn disable_lb_on_write_parses_every_mode() {
        let cases = [
            ("off", DisableLbOnWrite::Off),
            ("transaction", DisableLbOnWrite::Transaction),
            ("TRANS_TRANSACTION", DisableLbOnWrite::TransTransaction),
            ("always", DisableLbOnWrite::Always),
            ("dml_adaptive", DisableLbOnWrite::DmlAdaptive),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<DisableLbOnWrite>().ok(), Some(want), "{s}");
        }
        assert!("sometimes".parse::<DisableLbOnWrite>().is_err());
    }
}
