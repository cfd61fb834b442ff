//! Frontend authentication. With `enable_pool_hba = off` the proxy mirrors what the primary
//! asks for (Pgpool-II's behaviour, spec 4.4): it starts the backend connection first, then
//! runs the same method with the client against pool_passwd, then answers the backend.

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::{read_frame, SessionError};
use crate::auth::md5::{md5_salted, pg_md5_password};
use crate::auth::passwd::StoredPassword;
use crate::backend::Credential;
use crate::protocol::{self, tag, AuthRequest, FrameDecoder, PgError};
use crate::stream::Stream;

pub struct ClientAuth<'a> {
    pub stream: &'a mut Stream,
    pub buf: &'a mut BytesMut,
    pub user: &'a str,
    pub stored: Option<StoredPassword>,
    pub allow_clear_text: bool,
}

fn auth_failed(user: &str) -> SessionError {
    SessionError::Client(PgError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    ))
}

impl ClientAuth<'_> {
    /// Authenticates the client for what `pending` asks and returns the credential with
    /// which the proxy then answers the backend.
    pub async fn mirror(&mut self, request: &AuthRequest) -> Result<Credential, SessionError> {
        match (request, self.stored.clone()) {
            (AuthRequest::Cleartext, stored) => {
                let pw = self.ask_cleartext().await?;
                if let Some(s) = stored {
                    self.check_cleartext(&s, &pw)?;
                }
                Ok(Credential::Password(pw))
            }
            (AuthRequest::Md5 { .. }, Some(StoredPassword::Md5(hash))) => {
                self.md5_challenge(&hash).await?;
                Ok(Credential::Md5Hash(hash))
            }
            (AuthRequest::Md5 { .. }, Some(StoredPassword::Plain(pw))) => {
                self.md5_challenge(&pg_md5_password(self.user, &pw)).await?;
                Ok(Credential::Password(pw))
            }
            (AuthRequest::Sasl { .. }, Some(StoredPassword::Plain(pw))) => {
                // Until the proxy's own SCRAM server is wired in, a plain pool_passwd entry is
                // checked with a cleartext exchange.
                let got = self.ask_cleartext().await?;
                self.check_cleartext(&StoredPassword::Plain(pw.clone()), &got)?;
                Ok(Credential::Password(pw))
            }
            (_, None) if self.allow_clear_text => {
                Ok(Credential::Password(self.ask_cleartext().await?))
            }
            (AuthRequest::Sasl { .. }, Some(StoredPassword::Md5(h))) => Ok(Credential::Md5Hash(h)),
            (req, _) => Err(SessionError::Client(
                PgError::fatal(
                    "28000",
                    format!(
                        "failed to authenticate with backend using {}",
                        method_name(req)
                    ),
                )
                .with_detail(format!(
                    "valid password not found in pool_passwd for user \"{}\"",
                    self.user
                )),
            )),
        }
    }

    async fn ask_cleartext(&mut self) -> Result<String, SessionError> {
        let mut out = BytesMut::new();
        protocol::auth_cleartext(&mut out);
        self.stream.write_all(&out).await?;
        let body = self.read_password_message().await?;
        Ok(protocol::decode_password(&body)
            .map_err(SessionError::Protocol)?
            .to_string())
    }

    fn check_cleartext(&self, stored: &StoredPassword, given: &str) -> Result<(), SessionError> {
        let ok = match stored {
            StoredPassword::Plain(p) => p == given,
            StoredPassword::Md5(h) => *h == pg_md5_password(self.user, given),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(auth_failed(self.user))
        }
    }

    async fn md5_challenge(&mut self, hash: &str) -> Result<(), SessionError> {
        let salt: [u8; 4] = rand::random();
        let mut out = BytesMut::new();
        protocol::auth_md5(&mut out, salt);
        self.stream.write_all(&out).await?;
        let body = self.read_password_message().await?;
        let got = protocol::decode_password(&body).map_err(SessionError::Protocol)?;
        if got == md5_salted(hash, salt) {
            Ok(())
        } else {
            Err(auth_failed(self.user))
        }
    }

    async fn read_password_message(&mut self) -> Result<bytes::Bytes, SessionError> {
        // Password messages are small; a long one is an attack, not a password.
        let f = read_frame(self.stream, self.buf, &FrameDecoder::new(64 * 1024)).await?;
        if f.tag != tag::PASSWORD {
            return Err(SessionError::Client(PgError::fatal(
                "08P01",
                format!(
                    "expected password response, got message type {}",
                    f.tag as char
                ),
            )));
        }
        Ok(f.body)
    }
}

fn method_name(req: &AuthRequest) -> &'static str {
    match req {
        AuthRequest::Md5 { .. } => "md5",
        AuthRequest::Sasl { .. } => "SCRAM",
        AuthRequest::Cleartext => "clear text password",
        _ => "an unsupported method",
    }
}
