//! `SHOW pool_status`: every parameter as (item, value, description), booleans as C's `%d`
//! prints them (`1`/`0`). PCP `pool_status` sends the same items.

use crate::admin::{Answer, Command, SessionAdmin};
use crate::context::Context;
use crate::protocol::PgError;

pub struct ShowStatus;

/// The items of `SHOW pool_status` for this session's view of the configuration.
pub fn status_items(ctx: &Context, s: &SessionAdmin) -> Vec<Vec<String>> {
    s.config(ctx)
        .items()
        .into_iter()
        .map(|(name, value, description)| {
            let value = match value.as_str() {
                "on" => "1".to_string(),
                "off" => "0".to_string(),
                _ => value,
            };
            vec![name, value, description]
        })
        .collect()
}

impl Command for ShowStatus {
    fn execute(&self, ctx: &Context, s: &mut SessionAdmin) -> Result<Answer, PgError> {
        Ok(Answer::rows(
            &["item", "value", "description"],
            status_items(ctx, s),
        ))
    }
}
