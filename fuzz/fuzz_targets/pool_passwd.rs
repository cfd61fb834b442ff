//! pool_passwd (md5 / AES / TEXT / SCRAM verifier lines) with and without a key, plus
//! pcp.conf, and the SCRAM verifier parser: bad lines become warnings, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgpool::auth::{PcpUsers, PoolPasswd, ScramSecret};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (file, key) = text.split_once('\u{1}').unwrap_or((&text, "fuzzkey"));
    for key in [None, Some(key)] {
        let (passwd, _warnings) = PoolPasswd::parse(file, key);
        let _ = passwd.len();
        for line in file.lines() {
            if let Some((user, stored)) = line.split_once(':') {
                let _ = passwd.get(user).map(|p| p.kind());
                let _ = ScramSecret::from_verifier(stored);
            }
        }
    }
    let pcp = PcpUsers::parse(file);
    if let Some((user, hash)) = file.split_once(':') {
        let _ = pcp.verify(user, [1, 2, 3, 4], hash);
    }
});
