//! The errors of the password-file and key handling.

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
