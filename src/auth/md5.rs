//! md5 password formats: PostgreSQL's `pg_authid` form (`"md5" + hex(md5(password || user))`),
//! the salted challenge response a client sends, and the bare hex `pg_md5` prints for pcp.conf.

use md5::{Digest, Md5};

/// Lowercase hex of the md5 digest of `data` (what `pg_md5 <password>` prints).
pub fn md5_hex(data: &[u8]) -> String {
    to_hex(&Md5::digest(data))
}

/// The stored form of an md5 password: `"md5" + hex(md5(password || user))` (spec 3.3).
pub fn pg_md5_password(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    format!("md5{}", to_hex(&h.finalize()))
}

/// What a client answers to an md5 challenge: `"md5" + hex(md5(hex32 || salt))`, where
/// `hex32` is the stored hash without its `md5` prefix. The prefix is optional on input.
pub fn md5_salted(md5_with_prefix: &str, salt: [u8; 4]) -> String {
    let hex32 = md5_with_prefix
        .strip_prefix("md5")
        .unwrap_or(md5_with_prefix);
    let mut h = Md5::new();
    h.update(hex32.as_bytes());
    h.update(salt);
    format!("md5{}", to_hex(&h.finalize()))
}

/// Lowercase hex encoding; no crate in our set exposes one, and it is three lines.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_md5_vectors_match_pgpool_tools() {
        let cases = [
            ("postgres", "e8a48653851e28c69d0506508fb27fc5"),
            ("secret", "5ebe2294ecd0e0f08eab7690d2a6ee69"),
        ];
        for (pw, want) in cases {
            assert_eq!(md5_hex(pw.as_bytes()), want, "{pw}");
        }
    }

    #[test]
    fn stored_md5_is_hash_of_password_then_user() {
        let cases = [
            (
                "postgres",
                "postgres",
                "md53175bce1d3201d16594cebf9d7eb3f9d",
            ),
            ("alice", "secret", "md54a0a68b43b6cd5cf266fa02f196e2371"),
        ];
        for (user, pw, want) in cases {
            assert_eq!(pg_md5_password(user, pw), want, "{user}");
        }
    }

    #[test]
    fn salted_response_matches_spec_and_client_library() {
        let stored = pg_md5_password("alice", "secret");
        let salt = [1, 2, 3, 4];
        let want = "md598a0412b9c31436fc53776e863350083";
        assert_eq!(md5_salted(&stored, salt), want);
        // Prefix is optional on input.
        assert_eq!(md5_salted(&stored[3..], salt), want);
        let client = postgres_protocol::authentication::md5_hash(b"alice", b"secret", salt);
        assert_eq!(client, want);
    }
}
