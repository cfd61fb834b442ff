//! `enable_pool_hba = off` (spec 4.4): the proxy has no method of its own. The backend
//! connection is started first; the client then runs the method the primary asked for
//! (checked against pool_passwd), and the proxy answers the backend with what it holds.
//! A cached connection replays the method it was opened with (spec 4.5).

use super::exchange::{cleartext_matches, password_failed, ClientAuth};
use super::{Proof, SessionError, Verified};
use crate::auth::md5::pg_md5_password;
use crate::auth::passwd::StoredPassword;
use crate::backend::Credential;
use crate::protocol::{AuthRequest, PgError};

impl ClientAuth<'_> {
    /// Authenticates the client for what the backend asked (`request`) and returns the
    /// credential with which the proxy then answers the backend, and what the client proved.
    pub async fn mirror(&mut self, request: &AuthRequest) -> Result<Verified, SessionError> {
        let user = self.user;
        let (credential, proof) = match (request, self.stored.clone()) {
            (AuthRequest::Cleartext, stored) => {
                let pw = self.ask_cleartext().await?;
                let proof = match stored {
                    Some(s) if !cleartext_matches(user, &s, &pw) => {
                        return Err(password_failed(user))
                    }
                    Some(_) => Proof::Entry,
                    None => Proof::Unchecked(pw.clone()),
                };
                (Credential::Password(pw), proof)
            }
            (AuthRequest::Md5 { .. }, Some(StoredPassword::Md5(hash))) => {
                ok_or_failed(self.md5_challenge(&hash).await?, user)?;
                (Credential::Md5Hash(hash), Proof::Entry)
            }
            (AuthRequest::Md5 { .. }, Some(StoredPassword::Plain(pw))) => {
                ok_or_failed(self.md5_challenge(&pg_md5_password(user, &pw)).await?, user)?;
                (Credential::Password(pw), Proof::Entry)
            }
            (AuthRequest::Sasl { .. }, Some(StoredPassword::Plain(pw))) => {
                let secret = self.scram.get_or_derive(user, &pw);
                ok_or_failed(self.scram_exchange(secret).await?, user)?;
                (Credential::Password(pw), Proof::Entry)
            }
            (_, None) if self.allow_clear_text => {
                let pw = self.ask_cleartext().await?;
                (Credential::Password(pw.clone()), Proof::Unchecked(pw))
            }
            // Answering the backend fails with a message that says what to store instead;
            // the client proved nothing, so this never unlocks a cached connection.
            (AuthRequest::Sasl { .. }, Some(StoredPassword::Md5(h))) => {
                (Credential::Md5Hash(h), Proof::Nothing)
            }
            (req, stored) => return Err(no_usable_password(req, stored.as_ref(), user)),
        };
        Ok(Verified { credential, proof })
    }
}

fn ok_or_failed(ok: bool, user: &str) -> Result<(), SessionError> {
    if ok {
        Ok(())
    } else {
        Err(password_failed(user))
    }
}

/// Pgpool-II's `failed to authenticate with backend using <method>`, with a detail that
/// says what pool_passwd lacks.
fn no_usable_password(
    req: &AuthRequest,
    stored: Option<&StoredPassword>,
    user: &str,
) -> SessionError {
    let method = match req {
        AuthRequest::Md5 { .. } => "md5",
        AuthRequest::Sasl { .. } => "SCRAM",
        AuthRequest::Cleartext => "clear text password",
        _ => "an unsupported method",
    };
    let err = PgError::fatal(
        "28000",
        format!("failed to authenticate with backend using {method}"),
    );
    let err = match stored {
        Some(StoredPassword::Undecryptable) => err
            .with_detail("unable to decrypt password from pool_passwd")
            .with_hint("verify the valid pool_key exists"),
        Some(StoredPassword::ScramVerifier(_)) => err.with_detail(format!(
            "pool_passwd holds a SCRAM verifier for user \"{user}\", which cannot answer a backend; \
             store the password as AES (pg_enc -m) or TEXT"
        )),
        _ => err.with_detail(format!(
            "valid password not found in pool_passwd for user \"{user}\""
        )),
    };
    SessionError::Client(err)
}
