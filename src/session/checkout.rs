//! Getting a backend connection for a session: from the cache when one fits (the client
//! then proves the same credentials the connection was opened with), else a new connection
//! whose authentication the client mirrors. And giving it back when the session ends.

use std::time::Duration;

use super::auth::ClientAuth;
use super::slot::Slot;
use super::SessionError;
use crate::backend::{self, AuthMemo, BackendError, Credential, Idle, NodeAddr, PoolKey, Startup};
use crate::protocol::{AuthRequest, PgError};
use crate::server::Context;

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
/// `verified` is the credential of a client pool_hba.conf already authenticated: it then
/// neither mirrors nor re-proves anything.
pub async fn start(
    ctx: &Context,
    client: &mut ClientAuth<'_>,
    params: &[(String, String)],
    verified: Option<Credential>,
) -> Result<Greeting, SessionError> {
    let key = pool_key(ctx, 0, params);
    let mut verified = verified;
    if let Some(cached) = key.as_ref().and_then(|k| ctx.pool.peek(k)) {
        let credential = match verified.take() {
            Some(c) => c,
            None => reauthenticate(client, &cached.auth).await?,
        };
        if may_reuse(client.stored.is_some(), &credential, &cached.credential) {
            return Ok(Greeting {
                params: cached.params,
                application_name: Some(client_application_name(params).to_string()),
                credential,
                primary: None,
            });
        }
        // A password nothing has checked yet: a new connection lets the backend judge it.
        verified = Some(credential);
    }
    let slot = open_primary(ctx, client, params, key.clone(), verified).await?;
    let greeting_params = slot.conn.params.clone();
    let credential = slot.credential.clone();
    let primary = match key {
        Some(k) => {
            let idle = Idle::new(slot.conn, slot.credential, slot.auth);
            for c in ctx.pool.checkin_fresh(k, idle) {
                c.terminate().await;
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

/// The client proves the credentials a cached connection was opened with (spec 4.5).
async fn reauthenticate(
    client: &mut ClientAuth<'_>,
    memo: &AuthMemo,
) -> Result<Credential, SessionError> {
    let Some(req) = memo_request(memo) else {
        return Ok(Credential::None);
    };
    let given = client.mirror(&req).await?;
    if let (AuthMemo::Cleartext(saved), Credential::Password(p)) = (memo, &given) {
        if saved != p {
            return Err(auth_failed(client.user));
        }
    }
    Ok(given)
}

/// Whether a client that proved `given` may use a cached connection opened with `cached`.
/// A password checked against pool_passwd may; one that nothing checked (no entry: the
/// backend was to be the judge) may only if it is the very password that opened the
/// connection, or any password would log in while a connection sits in the cache.
fn may_reuse(checked_against_entry: bool, given: &Credential, cached: &Credential) -> bool {
    match (given, cached) {
        (Credential::Password(_), _) if checked_against_entry => true,
        (Credential::Password(p), Credential::Password(c)) => p == c,
        (Credential::Password(_), _) => false,
        _ => true,
    }
}

/// The application_name the client asked for ("" when none).
fn client_application_name(client: &[(String, String)]) -> &str {
    client
        .iter()
        .find(|(k, _)| k == "application_name")
        .map_or("", |(_, v)| v.as_str())
}

/// Opens a new primary connection; the client mirrors the server's authentication unless
/// pool_hba.conf already authenticated it (`verified`).
async fn open_primary(
    ctx: &Context,
    client: &mut ClientAuth<'_>,
    params: &[(String, String)],
    key: Option<PoolKey>,
    verified: Option<Credential>,
) -> Result<Slot, SessionError> {
    let cfg = ctx.config();
    let node = cfg
        .backends
        .first()
        .ok_or_else(|| SessionError::Client(PgError::fatal("08006", "no backend is configured")))?;
    let addr = NodeAddr {
        node: node.id,
        host: node.hostname.clone(),
        port: node.port,
        tls: ctx.tls.backend(),
    };
    let timeout = crate::replication::connect_timeout(ctx, 0);
    let started = backend::start(&addr, params, timeout, cfg.max_message_size).await;
    let (conn, credential, memo) = match super::failover::primary_started(ctx, started)? {
        // A trusting primary; a pool_hba login still keeps its credential for others.
        Startup::Ready(c) => (c, verified.unwrap_or(Credential::None), AuthMemo::Trust),
        Startup::NeedsAuth(pending) => {
            let credential = match verified {
                Some(c) => c,
                None => client.mirror(&pending.request).await?,
            };
            let memo = memo_of(&pending.request, &credential);
            let conn = pending.complete(&credential).await.map_err(|e| match e {
                BackendError::Server(pg) if pg.code == "28P01" => auth_failed(client.user),
                other => other.into(),
            })?;
            (conn, credential, memo)
        }
    };
    ctx.pool.note_opened(0);
    Ok(Slot::opened(conn, credential, memo, key))
}

/// Another node's connection for a running session (the client is already authenticated):
/// from the cache, else opened with the credential that authenticated the primary.
pub async fn other(
    ctx: &Context,
    node: usize,
    params: &[(String, String)],
    credential: &Credential,
) -> Result<Slot, BackendError> {
    let mut key = pool_key(ctx, node, params);
    let max = ctx.config().max_message_size;
    if let Some(idle) = key.as_ref().and_then(|k| ctx.pool.checkout(k)) {
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
    Ok(Slot::opened(conn, credential.clone(), memo, key))
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
    // Only a connection whose last ReadyForQuery said idle, with nothing sent since (a
    // batch ended by Flush leaves an implicit transaction open), may serve another client;
    // closing the others rolls back what they hold.
    let reusable = slot.at_rest() && !slot.fatal;
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
    if !slot.dirty && resets_only_session_state(&cfg.reset_query_list) {
        // Nothing the session ran can have left state: the reset would change nothing.
        ctx.pool.note_reset_skipped(node);
        for conn in ctx
            .pool
            .checkin(key, Idle::new(slot.conn, slot.credential, slot.auth))
        {
            conn.terminate().await;
        }
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
    ctx.pool.note_reset(node);
    let idle = Idle::new(slot.conn, slot.credential, slot.auth);
    for conn in ctx.pool.checkin(key, idle) {
        conn.terminate().await;
    }
}

/// The reset list only undoes session state (the default `ABORT;DISCARD ALL` and its
/// parts), so skipping it on a connection that holds none is invisible. A list with anything
/// else (a custom cleanup function, say) always runs.
fn resets_only_session_state(list: &[String]) -> bool {
    const STATE_RESETS: &[&str] = &[
        "abort",
        "discard all",
        "discard plans",
        "discard sequences",
        "discard temp",
        "discard temporary",
        "reset all",
        "deallocate all",
        "close all",
        "unlisten *",
        "set session authorization default",
        "reset session authorization",
        "select pg_advisory_unlock_all()",
    ];
    list.iter().all(|q| {
        let q = q.split_whitespace().collect::<Vec<_>>().join(" ");
        STATE_RESETS.iter().any(|r| q.eq_ignore_ascii_case(r))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchecked_password_reuses_only_the_connection_it_opened() {
        let pw = |s: &str| Credential::Password(s.into());
        let cases = [
            // (checked against pool_passwd, given, cached connection's) -> may reuse
            (true, pw("a"), pw("b"), true),
            (false, pw("a"), pw("a"), true),
            (false, pw("wrong"), pw("a"), false),
            (false, pw("a"), Credential::Md5Hash("md5x".into()), false),
            (false, pw("a"), Credential::None, false),
            (false, Credential::None, pw("a"), true),
            (false, Credential::Md5Hash("md5x".into()), pw("a"), true),
        ];
        for (checked, given, cached, want) in cases {
            assert_eq!(
                may_reuse(checked, &given, &cached),
                want,
                "{checked} {given:?} {cached:?}"
            );
        }
    }
}
