//! One statement, a fresh autocommit session, a configuration → target and reason: a line
//! per policy decision (spec 5.2–5.3, 5.7–5.8), as `PGPOOL EXPLAIN ROUTE` reports them.

use super::*;

/// Primary 0, one replica (node 1) that takes every balanced read.
fn cfg() -> RouterConfig {
    RouterConfig::new(vec![0.0, 1.0])
}

/// Functions the "catalog" knows: `my_writer` is VOLATILE, `my_reader` is STABLE.
fn catalog(f: &str) -> Option<bool> {
    match f {
        "my_writer" | "public.my_writer" => Some(true),
        "my_reader" => Some(false),
        _ => None,
    }
}

fn route_with(cfg: &RouterConfig, sql: &str) -> RouteResult {
    let classifier = Classifier::new(ClassifyOptions::default());
    let session = SessionRouting::new(cfg, "alice", "app", "psql", 0.5, &[true, true]);
    session.route(&classifier.classify_for(sql, cfg), cfg, &catalog)
}

fn decided(cfg: &RouterConfig, sql: &str) -> (Target, Reason) {
    match route_with(cfg, sql) {
        RouteResult::Decided(d) => (d.target, d.reason),
        other => panic!("{sql}: {other:?}"),
    }
}

const P: Target = Target::Primary;
const R: Target = Target::Node(1);
const ALL: Target = Target::All;

#[test]
fn each_statement_kind_has_its_target_and_reason() {
    use Reason::*;
    let cases: &[(&str, Target, Reason)] = &[
        ("select * from t where id = 1", R, LoadBalance),
        ("SELECT 1", R, LoadBalance),
        ("with x as (select 1) select * from x", R, LoadBalance),
        ("table t", R, LoadBalance),
        ("show work_mem", R, LoadBalance),
        ("select my_reader(1)", R, LoadBalance),
        ("select lower(name) from t", R, LoadBalance),
        ("insert into t values (1)", P, Write),
        ("update t set v = 1", P, Write),
        ("delete from t", P, Write),
        ("create table x (v int)", P, Write),
        ("select * into x from t", P, Write),
        ("select * from t for update", P, Write),
        (
            "with d as (delete from t returning *) select * from d",
            P,
            Write,
        ),
        ("copy t from stdin", P, Write),
        ("select my_writer()", P, VolatileFunction),
        ("select public.my_writer()", P, VolatileFunction),
        ("select nextval('s')", P, VolatileFunction),
        ("select setval('s', 1)", P, VolatileFunction),
        ("/*NO LOAD BALANCE*/ select 1", P, HintComment),
        ("-- note\nselect 1", P, HintComment),
        ("select 1; select 2", P, MultiStatement),
        ("select * from pg_class", P, SystemCatalog),
        ("select * from pg_catalog.pg_proc", P, SystemCatalog),
        ("select * from information_schema.tables", P, SystemCatalog),
        ("declare c cursor for select 1", P, Cursor),
        ("fetch 1 from c", P, Cursor),
        ("listen chan", P, Listen),
        // EXPLAIN fails the first-character rule before anything else looks at it.
        ("explain select 1", P, HintComment),
        ("copy t to '/tmp/x'", P, CopyToFile),
        ("begin", ALL, TransactionControl),
        ("start transaction read only", ALL, TransactionControl),
        ("commit", ALL, TransactionControl),
        ("rollback", ALL, TransactionControl),
        ("savepoint a", ALL, TransactionControl),
        ("release a", ALL, TransactionControl),
        ("rollback to a", ALL, TransactionControl),
        ("prepare transaction 'x'", P, TwoPhase),
        ("commit prepared 'x'", P, TwoPhase),
        ("set work_mem = '8MB'", ALL, SessionCommand),
        ("reset all", ALL, SessionCommand),
        ("discard all", ALL, SessionCommand),
        ("deallocate all", ALL, SessionCommand),
        ("set transaction read write", P, ReadWriteTransaction),
        ("set transaction_read_only = off", P, ReadWriteTransaction),
        (
            "set transaction isolation level serializable",
            P,
            Serializable,
        ),
        ("prepare q as select 1", ALL, SessionCommand),
        ("prepare w as insert into t values (1)", P, SessionCommand),
        ("execute never_prepared", P, UnknownPrepared),
        ("deallocate never_prepared", P, UnknownPrepared),
        ("not even sql", P, Unparseable),
    ];
    for (sql, target, reason) in cases {
        assert_eq!(decided(&cfg(), sql), (*target, *reason), "{sql}");
    }
}

#[test]
fn unknown_functions_are_looked_up_before_routing() {
    for (sql, funcs) in [
        ("select f_unknown(1)", vec!["f_unknown"]),
        ("select s.g(1), f_unknown(2)", vec!["s.g", "f_unknown"]),
    ] {
        match route_with(&cfg(), sql) {
            RouteResult::NeedVolatility(mut got) => {
                got.sort();
                let mut want: Vec<String> = funcs.iter().map(|s| s.to_string()).collect();
                want.sort();
                assert_eq!(got, want, "{sql}");
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
}

#[test]
fn configuration_changes_the_decision() {
    use Reason::*;
    type Tweak = fn(&mut RouterConfig);
    let cases: &[(Tweak, &str, Target, Reason)] = &[
        (
            |c| c.load_balance_mode = false,
            "select 1",
            P,
            LoadBalanceOff,
        ),
        (|c| c.weights = vec![1.0, 0.0], "select 1", P, Weight),
        (
            |c| c.write_function_list = compile_function_list("my_reader").unwrap_or_default(),
            "select my_reader(1)",
            P,
            VolatileFunction,
        ),
        (
            |c| c.write_function_list = compile_function_list("nextval").unwrap_or_default(),
            "select my_writer()",
            R,
            LoadBalance,
        ),
        (
            |c| c.read_only_function_list = compile_function_list("lower").unwrap_or_default(),
            "select upper('x')",
            P,
            VolatileFunction,
        ),
        (
            |c| c.read_only_function_list = compile_function_list("lower").unwrap_or_default(),
            "select lower('x')",
            R,
            LoadBalance,
        ),
        (
            |c| {
                c.primary_routing_query_patterns =
                    compile_pattern_list("select .* from t;").unwrap_or_default()
            },
            "select v from t",
            P,
            Pattern,
        ),
        (
            |c| {
                c.primary_routing_query_patterns =
                    compile_pattern_list("select .* from t;").unwrap_or_default()
            },
            "select v from u",
            R,
            LoadBalance,
        ),
        (
            |c| c.database_redirect = parse_redirect_list("app:primary").unwrap_or_default(),
            "select 1",
            P,
            Redirect,
        ),
        (
            |c| c.user_redirect = parse_redirect_list("alice:1").unwrap_or_default(),
            "select 1",
            R,
            Redirect,
        ),
    ];
    for (tweak, sql, target, reason) in cases {
        let mut c = cfg();
        tweak(&mut c);
        assert_eq!(decided(&c, sql), (*target, *reason), "{sql}");
    }
}

#[test]
fn explain_route_explains_the_text_as_sent_comments_included() {
    let classifier = Classifier::new(ClassifyOptions::default());
    for (sql, inner) in [
        (
            "PGPOOL EXPLAIN ROUTE /* hi */ select 1",
            "/* hi */ select 1",
        ),
        ("pgpool explain route select 1", "select 1"),
        ("PGPOOL EXPLAIN ROUTE -- c\nselect 1", "-- c\nselect 1"),
        ("PGPOOL EXPLAIN ROUTE", ""),
    ] {
        let stmt = classifier.classify(sql);
        assert_eq!(
            stmt.kind,
            StmtKind::Admin(AdminCommand::ExplainRoute(inner.to_string())),
            "{sql}"
        );
    }
    assert_eq!(
        decided(&cfg(), "/* hi */ select 1"),
        (P, Reason::HintComment)
    );
}
