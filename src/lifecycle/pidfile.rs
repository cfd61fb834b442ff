//! The pid file (`pid_file_name`) and Pgpool-II's `pgpool stop` / `pgpool reload`, which find
//! the running proxy through it and signal it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ShutdownMode;

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("could not access pid file \"{}\": {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pid file \"{}\" found: is another pgpool (pid {pid}) running?", path.display())]
    AlreadyRunning { path: PathBuf, pid: i32 },
    #[error("pid file \"{}\" does not hold a process id", path.display())]
    BadPid { path: PathBuf },
    #[error("could not send signal to pgpool (pid {pid}): {source}")]
    Signal { pid: i32, source: std::io::Error },
    #[error("pgpool (pid {pid}) did not stop within {secs} s")]
    StillRunning { pid: i32, secs: u64 },
}

/// The pid file of the running proxy; removed again when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes our pid to `path`, unless a live process other than us is named there (a file
    /// left by a crash, or by an earlier container of the same pod with our pid 1, is stale).
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let io = |source| PidFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Ok(pid) = read_pid(path) {
            if pid != own_pid() && alive(pid) {
                return Err(PidFileError::AlreadyRunning {
                    path: path.to_path_buf(),
                    pid,
                });
            }
        }
        let mut f = std::fs::File::create(path).map_err(io)?;
        writeln!(f, "{}", own_pid()).map_err(io)?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read_pid(&self.path).ok() == Some(own_pid()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn own_pid() -> i32 {
    std::process::id() as i32
}

/// The process id in a pid file.
pub fn read_pid(path: &Path) -> Result<i32, PidFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PidFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| PidFileError::BadPid {
            path: path.to_path_buf(),
        })
}

fn signal(pid: i32, sig: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether a process with this id exists (EPERM: it exists, under another user).
fn alive(pid: i32) -> bool {
    match signal(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// What `pgpool stop` and `pgpool reload` do.
#[derive(Clone, Copy, Debug)]
pub enum Command {
    Stop(ShutdownMode),
    Reload,
}

/// Signals the proxy named in `pid_file`: SIGHUP for reload; for stop the mode's signal,
/// then waits (up to `wait`) until the process is gone, printing a dot a second as
/// Pgpool-II does.
pub fn send_command(pid_file: &Path, cmd: Command, wait: Duration) -> Result<(), PidFileError> {
    let pid = read_pid(pid_file)?;
    let sig = match cmd {
        Command::Reload => libc::SIGHUP,
        Command::Stop(mode) => mode.signal(),
    };
    signal(pid, sig).map_err(|source| PidFileError::Signal { pid, source })?;
    if let Command::Stop(_) = cmd {
        print!("stop request sent to pgpool (pid: {pid}). waiting for termination...");
        let _ = std::io::stdout().flush();
        let deadline = Instant::now() + wait;
        while alive(pid) {
            if Instant::now() > deadline {
                println!();
                return Err(PidFileError::StillRunning {
                    pid,
                    secs: wait.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        println!("done.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_pid_file_is_replaced_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpool.pid");
        // No process has pid i32::MAX (above pid_max).
        std::fs::write(&path, format!("{}\n", i32::MAX)).unwrap();
        let pf = PidFile::create(&path).unwrap();
        assert_eq!(read_pid(&path).unwrap(), own_pid());
        drop(pf);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_other_process_blocks_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpool.pid");
        std::fs::write(&path, "1\n").unwrap(); // init is always there
        if own_pid() != 1 {
            let err = PidFile::create(&path).unwrap_err();
            assert!(matches!(err, PidFileError::AlreadyRunning { pid: 1, .. }));
        }
    }

    #[test]
    fn garbage_is_not_a_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpool.pid");
        std::fs::write(&path, "hello\n").unwrap();
        assert!(matches!(read_pid(&path), Err(PidFileError::BadPid { .. })));
    }
}
