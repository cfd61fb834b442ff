//! `SHOW pool_cache`: pgpool-rs has no query cache, so the one row is all zeros, as
//! Pgpool-II reports with `memory_cache_enabled = off`.

use crate::admin::{Answer, Command, SessionAdmin};
use crate::context::Context;
use crate::protocol::PgError;

pub struct ShowCache;

/// Also the `pgpool2_pool_cache_*` metric names.
pub const CACHE_COLUMNS: [&str; 9] = [
    "num_cache_hits",
    "num_selects",
    "cache_hit_ratio",
    "num_hash_entries",
    "used_hash_entries",
    "num_cache_entries",
    "used_cache_entries_size",
    "free_cache_entries_size",
    "fragment_cache_entries_size",
];

impl Command for ShowCache {
    fn execute(&self, _: &Context, _: &mut SessionAdmin) -> Result<Answer, PgError> {
        let row = CACHE_COLUMNS
            .iter()
            .map(|c| if *c == "cache_hit_ratio" { "0.00" } else { "0" }.to_string())
            .collect();
        Ok(Answer::rows(&CACHE_COLUMNS, vec![row]))
    }
}
