//! Why a statement went where it went: a short stable code per routing rule (the README's
//! routing table lists them).

use std::fmt;

/// Why. `Display` gives a short stable code for logs, metrics and `PGPOOL EXPLAIN ROUTE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Write,
    VolatileFunction,
    InWriteTransaction,
    WroteInSession,
    HintComment,
    TempTable,
    UnloggedTable,
    Unparseable,
    LoadBalance,
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
    pub fn code(self) -> &'static str {
        use Reason::*;
        match self {
            Write => "write",
            VolatileFunction => "volatile_function",
            InWriteTransaction => "in_write_transaction",
            WroteInSession => "wrote_in_session",
            HintComment => "hint_comment",
            TempTable => "temp_table",
            UnloggedTable => "unlogged_table",
            Unparseable => "unparseable",
            LoadBalance => "load_balance",
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

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
