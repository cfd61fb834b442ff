//! INSERT / UPDATE / DELETE / MERGE / TRUNCATE: a write to the primary, whatever it calls.
//! The target tables are kept for `dml_adaptive`, the functions called for the session's
//! reset skip and transaction pooling (a function may leave session state behind).

use super::cursor::Cur;
use super::lexer::TokKind;
use super::select::NOT_FUNCTIONS;
use super::statement::{push_unique, Facts, StmtKind};

/// Words of a data-modifying statement followed by `(` that are syntax, beyond those of a
/// SELECT (`VALUES (…)`, `SET (a, b) = …`, `ON CONFLICT (…)`, MERGE's `INSERT (…)`).
const DML_NOT_FUNCTIONS: &[&str] = &[
    "values",
    "set",
    "returning",
    "select",
    "conflict",
    "lateral",
    "materialized",
    "group",
    "insert",
];

/// Classify a data-modifying statement; `c.pos` is just after `word`.
pub(crate) fn dml(c: &mut Cur, word: &str) -> Facts {
    let mut relations = Vec::new();
    match word {
        "insert" | "merge" => {
            c.eat_kw("into");
        }
        "delete" => {
            c.eat_kw("from");
        }
        "truncate" => {
            c.eat_kw("table");
        }
        _ => {}
    }
    loop {
        c.eat_kw("only");
        match c.qualified_name() {
            Some(n) => relations.push(n),
            None => break,
        }
        if word != "truncate" {
            break;
        }
        if c.tok(c.pos).is_some_and(|t| c.src(t) == "*") {
            c.pos += 1;
        }
        if !c.is_punct(c.pos, b',') {
            break;
        }
        c.pos += 1;
    }
    // After the target: `INSERT INTO t (a, b)` names columns, not a function `t`.
    Facts {
        relations,
        functions: called_functions(c),
        ..Facts::kind(StmtKind::Write)
    }
}

/// Every name followed by `(` from `c.pos` on, but syntax and types (after `::` or `AS`):
/// VALUES lists, SET and WHERE expressions, sub-selects, RETURNING alike.
fn called_functions(c: &mut Cur) -> Vec<String> {
    let mut functions = Vec::new();
    while let Some(t) = c.tok(c.pos) {
        let start = c.pos;
        let end = name_end(c, start);
        if end == start || !c.is_punct(end, b'(') {
            c.pos = end.max(start + 1);
            continue;
        }
        let is_type = start > 0
            && c.tok(start - 1)
                .is_some_and(|p| p.kind == TokKind::Cast || c.kw_at(start - 1, "as"));
        let Some(name) = c.qualified_name() else {
            c.pos = start + 1;
            continue;
        };
        let syntax = t.kind == TokKind::Word
            && c.pos == start + 1
            && (NOT_FUNCTIONS.contains(&name.as_str())
                || DML_NOT_FUNCTIONS.contains(&name.as_str()));
        if !is_type && !syntax {
            push_unique(&mut functions, name);
        }
    }
    functions
}

/// Where the (possibly qualified) name at `i` ends; `i` if there is none. Found before any
/// name is built, so only calls cost an allocation.
fn name_end(c: &Cur, i: usize) -> usize {
    let is_ident = |j: usize| {
        c.tok(j)
            .is_some_and(|t| matches!(t.kind, TokKind::Word | TokKind::QuotedIdent))
    };
    if !is_ident(i) {
        return i;
    }
    let mut end = i + 1;
    while c.is_punct(end, b'.') && is_ident(end + 1) {
        end += 2;
    }
    end
}
