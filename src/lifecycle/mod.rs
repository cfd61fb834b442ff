//! The process lifecycle on Kubernetes: signals, graceful drain, reload and the pid file.
//!
//! Kubernetes sends SIGTERM on every rollout, so SIGTERM must not drop clients. It starts a
//! drain: `/readyz` fails at once (`Context::start_draining`), the proxy keeps serving for
//! `shutdown_delay` while the endpoint is removed from the Service, then stops accepting and
//! ends each session at its next transaction boundary with FATAL 57P01 (which poolers and
//! drivers retry); after `drain_timeout` whatever is left is cancelled and closed. Pgpool-II's
//! other modes map as in Pgpool-II: SIGINT = fast, SIGQUIT = immediate (the same as fast).
//!
//! Reload (SIGHUP, `pgpool reload`, PCP, or a change of the mounted files) reads every file
//! first and swaps them in only if all of them parse and validate; sessions keep running.
//! PCP's `pcp_stop_pgpool` / `pcp_reload_config` arrive through `Context::shutdown_requested`
//! / `reload_requested`.

mod pidfile;
mod reload;
mod shutdown;
mod sources;

pub use pidfile::{read_pid, send_command, Command, PidFile, PidFileError};
pub use reload::{reload, reload_logged, watch_files, ReloadReport};
pub use shutdown::serve_until_stopped;
pub use sources::{LoadError, Snapshot, Sources, CONF_VOLUME_ENV};

pub use crate::context::control::{shutdown_error, Control, Phase, SessionWatch};

/// Pgpool-II's `-m` shutdown modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// SIGTERM: the Kubernetes drain described in the module comment.
    Smart,
    /// SIGINT: no delay, no waiting for transactions: sessions end at once with 57P01.
    Fast,
    /// SIGQUIT: as fast (Pgpool-II documents immediate as the same as fast).
    Immediate,
}

impl ShutdownMode {
    /// Parses `-m`: `s`/`smart`, `f`/`fast`, `i`/`immediate`, as Pgpool-II does.
    pub fn parse(text: &str) -> Option<ShutdownMode> {
        match text {
            "s" | "smart" => Some(ShutdownMode::Smart),
            "f" | "fast" => Some(ShutdownMode::Fast),
            "i" | "immediate" => Some(ShutdownMode::Immediate),
            _ => None,
        }
    }

    /// The signal Pgpool-II's `pgpool -m MODE stop` sends for this mode.
    pub fn signal(self) -> libc::c_int {
        match self {
            ShutdownMode::Smart => libc::SIGTERM,
            ShutdownMode::Fast => libc::SIGINT,
            ShutdownMode::Immediate => libc::SIGQUIT,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ShutdownMode::Smart => "smart",
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_modes_parse_like_pgpool() {
        let cases = [
            ("s", Some(ShutdownMode::Smart)),
            ("smart", Some(ShutdownMode::Smart)),
            ("f", Some(ShutdownMode::Fast)),
            ("fast", Some(ShutdownMode::Fast)),
            ("i", Some(ShutdownMode::Immediate)),
            ("immediate", Some(ShutdownMode::Immediate)),
            ("SMART", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(ShutdownMode::parse(text), want, "{text}");
        }
    }
}
