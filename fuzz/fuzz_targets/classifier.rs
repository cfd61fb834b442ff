//! The SQL classifier and routing policy on arbitrary text. Two properties:
//! 1. it never panics (text comes straight from clients);
//! 2. a statement is sent to a replica only if it is a proven read: whenever sqlparser
//!    understands the text, every statement in it must be a plain query (no data-modifying
//!    CTE, no `FOR UPDATE`/`FOR SHARE`, no `SELECT INTO`), an EXPLAIN of one, `COPY … TO
//!    STDOUT` or `SHOW`. (Texts with comments are left out of this check: sqlparser's lexer
//!    and PostgreSQL's disagree about `--` inside an operator.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgpool::router::{
    classify_uncached, ClassifyOptions, RouteResult, RouterConfig, SessionRouting, Target,
};
use sqlparser::ast::{CopySource, CopyTarget, Query, SetExpr, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    // Every read goes to node 1 when it may be balanced at all.
    let cfg = RouterConfig::new(vec![0.0, 1.0]);
    for opts in [
        ClassifyOptions::default(),
        ClassifyOptions {
            allow_sql_comments: true,
            ignore_leading_white_space: false,
        },
    ] {
        let stmt = classify_uncached(sql, &opts);
        let session = SessionRouting::new(&cfg, "u", "db", "app", 0.5, &[true, true]);
        // Functions are treated as read-only here: their volatility is the catalog's call.
        let result = session.route(&stmt, &cfg, &|_| Some(false));
        if let RouteResult::Decided(d) = result {
            // sqlparser ends an operator at `--` or `/*` differently from PostgreSQL (which
            // the router follows), so texts with comments only get the no-panic check.
            let comparable = !sql.contains("--") && !sql.contains("/*");
            if comparable && matches!(d.target, Target::Node(n) if n != 0) {
                assert!(
                    !parses_as_non_read(sql),
                    "sent to a replica but sqlparser sees a write: {sql:?} ({stmt:?})"
                );
            }
        }
    }
});

/// sqlparser understands `sql` and finds something in it that is not a plain read.
fn parses_as_non_read(sql: &str) -> bool {
    let Ok(stmts) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return false;
    };
    !stmts.iter().all(proven_read)
}

fn proven_read(stmt: &Statement) -> bool {
    match stmt {
        Statement::Query(q) => query_reads(q),
        Statement::Explain { statement, .. } => proven_read(statement),
        // COPY … TO STDOUT reads (Pgpool-II balances it); COPY FROM or TO a file does not.
        Statement::Copy {
            source,
            to: true,
            target: CopyTarget::Stdout,
            ..
        } => match source {
            CopySource::Table { .. } => true,
            CopySource::Query(q) => query_reads(q),
        },
        // SHOW reads a setting; `EXPLAIN name` is another dialect's DESCRIBE (PostgreSQL
        // rejects it, wherever it runs).
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ExplainTable { .. } => true,
        _ => false,
    }
}

fn query_reads(q: &Query) -> bool {
    let ctes_read = q
        .with
        .as_ref()
        .is_none_or(|w| w.cte_tables.iter().all(|c| query_reads(&c.query)));
    ctes_read && q.locks.is_empty() && set_expr_reads(&q.body)
}

fn set_expr_reads(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => s.into.is_none(),
        SetExpr::Query(q) => query_reads(q),
        SetExpr::SetOperation { left, right, .. } => set_expr_reads(left) && set_expr_reads(right),
        SetExpr::Values(_) | SetExpr::Table(_) => true,
        _ => false,
    }
}
