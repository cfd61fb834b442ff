//! Shared integration-test harness: the local primary + streaming replica (started once per
//! test run by `scripts/pgcluster.sh`), and a real proxy process per test on free ports.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Cluster {
    pub primary_port: u16,
    pub replica_port: u16,
    pub pg_bin: PathBuf,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cluster from the environment (set by the test command), or started on demand.
pub fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        let from_env = |k: &str| std::env::var(k).ok();
        if let (Some(p), Some(r)) = (from_env("PGRS_PRIMARY_PORT"), from_env("PGRS_REPLICA_PORT")) {
            if let (Ok(p), Ok(r)) = (p.parse(), r.parse()) {
                let pg_bin = from_env("PGRS_PG_BIN")
                    .map(PathBuf::from)
                    .unwrap_or_else(find_pg_bin);
                return Cluster {
                    primary_port: p,
                    replica_port: r,
                    pg_bin,
                };
            }
        }
        let script = repo().join("scripts/pgcluster.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .expect("run pgcluster.sh");
        assert!(
            out.status.success(),
            "pgcluster.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = Command::new("bash")
            .arg(&script)
            .arg("env")
            .output()
            .expect("pgcluster.sh env");
        let text = String::from_utf8_lossy(&env.stdout).to_string();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap_or_else(|| panic!("{k} missing from pgcluster.sh env: {text}"))
        };
        Cluster {
            primary_port: get("PGRS_PRIMARY_PORT").parse().expect("port"),
            replica_port: get("PGRS_REPLICA_PORT").parse().expect("port"),
            pg_bin: PathBuf::from(get("PGRS_PG_BIN")),
        }
    })
}

fn find_pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().unwrap_or_else(|| PathBuf::from("/usr/bin"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A name unique to this test process and call, for databases, tables and roles.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running proxy process; killed on drop.
pub struct Proxy {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
    pub log_path: PathBuf,
}

#[derive(Default)]
pub struct ProxyBuilder {
    conf: String,
    hba: Option<String>,
    passwd: Option<String>,
    pcp: Option<String>,
    key: Option<String>,
    env: Vec<(String, String)>,
}

impl ProxyBuilder {
    pub fn conf(mut self, extra: &str) -> Self {
        self.conf.push_str(extra);
        self.conf.push('\n');
        self
    }
    pub fn hba(mut self, text: &str) -> Self {
        self.hba = Some(text.to_string());
        self
    }
    pub fn pool_passwd(mut self, text: &str) -> Self {
        self.passwd = Some(text.to_string());
        self
    }
    pub fn pcp(mut self, text: &str) -> Self {
        self.pcp = Some(text.to_string());
        self
    }
    pub fn key(mut self, text: &str) -> Self {
        self.key = Some(text.to_string());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Writes the files, starts the proxy and waits until it accepts connections.
    pub fn start(self) -> Proxy {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(self) -> Result<Proxy, String> {
        let c = cluster();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{dir}'\n\
             pcp_port = {pcp}\nmetrics_port = {metrics}\nsr_check_period = 0\n\
             backend_hostname0 = '127.0.0.1'\nbackend_port0 = {p}\nbackend_weight0 = 1\n\
             backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'\n\
             backend_hostname1 = '127.0.0.1'\nbackend_port1 = {r}\nbackend_weight1 = 1\n\
             backend_flag1 = 'DISALLOW_TO_FAILOVER'\n{extra}",
            dir = dir.path().display(),
            pcp = free_port(),
            metrics = free_port(),
            p = c.primary_port,
            r = c.replica_port,
            extra = self.conf,
        );
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let p = dir.path().join(name);
            std::fs::write(&p, text).map_err(|e| e.to_string())?;
            Ok(p)
        };
        let conf_path = write("pgpool.conf", &conf)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgpool"));
        cmd.arg("-n").arg("-f").arg(&conf_path);
        if let Some(h) = &self.hba {
            cmd.arg("-a").arg(write("pool_hba.conf", h)?);
        }
        if let Some(p) = &self.passwd {
            write("pool_passwd", p)?;
        }
        if let Some(p) = &self.pcp {
            cmd.arg("-F").arg(write("pcp.conf", p)?);
        }
        if let Some(k) = &self.key {
            cmd.arg("-k").arg(write(".pgpoolkey", k)?);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let log_path = dir.path().join("pgpool.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        cmd.stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .env("PGPOOL_LOG", "debug");
        let child = cmd.spawn().map_err(|e| e.to_string())?;
        let mut proxy = Proxy {
            port,
            dir,
            child,
            log_path,
        };
        proxy.wait_ready()?;
        Ok(proxy)
    }
}

impl Proxy {
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    /// A proxy with `extra_conf` appended to the generated pgpool.conf (later lines win).
    pub fn start(extra_conf: &str) -> Proxy {
        Proxy::builder().conf(extra_conf).start()
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("pgpool exited early ({status}): {}", self.log()));
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("pgpool did not start listening: {}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn conn_str(&self, user: &str, db: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port)
    }

    pub async fn connect(&self, user: &str, db: &str) -> tokio_postgres::Client {
        connect_to(&self.conn_str(user, db)).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn connect_to(conn_str: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(conn_str, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conn_str}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

pub async fn primary_client() -> tokio_postgres::Client {
    connect_to(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster().primary_port
    ))
    .await
}

pub async fn replica_client() -> tokio_postgres::Client {
    connect_to(&format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster().replica_port
    ))
    .await
}

fn pg_tool(name: &str) -> PathBuf {
    let p = cluster().pg_bin.join(name);
    if p.exists() {
        p
    } else {
        PathBuf::from(name)
    }
}

pub fn psql(port: u16, user: &str, db: &str, sql: &str) -> Output {
    Command::new(pg_tool("psql"))
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .expect("run psql")
}

/// psql reading a script from standard input (for COPY FROM STDIN).
pub fn psql_stdin(port: u16, user: &str, db: &str, script: &str) -> Output {
    let mut child = Command::new(pg_tool("psql"))
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            db,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    child.wait_with_output().expect("psql output")
}

pub fn pgbench(args: &[&str]) -> Output {
    Command::new(pg_tool("pgbench"))
        .args(args)
        .output()
        .expect("run pgbench")
}

/// Creates a database on the primary and waits until the replica has it too.
pub fn create_database(name: &str) {
    let out = psql(
        cluster().primary_port,
        "postgres",
        "postgres",
        &format!("create database {name}"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_replica_caught_up();
}

/// Waits (bounded) until the replica has replayed everything the primary has written.
pub fn wait_replica_caught_up() {
    let c = cluster();
    let q = |port: u16, sql: &str| {
        let o = Command::new(pg_tool("psql"))
            .args([
                "-X",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let target = q(c.primary_port, "select pg_current_wal_lsn()");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let caught = q(
            c.replica_port,
            &format!("select pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"),
        );
        if caught == "t" {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("replica did not catch up with {target}");
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}
