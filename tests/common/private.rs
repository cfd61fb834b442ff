//! A primary + replica of a test's own (see [`PrivateCluster`]).

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use tokio_postgres::Client;

use super::{cluster, direct_client, free_port, pgcluster_script, unique_name};

/// A primary + replica of a test's own, for tests that stop, pause or promote servers: the
/// shared cluster must never see that. Own folder and ports; stopped and removed on drop,
/// even when the test panics.
pub struct PrivateCluster {
    pub dir: PathBuf,
    pub primary_port: u16,
    pub replica_port: u16,
}

/// One server of a [`PrivateCluster`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Primary,
    Replica,
}

impl PrivateCluster {
    /// Starts a fresh cluster with `scripts/pgcluster.sh` (initdb + base backup: seconds).
    pub fn start(name: &str) -> PrivateCluster {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique_name(name));
        let cluster = PrivateCluster {
            dir,
            primary_port: free_port(),
            replica_port: free_port(),
        };
        cluster
            .script("start")
            .unwrap_or_else(|e| panic!("private cluster: {e}"));
        cluster
    }

    fn script(&self, cmd: &str) -> Result<String, String> {
        let out = Command::new("bash")
            .arg(pgcluster_script())
            .arg(cmd)
            .env("PGRS_CLUSTER_DIR", &self.dir)
            .env("PGRS_PRIMARY_PORT", self.primary_port.to_string())
            .env("PGRS_REPLICA_PORT", self.replica_port.to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run pgcluster.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pgcluster.sh {cmd} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn port(&self, node: Node) -> u16 {
        match node {
            Node::Primary => self.primary_port,
            Node::Replica => self.replica_port,
        }
    }

    fn data_dir(&self, node: Node) -> PathBuf {
        self.dir.join(match node {
            Node::Primary => "primary",
            Node::Replica => "replica",
        })
    }

    /// `pg_ctl` of the cluster's version, as the `postgres` OS user when we are root.
    fn pg_ctl(&self, args: &[&str]) -> Output {
        let pg_ctl = cluster().bin("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        cmd.args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"))
    }

    /// Stops one server (fast mode: sessions get FATAL 57P01, like a pod being deleted).
    pub fn stop(&self, node: Node) {
        let data = self.data_dir(node);
        let data = data.to_string_lossy();
        let out = self.pg_ctl(&["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"]);
        assert!(out.status.success(), "pg_ctl stop {node:?}: {out:?}");
    }

    /// Starts one stopped server again and waits until it accepts connections.
    pub fn restart(&self, node: Node) {
        let data = self.data_dir(node);
        let log = self
            .dir
            .join(format!("{node:?}.restart.log").to_lowercase());
        let (data, log) = (data.to_string_lossy(), log.to_string_lossy());
        let out = self.pg_ctl(&["-D", &data, "-l", &log, "-w", "-t", "60", "start"]);
        assert!(out.status.success(), "pg_ctl start {node:?}: {out:?}");
    }

    /// Promotes the replica to a primary of its own (it leaves replication for good).
    pub fn promote_replica(&self) {
        let data = self.data_dir(Node::Replica);
        let out = self.pg_ctl(&["-D", &data.to_string_lossy(), "-w", "-t", "60", "promote"]);
        assert!(out.status.success(), "pg_ctl promote: {out:?}");
    }

    /// Makes a stopped server a standby of `upstream` (a switchover's last step: the old
    /// primary, stopped cleanly before the promotion, follows the new primary's timeline).
    /// Start it again with [`PrivateCluster::restart`].
    pub fn follow(&self, node: Node, upstream: Node) {
        let data = self.data_dir(node);
        let conninfo = format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user=postgres'\n",
            self.port(upstream)
        );
        let script = format!(
            "touch '{d}/standby.signal' && printf \"%s\" \"$1\" >> '{d}/postgresql.auto.conf'",
            d = data.display()
        );
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c", &script, "sh", &conninfo]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script, "sh", &conninfo]);
            c
        };
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
        assert!(out.status.success(), "make {node:?} a standby: {out:?}");
    }

    /// `postgres@postgres` on one server, directly.
    pub async fn client(&self, node: Node) -> Client {
        direct_client(self.port(node)).await
    }

    /// `pgpool.conf` lines pointing the proxy's backends 0 and 1 at this cluster.
    pub fn proxy_conf(&self) -> String {
        format!(
            "backend_port0 = {}\nbackend_port1 = {}\n",
            self.primary_port, self.replica_port
        )
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Err(e) = self.script("stop") {
            eprintln!("{e}");
            return; // keep the folder to look at
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
