//! Fast path for simple SELECTs: one query block, a plain FROM list, no INTO / locking /
//! subqueries. Collects the called functions and the relations in one pass over the
//! tokens; anything outside that shape returns `None` and is left to sqlparser.

use super::cursor::Cur;
use super::lexer::TokKind;
use super::statement::{push_unique, Facts, StmtKind};

/// Words that make the shape too rich for this scan (sqlparser decides instead).
const BAIL: &[&str] = &[
    "into",
    "for",
    "with",
    "lateral",
    "values",
    "select",
    "union",
    "intersect",
    "except",
    "tablesample",
    "table",
    "rows",
    "only",
];

/// Words followed by `(` that are syntax, not function calls.
pub(crate) const NOT_FUNCTIONS: &[&str] = &[
    "in",
    "exists",
    "any",
    "all",
    "some",
    "array",
    "row",
    "over",
    "filter",
    "within",
    "and",
    "or",
    "not",
    "on",
    "using",
    "when",
    "then",
    "else",
    "case",
    "is",
    "between",
    "like",
    "ilike",
    "similar",
    "by",
    "cast",
    "distinct",
    "as",
    "join",
    "where",
    "having",
    "from",
    "partition",
    "grouping",
    "rollup",
    "cube",
    "sets",
    "escape",
    "default",
];

/// Words that end a FROM list (no alias may use them).
const CLAUSE_WORDS: &[&str] = &[
    "where", "group", "order", "limit", "offset", "having", "window", "fetch", "join", "inner",
    "left", "right", "full", "cross", "natural", "on", "using", "outer",
];

/// Try the fast path; `c.pos` is just after `SELECT`.
pub(crate) fn fast_select(c: &Cur) -> Option<Facts> {
    let mut s = Scan {
        c: Cur::new(c.text, c.toks),
        functions: Vec::new(),
        relations: Vec::new(),
    };
    s.c.pos = c.pos;
    s.run()?;
    Some(Facts {
        functions: s.functions,
        relations: s.relations,
        ..Facts::kind(StmtKind::Read)
    })
}

struct Scan<'a> {
    c: Cur<'a>,
    functions: Vec<String>,
    relations: Vec<String>,
}

impl Scan<'_> {
    fn run(&mut self) -> Option<()> {
        let mut depth = 0usize;
        let mut in_from = false;
        while let Some(t) = self.c.tok(self.c.pos) {
            match t.kind {
                TokKind::Punct(b'(') => {
                    depth += 1;
                    self.c.pos += 1;
                }
                TokKind::Punct(b')') => {
                    depth = depth.checked_sub(1)?;
                    self.c.pos += 1;
                }
                TokKind::Punct(b',') if in_from && depth == 0 => {
                    self.c.pos += 1;
                    self.parse_from_item()?;
                }
                TokKind::Word | TokKind::QuotedIdent => {
                    let lw = self.c.src(t).to_ascii_lowercase();
                    if t.kind == TokKind::Word && BAIL.contains(&lw.as_str()) {
                        return None;
                    }
                    if t.kind == TokKind::Word && (lw == "from" || lw == "join") {
                        if depth > 0 {
                            return None; // extract(… from …), substring(… from …)
                        }
                        in_from = true;
                        self.c.pos += 1;
                        self.parse_from_item()?;
                    } else if t.kind == TokKind::Word
                        && depth == 0
                        && CLAUSE_WORDS.contains(&lw.as_str())
                    {
                        in_from &= matches!(
                            lw.as_str(),
                            "on" | "using"
                                | "inner"
                                | "left"
                                | "right"
                                | "full"
                                | "cross"
                                | "natural"
                                | "outer"
                        );
                        self.c.pos += 1;
                    } else {
                        self.maybe_function()?;
                    }
                }
                _ => self.c.pos += 1,
            }
        }
        (depth == 0).then_some(())
    }

    /// At a (qualified) name: a function if followed by `(`, unless it is syntax or a type
    /// (after `::` or `AS`).
    fn maybe_function(&mut self) -> Option<()> {
        let start = self.c.pos;
        let is_type = start > 0
            && self.c.tok(start - 1).is_some_and(|p| {
                p.kind == TokKind::Cast
                    || (p.kind == TokKind::Word && self.c.src(p).eq_ignore_ascii_case("as"))
            });
        let first_is_word = self.c.tok(start).is_some_and(|t| t.kind == TokKind::Word);
        let name = self.c.qualified_name()?;
        if self.c.is_punct(self.c.pos, b'(')
            && !is_type
            && !(first_is_word && NOT_FUNCTIONS.contains(&name.as_str()))
        {
            push_unique(&mut self.functions, name);
        }
        Some(())
    }

    /// One FROM item: `name [[AS] alias [(cols)]]` or a table function `f(…) [alias]`.
    fn parse_from_item(&mut self) -> Option<()> {
        let t = self.c.tok(self.c.pos)?;
        if !matches!(t.kind, TokKind::Word | TokKind::QuotedIdent) {
            return None; // subquery, VALUES, …
        }
        if t.kind == TokKind::Word
            && NOT_FUNCTIONS.contains(&self.c.src(t).to_ascii_lowercase().as_str())
        {
            return None;
        }
        let name = self.c.qualified_name()?;
        if self.c.is_punct(self.c.pos, b'(') {
            push_unique(&mut self.functions, name);
            self.c.skip_parens()?;
        } else {
            push_unique(&mut self.relations, name);
        }
        self.alias()
    }

    fn alias(&mut self) -> Option<()> {
        let explicit = self.c.eat_kw("as");
        if let Some(t) = self.c.tok(self.c.pos) {
            let lw = self.c.src(t).to_ascii_lowercase();
            let plain_word = t.kind == TokKind::Word
                && !CLAUSE_WORDS.contains(&lw.as_str())
                && !BAIL.contains(&lw.as_str());
            if explicit || plain_word || t.kind == TokKind::QuotedIdent {
                self.c.ident()?;
                if self.c.is_punct(self.c.pos, b'(') {
                    self.c.skip_parens()?;
                }
            }
        }
        Some(())
    }
}
