//! Admin commands through the extended protocol (drivers that always prepare: JDBC,
//! tokio-postgres, pgx). A batch that parses an admin statement, or binds/executes one
//! prepared earlier, is answered here in full and never reaches a backend. Columns are
//! described as `text` (OID 25) so drivers can decode them; the simple protocol keeps
//! Pgpool-II's OID 0.

use std::collections::HashMap;

use bytes::BytesMut;

use super::{execute, Answer, Explainer, SessionAdmin};
use crate::context::Context;
use crate::protocol::{
    self, decode_bind, decode_execute, decode_parse, decode_target, tag, Frame, PgError, Target,
};
use crate::router::{AdminCommand, Classifier, StmtKind};

const TEXT_OID: i32 = 25;

/// Admin statements and portals a session prepared, by name.
#[derive(Debug, Default)]
pub struct AdminStatements {
    statements: HashMap<String, AdminCommand>,
    portals: HashMap<String, AdminCommand>,
}

fn admin_of(classifier: &Classifier, sql: &str) -> Option<AdminCommand> {
    if !may_be_admin(sql) {
        return None;
    }
    match &classifier.classify(sql).kind {
        StmtKind::Admin(cmd) => Some(cmd.clone()),
        _ => None,
    }
}

/// False only for a text that cannot be an admin command: one statement whose first word
/// is neither `SHOW` nor `PGPOOL`. Every Parse is asked, and the router classifies the
/// statement again anyway; this spares the common case the classifier's pass here.
fn may_be_admin(sql: &str) -> bool {
    let text = sql.trim_start();
    let word_len = text
        .bytes()
        .take_while(|b| b.is_ascii_alphabetic() || *b == b'_')
        .count();
    let word = text.get(..word_len).unwrap_or("");
    word.is_empty()
        || sql.contains(';')
        || word.eq_ignore_ascii_case("show")
        || word.eq_ignore_ascii_case("pgpool")
}

impl AdminStatements {
    /// Whether this batch is an admin batch. A batch that is not has its statement and
    /// portal names forgotten here, since the backend now owns those names.
    pub fn claims(&mut self, frames: &[Frame], classifier: &Classifier) -> bool {
        if self.statements.is_empty()
            && self.portals.is_empty()
            && !frames.iter().any(|f| f.tag == tag::PARSE)
        {
            return false; // nothing of ours to bind or execute, nothing to forget
        }
        // Names this batch gives to backend statements and portals shadow admin ones.
        let mut parsed: Vec<&str> = Vec::new();
        let mut bound: Vec<&str> = Vec::new();
        let mut claimed = false;
        for f in frames {
            match f.tag {
                tag::PARSE => match decode_parse(&f.body) {
                    Ok(p) if admin_of(classifier, p.query).is_some() => claimed = true,
                    Ok(p) => parsed.push(p.name),
                    Err(_) => {}
                },
                tag::BIND => match decode_bind(&f.body) {
                    Ok(b)
                        if self.statements.contains_key(b.statement)
                            && !parsed.contains(&b.statement) =>
                    {
                        claimed = true
                    }
                    Ok(b) => bound.push(b.portal),
                    Err(_) => {}
                },
                tag::EXECUTE => {
                    if let Ok((p, _)) = decode_execute(&f.body) {
                        claimed |= self.portals.contains_key(p) && !bound.contains(&p);
                    }
                }
                _ => {}
            }
        }
        if !claimed {
            self.forget(frames);
        }
        claimed
    }

    fn forget(&mut self, frames: &[Frame]) {
        for f in frames {
            match f.tag {
                tag::PARSE => {
                    if let Ok(p) = decode_parse(&f.body) {
                        self.statements.remove(p.name);
                    }
                }
                tag::BIND => {
                    if let Ok(b) = decode_bind(&f.body) {
                        self.portals.remove(b.portal);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Answers an admin batch; after an error the rest up to Sync is skipped, as a server does.
pub fn answer_batch(
    ctx: &Context,
    frames: &[Frame],
    session: &mut SessionAdmin,
    explain: Explainer<'_>,
    out: &mut BytesMut,
    status: u8,
) {
    let mut failed = false;
    for f in frames {
        if f.tag == tag::SYNC {
            protocol::ready_for_query(out, status);
            failed = false;
            continue;
        }
        if failed {
            continue;
        }
        if let Err(e) = one_message(ctx, f, session, explain, out) {
            e.encode(out);
            failed = true;
        }
    }
}

fn one_message(
    ctx: &Context,
    f: &Frame,
    s: &mut SessionAdmin,
    explain: Explainer<'_>,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    let bad = |e: crate::protocol::ProtocolError| e.to_pg_error();
    match f.tag {
        tag::PARSE => {
            let p = decode_parse(&f.body).map_err(bad)?;
            let cmd = admin_of(&ctx.classifier, p.query).ok_or_else(|| {
                PgError::error(
                    "0A000",
                    "pgpool admin commands cannot share an extended-protocol batch with other statements",
                )
            })?;
            s.extended.statements.insert(p.name.to_string(), cmd);
            protocol::parse_complete(out);
        }
        tag::BIND => {
            let b = decode_bind(&f.body).map_err(bad)?;
            let cmd = statement(s, b.statement)?;
            s.extended.portals.insert(b.portal.to_string(), cmd);
            protocol::bind_complete(out);
        }
        tag::DESCRIBE => {
            let (target, name) = decode_target(&f.body, "Describe").map_err(bad)?;
            let cmd = match target {
                Target::Statement => {
                    let cmd = statement(s, name)?;
                    protocol::parameter_description(out, 0);
                    cmd
                }
                Target::Portal => portal(s, name)?,
            };
            describe(ctx, &cmd, s, explain, out)?;
        }
        tag::EXECUTE => {
            let (name, _) = decode_execute(&f.body).map_err(bad)?;
            let cmd = portal(s, name)?;
            match execute(ctx, &cmd, s, explain)? {
                Answer::Rows { rows, .. } => {
                    for r in &rows {
                        protocol::data_row(out, r);
                    }
                    protocol::command_complete(out, &format!("SELECT {}", rows.len()));
                }
                Answer::Tag(t) => protocol::command_complete(out, t),
            }
        }
        tag::CLOSE => {
            let (target, name) = decode_target(&f.body, "Close").map_err(bad)?;
            match target {
                Target::Statement => s.extended.statements.remove(name),
                Target::Portal => s.extended.portals.remove(name),
            };
            protocol::close_complete(out);
        }
        _ => {} // Flush: everything is already in `out`
    }
    Ok(())
}

fn statement(s: &SessionAdmin, name: &str) -> Result<AdminCommand, PgError> {
    s.extended.statements.get(name).cloned().ok_or_else(|| {
        PgError::error(
            "26000",
            format!("prepared statement \"{name}\" does not exist"),
        )
    })
}

fn portal(s: &SessionAdmin, name: &str) -> Result<AdminCommand, PgError> {
    s.extended
        .portals
        .get(name)
        .cloned()
        .ok_or_else(|| PgError::error("34000", format!("portal \"{name}\" does not exist")))
}

/// RowDescription (or NoData) for `cmd`. SET/RESET describe as NoData without running.
fn describe(
    ctx: &Context,
    cmd: &AdminCommand,
    s: &mut SessionAdmin,
    explain: Explainer<'_>,
    out: &mut BytesMut,
) -> Result<(), PgError> {
    if matches!(
        cmd,
        AdminCommand::PgpoolSet(..) | AdminCommand::PgpoolReset(_)
    ) {
        protocol::no_data(out);
        return Ok(());
    }
    match execute(ctx, cmd, s, explain)? {
        Answer::Rows { columns, .. } => {
            let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
            protocol::row_description_typed(out, &cols, TEXT_OID);
        }
        Answer::Tag(_) => protocol::no_data(out),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::may_be_admin;
    use crate::router::{classify_uncached, ClassifyOptions, StmtKind};

    /// The pre-check never turns away what the classifier calls an admin command.
    #[test]
    fn may_be_admin_never_rejects_an_admin_command() {
        let texts = [
            "SHOW pool_nodes",
            "  show pool_version",
            "/* c */ SHOW pool_nodes",
            "-- c\nshow pool_pools",
            "PGPOOL SHOW ALL",
            "pgpool set statement_level_load_balance to on",
            "PGPOOL EXPLAIN ROUTE select 1",
            "show pool_nodes;",
            "SHOW/**/pool_nodes",
            "select 1",
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
            "showx pool_nodes",
            "(select 1)",
        ];
        for t in texts {
            let admin = matches!(
                classify_uncached(t, &ClassifyOptions::default()).kind,
                StmtKind::Admin(_)
            );
            assert!(!admin || may_be_admin(t), "{t:?}");
        }
        assert!(!may_be_admin(
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
        ));
        assert!(!may_be_admin("insert into t values (1)"));
        assert!(may_be_admin("SHOW pool_nodes"));
    }
}
