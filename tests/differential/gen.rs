//! Random but valid client sequences from a seed: a small grammar of statements over two
//! tables (`acct`, `log`) and a temporary table, sent as simple Queries (one to three
//! statements) or as Parse/Bind/Describe/Execute/Close with named and unnamed statements and
//! portals, Flush and Sync placed at random, COPY in both directions, a cancelled query, and
//! a write followed at once by a read of what it wrote.

use crate::script::{Msg, Sequence};

/// xorshift64*: small, deterministic, enough for test generation.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so neighbouring seeds give unrelated streams (never 0).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 0..n
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// One statement: text with `$n` placeholders and the text values that fill them.
struct Stmt {
    sql: String,
    params: Vec<String>,
}

impl Stmt {
    fn new(sql: &str, params: &[String]) -> Stmt {
        Stmt {
            sql: sql.to_string(),
            params: params.to_vec(),
        }
    }

    /// The statement with its parameters written in as literals (for a simple Query).
    fn literal(&self) -> String {
        let mut sql = self.sql.clone();
        for (i, p) in self.params.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", i + 1), &format!("'{p}'"));
        }
        sql
    }
}

/// A statement of the grammar. Ids are drawn from 1..=8 over five seeded rows, so inserts
/// sometimes collide (23505) and lookups sometimes miss.
fn statement(rng: &mut Rng) -> Stmt {
    let k = (1 + rng.below(8)).to_string();
    let v = rng.below(100).to_string();
    let s = |sql: &str, params: &[String]| Stmt::new(sql, params);
    match rng.below(41) {
        0 | 1 => s("SELECT id, n, note FROM acct WHERE id = $1", &[k]),
        2 => s("SELECT count(*), sum(n) FROM acct", &[]),
        3 => s("SELECT id, n FROM acct ORDER BY id", &[]),
        4 => s("SELECT id, acct, msg FROM log ORDER BY id", &[]),
        5 => s("SELECT n FROM acct WHERE id = $1 FOR UPDATE", &[k]),
        6 => s("SELECT 10 / $1::int", &[rng.below(3).to_string()]),
        7 => s("SHOW work_mem", &[]),
        8 => s("SELECT count(*) FROM tmp", &[]),
        9 => s("SELECT g FROM generate_series(1, 4) g", &[]),
        10 => s("COPY (SELECT id, n FROM acct ORDER BY id) TO STDOUT", &[]),
        11 | 12 => s(
            "INSERT INTO acct VALUES ($1, $2, 'ins') RETURNING id, n",
            &[k, v],
        ),
        13 => s(
            "UPDATE acct SET n = n + $1 WHERE id = $2 RETURNING id, n",
            &[v, k],
        ),
        14 => s("DELETE FROM acct WHERE id = $1", &[k]),
        15 => s("INSERT INTO log VALUES ($1, $1, 'log')", &[k]),
        16 => s(
            "WITH d AS (DELETE FROM log WHERE id = $1 RETURNING id) SELECT count(*) FROM d",
            &[k],
        ),
        17 => s("CREATE TEMP TABLE IF NOT EXISTS tmp (id int)", &[]),
        18 => s("INSERT INTO tmp VALUES ($1)", &[k]),
        19 => s(&format!("SET work_mem = '{}MB'", 1 + rng.below(9)), &[]),
        20 => s("RESET work_mem", &[]),
        21 => s("UPDATE acct SET n = n / 0 WHERE id = $1", &[k]),
        22 => s("SELEC 1", &[]),
        23 => s("SELECT * FROM no_such_table", &[]),
        24 | 25 => s("BEGIN", &[]),
        26 => s("COMMIT", &[]),
        27 => s("ROLLBACK", &[]),
        28 => s("SAVEPOINT sp", &[]),
        29 => s("RELEASE SAVEPOINT sp", &[]),
        // Transactions whose reads may run on the replica, and what pins them.
        31 => s("BEGIN READ ONLY", &[]),
        32 => s("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", &[]),
        33 => s("START TRANSACTION ISOLATION LEVEL REPEATABLE READ", &[]),
        34 => s("SET TRANSACTION READ ONLY", &[]),
        35 => s("SET LOCAL work_mem = '4MB'", &[]),
        36 => s("DECLARE c CURSOR FOR SELECT id FROM acct ORDER BY id", &[]),
        37 => s("FETCH 2 FROM c", &[]),
        // Data changes that call functions, one setting session state as it goes.
        38 => s(
            "UPDATE acct SET n = abs(n - $1) WHERE id = $2 RETURNING id, n",
            &[v, k],
        ),
        39 => s(
            "UPDATE acct SET note = set_config('app.note', $1, false) WHERE id = $2",
            &[v, k],
        ),
        // A placeholder setting once made stays defined, reset to '' (not NULL), on a
        // connection the cache hands on: only its value may tell.
        40 => s(
            "SELECT coalesce(current_setting('app.note', true), '')",
            &[],
        ),
        _ => s("ROLLBACK TO SAVEPOINT sp", &[]),
    }
}

/// Builds one sequence; names of statements and portals are remembered across rounds so
/// later rounds reuse (or collide with, or find closed) earlier ones.
struct Builder {
    rng: Rng,
    msgs: Vec<Msg>,
    /// Named statements parsed so far, with how many parameters each takes.
    named: Vec<(String, usize)>,
    /// Names an earlier session of the sequence parsed: under transaction pooling the
    /// backend connection the new session gets may still hold them.
    former: Vec<(String, usize)>,
    counter: usize,
}

impl Builder {
    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    fn simple_round(&mut self) {
        let n = 1 + self.rng.below(3);
        let parts: Vec<String> = (0..n).map(|_| statement(&mut self.rng).literal()).collect();
        // COPY TO STDOUT is sent alone (a COPY in a multi-statement query is legal but rare).
        let sql = match parts.iter().find(|p| p.starts_with("COPY")) {
            Some(copy) => copy.clone(),
            None => parts.join("; "),
        };
        self.msgs.push(Msg::Query(sql));
    }

    fn copy_in_round(&mut self) {
        self.msgs.push(Msg::Query("COPY log FROM STDIN".into()));
        for _ in 0..1 + self.rng.below(3) {
            let k = 1 + self.rng.below(8);
            self.msgs.push(Msg::CopyData(format!("{k}\t{k}\tcopied\n")));
        }
        self.msgs.push(if self.rng.chance(85) {
            Msg::CopyDone
        } else {
            Msg::CopyFail("client gave up".into())
        });
    }

    fn extended_statement(&mut self) {
        let st = statement(&mut self.rng);
        let stmt = if self.rng.chance(45) {
            if self.rng.chance(10) && !self.named.is_empty() {
                // Parse under a name already used: 42P05 unless it was closed or discarded.
                self.named[self.rng.below(self.named.len())].0.clone()
            } else if self.rng.chance(30) && !self.former.is_empty() {
                // A name an earlier session used, most likely for another text.
                self.former[self.rng.below(self.former.len())].0.clone()
            } else {
                self.fresh("s")
            }
        } else {
            String::new()
        };
        self.msgs.push(Msg::Parse {
            name: stmt.clone(),
            sql: st.sql.clone(),
        });
        if !stmt.is_empty() {
            self.named.push((stmt.clone(), st.params.len()));
        }
        if self.rng.chance(20) {
            self.msgs.push(Msg::Describe {
                kind: 'S',
                name: stmt.clone(),
            });
        }
        let portal = if self.rng.chance(30) {
            self.fresh("p")
        } else {
            String::new()
        };
        self.execute(&stmt, &portal, st.params);
        if !stmt.is_empty() && self.rng.chance(15) {
            self.msgs.push(Msg::Close {
                kind: 'S',
                name: stmt,
            });
        }
    }

    /// Bind + (Describe) + Execute (+ a second Execute after a row limit) (+ Close portal).
    fn execute(&mut self, stmt: &str, portal: &str, params: Vec<String>) {
        self.msgs.push(Msg::Bind {
            portal: portal.into(),
            stmt: stmt.into(),
            params,
        });
        if self.rng.chance(40) {
            self.msgs.push(Msg::Describe {
                kind: 'P',
                name: portal.into(),
            });
        }
        let limited = self.rng.chance(20);
        self.msgs.push(Msg::Execute {
            portal: portal.into(),
            max_rows: if limited { 1 } else { 0 },
        });
        if limited && self.rng.chance(60) {
            self.msgs.push(Msg::Execute {
                portal: portal.into(),
                max_rows: 0,
            });
        }
        if !portal.is_empty() && self.rng.chance(20) {
            self.msgs.push(Msg::Close {
                kind: 'P',
                name: portal.into(),
            });
        }
    }

    /// Reuses an earlier named statement: Describe it or run it again.
    fn reuse_statement(&mut self) {
        let from_former = self.named.is_empty() || self.rng.chance(20);
        let (name, nparams) = if !self.former.is_empty() && from_former {
            // Never parsed in this session: 26000, whatever a shared backend still holds.
            self.former[self.rng.below(self.former.len())].clone()
        } else {
            self.named[self.rng.below(self.named.len())].clone()
        };
        if self.rng.chance(50) {
            self.msgs.push(Msg::Describe { kind: 'S', name });
        } else {
            let params: Vec<String> = (0..nparams)
                .map(|_| (1 + self.rng.below(8)).to_string())
                .collect();
            self.execute(&name, "", params);
        }
    }

    /// A write and, right after it, a read of the row it wrote, each in a request of its
    /// own (with read_your_writes on, the read waits for the replica to replay the write).
    fn write_then_read_round(&mut self) {
        let k = (1 + self.rng.below(8)).to_string();
        let v = self.rng.below(100).to_string();
        let write = Stmt::new("UPDATE acct SET n = $1 WHERE id = $2", &[v, k.clone()]);
        let read = Stmt::new("SELECT id, n, note FROM acct WHERE id = $1", &[k]);
        if self.rng.chance(50) {
            self.msgs.push(Msg::Query(write.literal()));
            self.msgs.push(Msg::Query(read.literal()));
            return;
        }
        for st in [write, read] {
            self.msgs.push(Msg::Parse {
                name: String::new(),
                sql: st.sql.clone(),
            });
            self.execute("", "", st.params);
            self.msgs.push(Msg::Sync);
        }
    }

    fn extended_round(&mut self) {
        for _ in 0..1 + self.rng.below(3) {
            let reusable = !self.named.is_empty() || !self.former.is_empty();
            if reusable && self.rng.chance(25) {
                self.reuse_statement();
            } else {
                self.extended_statement();
            }
            if self.rng.chance(30) {
                self.msgs.push(Msg::Flush);
            }
        }
        self.msgs.push(Msg::Sync);
    }
}

/// The sequence for `seed`.
pub fn sequence(seed: u64) -> Sequence {
    let mut b = Builder {
        rng: Rng::new(seed),
        msgs: Vec::new(),
        named: Vec::new(),
        former: Vec::new(),
        counter: 0,
    };
    let pipelined = b.rng.chance(25);
    for _ in 0..2 + b.rng.below(5) {
        match b.rng.below(100) {
            0..=47 => b.extended_round(),
            48..=80 => b.simple_round(),
            81..=86 => b.write_then_read_round(),
            87..=93 => b.copy_in_round(),
            94..=97 => {
                // A new session: nothing of the old one may show (cached connections).
                b.msgs.push(Msg::Terminate);
                let named = std::mem::take(&mut b.named);
                b.former.extend(named);
            }
            _ => b.msgs.push(Msg::Cancel("SELECT pg_sleep(10)".into())),
        }
    }
    Sequence {
        pipelined,
        msgs: b.msgs,
    }
    .fixed_up()
}
