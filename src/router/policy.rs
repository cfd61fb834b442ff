//! Routing policy: static facts ([`Statement`]) + session state + config → [`Decision`].
//!
//! Pgpool-II's rules (spec 5.2–5.4) with the safer choices of this project: a transaction
//! that wrote reads from the primary until it ends (ROLLBACK TO SAVEPOINT does not undo
//! that), an aborted transaction goes wholly to the primary, temp tables, cursors,
//! SERIALIZABLE and catalog reads stay on the primary.
//!
//! What only the primary's catalog knows (is a function VOLATILE, is a table unlogged) comes
//! from the caller as a [`CatalogKey`] → answer function; an unknown answer makes the router
//! ask for it ([`RouteResult::NeedCatalog`]) and the caller routes again once it is cached.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::balance::{choose_node, NodeChoice};
use super::config::{DisableLbOnWrite, RouterConfig};
use super::functions::list_says_writing;
use super::reason::Reason;
use super::statement::{PrimaryCause, SetEffect, Statement, StmtKind};

/// Where a statement goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary,
    /// A non-primary node (the session's load-balance node).
    Node(usize),
    /// Every backend the session uses (session state and transaction control).
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub target: Target,
    pub reason: Reason,
}

/// A question to the primary's catalog (answered from the caller's cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKey<'a> {
    /// Is a function of this name VOLATILE, i.e. a possible write
    /// ([`super::volatility_query`])?
    Function(&'a str),
    /// Is a relation of this name unlogged ([`super::unlogged_query`])?
    Relation(&'a str),
}

/// The caller's cached catalog answers: `Some(_)` known, `None` not asked yet.
pub type Catalog<'a> = dyn Fn(CatalogKey<'_>) -> Option<bool> + 'a;

/// The answer of [`SessionRouting::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteResult {
    Decided(Decision),
    /// Look these up on the primary ([`super::volatility_query`],
    /// [`super::unlogged_query`]), cache the answers, and route again.
    NeedCatalog {
        functions: Vec<String>,
        relations: Vec<String>,
    },
}

fn decided(target: Target, reason: Reason) -> RouteResult {
    RouteResult::Decided(Decision { target, reason })
}

fn primary(reason: Reason) -> RouteResult {
    decided(Target::Primary, reason)
}

/// A SQL-level PREPARE this session made.
#[derive(Debug, Clone)]
struct Prepared {
    body: Arc<Statement>,
    on_all: bool,
}

/// Per-session routing state.
#[derive(Debug, Clone)]
pub struct SessionRouting {
    user: String,
    database: String,
    application_name: String,
    mode: DisableLbOnWrite,
    primary_node: usize,
    lb_node: usize,
    lb_choice: NodeChoice,
    /// Last ReadyForQuery status: `I`, `T` or `E`.
    txn_status: u8,
    wrote_in_txn: bool,
    wrote_in_session: bool,
    wrote_in_earlier_txn: bool,
    txn_serializable: bool,
    session_serializable: bool,
    txn_read_write: bool,
    txn_started_by_multi: bool,
    temp_tables: HashSet<String>,
    written_tables: HashSet<String>,
    prepared: HashMap<String, Prepared>,
}

impl SessionRouting {
    /// Start a session and pick its load-balance node (spec 5.1). `rng_value` is uniform in
    /// `[0, 1)`; `healthy_nodes[i]` says whether node `i` may serve this session.
    pub fn new(
        cfg: &RouterConfig,
        user: &str,
        database: &str,
        application_name: &str,
        rng_value: f64,
        healthy_nodes: &[bool],
    ) -> Self {
        let (lb_node, lb_choice) = choose_node(
            cfg,
            user,
            database,
            application_name,
            rng_value,
            healthy_nodes,
        );
        Self {
            user: user.to_string(),
            database: database.to_string(),
            application_name: application_name.to_string(),
            mode: cfg.disable_lb_on_write,
            primary_node: cfg.primary_node,
            lb_node,
            lb_choice,
            txn_status: b'I',
            wrote_in_txn: false,
            wrote_in_session: false,
            wrote_in_earlier_txn: false,
            txn_serializable: false,
            session_serializable: false,
            txn_read_write: false,
            txn_started_by_multi: false,
            temp_tables: HashSet::new(),
            written_tables: HashSet::new(),
            prepared: HashMap::new(),
        }
    }

    /// `statement_level_load_balance`: pick the node again before a statement.
    pub fn repick_node(&mut self, cfg: &RouterConfig, rng_value: f64, healthy_nodes: &[bool]) {
        let (n, how) = choose_node(
            cfg,
            &self.user,
            &self.database,
            &self.application_name,
            rng_value,
            healthy_nodes,
        );
        self.lb_node = n;
        self.lb_choice = how;
    }

    /// The replica failed: send this session's reads to the primary from now on.
    pub fn fall_back_to_primary(&mut self) {
        self.lb_node = self.primary_node;
    }

    pub fn lb_node(&self) -> usize {
        self.lb_node
    }

    pub fn in_transaction(&self) -> bool {
        matches!(self.txn_status, b'T' | b'E')
    }

    /// Where does this statement go? `catalog` answers from the session's cache of the
    /// primary's catalog: `Some(_)` known, `None` unknown → `NeedCatalog`.
    pub fn route(&self, stmt: &Statement, cfg: &RouterConfig, catalog: &Catalog) -> RouteResult {
        use StmtKind::*;
        if self.txn_status == b'E'
            && !matches!(
                stmt.kind,
                Commit | Rollback | RollbackToSavepoint | Admin(_)
            )
        {
            return primary(Reason::FailedTransaction);
        }
        let multi = stmt.multi || self.txn_started_by_multi;
        let everywhere = |reason| {
            if multi {
                primary(Reason::MultiStatement)
            } else {
                decided(Target::All, reason)
            }
        };
        match &stmt.kind {
            Read => self.route_read(stmt, cfg, catalog),
            Write => primary(Reason::Write),
            Unparseable => primary(Reason::Unparseable),
            Empty => primary(Reason::Empty),
            Admin(_) => primary(Reason::Admin),
            PrimaryOnly(cause) => primary(match cause {
                PrimaryCause::Cursor => Reason::Cursor,
                PrimaryCause::Listen => Reason::Listen,
                PrimaryCause::Explain => Reason::Explain,
                PrimaryCause::CopyToFile => Reason::CopyToFile,
            }),
            Begin { .. } | Commit | Rollback | Savepoint | Release | RollbackToSavepoint => {
                everywhere(Reason::TransactionControl)
            }
            PrepareTransaction | FinishPrepared => primary(Reason::TwoPhase),
            SessionSet {
                forces_primary: true,
                effect,
            } => primary(match effect {
                SetEffect::TxnReadWrite => Reason::ReadWriteTransaction,
                _ => Reason::Serializable,
            }),
            SessionSet { .. } | Discard { .. } | Deallocate { name: None } => {
                everywhere(Reason::SessionCommand)
            }
            Prepare { body, .. } => {
                if self.prepare_everywhere(body) {
                    everywhere(Reason::SessionCommand)
                } else {
                    primary(Reason::SessionCommand)
                }
            }
            Execute { name } => self.route_execute(name, cfg, catalog),
            Deallocate { name: Some(name) } => match self.prepared.get(name) {
                Some(p) if p.on_all => everywhere(Reason::SessionCommand),
                Some(_) => primary(Reason::SessionCommand),
                None => primary(Reason::UnknownPrepared),
            },
        }
    }

    /// A PREPARE goes to every backend when its body could later run on a replica; one that
    /// could not (a write, a temp table) is prepared on the primary only.
    fn prepare_everywhere(&self, body: &Statement) -> bool {
        body.kind == StmtKind::Read && !body.relations.iter().any(|r| self.is_temp(r))
    }

    fn route_execute(&self, name: &str, cfg: &RouterConfig, catalog: &Catalog) -> RouteResult {
        let Some(p) = self.prepared.get(name) else {
            return primary(Reason::UnknownPrepared);
        };
        match self.route(&p.body, cfg, catalog) {
            RouteResult::Decided(Decision {
                target: Target::Node(_),
                ..
            }) if !p.on_all => primary(Reason::PreparedOnPrimary),
            other => other,
        }
    }

    /// The balancing checks of spec 5.3, in Pgpool-II's order.
    fn route_read(&self, stmt: &Statement, cfg: &RouterConfig, catalog: &Catalog) -> RouteResult {
        if !cfg.load_balance_mode {
            return primary(Reason::LoadBalanceOff);
        }
        if stmt.multi {
            return primary(Reason::MultiStatement);
        }
        if stmt.hint_comment {
            return primary(Reason::HintComment);
        }
        if let Some(reason) = self.session_blocks_balance() {
            return primary(reason);
        }
        if stmt.relations.iter().any(|r| is_system_relation(r)) {
            return primary(Reason::SystemCatalog);
        }
        if stmt.relations.iter().any(|r| self.is_temp(r)) {
            return primary(Reason::TempTable);
        }
        if cfg.check_unlogged_table {
            if let Some(r) = self.check_unlogged(stmt, cfg, catalog) {
                return r;
            }
        }
        if !cfg.primary_routing_query_patterns.is_empty() {
            let unquoted = stmt.text.replace('"', "");
            if cfg
                .primary_routing_query_patterns
                .iter()
                .any(|p| p.is_match(&unquoted))
            {
                return primary(Reason::Pattern);
            }
        }
        if let Some(r) = self.check_functions(stmt, cfg, catalog) {
            return r;
        }
        if self.mode == DisableLbOnWrite::DmlAdaptive
            && self.in_transaction()
            && stmt
                .relations
                .iter()
                .any(|r| self.written_tables.contains(r))
        {
            return primary(Reason::DmlAdaptive);
        }
        self.balanced()
    }

    /// Session/transaction state that keeps reads on the primary (spec 5.3 steps 1 and 3).
    fn session_blocks_balance(&self) -> Option<Reason> {
        if self.mode == DisableLbOnWrite::Always && self.wrote_in_session {
            return Some(Reason::WroteInSession);
        }
        if !self.in_transaction() {
            return None;
        }
        // `off` balances reads after a write in Pgpool-II, where the load-balance node then
        // answers without the transaction's own uncommitted writes: here it acts as
        // `transaction` inside a transaction (a read never misses its transaction's writes).
        let wrote = match self.mode {
            DisableLbOnWrite::DmlAdaptive => false,
            DisableLbOnWrite::TransTransaction => self.wrote_in_txn || self.wrote_in_earlier_txn,
            DisableLbOnWrite::Off | DisableLbOnWrite::Transaction | DisableLbOnWrite::Always => {
                self.wrote_in_txn
            }
        };
        if wrote {
            Some(Reason::InWriteTransaction)
        } else if self.txn_serializable {
            Some(Reason::Serializable)
        } else if self.txn_read_write {
            Some(Reason::ReadWriteTransaction)
        } else {
            None
        }
    }

    fn check_functions(
        &self,
        stmt: &Statement,
        cfg: &RouterConfig,
        catalog: &Catalog,
    ) -> Option<RouteResult> {
        let mut unknown = Vec::new();
        for f in &stmt.functions {
            match function_writes(f, cfg, catalog) {
                Some(true) => return Some(primary(Reason::VolatileFunction)),
                Some(false) => {}
                None => unknown.push(f.clone()),
            }
        }
        (!unknown.is_empty()).then_some(RouteResult::NeedCatalog {
            functions: unknown,
            relations: Vec::new(),
        })
    }

    /// Spec 5.3 step 6. Relations not known yet are asked for together with the statement's
    /// unknown functions, so a statement needs at most one round of look-ups.
    fn check_unlogged(
        &self,
        stmt: &Statement,
        cfg: &RouterConfig,
        catalog: &Catalog,
    ) -> Option<RouteResult> {
        let mut unknown = Vec::new();
        for r in &stmt.relations {
            match catalog(CatalogKey::Relation(r)) {
                Some(true) => return Some(primary(Reason::UnloggedTable)),
                Some(false) => {}
                None => unknown.push(r.clone()),
            }
        }
        if unknown.is_empty() {
            return None;
        }
        let functions = stmt
            .functions
            .iter()
            .filter(|f| function_writes(f, cfg, catalog).is_none())
            .cloned()
            .collect();
        Some(RouteResult::NeedCatalog {
            functions,
            relations: unknown,
        })
    }

    fn balanced(&self) -> RouteResult {
        let reason = match self.lb_choice {
            NodeChoice::Redirect => Reason::Redirect,
            NodeChoice::Weight if self.lb_node == self.primary_node => Reason::Weight,
            NodeChoice::Weight => Reason::LoadBalance,
        };
        if self.lb_node == self.primary_node {
            primary(reason)
        } else {
            decided(Target::Node(self.lb_node), reason)
        }
    }

    /// After the backend answered: update transaction state from the statement, its
    /// success, and the ReadyForQuery status byte (`I`, `T`, `E`). `catalog` says which
    /// functions a read called may have written.
    pub fn after(
        &mut self,
        stmt: &Statement,
        target: &Target,
        ok: bool,
        rfq_status: u8,
        catalog: &Catalog,
    ) {
        let was_in_txn = self.in_transaction();
        let now_in_txn = matches!(rfq_status, b'T' | b'E');
        let chained = ok && matches!(stmt.kind, StmtKind::Commit | StmtKind::Rollback);
        if was_in_txn && (!now_in_txn || chained) {
            self.end_transaction();
        }
        if now_in_txn && (!was_in_txn || chained) {
            self.txn_started_by_multi = stmt.multi;
            self.txn_serializable = self.session_serializable
                || matches!(
                    stmt.kind,
                    StmtKind::Begin {
                        serializable: true,
                        ..
                    }
                );
        }
        self.txn_status = rfq_status;
        if !ok {
            return;
        }
        self.apply_session_effects(stmt, target, now_in_txn);
        let body = match &stmt.kind {
            StmtKind::Execute { name } => self.prepared.get(name).map(|p| p.body.clone()),
            _ => None,
        };
        let effective = body.as_deref().unwrap_or(stmt);
        for t in &effective.creates_temp {
            self.temp_tables.insert(t.clone());
        }
        if statement_wrote(effective, target, catalog) {
            self.wrote_in_session = true;
            if now_in_txn {
                self.wrote_in_txn = true;
                self.written_tables
                    .extend(effective.relations.iter().cloned());
            }
        }
    }

    /// Whether `stmt`, run on the primary, may have changed data there (read-your-writes
    /// waits for replicas to replay it): a write, a read calling a function that may write,
    /// text nobody could classify, `COMMIT PREPARED`; an EXECUTE counts as its statement.
    pub fn may_have_written(&self, stmt: &Statement, catalog: &Catalog) -> bool {
        let stmt = match &stmt.kind {
            StmtKind::Execute { name } => match self.prepared.get(name) {
                Some(p) => &*p.body,
                None => return true,
            },
            StmtKind::Unparseable | StmtKind::FinishPrepared => return true,
            _ => stmt,
        };
        statement_wrote(stmt, &Target::Primary, catalog)
    }

    fn end_transaction(&mut self) {
        self.wrote_in_earlier_txn |= self.wrote_in_txn;
        self.wrote_in_txn = false;
        self.txn_serializable = false;
        self.txn_read_write = false;
        self.txn_started_by_multi = false;
        self.written_tables.clear();
    }

    /// SET / DISCARD / PREPARE / DEALLOCATE bookkeeping after success.
    fn apply_session_effects(&mut self, stmt: &Statement, target: &Target, in_txn: bool) {
        match &stmt.kind {
            StmtKind::SessionSet { effect, .. } => match effect {
                SetEffect::TxnSerializable if in_txn => self.txn_serializable = true,
                SetEffect::TxnReadWrite if in_txn => self.txn_read_write = true,
                SetEffect::SessionIsolation { serializable } => {
                    self.session_serializable = *serializable
                }
                SetEffect::ResetAll => self.session_serializable = false,
                _ => {}
            },
            StmtKind::Discard {
                drops_temp,
                deallocates,
            } => {
                if *drops_temp {
                    self.temp_tables.clear();
                }
                if *deallocates {
                    self.prepared.clear();
                    self.session_serializable = false;
                }
            }
            StmtKind::Prepare { name, body } => {
                let p = Prepared {
                    body: Arc::new((**body).clone()),
                    on_all: *target == Target::All,
                };
                self.prepared.insert(name.clone(), p);
            }
            StmtKind::Deallocate { name: Some(name) } => {
                self.prepared.remove(name);
            }
            StmtKind::Deallocate { name: None } => self.prepared.clear(),
            _ => {}
        }
    }

    fn is_temp(&self, relation: &str) -> bool {
        let bare = relation.strip_prefix("pg_temp.").unwrap_or(relation);
        !bare.contains('.') && self.temp_tables.contains(bare)
    }
}

/// `pg_catalog.*`, `information_schema.*` and unqualified `pg_*` names (spec 5.3 step 4;
/// decided by name, not by a catalog query).
pub fn is_system_relation(relation: &str) -> bool {
    match relation.split_once('.') {
        Some((schema, _)) => schema == "pg_catalog" || schema == "information_schema",
        None => relation.starts_with("pg_"),
    }
}

/// The function lists first (spec 5.7 precedence), then the catalog.
fn function_writes(f: &str, cfg: &RouterConfig, catalog: &Catalog) -> Option<bool> {
    list_says_writing(f, &cfg.write_function_list, &cfg.read_only_function_list)
        .or_else(|| catalog(CatalogKey::Function(f)))
}

/// Did a successful statement change data? Writes do; so may a read that ran on the primary
/// calling a function not known to be safe (it was sent there as a possible writer; with
/// session-level balancing a session whose node is the primary loses nothing by this).
/// The catalog's answer wins; a function never looked up (the read went to the primary for
/// another reason first) falls back to the built-in tables.
fn statement_wrote(stmt: &Statement, target: &Target, catalog: &Catalog) -> bool {
    let may_write = |f: &String| match catalog(CatalogKey::Function(f)) {
        Some(known) => known,
        None => super::functions::builtin_volatility(f) != Some(false),
    };
    stmt.writes
        || (stmt.kind == StmtKind::Read
            && *target == Target::Primary
            && stmt.functions.iter().any(may_write))
}
