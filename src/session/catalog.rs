//! The primary's catalog facts that routing needs (is a function VOLATILE, is a relation
//! unlogged), looked up by the first session that needs one and shared by all sessions.
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

/// Names whose catalog facts routing needs before it can decide.
#[derive(Debug, Default)]
pub struct Questions {
    pub functions: Vec<String>,
    pub relations: Vec<String>,
}

impl Questions {
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty() && self.relations.is_empty()
    }

    pub fn clear(&mut self) {
        self.functions.clear();
        self.relations.clear();
    }
}

#[derive(Default)]
struct Facts {
    functions: HashMap<String, bool>,
    relations: HashMap<String, bool>,
    /// Bumped by every [`CatalogCache::clear`]: an answer asked for before it is dropped.
    generation: u64,
}

#[derive(Default)]
pub struct CatalogCache {
    facts: RwLock<Facts>,
}

impl CatalogCache {
    /// The cached answer, if the primary was asked since the last clear.
    pub fn get(&self, key: CatalogKey<'_>) -> Option<bool> {
        let facts = self.facts.read().unwrap_or_else(|p| p.into_inner());
        match key {
            CatalogKey::Function(f) => facts.functions.get(f).copied(),
            CatalogKey::Relation(r) => facts.relations.get(r).copied(),
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
    pub fn insert(&self, asked_at: u64, key: CatalogKey<'_>, value: bool) {
        let mut facts = self.facts.write().unwrap_or_else(|p| p.into_inner());
        if facts.generation != asked_at {
            return;
        }
        if facts.functions.len() + facts.relations.len() >= MAX_NAMES {
            facts.functions.clear();
            facts.relations.clear();
        }
        match key {
            CatalogKey::Function(f) => facts.functions.insert(f.to_string(), value),
            CatalogKey::Relation(r) => facts.relations.insert(r.to_string(), value),
        };
    }

    /// Forgets every answer (DDL ran, or the configuration was reloaded).
    pub fn clear(&self) {
        let mut facts = self.facts.write().unwrap_or_else(|p| p.into_inner());
        facts.functions.clear();
        facts.relations.clear();
        facts.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_asked_before_a_clear_are_dropped() {
        let c = CatalogCache::default();
        let g = c.generation();
        c.insert(g, CatalogKey::Relation("t"), true);
        assert_eq!(c.get(CatalogKey::Relation("t")), Some(true));
        assert_eq!(c.get(CatalogKey::Function("t")), None);
        let stale = c.generation();
        c.clear();
        assert_eq!(c.get(CatalogKey::Relation("t")), None);
        c.insert(stale, CatalogKey::Function("f"), false);
        assert_eq!(c.get(CatalogKey::Function("f")), None);
    }
}
