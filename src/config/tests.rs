//! Whole-module tests: files and environments in, `Config` or error text out.

use super::*;

pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(text: &str) -> Result<Loaded, ConfigError> {
    parse_str(text, "pgpool.conf", &[])
}

fn shown(text: &str, name: &str) -> Option<String> {
    parse(text).ok().and_then(|l| l.config.show(name))
}

#[test]
fn parse_cases_follow_pgpool_lexing() {
    let cases: &[(&str, &str, &str)] = &[
        // (file text, parameter, value as shown)
        ("port 9999", "port", "9999"),
        ("port = '5433'", "port", "5433"),
        ("port=5434", "port", "5434"),
        ("num_init_children = 10 max_pool = 2", "max_pool", "2"),
        (
            "num_init_children = 10 max_pool = 2",
            "num_init_children",
            "10",
        ),
        ("port = 9000 # comment\nport = 9001", "port", "9001"),
        ("child_life_time = 30s", "child_life_time", "30s"),
        ("child_life_time = '5min'", "child_life_time", "5min"),
        ("child_life_time = 600", "child_life_time", "10min"),
        ("delay_threshold = 64MB", "delay_threshold", "64MB"),
        ("connect_timeout = 2s", "connect_timeout", "2s"),
        ("read_your_writes = on", "read_your_writes", "on"),
        (
            "read_your_writes_timeout = 1s",
            "read_your_writes_timeout",
            "1s",
        ),
        (
            "read_your_writes_timeout = 20",
            "read_your_writes_timeout",
            "20ms",
        ),
        ("num_init_children = 0x20", "num_init_children", "32"),
        ("sr_check_user = 'it\\'s'", "sr_check_user", "it\\'s"),
        ("sr_check_user = 'a # b'", "sr_check_user", "a # b"),
        ("listen_addresses = *", "listen_addresses", "*"),
        ("listen_addresses = ''", "listen_addresses", ""),
        ("listen_addresses = 'a, b'", "listen_addresses", "a,b"),
        ("load_balance_mode = off", "load_balance_mode", "off"),
        ("load_balance_mode = 'FALSE'", "load_balance_mode", "off"),
        ("ssl = yes", "ssl", "on"),
        ("sr_check_password = 'secret'", "sr_check_password", "*****"),
        (
            "reset_query_list = 'ABORT; DISCARD ALL;'",
            "reset_query_list",
            "ABORT;DISCARD ALL",
        ),
        ("check_temp_table = on", "check_temp_table", "catalog"),
        (
            "disable_load_balance_on_write = 'DML_ADAPTIVE'",
            "disable_load_balance_on_write",
            "dml_adaptive",
        ),
        (
            "socket_dir = '/var/run/pgpool'",
            "unix_socket_directories",
            "/var/run/pgpool",
        ),
        (
            "backend_hostname0 = mypostgres\nbackend_port0 = 5432",
            "backend_hostname0",
            "mypostgres",
        ),
        (
            "backend_hostname1 = 'my-replica.svc'\nbackend_port1 = 5432",
            "backend_hostname1",
            "my-replica.svc",
        ),
        (
            "backend_port0 = 5432\nbackend_weight0 = 0.5",
            "backend_weight0",
            "0.5",
        ),
        (
            "backend_port0 = 5432\nbackend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'",
            "backend_flag0",
            "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
        ),
        ("sr_check_user =\nport = 9001", "sr_check_user", ""),
        ("sr_check_user =\nport = 9001", "port", "9001"),
        ("work_dir = '/var/lib/pgpool'", "logdir", "/var/lib/pgpool"),
        ("", "port", "9999"),
        ("", "reset_query_list", "ABORT;DISCARD ALL"),
        ("", "unix_socket_permissions", "0777"),
        ("", "max_message_size", "1GB"),
    ];
    for (text, name, expected) in cases {
        assert_eq!(
            shown(text, name).as_deref(),
            Some(*expected),
            "{text:?} -> {name}"
        );
    }
}

#[test]
fn errors_name_file_line_parameter_and_accepted_values() {
    let cases: &[(&str, &str)] = &[
        (
            "\nport = 99",
            "pgpool.conf:2: invalid value for parameter \"port\": \"99\" (accepted: an integer in 1024 .. 65535)",
        ),
        (
            "ssl = maybe",
            "pgpool.conf:1: invalid value for parameter \"ssl\": \"maybe\" (accepted: on, off, true, false, yes, no, 1, 0)",
        ),
        (
            "check_temp_table = sometimes",
            "(accepted: catalog, trace, none, on, off)",
        ),
        ("child_life_time = '5 parsecs'", "\"child_life_time\": \"5 parsecs\""),
        ("memory_cache_enabled = on", "does not implement the in-memory query cache"),
        ("backend_clustering_mode = native_replication", "accepted: streaming_replication"),
        ("backend_flag0 = 'ALLOW_TO_FAILOVER|DISALLOW_TO_FAILOVER'", "at the same time"),
        ("backend_flag0 = 'ALWAYS_PRIMARY|NOPE'", "unknown backend flag: NOPE"),
        ("backend_flag0 = ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER", "pgpool.conf:1: syntax error"),
        ("backend_port0 = 5432\nbackend_weight0 = heavy", "pgpool.conf:2: invalid value for parameter \"backend_weight0\""),
        ("backend_hostname = x", "\"backend_hostname\" expects the index value"),
        ("backend_port128 = 5432", "\"backend_port128\" has an invalid index value"),
        ("database_redirect_preference_list = 'postgres:replica'", "wrong redirect node spec"),
        ("port", "pgpool.conf:1: syntax error in configuration file: parse error at 'end of file'"),
        ("= 5", "parse error at '='"),
        ("sr_check_user = 'open", "unterminated string"),
        ("10.0.0.1 = x", "syntax error"),
    ];
    for (text, expected) in cases {
        let got = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            got.contains(expected),
            "{text:?}: got {got:?}, want {expected:?}"
        );
    }
}

#[test]
fn unknown_renamed_and_miscased_names_warn_with_location() {
    let text =
        "sr_check_period = 5 parsecs\nSR_CHECK_PERIOD = 1\nblack_function_list = 'nextval'\n\
                master_slave_mode = on\nsocket_dir = '/s'\nwd_port = 9000\n";
    let loaded = parse(text).ok();
    let warnings = loaded
        .as_ref()
        .map(|l| l.warnings.join("\n"))
        .unwrap_or_default();
    let expected = [
        "pgpool.conf:1: unrecognized configuration parameter \"parsecs\"",
        "pgpool.conf:2: unrecognized configuration parameter \"SR_CHECK_PERIOD\" (did you mean \"sr_check_period\"?)",
        "pgpool.conf:3: parameter \"black_function_list\" was renamed to \"write_function_list\"",
        "pgpool.conf:4: parameter \"master_slave_mode\" was renamed to \"backend_clustering_mode\"",
        "pgpool.conf:5: parameter \"socket_dir\" was renamed to \"unix_socket_directories\"",
    ];
    for e in expected {
        assert!(warnings.contains(e), "missing {e:?} in {warnings}");
    }
    let config = loaded.map(|l| {
        (
            l.config.sr_check_period,
            l.config.write_function_list,
            l.unsupported,
        )
    });
    let (period, writers, unsupported) = config.unwrap_or_default();
    assert_eq!(period, 5, "the miscased name must not apply");
    assert!(writers.is_empty(), "renamed names are not applied");
    assert!(
        unsupported.iter().any(|u| u.starts_with("wd_port (")),
        "{unsupported:?}"
    );
}

#[test]
fn backends_exist_only_where_a_port_is_set_and_are_ordered() {
    let text = "backend_hostname2 = c\nbackend_port2 = 5434\nbackend_hostname1 = b\n\
                backend_hostname0 = a\nbackend_port0 = 5432\nbackend_weight0 = 1\n";
    let backends = parse(text).map(|l| l.config.backends).unwrap_or_default();
    let summary: Vec<(usize, &str, u16)> = backends
        .iter()
        .map(|b| (b.id, b.hostname.as_str(), b.port))
        .collect();
    assert_eq!(summary, [(0, "a", 5432), (2, "c", 5434)]);
}

#[test]
fn redirect_lists_become_rules() {
    let text = "database_redirect_preference_list = 'postgres:primary,bi.*:1(0.5)'\n\
                app_name_redirect_preference_list = 'psql:standby'";
    let config = parse(text).map(|l| l.config).ok();
    let db: Vec<(RedirectNode, f64)> = config
        .as_ref()
        .map(|c| {
            c.database_redirect_preference_list
                .iter()
                .map(|r| (r.node, r.ratio))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        db,
        [(RedirectNode::Primary, 1.0), (RedirectNode::Id(1), 0.5)]
    );
    let shown = config.and_then(|c| c.show("database_redirect_preference_list"));
    assert_eq!(shown.as_deref(), Some("postgres:primary,bi.*:1(0.5)"));
}

#[test]
fn primary_routing_patterns_split_on_unescaped_semicolons() {
    let text = "primary_routing_query_pattern_list = 'SELECT \\'a\\;b\\';.*FOR UPDATE.*'";
    let list = parse(text).map(|l| l.config.primary_routing_query_pattern_list);
    assert_eq!(
        list.unwrap_or_default(),
        ["SELECT \\'a;b\\'", ".*FOR UPDATE.*"]
    );
}

#[test]
fn includes_are_relative_to_the_including_file_and_depth_limited() {
    let Ok(dir) = tempfile::tempdir() else {
        panic!("cannot create a temporary directory")
    };
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text);
    let sub = dir.path().join("sub");
    assert!(std::fs::create_dir(&sub).is_ok());
    assert!(write(
        "pgpool.conf",
        "port = 9000\ninclude = 'sub/a.conf'\nmax_pool = 7\n"
    )
    .is_ok());
    assert!(write("sub/a.conf", "include 'b.conf'\nport = 9001\n").is_ok());
    assert!(write("sub/b.conf", "num_init_children = 3\n").is_ok());
    assert!(write("loop.conf", "include = 'loop.conf'\n").is_ok());

    let loaded = load(Some(&dir.path().join("pgpool.conf")), &[]).map(|l| l.config);
    let got = loaded.map(|c| (c.port, c.num_init_children, c.max_pool, c.config_dir));
    let (port, children, pool, config_dir) = got.unwrap_or_default();
    assert_eq!((port, children, pool), (9001, 3, 7));
    assert_eq!(config_dir, dir.path());

    let looped = load(Some(&dir.path().join("loop.conf")), &[]).err();
    let text = looped.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("maximum nesting depth exceeded"), "{text}");
    assert!(text.contains("loop.conf:1"), "{text}");
}

#[test]
fn validate_rejects_unrunnable_configurations() {
    let base = "backend_hostname0 = a\nbackend_port0 = 5432\nbackend_weight0 = 1\n";
    let cases: &[(&str, Option<&str>)] = &[
        (base, None),
        ("", Some("backend_hostname0 is not set")),
        (
            "backend_hostname1 = b\nbackend_port1 = 5432\nbackend_weight1 = 1",
            Some("backend_hostname0 is not set"),
        ),
        (
            "backend_hostname0 = a\nbackend_port0 = 5432\nbackend_weight0 = 0\n\
             backend_hostname1 = b\nbackend_port1 = 5432\nbackend_weight1 = 0",
            Some("every backend_weightN is 0"),
        ),
        // One backend and no weight runs, as in Pgpool-II: it gets every query anyway.
        (
            "backend_hostname0 = a\nbackend_port0 = 5432\nbackend_weight0 = 0",
            None,
        ),
        (
            "reserved_connections = 32",
            Some("reserved_connections (32) must be less"),
        ),
        ("pcp_port = 9999", Some("port and pcp_port are both 9999")),
        (
            "pool_mode = transaction\nconnection_cache = off",
            Some("needs connection_cache"),
        ),
        (
            "pool_mode_overrides = 'a@b:transaction'\nconnection_cache = off",
            Some("needs connection_cache"),
        ),
        ("metrics_port = 0\npcp_port = 9930", None),
        (
            "ssl_min_protocol_version = 'TLSv1.3'\nssl_max_protocol_version = 'TLSv1.2'",
            Some("ssl_min_protocol_version"),
        ),
    ];
    for (extra, expected) in cases {
        let text = if extra.starts_with("backend_") || extra.is_empty() {
            extra.to_string()
        } else {
            format!("{base}{extra}")
        };
        let loaded = parse(&text);
        let result = loaded.map(|l| l.config.validate().map_err(|e| e.to_string()));
        match (result, expected) {
            (Ok(Ok(())), None) => {}
            (Ok(Err(msg)), Some(want)) if msg.contains(want) => {}
            (other, _) => panic!("{text:?}: got {other:?}, want {expected:?}"),
        }
    }
}

#[test]
fn every_default_parses_and_shows_back_the_same() {
    for p in params::PARAMS {
        let mut c = Config::blank();
        assert!(
            (p.set)(&mut c, p.default).is_ok(),
            "default of {} must parse",
            p.name
        );
        if !p.secret {
            let again = (p.show)(&c);
            let mut d = Config::blank();
            assert!(
                (p.set)(&mut d, &again).is_ok(),
                "{} shows {again:?}",
                p.name
            );
            assert_eq!((p.show)(&d), again, "{}", p.name);
        }
    }
}

#[test]
fn render_effective_parses_back_to_the_same_values() {
    let text = "backend_hostname0 = a\nbackend_port0 = 5432\nbackend_weight0 = 1\n\
                backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'\nchild_life_time = 90\n\
                database_redirect_preference_list = 'x:primary'\n";
    let first = parse(text)
        .map(|l| l.config.render_effective())
        .unwrap_or_default();
    let again = parse(&first);
    // Only the one warning naming the parameters pgpool-rs parses but does not act on.
    assert!(
        again.as_ref().is_ok_and(|l| l.warnings.len() <= 1
            && l.warnings
                .iter()
                .all(|w| w.contains("accepted but ignored"))),
        "{again:?}"
    );
    let second = again
        .map(|l| l.config.render_effective())
        .unwrap_or_default();
    assert_eq!(first, second);
    assert!(first.contains("child_life_time = '90s'\n"), "{first}");
}

#[test]
fn session_context_and_pgpool_set() {
    assert!(is_session_settable("client_idle_limit"));
    assert!(is_session_settable("allow_sql_comments"));
    assert!(!is_session_settable("port"));
    assert_eq!(context("backend_weight1"), Some(Context::Reload));
    assert_eq!(context("nonsense"), None);
    let mut c = Config::default();
    assert!(c.set("client_idle_limit", "5min").is_ok());
    assert_eq!(c.client_idle_limit, 300);
    assert!(matches!(c.set("nope", "1"), Err(ConfigError::Unknown(_))));
    assert!(c.set("allow_sql_comments", "perhaps").is_err());
}

#[test]
fn paths_resolve_against_the_config_dir() {
    let mut c = Config {
        config_dir: PathBuf::from("/etc/pgpool"),
        ..Config::default()
    };
    assert_eq!(
        c.pool_passwd_path(),
        Some(PathBuf::from("/etc/pgpool/pool_passwd"))
    );
    assert_eq!(
        c.resolve_path("/abs/tls.crt"),
        PathBuf::from("/abs/tls.crt")
    );
    assert_eq!(
        c.resolve_path("tls/tls.key"),
        PathBuf::from("/etc/pgpool/tls/tls.key")
    );
    c.pool_passwd = String::new();
    assert_eq!(c.pool_passwd_path(), None);
}

#[test]
fn items_list_every_parameter_and_each_backend() {
    let text = "backend_hostname0 = a\nbackend_port0 = 5432\nsr_check_password = 'x'\n";
    let items = parse(text).map(|l| l.config.items()).unwrap_or_default();
    let find = |n: &str| {
        items
            .iter()
            .find(|(name, _, _)| name == n)
            .map(|(_, v, _)| v.clone())
    };
    assert_eq!(find("num_init_children").as_deref(), Some("32"));
    assert_eq!(find("backend_port0").as_deref(), Some("5432"));
    assert_eq!(find("sr_check_password").as_deref(), Some("*****"));
    assert_eq!(find("backend_port1"), None);
    assert!(items.len() > params::PARAMS.len());
}

#[test]
fn hostile_input_gives_errors_not_panics() {
    let inputs = [
        "'",
        "\\",
        "a = '\\",
        "a = 'x\\\n'",
        "0x",
        "a = 0x",
        "a = -",
        "a = +.",
        "a = 1.",
        "é = 1",
        "a = é",
        "port = 99999999999999999999999",
        "port = 1e400",
        "port = -0x",
        "backend_port99999999999999999999 = 1",
        "include",
        "include =",
        "a\u{0}b = 1",
        "child_life_time = 5 min",
        "delay_threshold = 9999999TB",
    ];
    for input in inputs {
        let _ = parse(input);
        let _ = load(None, &env(&[("PGPOOL_PARAMS_PORT", input)]));
    }
}

#[test]
fn weights_normalise_to_shares() {
    let text =
        "backend_port0 = 5432\nbackend_weight0 = 1\nbackend_port1 = 5433\nbackend_weight1 = 3\n";
    let shares = parse(text)
        .map(|l| l.config.normalized_weights())
        .unwrap_or_default();
    assert_eq!(shares, [(0, 0.25), (1, 0.75)]);
}

#[test]
fn per_node_health_check_settings_override_the_global_ones() {
    let text = "health_check_period = 10\nhealth_check_user = 'hc'\nhealth_check_max_retries = 2\n\
                backend_hostname0 = 'a'\nbackend_port0 = 5432\n\
                backend_hostname1 = 'b'\nbackend_port1 = 5433\n\
                health_check_period1 = 3\nhealth_check_user1 = 'other'\nhealth_check_timeout1 = 5\n";
    let loaded =
        crate::config::parse_str(text, "pgpool.conf", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.unsupported.is_empty(), "{:?}", loaded.unsupported);
    let cfg = loaded.config;
    let (h0, h1) = (cfg.health_check(0), cfg.health_check(1));
    assert_eq!(
        (h0.period, h0.user.as_str(), h0.timeout, h0.max_retries),
        (10, "hc", 20, 2)
    );
    assert_eq!(
        (h1.period, h1.user.as_str(), h1.timeout, h1.max_retries),
        (3, "other", 5, 2)
    );
    let bad = crate::config::parse_str("health_check_period1 = -1\n", "pgpool.conf", &[]);
    assert!(bad.is_err(), "out-of-range per-node value is an error");
}

/// Parameters pgpool-rs acts on are not reported as ignored; the ones it only checks are.
#[test]
fn only_parameters_nothing_reads_are_reported_as_ignored() {
    let cases = [
        ("unix_socket_permissions = 0700", false),
        ("check_unlogged_table = off", false),
        ("load_balance_mode = off", false),
        ("log_hostname = on", true),
        ("failover_on_backend_error = off", true),
    ];
    for (line, ignored) in cases {
        let got = parse(line).map(|l| !l.unsupported.is_empty());
        assert_eq!(got.ok(), Some(ignored), "{line}");
    }
}
