//! pgpool-rs: a PostgreSQL v3 proxy that reads Pgpool-II's configuration, authenticates
//! clients, sends writes to the primary and reads to the replica, and caches backend
//! connections. See DESIGN in the repository for the data path.

pub mod admin;
pub mod auth;
pub(crate) mod backend;
pub mod config;
pub mod context;
pub mod lifecycle;
pub(crate) mod listen;
pub mod logging;
pub mod protocol;
pub mod replication;
pub mod router;
pub mod server;
pub(crate) mod session;
pub mod stats;
pub(crate) mod stream;
pub mod tls;
