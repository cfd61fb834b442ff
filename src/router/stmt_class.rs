//! Pgpool-II's statement classes for the per-node statement counters: the class of a text is
//! that of its first word, independent of routing (a class is counted for every statement
//! sent). The classifier sets it from the tokens it lexes anyway.

use super::lexer::{TokKind, Token};

/// Pgpool-II's statement classes (`SHOW pool_backend_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StmtClass {
    Select,
    Insert,
    Update,
    Delete,
    Ddl,
    Other,
}

/// First words of the DDL class.
const DDL_WORDS: &[&str] = &[
    "create", "alter", "drop", "truncate", "comment", "grant", "revoke", "reindex", "cluster",
    "security", "import", "refresh",
];

impl StmtClass {
    /// The class of `text` (lexed into `tokens`) from its first word, opening parentheses
    /// skipped. `WITH` counts as a select: a data-modifying CTE is rare and still a query.
    pub(crate) fn of_tokens(text: &str, tokens: &[Token]) -> StmtClass {
        let Some(first) = tokens.iter().find(|t| t.kind != TokKind::Punct(b'(')) else {
            return StmtClass::Other;
        };
        if first.kind != TokKind::Word {
            return StmtClass::Other;
        }
        let word = text.get(first.start..first.end).unwrap_or("");
        // Only the letters count (`select1` is a select, as Pgpool-II reads it).
        let letters = word
            .bytes()
            .position(|b| !b.is_ascii_alphabetic())
            .unwrap_or(word.len());
        let word = word.get(..letters).unwrap_or("");
        let is = |k: &str| word.eq_ignore_ascii_case(k);
        if is("select") || is("with") || is("values") || is("table") {
            StmtClass::Select
        } else if is("insert") {
            StmtClass::Insert
        } else if is("update") {
            StmtClass::Update
        } else if is("delete") {
            StmtClass::Delete
        } else if DDL_WORDS.iter().any(|k| is(k)) {
            StmtClass::Ddl
        } else {
            StmtClass::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{classify_uncached, ClassifyOptions};

    #[test]
    fn statement_classes_follow_the_first_keyword() {
        let table = [
            ("SELECT 1", StmtClass::Select),
            ("  /* c */ (select 1)", StmtClass::Select),
            (
                "-- x\nWITH a AS (SELECT 1) SELECT * FROM a",
                StmtClass::Select,
            ),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                StmtClass::Select,
            ),
            ("insert into t values (1)", StmtClass::Insert),
            ("UPDATE t SET a = 1", StmtClass::Update),
            ("update t set v = 'unterminated", StmtClass::Update),
            ("delete from t", StmtClass::Delete),
            ("CREATE TABLE t (a int)", StmtClass::Ddl),
            ("drop table t", StmtClass::Ddl),
            ("truncate t", StmtClass::Ddl),
            ("BEGIN", StmtClass::Other),
            ("SET x = 1", StmtClass::Other),
            ("PREPARE p AS INSERT INTO t VALUES (1)", StmtClass::Other),
            ("\"select\" 1", StmtClass::Other),
            (
                "/* /* nested */ select */ update t set a = 1",
                StmtClass::Update,
            ),
            ("select 1; insert into t values (1)", StmtClass::Select),
            ("", StmtClass::Other),
            ("/* unterminated", StmtClass::Other),
        ];
        for (sql, want) in table {
            let got = classify_uncached(sql, &ClassifyOptions::default()).class;
            assert_eq!(got, want, "{sql}");
        }
    }
}
