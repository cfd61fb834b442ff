//! Hostile clients against the running proxy: random bytes, stalled half-messages, thousands
//! of connections at once, a client that never reads, protocol messages out of order. Each
//! gets an error with a proper SQLSTATE (or is dropped), and a healthy client on the side
//! keeps working. (Malformed startup packets and bad length words are in `bad_input.rs`.)

mod common;

use std::time::Duration;

use common::wire::{msg, query, Msg, Raw};
use common::{primary_client, unique_name, Proxy};
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sanity bound for anything the proxy should do promptly (not a timing assertion).
const BOUND: Duration = Duration::from_secs(30);

fn is_valid_sqlstate(code: &str) -> bool {
    code.len() == 5
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

const POSTGRES: &[(&str, &str)] = &[("user", "postgres"), ("database", "postgres")];

/// Small deterministic generator: a failing case can be replayed from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

async fn assert_healthy(proxy: &Proxy) {
    let c = proxy.connect("postgres", "postgres").await;
    let one: i32 = c.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

/// Every ErrorResponse in `msgs` carries a well-formed SQLSTATE.
fn assert_errors_have_sqlstates(what: &str, msgs: &[Msg]) {
    for m in msgs.iter().filter(|m| m.tag == b'E') {
        let code = m.sqlstate().unwrap_or_default();
        assert!(is_valid_sqlstate(&code), "{what}: bad SQLSTATE in {m:?}");
    }
}

fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proxy status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .expect("proxy fd list")
}

#[tokio::test]
async fn random_bytes_get_clean_errors_and_others_keep_working() {
    let proxy = Proxy::start("authentication_timeout = 5\n");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..40 {
        // Half the rounds: garbage instead of a startup packet.
        // The other half: log in, then frames with plausible tags and garbage bodies.
        let mut c = if round % 2 == 0 {
            let mut c = Raw::connect(proxy.port).await;
            let n = (rng.next() % 64) as usize;
            let _ = c.s.write_all(&rng.bytes(n)).await;
            c
        } else {
            let mut c = Raw::login(proxy.port, POSTGRES).await;
            for _ in 0..(rng.next() % 6) {
                let tags = b"QPBDESHFdcfXp?\0";
                let tag = tags[(rng.next() % tags.len() as u64) as usize];
                let n = (rng.next() % 48) as usize;
                // The proxy may already have closed on an earlier frame.
                let _ = c.s.write_all(&msg(tag, &rng.bytes(n))).await;
            }
            c
        };
        // Our side is done talking: the proxy must answer or close, never hang or crash.
        let _ = c.s.shutdown().await;
        let reply = c.until_closed().await;
        assert_errors_have_sqlstates(&format!("round {round}"), &reply);
    }
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn length_words_of_two_to_the_31_are_refused() {
    let proxy = Proxy::start("");
    let huge = 0x8000_0000u32.to_be_bytes();
    let mut c = Raw::connect(proxy.port).await;
    c.send(&huge).await;
    let codes: Vec<_> = c
        .until_closed()
        .await
        .iter()
        .filter_map(Msg::sqlstate)
        .collect();
    assert_eq!(codes, ["08P01"], "startup packet length 2^31");
    for len in [0x8000_0000u32, u32::MAX] {
        let mut c = Raw::login(proxy.port, POSTGRES).await;
        c.send(&[&b"Q"[..], &len.to_be_bytes()].concat()).await;
        let codes: Vec<_> = c
            .until_closed()
            .await
            .iter()
            .filter_map(Msg::sqlstate)
            .collect();
        assert_eq!(codes, ["08P01"], "message length {len:#x}");
    }
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn stalled_startup_is_dropped_after_authentication_timeout() {
    let proxy = Proxy::start("authentication_timeout = 1\n");
    let ssl_request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let half_startup = [
        &100i32.to_be_bytes()[..],
        &196608i32.to_be_bytes(),
        b"user\0",
    ]
    .concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("nothing at all", vec![]),
        ("half a length word", vec![0, 0]),
        ("half a startup packet", half_startup),
        ("SSLRequest, then silence", ssl_request.to_vec()),
    ];
    let stalls = cases.into_iter().map(|(what, bytes)| async move {
        let mut c = Raw::connect(proxy.port).await;
        c.send(&bytes).await;
        // Without the timeout this would wait for ever (and fail at the sanity bound).
        let mut rest = Vec::new();
        let read = tokio::time::timeout(BOUND, c.s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "{what}: still connected after the bound");
    });
    let healthy = assert_healthy(&proxy);
    let (_, ()) = tokio::join!(join_all(stalls), healthy);
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn half_a_message_after_login_is_dropped_at_client_idle_limit() {
    let proxy = Proxy::start("client_idle_limit = 1\n");
    let mut stalled = Raw::login(proxy.port, POSTGRES).await;
    let mut half = msg(b'Q', b"select 1\0");
    half.truncate(7);
    stalled.send(&half).await;
    let mut idle = Raw::login(proxy.port, POSTGRES).await;
    for (what, c) in [("half a message", &mut stalled), ("idle", &mut idle)] {
        let reply = c.until_closed().await;
        let codes: Vec<_> = reply.iter().filter_map(Msg::sqlstate).collect();
        assert_eq!(codes, ["57000"], "{what}: {reply:?}");
    }
    assert_healthy(&proxy).await;
}

/// Lets this process (and the proxy it starts) hold `want` descriptors.
fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            assert!(
                lim.rlim_max >= want,
                "the hard limit on open files ({}) is below {want}",
                lim.rlim_max
            );
            lim.rlim_cur = want;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

#[tokio::test]
async fn two_thousand_connections_at_once_are_all_served() {
    const N: usize = 2000;
    // Two per connection here (test side and proxy side), plus slack.
    raise_fd_limit(3 * N as u64 + 1000);
    let proxy = Proxy::start("num_init_children = 2100\nauthentication_timeout = 120\n");
    let pid = proxy.pid();
    let baseline = open_fds(pid);
    // Each client negotiates SSL (the proxy must answer each one, so each is being served,
    // not parked in the listen queue), then stalls in its startup packet. None of them
    // reaches PostgreSQL, so the shared test cluster is not starved.
    let ssl_request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let clients = join_all((0..N).map(|_| async {
        let mut c = Raw::connect(proxy.port).await;
        c.send(&ssl_request).await;
        let mut answer = [0u8; 1];
        tokio::time::timeout(BOUND, c.s.read_exact(&mut answer))
            .await
            .expect("SSL answer within the bound")
            .expect("SSL answer");
        assert_eq!(&answer, b"N");
        c.send(&100i32.to_be_bytes()).await;
        c
    }))
    .await;
    assert!(
        open_fds(pid) >= N,
        "proxy holds {} descriptors for {N} clients",
        open_fds(pid)
    );
    assert_healthy(&proxy).await;
    drop(clients);
    // Every descriptor comes back once the clients are gone.
    let deadline = tokio::time::Instant::now() + BOUND;
    while open_fds(pid) > baseline + 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "proxy still holds {} descriptors (baseline {baseline})",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_healthy(&proxy).await;
}

/// The `wait_event` of the primary's backend whose application_name is `app`.
async fn wait_event_of(primary: &tokio_postgres::Client, app: &str) -> Option<String> {
    primary
        .query_opt(
            "select coalesce(wait_event, '') from pg_stat_activity where application_name = $1",
            &[&app],
        )
        .await
        .expect("pg_stat_activity")
        .map(|r| r.get(0))
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_make_the_proxy_buffer() {
    // Reads to the primary only, so its pg_stat_activity shows the query.
    let proxy = Proxy::start("backend_weight1 = 0\n");
    let pid = proxy.pid();
    let app = unique_name("never_reads");
    let params = [("user", "postgres"), ("database", "postgres")];
    let mut stalled = Raw::login(
        proxy.port,
        &[params[0], params[1], ("application_name", &app)],
    )
    .await;
    // About 1 GB of result that this client will never read.
    stalled
        .send(&query(
            "select repeat('x', 1000) from generate_series(1, 1000000)",
        ))
        .await;
    // Back-pressure reaches PostgreSQL: its backend waits to write to the proxy.
    let primary = primary_client().await;
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        if wait_event_of(&primary, &app).await.as_deref() == Some("ClientWrite") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backend never blocked on writing: the proxy is buffering the result"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut peak = 0;
    for _ in 0..10 {
        peak = peak.max(proc_status_kb(pid, "VmRSS"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("proxy peak RSS while its client stalls on a 1 GB result: {peak} kB");
    assert!(peak < 64 * 1024, "proxy RSS reached {peak} kB");
    assert_healthy(&proxy).await;
    // When the client goes away, its query is cancelled and its backend released.
    drop(stalled);
    let deadline = tokio::time::Instant::now() + BOUND;
    while wait_event_of(&primary, &app).await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backend outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cstrs(parts: &[&str]) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|p| p.bytes().chain(std::iter::once(0)))
        .collect()
}

#[tokio::test]
async fn protocol_messages_out_of_order_get_errors_and_the_session_goes_on() {
    let proxy = Proxy::start("");
    let mut c = Raw::login(proxy.port, POSTGRES).await;
    let bind = |stmt: &str| msg(b'B', &[cstrs(&["", stmt]), vec![0; 6]].concat());
    let execute = msg(b'E', &[cstrs(&[""]), vec![0; 4]].concat());
    let describe_stmt = msg(b'D', &[b"S".to_vec(), cstrs(&["nope"])].concat());
    let describe_portal = msg(b'D', &[b"P".to_vec(), cstrs(&["nope"])].concat());
    let sync = msg(b'S', b"");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("Bind before Parse", bind(""), "26000"),
        ("Bind of an unknown statement", bind("nope"), "26000"),
        ("Execute without Bind", execute, "34000"),
        ("Describe of an unknown statement", describe_stmt, "26000"),
        ("Describe of an unknown portal", describe_portal, "34000"),
    ];
    for (what, m, want) in cases {
        c.send(&[m, sync.clone()].concat()).await;
        let reply = c.until_ready().await;
        let codes: Vec<_> = reply.iter().filter_map(Msg::sqlstate).collect();
        assert_eq!(codes, [want], "{what}: {reply:?}");
    }
    // COPY messages outside COPY: PostgreSQL ignores them, and so must the proxy.
    let copy_junk = [msg(b'd', b"1\t2\n"), msg(b'c', b""), msg(b'f', b"oops\0")].concat();
    c.send(&[copy_junk, query("select 41 + 1")].concat()).await;
    let reply = c.until_ready().await;
    assert!(reply.iter().all(|m| m.tag != b'E'), "{reply:?}");
    let row = reply.iter().find(|m| m.tag == b'D').expect("a row");
    assert!(row.body.ends_with(b"42"), "{row:?}");
    assert_healthy(&proxy).await;
}

#[tokio::test]
async fn a_wrong_password_does_not_ride_on_a_cached_connection() {
    // No pool_passwd entry: the proxy cannot check the password, the backend must.
    let hba_password = Proxy::builder()
        .conf("enable_pool_hba = on")
        .hba("host all all 127.0.0.1/32 password\n")
        .pool_passwd("")
        .start();
    let mirror_cleartext = Proxy::builder()
        .conf("allow_clear_text_frontend_auth = on")
        .pool_passwd("")
        .start();
    for proxy in [&hba_password, &mirror_cleartext] {
        let role = common::scram_role("hostile_scram").await;
        // The first login opens a backend connection and leaves it in the cache.
        let first = proxy
            .try_connect(&role, "postgres", Some("right"))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
        let err = match proxy.try_connect(&role, "postgres", Some("wrong")).await {
            Ok(_) => panic!("logged in with a wrong password\n{}", proxy.log()),
            Err(e) => e,
        };
        assert_eq!(err.code().map(|c| c.code()), Some("28P01"), "{err}");
        // The right password still works, with or without the cache.
        drop(first);
        let again = proxy.try_connect(&role, "postgres", Some("right")).await;
        again
            .expect("right password")
            .query_one("select 1", &[])
            .await
            .unwrap();
    }
}
