//! Shared harness for the integration tests: the local primary + streaming replica
//! (`scripts/pgcluster.sh`), a proxy process per test on its own ports and folder, and small
//! helpers around `psql`, `pgbench` and `tokio-postgres`.
//!
//! Every test binary includes it with `mod common;`. Tests run in parallel, in several binaries
//! at once and next to a developer's own servers, so nothing here uses a fixed port or path:
//! the cluster comes from `PGRS_PRIMARY_PORT`/`PGRS_REPLICA_PORT` (set by `scripts/test.sh`)
//! or is started on demand, each proxy gets free ports and a temporary folder, and per-test
//! databases and roles get names from [`unique_name`].

// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

/// How long a proxy may take to accept connections, and a replica to replay.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The replica's `application_name` on the primary (`cluster_name` set by the script).
pub const REPLICA_APP_NAME: &str = "pgrs_replica";

/// The primary and its streaming replica, both on 127.0.0.1, superuser `postgres` (trust).
#[derive(Debug, Clone)]
pub struct Cluster {
    pub primary_port: u16,
    pub replica_port: u16,
    /// Folder holding `psql`, `pgbench`, … of the same major version as the servers.
    pub pg_bin: PathBuf,
}

impl Cluster {
    /// A PostgreSQL client program (`psql`, `pgbench`, …) of the cluster's version.
    pub fn bin(&self, program: &str) -> PathBuf {
        let path = self.pg_bin.join(program);
        if path.exists() {
            path
        } else {
            PathBuf::from(program)
        }
    }
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The shared cluster, started (or found running) once per test binary.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| discover_cluster().unwrap_or_else(|e| panic!("test cluster: {e}")))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pgcluster_script() -> PathBuf {
    repo_root().join("scripts").join("pgcluster.sh")
}

fn discover_cluster() -> Result<Cluster, String> {
    let from_env = (
        std::env::var("PGRS_PRIMARY_PORT"),
        std::env::var("PGRS_REPLICA_PORT"),
    );
    if let (Ok(primary), Ok(replica)) = from_env {
        let pg_bin = match std::env::var("PGRS_PG_BIN") {
            Ok(dir) => PathBuf::from(dir),
            Err(_) => newest_pg_bin(),
        };
        return Ok(Cluster {
            primary_port: parse_port("PGRS_PRIMARY_PORT", &primary)?,
            replica_port: parse_port("PGRS_REPLICA_PORT", &replica)?,
            pg_bin,
        });
    }
    run_script(&["start"])?;
    parse_cluster_env(&run_script(&["env"])?)
}

fn run_script(args: &[&str]) -> Result<String, String> {
    let script = pgcluster_script();
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} {}` failed ({}):\n{}{}",
            script.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads the `KEY=value` lines printed by `pgcluster.sh env`.
fn parse_cluster_env(text: &str) -> Result<Cluster, String> {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .ok_or_else(|| format!("`pgcluster.sh env` printed no {key}:\n{text}"))
    };
    Ok(Cluster {
        primary_port: parse_port("PGRS_PRIMARY_PORT", value("PGRS_PRIMARY_PORT")?)?,
        replica_port: parse_port("PGRS_REPLICA_PORT", value("PGRS_REPLICA_PORT")?)?,
        pg_bin: PathBuf::from(value("PGRS_PG_BIN")?),
    })
}

fn parse_port(name: &str, text: &str) -> Result<u16, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{name}={text:?} is not a port number"))
}

/// Newest `/usr/lib/postgresql/<major>/bin`, or empty (programs then come from `PATH`).
fn newest_pg_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).unwrap_or_default()
}

// ------------------------------------------------------------------ names and ports ---

static HANDED_OUT_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// A loopback port nothing listens on, never the same twice in one test binary.
///
/// Chosen below Linux's ephemeral range (32768+) so an outgoing connection of a parallel test
/// cannot grab it between this check and the proxy's `bind`.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = 15000 + (random_u64() % 17000) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        let mut guard = HANDED_OUT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// A name for a per-test database or role: unique across tests, binaries and runs, and a
/// valid unquoted PostgreSQL identifier (lower case, < 63 bytes) if `prefix` is one.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000_000)
        .unwrap_or(0);
    format!(
        "{}_{}_{n}_{millis}",
        prefix.to_lowercase(),
        std::process::id()
    )
}

// ------------------------------------------------------------------ client programs ---

/// `psql` of the cluster's version, as `user` on `db` at 127.0.0.1:`port`, unaligned tuples
/// only, stopping at the first error. Add `.env("PGPASSWORD", …)` or `-c` arguments as needed.
pub fn psql_cmd(port: u16, user: &str, db: &str) -> Command {
    let mut cmd = Command::new(cluster().bin("psql"));
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", user, "-d", db])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null());
    cmd
}

/// Runs one SQL string through `psql` (see [`psql_cmd`]).
pub fn psql(port: u16, user: &str, db: &str, sql: &str) -> Output {
    psql_cmd(port, user, db)
        .args(["-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run psql: {e}"))
}

/// `psql` with its normal (aligned, headed) output reading `script` from standard input,
/// as a person types it: meta-commands, COPY … FROM STDIN data, several statements.
pub fn psql_stdin(port: u16, user: &str, db: &str, script: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(cluster().bin("psql"))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", user, "-d", db])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("psql did not finish: {e}"))
}

/// `pgbench -i -s 1 -q` of `db` through 127.0.0.1:`port`; panics with pgbench's stderr on failure.
pub fn pgbench_init(port: u16, db: &str) {
    let out = pgbench(port, &["-i", "-s", "1", "-q", db]);
    assert!(
        out.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `pgbench` of the cluster's version as `postgres` through 127.0.0.1:`port`, with
/// the given further arguments.
pub fn pgbench<S: AsRef<std::ffi::OsStr>>(port: u16, args: &[S]) -> Output {
    Command::new(cluster().bin("pgbench"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run pgbench: {e}"))
}

/// Runs `pgbench` and asserts it succeeded with no failed transaction; returns its report.
/// `what` names the run in failure messages.
pub fn pgbench_ok<S: AsRef<std::ffi::OsStr>>(port: u16, args: &[S], what: &str) -> String {
    let out = pgbench(port, args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("number of failed transactions: 0 (0.000%)"),
        "{what}: {text}"
    );
    text
}

// ------------------------------------------------------------------ direct clients ---

/// Connects with a libpq-style connection string; the connection task is spawned on the
/// current runtime and reports its error (if any) on stderr.
pub async fn connect_str(conn: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection ended with an error: {e:?}");
        }
    });
    Ok(client)
}

async fn direct_client(port: u16) -> Client {
    let conn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    connect_str(&conn)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"))
}

/// `postgres@postgres` on the primary, not through the proxy.
/// A plain HTTP GET on loopback: (status, content type, body).
pub fn http_get(port: u16, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// The value of the sample `series` (name and labels exactly as exposed, e.g.
/// `pgpool_rs_cached_connections{node="0"}`) on the proxy's /metrics, if present.
pub fn metric(metrics_port: u16, series: &str) -> Option<f64> {
    let (_, _, body) = http_get(metrics_port, "/metrics");
    body.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

pub async fn primary_client() -> Client {
    direct_client(cluster().primary_port).await
}

/// `postgres@postgres` on the replica, not through the proxy.
pub async fn replica_client() -> Client {
    direct_client(cluster().replica_port).await
}

/// Creates a database on the primary. The replica has it once it has replayed that far:
/// call [`wait_replica_caught_up`] before using it there.
pub async fn create_database(name: &str) {
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    primary_client()
        .await
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Waits, up to `within`, until the server `direct` talks to has no backend `pid`; false
/// when it is still there.
pub async fn wait_backend_ended(direct: &Client, pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let n: i64 = direct
            .query_one(
                "select count(*) from pg_stat_activity where pid = $1",
                &[&pid],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_stat_activity: {e}"))
            .get(0);
        if n == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Whether python3 with psycopg 3 is installed (`scripts/test.sh` installs it); prints why
/// a test is skipped when not.
pub fn have_psycopg() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import psycopg"])
        .output();
    let ok = matches!(&probe, Ok(o) if o.status.success());
    if !ok {
        println!(
            "SKIPPED: python3 with psycopg 3 is not installed (pip install 'psycopg[binary]')"
        );
    }
    ok
}

/// A new login role on the primary (named from `prefix`) that the cluster trusts.
pub async fn trusted_role(prefix: &str) -> String {
    let role = unique_name(prefix);
    primary_client()
        .await
        .batch_execute(&format!("create role {role} login"))
        .await
        .unwrap_or_else(|e| panic!("create role {role}: {e}"));
    role
}

/// A new login role on the primary (named from `prefix`) that the cluster authenticates with
/// SCRAM, password `right`.
pub async fn scram_role(prefix: &str) -> String {
    let role = unique_name(prefix);
    primary_client()
        .await
        .batch_execute(&format!(
            "set password_encryption = 'scram-sha-256';
             create role {role} login password 'right' in role scram_users"
        ))
        .await
        .unwrap_or_else(|e| panic!("create role {role}: {e}"));
    role
}

/// Waits (bounded) until the replica has replayed everything the primary had written when
/// this was called.
pub async fn wait_replica_caught_up() {
    let primary = primary_client().await;
    let replica = replica_client().await;
    let row = primary
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap_or_else(|e| panic!("pg_current_wal_lsn on the primary: {e}"));
    let target: String = row.get(0);
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let row = replica
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&target],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_last_wal_replay_lsn on the replica: {e}"));
        if row.get::<_, Option<bool>>(0) == Some(true) {
            return;
        }
        if Instant::now() > deadline {
            panic!("replica did not replay up to {target} within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------------ the proxy ---

/// A running `pgpool` process in front of the cluster; killed when dropped.
pub struct Proxy {
    /// Client port on 127.0.0.1.
    pub port: u16,
    pub pcp_port: u16,
    pub metrics_port: u16,
    /// Holds `pgpool.conf`, the files given to the builder, the Unix sockets and the log.
    pub dir: TempDir,
    child: Child,
    log_path: PathBuf,
}

/// Files and settings for one proxy. Later lines of `pgpool.conf` win, so `.conf(extra)` can
/// override any default the harness writes (backends, weights, ports…).
#[derive(Default)]
pub struct ProxyBuilder {
    conf: String,
    hba: Option<String>,
    pool_passwd: Option<String>,
    pcp: Option<String>,
    key: Option<String>,
    env: Vec<(String, String)>,
}

impl ProxyBuilder {
    /// Extra `pgpool.conf` lines, appended after the harness's defaults.
    pub fn conf(mut self, extra: &str) -> Self {
        self.conf.push_str(extra);
        self.conf.push('\n');
        self
    }

    /// `pool_hba.conf` contents, passed with `-a`. Add `enable_pool_hba = on` to use it.
    pub fn hba(mut self, text: &str) -> Self {
        self.hba = Some(text.to_owned());
        self
    }

    /// `pool_passwd` contents, written next to `pgpool.conf` (where `pool_passwd` points).
    pub fn pool_passwd(mut self, text: &str) -> Self {
        self.pool_passwd = Some(text.to_owned());
        self
    }

    /// `pcp.conf` contents, passed with `-F`.
    pub fn pcp(mut self, text: &str) -> Self {
        self.pcp = Some(text.to_owned());
        self
    }

    /// `.pgpoolkey` contents (the AES key for `pool_passwd`), passed with `-k`.
    pub fn key(mut self, text: &str) -> Self {
        self.key = Some(text.to_owned());
        self
    }

    /// An environment variable for the proxy process (e.g. `PGPOOL_PARAMS_*`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Starts the proxy and waits until it accepts; panics with its log if it does not.
    pub fn start(self) -> Proxy {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the proxy; the error says why it is not serving and quotes its log.
    pub fn try_start(self) -> Result<Proxy, String> {
        let dir = tempfile::Builder::new()
            .prefix("pgpool-test-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        let (port, pcp_port, metrics_port) = (free_port(), free_port(), free_port());
        let conf_path = dir.path().join("pgpool.conf");
        let conf = base_conf(cluster(), dir.path(), port, pcp_port, metrics_port) + &self.conf;
        write_file(&conf_path, &conf)?;

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgpool"));
        cmd.arg("-n").arg("-f").arg(&conf_path);
        let files = [
            ("-a", "pool_hba.conf", &self.hba),
            ("-F", "pcp.conf", &self.pcp),
            ("-k", ".pgpoolkey", &self.key),
        ];
        for (flag, name, text) in files {
            if let Some(text) = text {
                let path = dir.path().join(name);
                write_file(&path, text)?;
                cmd.arg(flag).arg(path);
            }
        }
        if let Some(text) = &self.pool_passwd {
            write_file(&dir.path().join("pool_passwd"), text)?;
        }
        let log_path = dir.path().join("pgpool.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("cannot create log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot dup log: {e}"))?;
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", env!("CARGO_BIN_EXE_pgpool")))?;
        let mut proxy = Proxy {
            port,
            pcp_port,
            metrics_port,
            dir,
            child,
            log_path,
        };
        proxy.wait_accepting()?;
        Ok(proxy)
    }
}

/// What every test proxy gets: the cluster as backends 0 (primary) and 1 (replica) like the
/// Kubernetes ConfigMap, free ports, everything else inside the temporary folder.
fn base_conf(cluster: &Cluster, dir: &Path, port: u16, pcp_port: u16, metrics: u16) -> String {
    let dir = dir.display();
    format!(
        "# written by the integration-test harness; later lines win\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{dir}'\n\
         pcp_listen_addresses = '127.0.0.1'\n\
         pcp_port = {pcp_port}\n\
         pcp_socket_dir = '{dir}'\n\
         metrics_port = {metrics}\n\
         pid_file_name = '{dir}/pgpool.pid'\n\
         logdir = '{dir}'\n\
         backend_clustering_mode = 'streaming_replication'\n\
         backend_hostname0 = '127.0.0.1'\n\
         backend_port0 = {primary}\n\
         backend_weight0 = 1\n\
         backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'\n\
         backend_hostname1 = '127.0.0.1'\n\
         backend_port1 = {replica}\n\
         backend_weight1 = 1\n\
         backend_flag1 = 'DISALLOW_TO_FAILOVER'\n\
         backend_application_name1 = '{REPLICA_APP_NAME}'\n\
         sr_check_period = 0\n\
         health_check_period = 0\n\
         failover_on_backend_error = off\n",
        primary = cluster.primary_port,
        replica = cluster.replica_port,
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    // Secrets files must not be world-readable (pgpool and libpq check this).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    }
    Ok(())
}

impl Proxy {
    /// A proxy with the default configuration plus `extra_conf` lines.
    pub fn start(extra_conf: &str) -> Proxy {
        Proxy::builder().conf(extra_conf).start()
    }

    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    /// Everything the proxy wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// libpq-style connection string for `user` on `db` through the proxy.
    pub fn conn_str(&self, user: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={db} connect_timeout=10",
            self.port
        )
    }

    /// Connects through the proxy; panics with the proxy log if that fails.
    pub async fn connect(&self, user: &str, db: &str) -> Client {
        match connect_str(&self.conn_str(user, db)).await {
            Ok(client) => client,
            Err(e) => panic!(
                "cannot connect as {user} to {db} through the proxy: {e}\n{}",
                self.log_section()
            ),
        }
    }

    /// Connects through the proxy with a password, returning the error for auth tests.
    pub async fn try_connect(
        &self,
        user: &str,
        db: &str,
        password: Option<&str>,
    ) -> Result<Client, tokio_postgres::Error> {
        let mut conn = self.conn_str(user, db);
        if let Some(password) = password {
            conn.push_str(&format!(" password='{}'", password.replace('\'', "\\'")));
        }
        connect_str(&conn).await
    }

    /// The proxy's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still alive (it may exit on a fatal error).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (bounded by `limit`) for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn log_section(&self) -> String {
        format!(
            "--- proxy log {} ---\n{}--- end of proxy log ---",
            self.log_path.display(),
            self.log()
        )
    }

    fn wait_accepting(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!(
                        "pgpool exited ({status}) before accepting connections on port {}\n{}",
                        self.port,
                        self.log_section()
                    ))
                }
                Ok(None) => {}
                Err(e) => return Err(format!("cannot check the pgpool process: {e}")),
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "pgpool did not accept connections on port {} within {READY_TIMEOUT:?}\n{}",
                    self.port,
                    self.log_section()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.log_section());
        }
    }
}

pub mod frontend;
mod private;
pub mod wire;
#[allow(unused_imports)] // only the fault-injection tests use it
pub use private::{Node, PrivateCluster};
