//! `enable_pool_hba = on`: pool_hba.conf picks the method, the proxy authenticates the
//! client itself against pool_passwd, and only then connects to the backends with the
//! credential it holds (spec 3.5, 4.3).

use tracing::{info, warn};

use super::exchange::{cleartext_matches, password_failed, ClientAuth};
use super::{ClientInfo, Proof, SessionError, Verified};
use crate::auth::md5::pg_md5_password;
use crate::auth::passwd::StoredPassword;
use crate::auth::scram::ScramSecret;
use crate::auth::{HbaFile, HbaMethod, HbaRequest};
use crate::backend::Credential;
use crate::protocol::PgError;

/// Who asks for what, as the hba check sees it.
pub struct HbaQuery<'a> {
    pub client: &'a ClientInfo,
    pub ssl: bool,
    pub user: &'a str,
    pub database: &'a str,
}

impl HbaQuery<'_> {
    /// PostgreSQL's tail of the rejection message: `host "…", user "…", database "…", …`.
    fn describe(&self) -> String {
        format!(
            "host \"{}\", user \"{}\", database \"{}\", {}",
            self.client.host(),
            self.user,
            self.database,
            if self.ssl {
                "SSL encryption"
            } else {
                "no encryption"
            }
        )
    }
}

/// The method of the first matching line; no line, a `reject` line or no valid file is
/// FATAL 28000 in PostgreSQL's words (naming pool_hba.conf).
pub fn choose_method(hba: Option<&HbaFile>, q: &HbaQuery) -> Result<HbaMethod, SessionError> {
    let Some(hba) = hba else {
        return Err(SessionError::Client(
            PgError::fatal("28000", "client authentication failed")
                .with_detail("missing or erroneous pool_hba.conf file")
                .with_hint("see pgpool log for details"),
        ));
    };
    let req = HbaRequest {
        local: q.client.addr.is_none(),
        ssl: q.ssl,
        addr: q.client.addr.map(|a| a.ip()),
        database: q.database,
        user: q.user,
    };
    match hba.find(&req) {
        Some(line) if line.method != HbaMethod::Reject => Ok(line.method),
        Some(line) => {
            info!(line = line.line_no, "pool_hba.conf rejects the connection");
            Err(hba_error(format!(
                "pool_hba.conf rejects connection for {}",
                q.describe()
            )))
        }
        None => Err(hba_error(format!(
            "no pool_hba.conf entry for {}",
            q.describe()
        ))),
    }
}

/// `cert`: the client's certificate (verified against `ssl_ca_cert` in the handshake) must
/// carry the user name as its common name, as in PostgreSQL.
fn cert_matches_user(stream: &crate::stream::Stream, user: &str) -> Result<(), SessionError> {
    let failed = || {
        PgError::fatal(
            "28000",
            format!("certificate authentication failed for user \"{user}\""),
        )
    };
    match crate::tls::peer_cert_cn(stream) {
        Some(cn) if cn == user => Ok(()),
        Some(cn) => {
            info!("provided user name ({user}) and authenticated user name ({cn}) do not match");
            Err(SessionError::Client(failed()))
        }
        None => Err(SessionError::Client(
            failed().with_detail("connection requires a valid client certificate"),
        )),
    }
}

fn hba_error(message: String) -> SessionError {
    SessionError::Client(PgError::fatal("28000", message))
}

impl ClientAuth<'_> {
    /// Runs `method` with the client and returns what the proxy will answer backends with.
    pub async fn hba_method(&mut self, method: HbaMethod) -> Result<Verified, SessionError> {
        let user = self.user;
        let stored = self.stored.clone();
        let verified = |proof| Verified {
            credential: credential_of(stored.clone()),
            proof,
        };
        match method {
            HbaMethod::Trust => Ok(verified(Proof::Hba)),
            HbaMethod::Password => {
                let pw = self.ask_cleartext().await?;
                // Without an entry the backend is the judge, as in Pgpool-II.
                let proof = match &stored {
                    Some(s) if !cleartext_matches(user, s, &pw) => {
                        explain_failure("password", s);
                        return Err(password_failed(user));
                    }
                    Some(_) => Proof::Entry,
                    None => Proof::Unchecked(pw.clone()),
                };
                Ok(Verified {
                    credential: Credential::Password(pw),
                    proof,
                })
            }
            HbaMethod::Md5 => {
                let hash = match &stored {
                    Some(StoredPassword::Md5(h)) => Some(h.clone()),
                    Some(StoredPassword::Plain(p)) => Some(pg_md5_password(user, p)),
                    _ => None,
                };
                let Some(hash) = hash else {
                    return self.unusable(false, "md5").await;
                };
                if !self.md5_challenge(&hash).await? {
                    return Err(password_failed(user));
                }
                Ok(verified(Proof::Entry))
            }
            HbaMethod::ScramSha256 => {
                let secret = match &stored {
                    Some(StoredPassword::Plain(p)) => Some(self.scram.get_or_derive(user, p)),
                    Some(StoredPassword::ScramVerifier(v)) => ScramSecret::from_verifier(v).ok(),
                    _ => None,
                };
                let Some(secret) = secret else {
                    return self.unusable(true, "scram-sha-256").await;
                };
                if !self.scram_exchange(secret).await? {
                    return Err(password_failed(user));
                }
                Ok(verified(Proof::Entry))
            }
            HbaMethod::Cert => {
                cert_matches_user(self.stream, user)?;
                Ok(verified(Proof::Hba))
            }
            // choose_method never returns Reject; refuse anyway rather than let anyone in.
            HbaMethod::Reject => Err(password_failed(user)),
        }
    }

    /// No entry, or one this method cannot check: the client still gets the full exchange
    /// and then the same 28P01 as a wrong password; the log says what is wrong.
    async fn unusable(&mut self, scram: bool, method: &str) -> Result<Verified, SessionError> {
        match &self.stored {
            None => info!("{method} authentication failed: pool_passwd has no entry for the user"),
            Some(s) => explain_failure(method, s),
        }
        self.mock_exchange(scram).await?;
        Err(password_failed(self.user))
    }
}

/// What backends can be answered with: a plain (or decrypted AES) password does every
/// method, an md5 hash only md5, a verifier or nothing only trust.
fn credential_of(stored: Option<StoredPassword>) -> Credential {
    match stored {
        Some(StoredPassword::Plain(p)) => Credential::Password(p),
        Some(StoredPassword::Md5(h)) => Credential::Md5Hash(h),
        _ => Credential::None,
    }
}

/// Logs why an entry could not serve (never the entry itself).
fn explain_failure(method: &str, stored: &StoredPassword) {
    match stored {
        StoredPassword::Undecryptable => warn!(
            "{method} authentication failed: unable to decrypt password from pool_passwd; verify the valid pool_key exists"
        ),
        StoredPassword::Md5(_) if method == "scram-sha-256" => warn!(
            "{method} authentication failed: pool_passwd holds an md5 hash for the user, which cannot check SCRAM; store the password as AES (pg_enc -m) or TEXT"
        ),
        StoredPassword::ScramVerifier(_) if method == "md5" => warn!(
            "{method} authentication failed: pool_passwd holds a SCRAM verifier for the user, which cannot check md5"
        ),
        _ => info!("{method} authentication failed: password does not match"),
    }
}
