//! The primary's catalog facts that routing needs (is a function VOLATILE, is a relation
//! unlogged), looked up by the first session that needs one and shared by all sessions of
//! the same database.
//!
//! A successful CREATE / ALTER / DROP / COMMENT / DO that any session routes clears them (again
//! when its transaction ends), and so does a reload; catalog changes made outside the proxy
//! are seen after a reload or restart. Reads take one uncontended read lock and allocate
//! nothing.

use std::sync::RwLock;

use foldhash::HashMap;

use crate::router::CatalogKey;

/// More names than this and the cache starts over (names come from clients' texts).
const MAX_NAMES: usize = 50_000;

#[derive(Default)]
struct Facts {
    /// By database: catalogs are per database.
    dbs: HashMap<String, DbFacts>,
    names: usize,
    /// Bumped by every [`CatalogCache::clear`]: an answer asked for before it is dropped.
    generation: u64,
}

#[derive(Default)]
struct DbFacts {
    functions: HashMap<String, bool>,
    relations: HashMap<String, bool>,
    /// Whether a VOLATILE function shares a name with the built-in "safe" table
    /// ([`crate::router::overloaded_builtins_query`]): `None` not asked yet.
    builtins_overloaded: Option<bool>,
}

#[derive(Default)]
pub struct CatalogCache {
    facts: RwLock<Facts>,
}

impl CatalogCache {
    /// The cached answer for database `db`, if the primary was asked since the last clear.
    pub fn get(&self, db: &str, key: CatalogKey<'_>) -> Option<bool> {
        let facts = self.facts.read().unwrap_or_else(|p| p.into_inner());
        let d = facts.dbs.get(db)?;
        match key {
            CatalogKey::Function(f) => d.functions.get(f).copied(),
            CatalogKey::Relation(r) => d.relations.get(r).copied(),
        }
    }

    /// Take this before asking the primary, give it to [`CatalogCache::insert`].
    pub fn generation(&self) -> u64 {
        self.facts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    /// Caches an answer the primary gave, unless the catalog changed since it was asked.
    pub fn insert(&self, asked_at: u64, db: &str, key: CatalogKey<'_>, value: bool) {
        self.update(asked_at, db, |d| match key {
            CatalogKey::Function(f) => d.functions.insert(f.to_string(), value).is_none(),
            CatalogKey::Relation(r) => d.relations.insert(r.to_string(), value).is_none(),
        });
    }

    /// The primary said no user function of database `db` overloads a built-in "safe"
    /// name: calls under those names leave no state. False while not known (conservative).
    pub fn builtins_safe(&self, db: &str) -> bool {
        self.builtins_overloaded(db) == Some(false)
    }

    /// Whether the primary should be asked [`crate::router::overloaded_builtins_query`].
    pub fn builtins_unknown(&self, db: &str) -> bool {
        self.builtins_overloaded(db).is_none()
    }

    fn builtins_overloaded(&self, db: &str) -> Option<bool> {
        let facts = self.facts.read().unwrap_or_else(|p| p.into_inner());
        facts.dbs.get(db)?.builtins_overloaded
    }

    /// Caches the answer to [`crate::router::overloaded_builtins_query`].
    pub fn set_builtins_overloaded(&self, asked_at: u64, db: &str, overloaded: bool) {
        self.update(asked_at, db, |d| {
            d.builtins_overloaded = Some(overloaded);
            false
        });
    }

    /// Applies `change` (which says whether it added a name) unless the catalog changed
    /// since `asked_at`.
    fn update(&self, asked_at: u64, db: &str, change: impl FnOnce(&mut DbFacts) -> bool) {
        let mut facts = self.facts.write().unwrap_or_else(|p| p.into_inner());
        if facts.generation != asked_at {
            return;
        }
        if facts.names >= MAX_NAMES {
            facts.dbs.clear();
            facts.names = 0;
        }
        if !facts.dbs.contains_key(db) {
            facts.dbs.insert(db.to_string(), DbFacts::default());
        }
        let added = facts.dbs.get_mut(db).is_some_and(change);
        facts.names += usize::from(added);
    }

    /// Forgets every answer (DDL ran, or the configuration was reloaded).
    pub fn clear(&self) {
        let mut facts = self.facts.write().unwrap_or_else(|p| p.into_inner());
        facts.dbs.clear();
        facts.names = 0;
        facts.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_per_database_and_those_asked_before_a_clear_are_dropped() {
        let c = CatalogCache::default();
        let g = c.generation();
        c.insert(g, "a", CatalogKey::Relation("t"), true);
        assert_eq!(c.get("a", CatalogKey::Relation("t")), Some(true));
        assert_eq!(c.get("b", CatalogKey::Relation("t")), None);
        assert_eq!(c.get("a", CatalogKey::Function("t")), None);
        let stale = c.generation();
        c.clear();
        assert_eq!(c.get("a", CatalogKey::Relation("t")), None);
        c.insert(stale, "a", CatalogKey::Function("f"), false);
        assert_eq!(c.get("a", CatalogKey::Function("f")), None);
        assert!(!c.builtins_safe("a") && c.builtins_unknown("a"));
        c.set_builtins_overloaded(stale, "a", false);
        assert!(!c.builtins_safe("a"), "asked before the clear");
        c.set_builtins_overloaded(c.generation(), "a", false);
        assert!(c.builtins_safe("a") && !c.builtins_safe("b"));
        c.clear();
        assert!(!c.builtins_safe("a"));
    }
}
