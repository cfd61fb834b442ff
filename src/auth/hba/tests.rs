use super::*;
use std::net::IpAddr;

const CONF: &str = r#"
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             postgres                                trust
local   sameuser        all                                     md5
host    "all"           alice           127.0.0.1/32            md5
host    db1,db2         bob,"Carol X"   10.0.0.0/8              scram-sha-256
host    @dbs.txt        @users.txt      192.168.1.0 255.255.255.0  password
hostssl all             all             ::1/128                 cert
hostssl all             all             0.0.0.0/0               scram-sha-256
hostnossl all           all             0.0.0.0/0               md5
host    all             +admins         all                     trust
host    all             all             fd00::/8                trust
host    all             reject_me       all                     reject
"#;

fn file() -> (tempfile::TempDir, HbaFile) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("dbs.txt"), "sales\n\"my db\", @more.txt\n").expect("dbs");
    std::fs::write(dir.path().join("more.txt"), "archive # comment\n").expect("more");
    std::fs::write(dir.path().join("users.txt"), "dave eve\n").expect("users");
    let path = dir.path().join("pool_hba.conf");
    std::fs::write(&path, CONF).expect("conf");
    let hba = HbaFile::load(&path).expect("parse");
    (dir, hba)
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("ip"))
}

#[test]
fn first_matching_line_wins() {
    let (_dir, hba) = file();
    // (local, ssl, addr, database, user) -> expected line number (None = implicit reject)
    #[rustfmt::skip]
    type Case<'a> = (bool, bool, Option<IpAddr>, &'a str, &'a str, Option<usize>);
    let cases: Vec<Case> = vec![
        (true, false, None, "anydb", "postgres", Some(3)), // local all postgres
        (true, false, None, "frank", "frank", Some(4)),    // sameuser
        (true, false, None, "other", "frank", None),       // sameuser mismatch, no more local lines
        (false, false, ip("127.0.0.1"), "all", "alice", Some(5)), // quoted "all" is a literal name
        (false, false, ip("127.0.0.1"), "postgres", "alice", Some(10)), // so db postgres falls to hostnossl
        (
            false,
            false,
            ip("::ffff:127.0.0.1"),
            "all",
            "alice",
            Some(5),
        ), // v4-mapped client
        (false, false, ip("10.1.2.3"), "db2", "Carol X", Some(6)),      // comma lists, quoted user
        (false, false, ip("10.1.2.3"), "db3", "bob", Some(10)),
        (false, false, ip("11.1.2.3"), "db1", "bob", Some(10)), // outside 10/8
        (false, false, ip("192.168.1.77"), "sales", "eve", Some(7)), // @file lists, separate mask
        (false, false, ip("192.168.1.77"), "my db", "dave", Some(7)),
        (false, false, ip("192.168.1.77"), "archive", "dave", Some(7)), // nested @file
        (false, false, ip("192.168.2.77"), "sales", "eve", Some(10)),
        (false, true, ip("::1"), "x", "y", Some(8)), // hostssl v6 /128
        (false, true, ip("1.2.3.4"), "x", "y", Some(9)), // hostssl with ssl
        (false, false, ip("1.2.3.4"), "x", "y", Some(10)), // hostnossl without ssl
        (false, false, ip("::1"), "x", "y", None), // v4 lines never match v6; +group stops line 11
        (false, true, ip("fd00::5"), "x", "admins", Some(12)), // +admins is not a user name
        (false, true, ip("2001:db8::1"), "x", "reject_me", Some(13)),
        (false, false, None, "x", "y", None), // TCP without address: only "all" lines; +group stops
        (true, false, None, "x", "reject_me", None), // local never matches host lines
    ];
    for (local, ssl, addr, database, user, want) in cases {
        let req = HbaRequest {
            local,
            ssl,
            addr,
            database,
            user,
        };
        let got = hba.find(&req).map(|l| l.line_no);
        assert_eq!(got, want, "{req:?}");
    }
}

#[test]
fn methods_and_addresses_are_parsed() {
    let (_dir, hba) = file();
    let l = &hba.lines()[3];
    assert_eq!(l.conn_type, ConnType::Host);
    assert_eq!(l.method, HbaMethod::ScramSha256);
    assert_eq!(
        l.address,
        Some(HbaAddress::Net {
            addr: "10.0.0.0".parse().expect("ip"),
            mask: "255.0.0.0".parse().expect("ip")
        })
    );
    let methods: Vec<HbaMethod> = hba.lines().iter().map(|l| l.method).collect();
    use HbaMethod::*;
    assert_eq!(
        methods,
        vec![
            Trust,
            Md5,
            Md5,
            ScramSha256,
            Password,
            Cert,
            ScramSha256,
            Md5,
            Trust,
            Trust,
            Reject
        ]
    );
    let reject = hba.find(&HbaRequest {
        local: false,
        ssl: false,
        addr: ip("fd00::1"),
        database: "d",
        user: "reject_me",
    });
    assert_eq!(
        reject.map(|l| l.method),
        Some(Trust),
        "fd00::/8 line comes first"
    );
}

#[test]
fn parse_errors_name_the_line() {
    let dir = Path::new(".");
    #[rustfmt::skip]
    let cases: Vec<(&str, usize, &str)> = vec![
        ("local all all trust\nfoo all all trust", 2, "invalid connection type \"foo\""),
        ("\n\nlocal all", 3, "end-of-line before role specification"),
        ("local", 1, "end-of-line before database specification"),
        ("local all all", 1, "end-of-line before authentication method"),
        ("host all all", 1, "end-of-line before IP address specification"),
        ("host all all 10.0.0.0 md5", 1, "invalid IP mask \"md5\""),
        ("host all all 10.0.0.0", 1, "end-of-line before netmask specification"),
        ("host all all 10.0.0.0/33 md5", 1, "invalid CIDR mask in address \"10.0.0.0/33\""),
        ("host all all 10.0.0.0/x md5", 1, "invalid CIDR mask"),
        ("host all all ::1 255.0.0.0 md5", 1, "IP address and mask do not match"),
        ("host all all foo.example/24 md5", 1, "specifying both host name and CIDR mask"),
        ("host all all a,b md5", 1, "multiple values specified for IP address"),
        ("local all all ident", 1, "invalid authentication method \"ident\""),
        ("local all all pam", 1, "not supported by this build"),
        ("local all all md5,trust", 1, "multiple values specified for authentication type"),
        ("local all all md5 foo", 1, "authentication option not in name=value format: foo"),
        ("local all all md5 foo=1", 1, "unrecognized authentication option name: \"foo\""),
        ("host all all all cert", 1, "cert authentication is only supported on hostssl"),
        ("local all @missing.txt trust", 1, "could not open secondary authentication file"),
        ("local \"all trust", 1, "unterminated quoted string"),
    ];
    for (text, line, msg) in cases {
        match HbaFile::parse(text, dir) {
            Err(HbaError::Line {
                line: got, message, ..
            }) => {
                assert_eq!(got, line, "{text}");
                assert!(message.contains(msg), "{text}: {message}");
            }
            other => panic!("{text}: expected a line error, got {other:?}"),
        }
    }
}

#[test]
fn empty_file_is_rejected_and_error_text_names_file_and_line() {
    assert!(matches!(
        HbaFile::parse("# nothing\n", Path::new(".")),
        Err(HbaError::NoEntries { .. })
    ));
    let err = HbaFile::parse("bogus all all trust", Path::new(".")).expect_err("error");
    let text = err.to_string();
    assert!(
        text.contains("line 1") && text.contains("pool_hba.conf"),
        "{text}"
    );
}

#[test]
fn hostname_and_same_keywords_parse_but_never_match() {
    let text = "host all all db.example.com trust\nhost all all samehost trust\nhost all all samenet trust\nhost all all \"samehost\" trust";
    let hba = HbaFile::parse(text, Path::new(".")).expect("parse");
    let addrs: Vec<_> = hba.lines().iter().map(|l| l.address.clone()).collect();
    assert_eq!(
        addrs,
        vec![
            Some(HbaAddress::Hostname("db.example.com".into())),
            Some(HbaAddress::SameHost),
            Some(HbaAddress::SameNet),
            Some(HbaAddress::Hostname("samehost".into())),
        ]
    );
    let req = HbaRequest {
        local: false,
        ssl: false,
        addr: ip("127.0.0.1"),
        database: "d",
        user: "u",
    };
    assert!(hba.find(&req).is_none());
}

#[test]
fn same_rules_ignores_comments_and_line_numbers() {
    let parse = |t: &str| HbaFile::parse(t, Path::new(".")).expect("valid");
    let base = parse("host all all 127.0.0.1/32 trust\nlocal all all md5\n");
    let cases = [
        (
            "# a comment\nhost all all 127.0.0.1/32   trust\n\nlocal all all md5\n",
            true,
        ),
        ("host all all 127.0.0.1/32 md5\nlocal all all md5\n", false),
        (
            "local all all md5\nhost all all 127.0.0.1/32 trust\n",
            false,
        ),
        ("host all all 127.0.0.1/32 trust\n", false),
    ];
    for (text, same) in cases {
        assert_eq!(base.same_rules(&parse(text)), same, "{text}");
    }
}
