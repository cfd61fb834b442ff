//! Everything a client sends after the startup packet: framing with hostile length words,
//! then every body decoder the proxy runs on client messages. None may panic, and a frame is
//! never longer than the configured limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgpool::protocol::{self, tag, FrameDecoder};

const MAX_LEN: u64 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let dec = FrameDecoder::new(MAX_LEN);
    // Fed in two chunks, as reads from a socket would split it.
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let mut buf = BytesMut::from(&data[..split]);
    let mut rest = &data[split..];
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.body.len() as u64 + 4 <= MAX_LEN);
                decode_body(frame.tag, &frame.body);
            }
            Ok(None) if !rest.is_empty() => {
                buf.extend_from_slice(rest);
                rest = &[];
            }
            Ok(None) | Err(_) => break,
        }
    }
});

fn decode_body(t: u8, body: &[u8]) {
    match t {
        tag::QUERY => drop(protocol::decode_query(body)),
        tag::PARSE => {
            drop(protocol::decode_parse(body).map(|p| (p.name.len(), p.query.len())));
            drop(protocol::parse_param_types(body));
        }
        tag::BIND => drop(protocol::decode_bind(body).map(|b| b.portal.len())),
        tag::DESCRIBE => drop(protocol::decode_target(body, "Describe")),
        tag::CLOSE => drop(protocol::decode_target(body, "Close")),
        tag::EXECUTE => drop(protocol::decode_execute(body)),
        tag::PASSWORD => {
            drop(protocol::decode_password(body));
            drop(protocol::decode_sasl_initial(body));
        }
        _ => {}
    }
}
