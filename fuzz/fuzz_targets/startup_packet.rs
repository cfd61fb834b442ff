//! The untagged first packet: length word, then StartupMessage / SSLRequest / GSSENCRequest /
//! CancelRequest. Must never panic; a decoded startup message round-trips.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgpool::protocol::StartupPacket;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(len)) = StartupPacket::peek_len(data) else {
        return;
    };
    assert!((8..=10_000).contains(&len));
    let Some(packet) = data.get(..len) else {
        return;
    };
    if let Ok(StartupPacket::Startup { params, .. }) = StartupPacket::decode(packet) {
        let mut out = BytesMut::new();
        StartupPacket::encode_startup(&params, &mut out);
        match StartupPacket::decode(&out) {
            Ok(StartupPacket::Startup { params: again, .. }) => assert_eq!(params, again),
            other => panic!("re-encoded startup packet decodes as {other:?}"),
        }
    }
});
