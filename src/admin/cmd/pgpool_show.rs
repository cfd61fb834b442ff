//! `PGPOOL SHOW <param> | <group> | ALL` (spec 7.3), with this session's `PGPOOL SET`s.

use crate::admin::{Answer, Command, SessionAdmin};
use crate::context::Context;
use crate::protocol::PgError;

pub struct PgpoolShow(pub String);

/// Parameter groups Pgpool-II shows as item/value/description when named without an index.
const GROUPS: [&str; 5] = [
    "backend_hostname",
    "backend_port",
    "backend_weight",
    "backend_flag",
    "backend_application_name",
];

impl Command for PgpoolShow {
    fn execute(&self, ctx: &Context, s: &mut SessionAdmin) -> Result<Answer, PgError> {
        let name = self.0.as_str();
        let cfg = s.config(ctx);
        let columns = ["item", "value", "description"];
        if name == "all" || GROUPS.contains(&name) {
            let items = cfg
                .items()
                .into_iter()
                .filter(|(n, _, _)| {
                    name == "all"
                        || n.strip_prefix(name).is_some_and(|id| {
                            !id.is_empty() && id.chars().all(|c| c.is_ascii_digit())
                        })
                })
                .map(|(n, v, d)| vec![n, v, d])
                .collect();
            return Ok(Answer::rows(&columns, items));
        }
        match cfg.show(name) {
            Some(v) => Ok(Answer::rows(&[name], vec![vec![v]])),
            None => Err(PgError::error(
                "42704",
                format!("config variable \"{name}\" not found"),
            )),
        }
    }
}
