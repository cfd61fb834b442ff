//! Tier 0: classify one statement from its tokens by its leading keywords.
//!
//! Settles everything whose class the first words decide (transaction control, SET, admin,
//! obvious writes) and simple SELECTs (see `select.rs`); read-shaped text it cannot be sure
//! of goes to sqlparser.

use super::cursor::{unquote, Cur};
use super::lexer::{TokKind, Token};
use super::statement::{AdminCommand, Facts, PrimaryCause, StmtKind};
use super::{dml, parse, select, txn};

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

/// Classify one statement (token slice `toks` of `text`) that does not contain another
/// statement (`classify.rs` takes COPY, EXPLAIN and PREPARE).
pub(crate) fn classify_tokens(text: &str, toks: &[Token]) -> Facts {
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
        "insert" | "update" | "delete" | "merge" | "truncate" => dml::dml(&mut c, &word),
        "create" => create(&mut c),
        w if WRITE_WORDS.contains(&w) => Facts::kind(StmtKind::Write),
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
