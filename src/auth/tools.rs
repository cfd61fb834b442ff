//! Helpers for the `pg_md5` and `pg_enc` command-line tools: finding pool_passwd from a
//! pgpool.conf, prompting for a password without echo, and the current user's name.
//! They live here so the binaries stay a thin layer of option handling.

use crate::auth::AuthError;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Where Pgpool-II looks for pgpool.conf when `-f` is not given (its default `sysconfdir`).
pub const DEFAULT_CONFIG_FILE: &str = "/usr/local/etc/pgpool.conf";
/// Longest password the tools accept (Pgpool-II's `MAX_PGPASS_LEN` / `MAX_USER_NAME_LEN`).
pub const MAX_PASSWORD_LEN: usize = 128;

/// The pool_passwd file named by `conf`: the last `pool_passwd` setting, default
/// `pool_passwd`, relative to the directory of `conf`. An empty setting means pool_passwd
/// is disabled, which is an error for a tool that was asked to write it.
pub fn pool_passwd_path(conf: &Path) -> Result<PathBuf, AuthError> {
    let text = std::fs::read_to_string(conf).map_err(|e| AuthError::io(conf, e))?;
    let name = scan_setting(&text, "pool_passwd").unwrap_or_else(|| "pool_passwd".to_string());
    if name.is_empty() {
        return Err(AuthError::Env(format!(
            "pool_passwd is disabled in \"{}\"",
            conf.display()
        )));
    }
    let dir = conf.parent().unwrap_or(Path::new("."));
    Ok(dir.join(name))
}

/// The value of the last `key = value` line for `key`: a `'…'` string taken verbatim
/// (pgpool.conf does no escape processing), or an unquoted word. Keys are case-sensitive
/// and `=` is optional, as in Pgpool-II's lexer. Not a full parser: only what the tools need.
pub fn scan_setting(text: &str, key: &str) -> Option<String> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix(key) else {
            continue;
        };
        if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue; // a longer key such as pool_passwd_x
        }
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
        let value = match rest.strip_prefix('\'') {
            Some(q) => q.find('\'').map(|end| q[..end].to_string()),
            None => rest
                .split(|c: char| c.is_whitespace() || c == '#')
                .next()
                .map(str::to_string),
        };
        if value.is_some() {
            found = value;
        }
    }
    found
}

/// Prints `prompt` and reads one line from stdin without its `\n`. Echo is turned off when
/// stdin is a terminal; from a pipe the line is read as is (the original tools refuse pipes,
/// which makes them hard to script).
pub fn prompt_line(prompt: &str) -> Result<String, AuthError> {
    let stdin = std::io::stdin();
    let echo_guard = EchoOff::new();
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    drop(echo_guard);
    println!();
    let stdin_err = |e| AuthError::io(Path::new("<stdin>"), e);
    if read.map_err(stdin_err)? == 0 {
        return Err(stdin_err(std::io::ErrorKind::UnexpectedEof.into()));
    }
    if line.ends_with('\n') {
        line.pop();
    }
    Ok(line)
}

/// Turns terminal echo off for its lifetime (no-op when stdin is not a terminal).
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: termios is plain data; tcgetattr/tcsetattr only read/write that struct
        // for file descriptor 0, and we restore the saved settings in Drop.
        unsafe {
            if libc::isatty(0) != 1 {
                return EchoOff(None);
            }
            let mut tio: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut tio) != 0 {
                return EchoOff(None);
            }
            let saved = tio;
            tio.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK | libc::ECHONL);
            if libc::tcsetattr(0, libc::TCSANOW, &tio) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = self.0 {
            // SAFETY: restores the settings read in `new` for the same descriptor.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}

/// The user a `-m` entry is written for: `-u` when given, else the current user.
pub fn entry_user(given: Option<&str>) -> Result<String, String> {
    match given {
        Some(u) if !u.is_empty() => Ok(u.to_string()),
        _ => current_user_name().ok_or_else(|| "could not determine the current user".into()),
    }
}

/// Runs a tool's body: its error goes to stderr and the exit status says failure.
pub fn exit_with(result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The login name of the current user (what `-m` without `-u` writes an entry for).
pub fn current_user_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage or NULL; we copy the name out
    // immediately and the tools are single-threaded.
    let from_passwd = unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr((*pw).pw_name)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    };
    from_passwd.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_setting_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("pool_passwd = 'pp'\n", Some("pp")),
            ("pool_passwd='pp'", Some("pp")),
            ("pool_passwd pp # comment", Some("pp")),
            ("  pool_passwd = ''", Some("")),
            ("#pool_passwd = 'x'", None),
            ("pool_passwd_extra = 'x'", None),
            ("pool_passwd = 'a'\npool_passwd = 'b'", Some("b")),
            ("pool_passwd = '/abs/path'", Some("/abs/path")),
            ("POOL_PASSWD = 'x'", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                scan_setting(text, "pool_passwd").as_deref(),
                *want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn pool_passwd_is_next_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("pgpool.conf");
        let cases: &[(&str, Option<PathBuf>)] = &[
            ("port = 9999\n", Some(dir.path().join("pool_passwd"))),
            ("pool_passwd = 'other'\n", Some(dir.path().join("other"))),
            ("pool_passwd = '/etc/pp'\n", Some(PathBuf::from("/etc/pp"))),
            ("pool_passwd = ''\n", None),
        ];
        for (text, want) in cases {
            std::fs::write(&conf, text).expect("write");
            assert_eq!(pool_passwd_path(&conf).ok(), *want, "{text:?}");
        }
        assert!(pool_passwd_path(&dir.path().join("missing.conf")).is_err());
    }
}
