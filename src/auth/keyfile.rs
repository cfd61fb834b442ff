//! The AES key file (spec 3.4): `-k` path, else `$PGPOOLKEYFILE`, else `$HOME/.pgpoolkey`.
//! The key is the first line without its `\n`, at most 255 bytes, like Pgpool-II's
//! `fgets` into a 256-byte buffer.

use crate::auth::error::AuthError;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Environment variable that names the key file.
pub const KEY_FILE_ENV: &str = "PGPOOLKEYFILE";
/// Key file name in the home directory.
pub const KEY_FILE_NAME: &str = ".pgpoolkey";
/// Longest key Pgpool-II reads (its buffer is 256 bytes including the terminator).
pub const MAX_KEY_LEN: usize = 255;

/// Where the key file is: the `-k` argument, else `$PGPOOLKEYFILE`, else `$HOME/.pgpoolkey`.
/// `None` only when none of the three is available.
pub fn resolve_key_file(cli: Option<&Path>) -> Option<PathBuf> {
    resolve_key_file_from(
        cli,
        std::env::var_os(KEY_FILE_ENV),
        std::env::var_os("HOME"),
    )
}

/// [`resolve_key_file`] with the environment passed in, so the order is testable.
pub fn resolve_key_file_from(
    cli: Option<&Path>,
    env_file: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if let Some(p) = cli {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env_file.filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    home.filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(KEY_FILE_NAME))
}

/// Reads the key: first line, trailing `\n` removed (a `\r` stays, as in Pgpool-II), cut to
/// 255 bytes. Logs a warning, but still uses the key, when group or others can access the
/// file — Pgpool-II does the same.
pub fn read_key(path: &Path) -> Result<String, AuthError> {
    let mut file = std::fs::File::open(path).map_err(|e| AuthError::io(path, e))?;
    let meta = file.metadata().map_err(|e| AuthError::io(path, e))?;
    if !meta.is_file() {
        return Err(AuthError::KeyNotPlainFile(path.to_path_buf()));
    }
    if group_or_world_access(&meta) {
        tracing::warn!(
            "pool key file \"{}\" has group or world access; permissions should be u=rw (0600) or less",
            path.display()
        );
    }
    // Only the first line matters; bound the read so a huge file cannot exhaust memory.
    let mut buf = Vec::with_capacity(MAX_KEY_LEN + 1);
    file.by_ref()
        .take(MAX_KEY_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(|e| AuthError::io(path, e))?;
    key_from_bytes(&buf).ok_or_else(|| AuthError::EmptyKey(path.to_path_buf()))
}

/// First line of `buf` without its `\n`; `None` if that is empty.
fn key_from_bytes(buf: &[u8]) -> Option<String> {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = &line[..line.len().min(MAX_KEY_LEN)];
    if line.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(line).into_owned())
}

#[cfg(unix)]
fn group_or_world_access(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o077 != 0
}

#[cfg(not(unix))]
fn group_or_world_access(_meta: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_cli_then_env_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        let cli = Path::new("/cli/key");
        type Case<'a> = (
            Option<&'a Path>,
            Option<OsString>,
            Option<OsString>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (Some(cli), os("/env/key"), os("/home/u"), Some("/cli/key")),
            (None, os("/env/key"), os("/home/u"), Some("/env/key")),
            (None, os(""), os("/home/u"), Some("/home/u/.pgpoolkey")),
            (None, None, os("/home/u"), Some("/home/u/.pgpoolkey")),
            (None, None, None, None),
        ];
        for (cli, env, home, want) in cases {
            let got = resolve_key_file_from(cli, env, home);
            assert_eq!(got.as_deref(), want.map(Path::new));
        }
    }

    #[test]
    fn key_is_first_line_without_newline_and_bounded() {
        let long = "k".repeat(300);
        let cases: Vec<(&[u8], Option<&str>)> = vec![
            (b"mykey\n", Some("mykey")),
            (b"mykey", Some("mykey")),
            (b"mykey\nsecond\n", Some("mykey")),
            (b"mykey\r\n", Some("mykey\r")),
            (b"\nmykey\n", None),
            (b"", None),
            (long.as_bytes(), Some(&long[..255])),
        ];
        for (input, want) in cases {
            assert_eq!(key_from_bytes(input).as_deref(), want, "{input:?}");
        }
    }

    #[test]
    fn read_key_reads_file_and_same_key_encrypts_like_pg_enc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "mykey\n").expect("write");
        let key = read_key(&path).expect("key");
        assert_eq!(key, "mykey");
        assert_eq!(
            crate::auth::encrypt_password("secret", &key),
            "AESV7IMV7YNworqqZU1Z46Wgw=="
        );
        assert!(read_key(&dir.path().join("missing")).is_err());
        assert!(matches!(
            read_key(dir.path()),
            Err(AuthError::KeyNotPlainFile(_)) | Err(AuthError::Io { .. })
        ));
    }
}
