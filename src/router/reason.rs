//! Why a statement went where it went: a short stable code per routing rule (the README's
//! routing table lists them). The policy gives most; the session overrides with its own
//! (marked "Session") when the policy's choice cannot stand.

use std::fmt;

/// Why. `Display` gives a short stable code for logs, metrics and `PGPOOL EXPLAIN ROUTE`.
/// The order is that of [`Reason::ALL`], which indexes the routing counters: add new
/// reasons at the end, to both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    LoadBalance,
    Write,
    /// Session: Nothing routed yet in this session: the primary.
    PrimaryDefault,
    /// Session: The policy chose a node, but an open transaction stays on its node.
    InTransaction,
    /// Session: The policy chose a node, but the session holds state only the primary has.
    SessionPinned,
    /// Session: After a batch ended by Flush, up to the next Sync: that batch's node.
    UnsyncedBatch,
    /// Session: The chosen node is down or detached: the primary.
    NodeUnusable,
    /// Session: No replica could take the read: another usable node.
    ReplicaUnavailable,
    /// Session: A function's volatility is being looked up: the primary meanwhile.
    VolatilityUnknown,
    VolatileFunction,
    InWriteTransaction,
    WroteInSession,
    HintComment,
    TempTable,
    UnloggedTable,
    Unparseable,
    Weight,
    Redirect,
    SystemCatalog,
    Pattern,
    Serializable,
    ReadWriteTransaction,
    FailedTransaction,
    MultiStatement,
    SessionCommand,
    TransactionControl,
    TwoPhase,
    LoadBalanceOff,
    Cursor,
    Listen,
    Explain,
    CopyToFile,
    DmlAdaptive,
    UnknownPrepared,
    PreparedOnPrimary,
    Admin,
    Empty,
}

impl Reason {
    /// Every reason, in declaration order (`ALL[r.index()] == r`).
    pub const ALL: [Reason; 37] = {
        use Reason::*;
        [
            LoadBalance,
            Write,
            PrimaryDefault,
            InTransaction,
            SessionPinned,
            UnsyncedBatch,
            NodeUnusable,
            ReplicaUnavailable,
            VolatilityUnknown,
            VolatileFunction,
            InWriteTransaction,
            WroteInSession,
            HintComment,
            TempTable,
            UnloggedTable,
            Unparseable,
            Weight,
            Redirect,
            SystemCatalog,
            Pattern,
            Serializable,
            ReadWriteTransaction,
            FailedTransaction,
            MultiStatement,
            SessionCommand,
            TransactionControl,
            TwoPhase,
            LoadBalanceOff,
            Cursor,
            Listen,
            Explain,
            CopyToFile,
            DmlAdaptive,
            UnknownPrepared,
            PreparedOnPrimary,
            Admin,
            Empty,
        ]
    };

    /// The position in [`Reason::ALL`]: a counter array index, no lookup.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason whose code is `code` (the session still hands reasons on as codes).
    pub fn from_code(code: &str) -> Option<Reason> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn code(self) -> &'static str {
        use Reason::*;
        match self {
            LoadBalance => "load_balance",
            Write => "write",
            PrimaryDefault => "primary_default",
            InTransaction => "in_transaction",
            SessionPinned => "session_pinned",
            UnsyncedBatch => "unsynced_batch",
            NodeUnusable => "node_unusable",
            ReplicaUnavailable => "replica_unavailable",
            VolatilityUnknown => "volatility_unknown",
            VolatileFunction => "volatile_function",
            InWriteTransaction => "in_write_transaction",
            WroteInSession => "wrote_in_session",
            HintComment => "hint_comment",
            TempTable => "temp_table",
            UnloggedTable => "unlogged_table",
            Unparseable => "unparseable",
            Weight => "weight",
            Redirect => "redirect",
            SystemCatalog => "system_catalog",
            Pattern => "pattern",
            Serializable => "serializable",
            ReadWriteTransaction => "read_write_transaction",
            FailedTransaction => "failed_transaction",
            MultiStatement => "multi_statement",
            SessionCommand => "session_command",
            TransactionControl => "transaction_control",
            TwoPhase => "two_phase",
            LoadBalanceOff => "load_balance_off",
            Cursor => "cursor",
            Listen => "listen",
            Explain => "explain",
            CopyToFile => "copy_to_file",
            DmlAdaptive => "dml_adaptive",
            UnknownPrepared => "unknown_prepared",
            PreparedOnPrimary => "prepared_on_primary",
            Admin => "admin",
            Empty => "empty",
        }
    }
}

// A reason added after `Empty` but not to `ALL` would have no counter.
const _: () = assert!(Reason::Empty as usize + 1 == Reason::ALL.len());

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_reason_once_at_its_index() {
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            assert_eq!(Reason::from_code(r.code()), Some(r), "{r:?}");
        }
        assert_eq!(Reason::from_code("no_such_reason"), None);
    }
}
