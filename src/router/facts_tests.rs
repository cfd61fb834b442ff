//! The facts the classifier reports for the session beyond routing: the functions a
//! data-modifying statement calls, and the state a text leaves past its transaction.

use super::{classify_uncached, ClassifyOptions, Outlives, Statement, StmtKind};

fn classify(sql: &str) -> Statement {
    classify_uncached(sql, &ClassifyOptions::default())
}

#[test]
fn data_changes_list_the_functions_they_call() {
    let cases: &[(&str, &[&str])] = &[
        ("insert into t values (1)", &[]),
        ("insert into t (a, b) values (1, lower('X'))", &["lower"]),
        ("insert into s.t (a) values (1), (2)", &[]),
        ("INSERT INTO \"T\" (a) VALUES (f(1))", &["f"]),
        ("insert into t as x (a) values (1)", &[]),
        (
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
             VALUES (1, 2, 3, -5, CURRENT_TIMESTAMP)",
            &[],
        ),
        ("insert into t values (my_function())", &["my_function"]),
        ("insert into t select * from \"F\"(1)", &["F"]),
        ("insert into t (select g())", &["g"]),
        ("insert into t values (1) returning h(a), a", &["h"]),
        (
            "insert into t values (1) on conflict (id) do update set v = k(excluded.v)",
            &["k"],
        ),
        ("update t set v = v + 1 where id = 2", &[]),
        ("update t set v = (v + 1) where id in (1, 2)", &[]),
        ("update t set v = nextval('s')", &["nextval"]),
        ("update t set (a, b) = row(1, 2)", &[]),
        (
            "UPDATE t SET v = Pg_Catalog.Upper(v) WHERE id = 1",
            &["pg_catalog.upper"],
        ),
        ("update t set v = cast(x as numeric(10, 2))", &[]),
        ("update t set v = x::varchar(10)", &[]),
        (
            "update only t set v = 1 from u where u.id = t.id and m(u.x)",
            &["m"],
        ),
        ("delete from t", &[]),
        ("delete from t where id = any(f())", &["f"]),
        (
            "delete from t where id in (select id from u where p(u.id))",
            &["p"],
        ),
        (
            "delete from t using u where t.id = u.id returning r(t.id)",
            &["r"],
        ),
        ("delete from t where exists (select 1)", &[]),
        // Strings, comments and dollar quotes are no calls.
        ("insert into t values ('f(1)', $$g(2)$$, $q$h()$q$)", &[]),
        ("update t /* f(1) */ set v = 1 -- g(2)\n where id = 1", &[]),
        ("insert into t values (E'\\'x(1)')", &[]),
        // A data-modifying CTE (sqlparser's path) lists them too.
        (
            "WITH d AS (DELETE FROM t WHERE f(id) RETURNING id) SELECT g(id) FROM d",
            &["f", "g"],
        ),
        (
            "with x as (select 1 as a) insert into t select s(a) from x",
            &["s"],
        ),
    ];
    for (sql, want) in cases {
        let s = classify(sql);
        assert_eq!(s.kind, StmtKind::Write, "{sql}");
        let mut got: Vec<&str> = s.functions.iter().map(String::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, *want, "{sql}");
    }
}

#[test]
fn state_that_outlives_the_transaction_is_reported() {
    use Outlives::*;
    let cases = [
        ("LISTEN chan", Some(Listen)),
        ("/* c */ listen \"Chan\"", Some(Listen)),
        ("UNLISTEN chan", None),
        ("SELECT pg_advisory_lock(1)", Some(AdvisoryLock)),
        (
            "SELECT pg_catalog.pg_try_advisory_lock(1)",
            Some(AdvisoryLock),
        ),
        ("SELECT pg_advisory_lock_shared(1)", Some(AdvisoryLock)),
        ("SELECT pg_advisory_xact_lock(1)", None),
        ("SELECT pg_try_advisory_xact_lock(1)", None),
        ("SELECT pg_advisory_unlock(1)", None),
        ("SELECT 'pg_advisory_lock(1)'", None),
        ("SELECT \"pg_advisory_lock\"", None),
        // In a data change, or in a later statement of the text.
        (
            "INSERT INTO t SELECT 1 WHERE pg_try_advisory_lock(2)",
            Some(AdvisoryLock),
        ),
        (
            "update t set v = 1 where pg_advisory_lock(v) is not null",
            Some(AdvisoryLock),
        ),
        ("SELECT 1; SELECT pg_advisory_lock(1)", Some(AdvisoryLock)),
        (
            "EXPLAIN ANALYZE SELECT pg_advisory_lock(1)",
            Some(AdvisoryLock),
        ),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", Some(HoldCursor)),
        (
            "declare c binary no scroll cursor with hold for select 1",
            Some(HoldCursor),
        ),
        ("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", None),
        ("DECLARE c CURSOR FOR SELECT 1", None),
        (
            "DECLARE c CURSOR FOR SELECT 'with hold', $$WITH HOLD$$",
            None,
        ),
        (
            "DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold",
            None,
        ),
        ("CREATE TEMP TABLE t (a int)", Some(TempTable)),
        (
            "create temporary table t (a int) on commit delete rows",
            Some(TempTable),
        ),
        ("CREATE TEMP TABLE t (a int) ON COMMIT DROP", None),
        ("CREATE TEMP TABLE t /* x */ (a int) on commit drop", None),
        (
            "CREATE TEMP TABLE t (a int); CREATE TEMP TABLE u (a int) ON COMMIT DROP",
            Some(TempTable),
        ),
        ("CREATE TABLE pg_temp.t (a int)", Some(TempTable)),
        ("SELECT 1 INTO TEMP t", Some(TempTable)),
        ("CREATE TABLE t (a int)", None),
        ("CREATE TABLE \"temp\" (a int)", None),
        ("PREPARE p AS SELECT 1", Some(SqlPrepare)),
        (
            "prepare p (int) as insert into t values ($1)",
            Some(SqlPrepare),
        ),
        ("PREPARE TRANSACTION 'x'", None),
        ("SET SESSION AUTHORIZATION bob", Some(SessionAuthorization)),
        (
            "set session_authorization = bob",
            Some(SessionAuthorization),
        ),
        ("SET search_path TO a", None),
        ("SET SESSION search_path TO a", None),
        ("SET application_name = 'session authorization'", None),
        ("SELECT 1; LISTEN chan", Some(Listen)),
        ("LISTEN a; PREPARE p AS SELECT 1", Some(Listen)),
        ("LISTEN a; SELECT pg_advisory_lock(1)", Some(AdvisoryLock)),
        ("CREATE TEMP TABLE t (a int); LISTEN a", Some(Listen)),
        // An admin command among other statements is sent on, so what follows counts.
        ("PGPOOL SHOW all; LISTEN a", Some(Listen)),
        ("SELECT 1", None),
        ("INSERT INTO t VALUES (1)", None),
        ("listen 'unterminated", None),
    ];
    for (sql, want) in cases {
        assert_eq!(classify(sql).outlives, want, "{sql}");
    }
}
