//! The frontend side of each password method on the wire: ask, read the answer, check it.
//! Every check here answers "did the client prove it knows the password?"; which method
//! to run and what to do with the result is decided by the callers (hba or mirror).

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::super::{read_frame, SessionError};
use crate::auth::md5::{md5_hex, md5_salted, pg_md5_password};
use crate::auth::passwd::StoredPassword;
use crate::auth::scram::{ScramError, ScramSecret, ScramSecretCache, ScramServer};
use crate::protocol::{self, tag, FrameDecoder, PgError};
use crate::stream::Stream;

/// Password messages are small; a long one is an attack, not a password.
const MAX_AUTH_MESSAGE: u64 = 64 * 1024;

/// The client connection during authentication, with what pool_passwd holds for the user.
pub struct ClientAuth<'a> {
    pub stream: &'a mut Stream,
    /// Client bytes read so far; what follows the last auth message stays here.
    pub buf: &'a mut BytesMut,
    pub user: &'a str,
    /// The user's pool_passwd entry.
    pub stored: Option<StoredPassword>,
    /// `allow_clear_text_frontend_auth`: ask for a clear-text password when pool_passwd
    /// cannot serve the method the backend wants (hba off only).
    pub allow_clear_text: bool,
    /// Derived SCRAM secrets shared by all sessions.
    pub scram: &'a ScramSecretCache,
}

/// FATAL 28P01, PostgreSQL's words for a wrong password. Unknown users get exactly the same,
/// so a client cannot probe which names exist.
pub fn password_failed(user: &str) -> SessionError {
    SessionError::Client(PgError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    ))
}

impl ClientAuth<'_> {
    /// AuthenticationCleartextPassword, then the client's answer.
    pub async fn ask_cleartext(&mut self) -> Result<String, SessionError> {
        let mut out = BytesMut::new();
        protocol::auth_cleartext(&mut out);
        self.stream.write_all(&out).await?;
        let body = self.read_password_message().await?;
        let pw = protocol::decode_password(&body).map_err(SessionError::Protocol)?;
        refuse_empty(pw)?;
        Ok(pw.to_string())
    }

    /// Runs an md5 challenge against `hash` (`md5` + hex(md5(password + user))); true when
    /// the client's answer matches.
    pub async fn md5_challenge(&mut self, hash: &str) -> Result<bool, SessionError> {
        let salt: [u8; 4] = rand::random();
        let mut out = BytesMut::new();
        protocol::auth_md5(&mut out, salt);
        self.stream.write_all(&out).await?;
        let body = self.read_password_message().await?;
        let got = protocol::decode_password(&body).map_err(SessionError::Protocol)?;
        refuse_empty(got)?;
        let want = md5_salted(hash, salt);
        Ok(subtle::ConstantTimeEq::ct_eq(got.as_bytes(), want.as_bytes()).into())
    }

    /// A full SCRAM-SHA-256 exchange against `secret`; true when the proof matches (the
    /// client then has our server signature too), false for a wrong password.
    pub async fn scram_exchange(&mut self, secret: ScramSecret) -> Result<bool, SessionError> {
        let mut server = ScramServer::new(secret);
        let mut out = BytesMut::new();
        protocol::auth_sasl(&mut out, &[ScramServer::MECHANISM]);
        self.stream.write_all(&out).await?;
        let body = self.read_password_message().await?;
        let (mechanism, data) =
            protocol::decode_sasl_initial(&body).map_err(SessionError::Protocol)?;
        if mechanism != ScramServer::MECHANISM {
            return Err(SessionError::Client(PgError::fatal(
                "08P01",
                "client selected an invalid SASL authentication mechanism",
            )));
        }
        let first = server.handle_client_first(data).map_err(scram_violation)?;
        out.clear();
        protocol::auth_sasl_continue(&mut out, first.as_bytes());
        self.stream.write_all(&out).await?;
        let body = self.read_password_message().await?;
        match server.handle_client_final(&body) {
            Ok(last) => {
                out.clear();
                protocol::auth_sasl_final(&mut out, last.as_bytes());
                self.stream.write_all(&out).await?;
                Ok(true)
            }
            Err(ScramError::WrongPassword) => Ok(false),
            Err(e) => Err(scram_violation(e)),
        }
    }

    /// Runs an md5 or SCRAM exchange with a secret nobody knows, so that a user without a
    /// usable pool_passwd entry sees the same conversation as one with a wrong password
    /// (PostgreSQL does the same for unknown roles).
    pub async fn mock_exchange(&mut self, scram: bool) -> Result<(), SessionError> {
        let random: [u8; 16] = rand::random();
        let fake = md5_hex(&random);
        if scram {
            self.scram_exchange(ScramSecret::from_password(&fake))
                .await?;
        } else {
            self.md5_challenge(&pg_md5_password(self.user, &fake))
                .await?;
        }
        Ok(())
    }

    async fn read_password_message(&mut self) -> Result<Bytes, SessionError> {
        let f = read_frame(self.stream, self.buf, &FrameDecoder::new(MAX_AUTH_MESSAGE)).await?;
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

/// PostgreSQL's answer to an empty password, before any comparison.
fn refuse_empty(password: &str) -> Result<(), SessionError> {
    if password.is_empty() {
        return Err(SessionError::Client(PgError::fatal(
            "28P01",
            "empty password returned by client",
        )));
    }
    Ok(())
}

/// A broken SCRAM message is a protocol violation (08P01), as in PostgreSQL.
fn scram_violation(e: ScramError) -> SessionError {
    SessionError::Client(PgError::fatal("08P01", e.to_string()))
}

/// Does `given` (typed by the client in clear text) match what pool_passwd holds?
pub fn cleartext_matches(user: &str, stored: &StoredPassword, given: &str) -> bool {
    match stored {
        StoredPassword::Plain(p) => {
            subtle::ConstantTimeEq::ct_eq(p.as_bytes(), given.as_bytes()).into()
        }
        StoredPassword::Md5(h) => {
            let got = pg_md5_password(user, given);
            subtle::ConstantTimeEq::ct_eq(h.as_bytes(), got.as_bytes()).into()
        }
        StoredPassword::ScramVerifier(v) => {
            ScramSecret::from_verifier(v).is_ok_and(|s| s.matches_password(given))
        }
        StoredPassword::Undecryptable => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_checks_every_stored_kind() {
        let verifier = ScramSecret::from_password("secret").to_verifier();
        let cases = [
            (StoredPassword::Plain("secret".into()), "secret", true),
            (StoredPassword::Plain("secret".into()), "Secret", false),
            (
                StoredPassword::Md5("md54a0a68b43b6cd5cf266fa02f196e2371".into()),
                "secret",
                true,
            ),
            (
                StoredPassword::Md5("md54a0a68b43b6cd5cf266fa02f196e2371".into()),
                "wrong",
                false,
            ),
            (
                StoredPassword::ScramVerifier(verifier.clone()),
                "secret",
                true,
            ),
            (StoredPassword::ScramVerifier(verifier), "wrong", false),
            (StoredPassword::Undecryptable, "secret", false),
        ];
        for (stored, given, want) in cases {
            assert_eq!(
                cleartext_matches("alice", &stored, given),
                want,
                "{stored:?} vs {given}"
            );
        }
    }
}
