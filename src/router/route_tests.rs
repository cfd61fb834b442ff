//! One statement, a fresh autocommit session, a configuration → target and reason: a line
//! per policy decision (spec 5.2–5.3, 5.7–5.8), as `PGPOOL EXPLAIN ROUTE` reports them.
//! The README's routing table lists the same rules: keep the two in step.

use super::*;

/// Primary 0, one replica (node 1) that takes every balanced read.
fn cfg() -> RouterConfig {
    RouterConfig::new(vec![0.0, 1.0])
}

fn redirects(list: &str) -> Vec<RedirectRule> {
    crate::config::parse_redirect_list(list)
        .map(|l| l.to_vec())
        .unwrap_or_default()
}

/// What the "primary's catalog" says: `my_writer` is VOLATILE, `my_reader` STABLE, the
/// built-ins as in `pg_proc`, except that a user overloaded `abs` with a VOLATILE
/// `public.abs(text)`; relations `u` and `s.u` are unlogged, `new_t` was never asked about.
fn catalog(k: CatalogKey<'_>) -> Option<bool> {
    match k {
        CatalogKey::Function("my_writer" | "public.my_writer" | "abs") => Some(true),
        CatalogKey::Function("my_reader") => Some(false),
        CatalogKey::Function(f) => builtin_volatility(f),
        CatalogKey::Relation("u" | "s.u") => Some(true),
        CatalogKey::Relation("new_t") => None,
        CatalogKey::Relation(_) => Some(false),
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
        // A user's VOLATILE overload of a built-in name: the catalog decides, not the name.
        ("select abs('q'::text)", P, VolatileFunction),
        ("select abs(-1)", P, VolatileFunction),
        ("select count(*) from t", R, LoadBalance),
        ("select * from u", P, UnloggedTable),
        ("select * from s.u", P, UnloggedTable),
        ("select * from t join u using (id)", P, UnloggedTable),
        ("select * from other.u", R, LoadBalance),
        // Step 6 (unlogged) comes before step 8 (functions).
        ("select my_writer() from u", P, UnloggedTable),
        ("select * from pg_class", P, SystemCatalog),
        // set_config(…, false) alone with literals is session state, like SET.
        (
            "select set_config('search_path', 's2, public', false)",
            ALL,
            SessionCommand,
        ),
        (
            "SELECT pg_catalog.set_config('work_mem', '8MB', 'off')",
            ALL,
            SessionCommand,
        ),
        (
            "select set_config('transaction_read_only', 'off', false)",
            P,
            ReadWriteTransaction,
        ),
        (
            "select set_config('work_mem', '8MB', true)",
            P,
            VolatileFunction,
        ),
        (
            "select set_config('work_mem', current_setting('x'), false)",
            P,
            VolatileFunction,
        ),
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
fn unknown_catalog_facts_are_looked_up_before_routing() {
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        ("select f_unknown(1)", &["f_unknown"], &[]),
        ("select s.g(1), f_unknown(2)", &["f_unknown", "s.g"], &[]),
        ("select * from new_t", &[], &["new_t"]),
        // One round trip: the functions come with the relations.
        ("select f_unknown(v) from new_t", &["f_unknown"], &["new_t"]),
        ("select my_reader(v), abs(v) from new_t", &[], &["new_t"]),
    ];
    for (sql, funcs, rels) in cases {
        match route_with(&cfg(), sql) {
            RouteResult::NeedCatalog {
                mut functions,
                relations,
            } => {
                functions.sort();
                assert_eq!(
                    (functions, relations),
                    (to_vec(funcs), to_vec(rels)),
                    "{sql}"
                );
            }
            other => panic!("{sql}: {other:?}"),
        }
    }
}

fn to_vec(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Static facts the session acts on: `pins_session` keeps the session on the primary,
/// `changes_catalog` drops the cached catalog facts.
#[test]
fn set_config_and_ddl_facts() {
    let cases: &[(&str, bool, bool)] = &[
        (
            "select set_config('search_path', 's2', false)",
            false,
            false,
        ),
        ("select set_config('work_mem', '8MB', true)", false, false),
        ("select set_config('work_mem', $1, false)", true, false),
        (
            "select set_config('work_mem', '1MB', false) as x",
            true,
            false,
        ),
        ("select v, set_config('a.b', v, false) from t", true, false),
        (
            "select set_config('work_mem', '1MB', false); select 1",
            true,
            false,
        ),
        ("set work_mem = '1MB'; select 1", true, false),
        ("set work_mem = '1MB'", false, false),
        ("select abs(1)", false, false),
        ("create table x (v int)", false, true),
        ("create temp table x (v int)", false, false),
        ("alter table x set unlogged", false, true),
        ("drop function f", false, true),
        ("create extension hstore", false, true),
        ("do $$ begin end $$", false, true),
        ("insert into t values (1); drop table t", false, true),
        ("insert into t values (1)", false, false),
        ("select 1", false, false),
    ];
    let classifier = Classifier::new(ClassifyOptions::default());
    for (sql, pins, ddl) in cases {
        let s = classifier.classify(sql);
        assert_eq!((s.pins_session, s.changes_catalog), (*pins, *ddl), "{sql}");
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
            |c| c.check_unlogged_table = false,
            "select * from u",
            R,
            LoadBalance,
        ),
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
            "select v from w",
            R,
            LoadBalance,
        ),
        (
            |c| c.database_redirect = redirects("app:primary"),
            "select 1",
            P,
            Redirect,
        ),
        (
            |c| c.user_redirect = redirects("alice:1"),
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

/// A set_config verdict depends on its literals (the setting's text is replayed, `'f'` and
/// `'t'` differ): texts of one shape must not share it.
#[test]
fn set_config_verdicts_are_never_shared_by_shape() {
    let classifier = Classifier::new(ClassifyOptions::default());
    let cases = [
        ("select set_config('a.b', '1', 'f')", true),
        ("select set_config('a.b', '2', 't')", false),
        ("select set_config('work_mem', '3MB', 'off')", true),
    ];
    for _ in 0..3 {
        for (sql, session_state) in cases {
            let s = classifier.classify_for(sql, &cfg());
            assert_eq!(&*s.text, sql);
            let is_set = matches!(s.kind, StmtKind::SessionSet { .. });
            assert_eq!(is_set, session_state, "{sql}");
        }
    }
}
