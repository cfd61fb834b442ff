use super::*;
use crate::auth::{PcpUsers, PoolPasswd, StoredPassword};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
}

const PASSWORDS: [&str; 3] = ["s3cret-pg", "app pass", "pcp-pw"];

#[test]
fn default_method_writes_aes_with_generated_key_and_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pp, pcp, key) = (
        dir.path().join("pool_passwd"),
        dir.path().join("pcp.conf"),
        dir.path().join(".pgpoolkey"),
    );
    std::fs::write(&pp, "existing:TEXTkeep\npostgres:TEXTold\n").expect("write");
    std::fs::write(&pcp, "# USERID:MD5PASSWD\nother:abc\n").expect("write");
    let vars = env(&[
        ("POSTGRES_USERNAME", "postgres"),
        ("POSTGRES_PASSWORD", PASSWORDS[0]),
        ("MY_APP_USERNAME", "app"),
        ("MY_APP_PASSWORD", PASSWORDS[1]),
        ("NOPW_USERNAME", "ghost"),
        ("PGPOOL_PARAMS_SR_CHECK_USERNAME", "ignored"),
        ("PGPOOL_PCP_USER", "pcpadmin"),
        ("PGPOOL_PCP_PASSWORD", PASSWORDS[2]),
    ]);
    let log = apply_env_credentials(&vars, Some(&pp), Some(&pcp), &key).expect("apply");
    for line in &log {
        for pw in PASSWORDS {
            assert!(!line.contains(pw), "log leaks a password: {line}");
        }
    }
    assert!(log.iter().any(|l| l.contains("ghost")), "{log:?}");
    let k = crate::auth::read_key(&key).expect("generated key");
    assert_eq!(k.len(), 28, "20 random bytes in base64");
    let (parsed, warnings) = PoolPasswd::load(&pp, Some(&k)).expect("load");
    assert!(warnings.is_empty(), "{warnings:?}");
    let cases = [
        ("existing", "keep"),
        ("postgres", PASSWORDS[0]),
        ("app", PASSWORDS[1]),
    ];
    for (user, pw) in cases {
        assert_eq!(
            parsed.get(user),
            Some(&StoredPassword::Plain(pw.into())),
            "{user}"
        );
    }
    assert!(parsed.get("ignored").is_none() && parsed.get("ghost").is_none());
    let text = std::fs::read_to_string(&pp).expect("read");
    assert!(
        text.starts_with("existing:TEXTkeep\npostgres:AES"),
        "{text}"
    );
    let users = PcpUsers::load(&pcp).expect("pcp");
    let hash = crate::auth::md5_salted(
        &crate::auth::md5_hex(
            format!("{}pcpadmin", crate::auth::md5_hex(PASSWORDS[2].as_bytes())).as_bytes(),
        ),
        [9, 9, 9, 9],
    );
    assert!(users.verify("pcpadmin", [9, 9, 9, 9], &hash));
    assert!(std::fs::read_to_string(&pcp)
        .expect("read")
        .starts_with("# USERID:MD5PASSWD\nother:abc\n"));
    for f in [&pp, &pcp, &key] {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}

#[test]
fn existing_key_is_reused_so_old_entries_stay_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pp, key) = (dir.path().join("pool_passwd"), dir.path().join("key"));
    std::fs::write(&key, "mykey\n").expect("key");
    let vars = env(&[
        ("POSTGRES_USERNAME", "postgres"),
        ("POSTGRES_PASSWORD", "postgres"),
    ]);
    apply_env_credentials(&vars, Some(&pp), None, &key).expect("apply");
    apply_env_credentials(&vars, Some(&pp), None, &key).expect("apply twice");
    assert_eq!(
        std::fs::read_to_string(&pp).expect("read"),
        "postgres:AESwIPGDiHZZw3JOa4HBKphsg==\n"
    );
    assert_eq!(std::fs::read_to_string(&key).expect("read"), "mykey\n");
}

#[test]
fn md5_and_skip_methods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("key");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("PGPOOL_PASSWORD_ENCRYPTION_METHOD", "md5")],
            "alice:md54a0a68b43b6cd5cf266fa02f196e2371\n",
        ),
        (
            vec![("PGPOOL_SKIP_PASSWORD_ENCRYPTION", "true")],
            "alice:secret\n",
        ),
        (
            vec![
                ("PGPOOL_SKIP_PASSWORD_ENCRYPTION", "on"),
                ("PGPOOL_PASSWORD_ENCRYPTION_METHOD", "bogus"),
            ],
            "alice:secret\n",
        ),
    ];
    for (i, (extra, want)) in cases.into_iter().enumerate() {
        let pp = dir.path().join(format!("pp{i}"));
        let mut vars = env(&[("A_USERNAME", "alice"), ("A_PASSWORD", "secret")]);
        vars.extend(env(&extra));
        apply_env_credentials(&vars, Some(&pp), None, &key).expect("apply");
        assert_eq!(
            std::fs::read_to_string(&pp).expect("read"),
            want,
            "case {i}"
        );
    }
    assert!(!key.exists(), "md5 and skip never need a key");
}

#[test]
fn disabled_or_unknown_method() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pp, key) = (dir.path().join("pool_passwd"), dir.path().join("key"));
    let base = [("A_USERNAME", "alice"), ("A_PASSWORD", "secret")];
    let mut off = env(&base);
    off.extend(env(&[("PGPOOL_ENABLE_POOL_PASSWD", "false")]));
    apply_env_credentials(&off, Some(&pp), None, &key).expect("apply");
    assert!(!pp.exists());
    apply_env_credentials(&env(&base), None, None, &key).expect("apply");
    assert!(!pp.exists());
    let mut bad = env(&base);
    bad.extend(env(&[("PGPOOL_PASSWORD_ENCRYPTION_METHOD", "password")]));
    assert!(apply_env_credentials(&bad, Some(&pp), None, &key).is_err());
}

#[test]
fn debug_shows_users_not_passwords() {
    let creds = EnvCredentials::from_env(&env(&[
        ("X_USERNAME", "xuser"),
        ("X_PASSWORD", "hunter2"),
        ("PGPOOL_PCP_USER", "p"),
        ("PGPOOL_PCP_PASSWORD", "pcp-hunter"),
    ]));
    let shown = format!("{creds:?}");
    assert!(
        shown.contains("xuser") && !shown.contains("hunter"),
        "{shown}"
    );
    assert_eq!(creds.users().collect::<Vec<_>>(), vec!["xuser"]);
    assert_eq!(creds.pcp_user(), Some("p"));
}
