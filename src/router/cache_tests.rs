//! The shape-keyed verdict cache must answer exactly what the classifier answers for the
//! text at hand, whatever text of the same shape filled the cache.

use std::sync::Arc;

use super::{
    classify_uncached, compile_pattern_list, Classifier, ClassifyOptions, Reason, RouteResult,
    RouterConfig, SessionRouting, Statement, StmtKind, Target,
};

fn cfg() -> RouterConfig {
    RouterConfig::new(vec![0.0, 1.0])
}

/// Everything but the text.
fn verdict(s: &Statement) -> Statement {
    Statement {
        text: Arc::from(""),
        ..s.clone()
    }
}

/// `sql` through a classifier that has seen `warm` (twice: the cache admits a text at its
/// second sighting) must get the uncached verdict, and a text good for every reader.
fn check(classifier: &Classifier, warm: &str, sql: &str, cfg: &RouterConfig) -> Arc<Statement> {
    classifier.classify_for(warm, cfg);
    classifier.classify_for(warm, cfg);
    let got = classifier.classify_for(sql, cfg);
    let want = classify_uncached(sql, &classifier.options());
    assert_eq!(verdict(&got), verdict(&want), "{sql:?} after {warm:?}");
    let text_read = !cfg.primary_routing_query_patterns.is_empty()
        || matches!(
            got.kind,
            StmtKind::SessionSet { .. } | StmtKind::Prepare { .. } | StmtKind::Admin(_)
        );
    if text_read {
        assert_eq!(&*got.text, sql, "{sql:?} after {warm:?}");
    }
    let exact = classifier.classify(sql);
    assert_eq!(&*exact.text, sql);
    assert_eq!(verdict(&exact), verdict(&want));
    got
}

fn shares(warm: &str, sql: &str) -> bool {
    let classifier = Classifier::new(ClassifyOptions::default());
    let cached = {
        check(&classifier, warm, warm, &cfg());
        classifier.classify_for(warm, &cfg())
    };
    let got = check(&classifier, warm, sql, &cfg());
    Arc::ptr_eq(&cached, &got)
}

#[test]
fn same_shape_with_other_literals_shares_the_cached_verdict() {
    let cases = [
        (
            "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 12;",
        ),
        (
            "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 4711;",
            "UPDATE pgbench_accounts SET abalance = abalance + -5 WHERE aid = 99;",
        ),
        (
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, -4, \
             CURRENT_TIMESTAMP);",
            "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (9, 8, 7, -6, \
             CURRENT_TIMESTAMP);",
        ),
        (
            "select \"o\".\"id\" from \"orders\" \"o\" where \"o\".\"status\" = 'shipped' \
             and \"o\".\"total\" > 10.5 limit 20",
            "select \"o\".\"id\" from \"orders\" \"o\" where \"o\".\"status\" = 'pending' \
             and \"o\".\"total\" > 7.25 limit 20",
        ),
        (
            "with x as (select a from t where b = 'q') select count(*) from x where a > 3",
            "with x as (select a from t where b = 'r') select count(*) from x where a > 4",
        ),
        (
            "select nextval('s'), lower(name) from t where id = 1",
            "select nextval('pg_class'), lower(name) from t where id = 2",
        ),
        (
            "select * from t where d = date '2024-01-01'",
            "select * from t where d = date '1999-12-31'",
        ),
        (
            "/*NO LOAD BALANCE*/ select 1",
            "/*NO LOAD BALANCE*/ select 2",
        ),
        (
            "select cast(a as varchar(255)) from t",
            "select cast(a as varchar(12)) from t",
        ),
        ("commit", "commit"),
        (
            "begin isolation level serializable",
            "begin isolation level serializable",
        ),
    ];
    for (warm, sql) in cases {
        assert!(shares(warm, sql), "{sql:?} after {warm:?}");
    }
}

#[test]
fn texts_whose_verdict_reads_a_literal_never_share_one() {
    let cases = [
        // Comment hints and the first-character rule.
        (
            "select a from t where id = 1",
            "/*NO LOAD BALANCE*/ select a from t where id = 2",
        ),
        ("select 1", "-- c\nselect 2"),
        // SET: the value changes the effect, and the text is replayed on other backends.
        (
            "SET transaction_read_only = 'on'",
            "SET transaction_read_only = 'off'",
        ),
        (
            "set default_transaction_isolation = 'read committed'",
            "set default_transaction_isolation = 'serializable'",
        ),
        (
            "set statement_timeout = 1000",
            "set statement_timeout = 2000",
        ),
        ("set application_name = 'a'", "set application_name = 'b'"),
        // Admin commands carry values.
        (
            "PGPOOL SET client_idle_limit = 5",
            "PGPOOL SET client_idle_limit = 6",
        ),
        (
            "pgpool explain route select 1",
            "pgpool explain route select 2",
        ),
        // EXPLAIN options are read from the text, also when nested in COPY.
        (
            "explain (analyze 0) insert into t values (1)",
            "explain (analyze 1) insert into t values (1)",
        ),
        (
            "explain (analyze 'off') delete from t",
            "explain (analyze 'on') delete from t",
        ),
        (
            "copy (explain (analyze 0) insert into t values (1)) to stdout",
            "copy (explain (analyze 1) insert into t values (1)) to stdout",
        ),
        // PREPARE keeps its body (and its text).
        ("prepare p as select 1", "prepare p as select 2"),
        ("prepare transaction 'a'", "prepare transaction 'b'"),
        // Names: quoting and case are part of the shape.
        (
            "select * from \"Foo\" where id = 1",
            "select * from foo where id = 2",
        ),
        (
            "select * from foo where id = 1",
            "select * from \"foo\" where id = 2",
        ),
        // sqlparser takes these string literals as names.
        (
            "select * from 'x' where a = 1",
            "select * from 'pg_class' where a = 1",
        ),
        (
            "with 'x' as (select 1) select * from pg_class",
            "with 'pg_class' as (select 1) select * from pg_class",
        ),
        // Literal forms that stay in the shape.
        (
            "select * from t where a = E'x'",
            "select * from t where a = E'y'",
        ),
        (
            "select * from t where a = E'\\''",
            "select * from t where a = 'x'",
        ),
        (
            "do $$begin insert into t values (1); end$$",
            "do $$begin null; end$$",
        ),
        ("select $$a$$ from t", "select $q$b$q$ from t"),
        ("select 'it''s' from t", "select 'its' from t"),
        // Numbers followed by letters (PostgreSQL before 15 reads `0into` as `0 into`).
        ("select 0into t1", "select 1into t1"),
        ("select 1 into t1", "select 0into t1"),
        ("select 0x1F from t", "select 0x2F from t"),
        ("select 1e5 from t", "select 2e5 from t"),
        // sqlparser reads some integers as u64: one past its range, or a decimal, fails.
        (
            "select cast(a as varchar(255)) from t",
            "select cast(a as varchar(12345678901234567890)) from t",
        ),
        (
            "select cast(a as varchar(12)) from t",
            "select cast(a as varchar(1.5)) from t",
        ),
        // Several statements.
        ("select 1; select 2", "select 1; delete from t"),
        (
            "select 1; delete from t where a = 1",
            "select 1; delete from t where a = 2",
        ),
        // Unterminated quotes and comments.
        ("select 'abc", "select 'abd"),
        ("select 1 /* x", "select 2 /* x"),
        ("select \"a", "select \"b"),
    ];
    for (warm, sql) in cases {
        assert!(!shares(warm, sql), "{sql:?} after {warm:?}");
    }
}

#[test]
fn pattern_list_sees_the_literals_of_the_text_being_routed() {
    let mut cfg = cfg();
    cfg.primary_routing_query_patterns =
        compile_pattern_list("SELECT .* WHERE aid = 42\\;").unwrap_or_default();
    assert_eq!(cfg.primary_routing_query_patterns.len(), 1);
    let classifier = Classifier::new(ClassifyOptions::default());
    let session = SessionRouting::new(&cfg, "u", "db", "app", 0.5, &[true, true]);
    let route = |sql: &str| match session
        .route(&classifier.classify_for(sql, &cfg), &cfg, &|_| Some(false))
    {
        RouteResult::Decided(d) => (d.target, d.reason),
        other => panic!("{sql}: {other:?}"),
    };
    let seven = "SELECT abalance FROM pgbench_accounts WHERE aid = 7;";
    let answer = "SELECT abalance FROM pgbench_accounts WHERE aid = 42;";
    for _ in 0..3 {
        assert_eq!(route(seven), (Target::Node(1), Reason::LoadBalance));
    }
    assert_eq!(route(answer), (Target::Primary, Reason::Pattern));
    assert_eq!(route(seven), (Target::Node(1), Reason::LoadBalance));
    check(&classifier, seven, answer, &cfg);
}

#[test]
fn exact_classify_returns_the_callers_text() {
    let classifier = Classifier::new(ClassifyOptions::default());
    for n in 0..5 {
        let sql = format!("select a from t where id = {n}");
        assert_eq!(&*classifier.classify(&sql).text, sql);
        assert_eq!(classifier.classify_for(&sql, &cfg()).text.len(), sql.len());
    }
}

#[test]
fn one_off_texts_are_not_cached_until_seen_again() {
    let classifier = Classifier::new(ClassifyOptions::default());
    let sql = "select a from t where id = 1";
    let first = classifier.classify_for(sql, &cfg());
    let second = classifier.classify_for(sql, &cfg());
    let third = classifier.classify_for(sql, &cfg());
    assert!(!Arc::ptr_eq(&first, &second));
    assert!(Arc::ptr_eq(&second, &third));
}

#[test]
fn eviction_keeps_verdicts_right() {
    let classifier = Classifier::with_capacity(ClassifyOptions::default(), 16);
    for round in 0..3 {
        for i in 0..200 {
            let sql = match i % 4 {
                0 => format!("select c{i} from t where id = {round}"),
                1 => format!("insert into t{i} values ({round})"),
                2 => format!("set x{i} = {round}"),
                _ => format!("select c{i} from t; delete from t where id = {round}"),
            };
            check(&classifier, &sql, &sql, &cfg());
        }
    }
}
