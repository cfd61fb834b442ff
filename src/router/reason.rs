//! Why a statement went where it went: a short stable code per routing rule (the README's
//! routing table lists them). The policy gives most; the session overrides with its own
//! (marked "Session") when the policy's choice cannot stand.

use std::fmt;

/// Declares [`Reason`] with each variant's code, and [`Reason::ALL`] in the same order, from
/// one list.
macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident => $code:literal,)*) => {
        /// Why. `Display` gives a short stable code for logs, metrics and `PGPOOL EXPLAIN
        /// ROUTE`. The order is that of [`Reason::ALL`], which indexes the routing counters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every reason, in declaration order (`ALL[r.index()] == r`).
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            pub fn code(self) -> &'static str {
                match self {
                    $(Reason::$name => $code,)*
                }
            }
        }
    };
}

reasons! {
    LoadBalance => "load_balance",
    Write => "write",
    /// Session: Nothing routed yet in this session: the primary.
    PrimaryDefault => "primary_default",
    /// Session: The policy chose a node, but an open transaction stays on its node.
    InTransaction => "in_transaction",
    /// Session: The policy chose a node, but the session holds state only the primary has.
    SessionPinned => "session_pinned",
    /// Session: After a batch ended by Flush, up to the next Sync: that batch's node.
    UnsyncedBatch => "unsynced_batch",
    /// Session: The chosen node is down or detached: the primary.
    NodeUnusable => "node_unusable",
    /// Session: No replica could take the read: another usable node.
    ReplicaUnavailable => "replica_unavailable",
    /// Session: A function's volatility is being looked up: the primary meanwhile.
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
    /// Session: the transaction did something only the primary may see (a savepoint, SET,
    /// a cursor…): the rest of it stays there.
    TransactionPinned => "transaction_pinned",
    /// Session: a read in a transaction calls a function fixed at the transaction's start.
    TransactionTime => "transaction_time",
    /// Session: a REPEATABLE READ read-write transaction keeps its one snapshot, on the primary.
    SnapshotTransaction => "snapshot_transaction",
    /// Session: the replica has not replayed the session's own last commit in time.
    ReadYourWrites => "read_your_writes",
    /// Session (`PGPOOL EXPLAIN ROUTE` only): the read would first wait for the replica to
    /// replay the session's own last commit.
    ReadYourWritesCheck => "read_your_writes_check",
}

impl Reason {
    /// The position in [`Reason::ALL`]: a counter array index, no lookup.
    pub fn index(self) -> usize {
        self as usize
    }
}

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
        for (i, &r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
            let same_code = Reason::ALL.iter().filter(|o| o.code() == r.code()).count();
            assert_eq!(same_code, 1, "{r:?}");
        }
    }
}
