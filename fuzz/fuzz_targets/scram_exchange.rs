//! The server side of SCRAM-SHA-256 against arbitrary client messages. The input is
//! `client-first NUL client-final`; `@@` in the final message is replaced by the nonce the
//! server chose, so the fuzzer reaches the proof check. A random proof must never pass.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgpool::auth::{ScramSecret, ScramServer};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let first = parts.next().unwrap_or_default();
    let last = parts.next().unwrap_or_default();
    // One iteration keeps the fuzzer fast; the verifier format is what matters here.
    let secret = ScramSecret::from_password_with_salt("secret", b"fuzzsalt", 1);
    let mut server = ScramServer::new(secret);
    let Ok(server_first) = server.handle_client_first(first) else {
        return;
    };
    let nonce = server_first
        .strip_prefix("r=")
        .and_then(|s| s.split(',').next())
        .unwrap_or_default();
    let last = String::from_utf8_lossy(last).replace("@@", nonce);
    let result = server.handle_client_final(last.as_bytes());
    assert!(result.is_err(), "a fuzzed proof was accepted: {last:?}");
    assert!(server.handle_client_final(last.as_bytes()).is_err());
});
