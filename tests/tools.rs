//! `pg_md5` and `pg_enc` are drop-in replacements for Pgpool-II's tools: the spec's vectors
//! (made with Debian's pgpool2 4.3.5 tools) always, and a byte-for-byte comparison with the
//! originals whenever they are installed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const OURS_MD5: &str = env!("CARGO_BIN_EXE_pg_md5");
const OURS_ENC: &str = env!("CARGO_BIN_EXE_pg_enc");

/// Standard output of one run, which must succeed.
fn stdout_of(program: &Path, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_remove("PGPOOLKEYFILE")
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A folder with a `pgpool.conf` (so `-m` finds pool_passwd next to it) and a key file.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("pgpool.conf"), "port = 9999\n").unwrap();
    fs::write(dir.path().join("key"), "mykey\n").unwrap();
    dir
}

/// The printed-output cases: (tool, arguments, what spec 3.6 says it prints).
fn print_cases() -> Vec<(&'static str, Vec<&'static str>, &'static str)> {
    vec![
        (
            "md5",
            vec!["postgres"],
            "e8a48653851e28c69d0506508fb27fc5\n",
        ),
        ("md5", vec!["secret"], "5ebe2294ecd0e0f08eab7690d2a6ee69\n"),
        (
            "enc",
            vec!["-K", "mykey", "postgres"],
            "\nwIPGDiHZZw3JOa4HBKphsg==\npool_passwd string: AESwIPGDiHZZw3JOa4HBKphsg==\n",
        ),
        (
            "enc",
            vec!["-K", "mykey", "secret"],
            "\nV7IMV7YNworqqZU1Z46Wgw==\npool_passwd string: AESV7IMV7YNworqqZU1Z46Wgw==\n",
        ),
        (
            "enc",
            vec!["-K", "mykey", "b0b:pa$$"],
            "\nFxLxR9WzsfBRV0y2kY10hw==\npool_passwd string: AESFxLxR9WzsfBRV0y2kY10hw==\n",
        ),
        (
            "enc",
            vec!["-K", "mykey", "a-much-longer-password-1234"],
            "\nDsaNQxK1fpW94dpasK2dva5EboLROC2LWsiMWkoO64E=\n\
             pool_passwd string: AESDsaNQxK1fpW94dpasK2dva5EboLROC2LWsiMWkoO64E=\n",
        ),
        (
            "enc",
            vec!["-K", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==", "postgres"],
            "\nHqWdzWFXXjiSlqMGstYqhQ==\npool_passwd string: AESHqWdzWFXXjiSlqMGstYqhQ==\n",
        ),
        (
            "enc",
            vec!["-k", "key", "postgres"],
            "trying to read key from file key\n\
             \nwIPGDiHZZw3JOa4HBKphsg==\npool_passwd string: AESwIPGDiHZZw3JOa4HBKphsg==\n",
        ),
    ]
}

/// The pool_passwd-writing cases: (tool, arguments, file before, file after per spec 3.6).
fn file_cases() -> Vec<(&'static str, Vec<&'static str>, &'static str, &'static str)> {
    let md5_alice = "alice:md54a0a68b43b6cd5cf266fa02f196e2371\n";
    vec![
        ("md5", vec!["-m", "-f", "pgpool.conf", "-u", "alice", "secret"], "", md5_alice),
        (
            "md5",
            vec!["-m", "-f", "pgpool.conf", "-u", "postgres", "postgres"],
            md5_alice,
            "alice:md54a0a68b43b6cd5cf266fa02f196e2371\npostgres:md53175bce1d3201d16594cebf9d7eb3f9d\n",
        ),
        (
            "enc",
            vec!["-m", "-K", "mykey", "-f", "pgpool.conf", "-u", "alice", "secret"],
            "carol:TEXTx\nalice:md5old\ndave:TEXTy\n",
            "carol:TEXTx\nalice:AESV7IMV7YNworqqZU1Z46Wgw==\ndave:TEXTy\n",
        ),
    ]
}

fn ours(tool: &str) -> PathBuf {
    PathBuf::from(if tool == "md5" { OURS_MD5 } else { OURS_ENC })
}

/// Debian's original tool, when installed.
fn original(tool: &str) -> Option<PathBuf> {
    let name = format!("pg_{tool}");
    let sbin = Path::new("/usr/sbin").join(&name);
    if sbin.exists() {
        return Some(sbin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(&name))
            .find(|p| p.exists())
    })
}

/// Runs a pool_passwd-writing case in a fresh folder and returns the resulting file.
fn run_file_case(program: &Path, args: &[&str], before: &str) -> String {
    let dir = workdir();
    if !before.is_empty() {
        fs::write(dir.path().join("pool_passwd"), before).unwrap();
    }
    stdout_of(program, args, dir.path());
    fs::read_to_string(dir.path().join("pool_passwd")).unwrap()
}

#[test]
fn printed_output_matches_the_spec_vectors() {
    for (tool, args, want) in print_cases() {
        let dir = workdir();
        assert_eq!(
            stdout_of(&ours(tool), &args, dir.path()),
            want,
            "pg_{tool} {args:?}"
        );
    }
}

#[test]
fn pool_passwd_entries_match_the_spec_vectors() {
    for (tool, args, before, want) in file_cases() {
        assert_eq!(
            run_file_case(&ours(tool), &args, before),
            want,
            "pg_{tool} {args:?}"
        );
    }
}

#[test]
fn same_bytes_as_the_installed_pgpool2_tools() {
    let (Some(md5), Some(enc)) = (original("md5"), original("enc")) else {
        eprintln!("Pgpool-II's pg_md5/pg_enc are not installed: comparison skipped");
        return;
    };
    let original_of = |tool: &str| {
        if tool == "md5" {
            md5.clone()
        } else {
            enc.clone()
        }
    };
    for (tool, args, _) in print_cases() {
        let (a, b) = (workdir(), workdir());
        assert_eq!(
            stdout_of(&ours(tool), &args, a.path()),
            stdout_of(&original_of(tool), &args, b.path()),
            "pg_{tool} {args:?}"
        );
    }
    for (tool, args, before, _) in file_cases() {
        assert_eq!(
            run_file_case(&ours(tool), &args, before),
            run_file_case(&original_of(tool), &args, before),
            "pg_{tool} {args:?}"
        );
    }
}
