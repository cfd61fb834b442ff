//! `SHOW pool_version`: the version line pgpool2_exporter parses (`^(\d+)(\.\d+)(\.\d+)?`).

use crate::admin::{Answer, Command, SessionAdmin, POOL_VERSION};
use crate::context::Context;
use crate::protocol::PgError;

pub struct ShowVersion;

impl Command for ShowVersion {
    fn execute(&self, _: &Context, _: &mut SessionAdmin) -> Result<Answer, PgError> {
        Ok(Answer::rows(
            &["pool_version"],
            vec![vec![POOL_VERSION.to_string()]],
        ))
    }
}
