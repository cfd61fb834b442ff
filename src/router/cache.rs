//! The verdict cache in front of the classifier, keyed by statement shape (`shape.rs`): texts
//! that differ only in literal values share one entry, other texts are keyed exactly.
//!
//! A hit costs one allocation-free lexer pass, a keyed hash, a lock and a comparison of the
//! text with the cached one; it returns the cached `Arc`.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::classify::{classify_checked, classify_uncached};
use super::config::RouterConfig;
use super::shape::{Hole, Shape};
use super::statement::{ClassifyOptions, Statement};

/// Texts past this size are not cached (bulk INSERTs would crowd out the useful entries).
const MAX_CACHED_LEN: usize = 16 * 1024;
const SHARDS: usize = 16;
const DEFAULT_CAPACITY: usize = 10_000;
/// Slots of the "seen once" filter (a power of two).
const SEEN_SLOTS: usize = 8192;

/// One cached verdict: the statement (whose `text` is the first text seen of its shape) and
/// that text's holes.
struct Entry {
    stmt: Arc<Statement>,
    holes: Box<[Hole]>,
}

/// Keys are already keyed hashes: the map uses them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

/// One cache shard: two generations, a cheap approximation of LRU. When `young` fills up it
/// becomes `old` and the previous `old` is dropped; a hit in `old` is promoted.
#[derive(Default)]
struct Shard {
    young: Map,
    old: Map,
}

/// Classifies statement text; thread-safe, with a bounded verdict cache keyed by shape.
pub struct Classifier {
    opts: ClassifyOptions,
    shards: Vec<Mutex<Shard>>,
    per_generation: usize,
    /// Per-classifier random key of the shape hash (the text is client-controlled).
    seed: u64,
    /// Hashes of texts seen once: a text is cached at its second sighting, so the stream of
    /// one-off texts does not push out the entries that repeat.
    seen: Box<[AtomicU64]>,
}

impl Classifier {
    pub fn new(opts: ClassifyOptions) -> Self {
        Self::with_capacity(opts, DEFAULT_CAPACITY)
    }

    /// `capacity` is the approximate number of cached shapes (at most twice it are kept).
    pub fn with_capacity(opts: ClassifyOptions, capacity: usize) -> Self {
        Self {
            opts,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_generation: (capacity / SHARDS).max(1),
            seed: RandomState::new().hash_one(0x5eed_u64),
            seen: (0..SEEN_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn options(&self) -> ClassifyOptions {
        self.opts
    }

    /// Classify `sql`; the statement's `text` is `sql`. Never panics.
    pub fn classify(&self, sql: &str) -> Arc<Statement> {
        self.classify_shared(sql, true)
    }

    /// Classify `sql` for routing under `cfg`. The verdict is that of `sql`, but unless
    /// `cfg` has a `primary_routing_query_pattern_list` (which reads literal values), the
    /// statement's `text` may be another text of the same shape: equal to `sql` except for
    /// the values of plain literals. That is all the other readers of `text` need (SET,
    /// replayed by its text, is never shared). Never panics.
    pub fn classify_for(&self, sql: &str, cfg: &RouterConfig) -> Arc<Statement> {
        self.classify_shared(sql, !cfg.primary_routing_query_patterns.is_empty())
    }

    fn classify_shared(&self, sql: &str, exact_text: bool) -> Arc<Statement> {
        if sql.len() > MAX_CACHED_LEN {
            return Arc::new(classify_uncached(sql, &self.opts));
        }
        let shape = Shape::of(sql, self.seed);
        let shard_idx = (shape.hash >> 32) as usize % SHARDS;
        let Some(shard_lock) = self.shards.get(shard_idx) else {
            return Arc::new(classify_uncached(sql, &self.opts));
        };
        if let Some(hit) = lookup(shard_lock, &shape, sql) {
            if exact_text && *hit.text != *sql {
                return Arc::new(Statement {
                    text: Arc::from(sql),
                    ..(*hit).clone()
                });
            }
            return hit;
        }
        let (stmt, literal_names) = classify_checked(sql, &self.opts);
        let stmt = Arc::new(stmt);
        // A verdict that took a name from a string literal depends on its value.
        let shareable = !literal_names || shape.holes().is_empty();
        if shareable && self.seen_before(shape.hash) {
            let entry = Entry {
                stmt: stmt.clone(),
                holes: shape.holes().into(),
            };
            let mut shard = shard_lock.lock().unwrap_or_else(|e| e.into_inner());
            let retired = if shard.young.len() >= self.per_generation {
                let young = std::mem::take(&mut shard.young);
                Some(std::mem::replace(&mut shard.old, young))
            } else {
                None
            };
            shard.young.insert(shape.hash, entry);
            drop(shard);
            drop(retired); // freed outside the lock
        }
        stmt
    }

    /// Whether `hash` was seen before (and if not, remember it).
    fn seen_before(&self, hash: u64) -> bool {
        let Some(slot) = self.seen.get(hash as usize % SEEN_SLOTS) else {
            return true;
        };
        if slot.load(Relaxed) == hash {
            return true;
        }
        slot.store(hash, Relaxed);
        false
    }
}

fn lookup(shard_lock: &Mutex<Shard>, shape: &Shape, sql: &str) -> Option<Arc<Statement>> {
    // A poisoned lock only means another thread panicked mid-insert; the maps stay valid.
    let mut shard = shard_lock.lock().unwrap_or_else(|e| e.into_inner());
    let fits = |e: &Entry| shape.matches(sql, &e.stmt.text, &e.holes);
    if let Some(hit) = shard.young.get(&shape.hash).filter(|e| fits(e)) {
        return Some(hit.stmt.clone());
    }
    if !shard.old.get(&shape.hash).is_some_and(fits) {
        return None;
    }
    let entry = shard.old.remove(&shape.hash)?;
    let hit = entry.stmt.clone();
    shard.young.insert(shape.hash, entry);
    Some(hit)
}
