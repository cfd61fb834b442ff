//! The PCP port, driven by Pgpool-II's own `pcp_*` tools (Debian's pgpool2 package, which
//! `scripts/test.sh` installs) and, for the reply layouts those tools cannot show, a raw
//! protocol client.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{cluster, Proxy};

const PCP_USER: &str = "pcpadmin";
const PCP_PASSWORD: &str = "pcp-secret";

fn md5_hex(s: &str) -> String {
    let out = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().map(|mut i| i.write_all(s.as_bytes()));
            c.wait_with_output()
        })
        .expect("md5sum");
    String::from_utf8_lossy(&out.stdout)[..32].to_string()
}

fn start(extra: &str) -> Proxy {
    let line = format!("{PCP_USER}:{}\n", md5_hex(PCP_PASSWORD));
    Proxy::builder().conf(extra).pcp(&line).start()
}

/// A Debian pcp tool, or None when the pgpool2 package is not installed.
fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.exists())
}

fn run_tool(proxy: &Proxy, name: &str, args: &[&str], password: &str) -> Option<Output> {
    let Some(path) = tool(name) else {
        eprintln!("{name} is not installed (Debian package pgpool2); skipping");
        return None;
    };
    let pass = proxy
        .dir
        .path()
        .join(format!("pcppass-{}", md5_hex(password)));
    std::fs::write(&pass, format!("*:*:{PCP_USER}:{password}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = Command::new(path)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &proxy.pcp_port.to_string(),
            "-U",
            PCP_USER,
            "-w",
        ])
        .args(args)
        .env("PCPPASSFILE", &pass)
        .stdin(Stdio::null())
        .output()
        .expect("run pcp tool");
    Some(out)
}

fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn node_count_node_info_and_pool_status_with_the_debian_tools() {
    let proxy = start("pcp_protocol_version = '4.3'\n");
    let Some(out) = run_tool(&proxy, "pcp_node_count", &[], PCP_PASSWORD) else {
        return;
    };
    assert_eq!(stdout_ok(&out, "pcp_node_count").trim(), "2");

    let out = run_tool(&proxy, "pcp_node_info", &["-n", "1"], PCP_PASSWORD).unwrap();
    let line = stdout_ok(&out, "pcp_node_info");
    let f: Vec<&str> = line.split_whitespace().collect();
    // host port status weight status_name pg_status role pg_role delay rep_state sync_state date time
    assert_eq!(f[0], "127.0.0.1");
    assert_eq!(f[1], cluster().replica_port.to_string());
    assert_eq!(f[3], "0.500000");
    assert_eq!(f[6], "standby");
    assert_eq!(f[8], "0", "delay");
    assert_eq!((f[9], f[10]), ("none", "none"));
    assert!(!f[11].starts_with("1970"), "status change time: {line}");

    let out = run_tool(&proxy, "pcp_pool_status", &[], PCP_PASSWORD).unwrap();
    let text = stdout_ok(&out, "pcp_pool_status");
    let want = format!("name : port\nvalue: {}\n", proxy.port);
    assert!(text.contains(&want), "{text}");
}

#[tokio::test]
async fn proc_count_and_proc_info_list_connected_sessions() {
    let proxy = start("");
    let c = proxy.connect("postgres", "postgres").await;
    // The session takes its primary connection at its first query.
    c.batch_execute("/*NO LOAD BALANCE*/ select 1")
        .await
        .unwrap();
    let pid = c
        .simple_query("SHOW pool_processes")
        .await
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap();
    let Some(out) = run_tool(&proxy, "pcp_proc_count", &[], PCP_PASSWORD) else {
        return;
    };
    let text = stdout_ok(&out, "pcp_proc_count");
    assert_eq!(text.split_whitespace().collect::<Vec<_>>(), [pid.as_str()]);
    let out = run_tool(&proxy, "pcp_proc_info", &["-P", &pid], PCP_PASSWORD).unwrap();
    let text = stdout_ok(&out, "pcp_proc_info");
    // The tool prints the slots holding a connection: here the session's primary one.
    let line = text.lines().find(|l| l.contains("postgres postgres"));
    assert!(line.is_some_and(|l| l.contains(&pid)), "{text}");
    let out = run_tool(&proxy, "pcp_proc_info", &["-P", "12345"], PCP_PASSWORD).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid process ID"), "{err}");
}

#[test]
fn reload_succeeds_and_unsupported_commands_fail_fast() {
    let proxy = start("");
    let Some(out) = run_tool(&proxy, "pcp_reload_config", &[], PCP_PASSWORD) else {
        return;
    };
    stdout_ok(&out, "pcp_reload_config");
    // The 4.3 tools print an ERROR reply but still exit 0; what matters is the answer.
    let out = run_tool(&proxy, "pcp_attach_node", &["-n", "1"], PCP_PASSWORD).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not supported"), "{err}");
    let out = run_tool(&proxy, "pcp_health_check_stats", &["-n", "0"], PCP_PASSWORD).unwrap();
    let text = stdout_ok(&out, "pcp_health_check_stats");
    assert!(text.starts_with("0 127.0.0.1"), "{text}");
}

#[test]
fn a_wrong_password_is_refused() {
    let proxy = start("");
    let Some(out) = run_tool(&proxy, "pcp_node_count", &[], "wrong") else {
        return;
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authentication failed"), "{err}");
}

// ------------------------------------------------------------- raw protocol client ---

fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![tag];
    p.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    p.extend_from_slice(body);
    p
}

fn read_packet(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).unwrap();
    (head[0], body)
}

fn fields(body: &[u8]) -> Vec<String> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// Logs in as spec 8.2 describes and returns the stream.
fn login(proxy: &Proxy) -> TcpStream {
    login_at(proxy, "127.0.0.1")
}

fn login_at(proxy: &Proxy, host: &str) -> TcpStream {
    let mut s = TcpStream::connect((host, proxy.pcp_port))
        .unwrap_or_else(|e| panic!("connect to PCP on {host}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&packet(b'M', &[])).unwrap();
    let (tag, salt) = read_packet(&mut s);
    assert_eq!((tag, salt.len()), (b'm', 4));
    let b = md5_hex(&format!("{}{PCP_USER}", md5_hex(PCP_PASSWORD)));
    let mut salted = b.into_bytes();
    salted.extend_from_slice(&salt);
    // md5 of raw bytes: the salt need not be UTF-8.
    let c = {
        let mut child = Command::new("md5sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&salted).unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout)[..32].to_string()
    };
    let mut body = format!("{PCP_USER}\0{c}\0").into_bytes();
    body.shrink_to_fit();
    s.write_all(&packet(b'R', &body)).unwrap();
    let (tag, body) = read_packet(&mut s);
    assert_eq!(
        (tag, fields(&body)),
        (b'r', vec!["AuthenticationOK".to_string()])
    );
    s
}

fn node_info_fields(proxy: &Proxy) -> Vec<String> {
    let mut s = login(proxy);
    s.write_all(&packet(b'I', b"1\0")).unwrap();
    let (tag, body) = read_packet(&mut s);
    assert_eq!(
        (tag, fields(&body)),
        (b'i', vec!["ArraySize".into(), "1".into()])
    );
    let (tag, body) = read_packet(&mut s);
    assert_eq!(tag, b'i');
    let (_, done) = read_packet(&mut s);
    assert_eq!(fields(&done), ["CommandComplete"]);
    s.write_all(&packet(b'X', &[])).unwrap();
    // Empty strings are fields too: split without dropping them.
    let body = body.strip_suffix(&[0]).unwrap_or(&body);
    body.split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// `*` is every interface, IPv6 as well as IPv4 (an IPv6-only pod's probes and tools
/// reach PCP over `::1`).
#[test]
fn pcp_listens_on_ipv6_and_ipv4_for_star() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("this machine has no IPv6 loopback (::1): skipped");
        return;
    }
    let proxy = start("pcp_listen_addresses = '*'\n");
    for host in ["::1", "127.0.0.1"] {
        let mut s = login_at(&proxy, host);
        s.write_all(&packet(b'L', &[])).unwrap();
        let (tag, body) = read_packet(&mut s);
        assert_eq!(
            (tag, fields(&body)),
            (b'l', vec!["CommandComplete".to_string(), "2".to_string()]),
            "node count over {host}"
        );
    }
}

#[test]
fn node_info_speaks_the_4_4_layout_by_default_and_4_3_on_request() {
    let current = node_info_fields(&start(""));
    assert_eq!(current.len(), 14, "NodeInfo + 13 fields: {current:?}");
    assert_eq!(current[0], "NodeInfo");
    assert_eq!(current[9], "0", "standby_delay_by_time");
    let legacy = node_info_fields(&start("pcp_protocol_version = '4.3'\n"));
    assert_eq!(legacy.len(), 13, "NodeInfo + 12 fields: {legacy:?}");
    assert_eq!(legacy[9], "0", "delay");
    // The status change time (epoch seconds) comes last in both layouts.
    for t in [&legacy[12], &current[13]] {
        assert!(t.parse::<u64>().is_ok_and(|t| t > 1_600_000_000), "{t}");
    }
}

#[test]
fn commands_before_login_are_refused() {
    let proxy = start("");
    let mut s = TcpStream::connect(("127.0.0.1", proxy.pcp_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&packet(b'L', &[])).unwrap();
    let (tag, body) = read_packet(&mut s);
    assert_eq!(tag, b'E');
    let text = fields(&body).join("|");
    assert!(
        text.contains("FATAL") && text.contains("authentication failed"),
        "{text}"
    );
}

#[tokio::test]
async fn proc_info_shows_an_idle_client_that_holds_no_backend_connection() {
    let proxy = start("");
    // Logged in, no query yet: the session holds no backend connection (it takes one from
    // the cache at its first request), yet it is a connected client.
    let c = proxy.connect("postgres", "postgres").await;
    let Some(out) = run_tool(&proxy, "pcp_proc_count", &[], PCP_PASSWORD) else {
        return;
    };
    let pids = stdout_ok(&out, "pcp_proc_count");
    let pid = pids
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no pid: {pids}"));
    let out = run_tool(&proxy, "pcp_proc_info", &[], PCP_PASSWORD).unwrap();
    let text = stdout_ok(&out, "pcp_proc_info");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("postgres postgres"))
        .collect();
    assert_eq!(lines.len(), 1, "one line for the one client: {text}");
    assert!(lines[0].contains(pid), "{text}");
    let out = run_tool(&proxy, "pcp_proc_info", &["-P", pid], PCP_PASSWORD).unwrap();
    assert!(stdout_ok(&out, "pcp_proc_info -P").contains("postgres postgres"));
    drop(c);
}

#[tokio::test]
async fn health_check_stats_with_the_debian_tool_count_real_checks() {
    let proxy = start("health_check_period = 1\nhealth_check_user = 'postgres'\n");
    if tool("pcp_health_check_stats").is_none() {
        eprintln!("pcp_health_check_stats is not installed (Debian package pgpool2); skipping");
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = run_tool(
            &proxy,
            "pcp_health_check_stats",
            &["-n", "1", "-v"],
            PCP_PASSWORD,
        )
        .unwrap();
        let text = stdout_ok(&out, "pcp_health_check_stats");
        let count = |name: &str| -> u64 {
            text.lines()
                .find(|l| l.trim_start().starts_with(name))
                .and_then(|l| l.rsplit(':').next())
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name}:\n{text}"))
        };
        if count("Total Count") >= 2 {
            assert!(count("Success Count") >= 2, "{text}");
            assert_eq!(count("Fail Count"), 0, "{text}");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
