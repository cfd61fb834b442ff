//! The small typed values a `Config` holds: backend slots, flags, enum parameters and
//! redirect rules.

use super::values::{invalid, ConfEnum, Invalid};

/// Pgpool-II's `backend_flagN`, as the two bits it carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendFlag {
    /// `ALWAYS_PRIMARY`: this node is the primary without asking `pg_is_in_recovery()`.
    pub always_primary: bool,
    /// `DISALLOW_TO_FAILOVER`: never detach this node (the default `ALLOW_TO_FAILOVER` is false).
    pub disallow_to_failover: bool,
}

impl BackendFlag {
    /// `|`-separated, case-sensitive tokens, as Pgpool-II reads them.
    pub(crate) fn parse(v: &str) -> Result<Self, Invalid> {
        const ACCEPTED: &str =
            "'|'-separated ALLOW_TO_FAILOVER, DISALLOW_TO_FAILOVER, ALWAYS_PRIMARY";
        let mut flag = BackendFlag::default();
        let mut allow = false;
        for token in v.split('|').map(str::trim).filter(|t| !t.is_empty()) {
            match token {
                "ALLOW_TO_FAILOVER" => allow = true,
                "DISALLOW_TO_FAILOVER" => flag.disallow_to_failover = true,
                "ALWAYS_PRIMARY" => flag.always_primary = true,
                other => {
                    return Err(invalid(format!(
                        "{ACCEPTED}; unknown backend flag: {other}"
                    )))
                }
            }
        }
        if allow && flag.disallow_to_failover {
            return Err(invalid(format!(
                "{ACCEPTED}; cannot set ALLOW_TO_FAILOVER and DISALLOW_TO_FAILOVER at the same time"
            )));
        }
        Ok(flag)
    }

    /// Pgpool-II's spelling, e.g. `ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER`.
    pub fn show(&self) -> String {
        let failover = if self.disallow_to_failover {
            "DISALLOW_TO_FAILOVER"
        } else {
            "ALLOW_TO_FAILOVER"
        };
        if self.always_primary {
            format!("ALWAYS_PRIMARY|{failover}")
        } else {
            failover.to_string()
        }
    }
}

/// One backend slot `N` (`backend_hostnameN` …). A slot exists iff `backend_portN` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// The slot number N; node 0 is the primary in this deployment.
    pub id: usize,
    /// `backend_hostnameN`: host or Service name; `''` means the Unix socket in `/tmp`,
    /// a leading `/` names another socket directory.
    pub hostname: String,
    /// `backend_portN`.
    pub port: u16,
    /// `backend_weightN` as written (0 .. 1e8, default 0); not normalised. Pgpool-II
    /// normalises to `w / Σw` for the load-balance draw.
    pub weight: f64,
    /// `backend_flagN`, default `ALLOW_TO_FAILOVER`.
    pub flag: BackendFlag,
    /// `backend_application_nameN`: the standby's `application_name` in `pg_stat_replication`.
    pub application_name: String,
    /// `health_check_*N`: this node's own health check settings, where given.
    pub health_check: HealthCheckOverrides,
}

/// The per-node `health_check_periodN` … `health_check_retry_delayN`; `None` = the global one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthCheckOverrides {
    pub period: Option<u64>,
    pub timeout: Option<u64>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub database: Option<String>,
    pub max_retries: Option<u32>,
    pub retry_delay: Option<u64>,
}

/// One node's effective health check settings (see `Config::health_check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Seconds between checks; 0 = off.
    pub period: u64,
    /// Seconds for one attempt (connect and answer); 0 = no limit.
    pub timeout: u64,
    pub user: String,
    pub password: String,
    pub database: String,
    pub max_retries: u32,
    /// Seconds between retries.
    pub retry_delay: u64,
}

/// `disable_load_balance_on_write`: when a write stops reads from going to a replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DisableLbOnWrite {
    /// Never: reads keep being balanced after writes.
    Off,
    /// After a write, the rest of that explicit transaction reads from the primary.
    #[default]
    Transaction,
    /// As `Transaction`, and later transactions too until the session's transaction ends.
    TransTransaction,
    /// After a write, the rest of the session reads from the primary.
    Always,
    /// Only reads of the written tables (and `dml_adaptive_object_relationship_list`
    /// dependants) go to the primary.
    DmlAdaptive,
}

impl ConfEnum for DisableLbOnWrite {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("off", Self::Off),
        ("transaction", Self::Transaction),
        ("trans_transaction", Self::TransTransaction),
        ("always", Self::Always),
        ("dml_adaptive", Self::DmlAdaptive),
    ];
}

/// `check_temp_table`: how a SELECT on a temporary table is detected (it must go to the primary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckTempTable {
    /// Ask the system catalog (`on` is an alias).
    #[default]
    Catalog,
    /// Track `CREATE TEMP TABLE` / `DROP TABLE` seen in the session.
    Trace,
    /// Do not check (`off` is an alias).
    None,
}

impl ConfEnum for CheckTempTable {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("catalog", Self::Catalog),
        ("trace", Self::Trace),
        ("none", Self::None),
        ("on", Self::Catalog),
        ("off", Self::None),
    ];
}

/// `log_standby_delay`: when the replication monitor logs a standby's delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogStandbyDelay {
    Always,
    #[default]
    IfOverThreshold,
    None,
}

impl ConfEnum for LogStandbyDelay {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("always", Self::Always),
        ("if_over_threshold", Self::IfOverThreshold),
        ("none", Self::None),
    ];
}

/// `backend_ssl` (pgpool-rs extension): TLS from the proxy to the backends. Pgpool-II
/// always tries TLS when `ssl = on` and falls back; `prefer` is that behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendSsl {
    #[default]
    Prefer,
    Disable,
    Require,
}

impl ConfEnum for BackendSsl {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("prefer", Self::Prefer),
        ("disable", Self::Disable),
        ("require", Self::Require),
    ];
}

/// `pool_mode` (pgpool-rs extension): how long a client holds a backend connection.
/// `session` is Pgpool-II's behaviour; `transaction` shares connections between clients,
/// each holding one only from the start of a transaction (or autocommit request) to its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PoolMode {
    #[default]
    Session,
    Transaction,
}

impl ConfEnum for PoolMode {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("session", Self::Session),
        ("transaction", Self::Transaction),
    ];
}

/// One item `user@database:mode` of `pool_mode_overrides`; `*` (or nothing) on either side
/// of `@` matches every name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolModeOverride {
    pub user: Option<String>,
    pub database: Option<String>,
    pub mode: PoolMode,
}

impl PoolModeOverride {
    pub fn matches(&self, user: &str, database: &str) -> bool {
        self.user.as_deref().is_none_or(|u| u == user)
            && self.database.as_deref().is_none_or(|d| d == database)
    }

    /// The item as written, for SHOW.
    pub fn source(&self) -> String {
        format!(
            "{}@{}:{}",
            self.user.as_deref().unwrap_or("*"),
            self.database.as_deref().unwrap_or("*"),
            super::values::show_enum(&self.mode)
        )
    }
}

/// Parses `pool_mode_overrides`: comma-separated `user@database:mode` items.
pub(crate) fn parse_pool_mode_overrides(v: &str) -> Result<Vec<PoolModeOverride>, Invalid> {
    const ACCEPTED: &str =
        "comma-separated 'user@database:mode' items, '*' for any name, mode = session or transaction";
    v.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let bad = || invalid(format!("{ACCEPTED}: \"{item}\""));
            let (names, mode) = item.rsplit_once(':').ok_or_else(bad)?;
            let (user, database) = names.split_once('@').ok_or_else(bad)?;
            let name = |s: &str| match s.trim() {
                "" | "*" => None,
                n => Some(n.to_string()),
            };
            Ok(PoolModeOverride {
                user: name(user),
                database: name(database),
                mode: super::values::parse_enum(mode).map_err(|_| bad())?,
            })
        })
        .collect()
}

/// Where a redirect preference sends matching sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectNode {
    /// A node id 0..127.
    Id(usize),
    Primary,
    /// Any standby (chosen by weight).
    Standby,
}

/// One item `regex:node[(ratio)]` of `*_redirect_preference_list`.
#[derive(Debug, Clone)]
pub struct RedirectRule {
    /// The name pattern, anchored (`^…$` added unless present) and case-insensitive.
    pub pattern: regex::Regex,
    pub node: RedirectNode,
    /// Share of matching sessions sent to `node` (0.0 ..= 1.0, default 1.0).
    pub ratio: f64,
}

/// A parsed `*_redirect_preference_list`: its rules in order, read as a slice, and the
/// text as written, which is what SHOW prints.
#[derive(Debug, Clone, Default)]
pub struct RedirectList {
    rules: Vec<RedirectRule>,
    source: String,
}

impl RedirectList {
    /// The setting as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl std::ops::Deref for RedirectList {
    type Target = [RedirectRule];

    fn deref(&self) -> &[RedirectRule] {
        &self.rules
    }
}

/// Parses a redirect list the way Pgpool-II does: items split on `,` with no trimming
/// (a space after a comma becomes part of the regex), each split at its first `:`.
pub(crate) fn parse_redirect_list(v: &str) -> Result<RedirectList, Invalid> {
    let rules = v
        .split(',')
        .filter(|item| !item.is_empty())
        .map(parse_redirect_item)
        .collect::<Result<_, _>>()?;
    Ok(RedirectList {
        rules,
        source: v.to_string(),
    })
}

const REDIRECT_ACCEPTED: &str =
    "comma-separated 'regex:node[(ratio)]' items, node = 0..127, primary or standby, ratio 0..1";

fn parse_redirect_item(item: &str) -> Result<RedirectRule, Invalid> {
    let bad = |why: &str| invalid(format!("{REDIRECT_ACCEPTED}; {why}: \"{item}\""));
    let (left, right) = item.split_once(':').ok_or_else(|| bad("missing ':'"))?;
    let (spec, ratio) = match right.split_once('(') {
        Some((spec, rest)) => {
            let ratio = rest.strip_suffix(')').ok_or_else(|| bad("missing ')'"))?;
            let ratio: f64 = ratio.trim().parse().map_err(|_| bad("bad ratio"))?;
            if !(0.0..=1.0).contains(&ratio) {
                return Err(bad("ratio outside 0..1"));
            }
            (spec, ratio)
        }
        None => (right, 1.0),
    };
    let node = match spec {
        s if s.eq_ignore_ascii_case("primary") => RedirectNode::Primary,
        s if s.eq_ignore_ascii_case("standby") => RedirectNode::Standby,
        s => match s.parse::<usize>() {
            Ok(id) if id < 128 && s.bytes().all(|b| b.is_ascii_digit()) => RedirectNode::Id(id),
            _ => return Err(bad("wrong redirect node spec")),
        },
    };
    if left.is_empty() {
        return Err(bad("empty regular expression"));
    }
    let pattern = anchored_regex(left).map_err(|_| bad("wrong regular expression"))?;
    Ok(RedirectRule {
        pattern,
        node,
        ratio,
    })
}

/// Pgpool-II's `add_regex_pattern`: `^` and `$` are added unless present, matching is
/// case-insensitive, so a pattern matches a whole name.
pub fn anchored_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    let mut p = String::with_capacity(pattern.len() + 2);
    if !pattern.starts_with('^') {
        p.push('^');
    }
    p.push_str(pattern);
    if !pattern.ends_with('$') {
        p.push('$');
    }
    regex::RegexBuilder::new(&p).case_insensitive(true).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_flags_parse_like_pgpool() {
        let cases: &[(&str, Option<(bool, bool)>)] = &[
            ("", Some((false, false))),
            ("ALLOW_TO_FAILOVER", Some((false, false))),
            ("DISALLOW_TO_FAILOVER", Some((false, true))),
            ("ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER", Some((true, true))),
            ("ALWAYS_PRIMARY", Some((true, false))),
            ("always_primary", None),
            ("ALLOW_TO_FAILOVER|DISALLOW_TO_FAILOVER", None),
            ("ALWAYS_PRIMARY,DISALLOW_TO_FAILOVER", None),
        ];
        for (input, expected) in cases {
            let got = BackendFlag::parse(input)
                .ok()
                .map(|f| (f.always_primary, f.disallow_to_failover));
            assert_eq!(got, *expected, "input {input:?}");
        }
    }

    /// Pgpool-II's syntax and matching: `,` splits items with no trimming, `^`/`$` are
    /// added unless present (so `a|b` is `^a|b$`: either end anchored, not both), names
    /// match case-insensitively, node is an id 0..127, `primary` or `standby` in any case,
    /// ratio defaults to 1. Each line: list, name → the first matching rule's (node, ratio).
    #[test]
    fn redirect_lists_match_names_like_pgpool() {
        use RedirectNode::{Id, Primary, Standby};
        type Case = (&'static str, &'static str, Option<(RedirectNode, f64)>);
        let cases: &[Case] = &[
            ("postgres:primary", "postgres", Some((Primary, 1.0))),
            ("postgres:primary", "POSTGRES", Some((Primary, 1.0))),
            ("postgres:primary", "postgres2", None),
            ("postgres:primary", "my_postgres", None),
            ("a|b:1", "a", Some((Id(1), 1.0))),
            ("a|b:1", "b", Some((Id(1), 1.0))),
            ("a|b:1", "ax", Some((Id(1), 1.0))),
            ("a|b:1", "xb", Some((Id(1), 1.0))),
            ("a|b:1", "xa", None),
            ("(a|b):1", "ax", None),
            ("^bi.*$:STANDBY", "bi_reports", Some((Standby, 1.0))),
            ("^bi.*$:STANDBY", "xbi", None),
            ("mydb\\d:1(0.3)", "mydb7", Some((Id(1), 0.3))),
            ("mydb\\d:1(0.3)", "mydb", None),
            ("a:primary, b:standby", " b", Some((Standby, 1.0))),
            ("a:primary, b:standby", "b", None),
            ("a:primary,,b:2", "b", Some((Id(2), 1.0))),
            ("x:Primary(0)", "x", Some((Primary, 0.0))),
            ("x:127( 0.5 )", "x", Some((Id(127), 0.5))),
            ("x.*:0,xy:1", "xy", Some((Id(0), 1.0))),
            ("", "x", None),
        ];
        for (list, name, want) in cases {
            let rules = parse_redirect_list(list);
            assert!(rules.is_ok(), "{list:?} must parse");
            let got = rules.ok().and_then(|r| {
                r.iter()
                    .find(|rule| rule.pattern.is_match(name))
                    .map(|rule| (rule.node, rule.ratio))
            });
            assert_eq!(got, *want, "{list:?} against {name:?}");
        }
    }

    #[test]
    fn redirect_lists_reject_bad_items_and_show_as_written() {
        for bad in [
            "a:replica",
            "a",
            "a:1(x)",
            "a:128",
            "a:+1",
            ":primary",
            "a:0(2)",
            "a:0(-0.1)",
            "a:1(0.5",
            "a: primary",
            "(a:1",
            "a:1,b",
        ] {
            assert!(
                parse_redirect_list(bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
        let shown = parse_redirect_list("a:1,,b:standby(0.5)").map(|l| l.as_str().to_string());
        assert_eq!(shown.ok().as_deref(), Some("a:1,,b:standby(0.5)"));
    }

    #[test]
    fn pool_mode_overrides_pick_the_first_matching_item() {
        let list = parse_pool_mode_overrides(
            "app@shop:transaction, *@reports:session,batch@*:transaction,@:session",
        )
        .unwrap_or_default();
        let mode_for =
            |user: &str, db: &str| list.iter().find(|o| o.matches(user, db)).map(|o| o.mode);
        let cases = [
            // (user, database) -> mode of the first matching item
            (("app", "shop"), Some(PoolMode::Transaction)),
            (("app", "reports"), Some(PoolMode::Session)),
            (("batch", "shop"), Some(PoolMode::Transaction)),
            (("other", "shop"), Some(PoolMode::Session)),
        ];
        for ((user, db), want) in cases {
            assert_eq!(mode_for(user, db), want, "{user}@{db}");
        }
        let shown: Vec<String> = list.iter().map(PoolModeOverride::source).collect();
        assert_eq!(
            shown,
            [
                "app@shop:transaction",
                "*@reports:session",
                "batch@*:transaction",
                "*@*:session"
            ]
        );
        for bad in ["app:transaction", "app@shop", "app@shop:statement", "a@b:"] {
            assert!(
                parse_pool_mode_overrides(bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }
}
