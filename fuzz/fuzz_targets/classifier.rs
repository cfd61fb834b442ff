//! The SQL classifier and routing policy on arbitrary text. Three properties:
//! 1. it never panics (text comes straight from clients);
//! 2. a statement is sent to a replica only if it is a proven read: whenever sqlparser
//!    understands the text, every statement in it must be a plain query (no data-modifying
//!    CTE, no `FOR UPDATE`/`FOR SHARE`, no `SELECT INTO`), an EXPLAIN of one, `COPY … TO
//!    STDOUT` or `SHOW`. (Texts with comments are left out of this check: sqlparser's lexer
//!    and PostgreSQL's disagree about `--` inside an operator.)
//! 3. the verdict cache (keyed by statement shape, shared by every input of the run) gives
//!    each text exactly its uncached verdict: the text itself and copies of it with its
//!    literals' values changed, which share its shape whenever the cache may share one.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use pgpool::router::{
    classify_uncached, Classifier, ClassifyOptions, RouteResult, RouterConfig, SessionRouting,
    Statement as Verdict, StmtKind, Target,
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
    cache_agrees(sql, &cfg);
    for opts in options() {
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

fn options() -> [ClassifyOptions; 2] {
    [
        ClassifyOptions::default(),
        ClassifyOptions {
            allow_sql_comments: true,
            ignore_leading_white_space: false,
        },
    ]
}

/// One classifier per option set, kept across inputs so that texts of earlier inputs are in
/// the cache (small, so that eviction runs too).
fn classifiers() -> &'static [Classifier; 2] {
    static CLASSIFIERS: OnceLock<[Classifier; 2]> = OnceLock::new();
    CLASSIFIERS.get_or_init(|| options().map(|o| Classifier::with_capacity(o, 512)))
}

/// Property 3 for `sql` and for copies of it with other literal values.
fn cache_agrees(sql: &str, cfg: &RouterConfig) {
    let mut texts = vec![sql.to_string()];
    for (i, value) in VALUES.iter().enumerate() {
        texts.push(with_literals(sql, i, value));
    }
    for classifier in classifiers() {
        // Twice each: the cache admits a text at its second sighting.
        for text in texts.iter().chain(texts.iter()) {
            let want = classify_uncached(text, &classifier.options());
            let shared = classifier.classify_for(text, cfg);
            assert_eq!(verdict(&shared), verdict(&want), "shared verdict of {text:?}");
            let text_read = matches!(
                want.kind,
                StmtKind::SessionSet { .. } | StmtKind::Prepare { .. } | StmtKind::Admin(_)
            );
            assert!(!text_read || *shared.text == **text, "text of {text:?}");
            assert_eq!(shared.class, want.class, "{text:?}");
            let exact = classifier.classify(text);
            assert_eq!(*exact.text, **text);
            assert_eq!(verdict(&exact), verdict(&want), "exact verdict of {text:?}");
        }
    }
}

/// Everything but the text.
fn verdict(s: &Verdict) -> Verdict {
    Verdict {
        text: Arc::from(""),
        ..s.clone()
    }
}

/// Literal values to put in place of others: names of catalogs and settings, words the
/// classifier reads elsewhere, quoting and comment characters.
const VALUES: &[&str] = &[
    "0",
    "1",
    "42.5",
    "off",
    "serializable",
    "pg_class",
    "pg_catalog.pg_class",
    "into t",
    "x; delete from t",
    "*/ select",
    "a\nb",
    "it''s",
    "\\",
    "",
];

/// `sql` with the contents of its `'…'` strings and the digits of its numbers replaced
/// (by a rough scan: the cache must be right for any text, this only makes texts that share
/// a shape with `sql` likely).
fn with_literals(sql: &str, seed: usize, value: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    let mut prev: Option<char> = None;
    let mut n = seed;
    while let Some((_, c)) = chars.next() {
        if c == '\'' {
            out.push('\'');
            while let Some((_, d)) = chars.next() {
                if d == '\'' {
                    break;
                }
            }
            out.push_str(if n % 2 == 0 { value } else { "v" });
            out.push('\'');
            n += 1;
        } else if c.is_ascii_digit() && !prev.is_some_and(|p| p.is_alphanumeric() || p == '_') {
            while chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
                chars.next();
            }
            let digits = ["7", "0", "123456789", "05"];
            out.push_str(digits[n % digits.len()]);
            n += 1;
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}
