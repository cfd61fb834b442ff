//! `auth_failure_delay`: failed logins from one address, on the client port and on PCP, are
//! answered one per delay however many connections it opens at once, while a good login
//! meanwhile is not held up. Proved by counting (N failures take at least N delays), never
//! by an upper time bound.

mod common;

use std::time::{Duration, Instant};

use common::Proxy;
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sanity bound for anything the proxy should do promptly (not a timing assertion).
const BOUND: Duration = Duration::from_secs(60);

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

const DELAY_MS: u64 = 500;
const ATTEMPTS: u32 = 6;

#[tokio::test]
async fn failed_logins_from_one_address_are_slowed_down_but_others_are_not() {
    let role = common::trusted_role("delay_role").await;
    let proxy = Proxy::builder()
        .conf(&format!(
            "enable_pool_hba = on\nauth_failure_delay = {DELAY_MS}"
        ))
        .hba("host all all 127.0.0.1/32 scram-sha-256\n")
        .pool_passwd(&format!("{role}:TEXTright\n"))
        .start();
    let started = Instant::now();
    let failures = join_all((0..ATTEMPTS).map(|_| async {
        let r = proxy.try_connect(&role, "postgres", Some("wrong")).await;
        let code = r.err().and_then(|e| e.code().map(|c| c.code().to_string()));
        assert_eq!(code.as_deref(), Some("28P01"));
        Instant::now()
    }));
    let good = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = proxy
            .try_connect(&role, "postgres", Some("right"))
            .await
            .expect("the right password");
        c.simple_query("select 1").await.unwrap();
        Instant::now()
    };
    let (ends, good_end) = tokio::join!(failures, good);
    let last_failure = ends.into_iter().max().unwrap();
    let took = last_failure - started;
    let least = Duration::from_millis(DELAY_MS) * ATTEMPTS;
    assert!(took >= least, "{ATTEMPTS} failures took only {took:?}");
    // The delay is in the failing sessions only: a good login meanwhile was not queued.
    assert!(
        good_end < last_failure,
        "the good login waited for the failures"
    );
}

async fn pcp_wrong_login(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&msg(b'M', b"")).await.unwrap();
    let mut salt = [0u8; 9];
    s.read_exact(&mut salt).await.unwrap();
    assert_eq!(salt[0], b'm');
    s.write_all(&msg(b'R', b"pcpadmin\0deadbeefdeadbeefdeadbeefdeadbeef\0"))
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut reply)).await;
    assert_eq!(reply.first(), Some(&b'E'), "{reply:?}");
}

#[tokio::test]
async fn failed_pcp_logins_from_one_address_are_slowed_down() {
    let proxy = Proxy::builder()
        .conf(&format!("auth_failure_delay = {DELAY_MS}"))
        .pcp("pcpadmin:5ebe2294ecd0e0f08eab7690d2a6ee69\n")
        .start();
    let started = Instant::now();
    join_all((0..ATTEMPTS).map(|_| pcp_wrong_login(proxy.pcp_port))).await;
    let took = started.elapsed();
    let least = Duration::from_millis(DELAY_MS) * ATTEMPTS;
    assert!(took >= least, "{ATTEMPTS} PCP failures took only {took:?}");
}
