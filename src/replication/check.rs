//! The pieces of one streaming-replication check (spec 5.9): a tiny simple-query client over
//! a backend connection, LSN arithmetic, and the threshold rule the router applies.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::auth::passwd::StoredPassword;
use crate::backend::{self, BackendConn, BackendError, Credential, NodeAddr, Startup};
use crate::config::Config;
use crate::context::primary::{checker_login, Login};
use crate::context::Context;
use crate::protocol::{self, btag, decode_data_row, PgError};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Server(PgError),
    #[error("malformed answer: {0}")]
    Answer(String),
    #[error("timed out")]
    Timeout,
}

impl CheckError {
    /// The server is unreachable or went away (as opposed to refusing the check's query).
    pub fn is_connectivity(&self) -> bool {
        match self {
            CheckError::Backend(BackendError::Server(e)) => cannot_connect_now(e),
            CheckError::Backend(b) => matches!(
                b,
                BackendError::Connect { .. } | BackendError::Closed { .. } | BackendError::Io(_)
            ),
            CheckError::Server(e) => cannot_connect_now(e),
            CheckError::Timeout => true,
            CheckError::Answer(_) => false,
        }
    }
}

/// Class 57 (operator intervention: shutting down, starting up, in crash recovery) and
/// 08 (connection exception): the server does not serve now.
pub fn cannot_connect_now(e: &PgError) -> bool {
    e.code.starts_with("57") || e.code.starts_with("08")
}

/// Rows of a simple query as text; the first error the server sent fails the call.
pub async fn simple_query(
    conn: &mut BackendConn,
    sql: &str,
    max_len: u64,
) -> Result<Vec<Vec<Option<String>>>, CheckError> {
    let mut q = BytesMut::new();
    protocol::query(&mut q, sql);
    conn.stream
        .write_all(&q)
        .await
        .map_err(BackendError::from)?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let f = conn.read_frame(max_len).await?;
        match f.tag {
            btag::DATA_ROW => {
                rows.push(decode_data_row(&f.body).map_err(|e| CheckError::Answer(e.to_string()))?)
            }
            btag::ERROR_RESPONSE => {
                let e = PgError::decode(&f.body);
                if e.is_fatal() {
                    return Err(CheckError::Server(e));
                }
                error.get_or_insert(e);
            }
            btag::READY_FOR_QUERY => {
                return match error {
                    Some(e) => Err(CheckError::Server(e)),
                    None => Ok(rows),
                }
            }
            _ => {}
        }
    }
}

/// `X/Y` (hex) as a 64-bit WAL position. Pgpool-II computes `X * (0xFFFFFFFF - 16 MiB) + Y`,
/// which differs from the real position only across 4 GiB boundaries; we use the real one
/// (what `pg_wal_lsn_diff` returns), so the delay is the true byte count.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some((hi << 32) | lo)
}

/// Spec 5.3 step 11: with `delay_threshold_by_time > 0` (ms) the replay lag decides,
/// otherwise `delay_threshold` (bytes, 0 = off); strictly greater means lagging.
pub fn is_lagging(cfg: &Config, delay_bytes: u64, delay_time_us: Option<u64>) -> bool {
    if cfg.delay_threshold_by_time > 0 {
        delay_time_us.unwrap_or(0) > cfg.delay_threshold_by_time.saturating_mul(1000)
    } else {
        cfg.delay_threshold > 0 && delay_bytes > cfg.delay_threshold
    }
}

/// The credential for a check user: its configured password if set (md5/AES/TEXT forms as
/// in pool_passwd), else the user's pool_passwd entry, else none (trust).
pub fn credential_for(ctx: &Context, user: &str, password: &str) -> Credential {
    let stored = if password.is_empty() {
        ctx.passwd().get(user).cloned()
    } else {
        StoredPassword::classify(password, None).ok()
    };
    match stored {
        Some(StoredPassword::Md5(h)) => Credential::Md5Hash(h),
        Some(StoredPassword::Plain(p)) => Credential::Password(p),
        // A SCRAM verifier cannot answer a server; no key, no password: try without.
        _ => Credential::None,
    }
}

/// How to reach node `id`, from the current configuration (with the proxy's backend TLS).
pub fn node_addr(ctx: &Context, cfg: &Config, id: usize) -> Option<NodeAddr> {
    cfg.backends.get(id).map(|b| NodeAddr {
        node: id,
        host: b.hostname.clone(),
        port: b.port,
        tls: ctx.tls.backend(),
    })
}

/// Opens an authenticated connection for the replication check and the primary search.
pub async fn connect_checker(
    ctx: &Context,
    cfg: &Config,
    id: usize,
    timeout: Duration,
) -> Result<BackendConn, CheckError> {
    let login = checker_login(cfg).unwrap_or(Login {
        user: String::new(),
        password: String::new(),
        database: cfg.sr_check_database.clone(),
    });
    connect_as(ctx, cfg, id, &login, "pgpool-rs sr_check", timeout).await
}

/// Opens a connection to node `id` as `login`; `timeout` bounds the connect and the
/// authentication each.
pub async fn connect_as(
    ctx: &Context,
    cfg: &Config,
    id: usize,
    login: &Login,
    application_name: &str,
    timeout: Duration,
) -> Result<BackendConn, CheckError> {
    let addr = node_addr(ctx, cfg, id).ok_or(BackendError::Closed { node: id })?;
    let params = vec![
        ("user".to_string(), login.user.clone()),
        ("database".to_string(), login.database.clone()),
        ("application_name".to_string(), application_name.to_string()),
    ];
    let started = backend::start(&addr, &params, timeout, cfg.max_message_size);
    let conn = match tokio::time::timeout(timeout * 2, started)
        .await
        .map_err(|_| CheckError::Timeout)??
    {
        Startup::Ready(c) => c,
        Startup::NeedsAuth(p) => {
            let credential = credential_for(ctx, &login.user, &login.password);
            p.complete(&credential).await?
        }
    };
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_becomes_a_byte_position() {
        let cases = [
            ("0/0", Some(0)),
            ("0/3000148", Some(0x300_0148)),
            ("1/0", Some(1 << 32)),
            ("16/B374D848", Some((0x16 << 32) | 0xB374_D848)),
            ("", None),
            ("0", None),
            ("x/1", None),
            ("100000000/0", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_lsn(text), want, "{text}");
        }
    }

    #[test]
    fn thresholds_follow_pgpool() {
        let mut cfg = Config::default();
        let cases: &[(u64, u64, u64, Option<u64>, bool)] = &[
            // (threshold bytes, threshold ms, delay bytes, delay µs, lagging)
            (0, 0, 1 << 40, None, false),
            (1000, 0, 1000, None, false),
            (1000, 0, 1001, None, true),
            (1000, 5, 1 << 40, Some(5000), false),
            (1000, 5, 0, Some(5001), true),
            (0, 5, 0, None, false),
        ];
        for &(bytes, ms, db, dt, want) in cases {
            cfg.delay_threshold = bytes;
            cfg.delay_threshold_by_time = ms;
            assert_eq!(is_lagging(&cfg, db, dt), want, "{bytes} {ms} {db} {dt:?}");
        }
    }

    #[test]
    fn data_rows_decode_with_nulls() {
        let mut out = BytesMut::new();
        protocol::data_row(&mut out, &["a", "", "0/1"]);
        let row = decode_data_row(&out[5..]).unwrap_or_else(|e| panic!("{e}"));
        let want = vec![Some("a".into()), Some(String::new()), Some("0/1".into())];
        assert_eq!(row, want);
        // One NULL column: count 1, length -1.
        let null = [0u8, 1, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(decode_data_row(&null).ok(), Some(vec![None]));
        assert!(decode_data_row(&[0, 1, 0, 0, 0, 9]).is_err());
    }
}
