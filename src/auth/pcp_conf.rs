//! `pcp.conf`: `user:md5hex` lines, where `md5hex` is `hex(md5(password))` without prefix
//! (what `pg_md5 <password>` prints). Lines starting with `#` and blank lines are skipped.

use crate::auth::error::AuthError;
use crate::auth::md5::md5_salted;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use subtle::ConstantTimeEq;

/// The PCP users and their stored md5 hashes.
#[derive(Clone, Default)]
pub struct PcpUsers {
    users: HashMap<String, String>,
}

/// Prints user names only.
impl fmt::Debug for PcpUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<_> = self.users.keys().collect();
        users.sort();
        f.debug_struct("PcpUsers").field("users", &users).finish()
    }
}

impl PcpUsers {
    /// Parses the file text; the first line for a user wins, lines without `:` are ignored.
    pub fn parse(text: &str) -> Self {
        let mut users = HashMap::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((user, hash)) = line.split_once(':') {
                let user = user.trim();
                if !user.is_empty() {
                    users
                        .entry(user.to_string())
                        .or_insert_with(|| hash.trim().to_string());
                }
            }
        }
        PcpUsers { users }
    }

    /// Reads and parses the file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let bytes = std::fs::read(path).map_err(|e| AuthError::io(path, e))?;
        Ok(Self::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// Checks a PCP login (spec 8.2): the client sends
    /// `hex(md5(hex(md5(stored || user)) || salt))`, with `stored = hex(md5(password))`.
    /// The `md5` prefix on the client's value is accepted but not required.
    pub fn verify(&self, user: &str, salt: [u8; 4], client_hash: &str) -> bool {
        let Some(stored) = self.users.get(user) else {
            return false;
        };
        let stage_b = crate::auth::md5::md5_hex(format!("{stored}{user}").as_bytes());
        let want = md5_salted(&stage_b, salt);
        let got = client_hash.strip_prefix("md5").unwrap_or(client_hash);
        let want = want.strip_prefix("md5").unwrap_or(&want);
        want.as_bytes().ct_eq(got.as_bytes()).into()
    }

    /// True when the file had no user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "# USERID:MD5PASSWD\n\npcpuser:5ebe2294ecd0e0f08eab7690d2a6ee69\nother:x\n";

    #[test]
    fn spec_vector_verifies() {
        let users = PcpUsers::parse(CONF);
        let salt = [1, 2, 3, 4];
        let stage_b = crate::auth::md5_hex(b"5ebe2294ecd0e0f08eab7690d2a6ee69pcpuser");
        assert_eq!(stage_b, "fec38f15eb4ccf6e1d53f6120dc3fee4");
        let cases = [
            ("pcpuser", salt, "0d8731a31b26478c54eeca665829fa94", true),
            ("pcpuser", salt, "md50d8731a31b26478c54eeca665829fa94", true),
            (
                "pcpuser",
                [0, 0, 0, 0],
                "0d8731a31b26478c54eeca665829fa94",
                false,
            ),
            ("pcpuser", salt, "0d8731a31b26478c54eeca665829fa95", false),
            ("pcpuser", salt, "", false),
            ("nobody", salt, "0d8731a31b26478c54eeca665829fa94", false),
            ("# USERID", salt, "0d8731a31b26478c54eeca665829fa94", false),
        ];
        for (user, salt, hash, want) in cases {
            assert_eq!(users.verify(user, salt, hash), want, "{user} {hash}");
        }
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let users = PcpUsers::parse(CONF);
        assert!(format!("{users:?}").contains("other"));
        assert!(!format!("{users:?}").contains("USERID"));
        assert!(PcpUsers::parse("# only a comment\n").is_empty());
    }
}
