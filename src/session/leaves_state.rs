//! Whether a request may leave session state on its backend that the next client must not
//! inherit: only what provably leaves nothing lets a connection skip `reset_query_list`.

use std::sync::Arc;

use super::request::Request;
use crate::protocol::{decode_parse, tag};
use crate::router::{Statement, StmtClass, StmtKind};

/// Whether running `req` (whose executed statements are `stmts`) may leave session state on
/// the backend that the next client must not inherit: settings, prepared statements,
/// cursors, LISTEN, temp tables, or anything a function might do. Only what provably leaves
/// nothing is clean — plain reads and INSERT/UPDATE/DELETE calling no function beyond the
/// known side-effect-free built-ins, transaction control, unnamed extended statements — so a
/// session made only of those returns its connection to the cache without a reset.
///
/// `statements_shared`: named statements stay on the connection for the next client
/// (transaction pooling), so they leave nothing it must not find.
///
/// `builtins_safe` says whether the primary's catalog has no VOLATILE function named like a
/// built-in of the "safe" table (a user's overload such as `public.abs(text)` may set
/// anything); while it is not known, calls under those names count as leaving state. Asked
/// only when the answer matters.
pub fn leaves_state(
    req: &Request,
    stmts: &[Arc<Statement>],
    statements_shared: bool,
    builtins_safe: impl FnOnce() -> bool,
) -> bool {
    leaves(req, stmts, statements_shared, false)
        && (!builtins_safe() || leaves(req, stmts, statements_shared, true))
}

fn leaves(
    req: &Request,
    stmts: &[Arc<Statement>],
    statements_shared: bool,
    trust_builtins: bool,
) -> bool {
    let stmt_leaves_state = |s: &Arc<Statement>| stmt_leaves_state(s, trust_builtins);
    match req {
        Request::Copy(_) => false,
        Request::FunctionCall(_) | Request::Terminate => true,
        Request::Simple(_) => stmts.is_empty() || stmts.iter().any(stmt_leaves_state),
        Request::Extended { frames, .. } => {
            let executes = frames.iter().filter(|f| f.tag == tag::EXECUTE).count();
            // A named statement persists; an Execute the router could not attribute
            // (a portal bound earlier) runs something unknown.
            let named = !statements_shared
                && frames.iter().any(|f| {
                    f.tag == tag::PARSE
                        && decode_parse(&f.body).map_or(true, |p| !p.name.is_empty())
                });
            named || executes != stmts.len() || stmts.iter().any(stmt_leaves_state)
        }
    }
}

fn stmt_leaves_state(s: &Statement, trust_builtins: bool) -> bool {
    *s.memo.leaves_state[usize::from(trust_builtins)]
        .get_or_init(|| compute_leaves_state(s, trust_builtins))
}

/// A call under a built-in "safe" name leaves nothing only if `trust_builtins`.
fn safe_builtin(name: &str, trust_builtins: bool) -> bool {
    trust_builtins && crate::router::builtin_volatility(name) == Some(false)
}

fn compute_leaves_state(s: &Statement, trust_builtins: bool) -> bool {
    let clean_kind = match &s.kind {
        StmtKind::Read => true,
        // Plain INSERT / UPDATE / DELETE; what they call is checked below with the rest.
        StmtKind::Write => matches!(
            s.class,
            StmtClass::Insert | StmtClass::Update | StmtClass::Delete
        ),
        StmtKind::Begin { .. }
        | StmtKind::Commit
        | StmtKind::Rollback
        | StmtKind::Savepoint
        | StmtKind::Release
        | StmtKind::RollbackToSavepoint
        | StmtKind::Empty => true,
        _ => false,
    };
    !clean_kind
        || s.multi
        || !s.creates_temp.is_empty()
        || s.functions.iter().any(|f| !safe_builtin(f, trust_builtins))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{self, Frame};
    use crate::router::{Classifier, ClassifyOptions};
    use bytes::{Bytes, BytesMut};

    #[test]
    fn only_statements_that_provably_leave_nothing_are_clean() {
        let classifier = Classifier::new(ClassifyOptions::default());
        // (sql, leaves state once the catalog said the built-in names are safe)
        let cases = [
            ("select abalance from pgbench_accounts where aid = 1", false),
            ("SELECT count(*), max(v) FROM t", false),
            ("insert into t values (1)", false),
            ("update t set v = v + 1 where id = 2", false),
            ("delete from t", false),
            ("begin", false),
            ("commit", false),
            ("rollback", false),
            ("savepoint a", false),
            ("", false),
            ("set work_mem = '1MB'", true),
            ("select set_config('work_mem', '1MB', false)", true),
            ("select pg_advisory_lock(1)", true),
            ("select nextval('s')", true),
            ("select my_function()", true),
            ("insert into t values (my_function())", true),
            ("insert into t (a, b) values (1, lower('X'))", false),
            ("insert into s.t (a) values (1), (2)", false),
            (
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
                 VALUES (1, 2, 3, -5, CURRENT_TIMESTAMP)",
                false,
            ),
            ("update t set v = (v + 1) where id in (1, 2)", false),
            ("update t set v = nextval('s')", true),
            // Types and syntax are no calls; a call anywhere in the statement is one.
            (
                "update t set v = cast(v as numeric(10, 2)), w = w::varchar(8)",
                false,
            ),
            ("update t set (a, b) = row(1, 2)", false),
            ("insert into t values (1) returning my_function(a)", true),
            (
                "insert into t values (1) on conflict (a) do update set a = f(1)",
                true,
            ),
            ("delete from t where id = any(f())", true),
            ("insert into t select * from \"F\"(1)", true),
            ("update t set v = 'unterminated", true),
            ("do $$ begin perform 1; end $$", true),
            ("declare c cursor with hold for select 1", true),
            ("listen x", true),
            ("prepare p as select 1", true),
            ("create temp table x(v int)", true),
            ("select 1 into temp x", true),
            ("select 1; select 2", true),
            ("create table x(v int)", true),
            ("load 'auto_explain'", true),
            ("discard all", true),
            ("not even sql", true),
        ];
        for (sql, dirty) in cases {
            let mut body = BytesMut::new();
            protocol::query(&mut body, sql);
            let frame = Frame::new(tag::QUERY, Bytes::copy_from_slice(&body[5..]));
            let stmts = [classifier.classify(sql)];
            let req = Request::Simple(frame);
            assert_eq!(leaves_state(&req, &stmts, false, || true), dirty, "{sql}");
            // Not known yet (or a user overloaded one): a built-in name is no proof.
            let strict = dirty || calls_a_builtin(sql);
            assert_eq!(
                leaves_state(&req, &stmts, false, || false),
                strict,
                "unknown: {sql}"
            );
        }
    }

    /// Whether a case of the table above calls a built-in of the "safe" table.
    fn calls_a_builtin(sql: &str) -> bool {
        ["count(", "max(", "lower("]
            .iter()
            .any(|f| sql.to_ascii_lowercase().contains(f))
    }
}
