//! Commands the proxy answers itself: `SHOW pool_*`, `PGPOOL SHOW/SET/RESET`, and our
//! `PGPOOL EXPLAIN ROUTE`.

use bytes::BytesMut;

use crate::protocol::{self, PgError};
use crate::router::AdminCommand;
use crate::server::Context;

/// Pgpool-II version line this proxy claims (pgpool2_exporter requires >= 4.2.0).
pub const POOL_VERSION: &str = "4.3.5 (pgpool-rs)";

/// Writes the complete answer to `cmd`, ending with ReadyForQuery(`status`).
pub fn answer(ctx: &Context, cmd: &AdminCommand, out: &mut BytesMut, status: u8) {
    match cmd {
        AdminCommand::ShowPool(name) if name == "pool_version" => {
            rows(out, &["pool_version"], &[vec![POOL_VERSION.to_string()]]);
        }
        AdminCommand::PgpoolShow(name) => {
            let cfg = ctx.config();
            if name == "all" {
                let items: Vec<Vec<String>> = cfg
                    .items()
                    .into_iter()
                    .map(|(n, v, d)| vec![n, v, d])
                    .collect();
                rows(out, &["item", "value", "description"], &items);
            } else {
                match cfg.show(name) {
                    Some(v) => rows(out, &[name.as_str()], &[vec![v]]),
                    None => {
                        PgError::error("42704", format!("config variable \"{name}\" not found"))
                            .encode(out)
                    }
                }
            }
        }
        other => {
            PgError::error("0A000", format!("{} is not supported yet", describe(other))).encode(out)
        }
    }
    protocol::ready_for_query(out, status);
}

fn describe(cmd: &AdminCommand) -> String {
    match cmd {
        AdminCommand::ShowPool(n) => format!("SHOW {n}"),
        AdminCommand::PgpoolShow(n) => format!("PGPOOL SHOW {n}"),
        AdminCommand::PgpoolSet(n, _) => format!("PGPOOL SET {n}"),
        AdminCommand::PgpoolReset(n) => format!("PGPOOL RESET {n}"),
        AdminCommand::ExplainRoute(_) => "PGPOOL EXPLAIN ROUTE".to_string(),
    }
}

/// RowDescription, DataRows and CommandComplete for a text result.
pub fn rows(out: &mut BytesMut, columns: &[&str], data: &[Vec<String>]) {
    protocol::row_description_text(out, columns);
    for r in data {
        protocol::data_row(out, r);
    }
    protocol::command_complete(out, &format!("SELECT {}", data.len()));
}
