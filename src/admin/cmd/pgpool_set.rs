//! `PGPOOL SET <param> = <value>` and `PGPOOL RESET <param> | ALL`: session-context
//! parameters only (spec 7.3); the values last until the client disconnects.

use crate::admin::{Answer, Command, SessionAdmin};
use crate::config::{context, is_session_settable};
use crate::context::Context;
use crate::protocol::PgError;

/// `value: None` is a RESET.
pub struct PgpoolSet {
    pub name: String,
    pub value: Option<String>,
}

fn check_settable(name: &str) -> Result<(), PgError> {
    if context(name).is_none() {
        return Err(PgError::error(
            "42704",
            format!("config variable \"{name}\" not found"),
        ));
    }
    if !is_session_settable(name) {
        return Err(PgError::error(
            "55P02",
            format!("invalid Context, value for parameter \"{name}\" cannot be changed"),
        ));
    }
    Ok(())
}

impl Command for PgpoolSet {
    fn execute(&self, ctx: &Context, s: &mut SessionAdmin) -> Result<Answer, PgError> {
        let name = self.name.as_str();
        match &self.value {
            None if name == "all" => {
                s.overrides.clear();
                Ok(Answer::Tag("RESET"))
            }
            None => {
                check_settable(name)?;
                s.overrides.retain(|(n, _)| n != name);
                Ok(Answer::Tag("SET"))
            }
            Some(value) => {
                check_settable(name)?;
                // Validate against a copy: a bad value changes nothing.
                let mut probe = (*s.config(ctx)).clone();
                probe
                    .set(name, value)
                    .map_err(|e| PgError::error("22023", e.to_string()))?;
                s.overrides.retain(|(n, _)| n != name);
                s.overrides.push((name.to_string(), value.clone()));
                Ok(Answer::Tag("SET"))
            }
        }
    }
}
