//! The cache of idle, authenticated backend connections (Pgpool-II's connection cache, made
//! cheap): one shared pool instead of one per child process, keyed by node, user, database
//! and the client's startup parameters, bounded per node with least-recently-returned
//! eviction, and aged out by `connection_life_time` / `child_life_time`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{BackendConn, Credential};

/// What makes two backend connections interchangeable. `application_name` is left out: the
/// session sets it on checkout, so clients that differ only in it share connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub node: usize,
    pub user: String,
    pub database: String,
    /// The other startup parameters, sorted (options, client_encoding, DateStyle, …).
    pub params: Vec<(String, String)>,
}

impl PoolKey {
    pub fn new(node: usize, params: &[(String, String)]) -> PoolKey {
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mut rest: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "application_name"))
            .cloned()
            .collect();
        rest.sort();
        PoolKey {
            node,
            user: get("user"),
            database: get("database"),
            params: rest,
        }
    }
}

/// How the backend authenticated the connection; a client reusing it must prove the same.
#[derive(Clone, Debug)]
pub enum AuthMemo {
    Trust,
    Md5,
    Scram,
    /// The cleartext password the first client gave; later clients must give the same.
    Cleartext(String),
}

/// How a cached connection was logged in, for a new client that would use it.
pub struct CachedLogin {
    pub auth: AuthMemo,
    /// What the proxy answered the backend with.
    pub credential: Credential,
    /// The server's ParameterStatus values (shared with the connection, not copied).
    pub params: super::conn::ServerParams,
}

/// An idle connection in the cache.
pub struct Idle {
    pub conn: BackendConn,
    pub credential: Credential,
    pub auth: AuthMemo,
    /// Its share of a transaction-mode bound (see `limits`), kept while it is cached.
    pub permit: Option<super::ConnPermit>,
    /// The named statements it holds: name → definition key (transaction pooling shares
    /// them between clients).
    pub prepared: foldhash::HashMap<String, u64>,
    returned_at: Instant,
}

/// Counters per node, read by SHOW pool_pools and /metrics.
#[derive(Default, Debug)]
pub struct PoolCounters {
    pub opened: AtomicU64,
    pub reused: AtomicU64,
    pub reset: AtomicU64,
    /// Connections cached without a reset: their session left no state behind.
    pub reset_skipped: AtomicU64,
    pub closed_dirty: AtomicU64,
    pub closed_dead: AtomicU64,
    pub closed_expired: AtomicU64,
    pub closed_evicted: AtomicU64,
    pub closed_max_connections: AtomicU64,
}

#[derive(Default)]
struct Inner {
    idle: foldhash::HashMap<PoolKey, Vec<Idle>>,
    /// Idle connections per node, to enforce the per-node bound.
    per_node: foldhash::HashMap<usize, usize>,
}

/// Limits taken from the configuration at construction (pool limits are start-only in
/// Pgpool-II too).
#[derive(Clone, Copy, Debug)]
pub struct PoolLimits {
    /// `num_init_children × max_pool` idle connections per node.
    pub max_idle_per_node: usize,
    /// `connection_life_time` (0 = never): close a connection idle in the cache this long.
    pub idle_lifetime: Option<Duration>,
    /// `child_max_connections` (0 = never): close a connection after it served this many sessions.
    pub max_sessions: u32,
}

pub struct Pool {
    inner: Mutex<Inner>,
    limits: PoolLimits,
    pub counters: Vec<PoolCounters>,
}

impl Pool {
    pub fn new(limits: PoolLimits, nodes: usize) -> Pool {
        Pool {
            inner: Mutex::new(Inner::default()),
            limits,
            counters: (0..nodes.max(1)).map(|_| PoolCounters::default()).collect(),
        }
    }

    fn counters(&self, node: usize) -> Option<&PoolCounters> {
        self.counters.get(node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently returned live connection for `key`, if any. Connections the server
    /// closed meanwhile (restart, pg_terminate_backend) are dropped here, never handed out.
    pub fn checkout(&self, key: &PoolKey) -> Option<Idle> {
        loop {
            let candidate = {
                let mut inner = self.lock();
                let list = inner.idle.get_mut(key)?;
                let c = list.pop();
                if list.is_empty() {
                    inner.idle.remove(key);
                }
                if c.is_some() {
                    if let Some(n) = inner.per_node.get_mut(&key.node) {
                        *n = n.saturating_sub(1);
                    }
                }
                c
            }?;
            if candidate.conn.stream.is_alive() && !self.expired(&candidate) {
                if let Some(c) = self.counters(key.node) {
                    c.reused.fetch_add(1, Ordering::Relaxed);
                }
                return Some(candidate);
            }
            if let Some(c) = self.counters(key.node) {
                c.closed_dead.fetch_add(1, Ordering::Relaxed);
            }
            // Dropping closes the socket; a dead peer needs no goodbye.
        }
    }

    /// Whether a connection for `key` is cached now.
    pub fn has_idle(&self, key: &PoolKey) -> bool {
        self.lock().idle.get(key).is_some_and(|l| !l.is_empty())
    }

    /// What a cached connection for `key` would show a client (its authentication and the
    /// server's ParameterStatus set), without taking it: enough to greet a client whose
    /// backend connection is taken only at its first query.
    /// The idle connection returned longest ago of `key`'s user, database and node but
    /// opened with other startup parameters: under a transaction-mode bound it holds a
    /// permit a session of `key` needs more. Counted as evicted; the caller closes it.
    pub fn take_other_params(&self, key: &PoolKey) -> Option<Idle> {
        let mut inner = self.lock();
        let same_limit = |k: &PoolKey| {
            k.node == key.node
                && k.user == key.user
                && k.database == key.database
                && k.params != key.params
        };
        let idle = take_oldest(&mut inner, same_limit, |_| true)?;
        if let Some(c) = self.counters(key.node) {
            c.closed_evicted.fetch_add(1, Ordering::Relaxed);
        }
        Some(idle)
    }

    pub fn peek(&self, key: &PoolKey) -> Option<CachedLogin> {
        let inner = self.lock();
        let last = inner.idle.get(key)?.last()?;
        Some(CachedLogin {
            auth: last.auth.clone(),
            credential: last.credential.clone(),
            params: last.conn.params.clone(),
        })
    }

    fn expired(&self, idle: &Idle) -> bool {
        self.limits
            .idle_lifetime
            .is_some_and(|l| idle.returned_at.elapsed() >= l)
    }

    /// Counts a newly opened backend connection.
    pub fn note_opened(&self, node: usize) {
        if let Some(c) = self.counters(node) {
            c.opened.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn note_reset_skipped(&self, node: usize) {
        if let Some(c) = self.counters(node) {
            c.reset_skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn note_reset(&self, node: usize) {
        if let Some(c) = self.counters(node) {
            c.reset.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn note_dirty(&self, node: usize) {
        if let Some(c) = self.counters(node) {
            c.closed_dirty.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Returns a clean, idle connection to the cache. When the node's cache is full the
    /// connection returned longest ago is closed to make room. Returns connections that
    /// must be closed by the caller (evicted or over `child_max_connections`).
    pub fn checkin(&self, key: PoolKey, mut idle: Idle) -> Vec<BackendConn> {
        idle.conn.sessions_served += 1;
        self.checkin_fresh(key, idle)
    }

    /// As [`Pool::checkin`], for a connection no session has used yet.
    pub fn checkin_fresh(&self, key: PoolKey, mut idle: Idle) -> Vec<BackendConn> {
        let node = key.node;
        if self.limits.max_sessions > 0 && idle.conn.sessions_served >= self.limits.max_sessions {
            if let Some(c) = self.counters(node) {
                c.closed_max_connections.fetch_add(1, Ordering::Relaxed);
            }
            return vec![idle.conn];
        }
        if self.limits.max_idle_per_node == 0 {
            return vec![idle.conn];
        }
        idle.returned_at = Instant::now();
        let mut evicted = Vec::new();
        let mut inner = self.lock();
        while inner.per_node.get(&node).copied().unwrap_or(0) >= self.limits.max_idle_per_node {
            match take_oldest(&mut inner, |k| k.node == node, |_| true) {
                Some(old) => {
                    if let Some(c) = self.counters(node) {
                        c.closed_evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    evicted.push(old.conn);
                }
                None => break,
            }
        }
        *inner.per_node.entry(node).or_default() += 1;
        inner.idle.entry(key).or_default().push(idle);
        evicted
    }

    /// Removes connections idle past the lifetime; the caller closes them.
    pub fn expire(&self) -> Vec<BackendConn> {
        let Some(life) = self.limits.idle_lifetime else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut inner = self.lock();
        while let Some(old) = take_oldest(&mut inner, |_| true, |i| i.returned_at.elapsed() >= life)
        {
            if let Some(c) = self.counters(old.conn.node) {
                c.closed_expired.fetch_add(1, Ordering::Relaxed);
            }
            out.push(old.conn);
        }
        out
    }

    /// Removes every idle connection whose key matches `which` (users whose credentials
    /// changed on reload); the caller closes them.
    pub fn remove_where(&self, which: impl Fn(&PoolKey) -> bool) -> Vec<BackendConn> {
        let mut out = Vec::new();
        let mut inner = self.lock();
        let keys: Vec<PoolKey> = inner.idle.keys().filter(|k| which(k)).cloned().collect();
        for key in keys {
            let Some(list) = inner.idle.remove(&key) else {
                continue;
            };
            if let Some(n) = inner.per_node.get_mut(&key.node) {
                *n = n.saturating_sub(list.len());
            }
            if let Some(c) = self.counters(key.node) {
                c.closed_evicted
                    .fetch_add(list.len() as u64, Ordering::Relaxed);
            }
            out.extend(list.into_iter().map(|i| i.conn));
        }
        out
    }

    /// Idle connections held now, per node.
    pub fn idle_count(&self, node: usize) -> usize {
        self.lock().per_node.get(&node).copied().unwrap_or(0)
    }

    /// A snapshot for SHOW pool_pools: (key, backend pid, seconds since returned).
    pub fn snapshot(&self) -> Vec<(PoolKey, i32, u64)> {
        let inner = self.lock();
        inner
            .idle
            .iter()
            .flat_map(|(k, v)| {
                v.iter()
                    .map(move |i| (k.clone(), i.conn.pid, i.returned_at.elapsed().as_secs()))
            })
            .collect()
    }
}

impl Idle {
    pub fn new(conn: BackendConn, credential: Credential, auth: AuthMemo) -> Idle {
        Idle {
            conn,
            credential,
            auth,
            permit: None,
            prepared: Default::default(),
            returned_at: Instant::now(),
        }
    }

    /// The same, carrying `permit` (the connection counts against a bound).
    pub fn with_permit(mut self, permit: Option<super::ConnPermit>) -> Idle {
        self.permit = permit;
        self
    }

    /// The same, holding `prepared` statements.
    pub fn with_statements(mut self, prepared: foldhash::HashMap<String, u64>) -> Idle {
        self.prepared = prepared;
        self
    }
}

/// Takes the connection returned longest ago among keys matching `key_ok` and entries
/// matching `entry_ok`.
fn take_oldest(
    inner: &mut Inner,
    key_ok: impl Fn(&PoolKey) -> bool,
    entry_ok: impl Fn(&Idle) -> bool,
) -> Option<Idle> {
    let (key, idx) = inner
        .idle
        .iter()
        .filter(|(k, _)| key_ok(k))
        .flat_map(|(k, v)| v.iter().enumerate().map(move |(i, e)| (k, i, e)))
        .filter(|(_, _, e)| entry_ok(e))
        .min_by_key(|(_, _, e)| e.returned_at)
        .map(|(k, i, _)| (k.clone(), i))?;
    let list = inner.idle.get_mut(&key)?;
    let idle = list.remove(idx);
    if list.is_empty() {
        inner.idle.remove(&key);
    }
    if let Some(n) = inner.per_node.get_mut(&key.node) {
        *n = n.saturating_sub(1);
    }
    Some(idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn key_ignores_application_name_and_parameter_order() {
        let a = PoolKey::new(
            0,
            &params(&[
                ("user", "u"),
                ("database", "d"),
                ("application_name", "x"),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO"),
            ]),
        );
        let b = PoolKey::new(
            0,
            &params(&[
                ("DateStyle", "ISO"),
                ("database", "d"),
                ("client_encoding", "UTF8"),
                ("user", "u"),
            ]),
        );
        assert_eq!(a, b);
        let other_user = PoolKey::new(
            0,
            &params(&[
                ("user", "v"),
                ("database", "d"),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO"),
            ]),
        );
        assert_ne!(a, other_user);
        let other_node = PoolKey::new(
            1,
            &params(&[
                ("user", "u"),
                ("database", "d"),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO"),
            ]),
        );
        assert_ne!(a, other_node);
        let other_opts = PoolKey::new(
            0,
            &params(&[
                ("user", "u"),
                ("database", "d"),
                ("options", "-c search_path=x"),
            ]),
        );
        assert_ne!(a, other_opts);
    }
}
