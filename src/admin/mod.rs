//! Commands the proxy answers itself (`SHOW pool_*`, `PGPOOL SHOW/SET/RESET`, our `PGPOOL
//! EXPLAIN ROUTE`), and the two other admin surfaces: the PCP server and the metrics/health
//! HTTP server. Each SQL command is one file under `cmd/` behind the [`Command`] trait; the
//! node, session and counter data they show comes from one place ([`view`],
//! [`crate::context::registry`], [`crate::stats`]) so SQL, PCP and `/metrics` cannot disagree.

mod cmd;
pub(crate) mod extended;
mod hooks;
pub mod http;
pub(crate) mod metrics;
pub mod pcp;
pub(crate) mod view;

use bytes::BytesMut;

use crate::config::Config;
use crate::context::Context;
use crate::protocol::{self, PgError};
use crate::router::AdminCommand;

pub use crate::context::registry::{
    NewSession, ProcStatus, SessionEntry, SessionInfo, SessionRegistry,
};
pub use cmd::{health_check_row, pools_rows, status_items, POOLS_COLUMNS};
pub use hooks::{auth_failed, count_sent, note_backend, note_backend_closed, session_started};

/// Pgpool-II version line this proxy claims (pgpool2_exporter requires >= 4.2.0).
pub const POOL_VERSION: &str = "4.3.5 (pgpool-rs)";

/// A command's result: a row set, or only a command tag (`SET`, `RESET`).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    Tag(&'static str),
}

impl Answer {
    pub fn rows(columns: &[&str], rows: Vec<Vec<String>>) -> Answer {
        Answer::Rows {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        }
    }
}

/// One admin command: given the shared context and this session's admin state, its answer
/// or the error the client gets (the session continues either way).
pub trait Command {
    fn execute(&self, ctx: &Context, session: &mut SessionAdmin) -> Result<Answer, PgError>;
}

/// Where `PGPOOL EXPLAIN ROUTE` says a statement would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explained {
    pub node: usize,
    pub reason: crate::router::Reason,
}

/// A session's admin state: its registry entry, `PGPOOL SET` values, what the session
/// reports about itself, and the admin statements it prepared (extended protocol).
#[derive(Debug, Default)]
pub struct SessionAdmin {
    pub entry: Option<SessionEntry>,
    /// This session's load-balance node (`load_balance_node` column).
    pub lb_node: usize,
    /// `PGPOOL SET` values in force for this session, in order.
    pub overrides: Vec<(String, String)>,
    /// Set by the session just before an `ExplainRoute` is answered.
    pub explain: Option<Explained>,
    pub extended: extended::AdminStatements,
}

impl SessionAdmin {
    pub fn new(entry: SessionEntry) -> SessionAdmin {
        SessionAdmin {
            entry: Some(entry),
            ..SessionAdmin::default()
        }
    }

    /// The configuration as this session sees it: the shared one plus its `PGPOOL SET`s.
    pub fn config(&self, ctx: &Context) -> std::sync::Arc<Config> {
        let shared = ctx.config();
        if self.overrides.is_empty() {
            return shared;
        }
        let mut c = (*shared).clone();
        for (k, v) in &self.overrides {
            // Values were checked when set; a failure here leaves the shared value.
            let _ = c.set(k, v);
        }
        std::sync::Arc::new(c)
    }

    /// The `pool_pid` of this session (0 when unregistered).
    pub fn pid(&self) -> i32 {
        self.entry.as_ref().map_or(0, |e| e.info.pid)
    }

    /// Records the session's progress for `SHOW pool_processes`.
    pub fn set_status(&self, s: ProcStatus) {
        if let Some(e) = &self.entry {
            e.info.set_status(s);
        }
    }
}

/// The command object for `cmd`.
fn command_for(cmd: &AdminCommand) -> Result<Box<dyn Command>, PgError> {
    cmd::lookup(cmd)
}

/// Asks the session's router where a statement would go (for `PGPOOL EXPLAIN ROUTE`).
pub type Explainer<'a> = &'a mut dyn FnMut(&str) -> Explained;

/// Runs `cmd` for this session.
pub fn execute(
    ctx: &Context,
    cmd: &AdminCommand,
    session: &mut SessionAdmin,
    explain: Explainer<'_>,
) -> Result<Answer, PgError> {
    if let AdminCommand::ExplainRoute(sql) = cmd {
        session.explain = Some(explain(sql));
    }
    command_for(cmd)?.execute(ctx, session)
}

/// Writes the complete simple-protocol answer to `cmd`, ending with ReadyForQuery(`status`).
pub fn answer(
    ctx: &Context,
    cmd: &AdminCommand,
    session: &mut SessionAdmin,
    explain: Explainer<'_>,
    out: &mut BytesMut,
    status: u8,
) {
    match execute(ctx, cmd, session, explain) {
        Ok(Answer::Rows {
            columns,
            rows: data,
        }) => {
            let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
            rows(out, &cols, &data);
        }
        Ok(Answer::Tag(tag)) => protocol::command_complete(out, tag),
        Err(e) => e.encode(out),
    }
    protocol::ready_for_query(out, status);
}

/// RowDescription, DataRows and CommandComplete for a text result.
pub fn rows(out: &mut BytesMut, columns: &[&str], data: &[Vec<String>]) {
    protocol::row_description_text(out, columns);
    for r in data {
        protocol::data_row(out, r);
    }
    protocol::command_complete(out, &format!("SELECT {}", data.len()));
}
