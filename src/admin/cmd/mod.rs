//! One file per admin command, each a [`Command`]; `lookup` maps the classifier's
//! [`AdminCommand`] to it.

mod backend_stats;
mod cache;
mod explain;
mod health_check_stats;
mod nodes;
mod pgpool_set;
mod pgpool_show;
mod pools;
mod processes;
mod status;
mod version;

use super::Command;
use crate::protocol::PgError;
use crate::router::AdminCommand;

pub use backend_stats::BACKEND_COUNTERS;
pub use cache::CACHE_COLUMNS;
pub use health_check_stats::{health_check_row, HEALTH_COUNTS};
pub use pools::{pools_rows, POOLS_COLUMNS};
pub use status::status_items;

/// The command object for a classified admin statement.
pub fn lookup(cmd: &AdminCommand) -> Result<Box<dyn Command>, PgError> {
    Ok(match cmd {
        AdminCommand::ShowPool(name) => match name.as_str() {
            "pool_nodes" => Box::new(nodes::ShowNodes),
            "pool_version" => Box::new(version::ShowVersion),
            "pool_processes" => Box::new(processes::ShowProcesses),
            "pool_pools" => Box::new(pools::ShowPools),
            "pool_status" => Box::new(status::ShowStatus),
            "pool_backend_stats" => Box::new(backend_stats::ShowBackendStats),
            "pool_health_check_stats" => Box::new(health_check_stats::ShowHealthCheckStats),
            "pool_cache" => Box::new(cache::ShowCache),
            other => {
                return Err(PgError::error(
                    "42704",
                    format!("unrecognized configuration parameter \"{other}\""),
                ))
            }
        },
        AdminCommand::PgpoolShow(name) => Box::new(pgpool_show::PgpoolShow(name.clone())),
        AdminCommand::PgpoolSet(name, value) => Box::new(pgpool_set::PgpoolSet {
            name: name.clone(),
            value: Some(value.clone()),
        }),
        AdminCommand::PgpoolReset(name) => Box::new(pgpool_set::PgpoolSet {
            name: name.clone(),
            value: None,
        }),
        AdminCommand::ExplainRoute(_) => Box::new(explain::ExplainRoute),
    })
}
