//! Replays the fuzz corpus and every input that once broke a fuzz target (fuzz/regressions)
//! through the same entry points, as an ordinary test: what the fuzzer found stays fixed even
//! where no fuzzer runs. Needs no database.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use pgpool::auth::{HbaFile, HbaRequest, PcpUsers, PoolPasswd, ScramSecret, ScramServer};
use pgpool::protocol::{self, FrameDecoder, StartupPacket};
use pgpool::router::{
    classify_uncached, Classifier, ClassifyOptions, RouteResult, RouterConfig, SessionRouting,
    Target,
};

/// Every file under fuzz/corpus/<target> and fuzz/regressions/<target>.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(bytes) = fs::read(e.path()) {
                out.push((e.path(), bytes));
            }
        }
    }
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether the router would send `sql` to a replica (node 1 takes every balanced read).
fn goes_to_replica(sql: &str) -> bool {
    let cfg = RouterConfig::new(vec![0.0, 1.0]);
    let stmt = classify_uncached(sql, &ClassifyOptions::default());
    let session = SessionRouting::new(&cfg, "u", "db", "app", 0.5, &[true, true]);
    matches!(
        session.route(&stmt, &cfg, &|_| Some(false)),
        RouteResult::Decided(d) if matches!(d.target, Target::Node(n) if n != 0)
    )
}

/// The verdict cache (by text and by shape, shared by every input as by every session) gives
/// each corpus text exactly its uncached verdict, however many other texts it has seen.
#[test]
fn cached_verdicts_of_the_corpus_equal_uncached_ones() {
    let opts = ClassifyOptions::default();
    let classifier = Classifier::new(opts);
    for round in 0..3 {
        for (path, bytes) in inputs("classifier") {
            let sql = text(&bytes);
            let cached = classifier.classify(&sql);
            let uncached = classify_uncached(&sql, &opts);
            assert_eq!(
                *cached,
                uncached,
                "round {round}, {}: {sql:?}",
                path.display()
            );
        }
    }
}

#[test]
fn writes_the_fuzzer_found_hidden_stay_on_the_primary() {
    for (path, bytes) in inputs("classifier") {
        let sql = text(&bytes);
        let regression = path.components().any(|c| c.as_os_str() == "regressions");
        if regression {
            assert!(!goes_to_replica(&sql), "{}: {sql:?}", path.display());
        }
    }
    // Reads are still balanced: the checks above are not passing by sending everything home.
    assert!(goes_to_replica("select 1 from t"));
}

#[test]
fn client_messages_from_the_corpus_decode_without_panicking() {
    for (_, bytes) in inputs("frontend_messages") {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(f)) = FrameDecoder::new(64 * 1024).decode(&mut buf) {
            let _ = protocol::decode_query(&f.body);
            let _ = protocol::decode_parse(&f.body).map(|p| p.query.len());
            let _ = protocol::decode_bind(&f.body).map(|b| b.statement.len());
            let _ = protocol::decode_target(&f.body, "Describe");
            let _ = protocol::decode_execute(&f.body);
            let _ = protocol::decode_sasl_initial(&f.body);
        }
    }
    for (_, bytes) in inputs("startup_packet") {
        if let Ok(Some(len)) = StartupPacket::peek_len(&bytes) {
            let _ = bytes.get(..len).map(StartupPacket::decode);
        }
    }
}

#[test]
fn scram_exchanges_from_the_corpus_never_authenticate() {
    for (path, bytes) in inputs("scram_exchange") {
        let mut parts = bytes.splitn(2, |&b| b == 0);
        let first = parts.next().unwrap_or_default();
        let last = parts.next().unwrap_or_default();
        let secret = ScramSecret::from_password_with_salt("secret", b"fuzzsalt", 1);
        let mut server = ScramServer::new(secret);
        if let Ok(server_first) = server.handle_client_first(first) {
            let nonce = server_first
                .strip_prefix("r=")
                .and_then(|s| s.split(',').next())
                .unwrap_or_default();
            let last = text(last).replace("@@", nonce);
            let result = server.handle_client_final(last.as_bytes());
            assert!(result.is_err(), "{}", path.display());
        }
    }
}

#[test]
fn files_from_the_corpus_parse_or_fail_cleanly() {
    let nowhere = std::env::temp_dir().join("pgpool-fuzz-regressions-does-not-exist");
    for (_, bytes) in inputs("pool_hba") {
        let t = text(&bytes);
        let (file, _) = t.split_once('\u{1}').unwrap_or((&t, ""));
        if let Ok(hba) = HbaFile::parse(file, &nowhere) {
            let req = HbaRequest {
                local: false,
                ssl: false,
                addr: Some([127, 0, 0, 1].into()),
                database: "app",
                user: "alice",
            };
            let _ = hba.find(&req);
        }
    }
    for (_, bytes) in inputs("pool_passwd") {
        let t = text(&bytes);
        let (file, key) = t.split_once('\u{1}').unwrap_or((&t, "k"));
        let _ = PoolPasswd::parse(file, Some(key));
        let _ = PoolPasswd::parse(file, None);
        let _ = PcpUsers::parse(file);
    }
    for (_, bytes) in inputs("pgpool_conf") {
        let t = text(&bytes);
        let (file, _) = t.split_once('\u{1}').unwrap_or((&t, ""));
        let origin = nowhere.join("pgpool.conf");
        if let Ok(loaded) = pgpool::config::parse_str(file, &origin.to_string_lossy(), &[]) {
            let _ = loaded.config.validate();
        }
    }
}
