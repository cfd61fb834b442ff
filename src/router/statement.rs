//! What classification yields: [`Statement`] (a text's static facts, cached) and the
//! per-statement [`Facts`] the classifier tiers build it from. Types only, so every tier
//! imports this and nothing here imports a tier.

use std::sync::{Arc, OnceLock};

use super::stmt_class::StmtClass;

/// Classifier settings that change a text's static verdict (the cache is per classifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifyOptions {
    /// Pgpool-II `allow_sql_comments`: on drops the first-character test, so comment hints
    /// such as `/*NO LOAD BALANCE*/` stop working.
    pub allow_sql_comments: bool,
    /// Pgpool-II `ignore_leading_white_space` (default on).
    pub ignore_leading_white_space: bool,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        Self {
            allow_sql_comments: false,
            ignore_leading_white_space: true,
        }
    }
}

/// Static facts about one query text; shared across sessions through the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub kind: StmtKind,
    /// Pgpool-II's statement class of the text (`SHOW pool_backend_stats`), from its first
    /// word.
    pub class: StmtClass,
    /// Functions the first statement calls (SELECT, INSERT/UPDATE/DELETE/MERGE alike), as
    /// written: lower-cased unless quoted, schema-qualified if written so.
    pub functions: Vec<String>,
    /// Relations referenced (same spelling rules). CTE names are left out.
    pub relations: Vec<String>,
    /// Temporary tables/views/sequences this text creates.
    pub creates_temp: Vec<String>,
    /// More than one statement in the text.
    pub multi: bool,
    /// The text fails Pgpool-II's first-character rule (leading comment, `VALUES`, …).
    pub hint_comment: bool,
    /// Some statement in the text changes data (sets the "written" flags on success).
    pub writes: bool,
    /// Some statement in the text changes the catalog (CREATE / ALTER / DROP / COMMENT …, or
    /// DO, which may): on success the cached catalog facts are stale.
    pub changes_catalog: bool,
    /// Session state is set in a way the proxy cannot replay on another backend
    /// (`set_config(…, false)` with non-literal arguments or inside a larger statement, a
    /// SET in a multi-statement text): on success the session stays on the primary.
    pub pins_session: bool,
    /// Some statement in the text leaves state on its backend that outlives the transaction
    /// (what transaction pooling refuses).
    pub outlives: Option<Outlives>,
    /// The full text, for `primary_routing_query_pattern_list`. From
    /// [`Classifier::classify_for`](super::Classifier::classify_for) it may be another text of
    /// the same shape (same bytes but for the values of plain literals).
    pub text: Arc<str>,
    /// Facts the session derives from the statement once and keeps with the cached verdict.
    pub memo: Memo,
}

/// Per-statement facts the session computes on first use from the ones above (the same for
/// every text of one shape).
#[derive(Debug, Clone, Default)]
pub struct Memo {
    /// Running it may leave session state on the backend (see the session's reset skip),
    /// indexed by whether calls under the built-in "safe" names are trusted (`[0]`: not).
    pub leaves_state: [OnceLock<bool>; 2],
}

/// Derived data: never part of a verdict's identity.
impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

/// Session state a statement leaves on its backend past the end of its transaction: the
/// next client of a transaction-pooled connection would find it. A text with several
/// reports an advisory lock first, then the first statement's in text order, a temporary
/// table last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outlives {
    /// `pg_advisory_lock` and the other session-level advisory locks (the `_xact_` ones end
    /// with the transaction).
    AdvisoryLock,
    Listen,
    /// SQL `PREPARE name AS …` (not `PREPARE TRANSACTION`).
    SqlPrepare,
    /// `DECLARE … WITH HOLD`.
    HoldCursor,
    /// `SET [SESSION] SESSION AUTHORIZATION`, `SET session_authorization`.
    SessionAuthorization,
    /// A temporary table, view or sequence not dropped at commit (no `ON COMMIT DROP`).
    TempTable,
}

/// Why a statement that is not a write still cannot be load balanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryCause {
    /// DECLARE / FETCH / MOVE / CLOSE: cursors live on the primary.
    Cursor,
    /// LISTEN / UNLISTEN: notifications come from the primary only.
    Listen,
    /// Plain EXPLAIN of a write: runs nothing, but there is nothing to gain on a replica.
    Explain,
    /// COPY … TO a server file or program.
    CopyToFile,
}

/// A transaction isolation level as written (READ UNCOMMITTED is READ COMMITTED in
/// PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

/// What a SET/RESET does to routing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetEffect {
    None,
    /// `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`, `SET transaction_isolation = serializable`.
    TxnSerializable,
    /// `SET transaction_read_only = off`, `SET TRANSACTION READ WRITE`.
    TxnReadWrite,
    /// `SET TRANSACTION` with modes a hot standby accepts (no SERIALIZABLE, no READ WRITE).
    TxnModes {
        isolation: Option<Isolation>,
        read_only: bool,
    },
    /// `SET SESSION CHARACTERISTICS … ISOLATION LEVEL x`, `SET default_transaction_isolation = x`.
    SessionIsolation {
        serializable: bool,
    },
    /// `RESET ALL` (drops a session-wide SERIALIZABLE).
    ResetAll,
}

/// Commands the proxy answers itself (spec 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminCommand {
    /// `SHOW pool_nodes` etc.; the name lower-cased.
    ShowPool(String),
    /// `PGPOOL SHOW name|all`.
    PgpoolShow(String),
    /// `PGPOOL SET name = value` (value unquoted).
    PgpoolSet(String, String),
    /// `PGPOOL RESET name|all`.
    PgpoolReset(String),
    /// Our extension: `PGPOOL EXPLAIN ROUTE <sql>` — the SQL text to explain.
    ExplainRoute(String),
}

/// The statement's class.
#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    /// May be load balanced (subject to the checks of spec 5.3).
    Read,
    /// Changes data or schema, or locks rows/tables: primary, and marks the transaction written.
    Write,
    /// Not a write, but must run on the primary (does not mark the transaction written).
    PrimaryOnly(PrimaryCause),
    /// BEGIN / START TRANSACTION. `plain_on_replica`: the replica must get a plain `BEGIN`
    /// (READ WRITE and SERIALIZABLE are refused by a hot standby).
    /// `isolation`, `read_write`: the modes given explicitly (the session's defaults apply
    /// to the rest).
    Begin {
        read_only: bool,
        serializable: bool,
        plain_on_replica: bool,
        isolation: Option<Isolation>,
        read_write: bool,
    },
    Commit,
    Rollback,
    Savepoint,
    Release,
    RollbackToSavepoint,
    /// `PREPARE TRANSACTION 'id'`: primary only; the session must end the replica's transaction.
    PrepareTransaction,
    /// `COMMIT PREPARED` / `ROLLBACK PREPARED`: primary only.
    FinishPrepared,
    SessionSet {
        forces_primary: bool,
        effect: SetEffect,
    },
    /// DISCARD; `drops_temp` for ALL / TEMP, `deallocates` for ALL.
    Discard {
        drops_temp: bool,
        deallocates: bool,
    },
    Prepare {
        name: String,
        body: Box<Statement>,
    },
    Execute {
        name: String,
    },
    /// `DEALLOCATE name`; `None` is `DEALLOCATE ALL`.
    Deallocate {
        name: Option<String>,
    },
    Admin(AdminCommand),
    /// Empty text or only `;` / comments.
    Empty,
    Unparseable,
}

/// What one statement's analysis yields (the parts of [`Statement`] that depend on it alone).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facts {
    pub kind: StmtKind,
    pub functions: Vec<String>,
    pub relations: Vec<String>,
    pub creates_temp: Vec<String>,
    /// A name in `functions`, `relations` or `creates_temp` (or a CTE name) came from a
    /// string literal, so the facts depend on a literal's value.
    pub literal_names: bool,
    /// A stand-alone `SELECT set_config('n', 'v', true)`: transaction-local, nothing to pin.
    pub local_set_config: bool,
}

impl Facts {
    pub fn kind(kind: StmtKind) -> Self {
        Self {
            kind,
            functions: Vec::new(),
            relations: Vec::new(),
            creates_temp: Vec::new(),
            literal_names: false,
            local_set_config: false,
        }
    }
}

/// Adds a name once (a statement names a relation or function any number of times).
pub(crate) fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}
