//! CancelRequest routing: the (pid, key) the proxy gives each client, mapped to the backends
//! that client's session holds. One registry per listening proxy, shared by its sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use crate::backend::{send_cancel, BackendAddr, BackendConn};

/// One backend a session holds, as a cancel needs it.
#[derive(Clone, Debug)]
struct CancelTarget {
    addr: BackendAddr,
    pid: i32,
    key: i32,
}

#[derive(Default)]
struct CancelEntry {
    key: i32,
    targets: Vec<CancelTarget>,
}

/// Maps the (pid, key) the proxy gave each client to the backends that session holds, so a
/// CancelRequest reaches the server running that client's query with the server's real key.
#[derive(Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, CancelEntry>>,
}

impl CancelRegistry {
    /// Gives a new session its own process id and secret key.
    pub fn register(self: &Arc<Self>) -> CancelHandle {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let pid = (rand::random::<u32>() >> 1) as i32;
            if pid == 0 || map.contains_key(&pid) {
                continue;
            }
            let key = rand::random::<i32>();
            map.insert(
                pid,
                CancelEntry {
                    key,
                    targets: Vec::new(),
                },
            );
            return CancelHandle {
                registry: self.clone(),
                pid,
                key,
            };
        }
    }

    /// Forwards a client's cancel to every backend of the matching session.
    pub async fn cancel(&self, pid: i32, key: i32) {
        let targets = {
            let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&pid) {
                Some(e) if e.key == key => e.targets.clone(),
                _ => {
                    info!(pid, "invalid cancel key");
                    return;
                }
            }
        };
        for t in targets {
            if let Err(e) = send_cancel(&t.addr, t.pid, t.key).await {
                warn!("could not forward cancel request: {e}");
            }
        }
    }
}

/// A session's entry in the cancel registry.
pub struct CancelHandle {
    registry: Arc<CancelRegistry>,
    pid: i32,
    key: i32,
}

impl CancelHandle {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn key(&self) -> i32 {
        self.key
    }

    pub fn add_backend(&self, conn: &BackendConn) {
        self.update(|e| {
            e.targets.push(CancelTarget {
                addr: conn.addr.clone(),
                pid: conn.pid,
                key: conn.key,
            })
        });
    }

    pub fn remove_backend(&self, conn: &BackendConn) {
        self.update(|e| e.targets.retain(|t| t.pid != conn.pid));
    }

    fn update(&self, f: impl FnOnce(&mut CancelEntry)) {
        let mut map = self
            .registry
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&self.pid) {
            f(e);
        }
    }

    pub fn unregister(&self) {
        let mut map = self
            .registry
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.remove(&self.pid);
    }
}

impl Drop for CancelHandle {
    fn drop(&mut self) {
        self.unregister();
    }
}
