//! Authentication building blocks, all sans-IO: the files Pgpool-II reads (`pool_passwd`,
//! `pool_hba.conf`, `pcp.conf`, the AES key file), the password formats stored in them
//! (md5, AES, plain, SCRAM verifiers), the server side of SCRAM-SHA-256, and the image's
//! `*_USERNAME`/`*_PASSWORD` environment convention.
//!
//! The session and PCP code drive these pieces over the wire; nothing here reads a socket,
//! so every rule can be tested with plain values.

pub(crate) mod aes;
pub(crate) mod delay;
pub(crate) mod envcreds;
pub(crate) mod hba;
pub(crate) mod keyfile;
pub(crate) mod md5;
pub(crate) mod passwd;
pub(crate) mod pcp_conf;
pub(crate) mod scram;
pub mod setup;
pub mod tools;

pub use aes::{decrypt_password, derive_key_iv, encrypt_password};
pub use delay::AuthDelay;
pub use envcreds::{apply_env_credentials, EnvCredentials};
pub use hba::{ConnType, HbaError, HbaFile, HbaLine, HbaMethod, HbaRequest};
pub use keyfile::{read_key, resolve_key_file};
pub use md5::{md5_hex, md5_salted, pg_md5_password};
pub use passwd::{upsert_entry, PoolPasswd, StoredPassword};
pub use pcp_conf::PcpUsers;
pub use scram::{ScramError, ScramSecret, ScramSecretCache, ScramServer};

use std::path::PathBuf;

/// Errors of the password-file and key handling. Messages follow Pgpool-II's wording where
/// Pgpool-II has one, so logs read the same to an operator who knows it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A file could not be read or written.
    #[error("could not access file \"{path}\": {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The stored AES value is not valid base64.
    #[error("base64 decoding failed")]
    Base64,
    /// Wrong key, or a corrupted ciphertext (bad padding or not UTF-8).
    #[error("decryption failed")]
    Decrypt,
    /// The key file exists but holds no key.
    #[error("pool key file \"{0}\" contains no key")]
    EmptyKey(PathBuf),
    /// The key file is a directory, device or similar.
    #[error("pool key file \"{0}\" is not a plain file")]
    KeyNotPlainFile(PathBuf),
    /// A SCRAM verifier string does not have the `SCRAM-SHA-256$iter:salt$stored:server` shape.
    #[error("invalid SCRAM verifier: {0}")]
    BadVerifier(&'static str),
    /// A user name or password that cannot be written into a one-line entry.
    #[error("invalid pool_passwd entry: {0}")]
    BadEntry(&'static str),
    /// The environment asks for something we cannot do (unknown method, missing password).
    #[error("{0}")]
    Env(String),
}

impl AuthError {
    /// Wraps an I/O error with the file it concerns.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        AuthError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
