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
mod error;
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
pub use error::AuthError;
pub use hba::{ConnType, HbaError, HbaFile, HbaLine, HbaMethod, HbaRequest};
pub use keyfile::{read_key, resolve_key_file};
pub use md5::{md5_hex, md5_salted, pg_md5_password};
pub use passwd::{upsert_entry, PoolPasswd, StoredPassword};
pub use pcp_conf::PcpUsers;
pub use scram::{ScramError, ScramSecret, ScramSecretCache, ScramServer};
