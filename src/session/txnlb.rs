//! Reads inside explicit transactions on the load-balance node. The router's policy says
//! which reads of a transaction may leave the primary (per `disable_load_balance_on_write`);
//! this keeps what the session must know on top of it so the client cannot tell: the
//! transaction's isolation and access mode (a snapshot cannot span two servers), the
//! statements that tie the rest of the transaction to the primary (savepoints, SET, cursors,
//! temp tables, …), and a read that failed on the replica (the primary's transaction must
//! fail too).
//!
//! A READ COMMITTED transaction's reads run on the replica in autocommit (each statement
//! takes a new snapshot either way) and the client gets its transaction's status byte (see
//! the slot's `in_client_txn`). A REPEATABLE READ READ ONLY transaction's reads run in a
//! read-only transaction of the replica's own, begun right before the first read sent there
//! and ended when the primary's transaction ends (the slot's `begin_lb_txn` / `end_lb_txn`),
//! so they share one snapshot.

use std::sync::Arc;

use crate::router::{is_set_config, Isolation, Reason, SetEffect, Statement, StmtKind};

/// Asked of the primary once per session, before its first balanced transaction: the
/// session's defaults for transactions that do not name their modes (they may come from
/// `ALTER ROLE … SET`, startup options or a SET).
pub const DEFAULTS_QUERY: &str =
    "SELECT pg_catalog.current_setting('default_transaction_isolation') \
     || '/' || pg_catalog.current_setting('default_transaction_read_only')";

/// Sent to the primary (its error dropped) when a read of the transaction failed on the
/// replica: PostgreSQL would have aborted the transaction, so the primary's must abort too.
pub const ABORT_PRIMARY: &str = "DO $pgpool_rs$BEGIN RAISE EXCEPTION \
     'a read of this transaction failed on the load-balance node'; END$pgpool_rs$";

/// The session's transaction defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    isolation: Isolation,
    read_only: bool,
}

impl Defaults {
    /// Parses the answer to [`DEFAULTS_QUERY`]; `None` for anything unexpected.
    pub fn parse(answer: &str) -> Option<Defaults> {
        let (iso, ro) = answer.split_once('/')?;
        let isolation = match iso.trim() {
            "read committed" | "read uncommitted" => Isolation::ReadCommitted,
            "repeatable read" => Isolation::RepeatableRead,
            "serializable" => Isolation::Serializable,
            _ => return None,
        };
        let read_only = match ro.trim() {
            "on" => true,
            "off" => false,
            _ => return None,
        };
        Some(Defaults {
            isolation,
            read_only,
        })
    }
}

/// The open transaction as far as balancing is concerned.
#[derive(Debug, Clone, Copy)]
struct OpenTxn {
    /// Started by a lone BEGIN the session saw (else: how it started is not known).
    known: bool,
    isolation: Option<Isolation>,
    read_only: bool,
    read_write: bool,
    /// Something tied the rest of the transaction to the primary.
    pinned: bool,
    /// A read of it went to the replica.
    replica_used: bool,
    /// The primary ran a query of the proxy's for it (see [`TxnBalance::needs_primary_query`]).
    primary_queried: bool,
}

/// The session's state for balancing reads inside transactions.
#[derive(Debug, Default)]
pub struct TxnBalance {
    /// `None`: not asked yet. `Some(None)`: asking failed (transactions stay on the primary).
    defaults: Option<Option<Defaults>>,
    txn: Option<OpenTxn>,
    /// Counts transactions: a replica transaction begun in another one must end.
    epoch: u64,
    /// A read failed on the replica: the primary's transaction must fail before the next
    /// statement reaches it.
    abort_primary: bool,
    /// The last answer said the transaction failed (`E`); the policy may not know it, when
    /// the request had no statement it could see (an Execute of an unknown portal).
    failed: bool,
}

impl TxnBalance {
    /// Whether the defaults must be asked before `stmts` (starting a transaction) run.
    pub fn needs_defaults(&self, stmts: &[Arc<Statement>]) -> bool {
        self.defaults.is_none()
            && stmts
                .iter()
                .any(|s| matches!(s.kind, StmtKind::Begin { .. }) && !s.multi)
    }

    pub fn set_defaults(&mut self, d: Option<Defaults>) {
        self.defaults = Some(d);
    }

    /// The transaction the replica's reads belong to now.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether a replica transaction begun in `epoch` is still wanted.
    pub fn replica_txn_current(&self, epoch: u64) -> bool {
        self.txn.is_some() && epoch == self.epoch
    }

    /// `None` when a read the policy balanced may run on the replica inside the open
    /// transaction; else the reason it stays on the primary.
    pub fn gate(&self, stmts: &[Arc<Statement>]) -> Option<Reason> {
        let Some(t) = self.txn else {
            return Some(Reason::InTransaction);
        };
        if self.failed {
            return Some(Reason::FailedTransaction);
        }
        if !t.known {
            return Some(Reason::InTransaction);
        }
        if t.pinned {
            return Some(Reason::TransactionPinned);
        }
        let Some(Some(d)) = self.defaults else {
            return Some(Reason::InTransaction);
        };
        if stmts.iter().any(|s| uses_transaction_time(s)) {
            return Some(Reason::TransactionTime);
        }
        match self.isolation(d) {
            Isolation::ReadCommitted => None,
            Isolation::RepeatableRead if self.read_only(d) => None,
            Isolation::RepeatableRead => Some(Reason::SnapshotTransaction),
            Isolation::Serializable => Some(Reason::Serializable),
        }
    }

    fn isolation(&self, d: Defaults) -> Isolation {
        self.txn.and_then(|t| t.isolation).unwrap_or(d.isolation)
    }

    fn read_only(&self, d: Defaults) -> bool {
        self.txn
            .is_some_and(|t| t.read_only || (!t.read_write && d.read_only))
    }

    /// Whether the replica's reads need a transaction of their own: a snapshot kept for the
    /// whole transaction (REPEATABLE READ READ ONLY). READ COMMITTED reads take a new one
    /// each, as in autocommit.
    pub fn replica_needs_txn(&self) -> bool {
        match self.defaults {
            Some(Some(d)) => self.isolation(d) != Isolation::ReadCommitted,
            _ => true,
        }
    }

    /// The BEGIN that gives the replica a transaction like the primary's (a standby refuses
    /// READ WRITE; SERIALIZABLE never gets here).
    pub fn replica_begin(&self) -> &'static str {
        let d = match self.defaults {
            Some(Some(d)) => d,
            _ => return "BEGIN READ ONLY",
        };
        match self.isolation(d) {
            Isolation::RepeatableRead | Isolation::Serializable => {
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
            }
            Isolation::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY",
        }
    }

    /// A read was sent to the replica in the open transaction.
    pub fn replica_used(&mut self) {
        if let Some(t) = self.txn.as_mut() {
            t.replica_used = true;
        }
    }

    /// Whether the primary must run a query (its answer dropped) before `stmts`: they set
    /// what PostgreSQL only accepts before a transaction's first query, and that query ran
    /// on the replica. Once per transaction.
    pub fn needs_primary_query(&mut self, stmts: &[Arc<Statement>]) -> bool {
        let Some(t) = self.txn.as_mut() else {
            return false;
        };
        let sets_modes = stmts
            .iter()
            .any(|s| matches!(s.kind, StmtKind::SessionSet { .. } | StmtKind::Begin { .. }));
        if t.replica_used && !t.primary_queried && sets_modes {
            t.primary_queried = true;
            return true;
        }
        false
    }

    /// A read of the open transaction failed off the primary (its replica died mid-answer).
    pub fn read_failed(&mut self) {
        if self.txn.is_some() {
            self.abort_primary = true;
            self.failed = true;
        }
    }

    /// Takes the pending abort of the primary's transaction.
    pub fn take_abort_primary(&mut self) -> bool {
        std::mem::take(&mut self.abort_primary)
    }

    /// A backend answered `stmts` with status `status`.
    pub fn answered(&mut self, stmts: &[Arc<Statement>], ok: bool, status: u8, on_replica: bool) {
        self.failed = status == b'E';
        if on_replica {
            if status == b'E' && self.txn.is_some() {
                self.abort_primary = true;
            }
            return;
        }
        for s in stmts {
            let txn_modes = matches!(
                s.kind,
                StmtKind::SessionSet {
                    effect: SetEffect::TxnModes { .. },
                    ..
                }
            );
            let session_set = matches!(
                s.kind,
                StmtKind::SessionSet { .. } | StmtKind::Discard { .. }
            );
            if (session_set && !txn_modes) || s.pins_session {
                // A changed default is asked again before the next transaction.
                self.defaults = None;
            }
        }
        if status == b'I' {
            if self.txn.take().is_some() {
                self.epoch += 1;
            }
            self.abort_primary = false;
            return;
        }
        let ends = stmts.iter().any(|s| {
            s.multi
                || matches!(
                    s.kind,
                    StmtKind::Commit
                        | StmtKind::Rollback
                        | StmtKind::PrepareTransaction
                        | StmtKind::FinishPrepared
                )
        });
        if self.txn.is_none() || ends {
            self.start(stmts, ok);
            return;
        }
        for s in stmts {
            self.note(s, ok);
        }
    }

    /// A transaction began with `stmts` (one request: a driver may send BEGIN in one batch
    /// with the first statements): known only when a BEGIN of its own started it.
    fn start(&mut self, stmts: &[Arc<Statement>], ok: bool) {
        self.epoch += 1;
        self.abort_primary = false;
        let begin = stmts
            .iter()
            .rposition(|s| matches!(s.kind, StmtKind::Begin { .. }))
            .filter(|_| ok && !stmts.iter().any(|s| s.multi));
        let Some(at) = begin else {
            self.txn = Some(OpenTxn {
                known: false,
                isolation: None,
                read_only: false,
                read_write: false,
                pinned: true,
                replica_used: false,
                primary_queried: false,
            });
            return;
        };
        let (isolation, read_only, read_write) = match &stmts[at].kind {
            StmtKind::Begin {
                read_only,
                isolation,
                read_write,
                ..
            } => (*isolation, *read_only, *read_write),
            _ => (None, false, false),
        };
        self.txn = Some(OpenTxn {
            known: true,
            isolation,
            read_only,
            read_write,
            pinned: false,
            replica_used: false,
            primary_queried: false,
        });
        for s in &stmts[at + 1..] {
            self.note(s, ok);
        }
    }

    /// A statement the primary ran inside the open transaction.
    fn note(&mut self, s: &Statement, ok: bool) {
        let Some(t) = self.txn.as_mut() else {
            return;
        };
        if !ok {
            return;
        }
        match &s.kind {
            StmtKind::Read | StmtKind::Write | StmtKind::Empty | StmtKind::Execute { .. } => {}
            StmtKind::SessionSet {
                effect:
                    SetEffect::TxnModes {
                        isolation,
                        read_only,
                    },
                ..
            } if !t.replica_used && !s.multi => {
                // SET TRANSACTION before the first read: the replica's BEGIN follows it.
                if isolation.is_some() {
                    t.isolation = *isolation;
                }
                t.read_only |= *read_only;
            }
            _ => t.pinned = true,
        }
        // Transaction-local or session state the replica does not have.
        if s.multi
            || s.pins_session
            || !s.creates_temp.is_empty()
            || s.functions.iter().any(|f| is_set_config(f))
        {
            t.pinned = true;
        }
    }
}

/// Functions whose answer is fixed at the transaction's start: on another server's
/// transaction they would answer another time.
fn uses_transaction_time(s: &Statement) -> bool {
    const FUNCTIONS: &[&str] = &["now", "transaction_timestamp", "pg_catalog.now"];
    const KEYWORDS: &[&str] = &[
        "current_timestamp",
        "current_time",
        "current_date",
        "localtime",
    ];
    if s.functions
        .iter()
        .any(|f| FUNCTIONS.contains(&f.as_str()) || f == "pg_catalog.transaction_timestamp")
    {
        return true;
    }
    let text = s.text.to_ascii_lowercase();
    KEYWORDS.iter().any(|k| text.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{Classifier, ClassifyOptions};

    fn stmts(c: &Classifier, sql: &str) -> Vec<Arc<Statement>> {
        vec![c.classify(sql)]
    }

    fn rc() -> TxnBalance {
        let mut t = TxnBalance::default();
        t.set_defaults(Defaults::parse("read committed/off"));
        t
    }

    /// Each case: defaults, the statements the primary ran since BEGIN (status T), the read
    /// → the gate's verdict.
    #[test]
    fn gate_table() {
        let c = Classifier::new(ClassifyOptions::default());
        let cases: &[(&str, &[&str], &str, Option<Reason>)] = &[
            (
                "read committed/off",
                &["begin", "!execute nothing"],
                "select 1",
                Some(Reason::FailedTransaction),
            ),
            (
                "read committed/off",
                &["begin", "savepoint a", "!select 1/0", "rollback to a"],
                "select 1",
                Some(Reason::TransactionPinned),
            ),
            ("read committed/off", &["begin"], "select 1", None),
            ("read committed/off", &["begin read only"], "select 1", None),
            (
                "repeatable read/off",
                &["begin"],
                "select 1",
                Some(Reason::SnapshotTransaction),
            ),
            ("repeatable read/on", &["begin"], "select 1", None),
            (
                "repeatable read/on",
                &["begin read write"],
                "select 1",
                Some(Reason::SnapshotTransaction),
            ),
            (
                "read committed/off",
                &["begin isolation level repeatable read"],
                "select 1",
                Some(Reason::SnapshotTransaction),
            ),
            (
                "read committed/off",
                &["begin isolation level repeatable read read only"],
                "select 1",
                None,
            ),
            (
                "read committed/off",
                &[
                    "begin",
                    "set transaction isolation level repeatable read read only",
                ],
                "select 1",
                None,
            ),
            (
                "read committed/off",
                &["begin", "set transaction isolation level repeatable read"],
                "select 1",
                Some(Reason::SnapshotTransaction),
            ),
            (
                "read committed/off",
                &["begin isolation level serializable read only"],
                "select 1",
                Some(Reason::Serializable),
            ),
            (
                "serializable/on",
                &["begin"],
                "select 1",
                Some(Reason::Serializable),
            ),
            (
                "read committed/off",
                &["begin", "savepoint a"],
                "select 1",
                Some(Reason::TransactionPinned),
            ),
            (
                "read committed/off",
                &["begin", "set local work_mem = '8MB'"],
                "select 1",
                Some(Reason::TransactionPinned),
            ),
            (
                "read committed/off",
                &["begin", "select set_config('a.b', 'c', true)"],
                "select 1",
                Some(Reason::TransactionPinned),
            ),
            (
                "read committed/off",
                &["begin", "declare c cursor for select 1"],
                "select 1",
                Some(Reason::TransactionPinned),
            ),
            (
                "read committed/off",
                &["begin", "create temp table tt (a int)"],
                "select 1",
                Some(Reason::TransactionPinned),
            ),
            (
                "read committed/off",
                &["begin", "lock table t"],
                "select 1",
                None,
            ),
            (
                "read committed/off",
                &["begin", "insert into t values (1)"],
                "select 1",
                None,
            ),
            (
                "read committed/off",
                &["begin; select 1"],
                "select 1",
                Some(Reason::InTransaction),
            ),
            (
                "read committed/off",
                &["begin"],
                "select now()",
                Some(Reason::TransactionTime),
            ),
            (
                "read committed/off",
                &["begin"],
                "select current_timestamp",
                Some(Reason::TransactionTime),
            ),
        ];
        for (defaults, before, read, want) in cases {
            let mut t = TxnBalance::default();
            t.set_defaults(Defaults::parse(defaults));
            for step in *before {
                match step.strip_prefix('!') {
                    // A failure of a request the policy saw no statement of.
                    Some(_) => t.answered(&[], false, b'E', false),
                    None => t.answered(&stmts(&c, step), true, b'T', false),
                }
            }
            assert_eq!(
                t.gate(&stmts(&c, read)),
                *want,
                "{defaults} {before:?} {read}"
            );
        }
    }

    #[test]
    fn a_failed_replica_read_aborts_the_primary_once_and_commit_ends_the_epoch() {
        let c = Classifier::new(ClassifyOptions::default());
        let mut t = rc();
        t.answered(&stmts(&c, "begin"), true, b'T', false);
        let e = t.epoch();
        assert!(t.replica_txn_current(e));
        t.answered(&stmts(&c, "select 1/0"), false, b'E', true);
        assert!(t.take_abort_primary());
        assert!(!t.take_abort_primary());
        t.answered(&stmts(&c, "commit"), true, b'I', false);
        assert!(!t.replica_txn_current(e));
        // COMMIT AND CHAIN: a new transaction of unknown modes, on the primary.
        t.answered(&stmts(&c, "begin"), true, b'T', false);
        let e = t.epoch();
        t.answered(&stmts(&c, "commit and chain"), true, b'T', false);
        assert!(!t.replica_txn_current(e));
        assert_eq!(t.gate(&stmts(&c, "select 1")), Some(Reason::InTransaction));
    }

    #[test]
    fn the_primary_runs_a_query_before_modes_are_set_after_a_balanced_read() {
        let c = Classifier::new(ClassifyOptions::default());
        let mut t = rc();
        t.answered(&stmts(&c, "begin"), true, b'T', false);
        let set = stmts(&c, "set transaction isolation level serializable");
        assert!(!t.needs_primary_query(&set), "no read ran yet");
        t.replica_used();
        assert!(!t.needs_primary_query(&stmts(&c, "update t set v = 1")));
        assert!(t.needs_primary_query(&set));
        assert!(!t.needs_primary_query(&set), "once per transaction");
    }

    #[test]
    fn defaults_are_asked_again_after_a_set() {
        let c = Classifier::new(ClassifyOptions::default());
        let mut t = rc();
        assert!(!t.needs_defaults(&stmts(&c, "begin")));
        t.answered(
            &stmts(&c, "set default_transaction_read_only = on"),
            true,
            b'I',
            false,
        );
        assert!(t.needs_defaults(&stmts(&c, "begin")));
        assert!(!t.needs_defaults(&stmts(&c, "select 1")));
    }
}
