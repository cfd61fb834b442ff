//! Micro-benchmarks of the per-message work on the proxy's hot path: classifying a query,
//! splitting a byte stream into frames, writing the messages the proxy composes itself, and
//! one SCRAM-SHA-256 verification (the CPU a fresh client costs when the proxy authenticates
//! it). The end-to-end comparison with PgBouncer and Pgpool-II is `scripts/bench.sh`.

use std::hint::black_box;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use pgpool::auth::{ScramSecret, ScramServer};
use pgpool::protocol::{self, Frame, FrameDecoder};
use pgpool::router::{classify_uncached, Classifier, ClassifyOptions, RouterConfig};
use sha2::{Digest, Sha256};

/// The statements pgbench sends, plus a few shapes that take the slower parser path.
const QUERIES: &[(&str, &str)] = &[
    (
        "pgbench_select",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;",
    ),
    (
        "pgbench_update",
        "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 4711;",
    ),
    ("begin", "BEGIN;"),
    (
        "function_call",
        "SELECT nextval('s'), now(), lower(name) FROM t WHERE id = 1",
    ),
    (
        "cte_join",
        "WITH x AS (SELECT a.id FROM a JOIN b ON a.id = b.id WHERE b.v > 3) \
         SELECT count(*) FROM x",
    ),
];

fn classifier(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    let opts = ClassifyOptions::default();
    let cached = Classifier::new(opts);
    // What the session asks: no pattern list, so texts of one shape may share a verdict.
    let routing = RouterConfig::new(vec![0.5, 0.5]);
    for (name, sql) in QUERIES {
        group.bench_function(format!("uncached/{name}"), |b| {
            b.iter(|| classify_uncached(black_box(sql), &opts))
        });
        group.bench_function(format!("cached/{name}"), |b| {
            b.iter(|| cached.classify_for(black_box(sql), &routing))
        });
    }
    // What clients really send: one statement shape, new literal values every time (pgbench
    // -S, ORMs without prepared statements). The texts are made outside the timed part.
    let analytic = analytic_query(0);
    group.bench_function("uncached/analytic_5k", |b| {
        b.iter(|| classify_uncached(black_box(&analytic), &opts))
    });
    let shapes: [(&str, MakeQuery); 3] = [
        ("pgbench_select", pgbench_select),
        ("orm_select", orm_select),
        ("analytic_5k", analytic_query),
    ];
    for (name, make) in shapes {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        group.bench_function(format!("varying/{name}"), |b| {
            b.iter_batched_ref(
                || {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    make(seed >> 33)
                },
                |sql| cached.classify_for(black_box(sql.as_str()), &routing),
                BatchSize::SmallInput,
            )
        });
    }
    // A shape never seen before, every time: the cost of a miss (and of caching it).
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    group.bench_function("first_seen/pgbench_select", |b| {
        b.iter_batched_ref(
            || {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                format!(
                    "SELECT abalance AS a{} FROM pgbench_accounts WHERE aid = 4711;",
                    seed >> 1
                )
            },
            |sql| cached.classify_for(black_box(sql.as_str()), &routing),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Makes one text of a statement shape from a number.
type MakeQuery = fn(u64) -> String;

/// pgbench's `-S` statement with account `n`.
fn pgbench_select(n: u64) -> String {
    format!(
        "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
        n % 10_000_000 + 1
    )
}

/// What an ORM sends for a list page (~500 bytes): quoted names, joins, a few literals.
fn orm_select(n: u64) -> String {
    let status = ["shipped", "pending", "cancelled", "returned"][(n % 4) as usize];
    format!(
        "SELECT \"orders\".\"id\", \"orders\".\"customer_id\", \"orders\".\"status\", \
         \"orders\".\"total\", \"orders\".\"created_at\", \"customers\".\"name\", \
         \"customers\".\"email\", \"products\".\"sku\" FROM \"orders\" \
         INNER JOIN \"customers\" ON (\"orders\".\"customer_id\" = \"customers\".\"id\") \
         LEFT OUTER JOIN \"order_items\" ON (\"order_items\".\"order_id\" = \"orders\".\"id\") \
         LEFT OUTER JOIN \"products\" ON (\"order_items\".\"product_id\" = \"products\".\"id\") \
         WHERE (\"orders\".\"status\" = '{status}' AND \"orders\".\"customer_id\" = {} \
         AND \"orders\".\"total\" > {}.{:02}) ORDER BY \"orders\".\"created_at\" DESC \
         LIMIT 20 OFFSET {}",
        n % 1_000_000,
        n % 500,
        n % 100,
        (n % 50) * 20
    )
}

/// A reporting query of about 5 KB (CTEs, aggregates, CASE, window functions): the kind the
/// fast path leaves to sqlparser. `n` varies its literals.
fn analytic_query(n: u64) -> String {
    let mut sql = String::from("WITH ");
    for i in 0..8 {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "region_{i} AS (SELECT r.id AS region_id, r.name AS region_name, \
             date_trunc('month', o.created_at) AS month, count(DISTINCT o.customer_id) AS \
             buyers, sum(CASE WHEN o.status = 'shipped' THEN o.total ELSE 0 END) AS shipped, \
             sum(CASE WHEN o.status = 'returned' THEN o.total ELSE 0 END) AS returned \
             FROM regions r JOIN stores s ON s.region_id = r.id JOIN orders o ON \
             o.store_id = s.id WHERE o.created_at >= DATE '2024-{:02}-01' AND o.total > {} \
             AND r.id % 8 = {i} GROUP BY 1, 2, 3)",
            (n + i) % 12 + 1,
            (n / 7 + i * 131) % 1_000_000
        ));
    }
    sql.push_str(
        " SELECT region_name, month, buyers, shipped - returned AS net, rank() OVER \
         (PARTITION BY month ORDER BY shipped - returned DESC) AS position FROM (",
    );
    for i in 0..8 {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push_str(&format!("SELECT * FROM region_{i}"));
    }
    sql.push_str(&format!(
        ") AS all_regions WHERE buyers > {} ORDER BY month, position LIMIT 100",
        n % 97
    ));
    sql
}

/// A backend's answer to one pgbench `-S` transaction: RowDescription, DataRow,
/// CommandComplete, ReadyForQuery — the frames a relay splits most often.
fn select_reply() -> BytesMut {
    let mut out = BytesMut::new();
    protocol::row_description_text(&mut out, &["abalance"]);
    protocol::data_row(&mut out, &["0"]);
    protocol::command_complete(&mut out, "SELECT 1");
    protocol::ready_for_query(&mut out, b'I');
    out
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    let decoder = FrameDecoder::new(1 << 30);
    let reply = select_reply();
    group.throughput(Throughput::Bytes(reply.len() as u64));
    group.bench_function("decode/select_reply", |b| {
        b.iter_batched(
            || reply.clone(),
            |mut buf| {
                let mut n = 0usize;
                while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                    n += frame.body.len();
                }
                n
            },
            BatchSize::SmallInput,
        )
    });
    // A 64 KiB CopyData/DataRow: decode must split it without copying the body.
    let mut big = BytesMut::new();
    Frame::new(b'd', vec![b'x'; 64 * 1024]).encode(&mut big);
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("decode/copy_data_64k", |b| {
        b.iter_batched(
            || big.clone(),
            |mut buf| decoder.decode(&mut buf).map(|f| f.map(|f| f.body.len())),
            BatchSize::SmallInput,
        )
    });
    let frame = Frame::new(b'D', vec![b'y'; 128]);
    group.throughput(Throughput::Bytes(frame.wire_len() as u64));
    group.bench_function("encode/data_row_128", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            black_box(&frame).encode(&mut out);
            out.len()
        })
    });
    group.bench_function("encode/select_reply", |b| b.iter(|| select_reply().len()));
    group.finish();
}

/// A SCRAM client whose salted password is computed once, so the timed exchange is the
/// server's work (nonce, parsing, HMACs, constant-time compare) plus two cheap HMACs.
struct FastScramClient {
    client_key: [u8; 32],
}

impl FastScramClient {
    const CLIENT_FIRST_BARE: &'static str = "n=,r=benchclientnonce0123456789";

    fn new(password: &str, salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        FastScramClient {
            client_key: hmac256(&salted, b"Client Key"),
        }
    }

    fn first(&self) -> String {
        format!("n,,{}", Self::CLIENT_FIRST_BARE)
    }

    /// client-final-message for the server's first message.
    fn last(&self, server_first: &str) -> Option<String> {
        let nonce = server_first.strip_prefix("r=")?.split(',').next()?;
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", Self::CLIENT_FIRST_BARE);
        let stored: [u8; 32] = Sha256::digest(self.client_key).into();
        let sig = hmac256(&stored, auth.as_bytes());
        let proof: Vec<u8> = self
            .client_key
            .iter()
            .zip(sig)
            .map(|(k, s)| k ^ s)
            .collect();
        Some(format!("{without_proof},p={}", B64.encode(proof)))
    }
}

fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The proxy's side of SCRAM-SHA-256: deriving a secret from a pool_passwd password (what a
/// login costs without `ScramSecretCache`) and verifying one exchange against a known secret.
fn scram(c: &mut Criterion) {
    const PASSWORD: &str = "bench-secret";
    const SALT: &[u8] = b"0123456789abcdef";
    let mut group = c.benchmark_group("scram");
    group.sample_size(20);
    group.bench_function("derive_secret_4096", |b| {
        b.iter(|| ScramSecret::from_password(black_box(PASSWORD)))
    });
    let secret = ScramSecret::from_password_with_salt(PASSWORD, SALT, 4096);
    let client = FastScramClient::new(PASSWORD, SALT, 4096);
    group.bench_function("verify_exchange", |b| {
        b.iter(|| {
            let mut server = ScramServer::new(secret.clone());
            let Ok(first) = server.handle_client_first(client.first().as_bytes()) else {
                return false;
            };
            let Some(last) = client.last(&first) else {
                return false;
            };
            server.handle_client_final(last.as_bytes()).is_ok()
        })
    });
    group.finish();
}

criterion_group!(benches, classifier, frames, scram);
criterion_main!(benches);
