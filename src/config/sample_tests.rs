//! Debian's sample pgpool.conf, every parameter of it: each one is either honoured or named
//! once in the start-up warning about ignored parameters; none is silently dropped.

use super::names::{backend_name, health_check_name, ALIASES, PARSED_NOT_IMPLEMENTED};
use super::params::find;

/// Every parameter of Debian's pgpool2 4.3.5 sample, with the sample's values.
const DEBIAN_SAMPLE: &str = include_str!("testdata/debian-4.3.5-pgpool.conf");

/// pgpool-rs acts on this parameter.
fn honoured(name: &str) -> bool {
    let table = find(name).is_some() && !PARSED_NOT_IMPLEMENTED.contains(&name);
    table
        || backend_name(name).is_some_and(|(_, i)| i.is_ok())
        || health_check_name(name).is_some()
        || ALIASES.iter().any(|(a, _, _)| *a == name)
}

#[test]
fn every_parameter_of_debians_sample_is_honoured_or_warned_about_once() {
    let loaded = super::parse_str(DEBIAN_SAMPLE, "pgpool.conf", &[])
        .unwrap_or_else(|e| panic!("Debian's sample must load: {e}"));
    let unrecognized: Vec<_> = loaded
        .warnings
        .iter()
        .filter(|w| w.contains("unrecognized"))
        .collect();
    assert!(unrecognized.is_empty(), "{unrecognized:#?}");
    let summaries = loaded
        .warnings
        .iter()
        .filter(|w| w.contains("accepted but ignored"))
        .count();
    assert_eq!(summaries, 1, "{:#?}", loaded.warnings);
    let names: Vec<&str> = DEBIAN_SAMPLE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split('=').next().map(str::trim))
        .collect();
    assert!(names.len() > 180, "{}", names.len());
    for name in names {
        let warned = loaded
            .unsupported
            .iter()
            .filter(|u| u.starts_with(&format!("{name} (")))
            .count();
        match (honoured(name), warned) {
            (true, 0) | (false, 1) => {}
            (h, w) => panic!("{name}: honoured {h}, named {w} times in the ignored list"),
        }
    }
}

#[test]
fn use_watchdog_on_is_refused_with_a_pointer_to_several_pods() {
    let err = super::parse_str("use_watchdog = on\n", "pgpool.conf", &[])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("pgpool.conf:1") && err.contains("several pgpool-rs pods"),
        "{err}"
    );
    let off = super::parse_str("use_watchdog = off\n", "pgpool.conf", &[]);
    assert!(off.is_ok_and(|l| l.unsupported.len() == 1));
}
