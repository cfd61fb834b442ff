//! Statement sequences → target and reason of each step: the session state machine of spec
//! 5.3–5.5 under every `disable_load_balance_on_write` mode, transactions, savepoints,
//! failures, temp tables and prepared statements. Each step is routed, then reported back
//! with the ReadyForQuery status PostgreSQL would send.

use super::*;

const P: Target = Target::Primary;
const R: Target = Target::Node(1);
const ALL: Target = Target::All;

/// One step: the SQL (a leading `!` means it fails on the server), where it must go, why.
type Step = (&'static str, Target, Reason);

/// The status byte after `sql` ran (`ok` or not) in a session whose status was `cur`.
fn status_after(cur: u8, sql: &str, ok: bool) -> u8 {
    let s = sql.to_ascii_lowercase();
    let in_txn = matches!(cur, b'T' | b'E');
    if s.starts_with("rollback to") {
        return if ok { b'T' } else { b'E' };
    }
    if s.starts_with("commit") || s.starts_with("rollback") || s.starts_with("end") {
        return b'I';
    }
    if !ok {
        return if in_txn { b'E' } else { b'I' };
    }
    if s.starts_with("begin") || s.starts_with("start transaction") {
        return b'T';
    }
    cur
}

/// The primary's catalog: a user overloaded `abs` with a VOLATILE function, `ul` is an
/// unlogged table; every other name is a logged table or a non-volatile function.
fn catalog(k: CatalogKey<'_>) -> Option<bool> {
    Some(matches!(
        k,
        CatalogKey::Function("abs") | CatalogKey::Relation("ul")
    ))
}

fn run(mode: DisableLbOnWrite, steps: &[Step]) {
    let mut cfg = RouterConfig::new(vec![0.0, 1.0]);
    cfg.disable_lb_on_write = mode;
    let classifier = Classifier::new(ClassifyOptions::default());
    let mut session = SessionRouting::new(&cfg, "u", "db", "app", 0.5, &[true, true]);
    let mut status = b'I';
    for (i, (step, target, reason)) in steps.iter().enumerate() {
        let (sql, ok) = match step.strip_prefix('!') {
            Some(sql) => (sql, false),
            None => (*step, true),
        };
        let stmt = classifier.classify(sql);
        let got = match session.route(&stmt, &cfg, &catalog) {
            RouteResult::Decided(d) => (d.target, d.reason),
            other => panic!("{mode:?} step {i} {sql}: {other:?}"),
        };
        assert_eq!(got, (*target, *reason), "{mode:?} step {i}: {sql}");
        status = status_after(status, sql, ok);
        session.after(&stmt, &got.0, ok, status, &catalog);
    }
}

use DisableLbOnWrite::{Always, Off, TransTransaction, Transaction};
use Reason::*;

#[test]
fn transaction_mode_reads_from_the_primary_after_a_write_in_the_same_transaction() {
    run(
        Transaction,
        &[
            ("begin", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
            ("select * from t where id = 2", R, LoadBalance),
            ("update t set v = 1", P, Write),
            ("select * from t", P, InWriteTransaction),
            ("commit", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
            ("begin", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
            ("rollback", ALL, TransactionControl),
            // An autocommit write does not affect later reads in this mode.
            ("insert into t values (1)", P, Write),
            ("select * from t", R, LoadBalance),
        ],
    );
}

#[test]
fn trans_transaction_mode_keeps_later_transactions_on_the_primary() {
    run(
        TransTransaction,
        &[
            ("begin", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
            ("update t set v = 1", P, Write),
            ("commit", ALL, TransactionControl),
            ("begin", ALL, TransactionControl),
            ("select * from t", P, InWriteTransaction),
            ("commit", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
        ],
    );
}

#[test]
fn always_mode_keeps_every_read_after_any_write_on_the_primary() {
    run(
        Always,
        &[
            ("select * from t", R, LoadBalance),
            ("insert into t values (1)", P, Write),
            ("select * from t", P, WroteInSession),
            ("begin", ALL, TransactionControl),
            ("select * from t", P, WroteInSession),
            ("commit", ALL, TransactionControl),
            ("select * from u", P, WroteInSession),
        ],
    );
}

#[test]
fn off_mode_balances_autocommit_reads_after_a_write_but_not_the_transactions_own() {
    run(
        Off,
        &[
            ("insert into t values (1)", P, Write),
            ("select * from t", R, LoadBalance),
            ("begin", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
            ("update t set v = 1", P, Write),
            // The replica cannot see this transaction's uncommitted update.
            ("select * from t", P, InWriteTransaction),
            ("commit", ALL, TransactionControl),
            ("begin", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
            ("commit", ALL, TransactionControl),
        ],
    );
}

#[test]
fn dml_adaptive_mode_tracks_written_tables_inside_a_transaction() {
    run(
        DisableLbOnWrite::DmlAdaptive,
        &[
            ("begin", ALL, TransactionControl),
            ("update t set v = 1", P, Write),
            ("select * from t", P, Reason::DmlAdaptive),
            ("select * from u", R, LoadBalance),
            ("commit", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
            // Autocommit writes are not tracked.
            ("update t set v = 2", P, Write),
            ("begin", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
            ("commit", ALL, TransactionControl),
        ],
    );
}

#[test]
fn a_failed_transaction_goes_to_the_primary_until_it_ends() {
    run(
        Transaction,
        &[
            ("begin", ALL, TransactionControl),
            ("!select 1/0 from t", R, LoadBalance),
            ("select * from t", P, FailedTransaction),
            ("rollback", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
        ],
    );
}

#[test]
fn rollback_to_savepoint_does_not_undo_the_write_flag() {
    run(
        Transaction,
        &[
            ("begin", ALL, TransactionControl),
            ("savepoint a", ALL, TransactionControl),
            ("update t set v = 1", P, Write),
            ("rollback to a", ALL, TransactionControl),
            ("select * from t", P, InWriteTransaction),
            ("release a", ALL, TransactionControl),
            ("commit", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
        ],
    );
}

#[test]
fn serializable_and_read_write_transactions_read_from_the_primary() {
    run(
        Transaction,
        &[
            (
                "begin isolation level serializable",
                ALL,
                TransactionControl,
            ),
            ("select * from t", P, Serializable),
            ("commit", ALL, TransactionControl),
            ("begin", ALL, TransactionControl),
            ("set transaction read write", P, ReadWriteTransaction),
            ("select * from t", P, ReadWriteTransaction),
            ("commit", ALL, TransactionControl),
            (
                "set session characteristics as transaction isolation level serializable",
                P,
                Serializable,
            ),
            ("begin", ALL, TransactionControl),
            ("select * from t", P, Serializable),
            ("commit", ALL, TransactionControl),
            ("select * from t", R, LoadBalance),
        ],
    );
}

#[test]
fn temp_tables_and_prepared_statements_follow_where_they_live() {
    run(
        Transaction,
        &[
            ("create temp table tt (v int)", P, Write),
            ("select * from tt", P, TempTable),
            ("select * from pg_temp.tt", P, TempTable),
            ("select * from t", R, LoadBalance),
            ("prepare q as select * from t", ALL, SessionCommand),
            ("execute q", R, LoadBalance),
            ("prepare w as insert into t values (1)", P, SessionCommand),
            ("execute w", P, Write),
            ("prepare tq as select * from tt", P, SessionCommand),
            ("execute tq", P, TempTable),
            ("deallocate q", ALL, SessionCommand),
            ("deallocate w", P, SessionCommand),
            ("execute q", P, UnknownPrepared),
            ("discard temp", ALL, SessionCommand),
            ("select * from tt", R, LoadBalance),
            // A temp table shadows an unlogged one of the same name (step 5 before 6).
            ("select * from ul", P, UnloggedTable),
            ("create temp table ul (v int)", P, Write),
            ("select * from ul", P, TempTable),
        ],
    );
}

#[test]
fn a_call_the_catalog_calls_volatile_is_a_write_even_under_a_built_in_name() {
    run(
        Always,
        &[
            ("select lower('x')", R, LoadBalance),
            ("select * from t", R, LoadBalance),
            ("select abs('q'::text)", P, VolatileFunction),
            ("select * from t", P, WroteInSession),
        ],
    );
}

#[test]
fn a_temp_table_made_by_any_statement_of_a_multi_statement_text_is_known() {
    run(
        Transaction,
        &[
            (
                "show work_mem; create temp table tmp (id int)",
                P,
                MultiStatement,
            ),
            ("select count(*) from tmp", P, TempTable),
            ("select count(*) from t", R, LoadBalance),
        ],
    );
}
