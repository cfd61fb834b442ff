//! Getting a backend connection for a session: from the cache when one fits (the client
//! then proves the same credentials the connection was opened with), else a new connection
//! whose authentication the client mirrors. And giving it back when the session ends.

use std::time::Duration;

use super::auth::{ClientAuth, Proof, Verified};
use super::reset_list::{resets_only_session_state, settle_statements, MAX_HELD_STATEMENTS};
use super::slot::Slot;
use super::SessionError;
use crate::backend::{
    self, Acquired, AuthMemo, BackendError, CachedLogin, Credential, Idle, NodeAddr, PoolKey,
    Startup,
};
use crate::config::PoolMode;
use crate::context::Context;
use crate::protocol::{AuthRequest, PgError};

/// Databases whose connections are never cached: a lingering connection to a template
/// makes CREATE DATABASE fail.
fn cacheable_database(db: &str) -> bool {
    !matches!(db, "template0" | "template1")
}

/// The pool key for `params` on `node`, when connections of this kind may be cached.
pub fn pool_key(ctx: &Context, node: usize, params: &[(String, String)]) -> Option<PoolKey> {
    let key = PoolKey::new(node, params);
    (ctx.config().connection_cache && cacheable_database(&key.database)).then_some(key)
}

fn auth_failed(user: &str) -> SessionError {
    SessionError::Client(PgError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    ))
}

/// What the client must answer again to use a cached connection.
fn memo_request(memo: &AuthMemo) -> Option<AuthRequest> {
    match memo {
        AuthMemo::Trust => None,
        AuthMemo::Md5 => Some(AuthRequest::Md5 { salt: [0; 4] }),
        AuthMemo::Scram => Some(AuthRequest::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        }),
        AuthMemo::Cleartext(_) => Some(AuthRequest::Cleartext),
    }
}

fn memo_of(request: &AuthRequest, cred: &Credential) -> AuthMemo {
    match (request, cred) {
        (AuthRequest::Md5 { .. }, _) => AuthMemo::Md5,
        (AuthRequest::Sasl { .. }, _) => AuthMemo::Scram,
        (AuthRequest::Cleartext, Credential::Password(p)) => AuthMemo::Cleartext(p.clone()),
        _ => AuthMemo::Trust,
    }
}

/// How a new session starts: the server's parameters to greet the client with, the
/// credential for backend connections, and the primary connection when the session keeps
/// one from the start (when connections are not cached).
pub struct Greeting {
    /// The server's ParameterStatus set, shared with the connection it came from.
    pub params: std::sync::Arc<Vec<(String, String)>>,
    /// The client's own application_name, shown instead of the server's when the
    /// connection was opened by another client.
    pub application_name: Option<String>,
    pub credential: Credential,
    pub primary: Option<Slot>,
}

/// Authenticates a new client. When a cached connection fits, the client proves what that
/// connection was opened with and no backend is touched: the connection is taken only at
/// the first query, so idle clients hold no backend. Otherwise a new connection is opened
/// (the client mirrors its authentication) and, when cacheable, parked in the cache at once.
/// `verified` is what pool_hba.conf already established: the client then neither mirrors
/// nor re-proves anything.
pub async fn start(
    ctx: &Context,
    client: &mut ClientAuth<'_>,
    params: &[(String, String)],
    verified: Option<Verified>,
) -> Result<Greeting, SessionError> {
    let primary = wait_for_primary(ctx).await?;
    let key = pool_key(ctx, primary, params);
    let mut verified = verified;
    let bounded = key.as_ref().filter(|k| pools_transactions(ctx, k));
    // Under a bound, a login waits until a cached connection can greet it or there is room
    // to open one: logins alone never push the count past the bound.
    let (cached, mut permit) = match (bounded, key.as_ref()) {
        (Some(k), _) => match wait_for_connection(ctx, k, || ctx.pool.peek(k))
            .await
            .map_err(SessionError::Client)?
        {
            Acquired::Found(c) => {
                // Only looked: the connection is still there for the next waiter.
                ctx.conn_limits.of(k).returned();
                (Some(c), None)
            }
            Acquired::Permit(p) => (None, Some(p)),
        },
        (None, Some(k)) => (ctx.pool.peek(k), None),
        (None, None) => (None, None),
    };
    if let Some(cached) = cached {
        let v = match verified.take() {
            Some(v) => v,
            None => reauthenticate(client, &cached.auth).await?,
        };
        if may_reuse(&v.proof, &cached) {
            return Ok(Greeting {
                params: cached.params,
                application_name: Some(client_application_name(params).to_string()),
                credential: v.credential,
                primary: None,
            });
        }
        // Not enough to share a connection: a new one lets the backend judge the client.
        verified = Some(v);
        if let Some(k) = bounded {
            // Room under the bound, if need be by closing an idle connection of the key.
            permit = match wait_for_connection(ctx, k, || ctx.pool.checkout(k))
                .await
                .map_err(SessionError::Client)?
            {
                Acquired::Permit(p) => Some(p),
                Acquired::Found(mut idle) => {
                    let p = idle.permit.take();
                    idle.conn.terminate().await;
                    p
                }
            };
        }
    }
    let mut slot = open_primary(ctx, primary, client, params, key.clone(), verified).await?;
    slot.permit = permit;
    let greeting_params = slot.conn.params.clone();
    let credential = slot.credential.clone();
    let primary = match key {
        Some(k) => {
            let limit = slot.permit.is_some().then(|| ctx.conn_limits.of(&k));
            let idle = Idle::new(slot.conn, slot.credential, slot.auth).with_permit(slot.permit);
            for c in ctx.pool.checkin_fresh(k, idle) {
                c.terminate().await;
            }
            if let Some(l) = limit {
                l.returned();
            }
            None
        }
        None => Some(slot),
    };
    Ok(Greeting {
        params: greeting_params,
        application_name: None,
        credential,
        primary,
    })
}

/// Whether sessions of `key`'s user and database run in transaction mode: their backend
/// connections are shared transaction by transaction, within `default_pool_size`.
pub fn pools_transactions(ctx: &Context, key: &PoolKey) -> bool {
    ctx.config().pool_mode_for(&key.user, &key.database) == PoolMode::Transaction
}

/// Waits, up to `query_wait_timeout`, until `find` yields a cached connection or there is
/// room under `key`'s bound for a new one; FATAL 53300 when none came free in time.
async fn wait_for_connection<T>(
    ctx: &Context,
    key: &PoolKey,
    find: impl FnMut() -> Option<T>,
) -> Result<Acquired<T>, PgError> {
    let (wait, size) = {
        let cfg = ctx.config();
        (cfg.query_wait_timeout, cfg.default_pool_size)
    };
    let limit = (wait > 0).then(|| Duration::from_secs(wait));
    // Idle connections of the same user and database opened with other startup parameters
    // (another client_encoding, say) hold permits this session cannot use: one is closed.
    let make_room = || match ctx.pool.take_other_params(key) {
        Some(mut idle) => {
            drop(idle.permit.take());
            tokio::spawn(async move { idle.conn.terminate().await });
            true
        }
        None => false,
    };
    ctx.conn_limits
        .of(key)
        .acquire(find, make_room, limit)
        .await
        .ok_or_else(|| {
            PgError::fatal(
                "53300",
                format!(
                    "no backend connection for user \"{}\" and database \"{}\" came free within \
                 query_wait_timeout ({wait} s)",
                    key.user, key.database
                ),
            )
            .with_detail(format!(
            "pool_mode = transaction: all {size} connections (default_pool_size) to backend {} \
             are in use.",
            key.node
        ))
        })
}

/// The client proves the credentials a cached connection was opened with (spec 4.5).
async fn reauthenticate(
    client: &mut ClientAuth<'_>,
    memo: &AuthMemo,
) -> Result<Verified, SessionError> {
    let Some(req) = memo_request(memo) else {
        return Ok(Verified {
            credential: Credential::None,
            proof: Proof::BackendTrust,
        });
    };
    let given = client.mirror(&req).await?;
    if let (AuthMemo::Cleartext(saved), Credential::Password(p)) = (memo, &given.credential) {
        if !same_secret(saved, p) {
            return Err(auth_failed(client.user));
        }
    }
    Ok(given)
}

/// Whether a client that proved `proof` may use a cached connection (`cached`) another
/// login opened. Only these pairs may; anything else opens its own connection, so the
/// backend judges what the proxy could not:
/// - pool_hba.conf admitted the client (`trust`, `cert`, or a method checked against
///   pool_passwd): with any cached connection;
/// - the client proved its pool_passwd entry: with any cached connection (entries that
///   change on reload take their user's cached connections with them);
/// - the backend trusted the user: with a connection the backend also trusted;
/// - an unchecked clear-text password: only with the connection that same password opened.
fn may_reuse(proof: &Proof, cached: &CachedLogin) -> bool {
    match (proof, &cached.auth, &cached.credential) {
        (Proof::Hba | Proof::Entry, _, _) => true,
        (Proof::BackendTrust, AuthMemo::Trust, _) => true,
        (Proof::Unchecked(given), _, Credential::Password(opened_with)) => {
            same_secret(given, opened_with)
        }
        (Proof::Unchecked(_), _, _) | (Proof::BackendTrust, _, _) | (Proof::Nothing, _, _) => false,
    }
}

fn same_secret(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// The application_name the client asked for ("" when none).
fn client_application_name(client: &[(String, String)]) -> &str {
    client
        .iter()
        .find(|(k, _)| k == "application_name")
        .map_or("", |(_, v)| v.as_str())
}

/// The primary node, waiting for the primary search up to `connect_timeout` when none is
/// known (a switchover in progress).
async fn wait_for_primary(ctx: &Context) -> Result<usize, SessionError> {
    let limit = std::time::Duration::from_millis(ctx.config().connect_timeout.clamp(1, 30_000));
    ctx.nodes
        .wait_for_primary(limit)
        .await
        .ok_or_else(|| SessionError::Client(crate::replication::no_primary()))
}

/// Opens a new primary connection; the client mirrors the server's authentication unless
/// it already authenticated (`verified`: pool_hba.conf, or a proof a cached connection
/// did not accept).
async fn open_primary(
    ctx: &Context,
    index: usize,
    client: &mut ClientAuth<'_>,
    params: &[(String, String)],
    key: Option<PoolKey>,
    verified: Option<Verified>,
) -> Result<Slot, SessionError> {
    let cfg = ctx.config();
    let node = cfg
        .backends
        .get(index)
        .ok_or_else(|| SessionError::Client(PgError::fatal("08006", "no backend is configured")))?;
    let addr = NodeAddr {
        node: index,
        host: node.hostname.clone(),
        port: node.port,
        tls: ctx.tls.backend(),
    };
    let timeout = crate::replication::connect_timeout(ctx, index);
    let started = backend::start(&addr, params, timeout, cfg.max_message_size).await;
    let (conn, credential, memo) = match super::failover::primary_started(ctx, started)? {
        // A trusting primary; a pool_hba login still keeps its credential for others.
        Startup::Ready(c) => (
            c,
            verified.map_or(Credential::None, |v| v.credential),
            AuthMemo::Trust,
        ),
        Startup::NeedsAuth(pending) => {
            let credential = match verified {
                Some(v) => v.credential,
                None => client.mirror(&pending.request).await?.credential,
            };
            let memo = memo_of(&pending.request, &credential);
            let conn = pending.complete(&credential).await.map_err(|e| match e {
                BackendError::Server(pg) if pg.code == "28P01" => auth_failed(client.user),
                other => other.into(),
            })?;
            (conn, credential, memo)
        }
    };
    if crate::replication::reports_standby(ctx, &conn.params) {
        // Never a write to a standby: the search finds the real primary.
        conn.terminate().await;
        crate::replication::primary_in_recovery(ctx, index);
        return Err(SessionError::Client(crate::replication::not_primary(index)));
    }
    ctx.pool.note_opened(index);
    Ok(Slot::opened(conn, credential, memo, key))
}

/// Another node's connection for a running session (the client is already authenticated):
/// from the cache, else opened with the credential that authenticated the primary.
pub async fn other(
    ctx: &Context,
    node: usize,
    params: &[(String, String)],
    credential: &Credential,
    bounded: bool,
) -> Result<Slot, BackendError> {
    let mut key = pool_key(ctx, node, params);
    let max = ctx.config().max_message_size;
    let mut permit = None;
    let cached = match key.as_ref() {
        Some(k) if bounded => {
            match wait_for_connection(ctx, k, || ctx.pool.checkout(k))
                .await
                .map_err(BackendError::Server)?
            {
                Acquired::Found(idle) => Some(idle),
                Acquired::Permit(p) => {
                    permit = Some(p);
                    None
                }
            }
        }
        Some(k) => ctx.pool.checkout(k),
        None => None,
    };
    if let Some(idle) = cached {
        // The key moves into the slot (it goes back to the cache with it) and comes back
        // only if the cached connection turns out unusable.
        let mut slot = Slot::from_idle(idle, key.take());
        match adopt_application_name(&mut slot, params, max).await {
            Ok(()) => {
                tracing::debug!(
                    node,
                    backend_pid = slot.conn.pid,
                    "reusing a cached connection"
                );
                return Ok(slot);
            }
            Err(e) => {
                tracing::debug!(node, "cached connection unusable: {e}");
                key = slot.pool_key.take();
                permit = slot.permit.take();
            }
        }
    }
    let cfg = ctx.config();
    let b = cfg
        .backends
        .get(node)
        .ok_or(BackendError::Closed { node })?;
    let addr = NodeAddr {
        node,
        host: b.hostname.clone(),
        port: b.port,
        tls: ctx.tls.backend(),
    };
    let timeout = crate::replication::connect_timeout(ctx, node);
    let open = async {
        match backend::start(&addr, params, timeout, max).await? {
            Startup::Ready(c) => Ok::<_, BackendError>((c, AuthMemo::Trust)),
            Startup::NeedsAuth(p) => {
                let memo = memo_of(&p.request, credential);
                Ok((p.complete(credential).await?, memo))
            }
        }
    };
    // A server that accepts but never answers (hung, or stopped) must not hold a read: the
    // start-up exchange gets the same bound again on top of the TCP connect.
    let (conn, memo) = tokio::time::timeout(timeout * 2, open)
        .await
        .map_err(|_| BackendError::Connect {
            node,
            target: format!("{}:{}", addr.host, addr.port),
            reason: "no answer to the startup packet".into(),
        })??;
    ctx.pool.note_opened(node);
    let mut slot = Slot::opened(conn, credential.clone(), memo, key);
    slot.permit = permit;
    Ok(slot)
}

/// A cached connection keeps the application_name of the session that opened it; the new
/// client's own (or none) is set so the connection looks brand new.
async fn adopt_application_name(
    slot: &mut Slot,
    params: &[(String, String)],
    max_len: u64,
) -> Result<(), SessionError> {
    let want = client_application_name(params);
    let have = slot
        .conn
        .params
        .iter()
        .find(|(k, _)| k == "application_name")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if want == have {
        return Ok(());
    }
    let sql = format!(
        "SET application_name = {}",
        postgres_protocol::escape::escape_literal(want)
    );
    match slot.exec_silent(&sql, max_len).await? {
        None => Ok(()),
        Some(e) => Err(SessionError::Client(e)),
    }
}

/// Gives a session's backend connection back: reset with `reset_query_list` and cached
/// when it is idle and cacheable, closed otherwise (never cached inside a transaction).
pub async fn release(ctx: &Context, mut slot: Slot) {
    let node = slot.conn.node;
    if slot.permit.is_some() {
        roll_back_abandoned(&mut slot, ctx.config().max_message_size).await;
    }
    // Only a connection whose last ReadyForQuery said idle, with nothing sent since (a
    // batch ended by Flush leaves an implicit transaction open), may serve another client;
    // closing the others rolls back what they hold.
    let reusable = settle_proxy_queries(ctx, &mut slot).await && slot.at_rest() && !slot.fatal;
    let Some(key) = slot.pool_key.take().filter(|_| reusable) else {
        if !slot.idle() {
            let c = &slot.conn;
            let _ = backend::send_cancel(&c.addr, c.pid, c.key).await;
        }
        ctx.pool.note_dirty(node);
        crate::admin::note_backend_closed(ctx, node);
        slot.conn.terminate().await;
        return;
    };
    let cfg = ctx.config();
    let too_many = slot.prepared.len() > MAX_HELD_STATEMENTS;
    if !slot.dirty && !too_many && resets_only_session_state(&cfg.reset_query_list) {
        // Nothing the session ran can have left state: the reset would change nothing.
        ctx.pool.note_reset_skipped(node);
        check_in(ctx, key, slot).await;
        return;
    }
    for q in &cfg.reset_query_list {
        // ABORT only matters when a transaction is open, which a reusable slot never has.
        if q.trim().eq_ignore_ascii_case("abort") {
            continue;
        }
        let ok = tokio::time::timeout(
            Duration::from_secs(10),
            slot.exec_silent(q, cfg.max_message_size),
        )
        .await;
        if !matches!(ok, Ok(Ok(None))) || slot.conn.txn_status != b'I' {
            ctx.pool.note_dirty(node);
            crate::admin::note_backend_closed(ctx, node);
            slot.conn.terminate().await;
            return;
        }
    }
    if !settle_statements(&mut slot, &cfg.reset_query_list, cfg.max_message_size).await {
        ctx.pool.note_dirty(node);
        crate::admin::note_backend_closed(ctx, node);
        slot.conn.terminate().await;
        return;
    }
    ctx.pool.note_reset(node);
    check_in(ctx, key, slot).await;
}

/// Caches a clean connection; a bounded one wakes the sessions waiting for it.
async fn check_in(ctx: &Context, key: PoolKey, mut slot: Slot) {
    let limit = slot.permit.is_some().then(|| ctx.conn_limits.of(&key));
    // Any simple Query of the next client drops the unnamed statement: never count on it.
    slot.prepared.remove("");
    let idle = Idle::new(slot.conn, slot.credential, slot.auth)
        .with_permit(slot.permit)
        .with_statements(slot.prepared);
    for conn in ctx.pool.checkin(key, idle) {
        conn.terminate().await;
    }
    if let Some(l) = limit {
        l.returned();
    }
}

/// A transaction-mode client that left inside a transaction (its backend idle, waiting for
/// the next statement): the transaction is rolled back so the connection can serve others,
/// instead of closing one of the few the bound allows. Anything else is left as it is.
async fn roll_back_abandoned(slot: &mut Slot, max_len: u64) {
    if !slot.idle() || slot.unsynced || slot.fatal || slot.conn.txn_status == b'I' {
        return;
    }
    let done = tokio::time::timeout(
        Duration::from_secs(10),
        slot.exec_silent("ROLLBACK", max_len),
    );
    if matches!(done.await, Ok(Ok(None))) {
        // What the transaction set at session level is gone with it, but be safe.
        slot.dirty = true;
    } else {
        slot.fatal = true;
    }
}

/// Ends a replica's read-only transaction left by a client gone mid-transaction and reads
/// the answers to the proxy's own queries; false when the connection is not in a state to
/// know.
async fn settle_proxy_queries(ctx: &Context, slot: &mut Slot) -> bool {
    if !slot.idle() {
        return false;
    }
    if !slot.owes_proxy_queries() {
        return true; // the usual case: no timer, no await
    }
    let max = ctx.config().max_message_size;
    let settled = async {
        slot.end_lb_txn().await?;
        slot.drain_silent(max).await
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(10), settled).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_is_allowed_only_for_the_listed_pairs() {
        let pw = |s: &str| Credential::Password(s.into());
        let md5 = || Credential::Md5Hash("md5x".into());
        let unchecked = |s: &str| Proof::Unchecked(s.into());
        let cleartext = || AuthMemo::Cleartext("a".into());
        let cases = [
            // (client proof, cached connection's method, its credential) -> may reuse
            (Proof::Hba, AuthMemo::Scram, pw("a"), true),
            (Proof::Entry, AuthMemo::Md5, md5(), true),
            (Proof::Entry, AuthMemo::Trust, Credential::None, true),
            (Proof::BackendTrust, AuthMemo::Trust, Credential::None, true),
            (Proof::BackendTrust, AuthMemo::Scram, pw("a"), false),
            (unchecked("a"), cleartext(), pw("a"), true),
            (unchecked("a"), AuthMemo::Scram, pw("a"), true),
            (unchecked("wrong"), cleartext(), pw("a"), false),
            (unchecked("a"), AuthMemo::Md5, md5(), false),
            (unchecked("a"), AuthMemo::Trust, Credential::None, false),
            (Proof::Nothing, AuthMemo::Scram, pw("a"), false),
            (Proof::Nothing, AuthMemo::Trust, Credential::None, false),
        ];
        for (proof, auth, credential, want) in cases {
            let cached = CachedLogin {
                auth,
                credential,
                params: Default::default(),
            };
            assert_eq!(
                may_reuse(&proof, &cached),
                want,
                "{proof:?} {:?} {:?}",
                cached.auth,
                cached.credential
            );
        }
    }
}
