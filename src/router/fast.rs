//! Tier 0: classify one statement from its tokens by its leading keywords.
//!
//! Settles everything whose class the first words decide (transaction control, SET, admin,
//! obvious writes) and simple SELECTs (see `select.rs`); read-shaped text it cannot be sure
//! of goes to sqlparser.

use super::classify::{
    classify_nested, classify_text, AdminCommand, Facts, PrimaryCause, Statement, StmtKind,
};
use super::lexer::{TokKind, Token};
use super::{parse, select, txn};

/// Walks one statement's tokens.
pub(crate) struct Cur<'a> {
    pub text: &'a str,
    pub toks: &'a [Token],
    pub pos: usize,
}

impl<'a> Cur<'a> {
    pub fn new(text: &'a str, toks: &'a [Token]) -> Self {
        Self { text, toks, pos: 0 }
    }

    pub fn tok(&self, i: usize) -> Option<Token> {
        self.toks.get(i).copied()
    }

    pub fn src(&self, t: Token) -> &'a str {
        self.text.get(t.start..t.end).unwrap_or("")
    }

    /// Is the token at `i` the (unquoted) keyword `kw`?
    pub fn kw_at(&self, i: usize, kw: &str) -> bool {
        self.tok(i)
            .is_some_and(|t| t.kind == TokKind::Word && self.src(t).eq_ignore_ascii_case(kw))
    }

    pub fn is_kw(&self, kw: &str) -> bool {
        self.kw_at(self.pos, kw)
    }

    pub fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.is_kw(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    pub fn is_punct(&self, i: usize, p: u8) -> bool {
        self.tok(i).is_some_and(|t| t.kind == TokKind::Punct(p))
    }

    /// One identifier part at `pos`: unquoted words lower-cased, quoted kept as written.
    pub fn ident(&mut self) -> Option<String> {
        let t = self.tok(self.pos)?;
        let s = match t.kind {
            TokKind::Word => self.src(t).to_ascii_lowercase(),
            TokKind::QuotedIdent => unquote_ident(self.src(t)),
            _ => return None,
        };
        self.pos += 1;
        Some(s)
    }

    /// A possibly qualified name `a.b.c`, parts joined with `.`.
    pub fn qualified_name(&mut self) -> Option<String> {
        let mut name = self.ident()?;
        while self.is_punct(self.pos, b'.') {
            self.pos += 1;
            let part = self.ident()?;
            name.push('.');
            name.push_str(&part);
        }
        Some(name)
    }

    /// The source text after the previous token, comments included (they decide routing:
    /// the first-character rule), to the end of the statement.
    pub fn rest_with_comments(&self) -> &'a str {
        let start = match self.pos.checked_sub(1).and_then(|i| self.tok(i)) {
            Some(prev) => prev.end,
            None => 0,
        };
        match self.toks.last() {
            Some(z) if z.end > start => self.text.get(start..z.end).unwrap_or("").trim_start(),
            _ => "",
        }
    }

    /// The source text from the current token to the end of the statement.
    pub fn rest(&self) -> &'a str {
        match (self.tok(self.pos), self.toks.last()) {
            (Some(a), Some(z)) => self.text.get(a.start..z.end).unwrap_or(""),
            _ => "",
        }
    }

    /// Skip a balanced `( … )` group starting at `pos`; returns the text inside it.
    pub fn skip_parens(&mut self) -> Option<&'a str> {
        let open = self.tok(self.pos)?;
        if open.kind != TokKind::Punct(b'(') {
            return None;
        }
        let mut depth = 0usize;
        for i in self.pos..self.toks.len() {
            match self.toks[i].kind {
                TokKind::Punct(b'(') => depth += 1,
                TokKind::Punct(b')') => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos = i + 1;
                        return self.text.get(open.end..self.toks[i].start);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// First words that always mean "changes something": primary, marks the transaction written.
const WRITE_WORDS: &[&str] = &[
    "create",
    "drop",
    "alter",
    "grant",
    "revoke",
    "vacuum",
    "analyze",
    "analyse",
    "cluster",
    "reindex",
    "checkpoint",
    "refresh",
    "comment",
    "security",
    "reassign",
    "import",
    "load",
    "notify",
    "lock",
    "call",
    "do",
];

/// Classify one statement (token slice `toks` of `text`).
pub(crate) fn classify_tokens(text: &str, toks: &[Token], nesting: u8) -> Facts {
    let mut c = Cur::new(text, toks);
    let Some(first) = c.tok(0) else {
        return Facts::kind(StmtKind::Empty);
    };
    if first.kind == TokKind::Punct(b'(') {
        return parse::classify_read_text(c.rest());
    }
    if first.kind != TokKind::Word {
        return Facts::kind(StmtKind::Unparseable);
    }
    let word = c.src(first).to_ascii_lowercase();
    c.pos = 1;
    match word.as_str() {
        "select" => txn::set_config_call(&c).unwrap_or_else(|| {
            select::fast_select(&c).unwrap_or_else(|| parse::classify_read_text(c.text_of_all()))
        }),
        "with" | "values" => parse::classify_read_text(c.text_of_all()),
        "table" => table_statement(&mut c),
        "insert" | "update" | "delete" | "merge" | "truncate" => dml(&mut c, &word),
        "create" => create(&mut c),
        w if WRITE_WORDS.contains(&w) => Facts::kind(StmtKind::Write),
        "copy" => copy(&mut c, nesting),
        "explain" => explain(&mut c, nesting),
        "prepare" => prepare(&mut c, nesting),
        "execute" => execute(&mut c),
        "deallocate" => deallocate(&mut c),
        "show" => show(&mut c),
        "pgpool" => Facts::kind(admin(&mut c)),
        "declare" | "fetch" | "move" | "close" => {
            Facts::kind(StmtKind::PrimaryOnly(PrimaryCause::Cursor))
        }
        "listen" | "unlisten" => Facts::kind(StmtKind::PrimaryOnly(PrimaryCause::Listen)),
        "discard" => {
            let deallocates = c.is_kw("all");
            let drops_temp = deallocates || c.is_kw("temp") || c.is_kw("temporary");
            Facts::kind(StmtKind::Discard {
                drops_temp,
                deallocates,
            })
        }
        "set" => Facts::kind(txn::set_statement(&mut c)),
        "reset" => Facts::kind(txn::reset_statement(&mut c)),
        _ => Facts::kind(txn::transaction_control(&mut c, &word)),
    }
}

impl<'a> Cur<'a> {
    /// The whole statement's text (first token to last).
    pub fn text_of_all(&self) -> &'a str {
        match (self.toks.first(), self.toks.last()) {
            (Some(a), Some(z)) => self.text.get(a.start..z.end).unwrap_or(""),
            _ => "",
        }
    }
}

/// `TABLE [ONLY] name [*]`: a read sqlparser cannot parse.
fn table_statement(c: &mut Cur) -> Facts {
    c.eat_kw("only");
    let Some(name) = c.qualified_name() else {
        return Facts::kind(StmtKind::Unparseable);
    };
    if c.tok(c.pos).is_some_and(|t| c.src(t) == "*") {
        c.pos += 1;
    }
    if c.pos != c.toks.len() {
        return Facts::kind(StmtKind::Unparseable);
    }
    Facts {
        relations: vec![name],
        ..Facts::kind(StmtKind::Read)
    }
}

/// INSERT/UPDATE/DELETE/MERGE/TRUNCATE: a write; the target table(s) are kept for
/// `dml_adaptive`.
fn dml(c: &mut Cur, word: &str) -> Facts {
    let mut relations = Vec::new();
    match word {
        "insert" | "merge" => {
            c.eat_kw("into");
        }
        "delete" => {
            c.eat_kw("from");
        }
        "truncate" => {
            c.eat_kw("table");
        }
        _ => {}
    }
    loop {
        c.eat_kw("only");
        match c.qualified_name() {
            Some(n) => relations.push(n),
            None => break,
        }
        if word != "truncate" {
            break;
        }
        if c.tok(c.pos).is_some_and(|t| c.src(t) == "*") {
            c.pos += 1;
        }
        if !c.is_punct(c.pos, b',') {
            break;
        }
        c.pos += 1;
    }
    Facts {
        relations,
        ..Facts::kind(StmtKind::Write)
    }
}

/// CREATE …: a write; `CREATE [GLOBAL|LOCAL] TEMP[ORARY] TABLE|VIEW|SEQUENCE [IF NOT EXISTS] x`
/// and `CREATE TABLE pg_temp.x` also record a temporary object.
fn create(c: &mut Cur) -> Facts {
    let mut facts = Facts::kind(StmtKind::Write);
    c.eat_kw("or");
    c.eat_kw("replace");
    let _ = c.eat_kw("global") || c.eat_kw("local");
    let temp = c.eat_kw("temp") || c.eat_kw("temporary");
    if !(c.eat_kw("table") || c.eat_kw("view") || c.eat_kw("sequence")) {
        return facts;
    }
    if c.is_kw("if") {
        c.pos += 3; // IF NOT EXISTS
    }
    if let Some(name) = c.qualified_name() {
        if temp {
            facts.creates_temp.push(name);
        } else if let Some(bare) = name.strip_prefix("pg_temp.") {
            facts.creates_temp.push(bare.to_string());
        }
    }
    facts
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

fn execute(c: &mut Cur) -> Facts {
    match c.ident() {
        Some(name) => Facts::kind(StmtKind::Execute { name }),
        None => Facts::kind(StmtKind::Unparseable),
    }
}

fn deallocate(c: &mut Cur) -> Facts {
    c.eat_kw("prepare");
    if c.eat_kw("all") {
        return Facts::kind(StmtKind::Deallocate { name: None });
    }
    match c.ident() {
        Some(name) => Facts::kind(StmtKind::Deallocate { name: Some(name) }),
        None => Facts::kind(StmtKind::Unparseable),
    }
}

/// `SHOW pool_*` is ours; any other SHOW reads a setting and may balance.
fn show(c: &mut Cur) -> Facts {
    match c.tok(c.pos) {
        Some(t) if t.kind == TokKind::Word => {
            let name = c.src(t).to_ascii_lowercase();
            if name.starts_with("pool_") && c.toks.len() == 2 {
                return Facts::kind(StmtKind::Admin(AdminCommand::ShowPool(name)));
            }
            Facts::kind(StmtKind::Read)
        }
        _ => Facts::kind(StmtKind::Unparseable),
    }
}

/// `PGPOOL SHOW x | SET x = v | RESET x | EXPLAIN ROUTE sql`.
fn admin(c: &mut Cur) -> StmtKind {
    if c.eat_kw("explain") && c.eat_kw("route") {
        // The text as the client would send it, leading comments included, so the
        // explanation takes the same path as the statement itself.
        return StmtKind::Admin(AdminCommand::ExplainRoute(
            c.rest_with_comments().to_string(),
        ));
    }
    let verb = c.ident().unwrap_or_default();
    let Some(name) = c.ident() else {
        return StmtKind::Unparseable;
    };
    match verb.as_str() {
        "show" => StmtKind::Admin(AdminCommand::PgpoolShow(name)),
        "reset" => StmtKind::Admin(AdminCommand::PgpoolReset(name)),
        "set" => {
            if !(c.eat_kw("to") || c.tok(c.pos).is_some_and(|t| c.src(t) == "=")) {
                return StmtKind::Unparseable;
            }
            if c.tok(c.pos).is_some_and(|t| c.src(t) == "=") {
                c.pos += 1;
            }
            let value = unquote(c.rest());
            StmtKind::Admin(AdminCommand::PgpoolSet(name, value))
        }
        _ => StmtKind::Unparseable,
    }
}

/// `"a""b"` or `U&"a"` → `a"b` / `a` (Unicode escapes are left as written).
fn unquote_ident(quoted: &str) -> String {
    let body = quoted.get(2..).filter(|_| quoted.starts_with(['u', 'U']));
    let body = body.unwrap_or(quoted);
    let inner = body
        .strip_prefix('"')
        .and_then(|b| b.strip_suffix('"'))
        .unwrap_or(body);
    inner.replace("\"\"", "\"")
}

/// `'v'` → `v` (doubled quotes undone); anything else as written.
pub(crate) fn unquote(s: &str) -> String {
    let s = s.trim();
    match s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        Some(inner) => inner.replace("''", "'"),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::router::{classify_uncached, ClassifyOptions, StmtKind};

    #[test]
    fn quoted_identifiers_are_names_not_unterminated_text() {
        let cases: &[(&str, StmtKind, &[&str])] = &[
            ("select \"a\" from \"Foo\"", StmtKind::Read, &["Foo"]),
            (
                "select \"o\".\"id\" from \"orders\" \"o\"",
                StmtKind::Read,
                &["orders"],
            ),
            (
                "select * from \"s\".\"T\" where x = 1",
                StmtKind::Read,
                &["s.T"],
            ),
            (
                "select * from U&\"d\\0061t\"",
                StmtKind::Read,
                &["d\\0061t"],
            ),
            ("insert into \"T\" values (1)", StmtKind::Write, &["T"]),
            ("select \"a\"\"b\" from t", StmtKind::Read, &["t"]),
            ("select \"a\" \"b", StmtKind::Unparseable, &[]),
        ];
        for (sql, kind, relations) in cases {
            let s = classify_uncached(sql, &ClassifyOptions::default());
            let got: Vec<&str> = s.relations.iter().map(String::as_str).collect();
            assert_eq!((&s.kind, got.as_slice()), (kind, *relations), "{sql}");
        }
    }
}
