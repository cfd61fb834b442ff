//! The session's side of routing: turns requests into a target backend using the pure
//! router, keeps the state a second backend needs (SETs to replay, prepared statements to
//! re-prepare), and opens backend connections lazily.

use foldhash::HashMap;

use std::sync::Arc;

use super::catalog::Questions;
use super::request::Request;
use super::slot::{Slot, Stmts};
use super::statements::Registry;
use super::txnlb::{Defaults, TxnBalance};
use crate::backend::{BackendError, Credential};
use crate::context::Context;
use crate::protocol::{decode_bind, decode_parse, decode_query, tag, Frame};
use crate::router::{
    AdminCommand, Classifier, Reason, RouteResult, RouterConfig, SessionRouting, Statement,
    StmtKind, Target as PolicyTarget,
};

mod explain;
mod prepared;

/// Routing reason: the request belongs to an implicit transaction still open on a backend
/// (a batch ended by Flush, not yet by Sync), or opens one.
const UNSYNCED: Reason = Reason::UnsyncedBatch;

/// Where a request goes.
pub enum Target {
    Node(usize),
    /// A command the proxy answers itself.
    Admin(AdminCommand),
    /// Ask the primary's catalog about these names, then route again.
    Lookup(Questions),
    /// Ask the primary for the session's transaction defaults, then route again.
    TxnDefaults,
}

/// Routing state of one session.
pub struct Router {
    params: Vec<(String, String)>,
    /// The session's database (catalog facts are per database).
    database: String,
    credential: Credential,
    /// Nodes that failed for this session: reads go to the primary instead.
    unusable: Vec<bool>,
    /// The client's statements, as the servers prepared them.
    registry: Registry,
    /// The backend that received messages since its last sync point (a batch ended by
    /// Flush): what follows, up to and including the next sync point, goes there too.
    open_unit: Option<usize>,
    /// Session-state commands (SET …) to replay on a backend opened later.
    state_log: Vec<String>,
    classifier: Arc<Classifier>,
    rcfg: Arc<RouterConfig>,
    policy: SessionRouting,
    /// Verdicts of the client's statements (extended protocol), by name: the one of the
    /// Parse the server accepted (see [`Router::settle`]); meanwhile the one of a Parse sent
    /// that PostgreSQL cannot refuse for its name.
    verdicts: HashMap<String, Arc<Statement>>,
    /// Verdicts of the Parses of the request being routed, in order.
    parse_verdicts: Vec<Arc<Statement>>,
    /// Statements of the request being routed, handed to the slot that runs it.
    current: Stmts,
    /// A session-state change the proxy cannot mirror (e.g. SET via the extended
    /// protocol): from then on everything runs on the primary.
    pinned: bool,
    /// Catalog facts the last routing needed to know.
    lookups: Questions,
    /// A statement of the open transaction changed the catalog: clear the cached facts
    /// again when it ends (sessions may have cached what they saw before the commit).
    catalog_changed_in_txn: bool,
    /// Why the last routing decision went where it went (per-reason metrics).
    last_reason: Reason,
    /// Read-your-writes bookkeeping (`read_your_writes`).
    pub(super) ryw: super::ryw::ReadYourWrites,
    /// What reads inside the open transaction may run on the load-balance node.
    pub txn: TxnBalance,
}

impl Router {
    pub fn new(ctx: &Context, params: Vec<(String, String)>, credential: Credential) -> Router {
        let cfg = ctx.config();
        let rcfg = ctx.router_config();
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let healthy = vec![true; cfg.backends.len().max(1)];
        let policy = SessionRouting::new(
            &rcfg,
            get("user"),
            get("database"),
            get("application_name"),
            rand::random::<f64>(),
            &healthy,
        );
        Router {
            database: get("database").to_string(),
            unusable: vec![false; cfg.backends.len().max(1)],
            registry: Registry::new(),
            open_unit: None,
            state_log: Vec::new(),
            classifier: ctx.classifier.clone(),
            rcfg,
            policy,
            verdicts: HashMap::default(),
            parse_verdicts: Vec::new(),
            current: Stmts::new(),
            pinned: false,
            lookups: Questions::default(),
            catalog_changed_in_txn: false,
            last_reason: Reason::PrimaryDefault,
            ryw: Default::default(),
            txn: TxnBalance::default(),
            params,
            credential,
        }
    }

    /// Picks the backend for `req`. `in_txn`: the primary is inside a transaction.
    pub fn route(&mut self, ctx: &Context, req: &Request, in_txn: bool) -> Target {
        self.current.clear();
        self.parse_verdicts.clear();
        self.lookups.clear();
        self.last_reason = Reason::PrimaryDefault;
        let target = self.route_inner(ctx, req, in_txn);
        // No catalog look-up when the node is set already: it would run on that node
        // inside the client's open implicit transaction.
        if !self.lookups.is_empty() && self.last_reason != UNSYNCED {
            return Target::Lookup(std::mem::take(&mut self.lookups));
        }
        // A transaction starts: its reads may balance once the defaults it inherits are known.
        if !in_txn
            && self.open_unit.is_none()
            && self.last_reason != UNSYNCED
            && self.rcfg.load_balance_mode
            && self.policy.lb_node() != self.rcfg.primary_node
            && self.txn.needs_defaults(&self.current)
        {
            return Target::TxnDefaults;
        }
        target
    }

    fn route_inner(&mut self, ctx: &Context, req: &Request, in_txn: bool) -> Target {
        let decision = match req {
            Request::Simple(f) => match decode_query(&f.body) {
                Ok(sql) => {
                    let stmt = self.classifier.classify_for(sql, &self.rcfg);
                    self.current.push(stmt.clone());
                    if let StmtKind::Admin(cmd) = &stmt.kind {
                        return Target::Admin(cmd.clone());
                    }
                    self.decide(ctx, &stmt)
                }
                Err(_) => PolicyTarget::Primary,
            },
            Request::Extended { frames, sync } => {
                let verdict = self.route_batch(ctx, frames);
                if *sync {
                    verdict
                } else {
                    // What comes after a Flush joins this batch's implicit transaction, and
                    // it may write: the unit starts on the primary.
                    self.last_reason = UNSYNCED;
                    PolicyTarget::Primary
                }
            }
            _ => PolicyTarget::Primary,
        };
        let (node, reason) =
            self.final_node(ctx, decision, in_txn, self.last_reason, &self.current);
        self.last_reason = reason;
        Target::Node(node)
    }

    /// The policy's verdict adjusted for the session: reads of transactions that cannot
    /// balance (see [`TxnBalance::gate`]) and of pinned sessions stay on the primary, and
    /// nodes that failed for this session are avoided.
    fn final_node(
        &self,
        ctx: &Context,
        decision: PolicyTarget,
        in_txn: bool,
        reason: Reason,
        stmts: &[Arc<Statement>],
    ) -> (usize, Reason) {
        let primary = self.rcfg.primary_node;
        if let Some(node) = self.open_unit {
            return (node, UNSYNCED);
        }
        let gate = match in_txn {
            true => self.txn.gate(stmts),
            false => None,
        };
        let (node, reason) = match (decision, gate) {
            (PolicyTarget::Node(_), Some(why)) => (primary, why),
            (PolicyTarget::Node(n), None) if !self.pinned => (n, reason),
            (PolicyTarget::Node(_), None) => (primary, Reason::SessionPinned),
            _ => (primary, reason),
        };
        if self.unusable.get(node).copied().unwrap_or(true) {
            (primary, Reason::NodeUnusable)
        } else {
            let readable = self.readable_or_fallback(ctx, node, in_txn);
            if readable == node {
                (node, reason)
            } else {
                (readable, Reason::ReplicaUnavailable)
            }
        }
    }

    /// Why the last [`Router::route`] verdict went where it went.
    pub fn last_reason(&self) -> Reason {
        self.last_reason
    }

    /// A later stage moved the request elsewhere, for this reason.
    pub fn set_reason(&mut self, reason: Reason) {
        self.last_reason = reason;
    }

    /// The node this session writes to (the primary when it started).
    pub fn primary(&self) -> usize {
        self.rcfg.primary_node
    }

    /// The session's database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// This session's load-balance node.
    pub fn lb_node(&self) -> usize {
        self.policy.lb_node()
    }

    /// A replica that is down, past the delay threshold or no longer in recovery gets no
    /// reads: they go to the primary, or with `prefer_lower_delay_standby` to the
    /// least-delayed standby (spec 5.3 step 11). Checked per statement, so reads return to
    /// the replica as soon as it is back or has caught up.
    /// Inside a transaction only the primary: its reads must not spread over two standbys.
    fn readable_or_fallback(&self, ctx: &Context, node: usize, in_txn: bool) -> usize {
        let primary = self.rcfg.primary_node;
        if node == primary || ctx.nodes.is_readable(node) {
            return node;
        }
        if ctx.config().prefer_lower_delay_standby && !in_txn {
            let r = rand::random::<f64>();
            if let Some(n) = ctx
                .nodes
                .least_delayed_standby(&self.rcfg.weights, primary, r)
            {
                if !self.unusable.get(n).copied().unwrap_or(true) {
                    return n;
                }
            }
        }
        primary
    }

    fn decide(&mut self, ctx: &Context, stmt: &Statement) -> PolicyTarget {
        match self
            .policy
            .route(stmt, &self.rcfg, &|k| ctx.catalog.get(&self.database, k))
        {
            RouteResult::Decided(d) => {
                tracing::debug!(reason = %d.reason, target = ?d.target, "routed");
                self.last_reason = d.reason;
                d.target
            }
            RouteResult::NeedCatalog {
                functions,
                relations,
            } => {
                self.lookups.functions.extend(functions);
                self.lookups.relations.extend(relations);
                PolicyTarget::Primary
            }
        }
    }

    /// One target for a whole extended batch: every statement it executes must agree on a
    /// replica, or the batch runs on the primary.
    fn route_batch(&mut self, ctx: &Context, frames: &[Frame]) -> PolicyTarget {
        // Portals bound in this batch (a handful at most: a list beats a map).
        let mut portals: smallvec::SmallVec<[(&str, Arc<Statement>); 4]> = Default::default();
        // Statements parsed in this batch: a Bind after them uses theirs (were a Parse
        // refused, the server skips the rest of the batch anyway).
        let mut parsed_here: smallvec::SmallVec<[(&str, Arc<Statement>); 4]> = Default::default();
        let mut target: Option<PolicyTarget> = None;
        let mut parsed: Option<Arc<Statement>> = None;
        for f in frames {
            match f.tag {
                tag::PARSE => {
                    let Ok(p) = decode_parse(&f.body) else {
                        return PolicyTarget::Primary;
                    };
                    let stmt = self.classifier.classify_for(p.query, &self.rcfg);
                    if matches!(
                        stmt.kind,
                        StmtKind::SessionSet { .. }
                            | StmtKind::Discard { .. }
                            | StmtKind::Prepare { .. }
                    ) {
                        // Session state set with parameters cannot be replayed elsewhere.
                        self.pinned = true;
                    }
                    self.parse_verdicts.push(stmt.clone());
                    parsed_here.retain(|(n, _)| *n != p.name);
                    parsed_here.push((p.name, stmt.clone()));
                    parsed = Some(stmt);
                }
                tag::BIND => {
                    let Ok(b) = decode_bind(&f.body) else {
                        return PolicyTarget::Primary;
                    };
                    let here = parsed_here.iter().find(|(n, _)| *n == b.statement);
                    match here
                        .map(|(_, s)| s)
                        .or_else(|| self.verdicts.get(b.statement))
                    {
                        Some(s) => {
                            portals.retain(|(p, _)| *p != b.portal);
                            portals.push((b.portal, s.clone()));
                        }
                        None => return PolicyTarget::Primary,
                    }
                }
                tag::EXECUTE => {
                    let Ok((portal, _)) = crate::protocol::decode_execute(&f.body) else {
                        return PolicyTarget::Primary;
                    };
                    let found = portals.iter().find(|(p, _)| *p == portal);
                    let Some(stmt) = found.map(|(_, s)| s.clone()) else {
                        // A portal from an earlier batch (or SQL DECLARE): where it was made.
                        return PolicyTarget::Primary;
                    };
                    let t = self.decide(ctx, &stmt);
                    self.current.push(stmt);
                    match (target, t) {
                        (None, t) => target = Some(t),
                        (Some(a), b) if a == b => {}
                        _ => return PolicyTarget::Primary,
                    }
                }
                _ => {}
            }
        }
        match (target, parsed) {
            (Some(t), _) => t,
            // Parse/Describe only (a driver preparing): where the statement would run.
            (None, Some(stmt)) => self.decide(ctx, &stmt),
            (None, None) => PolicyTarget::Primary,
        }
    }

    /// The backend answered requests of this session: keep the transaction state current,
    /// and drop the cached catalog facts after DDL (again when its transaction ends).
    pub fn completed(
        &mut self,
        ctx: &Context,
        stmts: &[Arc<Statement>],
        ok: bool,
        status: u8,
        on_replica: bool,
    ) {
        self.txn.answered(stmts, ok, status, on_replica);
        let mut wrote = false;
        for stmt in stmts {
            let db = &self.database;
            let catalog = |k: crate::router::CatalogKey<'_>| ctx.catalog.get(db, k);
            self.policy
                .after(stmt, &PolicyTarget::Primary, ok, status, &catalog);
            wrote |= self
                .ryw
                .ran(stmt, self.policy.may_have_written(stmt, &catalog));
            if ok {
                self.note_state(stmt);
                if stmt.changes_catalog {
                    ctx.catalog.clear();
                    self.catalog_changed_in_txn = status != b'I';
                }
            }
        }
        if status == b'I' && std::mem::take(&mut self.catalog_changed_in_txn) {
            ctx.catalog.clear();
        }
        self.ryw.after_request(wrote, status);
    }

    /// Remembers session-state commands that must reach a backend opened later.
    fn note_state(&mut self, stmt: &Statement) {
        match &stmt.kind {
            StmtKind::SessionSet { .. } if !stmt.multi => {
                self.state_log.push(stmt.text.to_string());
                self.registry.settings_changed(&self.state_log);
            }
            StmtKind::Discard { .. } => {
                self.state_log.clear();
                self.registry.settings_changed(&self.state_log);
            }
            StmtKind::Prepare { .. } => self.pinned = true,
            _ => {}
        }
        if stmt.pins_session {
            // Session state (set_config) the proxy cannot replay elsewhere.
            self.pinned = true;
        }
        if !stmt.creates_temp.is_empty() {
            // Temp tables exist only on the primary: keep the whole session there.
            self.pinned = true;
        }
    }

    /// Statements of the request just routed, still held.
    pub fn current(&self) -> &[Arc<Statement>] {
        &self.current
    }

    /// See [`TxnBalance::needs_primary_query`], for the request just routed.
    pub fn needs_primary_query(&mut self) -> bool {
        self.txn.needs_primary_query(&self.current)
    }

    /// Statements of the request just routed (given to the slot that runs it).
    pub fn take_current(&mut self) -> Stmts {
        std::mem::take(&mut self.current)
    }

    /// The answer to [`super::txnlb::DEFAULTS_QUERY`] (`None`: no usable answer).
    pub fn set_txn_defaults(&mut self, answer: Option<&str>) {
        self.txn.set_defaults(answer.and_then(Defaults::parse));
    }

    pub fn mark_unusable(&mut self, node: usize) {
        if let Some(u) = self.unusable.get_mut(node) {
            *u = true;
        }
        self.policy.fall_back_to_primary();
    }

    /// A connection to `node` for this session's user and database (cached or new);
    /// `bounded`: within the transaction-mode bound, waiting for room.
    pub async fn connect(
        &self,
        ctx: &Context,
        node: usize,
        bounded: bool,
    ) -> Result<Slot, BackendError> {
        super::checkout::other(ctx, node, &self.params, &self.credential, bounded).await
    }

    /// Brings a newly opened backend to the session's state.
    pub async fn replay_state(&self, slot: &mut Slot, max_len: u64) -> Result<(), BackendError> {
        slot.dirty |= !self.state_log.is_empty();
        for sql in &self.state_log {
            if let Some(e) = slot.exec_silent(sql, max_len).await? {
                return Err(BackendError::Server(e));
            }
        }
        Ok(())
    }

    /// Other connected backends that must run `req` too (session-state commands sent as a
    /// simple Query; other forms pin the session to the primary instead).
    pub fn mirror_targets(&self, req: &Request, node: usize, slots: &[Option<Slot>]) -> Vec<usize> {
        let Request::Simple(_) = req else {
            return Vec::new();
        };
        let mirrored = self.current.iter().any(|s| {
            !s.multi
                && matches!(
                    s.kind,
                    StmtKind::SessionSet {
                        forces_primary: false,
                        ..
                    } | StmtKind::Discard { .. }
                )
        });
        if !mirrored {
            return Vec::new();
        }
        (0..slots.len())
            .filter(|&i| i != node && slots[i].is_some())
            .collect()
    }

    /// The SQL text of a simple Query.
    pub fn simple_text(req: &Request) -> Option<String> {
        match req {
            Request::Simple(f) => decode_query(&f.body).ok().map(str::to_string),
            _ => None,
        }
    }

    /// Messages went to a backend since its last sync point: until the next one (Sync, a
    /// simple Query), everything goes there (PostgreSQL runs them as one transaction).
    pub fn unit_open(&self) -> bool {
        self.open_unit.is_some()
    }
}
