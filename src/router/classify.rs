//! Statement classification: text → static facts ([`Statement`]); cached in `cache.rs`.
//!
//! Two tiers (see the crate notes on sqlparser): the lexical fast path in `fast.rs` settles
//! transaction control, session commands, admin commands, obvious writes and simple SELECTs;
//! read-shaped text it is unsure of goes to sqlparser (`parse.rs`). Text neither can settle
//! is `Unparseable` and goes to the primary.
//!
//! The imports form a tree: `statement` (types) and `cursor` (token walking) at the
//! bottom, the tiers (`fast` → `select`, `txn`, `parse`) above them, and this file on top.
//! Statements that contain a statement (COPY (query), EXPLAIN, PREPARE) are handled here,
//! so the recursion into the inner text does not loop back through the tiers' imports.

use std::sync::Arc;

use super::cursor::Cur;
use super::fast;
use super::lexer::{self, TokKind, Token};
use super::outlives::{statement_outlives, takes_session_lock};
use super::statement::{ClassifyOptions, Facts, Memo, Outlives, PrimaryCause, Statement, StmtKind};
use super::stmt_class::StmtClass;

/// How deep EXPLAIN / PREPARE / COPY may nest statements inside statements.
const MAX_NESTING: u8 = 4;

/// Classify without the cache.
pub fn classify_uncached(sql: &str, opts: &ClassifyOptions) -> Statement {
    classify_checked(sql, opts).0
}

/// Classify without the cache; also says whether sqlparser took a name from a string
/// literal (`FROM 'pg_class'`), which makes the verdict depend on that literal's value.
pub(crate) fn classify_checked(sql: &str, opts: &ClassifyOptions) -> (Statement, bool) {
    let (mut stmt, literal_names) = classify_text(sql, 0);
    stmt.hint_comment = !opts.allow_sql_comments
        && !lexer::passes_first_char_rule(sql, opts.ignore_leading_white_space);
    (stmt, literal_names)
}

/// Classify a (possibly nested: EXPLAIN, PREPARE, COPY) text.
pub(crate) fn classify_nested(sql: &str, nesting: u8) -> Statement {
    classify_text(sql, nesting).0
}

/// [`classify_nested`], plus [`Facts::literal_names`] of the first statement.
pub(crate) fn classify_text(sql: &str, nesting: u8) -> (Statement, bool) {
    let text: Arc<str> = Arc::from(sql);
    let mut stmt = Statement {
        kind: StmtKind::Unparseable,
        class: StmtClass::Other,
        functions: Vec::new(),
        relations: Vec::new(),
        creates_temp: Vec::new(),
        multi: false,
        hint_comment: false,
        writes: false,
        changes_catalog: false,
        pins_session: false,
        outlives: None,
        text,
        memo: Memo::default(),
    };
    if nesting > MAX_NESTING {
        return (stmt, false);
    }
    let lexed = lexer::lex(sql);
    stmt.class = StmtClass::of_tokens(sql, &lexed.tokens);
    if lexed.unterminated {
        return (stmt, false);
    }
    let parts = split_statements(&lexed.tokens);
    let Some(first) = parts.first() else {
        stmt.kind = StmtKind::Empty;
        return (stmt, false);
    };
    let facts = classify_one(sql, first, nesting);
    stmt.multi = parts.len() > 1;
    stmt.writes = is_writing(&facts.kind);
    stmt.changes_catalog = changes_catalog(sql, first, &facts);
    stmt.pins_session = sets_state_elsewhere(&facts, stmt.multi);
    let mut outlives = Outlasting::default();
    outlives.add(sql, first, &facts);
    let mut later_temp = Vec::new();
    if stmt.multi {
        for p in &parts[1..] {
            let mut other = classify_one(sql, p, nesting);
            outlives.add(sql, p, &other);
            // A temp table made anywhere in the text exists only where the text ran.
            later_temp.append(&mut other.creates_temp);
            stmt.writes |= is_writing(&other.kind);
            stmt.changes_catalog |= changes_catalog(sql, p, &other);
            stmt.pins_session |= sets_state_elsewhere(&other, true);
        }
    }
    stmt.outlives = outlives.verdict();
    if stmt.multi && matches!(facts.kind, StmtKind::Admin(_)) {
        return (stmt, facts.literal_names); // admin commands are only answered alone
    }
    stmt.kind = facts.kind;
    stmt.functions = facts.functions;
    stmt.relations = facts.relations;
    stmt.creates_temp = facts.creates_temp;
    stmt.creates_temp.append(&mut later_temp);
    (stmt, facts.literal_names)
}

/// What the statements of one text leave past their transaction (see [`Outlives`]).
#[derive(Default)]
struct Outlasting {
    lock: bool,
    first: Option<Outlives>,
    temp: bool,
}

impl Outlasting {
    fn add(&mut self, sql: &str, toks: &[Token], facts: &Facts) {
        self.lock |= takes_session_lock(&facts.functions);
        match statement_outlives(sql, toks, facts) {
            Some(Outlives::TempTable) => self.temp = true,
            found => self.first = self.first.or(found),
        }
    }

    fn verdict(&self) -> Option<Outlives> {
        let lock = self.lock.then_some(Outlives::AdvisoryLock);
        let temp = self.temp.then_some(Outlives::TempTable);
        lock.or(self.first).or(temp)
    }
}

/// Statements led by these words change what the catalog says about names (DO may too).
const CATALOG_WORDS: &[&str] = &["create", "alter", "drop", "comment", "do", "import"];

/// A temporary table changes no cached fact (its persistence is `t`, and the session
/// tracks it), so `CREATE TEMP TABLE` — frequent in some applications — keeps the cache.
fn changes_catalog(sql: &str, tokens: &[lexer::Token], facts: &Facts) -> bool {
    facts.creates_temp.is_empty()
        && tokens.first().is_some_and(|t| {
            t.kind == TokKind::Word
                && sql
                    .get(t.start..t.end)
                    .is_some_and(|w| CATALOG_WORDS.iter().any(|k| w.eq_ignore_ascii_case(k)))
        })
}

/// Session state the proxy can neither mirror nor replay: `set_config` other than the
/// stand-alone literal forms (`SessionSet`, or transaction-local), or any session command
/// inside a multi-statement text.
fn sets_state_elsewhere(facts: &Facts, multi: bool) -> bool {
    let session_cmd = matches!(facts.kind, StmtKind::SessionSet { .. });
    (multi && session_cmd)
        || (!session_cmd
            && !facts.local_set_config
            && facts.functions.iter().any(|f| super::is_set_config(f)))
}

/// Pgpool-II treats text it cannot parse as a write; so do we.
fn is_writing(kind: &StmtKind) -> bool {
    matches!(kind, StmtKind::Write | StmtKind::Unparseable)
}

/// Token slices of each non-empty statement (split at top-level `;`).
fn split_statements(tokens: &[lexer::Token]) -> Vec<&[lexer::Token]> {
    tokens
        .split(|t| t.kind == TokKind::Punct(b';'))
        .filter(|s| !s.is_empty())
        .collect()
}

/// One statement: those that contain a statement go back through [`classify_text`] for it;
/// every other one is settled by its leading keywords (`fast.rs`) or sqlparser.
fn classify_one(sql: &str, toks: &[Token], nesting: u8) -> Facts {
    let mut c = Cur::new(sql, toks);
    c.pos = 1;
    if c.kw_at(0, "copy") {
        copy(&mut c, nesting)
    } else if c.kw_at(0, "explain") {
        explain(&mut c, nesting)
    } else if c.kw_at(0, "prepare") {
        prepare(&mut c, nesting)
    } else {
        fast::classify_tokens(sql, toks)
    }
}

/// COPY: `FROM` is a write; `TO STDOUT` reads its table or query; `TO 'file'` is primary.
fn copy(c: &mut Cur, nesting: u8) -> Facts {
    let (mut source, literal_names) = if c.is_punct(c.pos, b'(') {
        let inner = c.skip_parens().unwrap_or("");
        classify_text(inner, nesting + 1)
    } else {
        let Some(name) = c.qualified_name() else {
            return Facts::kind(StmtKind::Unparseable);
        };
        let _ = c.skip_parens(); // column list
        let source = Statement {
            relations: vec![name],
            ..classify_nested("", nesting + 1)
        };
        (source, false)
    };
    if c.eat_kw("from") {
        return Facts {
            relations: std::mem::take(&mut source.relations),
            literal_names,
            ..Facts::kind(StmtKind::Write)
        };
    }
    if !c.eat_kw("to") {
        return Facts::kind(StmtKind::Unparseable);
    }
    let kind = match source.kind {
        StmtKind::Read | StmtKind::Empty if c.is_kw("stdout") => StmtKind::Read,
        StmtKind::Read | StmtKind::Empty => StmtKind::PrimaryOnly(PrimaryCause::CopyToFile),
        StmtKind::Write => StmtKind::Write,
        _ => StmtKind::Unparseable,
    };
    Facts {
        kind,
        functions: source.functions,
        relations: source.relations,
        creates_temp: Vec::new(),
        literal_names,
        local_set_config: false,
    }
}

/// EXPLAIN [ANALYZE] [VERBOSE] | EXPLAIN (options) stmt. A plain EXPLAIN of a read balances
/// (Pgpool-II sends every EXPLAIN to the primary; planning on a replica is harmless and
/// cheaper). EXPLAIN ANALYZE runs the statement, so it takes the statement's class.
fn explain(c: &mut Cur, nesting: u8) -> Facts {
    let mut analyze = false;
    if c.is_punct(c.pos, b'(') {
        let opts = c.skip_parens().unwrap_or("").to_ascii_lowercase();
        analyze = opts.split(',').any(|o| {
            let mut w = o.split_whitespace();
            w.next() == Some("analyze")
                && !matches!(w.next(), Some("false" | "off" | "0" | "'false'" | "'off'"))
        });
    }
    loop {
        if c.eat_kw("analyze") || c.eat_kw("analyse") {
            analyze = true;
        } else if !c.eat_kw("verbose") {
            break;
        }
    }
    let (inner, literal_names) = classify_text(c.rest(), nesting + 1);
    let kind = match inner.kind {
        StmtKind::Read => StmtKind::Read,
        StmtKind::Write if analyze => StmtKind::Write,
        StmtKind::Write => StmtKind::PrimaryOnly(PrimaryCause::Explain),
        StmtKind::Execute { .. } => StmtKind::PrimaryOnly(PrimaryCause::Explain),
        _ => StmtKind::Unparseable,
    };
    Facts {
        kind,
        functions: inner.functions,
        relations: inner.relations,
        creates_temp: Vec::new(),
        literal_names,
        local_set_config: false,
    }
}

/// `PREPARE TRANSACTION 'id'` or `PREPARE name [(types)] AS stmt`.
fn prepare(c: &mut Cur, nesting: u8) -> Facts {
    if c.eat_kw("transaction") {
        return Facts::kind(StmtKind::PrepareTransaction);
    }
    let Some(name) = c.ident() else {
        return Facts::kind(StmtKind::Unparseable);
    };
    let _ = c.skip_parens();
    if !c.eat_kw("as") {
        return Facts::kind(StmtKind::Unparseable);
    }
    let body = classify_nested(c.rest(), nesting + 1);
    if body.multi || matches!(body.kind, StmtKind::Empty) {
        return Facts::kind(StmtKind::Unparseable);
    }
    Facts::kind(StmtKind::Prepare {
        name,
        body: Box::new(body),
    })
}
