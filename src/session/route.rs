//! The session's side of routing: turns requests into a target backend using the pure
//! router, keeps the state a second backend needs (SETs to replay, prepared statements to
//! re-prepare), and opens backend connections lazily.

use foldhash::HashMap;

use bytes::{Bytes, BytesMut};

use std::sync::Arc;

use super::request::Request;
use super::slot::{Slot, Stmts};
use crate::backend::{BackendError, Credential};
use crate::protocol::{
    self, decode_bind, decode_parse, decode_query, decode_target, tag, Frame, PgError,
};
use crate::router::{
    AdminCommand, Classifier, RouteResult, RouterConfig, SessionRouting, Statement, StmtKind,
    Target as PolicyTarget,
};
use crate::server::Context;

/// Where a request goes.
pub enum Target {
    Node(usize),
    /// A command the proxy answers itself.
    Admin(AdminCommand),
    /// Ask the primary's catalog whether these functions write, then route again.
    Lookup(Vec<String>),
}

/// What the session knows about a statement the client prepared.
struct Prepared {
    generation: u64,
    parse: Frame,
}

/// Routing state of one session.
pub struct Router {
    params: Vec<(String, String)>,
    credential: Credential,
    /// Nodes that failed for this session: reads go to the primary instead.
    unusable: Vec<bool>,
    statements: HashMap<String, Prepared>,
    next_generation: u64,
    /// Session-state commands (SET …) to replay on a backend opened later.
    state_log: Vec<String>,
    classifier: Arc<Classifier>,
    rcfg: Arc<RouterConfig>,
    policy: SessionRouting,
    /// Verdicts of the client's named statements (extended protocol), by name.
    verdicts: HashMap<String, Arc<Statement>>,
    /// Statements of the request being routed, handed to the slot that runs it.
    current: Stmts,
    /// A session-state change the proxy cannot mirror (e.g. SET via the extended
    /// protocol): from then on everything runs on the primary.
    pinned: bool,
    /// Functions whose volatility the last routing needed to know.
    lookups: Vec<String>,
    /// Reason code of the last routing decision (per-reason metrics).
    last_reason: &'static str,
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
            unusable: vec![false; cfg.backends.len().max(1)],
            statements: HashMap::default(),
            next_generation: 1,
            state_log: Vec::new(),
            classifier: ctx.classifier.clone(),
            rcfg,
            policy,
            verdicts: HashMap::default(),
            current: Stmts::new(),
            pinned: false,
            lookups: Vec::new(),
            last_reason: "primary_default",
            params,
            credential,
        }
    }

    /// Picks the backend for `req`. `in_txn`: the primary is inside a transaction.
    pub fn route(&mut self, ctx: &Context, req: &Request, in_txn: bool) -> Target {
        self.current.clear();
        self.lookups.clear();
        self.last_reason = "primary_default";
        let target = self.route_inner(ctx, req, in_txn);
        if self.lookups.is_empty() {
            target
        } else {
            Target::Lookup(std::mem::take(&mut self.lookups))
        }
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
            Request::Extended { frames, .. } => self.route_batch(ctx, frames),
            _ => PolicyTarget::Primary,
        };
        let (node, reason) = self.final_node(ctx, decision, in_txn, self.last_reason);
        self.last_reason = reason;
        Target::Node(node)
    }

    /// The policy's verdict adjusted for the session: transactions and pinned sessions stay
    /// on the primary, and nodes that failed for this session are avoided.
    fn final_node(
        &self,
        ctx: &Context,
        decision: PolicyTarget,
        in_txn: bool,
        reason: &'static str,
    ) -> (usize, &'static str) {
        let primary = self.rcfg.primary_node;
        let (node, reason) = match decision {
            // Transactions stay on the primary, so a transaction never spans two servers.
            PolicyTarget::Node(n) if !in_txn && !self.pinned => (n, reason),
            PolicyTarget::Node(_) if in_txn => (primary, "in_transaction"),
            PolicyTarget::Node(_) => (primary, "session_pinned"),
            _ => (primary, reason),
        };
        if self.unusable.get(node).copied().unwrap_or(true) {
            (primary, "node_unusable")
        } else {
            let readable = self.readable_or_fallback(ctx, node);
            if readable == node {
                (node, reason)
            } else {
                (readable, "replica_unavailable")
            }
        }
    }

    /// Reason code of the last [`Router::route`] verdict.
    pub fn last_reason(&self) -> &'static str {
        self.last_reason
    }

    /// The node this session writes to (the primary when it started).
    pub fn primary(&self) -> usize {
        self.rcfg.primary_node
    }

    /// This session's load-balance node.
    pub fn lb_node(&self) -> usize {
        self.policy.lb_node()
    }

    /// Functions whose volatility `PGPOOL EXPLAIN ROUTE <sql>` needs looked up first.
    pub fn explain_lookups(&self, ctx: &Context, sql: &str) -> Vec<String> {
        let stmt = self.classifier.classify_for(sql, &self.rcfg);
        let known =
            |f: &str| crate::router::builtin_volatility(f).or_else(|| ctx.known_volatility(f));
        match self.policy.route(&stmt, &self.rcfg, &known) {
            RouteResult::NeedVolatility(funcs) => funcs,
            RouteResult::Decided(_) => Vec::new(),
        }
    }

    /// Where `sql` would go now and why (`PGPOOL EXPLAIN ROUTE`); changes no state.
    pub fn explain(&self, ctx: &Context, sql: &str, in_txn: bool) -> crate::admin::Explained {
        let stmt = self.classifier.classify_for(sql, &self.rcfg);
        let known =
            |f: &str| crate::router::builtin_volatility(f).or_else(|| ctx.known_volatility(f));
        let (decision, reason) = match self.policy.route(&stmt, &self.rcfg, &known) {
            RouteResult::Decided(d) => (d.target, d.reason.code()),
            RouteResult::NeedVolatility(_) => (PolicyTarget::Primary, "volatility_unknown"),
        };
        let (node, reason) = self.final_node(ctx, decision, in_txn, reason);
        crate::admin::Explained { node, reason }
    }

    /// A replica that is down, past the delay threshold or no longer in recovery gets no
    /// reads: they go to the primary, or with `prefer_lower_delay_standby` to the
    /// least-delayed standby (spec 5.3 step 11). Checked per statement, so reads return to
    /// the replica as soon as it is back or has caught up.
    fn readable_or_fallback(&self, ctx: &Context, node: usize) -> usize {
        let primary = self.rcfg.primary_node;
        if node == primary || ctx.nodes.is_readable(node) {
            return node;
        }
        if ctx.config().prefer_lower_delay_standby {
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
        let known =
            |f: &str| crate::router::builtin_volatility(f).or_else(|| ctx.known_volatility(f));
        match self.policy.route(stmt, &self.rcfg, &known) {
            RouteResult::Decided(d) => {
                tracing::debug!(reason = %d.reason, target = ?d.target, "routed");
                self.last_reason = d.reason.code();
                d.target
            }
            RouteResult::NeedVolatility(funcs) => {
                self.lookups.extend(funcs);
                PolicyTarget::Primary
            }
        }
    }

    /// One target for a whole extended batch: every statement it executes must agree on a
    /// replica, or the batch runs on the primary.
    fn route_batch(&mut self, ctx: &Context, frames: &[Frame]) -> PolicyTarget {
        // Portals bound in this batch (a handful at most: a list beats a map).
        let mut portals: smallvec::SmallVec<[(&str, Arc<Statement>); 4]> = Default::default();
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
                    self.verdicts.insert(p.name.to_string(), stmt.clone());
                    parsed = Some(stmt);
                }
                tag::BIND => {
                    let Ok(b) = decode_bind(&f.body) else {
                        return PolicyTarget::Primary;
                    };
                    match self.verdicts.get(b.statement) {
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

    /// The backend answered requests of this session: keep the transaction state current.
    pub fn completed(&mut self, stmts: &[Arc<Statement>], ok: bool, status: u8) {
        for stmt in stmts {
            self.policy.after(stmt, &PolicyTarget::Primary, ok, status);
            if ok {
                self.note_state(stmt);
            }
        }
    }

    /// Remembers session-state commands that must reach a backend opened later.
    fn note_state(&mut self, stmt: &Statement) {
        match &stmt.kind {
            StmtKind::SessionSet { .. } if !stmt.multi => {
                self.state_log.push(stmt.text.to_string())
            }
            StmtKind::Discard { .. } => self.state_log.clear(),
            StmtKind::Prepare { .. } => self.pinned = true,
            _ => {}
        }
        if !stmt.creates_temp.is_empty() {
            // Temp tables exist only on the primary: keep the whole session there.
            self.pinned = true;
        }
    }

    /// Statements of the request just routed (given to the slot that runs it).
    pub fn take_current(&mut self) -> Stmts {
        std::mem::take(&mut self.current)
    }

    pub fn mark_unusable(&mut self, node: usize) {
        if let Some(u) = self.unusable.get_mut(node) {
            *u = true;
        }
        self.policy.fall_back_to_primary();
    }

    /// A connection to `node` for this session's user and database (cached or new).
    pub async fn connect(&self, ctx: &Context, node: usize) -> Result<Slot, BackendError> {
        super::checkout::other(ctx, node, &self.params, &self.credential).await
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

    /// Before an extended batch goes to `slot`: statements it binds or describes but that
    /// backend has not prepared (or holds an older version of) are prepared first, and the
    /// answers to those injected messages are dropped.
    pub fn prepare_for(&self, req: &Request, slot: &mut Slot) {
        let Request::Extended { frames, .. } = req else {
            return;
        };
        let mut inject = BytesMut::new();
        let mut parsed_here: Vec<&str> = Vec::new();
        for f in frames {
            let needed = match f.tag {
                tag::PARSE => {
                    if let Ok(p) = decode_parse(&f.body) {
                        parsed_here.push(p.name);
                        // A name the client closed earlier may linger on this backend.
                        if !p.name.is_empty()
                            && slot.prepared.contains_key(p.name)
                            && !self.statements.contains_key(p.name)
                        {
                            protocol::close(&mut inject, protocol::Target::Statement, p.name);
                            slot.expect_injected(protocol::btag::CLOSE_COMPLETE);
                            slot.prepared.remove(p.name);
                        }
                    }
                    None
                }
                tag::BIND => decode_bind(&f.body).ok().map(|b| b.statement),
                tag::DESCRIBE => match decode_target(&f.body, "Describe") {
                    Ok((protocol::Target::Statement, name)) => Some(name),
                    _ => None,
                },
                _ => None,
            };
            let Some(name) = needed else { continue };
            if parsed_here.contains(&name) {
                continue;
            }
            let Some(p) = self.statements.get(name) else {
                continue; // unknown: the server answers 26000 itself
            };
            if slot.prepared.get(name) == Some(&p.generation) {
                continue;
            }
            if slot.prepared.contains_key(name) && !name.is_empty() {
                protocol::close(&mut inject, protocol::Target::Statement, name);
                slot.expect_injected(protocol::btag::CLOSE_COMPLETE);
            }
            p.parse.encode(&mut inject);
            slot.expect_injected(protocol::btag::PARSE_COMPLETE);
            slot.prepared.insert(name.to_string(), p.generation);
            parsed_here.push(name);
        }
        slot.bout.extend_from_slice(&inject);
    }

    /// After `req` went to `node`: remember the statements it prepared or closed.
    pub fn after_send(&mut self, req: &Request, node: usize) {
        let _ = node;
        let Request::Extended { frames, .. } = req else {
            return;
        };
        for f in frames {
            match f.tag {
                tag::PARSE => {
                    if let Ok(p) = decode_parse(&f.body) {
                        let generation = self.next_generation;
                        self.next_generation += 1;
                        self.statements.insert(
                            p.name.to_string(),
                            Prepared {
                                generation,
                                parse: f.clone(),
                            },
                        );
                    }
                }
                tag::CLOSE => {
                    if let Ok((protocol::Target::Statement, name)) = decode_target(&f.body, "Close")
                    {
                        self.statements.remove(name);
                    }
                }
                _ => {}
            }
        }
    }

    /// Marks, on the slot that ran them, the statements a batch prepared.
    pub fn record_prepared(&self, req: &Request, slot: &mut Slot) {
        let Request::Extended { frames, .. } = req else {
            return;
        };
        for f in frames {
            if f.tag == tag::PARSE {
                if let Ok(p) = decode_parse(&f.body) {
                    if let Some(s) = self.statements.get(p.name) {
                        slot.prepared.insert(p.name.to_string(), s.generation);
                    }
                }
            } else if f.tag == tag::CLOSE {
                if let Ok((protocol::Target::Statement, name)) = decode_target(&f.body, "Close") {
                    slot.prepared.remove(name);
                }
            }
        }
    }
}

/// Whether running `req` (whose executed statements are `stmts`) may leave session state on
/// the backend that the next client must not inherit: settings, prepared statements,
/// cursors, LISTEN, temp tables, or anything a function might do. Only what provably leaves
/// nothing is clean — plain reads and INSERT/UPDATE/DELETE calling no function beyond the
/// known side-effect-free built-ins, transaction control, unnamed extended statements — so a
/// session made only of those returns its connection to the cache without a reset.
pub fn leaves_state(req: &Request, stmts: &[Arc<Statement>]) -> bool {
    match req {
        Request::Copy(_) => false,
        Request::FunctionCall(_) | Request::Terminate => true,
        Request::Simple(_) => stmts.is_empty() || stmts.iter().any(|s| stmt_leaves_state(s)),
        Request::Extended { frames, .. } => {
            let executes = frames.iter().filter(|f| f.tag == tag::EXECUTE).count();
            // A named statement persists; an Execute the router could not attribute
            // (a portal bound earlier) runs something unknown.
            let named = frames.iter().any(|f| {
                f.tag == tag::PARSE && decode_parse(&f.body).map_or(true, |p| !p.name.is_empty())
            });
            named || executes != stmts.len() || stmts.iter().any(|s| stmt_leaves_state(s))
        }
    }
}

fn stmt_leaves_state(s: &Statement) -> bool {
    *s.memo.leaves_state.get_or_init(|| compute_leaves_state(s))
}

fn compute_leaves_state(s: &Statement) -> bool {
    use crate::stats::StmtClass;
    let clean_kind = match &s.kind {
        StmtKind::Read => true,
        // The classifier does not list the functions a write calls (it goes to the primary
        // whatever they are): look for calls here.
        StmtKind::Write => {
            matches!(
                s.class(),
                StmtClass::Insert | StmtClass::Update | StmtClass::Delete
            ) && !calls_unknown_function(&s.text)
        }
        StmtKind::Begin { .. }
        | StmtKind::Commit
        | StmtKind::Rollback
        | StmtKind::Savepoint
        | StmtKind::Release
        | StmtKind::RollbackToSavepoint
        | StmtKind::Empty => true,
        _ => false,
    };
    !clean_kind
        || s.multi
        || !s.creates_temp.is_empty()
        || s.functions
            .iter()
            .any(|f| crate::router::builtin_volatility(f) != Some(false))
}

/// Whether `sql` may call a function other than the known side-effect-free built-ins: a
/// word right before `(` that is not a keyword taking a parenthesised list, nor the table
/// of `INSERT INTO t (columns)`.
fn calls_unknown_function(sql: &str) -> bool {
    use crate::router::TokKind;
    if !sql.contains('(') {
        return false;
    }
    const NOT_CALLS: &[&str] = &[
        "values",
        "in",
        "and",
        "or",
        "not",
        "where",
        "set",
        "exists",
        "any",
        "all",
        "some",
        "cast",
        "on",
        "using",
        "returning",
        "select",
        "from",
        "join",
        "conflict",
        "when",
        "then",
        "else",
        "as",
        "by",
        "is",
        "between",
        "like",
        "ilike",
    ];
    let lexed = crate::router::lex(sql);
    if lexed.unterminated {
        return true;
    }
    let toks = &lexed.tokens;
    let word = |i: usize| sql.get(toks[i].start..toks[i].end).unwrap_or("");
    let is_kw =
        |i: usize, k: &str| toks[i].kind == TokKind::Word && word(i).eq_ignore_ascii_case(k);
    for i in 1..toks.len() {
        if toks[i].kind != TokKind::Punct(b'(') {
            continue;
        }
        let p = i - 1;
        match toks[p].kind {
            TokKind::Word => {}
            TokKind::QuotedIdent => {
                // `INSERT INTO "T" (…)` names a table; elsewhere a quoted function.
                if p >= 1 && is_kw(p - 1, "into") {
                    continue;
                }
                return true;
            }
            _ => continue, // grouping, not a call
        }
        if NOT_CALLS.iter().any(|k| is_kw(p, k)) {
            continue;
        }
        // INSERT INTO [schema.]table (columns)
        let table_start = if p >= 2 && toks[p - 1].kind == TokKind::Punct(b'.') {
            p - 2
        } else {
            p
        };
        if table_start >= 1 && is_kw(table_start - 1, "into") {
            continue;
        }
        if crate::router::builtin_volatility(word(p)) != Some(false) {
            return true;
        }
    }
    false
}

/// An ErrorResponse plus ReadyForQuery, for requests the proxy refuses itself.
#[allow(dead_code)]
pub fn error_answer(e: &PgError, status: u8) -> Bytes {
    let mut out = BytesMut::new();
    e.encode(&mut out);
    protocol::ready_for_query(&mut out, status);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::ClassifyOptions;

    #[test]
    fn only_statements_that_provably_leave_nothing_are_clean() {
        let classifier = Classifier::new(ClassifyOptions::default());
        let cases = [
            ("select abalance from pgbench_accounts where aid = 1", false),
            ("SELECT count(*), max(v) FROM t", false),
            ("insert into t values (1)", false),
            ("update t set v = v + 1 where id = 2", false),
            ("delete from t", false),
            ("begin", false),
            ("commit", false),
            ("rollback", false),
            ("savepoint a", false),
            ("", false),
            ("set work_mem = '1MB'", true),
            ("select set_config('work_mem', '1MB', false)", true),
            ("select pg_advisory_lock(1)", true),
            ("select nextval('s')", true),
            ("select my_function()", true),
            ("insert into t values (my_function())", true),
            ("insert into t (a, b) values (1, lower('X'))", false),
            ("insert into s.t (a) values (1), (2)", false),
            (
                "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
                 VALUES (1, 2, 3, -5, CURRENT_TIMESTAMP)",
                false,
            ),
            ("update t set v = (v + 1) where id in (1, 2)", false),
            ("update t set v = nextval('s')", true),
            ("delete from t where id = any(f())", true),
            ("insert into t select * from \"F\"(1)", true),
            ("update t set v = 'unterminated", true),
            ("do $$ begin perform 1; end $$", true),
            ("declare c cursor with hold for select 1", true),
            ("listen x", true),
            ("prepare p as select 1", true),
            ("create temp table x(v int)", true),
            ("select 1 into temp x", true),
            ("select 1; select 2", true),
            ("create table x(v int)", true),
            ("load 'auto_explain'", true),
            ("discard all", true),
            ("not even sql", true),
        ];
        for (sql, dirty) in cases {
            let mut body = BytesMut::new();
            protocol::query(&mut body, sql);
            let frame = Frame::new(tag::QUERY, Bytes::copy_from_slice(&body[5..]));
            let stmts = [classifier.classify(sql)];
            assert_eq!(
                leaves_state(&Request::Simple(frame), &stmts),
                dirty,
                "{sql}"
            );
        }
    }
}
