//! Who and what a session is, decided once from the client's startup packet. pool_hba,
//! pool_passwd, the connection cache key, the logs and every backend startup packet read
//! this one value, so they cannot disagree about the user.
//!
//! PostgreSQL lets a later `user` (or `database`, or a GUC spelled in another case) override
//! an earlier one; a proxy that read the first while forwarding all of them would
//! authenticate one user and log in another. So a parameter named twice (names compared
//! without regard to case, as PostgreSQL compares setting names) is refused with 08P01, and
//! what could change the session's user after authentication (`role`,
//! `session_authorization`, the same inside `options`, a replication connection) is
//! refused with 0A000: authenticate as that user instead, or `SET ROLE` after connecting.

use crate::protocol::PgError;

/// Startup parameters that change who the session is and that no client may send.
const IDENTITY_SETTINGS: &[&str] = &["role", "session_authorization"];

/// The identity and parameters of a session, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartupParams {
    /// The one user everything authenticates, caches and logs.
    pub user: String,
    /// The database (the user name when the client named none, as in PostgreSQL).
    pub database: String,
    /// Exactly what each backend startup packet carries: `user`, `database`, then the
    /// client's other parameters in its order (never a `_pq_.` option or `replication`).
    pub backend: Vec<(String, String)>,
    /// The client's protocol minor version (major is 3).
    pub minor: u16,
    /// `_pq_.` protocol options the client asked for; the proxy knows none of them.
    pub unrecognized_options: Vec<String>,
}

impl StartupParams {
    /// Validates a startup packet's parameters and fixes the session's identity.
    pub fn parse(minor: u16, params: Vec<(String, String)>) -> Result<StartupParams, PgError> {
        refuse_duplicates(&params)?;
        let mut user = None;
        let mut database = None;
        let mut rest = Vec::with_capacity(params.len());
        let mut unrecognized_options = Vec::new();
        for (k, v) in params {
            match k.as_str() {
                "user" => user = Some(v),
                "database" => database = Some(v),
                "replication" => refuse_replication(&v)?,
                "options" => {
                    refuse_identity_options(&v)?;
                    rest.push((k, v));
                }
                _ if k.starts_with("_pq_.") => unrecognized_options.push(k),
                _ if is_identity_setting(&k) => return Err(identity_refused(&k)),
                _ => rest.push((k, v)),
            }
        }
        let user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
            PgError::fatal(
                "28000",
                "no PostgreSQL user name specified in startup packet",
            )
        })?;
        let database = database
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| user.clone());
        let mut backend = Vec::with_capacity(rest.len() + 2);
        backend.push(("user".to_string(), user.clone()));
        backend.push(("database".to_string(), database.clone()));
        backend.extend(rest);
        Ok(StartupParams {
            user,
            database,
            backend,
            minor,
            unrecognized_options,
        })
    }

    /// Whether the client must be told, before anything else, that the proxy speaks 3.0 and
    /// none of its `_pq_.` options (PostgreSQL's NegotiateProtocolVersion rule).
    pub fn needs_negotiation(&self) -> bool {
        self.minor > 0 || !self.unrecognized_options.is_empty()
    }
}

/// PostgreSQL compares setting names without regard to case; `user` and `database` are
/// matched exactly but a second one would still override the first.
fn refuse_duplicates(params: &[(String, String)]) -> Result<(), PgError> {
    for (i, (k, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(p, _)| p.eq_ignore_ascii_case(k)) {
            return Err(PgError::fatal(
                "08P01",
                format!("invalid startup packet: parameter \"{k}\" appears more than once"),
            ));
        }
    }
    Ok(())
}

/// `role`, `session_authorization` in any case; `-` counts as `_` as in `--name=value`.
fn is_identity_setting(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    IDENTITY_SETTINGS.contains(&name.as_str())
}

fn identity_refused(name: &str) -> PgError {
    PgError::fatal(
        "0A000",
        format!("startup parameter \"{name}\" is not allowed through pgpool"),
    )
    .with_detail("It would change the session's user after pgpool authenticated another.")
    .with_hint("Connect as that user, or use SET ROLE after connecting.")
}

/// `replication=false` (or off, no, 0) is an ordinary session; a replication connection
/// would not be an SQL session the proxy can route, so it is refused.
fn refuse_replication(value: &str) -> Result<(), PgError> {
    match value.to_ascii_lowercase().as_str() {
        "false" | "off" | "no" | "0" => Ok(()),
        _ => Err(PgError::fatal(
            "0A000",
            "replication connections are not supported by pgpool",
        )),
    }
}

/// `options` is a command line for the backend: `-c name=value`, `-cname=value` and
/// `--name=value` set settings, so an identity setting there is refused as well.
fn refuse_identity_options(options: &str) -> Result<(), PgError> {
    let words = split_options(options);
    let mut words = words.iter();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words.next().map(String::as_str)
        } else if let Some(s) = w.strip_prefix("--") {
            Some(s)
        } else {
            w.strip_prefix("-c")
        };
        let Some(setting) = setting else { continue };
        let name = setting.split('=').next().unwrap_or(setting);
        if is_identity_setting(name) {
            return Err(identity_refused(name));
        }
    }
    Ok(())
}

/// PostgreSQL's `pg_split_opts`: words separated by white space, `\` escapes the next
/// character (so a value may hold a space).
fn split_options(options: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = options.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                c if c.is_ascii_whitespace() => break,
                '\\' => word.extend(chars.next()),
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn code(v: &[(&str, &str)]) -> Option<String> {
        StartupParams::parse(0, params(v)).err().map(|e| e.code)
    }

    type Case = (
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
    );

    #[test]
    fn refusals_have_the_right_sqlstate() {
        let cases: &[Case] = &[
            (&[("user", "a")], None),
            (&[("user", "a"), ("user", "postgres")], Some("08P01")),
            (
                &[("user", "a"), ("database", "x"), ("database", "y")],
                Some("08P01"),
            ),
            (
                &[("user", "a"), ("DateStyle", "ISO"), ("datestyle", "SQL")],
                Some("08P01"),
            ),
            (
                &[("user", "a"), ("_pq_.x", "1"), ("_pq_.X", "1")],
                Some("08P01"),
            ),
            (&[("database", "x")], Some("28000")),
            (&[("user", "")], Some("28000")),
            (&[("user", "a"), ("role", "b")], Some("0A000")),
            (&[("user", "a"), ("ROLE", "b")], Some("0A000")),
            (
                &[("user", "a"), ("session_authorization", "b")],
                Some("0A000"),
            ),
            (&[("user", "a"), ("replication", "true")], Some("0A000")),
            (&[("user", "a"), ("replication", "database")], Some("0A000")),
            (&[("user", "a"), ("replication", "off")], None),
            (&[("user", "a"), ("options", "-c role=b")], Some("0A000")),
            (&[("user", "a"), ("options", "-crole=b")], Some("0A000")),
            (&[("user", "a"), ("options", "--role=b")], Some("0A000")),
            (
                &[
                    ("user", "a"),
                    ("options", "-c work_mem=1MB --session-authorization=b"),
                ],
                Some("0A000"),
            ),
            (
                &[("user", "a"), ("options", "-c Session_Authorization=b")],
                Some("0A000"),
            ),
            (&[("user", "a"), ("options", "-c search_path=role")], None),
            (
                &[
                    ("user", "a"),
                    ("options", "-c application_name=x\\ -c\\ role=b"),
                ],
                None,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(code(p).as_deref(), *want, "{p:?}");
        }
    }

    #[test]
    fn the_backend_gets_exactly_the_identity_and_the_rest() {
        let s = StartupParams::parse(
            2,
            params(&[
                ("application_name", "app"),
                ("user", "bob"),
                ("_pq_.opt", "1"),
                ("replication", "false"),
                ("options", "-c geqo=off"),
            ]),
        )
        .unwrap();
        assert_eq!((s.user.as_str(), s.database.as_str()), ("bob", "bob"));
        assert_eq!(
            s.backend,
            params(&[
                ("user", "bob"),
                ("database", "bob"),
                ("application_name", "app"),
                ("options", "-c geqo=off"),
            ])
        );
        assert_eq!(s.unrecognized_options, vec!["_pq_.opt".to_string()]);
        assert!(s.needs_negotiation());
    }

    #[test]
    fn options_split_as_postgres_splits_them() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("  -c a=b  ", &["-c", "a=b"]),
            ("-c a=x\\ y --b=c", &["-c", "a=x y", "--b=c"]),
            ("a\\\\b", &["a\\b"]),
        ];
        for (text, want) in cases {
            assert_eq!(split_options(text), *want, "{text:?}");
        }
    }
}
