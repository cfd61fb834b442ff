use super::*;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

/// Runs a whole exchange with postgres-protocol's client; returns the server's verdict
/// and whether the client accepted the server-final message.
fn exchange(
    secret: ScramSecret,
    client_pw: &str,
    cb: ChannelBinding,
) -> (Result<String, ScramError>, bool) {
    let mut client = ScramSha256::new(client_pw.as_bytes(), cb);
    let mut server = ScramServer::new(secret);
    let first = match server.handle_client_first(client.message()) {
        Ok(f) => f,
        Err(e) => return (Err(e), false),
    };
    client
        .update(first.as_bytes())
        .expect("client accepts server-first");
    let verdict = server.handle_client_final(client.message());
    let accepted = match &verdict {
        Ok(v) => client.finish(v.as_bytes()).is_ok(),
        Err(_) => false,
    };
    (verdict, accepted)
}

#[test]
fn full_exchange_table() {
    let pg_verifier = postgres_protocol::password::scram_sha_256(b"secret");
    let secrets = [
        ("from_password", ScramSecret::from_password("secret")),
        (
            "from_verifier",
            ScramSecret::from_verifier(&pg_verifier).expect("verifier"),
        ),
    ];
    for (name, secret) in secrets {
        let cases = [
            ("secret", ChannelBinding::unsupported(), true),
            ("secret", ChannelBinding::unrequested(), true),
            ("wrong", ChannelBinding::unsupported(), false),
        ];
        for (pw, cb, ok) in cases {
            let (verdict, accepted) = exchange(secret.clone(), pw, cb);
            if ok {
                assert!(verdict.is_ok() && accepted, "{name}/{pw}: {verdict:?}");
            } else {
                assert_eq!(verdict, Err(ScramError::WrongPassword), "{name}/{pw}");
            }
        }
    }
}

#[test]
fn verifier_round_trips_and_matches_postgres_derivation() {
    let salt = b"0123456789abcdef";
    let ours = ScramSecret::from_password_with_salt("secret", salt, 4096);
    let parsed = ScramSecret::from_verifier(&ours.to_verifier()).expect("parse");
    assert_eq!(parsed, ours);
    // SASLprep maps non-ASCII spaces to ASCII space, like PostgreSQL does.
    let nbsp = ScramSecret::from_password_with_salt("a\u{00A0}b", salt, 4096);
    let space = ScramSecret::from_password_with_salt("a b", salt, 4096);
    assert_eq!(nbsp, space);
}

#[test]
fn malformed_verifiers_are_rejected() {
    let cases = [
        "",
        "md5abc",
        "SCRAM-SHA-256$",
        "SCRAM-SHA-256$4096:c2FsdA==",
        "SCRAM-SHA-256$x:c2FsdA==$AAAA:AAAA",
        "SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
        "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
        "SCRAM-SHA-256$4096:!!$AAAA:AAAA",
    ];
    for v in cases {
        assert!(ScramSecret::from_verifier(v).is_err(), "{v}");
    }
}

#[test]
fn bad_client_first_messages_are_protocol_errors() {
    let cases: &[(&[u8], ScramError)] = &[
        (b"", ScramError::Protocol("unexpected channel-binding flag")),
        (b"\xff\xfe", ScramError::Protocol("not UTF-8")),
        (
            b"p=tls-server-end-point,,n=,r=abc",
            ScramError::ChannelBindingUnsupported,
        ),
        (
            b"n,a=bob,n=,r=abc",
            ScramError::Protocol("authorization identity is not supported"),
        ),
        (b"n", ScramError::Protocol("expected ','")),
        (
            b"n,,m=x,n=,r=abc",
            ScramError::Protocol("mandatory extensions are not supported"),
        ),
        (
            b"n,,r=abc",
            ScramError::Protocol("expected user name attribute"),
        ),
        (b"n,,n=", ScramError::Protocol("expected nonce attribute")),
        (b"n,,n=,r=", ScramError::Protocol("invalid nonce")),
        (b"n,,n=,r=a b", ScramError::Protocol("invalid nonce")),
    ];
    for (msg, want) in cases {
        let mut server = ScramServer::new(ScramSecret::from_password_with_salt("x", b"s", 1));
        assert_eq!(
            server.handle_client_first(msg).as_ref(),
            Err(want),
            "{msg:?}"
        );
    }
}

#[test]
fn bad_client_final_messages_are_protocol_errors() {
    let secret = ScramSecret::from_password_with_salt("x", b"s", 1);
    let proof = B64.encode([0u8; 32]);
    let finals = |nonce: &str| -> Vec<(String, ScramError)> {
        vec![
            ("garbage".into(), ScramError::Protocol("missing proof")),
            (
                format!("c=biws,r={nonce}"),
                ScramError::Protocol("missing proof"),
            ),
            (
                format!("x=biws,r={nonce},p={proof}"),
                ScramError::Protocol("expected channel binding attribute"),
            ),
            (
                format!("c=eSws,r={nonce},p={proof}"),
                ScramError::Protocol("channel binding does not match"),
            ),
            (
                format!("c=biws,r=other,p={proof}"),
                ScramError::Protocol("nonce does not match"),
            ),
            (
                format!("c=biws,r={nonce},p=AAAA"),
                ScramError::Protocol("proof has the wrong length"),
            ),
            (
                format!("c=biws,r={nonce},p=!!"),
                ScramError::Protocol("proof is not base64"),
            ),
            (
                format!("c=biws,r={nonce},p={proof}"),
                ScramError::WrongPassword,
            ),
        ]
    };
    for i in 0..finals("").len() {
        let mut server = ScramServer::new(secret.clone());
        let first = server.handle_client_first(b"n,,n=,r=abc").expect("first");
        let nonce = first
            .split(',')
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .expect("nonce");
        let (msg, want) = finals(nonce).swap_remove(i);
        assert_eq!(
            server.handle_client_final(msg.as_bytes()),
            Err(want),
            "{msg}"
        );
    }
}

#[test]
fn messages_out_of_order_are_rejected() {
    let secret = ScramSecret::from_password_with_salt("x", b"s", 1);
    let mut server = ScramServer::new(secret.clone());
    assert_eq!(
        server.handle_client_final(b"c=biws,r=a,p=AAAA"),
        Err(ScramError::OutOfOrder)
    );
    let mut server = ScramServer::new(secret);
    assert!(server.handle_client_first(b"n,,n=,r=abc").is_ok());
    assert_eq!(
        server.handle_client_first(b"n,,n=,r=abc"),
        Err(ScramError::OutOfOrder)
    );
}

#[test]
fn server_first_carries_client_nonce_salt_and_iterations() {
    let secret = ScramSecret::from_password_with_salt("x", b"salt", 4096);
    let mut server = ScramServer::new(secret);
    let first = server
        .handle_client_first(b"n,,n=bob,r=clientnonce")
        .expect("first");
    let parts: Vec<&str> = first.split(',').collect();
    assert_eq!(parts.len(), 3, "{first}");
    assert!(parts[0].starts_with("r=clientnonce") && parts[0].len() > "r=clientnonce".len() + 20);
    assert_eq!(parts[1], format!("s={}", B64.encode(b"salt")));
    assert_eq!(parts[2], "i=4096");
}

#[test]
fn cache_reuses_secret_per_user_and_password_and_stays_bounded() {
    let cache = ScramSecretCache::new(2);
    let a1 = cache.get_or_derive("alice", "pw");
    let a2 = cache.get_or_derive("alice", "pw");
    assert_eq!(a1, a2, "same user and password reuse the derived secret");
    let changed = cache.get_or_derive("alice", "new-pw");
    assert_ne!(a1, changed, "a new password derives a new secret");
    let _ = cache.get_or_derive("bob", "pw");
    assert_eq!(cache.len(), 2);
    // The cached secret still authenticates.
    let (verdict, accepted) = exchange(
        cache.get_or_derive("bob", "pw"),
        "pw",
        ChannelBinding::unsupported(),
    );
    assert!(verdict.is_ok() && accepted);
    let shown = format!("{:?} {:?}", cache, a1);
    assert!(!shown.contains("pw"));
    cache.clear();
    assert!(cache.is_empty());
}
