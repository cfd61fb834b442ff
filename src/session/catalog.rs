//! The catalog names a request needs answers for before it can be routed; the answers are
//! shared by every session in [`crate::context::catalog::CatalogCache`].

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
