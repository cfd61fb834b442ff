//! `pool_passwd` (spec 3.1–3.2): `user:password` lines, `\` escapes in the user name, the
//! stored password's prefix decides its type. Parsing never fails as a whole: a bad line is
//! reported with its number and skipped, so one typo does not lock every user out.

use crate::auth::aes;
use crate::auth::error::AuthError;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

/// Longest line Pgpool-II reads (its `fgets` buffer is 1024 bytes).
const MAX_LINE_LEN: usize = 1023;

/// A pool_passwd entry, classified and (for AES) decrypted.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredPassword {
    /// `"md5" + 32 chars`: md5 of password+user. Usable for md5 only (spec 3.5).
    Md5(String),
    /// Clear text: a `TEXT` entry without its prefix, a bare entry, or a decrypted AES entry.
    Plain(String),
    /// `SCRAM-SHA-256$…`: accepted in the file, but Pgpool-II cannot use it for any method.
    ScramVerifier(String),
    /// An AES entry we could not decrypt (no key or wrong key).
    Undecryptable,
}

impl StoredPassword {
    /// Classifies a stored value like Pgpool-II's `get_password_type`; AES entries are
    /// decrypted with `key`, and become [`StoredPassword::Undecryptable`] when that fails.
    pub fn classify(stored: &str, key: Option<&str>) -> Result<StoredPassword, AuthError> {
        if let Some(hash) = stored.strip_prefix("md5") {
            if hash.len() == 32 {
                return Ok(StoredPassword::Md5(stored.to_string()));
            }
            return Ok(StoredPassword::Plain(stored.to_string()));
        }
        if stored.starts_with(aes::AES_PREFIX) {
            let key = key.ok_or(AuthError::Decrypt)?;
            return aes::decrypt_password(stored, key).map(StoredPassword::Plain);
        }
        if stored.starts_with("SCRAM-SHA-256$") {
            return Ok(StoredPassword::ScramVerifier(stored.to_string()));
        }
        let plain = stored.strip_prefix("TEXT").unwrap_or(stored);
        Ok(StoredPassword::Plain(plain.to_string()))
    }

    /// Short type name for logs ("md5", "text", "scram", "aes-undecryptable").
    pub fn kind(&self) -> &'static str {
        match self {
            StoredPassword::Md5(_) => "md5",
            StoredPassword::Plain(_) => "text",
            StoredPassword::ScramVerifier(_) => "scram",
            StoredPassword::Undecryptable => "aes-undecryptable",
        }
    }
}

/// Prints only the kind: a Debug of a session or config must never leak a password.
impl fmt::Debug for StoredPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredPassword({})", self.kind())
    }
}

/// The parsed pool_passwd: user name → stored password; the first line for a user wins.
#[derive(Clone, Default)]
pub struct PoolPasswd {
    entries: HashMap<String, StoredPassword>,
}

impl fmt::Debug for PoolPasswd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<_> = self.entries.keys().collect();
        users.sort();
        f.debug_struct("PoolPasswd").field("users", &users).finish()
    }
}

impl PoolPasswd {
    /// Parses the file text. Returns the entries and one warning per skipped or unusable
    /// line, each naming the line number (never the password).
    pub fn parse(text: &str, key: Option<&str>) -> (PoolPasswd, Vec<String>) {
        let mut entries = HashMap::new();
        let mut warnings = Vec::new();
        for (idx, line) in text.split('\n').enumerate() {
            let line_no = idx + 1;
            if line.is_empty() {
                continue;
            }
            match parse_line(line) {
                Err(why) => warnings.push(format!("pool_passwd line {line_no}: {why}, skipped")),
                Ok((user, _)) if entries.contains_key(&user) => warnings.push(format!(
                    "pool_passwd line {line_no}: duplicate entry for user \"{user}\" ignored"
                )),
                Ok((user, stored)) => {
                    let entry = StoredPassword::classify(&stored, key).unwrap_or_else(|e| {
                        warnings.push(format!(
                            "pool_passwd line {line_no}: unable to decrypt password of user \"{user}\" ({e}); verify the valid pool_key exists"
                        ));
                        StoredPassword::Undecryptable
                    });
                    entries.insert(user, entry);
                }
            }
        }
        (PoolPasswd { entries }, warnings)
    }

    /// Reads and parses the file.
    pub fn load(path: &Path, key: Option<&str>) -> Result<(PoolPasswd, Vec<String>), AuthError> {
        let bytes = std::fs::read(path).map_err(|e| AuthError::io(path, e))?;
        Ok(Self::parse(&String::from_utf8_lossy(&bytes), key))
    }

    /// The entry for `user` (exact, case-sensitive match).
    pub fn get(&self, user: &str) -> Option<&StoredPassword> {
        self.entries.get(user)
    }

    /// True when the file had no usable line.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Users whose entry differs between `self` and `other` (added, removed or changed,
    /// after decryption: a new key that changes what an AES entry means counts).
    pub fn changed_users(&self, other: &PoolPasswd) -> Vec<String> {
        let mut users: Vec<String> = self
            .entries
            .iter()
            .filter(|(u, e)| other.entries.get(*u) != Some(*e))
            .map(|(u, _)| u.clone())
            .collect();
        users.extend(
            other
                .entries
                .keys()
                .filter(|u| !self.entries.contains_key(*u))
                .cloned(),
        );
        users.sort();
        users
    }
}

/// Splits one line into (user, stored password); both with `\` escapes resolved. A trailing
/// `:backenduser:backendpassword` is accepted and ignored, as Pgpool-II does.
fn parse_line(line: &str) -> Result<(String, String), &'static str> {
    if line.len() > MAX_LINE_LEN {
        return Err("line longer than 1023 bytes");
    }
    let (user, rest) = read_token(line);
    let rest = rest.ok_or("no ':' after the user name")?;
    if user.is_empty() {
        return Err("empty user name");
    }
    let (stored, _) = read_token(rest);
    if stored.is_empty() {
        return Err("empty password");
    }
    Ok((user, stored))
}

/// Reads up to the first unescaped `:`; returns the unescaped token and the text after the
/// colon (`None` if there was no colon).
pub(crate) fn read_token(s: &str) -> (String, Option<&str>) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            ':' => return (out, s.get(i + 1..)),
            _ => out.push(c),
        }
    }
    (out, None)
}

/// Escapes `\` and `:` so [`read_token`] (and Pgpool-II's reader) gets the value back.
fn escape_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c == ':' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Inserts or replaces `user`'s line (what `pg_md5 -m` / `pg_enc -m` do), keeping every
/// other line as it was. The file is written to a sibling and renamed, mode 0600, so a
/// concurrent reader sees either the old or the new file, never half of one.
pub fn upsert_entry(path: &Path, user: &str, stored: &str) -> Result<(), AuthError> {
    if user.is_empty() || stored.is_empty() {
        return Err(AuthError::BadEntry("empty user name or password"));
    }
    if user.contains(['\n', '\0']) || stored.contains(['\n', '\0']) {
        return Err(AuthError::BadEntry(
            "user name or password contains a newline",
        ));
    }
    let new_line = format!("{}:{}", escape_token(user), escape_token(stored));
    upsert_line(path, &new_line, |line| {
        let (u, rest) = read_token(line);
        rest.is_some() && u == user
    })
}

/// Replaces the first line for which `is_target` holds with `new_line`, or appends it, and
/// writes the result atomically with mode 0600. Shared with pcp.conf.
pub(crate) fn upsert_line(
    path: &Path,
    new_line: &str,
    is_target: impl Fn(&str) -> bool,
) -> Result<(), AuthError> {
    let old = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(AuthError::io(path, e)),
    };
    let mut out = String::with_capacity(old.len() + new_line.len() + 1);
    let mut replaced = false;
    for line in old.split_inclusive('\n') {
        if !replaced && is_target(line.trim_end_matches('\n')) {
            out.push_str(new_line);
            out.push('\n');
            replaced = true;
        } else {
            out.push_str(line);
        }
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(new_line);
        out.push('\n');
    }
    write_private_atomic(path, out.as_bytes())
}

/// Writes `contents` to `path` via a temporary sibling and a rename; the file ends up 0600.
pub(crate) fn write_private_atomic(path: &Path, contents: &[u8]) -> Result<(), AuthError> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = opts.open(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()
    });
    if let Err(e) = result.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(AuthError::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> Option<StoredPassword> {
        Some(StoredPassword::Plain(s.to_string()))
    }

    #[test]
    fn changed_users_are_those_whose_entry_differs() {
        let old = PoolPasswd::parse("a:TEXTx\nb:TEXTy\nc:TEXTz\n", None).0;
        let new = PoolPasswd::parse("a:TEXTx\nb:TEXTnew\nd:TEXTw\n", None).0;
        assert_eq!(old.changed_users(&new), vec!["b", "c", "d"]);
        assert!(old.changed_users(&old).is_empty());
    }

    #[test]
    fn stored_values_are_classified_like_pgpool() {
        let md5 = "md54a0a68b43b6cd5cf266fa02f196e2371";
        let cases: Vec<(&str, Option<StoredPassword>)> = vec![
            (md5, Some(StoredPassword::Md5(md5.into()))),
            ("md5short", plain("md5short")),
            (
                "md54a0a68b43b6cd5cf266fa02f196e23710",
                plain("md54a0a68b43b6cd5cf266fa02f196e23710"),
            ),
            ("TEXTsecret", plain("secret")),
            ("secret", plain("secret")),
            ("AESV7IMV7YNworqqZU1Z46Wgw==", plain("secret")),
            (
                "SCRAM-SHA-256$4096:c2FsdA==$a:b",
                Some(StoredPassword::ScramVerifier(
                    "SCRAM-SHA-256$4096:c2FsdA==$a:b".into(),
                )),
            ),
        ];
        for (stored, want) in cases {
            assert_eq!(
                StoredPassword::classify(stored, Some("mykey")).ok(),
                want,
                "{stored}"
            );
        }
    }

    #[test]
    fn parse_handles_escapes_cr_and_bad_lines() {
        let text = "alice:md54a0a68b43b6cd5cf266fa02f196e2371\n\
                    we\\:ird\\\\name:TEXTpw\n\
                    no-colon-here\n\
                    :nouser\n\
                    emptypw:\n\
                    crlf:secret\r\n\
                    bob:AESV7IMV7YNworqqZU1Z46Wgw==\n\
                    mapped:pw1:backend:pw2\n\
                    alice:TEXTsecond\n\
                    \n";
        let (pp, warnings) = PoolPasswd::parse(text, Some("mykey"));
        let md5 = StoredPassword::Md5("md54a0a68b43b6cd5cf266fa02f196e2371".into());
        let cases: Vec<(&str, Option<StoredPassword>)> = vec![
            ("alice", Some(md5)),
            ("we:ird\\name", plain("pw")),
            ("crlf", plain("secret\r")),
            ("bob", plain("secret")),
            ("mapped", plain("pw1")),
            ("no-colon-here", None),
            ("emptypw", None),
            ("", None),
        ];
        for (user, want) in cases {
            assert_eq!(pp.get(user).cloned(), want, "{user}");
        }
        assert_eq!(pp.len(), 5);
        let lines: Vec<&str> = ["line 3:", "line 4:", "line 5:", "line 9:"].to_vec();
        assert_eq!(warnings.len(), lines.len(), "{warnings:?}");
        for (w, l) in warnings.iter().zip(lines) {
            assert!(w.contains(l), "{w} should name {l}");
        }
    }

    #[test]
    fn aes_without_or_with_wrong_key_is_undecryptable_and_warned() {
        for key in [None, Some("wrongkey")] {
            let (pp, warnings) = PoolPasswd::parse("bob:AESV7IMV7YNworqqZU1Z46Wgw==\n", key);
            assert_eq!(
                pp.get("bob"),
                Some(&StoredPassword::Undecryptable),
                "{key:?}"
            );
            assert_eq!(warnings.len(), 1);
            assert!(warnings[0].contains("line 1"));
        }
    }

    #[test]
    fn debug_never_prints_passwords() {
        let (pp, _) = PoolPasswd::parse(
            "alice:TEXTtopsecret\nbob:AESV7IMV7YNworqqZU1Z46Wgw==\n",
            Some("mykey"),
        );
        let shown = format!("{pp:?} {:?} {:?}", pp.get("alice"), pp.get("bob"));
        assert!(
            !shown.contains("topsecret") && !shown.contains("secret\""),
            "{shown}"
        );
        assert!(shown.contains("alice"));
    }

    #[test]
    fn upsert_replaces_or_appends_and_keeps_other_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pool_passwd");
        std::fs::write(&path, "alice:old\nkeep:me\r\nno-newline:at-end").expect("write");
        upsert_entry(&path, "alice", "md54a0a68b43b6cd5cf266fa02f196e2371").expect("upsert");
        upsert_entry(&path, "new:user", "TEXTa:b\\c").expect("upsert");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "alice:md54a0a68b43b6cd5cf266fa02f196e2371\nkeep:me\r\nno-newline:at-end\nnew\\:user:TEXTa\\:b\\\\c\n"
        );
        let (pp, warnings) = PoolPasswd::parse(&text, None);
        assert!(warnings.is_empty());
        assert_eq!(pp.get("new:user").cloned(), plain("a:b\\c"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn upsert_creates_missing_file_and_rejects_newlines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pool_passwd");
        upsert_entry(&path, "alice", "x").expect("create");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "alice:x\n");
        assert!(upsert_entry(&path, "a\nb", "x").is_err());
        assert!(upsert_entry(&path, "a", "x\ny").is_err());
        assert!(upsert_entry(&path, "", "x").is_err());
    }
}
