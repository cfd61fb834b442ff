//! Malformed packets get a clean FATAL with SQLSTATE 08P01, and the proxy keeps serving
//! everyone else.

mod common;

use std::time::Duration;

use common::wire::startup;
use common::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes as a fresh client and returns what the proxy answered before closing.
async fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out
}

/// The SQLSTATE of the first ErrorResponse in `reply`, if there is one.
fn sqlstate(reply: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 5 <= reply.len() {
        let tag = reply[i];
        let len =
            u32::from_be_bytes([reply[i + 1], reply[i + 2], reply[i + 3], reply[i + 4]]) as usize;
        let body = reply.get(i + 5..i + 1 + len)?;
        if tag == b'E' {
            for field in body.split(|&b| b == 0) {
                if let Some(code) = field.strip_prefix(b"C") {
                    return Some(String::from_utf8_lossy(code).into_owned());
                }
            }
        }
        i += 1 + len;
    }
    None
}

async fn assert_healthy(proxy: &Proxy) {
    let c = proxy.connect("postgres", "postgres").await;
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn malformed_startup_packets_get_protocol_errors() {
    let proxy = Proxy::start("");
    let mut unterminated = startup(&[("user", "postgres")]);
    unterminated.pop();
    let len = unterminated.len() as i32;
    unterminated[..4].copy_from_slice(&len.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length 0", 0i32.to_be_bytes().to_vec()),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("length 2^31-1", i32::MAX.to_be_bytes().to_vec()),
        ("length over 10000", 20000i32.to_be_bytes().to_vec()),
        ("protocol 2.0", {
            let mut p = startup(&[("user", "postgres")]);
            p[4..8].copy_from_slice(&0x0002_0000i32.to_be_bytes());
            p
        }),
        ("unterminated parameters", unterminated),
    ];
    for (what, bytes) in cases {
        let reply = exchange(proxy.port, &bytes).await;
        let code = sqlstate(&reply);
        assert!(
            matches!(code.as_deref(), Some("08P01") | Some("0A000")),
            "{what}: got {code:?} from {reply:?}"
        );
    }
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn missing_user_is_refused_like_postgresql() {
    let proxy = Proxy::start("");
    let reply = exchange(proxy.port, &startup(&[("database", "postgres")])).await;
    assert_eq!(sqlstate(&reply).as_deref(), Some("28000"));
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn oversized_and_invalid_messages_after_startup_are_refused() {
    let proxy = Proxy::start("max_message_size = 1MB\n");
    // Authenticate as a trust user by hand, then send hostile frames.
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "length over max_message_size",
            {
                let mut m = vec![b'Q'];
                m.extend_from_slice(&(64 * 1024 * 1024i32).to_be_bytes());
                m
            },
            "08P01",
        ),
        (
            "negative length",
            {
                let mut m = vec![b'Q'];
                m.extend_from_slice(&(-1i32).to_be_bytes());
                m
            },
            "08P01",
        ),
        (
            "length below 4",
            {
                let mut m = vec![b'Q'];
                m.extend_from_slice(&2i32.to_be_bytes());
                m
            },
            "08P01",
        ),
        (
            "unknown message type",
            {
                let mut m = vec![b'?'];
                m.extend_from_slice(&4i32.to_be_bytes());
                m
            },
            "08P01",
        ),
    ];
    for (what, frame, want) in cases {
        let mut bytes = startup(&[("user", "postgres"), ("database", "postgres")]);
        bytes.extend_from_slice(&frame);
        let reply = exchange(proxy.port, &bytes).await;
        assert_eq!(sqlstate(&reply).as_deref(), Some(want), "{what}");
    }
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn unknown_database_error_comes_from_postgresql() {
    let proxy = Proxy::start("");
    let err = tokio_postgres::connect(
        &proxy.conn_str("postgres", "no_such_database_xyz"),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("connecting to a missing database fails");
    assert_eq!(err.code().map(|c| c.code()), Some("3D000"), "{err}");
    assert_healthy(&proxy).await;
}
