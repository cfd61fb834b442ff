//! `SHOW pool_pools` (Pgpool-II 4.7 columns): one row per (session, backend node). Until
//! backend connections are cached across sessions, a session's slot is the connections it
//! holds; `pool_connected` is 1 on each row of a live session.

use crate::admin::view::timestamp;
use crate::admin::{Answer, Command, SessionAdmin};
use crate::context::registry::SessionInfo;
use crate::context::Context;
use crate::protocol::PgError;

pub struct ShowPools;

pub const POOLS_COLUMNS: [&str; 21] = [
    "pool_pid",
    "start_time",
    "client_connection_count",
    "pool_id",
    "backend_id",
    "database",
    "username",
    "backend_connection_time",
    "client_connection_time",
    "client_disconnection_time",
    "client_idle_duration",
    "majorversion",
    "minorversion",
    "pool_counter",
    "pool_backendpid",
    "pool_connected",
    "status",
    "load_balance_node",
    "client_host",
    "client_port",
    "statement",
];

/// `server_version` `15.4 (Debian …)` → ("15", "4").
fn major_minor(v: &str) -> (String, String) {
    let num = v.split_whitespace().next().unwrap_or("");
    let mut parts = num.split('.');
    let major = parts.next().filter(|p| !p.is_empty()).unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    (major.to_string(), minor.to_string())
}

fn session_rows(s: &SessionInfo, nodes: usize, out: &mut Vec<Vec<String>>) {
    let (host, port) = s.client_host_port();
    for node in 0..nodes {
        let b = s.backend(node);
        let (major, minor) = b
            .as_ref()
            .map_or(("0".into(), "0".into()), |b| major_minor(&b.server_version));
        let (db, user, btime, bpid) = match &b {
            Some(b) => (
                s.database.clone(),
                s.user.clone(),
                timestamp(b.connected),
                b.pid.to_string(),
            ),
            None => (String::new(), String::new(), String::new(), "0".into()),
        };
        out.push(vec![
            s.pid.to_string(),
            timestamp(s.started),
            "1".into(),
            "0".into(),
            node.to_string(),
            db,
            user,
            btime,
            timestamp(s.started),
            String::new(),
            "0".into(),
            major,
            minor,
            "1".into(),
            bpid,
            "1".into(),
            s.status().as_str().into(),
            u8::from(s.lb_node() == node).to_string(),
            host.clone(),
            port.clone(),
            String::new(),
        ]);
    }
}

/// Every row of `SHOW pool_pools` (also PCP's `proc_info`); `pid` limits it to one session.
pub fn pools_rows(ctx: &Context, pid: Option<i32>) -> Vec<Vec<String>> {
    let nodes = ctx.config().backends.len();
    let mut rows = Vec::new();
    for s in ctx.sessions.snapshot() {
        if pid.is_none_or(|p| p == s.pid) {
            session_rows(&s, nodes, &mut rows);
        }
    }
    rows
}

impl Command for ShowPools {
    fn execute(&self, ctx: &Context, _: &mut SessionAdmin) -> Result<Answer, PgError> {
        Ok(Answer::rows(&POOLS_COLUMNS, pools_rows(ctx, None)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_versions_split() {
        assert_eq!(
            super::major_minor("15.4 (Debian 15.4-1)"),
            ("15".to_string(), "4".to_string())
        );
        assert_eq!(super::major_minor(""), ("0".to_string(), "0".to_string()));
    }
}
