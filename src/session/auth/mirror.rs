//! `enable_pool_hba = off` (spec 4.4): the proxy has no method of its own. It starts the
//! backend connection first, runs with the client the method the primary asked for
//! (checked against pool_passwd), then answers the backend with what it holds.

use super::exchange::{cleartext_matches, password_failed, ClientAuth};
use super::SessionError;
use crate::auth::md5::pg_md5_password;
use crate::auth::passwd::StoredPassword;
use crate::auth::scram::ScramSecretCache;
use crate::backend::Credential;
use crate::protocol::{AuthRequest, PgError};

/// What the mirror needs besides the client connection.
pub struct Mirror<'a> {
    pub stored: Option<StoredPassword>,
    pub allow_clear_text: bool,
    pub scram: &'a ScramSecretCache,
}

impl Mirror<'_> {
    /// Authenticates the client for what the backend asked (`request`) and returns the
    /// credential with which the proxy then answers the backend.
    pub async fn run(
        &self,
        a: &mut ClientAuth<'_>,
        request: &AuthRequest,
    ) -> Result<Credential, SessionError> {
        let user = a.user;
        match (request, self.stored.clone()) {
            (AuthRequest::Cleartext, stored) => {
                let pw = a.ask_cleartext().await?;
                if stored.is_some_and(|s| !cleartext_matches(user, &s, &pw)) {
                    return Err(password_failed(user));
                }
                Ok(Credential::Password(pw))
            }
            (AuthRequest::Md5 { .. }, Some(StoredPassword::Md5(hash))) => {
                ok_or_failed(a.md5_challenge(&hash).await?, user)?;
                Ok(Credential::Md5Hash(hash))
            }
            (AuthRequest::Md5 { .. }, Some(StoredPassword::Plain(pw))) => {
                ok_or_failed(a.md5_challenge(&pg_md5_password(user, &pw)).await?, user)?;
                Ok(Credential::Password(pw))
            }
            (AuthRequest::Sasl { .. }, Some(StoredPassword::Plain(pw))) => {
                let secret = self.scram.get_or_derive(user, &pw);
                ok_or_failed(a.scram_exchange(secret).await?, user)?;
                Ok(Credential::Password(pw))
            }
            (_, None) if self.allow_clear_text => {
                Ok(Credential::Password(a.ask_cleartext().await?))
            }
            // Answering the backend fails with a message that says what to store instead.
            (AuthRequest::Sasl { .. }, Some(StoredPassword::Md5(h))) => Ok(Credential::Md5Hash(h)),
            (req, stored) => Err(no_usable_password(req, stored.as_ref(), user)),
        }
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
