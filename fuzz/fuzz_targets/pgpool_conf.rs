//! pgpool.conf text (and `PGPOOL_PARAMS_*` values): parse errors are fine, panics are not.
//! A config that parses must also survive `validate`, `show` and `items`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgpool::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `include` may name any file; keep the fuzzer away from device files that never end.
    if text.contains("/dev") || text.contains("/proc") || text.contains("/sys") {
        return;
    }
    let (file, env_value) = text.split_once('\u{1}').unwrap_or((text, ""));
    let env = vec![(
        "PGPOOL_PARAMS_NUM_INIT_CHILDREN".to_string(),
        env_value.to_string(),
    )];
    let dir = std::env::temp_dir().join("pgpool-fuzz-conf-does-not-exist");
    let origin = dir.join("pgpool.conf");
    for env in [&env[..], &[]] {
        if let Ok(loaded) = config::parse_str(file, &origin.to_string_lossy(), env) {
            let mut cfg = loaded.config;
            let _ = cfg.validate();
            let _ = cfg.items();
            let _ = cfg.show("all");
            // `PGPOOL SET name = value` comes from clients.
            let (name, value) = env_value.split_once('=').unwrap_or((env_value, ""));
            let _ = cfg.set(name.trim(), value.trim());
            let _ = cfg.show(name.trim());
        }
    }
});
