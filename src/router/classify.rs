//! Statement classification: text → static facts ([`Statement`]), cached by exact text.
//!
//! Two tiers (see the crate notes on sqlparser): the lexical fast path in `fast.rs` settles
//! transaction control, session commands, admin commands, obvious writes and simple SELECTs;
//! read-shaped text it is unsure of goes to sqlparser (`parse.rs`). Text neither can settle
//! is `Unparseable` and goes to the primary.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use super::fast;
use super::lexer::{self, TokKind};

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
    /// Functions called, as written: lower-cased unless quoted, schema-qualified if written so.
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
    /// The full text, for `primary_routing_query_pattern_list`.
    pub text: Arc<str>,
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

/// What a SET/RESET does to routing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetEffect {
    None,
    /// `SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`, `SET transaction_isolation = serializable`.
    TxnSerializable,
    /// `SET transaction_read_only = off`, `SET TRANSACTION READ WRITE`.
    TxnReadWrite,
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
    Begin {
        read_only: bool,
        serializable: bool,
        plain_on_replica: bool,
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

/// How deep EXPLAIN / PREPARE / COPY may nest statements inside statements.
const MAX_NESTING: u8 = 4;
/// Texts past this size are not cached (bulk INSERTs would crowd out the useful entries).
const MAX_CACHED_LEN: usize = 16 * 1024;
const SHARDS: usize = 16;
const DEFAULT_CAPACITY: usize = 10_000;

/// One cache shard: two generations, a cheap approximation of LRU. When `young` fills up it
/// becomes `old` and the previous `old` is dropped; a hit in `old` is promoted.
#[derive(Default)]
struct Shard {
    young: HashMap<Arc<str>, Arc<Statement>>,
    old: HashMap<Arc<str>, Arc<Statement>>,
}

/// Classifies statement text; thread-safe, with a bounded verdict cache keyed by exact text.
pub struct Classifier {
    opts: ClassifyOptions,
    shards: Vec<Mutex<Shard>>,
    per_generation: usize,
    hasher: RandomState,
}

impl Classifier {
    pub fn new(opts: ClassifyOptions) -> Self {
        Self::with_capacity(opts, DEFAULT_CAPACITY)
    }

    /// `capacity` is the approximate number of cached texts (at most twice it are kept).
    pub fn with_capacity(opts: ClassifyOptions, capacity: usize) -> Self {
        Self {
            opts,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_generation: (capacity / SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    pub fn options(&self) -> ClassifyOptions {
        self.opts
    }

    /// Classify `sql`. Never panics; the same text returns the same `Arc` while cached.
    pub fn classify(&self, sql: &str) -> Arc<Statement> {
        if sql.len() > MAX_CACHED_LEN {
            return Arc::new(classify_uncached(sql, &self.opts));
        }
        let shard_idx = (self.hasher.hash_one(sql) as usize) % SHARDS;
        let Some(shard_lock) = self.shards.get(shard_idx) else {
            return Arc::new(classify_uncached(sql, &self.opts));
        };
        if let Some(hit) = lookup(shard_lock, sql) {
            return hit;
        }
        let stmt = Arc::new(classify_uncached(sql, &self.opts));
        let mut shard = shard_lock.lock().unwrap_or_else(|e| e.into_inner());
        if shard.young.len() >= self.per_generation {
            shard.old = std::mem::take(&mut shard.young);
        }
        shard.young.insert(stmt.text.clone(), stmt.clone());
        stmt
    }
}

fn lookup(shard_lock: &Mutex<Shard>, sql: &str) -> Option<Arc<Statement>> {
    // A poisoned lock only means another thread panicked mid-insert; the maps stay valid.
    let mut shard = shard_lock.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(hit) = shard.young.get(sql) {
        return Some(hit.clone());
    }
    let (key, hit) = shard.old.remove_entry(sql)?;
    shard.young.insert(key, hit.clone());
    Some(hit)
}

/// Classify without the cache.
pub fn classify_uncached(sql: &str, opts: &ClassifyOptions) -> Statement {
    let mut stmt = classify_nested(sql, 0);
    stmt.hint_comment = !opts.allow_sql_comments
        && !lexer::passes_first_char_rule(sql, opts.ignore_leading_white_space);
    stmt
}

/// Classify a (possibly nested: EXPLAIN, PREPARE, COPY) text.
pub(crate) fn classify_nested(sql: &str, nesting: u8) -> Statement {
    let text: Arc<str> = Arc::from(sql);
    let mut stmt = Statement {
        kind: StmtKind::Unparseable,
        functions: Vec::new(),
        relations: Vec::new(),
        creates_temp: Vec::new(),
        multi: false,
        hint_comment: false,
        writes: false,
        text,
    };
    if nesting > MAX_NESTING {
        return stmt;
    }
    let lexed = lexer::lex(sql);
    if lexed.unterminated {
        return stmt;
    }
    let parts = split_statements(&lexed.tokens);
    let Some(first) = parts.first() else {
        stmt.kind = StmtKind::Empty;
        return stmt;
    };
    let facts = fast::classify_tokens(sql, first, nesting);
    stmt.multi = parts.len() > 1;
    stmt.writes = is_writing(&facts.kind);
    if stmt.multi {
        stmt.writes |= parts[1..]
            .iter()
            .any(|p| is_writing(&fast::classify_tokens(sql, p, nesting).kind));
        if matches!(facts.kind, StmtKind::Admin(_)) {
            return stmt; // admin commands are only answered alone
        }
    }
    stmt.kind = facts.kind;
    stmt.functions = facts.functions;
    stmt.relations = facts.relations;
    stmt.creates_temp = facts.creates_temp;
    stmt
}

/// Pgpool-II treats text it cannot parse as a write; so do we.
fn is_writing(kind: &StmtKind) -> bool {
    matches!(kind, StmtKind::Write | StmtKind::Unparseable)
}

/// Token slices of each non-empty statement (split at top-level `;`).
fn split_statements(tokens: &[lexer::Token]) -> Vec<&[lexer::Token]> {
    tokens
        .split(|t| t.kind == TokKind::Punct(b';'))
        .filter(|s| !s.is_empty())
        .collect()
}

/// What one statement's analysis yields (the parts of [`Statement`] that depend on it alone).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Facts {
    pub kind: StmtKind,
    pub functions: Vec<String>,
    pub relations: Vec<String>,
    pub creates_temp: Vec<String>,
}

impl Facts {
    pub fn kind(kind: StmtKind) -> Self {
        Self {
            kind,
            functions: Vec::new(),
            relations: Vec::new(),
            creates_temp: Vec::new(),
        }
    }
}
