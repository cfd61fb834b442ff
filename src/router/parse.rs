//! Tier 1: sqlparser (PostgreSqlDialect) for read-shaped text the fast path is unsure of.
//!
//! Finds what makes a SELECT not a read (INTO, FOR UPDATE/SHARE, data-modifying CTEs) and
//! collects the functions and relations for the per-session checks. Parse failure means
//! `Unparseable` (primary), as in Pgpool-II.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement as Ast, TableFactor, Visit,
    Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::statement::{push_unique, Facts, StmtKind};

/// sqlparser's own guard against deep input; kept low enough that a debug build's larger
/// frames still fit a 2 MiB thread stack.
const RECURSION_LIMIT: usize = 40;
/// Parse time is linear in size (~0.1 µs/byte); past this a read is sent to the primary
/// rather than spend milliseconds of a shared core.
const MAX_PARSE_LEN: usize = 256 * 1024;

/// Classify a SELECT / WITH / VALUES / `(`-led statement with sqlparser.
pub(crate) fn classify_read_text(sql: &str) -> Facts {
    if sql.len() > MAX_PARSE_LEN {
        return Facts::kind(StmtKind::Unparseable);
    }
    let dialect = PostgreSqlDialect {};
    let parsed = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements());
    let stmts = match parsed {
        Ok(s) => s,
        Err(_) => return Facts::kind(StmtKind::Unparseable),
    };
    let [ast] = stmts.as_slice() else {
        return Facts::kind(StmtKind::Unparseable);
    };
    facts_of(ast)
}

fn facts_of(ast: &Ast) -> Facts {
    let mut w = Walk::default();
    let _ = ast.visit(&mut w);
    let mut kind = StmtKind::Read;
    match ast {
        Ast::Query(q) => {
            if let Some((temp, name)) = select_into(&q.body) {
                kind = StmtKind::Write;
                w.literal_names |= name.contains('\'');
                if temp {
                    w.creates_temp.push(name);
                }
            }
        }
        _ => kind = StmtKind::Write,
    }
    if w.writes || w.locks {
        kind = StmtKind::Write;
    }
    w.relations
        .retain(|r| !w.cte_names.contains(r) && !w.table_functions.contains(r));
    Facts {
        kind,
        functions: w.functions,
        relations: w.relations,
        creates_temp: w.creates_temp,
        literal_names: w.literal_names,
        local_set_config: false,
    }
}

/// `SELECT … INTO [TEMP] x` anywhere in the top-level set expression: (temporary, name).
fn select_into(body: &SetExpr) -> Option<(bool, String)> {
    match body {
        SetExpr::Select(s) => s.into.as_ref().map(|into| {
            let name = into
                .targets
                .first()
                .map(|e| e.to_string().to_ascii_lowercase())
                .unwrap_or_default();
            (into.temporary, name)
        }),
        SetExpr::SetOperation { left, right, .. } => {
            select_into(left).or_else(|| select_into(right))
        }
        SetExpr::Query(q) => select_into(&q.body),
        _ => None,
    }
}

/// Name as written: unquoted parts lower-cased, quoted parts kept, joined with `.`.
pub(crate) fn object_name(name: &ObjectName) -> String {
    let mut out = String::new();
    for (i, part) in name.0.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match part {
            ObjectNamePart::Identifier(id) if id.quote_style.is_some() => out.push_str(&id.value),
            ObjectNamePart::Identifier(id) => out.push_str(&id.value.to_ascii_lowercase()),
            ObjectNamePart::Function(f) => out.push_str(&f.to_string().to_ascii_lowercase()),
        }
    }
    out
}

#[derive(Default)]
struct Walk {
    functions: Vec<String>,
    relations: Vec<String>,
    creates_temp: Vec<String>,
    cte_names: Vec<String>,
    table_functions: Vec<String>,
    writes: bool,
    locks: bool,
    /// sqlparser read a string literal as a name (`FROM 'x'`, `WITH 'x' AS …`): the facts
    /// depend on a literal's value, so the verdict must not be shared by shape.
    literal_names: bool,
}

fn from_string_literal(id: &Ident) -> bool {
    id.quote_style == Some('\'')
}

fn has_string_part(name: &ObjectName) -> bool {
    name.0.iter().any(|p| match p {
        ObjectNamePart::Identifier(id) => from_string_literal(id),
        ObjectNamePart::Function(f) => f.to_string().contains('\''),
    })
}

impl Visitor for Walk {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        self.locks |= !q.locks.is_empty();
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let id = &cte.alias.name;
                self.literal_names |= from_string_literal(id);
                let name = match id.quote_style {
                    Some(_) => id.value.clone(),
                    None => id.value.to_ascii_lowercase(),
                };
                push_unique(&mut self.cte_names, name);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, s: &Ast) -> ControlFlow<()> {
        self.writes |= matches!(
            s,
            Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_) | Ast::Merge(_)
        );
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, r: &ObjectName) -> ControlFlow<()> {
        self.literal_names |= has_string_part(r);
        push_unique(&mut self.relations, object_name(r));
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(_),
            ..
        } = t
        {
            self.literal_names |= has_string_part(name);
            let n = object_name(name);
            push_unique(&mut self.functions, n.clone());
            push_unique(&mut self.table_functions, n);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Function(f) => {
                self.literal_names |= has_string_part(&f.name);
                push_unique(&mut self.functions, object_name(&f.name));
            }
            Expr::Identifier(id) => self.literal_names |= from_string_literal(id),
            Expr::CompoundIdentifier(ids) => {
                self.literal_names |= ids.iter().any(from_string_literal);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
