//! pool_hba.conf text, then a lookup with a client whose user and database come from the
//! input too. Parse errors are fine; panics are not.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use pgpool::auth::{HbaFile, HbaRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `@file` may name any file; keep the fuzzer away from device files that never end.
    if text.contains("/dev") || text.contains("/proc") || text.contains("/sys") {
        return;
    }
    let (file, who) = text.split_once('\u{1}').unwrap_or((text, "alice\u{2}app"));
    let (user, database) = who.split_once('\u{2}').unwrap_or((who, who));
    let dir = std::env::temp_dir().join("pgpool-fuzz-hba-does-not-exist");
    let Ok(hba) = HbaFile::parse(file, &dir) else {
        return;
    };
    let addrs = [
        None,
        Some(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
        Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    for addr in addrs {
        for ssl in [false, true] {
            let req = HbaRequest {
                local: addr.is_none(),
                ssl,
                addr,
                database,
                user,
            };
            let _ = hba.find(&req).map(|l| l.method.clone());
        }
    }
});
