//! The bound on backend connections that transaction-mode sessions share
//! (`default_pool_size` per user, database and node, as PgBouncer's `default_pool_size`):
//! each such connection carries a permit, idle in the cache or in use, so the count never
//! passes the bound; a session that finds none free waits for one to come back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::PoolKey;

/// One connection's share of its key's bound; dropping it (the connection closed) frees it.
pub type ConnPermit = OwnedSemaphorePermit;

#[derive(Clone, PartialEq, Eq, Hash)]
struct LimitKey {
    node: usize,
    user: String,
    database: String,
}

/// The bound of one user, database and node.
pub struct KeyLimit {
    permits: Arc<Semaphore>,
    /// Signalled when a connection of this key goes back to the cache.
    returned: Notify,
}

/// What a wait for a connection got.
pub enum Acquired<T> {
    /// A cached connection (or what a cached one offers), found by the caller's look-up.
    Found(T),
    /// Room for a new connection.
    Permit(ConnPermit),
}

pub struct ConnLimits {
    size: usize,
    keys: Mutex<foldhash::HashMap<LimitKey, Arc<KeyLimit>>>,
}

impl ConnLimits {
    pub fn new(size: usize) -> ConnLimits {
        ConnLimits {
            size: size.max(1),
            keys: Mutex::new(foldhash::HashMap::default()),
        }
    }

    /// The bound of `key`'s user, database and node.
    pub fn of(&self, key: &PoolKey) -> Arc<KeyLimit> {
        let k = LimitKey {
            node: key.node,
            user: key.user.clone(),
            database: key.database.clone(),
        };
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.entry(k)
            .or_insert_with(|| {
                Arc::new(KeyLimit {
                    permits: Arc::new(Semaphore::new(self.size)),
                    returned: Notify::new(),
                })
            })
            .clone()
    }
}

impl KeyLimit {
    /// A new connection may be opened now.
    pub fn has_room(&self) -> bool {
        self.permits.available_permits() > 0
    }

    /// A connection of this key went back to the cache: one waiter looks again (waking
    /// them all would have every waiting session race for one connection). A waiter that
    /// only looks without taking it passes the turn on with another call.
    pub fn returned(&self) {
        self.returned.notify_one();
    }

    /// Waits until `find` yields a cached connection or a permit for a new one is free, at
    /// most `limit` (None: no limit). None when the time ran out. `make_room` may free a
    /// permit held by an idle connection the caller cannot use (true when it did).
    pub async fn acquire<T>(
        &self,
        mut find: impl FnMut() -> Option<T>,
        mut make_room: impl FnMut() -> bool,
        limit: Option<Duration>,
    ) -> Option<Acquired<T>> {
        let deadline = limit.map(|l| tokio::time::Instant::now() + l);
        loop {
            if let Some(t) = find() {
                return Some(Acquired::Found(t));
            }
            if let Ok(p) = self.permits.clone().try_acquire_owned() {
                return Some(Acquired::Permit(p));
            }
            if make_room() {
                continue;
            }
            // Registered before looking again, so a return in between is not missed.
            let notified = self.returned.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(t) = find() {
                return Some(Acquired::Found(t));
            }
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                p = self.permits.clone().acquire_owned() => {
                    if let Ok(p) = p {
                        return Some(Acquired::Permit(p));
                    }
                }
                () = &mut notified => {}
                () = timeout => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(node: usize, user: &str) -> PoolKey {
        PoolKey::new(
            node,
            &[
                ("user".to_string(), user.to_string()),
                ("database".to_string(), "db".to_string()),
            ],
        )
    }

    #[tokio::test]
    async fn permits_are_bounded_per_user_database_and_node() {
        let limits = ConnLimits::new(2);
        let a = limits.of(&key(0, "a"));
        let none = || None::<()>;
        let p1 = a.acquire(none, || false, Some(Duration::ZERO)).await;
        let p2 = a.acquire(none, || false, Some(Duration::ZERO)).await;
        assert!(matches!(p1, Some(Acquired::Permit(_))));
        assert!(matches!(p2, Some(Acquired::Permit(_))));
        assert!(a
            .acquire(none, || false, Some(Duration::ZERO))
            .await
            .is_none());
        // Other users and nodes have bounds of their own.
        let other = limits
            .of(&key(0, "b"))
            .acquire(none, || false, Some(Duration::ZERO))
            .await;
        assert!(matches!(other, Some(Acquired::Permit(_))));
        let replica = limits
            .of(&key(1, "a"))
            .acquire(none, || false, Some(Duration::ZERO))
            .await;
        assert!(matches!(replica, Some(Acquired::Permit(_))));
        // A closed connection frees its permit; a cached one is found first.
        drop(p1);
        assert!(matches!(
            limits
                .of(&key(0, "a"))
                .acquire(none, || false, Some(Duration::ZERO))
                .await,
            Some(Acquired::Permit(_))
        ));
        let found = a.acquire(|| Some(7), || false, Some(Duration::ZERO)).await;
        assert!(matches!(found, Some(Acquired::Found(7))));
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_a_connection_returns() {
        let limits = ConnLimits::new(1);
        let a = limits.of(&key(0, "a"));
        let _held = a.acquire(|| None::<()>, || false, None).await;
        let cached = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a2, c2) = (a.clone(), cached.clone());
        let waiter = tokio::spawn(async move {
            let find = || c2.load(std::sync::atomic::Ordering::SeqCst).then_some(());
            a2.acquire(find, || false, None).await.is_some()
        });
        tokio::task::yield_now().await;
        cached.store(true, std::sync::atomic::Ordering::SeqCst);
        a.returned();
        assert!(waiter.await.unwrap_or(false));
    }
}
