//! `PGPOOL_PARAMS_*` and friends: the environment over (or instead of) the file.

use super::tests::env;
use super::*;

#[test]
fn env_overrides_the_file() {
    let file = "port = 9000\nbackend_hostname0 = 'from-file'\nbackend_port0 = 5432\nssl = off\n";
    let cases: &[(&str, &str, &str, &str)] = &[
        // (env var, value, parameter, shown)
        ("PGPOOL_PARAMS_PORT", "9998", "port", "9998"),
        (
            "PGPOOL_PARAMS_BACKEND_HOSTNAME0",
            "from-env",
            "backend_hostname0",
            "from-env",
        ),
        (
            "PGPOOL_PARAMS_BACKEND_FLAG0",
            "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
            "backend_flag0",
            "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
        ),
        ("PGPOOL_PARAMS_SSL", "on", "ssl", "on"),
        (
            "PGPOOL_PARAMS_SOCKET_DIR",
            "/var/run/pgpool",
            "unix_socket_directories",
            "/var/run/pgpool",
        ),
        (
            "PGPOOL_PARAMS_RESET_QUERY_LIST",
            "SET a=1;DISCARD ALL",
            "reset_query_list",
            "SET a=1;DISCARD ALL",
        ),
        (
            "PGPOOL_PARAMS_SR_CHECK_USER",
            "it's",
            "sr_check_user",
            "it's",
        ),
        ("NOT_PGPOOL_PORT", "1234", "port", "9000"),
    ];
    for (var, value, name, expected) in cases {
        let loaded = parse_str(file, "pgpool.conf", &env(&[(var, value)]));
        let got = loaded.ok().and_then(|l| l.config.show(name));
        assert_eq!(got.as_deref(), Some(*expected), "{var}={value}");
    }
}

#[test]
fn env_alone_is_enough_to_run() {
    let vars = env(&[
        ("PGPOOL_PARAMS_BACKEND_HOSTNAME0", "mypostgres"),
        ("PGPOOL_PARAMS_BACKEND_PORT0", "5432"),
        ("PGPOOL_PARAMS_BACKEND_WEIGHT0", "1"),
        (
            "PGPOOL_PARAMS_BACKEND_FLAG0",
            "ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER",
        ),
        ("PGPOOL_PARAMS_BACKEND_HOSTNAME1", "mypostgres-replica"),
        ("PGPOOL_PARAMS_BACKEND_PORT1", "5432"),
        ("PGPOOL_PARAMS_BACKEND_WEIGHT1", "1"),
        ("PGPOOL_PARAMS_BACKEND_FLAG1", "DISALLOW_TO_FAILOVER"),
        ("PGPOOL_PARAMS_LISTEN_ADDRESSES", "*"),
        ("HOME", "/root"),
    ]);
    let loaded = load(None, &vars);
    let config = loaded.as_ref().map(|l| &l.config).ok();
    assert!(config.is_some_and(|c| c.validate().is_ok()), "{loaded:?}");
    let backends: Vec<(usize, bool, bool)> = config
        .map(|c| {
            c.backends
                .iter()
                .map(|b| (b.id, b.flag.always_primary, b.flag.disallow_to_failover))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(backends, [(0, true, true), (1, false, true)]);
    assert_eq!(
        config.map(|c| c.listen_addresses.clone()),
        Some(vec!["*".to_string()])
    );
}

#[test]
fn env_values_are_verbatim_and_errors_name_the_variable() {
    let loaded = load(None, &env(&[("PGPOOL_PARAMS_SR_CHECK_PASSWORD", "a=b'c")]));
    let password = loaded
        .map(|l| l.config.sr_check_password)
        .unwrap_or_default();
    assert_eq!(password, "a=b'c");
    let err = load(None, &env(&[("PGPOOL_PARAMS_NUM_INIT_CHILDREN", "many")])).err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.starts_with("environment variable PGPOOL_PARAMS_NUM_INIT_CHILDREN: invalid value for parameter \"num_init_children\": \"many\""),
        "{text}"
    );
}

#[test]
fn missing_file_gives_defaults_and_a_warning() {
    let loaded = load(Some(Path::new("/nonexistent-dir/pgpool.conf")), &[]);
    let warnings = loaded
        .as_ref()
        .map(|l| l.warnings.clone())
        .unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("could not open configuration file")),
        "{warnings:?}"
    );
    assert_eq!(loaded.map(|l| l.config.port).ok(), Some(9999));
}
