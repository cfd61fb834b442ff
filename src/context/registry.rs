//! Who is connected: one entry per client session, for `SHOW pool_processes`, `SHOW
//! pool_pools`, PCP `proc_info` and the session gauges. A session updates its own entry with
//! relaxed atomics (status) or a short lock (backend connections); readers copy a snapshot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A session's status as Pgpool-II's `SHOW pool_processes` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcStatus {
    Idle,
    IdleInTransaction,
    Executing,
}

impl ProcStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcStatus::Idle => "Idle",
            ProcStatus::IdleInTransaction => "Idle in transaction",
            ProcStatus::Executing => "Execute command",
        }
    }

    fn from_u8(v: u8) -> ProcStatus {
        match v {
            1 => ProcStatus::IdleInTransaction,
            2 => ProcStatus::Executing,
            _ => ProcStatus::Idle,
        }
    }
}

/// One backend connection a session holds.
#[derive(Debug, Clone)]
pub struct BackendInfo {
    pub pid: i32,
    pub connected: SystemTime,
    pub server_version: String,
}

/// What the registry knows about one session.
#[derive(Debug)]
pub struct SessionInfo {
    /// The process id the client got in BackendKeyData (our `pool_pid`).
    pub pid: i32,
    /// The client's address; `None` on the Unix socket (`[local]`). Kept as is: it is
    /// formatted only when an admin asks.
    pub client: Option<SocketAddr>,
    pub user: String,
    pub database: String,
    pub started: SystemTime,
    pub tls: bool,
    status: AtomicU8,
    lb_node: AtomicUsize,
    backends: Mutex<Vec<Option<BackendInfo>>>,
}

impl SessionInfo {
    pub fn status(&self) -> ProcStatus {
        ProcStatus::from_u8(self.status.load(Relaxed))
    }

    pub fn set_status(&self, s: ProcStatus) {
        let v = match s {
            ProcStatus::Idle => 0,
            ProcStatus::IdleInTransaction => 1,
            ProcStatus::Executing => 2,
        };
        self.status.store(v, Relaxed);
    }

    pub fn lb_node(&self) -> usize {
        self.lb_node.load(Relaxed)
    }

    pub fn set_lb_node(&self, n: usize) {
        self.lb_node.store(n, Relaxed);
    }

    /// The session now holds a connection to `node` (or none, with `None`).
    pub fn set_backend(&self, node: usize, info: Option<BackendInfo>) {
        let mut b = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        if node >= crate::stats::MAX_NODES {
            return;
        }
        if b.len() <= node {
            b.resize(node + 1, None);
        }
        b[node] = info;
    }

    /// The connection to `node`, if the session holds one.
    pub fn backend(&self, node: usize) -> Option<BackendInfo> {
        let b = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        b.get(node).cloned().flatten()
    }

    /// Host and port of the client, split (`[local]` has no port).
    pub fn client_host_port(&self) -> (String, String) {
        match self.client {
            Some(a) => (a.ip().to_string(), a.port().to_string()),
            None => ("[local]".to_string(), String::new()),
        }
    }
}

/// The sessions now running, ordered by registration.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    next: Mutex<u64>,
    map: Mutex<BTreeMap<u64, Arc<SessionInfo>>>,
}

/// Fields of a new registry entry.
pub struct NewSession {
    pub pid: i32,
    pub client: Option<SocketAddr>,
    pub user: String,
    pub database: String,
    pub tls: bool,
}

impl SessionRegistry {
    /// Adds a session; it leaves the registry when the returned entry is dropped.
    pub fn register(self: &Arc<Self>, s: NewSession) -> SessionEntry {
        let id = {
            let mut n = self.next.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let info = Arc::new(SessionInfo {
            pid: s.pid,
            client: s.client,
            user: s.user,
            database: s.database,
            started: SystemTime::now(),
            tls: s.tls,
            status: AtomicU8::new(0),
            lb_node: AtomicUsize::new(0),
            backends: Mutex::new(Vec::new()),
        });
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(id, info.clone());
        SessionEntry {
            registry: self.clone(),
            id,
            info,
        }
    }

    pub fn snapshot(&self) -> Vec<Arc<SessionInfo>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A session's registration; removing it from the registry on drop.
#[derive(Debug)]
pub struct SessionEntry {
    registry: Arc<SessionRegistry>,
    id: u64,
    pub info: Arc<SessionInfo>,
}

impl Drop for SessionEntry {
    fn drop(&mut self) {
        let mut map = self.registry.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_leave_when_dropped() {
        let r = Arc::new(SessionRegistry::default());
        let a = r.register(NewSession {
            pid: 7,
            client: Some("10.0.0.5:53122".parse().unwrap()),
            user: "u".into(),
            database: "d".into(),
            tls: false,
        });
        assert_eq!(r.len(), 1);
        assert_eq!(
            a.info.client_host_port(),
            ("10.0.0.5".to_string(), "53122".to_string())
        );
        a.info.set_backend(1, None);
        a.info.set_status(ProcStatus::IdleInTransaction);
        assert_eq!(a.info.status().as_str(), "Idle in transaction");
        let local = r.register(NewSession {
            pid: 8,
            client: None,
            user: "u".into(),
            database: "d".into(),
            tls: false,
        });
        assert_eq!(
            local.info.client_host_port(),
            ("[local]".to_string(), String::new())
        );
        drop((a, local));
        assert!(r.is_empty());
    }
}
