//! Server side of SCRAM-SHA-256 (RFC 5802 / RFC 7677) as PostgreSQL and Pgpool-II speak it:
//! mechanism `SCRAM-SHA-256` only, no channel binding (`n,,` or `y,,` headers), the user
//! name in the message ignored (the startup packet's user is the one that counts).
//! Written by hand because no maintained crate checks a proof against a stored
//! (StoredKey, ServerKey) pair; see the crate notes.

use crate::auth::error::AuthError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// Iteration count PostgreSQL and Pgpool-II use for new verifiers.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Salt length PostgreSQL and Pgpool-II use for new verifiers.
const SALT_LEN: usize = 16;
/// Raw server nonce length (PostgreSQL's `SCRAM_RAW_NONCE_LEN`).
const NONCE_LEN: usize = 18;

/// Errors of a SCRAM exchange. All but `WrongPassword` mean the client broke the protocol.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Protocol(&'static str),
    #[error("channel binding is not supported")]
    ChannelBindingUnsupported,
    #[error("SCRAM message received out of order")]
    OutOfOrder,
    #[error("password does not match")]
    WrongPassword,
}

/// What the server needs to check a proof: salt, iterations, StoredKey and ServerKey.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

/// Never prints keys: they are password equivalents for this server.
impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramSecret {
    /// Derives a secret with a fresh random 16-byte salt and 4096 iterations, as Pgpool-II
    /// does for every SCRAM login from a plain or AES pool_passwd entry.
    pub fn from_password(pw: &str) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::from_password_with_salt(pw, &salt, DEFAULT_ITERATIONS)
    }

    /// Derives a secret from a given salt; SASLprep is applied when the password allows it,
    /// otherwise the raw bytes are used (PostgreSQL's rule).
    pub fn from_password_with_salt(pw: &str, salt: &[u8], iterations: u32) -> Self {
        let prepared = match stringprep::saslprep(pw) {
            Ok(p) => p.into_owned(),
            Err(_) => pw.to_string(),
        };
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(prepared.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac256(&salted, b"Client Key");
        ScramSecret {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac256(&salted, b"Server Key"),
        }
    }

    /// Parses PostgreSQL's verifier text `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn from_verifier(v: &str) -> Result<Self, AuthError> {
        let bad = AuthError::BadVerifier;
        let rest = v
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(bad("missing prefix"))?;
        let (params, keys) = rest.split_once('$').ok_or(bad("missing '$'"))?;
        let (iter, salt) = params.split_once(':').ok_or(bad("missing salt"))?;
        let (stored, server) = keys.split_once(':').ok_or(bad("missing server key"))?;
        let iterations: u32 = iter.parse().map_err(|_| bad("bad iteration count"))?;
        if iterations == 0 {
            return Err(bad("bad iteration count"));
        }
        let salt = B64.decode(salt).map_err(|_| bad("salt is not base64"))?;
        let key = |s: &str| -> Result<[u8; 32], AuthError> {
            let raw = B64.decode(s).map_err(|_| bad("key is not base64"))?;
            raw.try_into().map_err(|_| bad("key is not 32 bytes"))
        };
        Ok(ScramSecret {
            salt,
            iterations,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// True when `pw` derives to this secret (a clear-text password checked against a
    /// stored SCRAM verifier). Costs one PBKDF2 run with the secret's iteration count.
    pub fn matches_password(&self, pw: &str) -> bool {
        let other = Self::from_password_with_salt(pw, &self.salt, self.iterations);
        bool::from(other.stored_key.ct_eq(&self.stored_key))
    }

    /// The verifier text, in PostgreSQL's format.
    pub fn to_verifier(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}

/// HMAC-SHA-256. HMAC takes keys of any length, so the constructor cannot fail.
fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

enum State {
    Initial,
    FirstSent {
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Finished,
}

/// One server-side SCRAM exchange: feed the client's two messages, send back the answers.
pub struct ScramServer {
    secret: ScramSecret,
    state: State,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer").finish_non_exhaustive()
    }
}

impl ScramServer {
    /// The only mechanism offered in AuthenticationSASL (no `-PLUS`, as in Pgpool-II).
    pub const MECHANISM: &'static str = "SCRAM-SHA-256";

    pub fn new(secret: ScramSecret) -> Self {
        ScramServer {
            secret,
            state: State::Initial,
        }
    }

    /// client-first-message (the SASLInitialResponse data) -> server-first-message.
    pub fn handle_client_first(&mut self, data: &[u8]) -> Result<String, ScramError> {
        if !matches!(self.state, State::Initial) {
            return Err(ScramError::OutOfOrder);
        }
        self.state = State::Finished;
        let text = std::str::from_utf8(data).map_err(|_| ScramError::Protocol("not UTF-8"))?;
        let (gs2_header, bare) = split_gs2_header(text)?;
        let client_nonce = parse_client_first_bare(bare)?;
        let mut raw = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut raw);
        let nonce = format!("{client_nonce}{}", B64.encode(raw));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.secret.salt),
            self.secret.iterations
        );
        self.state = State::FirstSent {
            gs2_header: gs2_header.to_string(),
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// client-final-message -> server-final-message (`v=…`); [`ScramError::WrongPassword`]
    /// when the proof does not match.
    pub fn handle_client_final(&mut self, data: &[u8]) -> Result<String, ScramError> {
        let State::FirstSent {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Finished)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let text = std::str::from_utf8(data).map_err(|_| ScramError::Protocol("not UTF-8"))?;
        let (without_proof, proof) = parse_client_final(text, &gs2_header, &nonce)?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_sig = hmac256(&self.secret.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(client_sig)) {
            *k = p ^ s;
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(computed.ct_eq(&self.secret.stored_key)) {
            return Err(ScramError::WrongPassword);
        }
        let server_sig = hmac256(&self.secret.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_sig)))
    }
}

/// Splits `gs2-header` (`n,,` / `y,,`) from client-first-message-bare.
fn split_gs2_header(text: &str) -> Result<(&str, &str), ScramError> {
    let rest = match text.as_bytes().first() {
        Some(b'n') | Some(b'y') => &text[1..],
        Some(b'p') => return Err(ScramError::ChannelBindingUnsupported),
        _ => return Err(ScramError::Protocol("unexpected channel-binding flag")),
    };
    let rest = rest
        .strip_prefix(',')
        .ok_or(ScramError::Protocol("expected ','"))?;
    if rest.starts_with("a=") {
        return Err(ScramError::Protocol(
            "authorization identity is not supported",
        ));
    }
    let bare = rest
        .strip_prefix(',')
        .ok_or(ScramError::Protocol("expected ','"))?;
    Ok((&text[..text.len() - bare.len()], bare))
}

/// Returns the client nonce from `n=<user>,r=<nonce>[,ext…]`.
fn parse_client_first_bare(bare: &str) -> Result<&str, ScramError> {
    let mut parts = bare.split(',');
    let user = parts.next().unwrap_or_default();
    if user.starts_with("m=") {
        return Err(ScramError::Protocol(
            "mandatory extensions are not supported",
        ));
    }
    if !user.starts_with("n=") {
        return Err(ScramError::Protocol("expected user name attribute"));
    }
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or(ScramError::Protocol("expected nonce attribute"))?;
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(ScramError::Protocol("invalid nonce"));
    }
    Ok(nonce)
}

/// Checks `c=<b64 gs2-header>,r=<nonce>[,ext…],p=<proof>`; returns the message without the
/// proof (part of AuthMessage) and the decoded proof.
fn parse_client_final<'a>(
    text: &'a str,
    gs2_header: &str,
    nonce: &str,
) -> Result<(&'a str, [u8; 32]), ScramError> {
    let idx = text
        .rfind(",p=")
        .ok_or(ScramError::Protocol("missing proof"))?;
    let (without_proof, proof_b64) = (&text[..idx], &text[idx + 3..]);
    let mut parts = without_proof.split(',');
    let binding = parts
        .next()
        .and_then(|p| p.strip_prefix("c="))
        .ok_or(ScramError::Protocol("expected channel binding attribute"))?;
    let binding = B64
        .decode(binding)
        .map_err(|_| ScramError::Protocol("channel binding is not base64"))?;
    if binding != gs2_header.as_bytes() {
        return Err(ScramError::Protocol("channel binding does not match"));
    }
    let got_nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or(ScramError::Protocol("expected nonce attribute"))?;
    if got_nonce != nonce {
        return Err(ScramError::Protocol("nonce does not match"));
    }
    let proof = B64
        .decode(proof_b64)
        .map_err(|_| ScramError::Protocol("proof is not base64"))?;
    let proof: [u8; 32] = proof
        .try_into()
        .map_err(|_| ScramError::Protocol("proof has the wrong length"))?;
    Ok((without_proof, proof))
}

/// Derived secrets keyed by (user, password fingerprint), so repeated logins skip the 4096
/// PBKDF2 rounds (about 0.5 ms each, which dominates `pgbench -C`). The salt then stays the
/// same across logins for a user, which a client can only notice by comparing salts. A
/// changed password has a new fingerprint, so stale entries are never used.
pub struct ScramSecretCache {
    fingerprint_key: [u8; 32],
    capacity: usize,
    entries: Mutex<HashMap<(String, [u8; 32]), ScramSecret>>,
}

impl fmt::Debug for ScramSecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecretCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for ScramSecretCache {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl ScramSecretCache {
    /// A cache holding at most `capacity` secrets (at least one).
    pub fn new(capacity: usize) -> Self {
        let mut fingerprint_key = [0u8; 32];
        rand::rng().fill_bytes(&mut fingerprint_key);
        ScramSecretCache {
            fingerprint_key,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached secret for this user and password, deriving (outside the lock) on a miss.
    pub fn get_or_derive(&self, user: &str, pw: &str) -> ScramSecret {
        // Keyed HMAC, not a bare hash: the map then holds nothing a dictionary attack can use.
        let key = (
            user.to_string(),
            hmac256(&self.fingerprint_key, pw.as_bytes()),
        );
        if let Some(s) = self.lock().get(&key) {
            return s.clone();
        }
        let secret = ScramSecret::from_password(pw);
        let mut map = self.lock();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            // Any victim will do: entries are cheap to rebuild and the bound is what matters.
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.entry(key).or_insert(secret).clone()
    }

    /// Number of cached secrets.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drops everything (for example after pool_passwd is reloaded).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, [u8; 32]), ScramSecret>> {
        // A panic elsewhere cannot leave a half-written map entry, so poison is harmless.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests;
