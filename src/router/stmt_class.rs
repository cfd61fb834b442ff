//! Pgpool-II's statement classes for the per-node statement counters: a cheap look at
//! the first keyword, independent of routing (a class is counted for every statement sent).

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

impl StmtClass {
    /// The class of a statement text, from its first keyword (comments and parentheses
    /// skipped). `WITH` counts as a select: a data-modifying CTE is rare and still a query.
    pub fn of(sql: &str) -> StmtClass {
        let word = first_keyword(sql);
        let is = |k: &str| word.eq_ignore_ascii_case(k);
        if is("select") || is("with") || is("values") || is("table") {
            StmtClass::Select
        } else if is("insert") {
            StmtClass::Insert
        } else if is("update") {
            StmtClass::Update
        } else if is("delete") {
            StmtClass::Delete
        } else if [
            "create", "alter", "drop", "truncate", "comment", "grant", "revoke", "reindex",
            "cluster", "security", "import", "refresh",
        ]
        .iter()
        .any(|k| is(k))
        {
            StmtClass::Ddl
        } else {
            StmtClass::Other
        }
    }
}

/// The first keyword of `sql` as written, skipping blanks, `--`/`/* */` comments and `(`.
fn first_keyword(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let end = rest
        .bytes()
        .position(|b| !b.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    &rest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_classes_follow_the_first_keyword() {
        let table = [
            ("SELECT 1", StmtClass::Select),
            ("  /* c */ (select 1)", StmtClass::Select),
            (
                "-- x\nWITH a AS (SELECT 1) SELECT * FROM a",
                StmtClass::Select,
            ),
            ("insert into t values (1)", StmtClass::Insert),
            ("UPDATE t SET a = 1", StmtClass::Update),
            ("delete from t", StmtClass::Delete),
            ("CREATE TABLE t (a int)", StmtClass::Ddl),
            ("drop table t", StmtClass::Ddl),
            ("BEGIN", StmtClass::Other),
            ("SET x = 1", StmtClass::Other),
            ("", StmtClass::Other),
            ("/* unterminated", StmtClass::Other),
        ];
        for (sql, want) in table {
            assert_eq!(StmtClass::of(sql), want, "{sql}");
        }
    }
}
