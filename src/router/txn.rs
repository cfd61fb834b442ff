//! Lexical recognition of transaction control and SET/RESET (spec 5.2).
//!
//! Done by hand rather than by sqlparser because it must never fail: sqlparser rejects
//! `BEGIN … DEFERRABLE`, and a missed BEGIN would desynchronise the replica's transaction.

use super::cursor::{unquote, Cur};
use super::lexer::TokKind;
use super::statement::{Facts, Isolation, SetEffect, StmtKind};

/// BEGIN/START/COMMIT/END/ROLLBACK/ABORT/SAVEPOINT/RELEASE; anything else is `Unparseable`.
pub(crate) fn transaction_control(c: &mut Cur, word: &str) -> StmtKind {
    match word {
        "begin" => {
            let _ = c.eat_kw("work") || c.eat_kw("transaction");
            begin_modes(c)
        }
        "start" if c.eat_kw("transaction") => begin_modes(c),
        "commit" | "end" => {
            if word == "commit" && c.eat_kw("prepared") {
                StmtKind::FinishPrepared
            } else {
                StmtKind::Commit
            }
        }
        "rollback" | "abort" => {
            if word == "rollback" && c.eat_kw("prepared") {
                return StmtKind::FinishPrepared;
            }
            let _ = c.eat_kw("work") || c.eat_kw("transaction");
            if c.eat_kw("to") {
                StmtKind::RollbackToSavepoint
            } else {
                StmtKind::Rollback
            }
        }
        "savepoint" => StmtKind::Savepoint,
        "release" => StmtKind::Release,
        _ => StmtKind::Unparseable,
    }
}

/// Transaction modes: `ISOLATION LEVEL …`, `READ ONLY|WRITE`, `[NOT] DEFERRABLE`, commas.
struct Modes {
    read_only: bool,
    read_write: bool,
    serializable: bool,
    isolation_given: bool,
    isolation: Option<Isolation>,
}

fn scan_modes(c: &mut Cur) -> Modes {
    let mut m = Modes {
        read_only: false,
        read_write: false,
        serializable: false,
        isolation_given: false,
        isolation: None,
    };
    while c.pos < c.toks.len() {
        if c.eat_kw("isolation") {
            c.eat_kw("level");
            m.isolation_given = true;
            if c.eat_kw("serializable") {
                m.serializable = true;
                m.isolation = Some(Isolation::Serializable);
            } else if c.eat_kw("repeatable") {
                c.eat_kw("read");
                m.isolation = Some(Isolation::RepeatableRead);
            } else if c.eat_kw("read") {
                let _ = c.eat_kw("committed") || c.eat_kw("uncommitted");
                m.isolation = Some(Isolation::ReadCommitted);
            }
        } else if c.eat_kw("read") {
            m.read_only |= c.is_kw("only");
            m.read_write |= c.is_kw("write");
            c.pos += 1;
        } else {
            c.pos += 1; // NOT, DEFERRABLE, commas
        }
    }
    m
}

fn begin_modes(c: &mut Cur) -> StmtKind {
    let m = scan_modes(c);
    StmtKind::Begin {
        read_only: m.read_only,
        serializable: m.serializable,
        plain_on_replica: m.serializable || m.read_write,
        isolation: m.isolation,
        read_write: m.read_write,
    }
}

fn set_kind(forces_primary: bool, effect: SetEffect) -> StmtKind {
    StmtKind::SessionSet {
        forces_primary,
        effect,
    }
}

/// SET forms that Pgpool-II sends to the primary only (spec 5.2) and what they leave behind.
pub(crate) fn set_statement(c: &mut Cur) -> StmtKind {
    let _ = c.eat_kw("session") || c.eat_kw("local");
    if c.eat_kw("transaction") {
        if c.eat_kw("snapshot") {
            return set_kind(false, SetEffect::None);
        }
        let m = scan_modes(c);
        return match (m.serializable, m.read_write) {
            (true, _) => set_kind(true, SetEffect::TxnSerializable),
            (false, true) => set_kind(true, SetEffect::TxnReadWrite),
            _ => set_kind(
                false,
                SetEffect::TxnModes {
                    isolation: m.isolation,
                    read_only: m.read_only,
                },
            ),
        };
    }
    if c.eat_kw("characteristics") {
        c.eat_kw("as");
        c.eat_kw("transaction");
        let m = scan_modes(c);
        if m.isolation_given {
            let serializable = m.serializable;
            return set_kind(
                serializable || m.read_write,
                SetEffect::SessionIsolation { serializable },
            );
        }
        return set_kind(m.read_write, SetEffect::None);
    }
    let Some(name) = c.qualified_name() else {
        return StmtKind::Unparseable;
    };
    let _ = c.eat_kw("to") || c.tok(c.pos).is_some_and(|t| c.src(t) == "=");
    if c.tok(c.pos).is_some_and(|t| c.src(t) == "=") {
        c.pos += 1;
    }
    let value = unquote(c.rest()).to_ascii_lowercase();
    set_value_kind(&name, &value)
}

/// What setting `name` (lower-cased) to `value` (lower-cased) for the session means for
/// routing: SET and `set_config(…, false)` alike.
fn set_value_kind(name: &str, value: &str) -> StmtKind {
    match name {
        "transaction_read_only" if matches!(value, "off" | "f" | "false" | "0" | "no" | "of") => {
            set_kind(true, SetEffect::TxnReadWrite)
        }
        "transaction_isolation" if value == "serializable" => {
            set_kind(true, SetEffect::TxnSerializable)
        }
        "default_transaction_isolation" => {
            let serializable = value == "serializable";
            set_kind(serializable, SetEffect::SessionIsolation { serializable })
        }
        _ => set_kind(false, SetEffect::None),
    }
}

/// `SELECT [pg_catalog.]set_config('name', 'value', is_local)` alone, with literal
/// arguments: with `is_local` false it is session state like SET (a `SessionSet`, run where
/// SET runs, mirrored and replayed by its text); with `is_local` true a transaction-local
/// call that needs nothing more. `None`: any other form (classified as a plain SELECT; the
/// session pins itself to the primary if it calls `set_config`, see `pins_session`).
/// Its verdict depends on literal values, so it is never shared by shape.
pub(crate) fn set_config_call(c: &Cur) -> Option<Facts> {
    let mut i = c.pos;
    let mut func = String::from("set_config");
    if c.kw_at(i, "pg_catalog") && c.is_punct(i + 1, b'.') {
        i += 2;
        func.insert_str(0, "pg_catalog.");
    }
    if !c.kw_at(i, "set_config") || !c.is_punct(i + 1, b'(') {
        return None;
    }
    let plain_str = |j: usize| {
        c.tok(j)
            .filter(|t| t.kind == TokKind::Str && c.src(*t).starts_with('\''))
            .map(|t| unquote(c.src(t)))
    };
    let name = plain_str(i + 2)?.to_ascii_lowercase();
    let value = plain_str(i + 4)?;
    if !c.is_punct(i + 3, b',') || !c.is_punct(i + 5, b',') || !c.is_punct(i + 7, b')') {
        return None;
    }
    if c.toks.len() != i + 8 {
        return None;
    }
    let flag = c.tok(i + 6)?;
    let local = match (
        flag.kind,
        unquote(c.src(flag)).to_ascii_lowercase().as_str(),
    ) {
        (TokKind::Word, "false") | (TokKind::Number, "0") => false,
        (TokKind::Word, "true") | (TokKind::Number, "1") => true,
        (TokKind::Str, "f" | "fa" | "fal" | "fals" | "false" | "n" | "no" | "of" | "off" | "0") => {
            false
        }
        (TokKind::Str, "t" | "tr" | "tru" | "true" | "y" | "ye" | "yes" | "on" | "1") => true,
        _ => return None,
    };
    let facts = if local {
        Facts {
            local_set_config: true,
            ..Facts::kind(StmtKind::Read)
        }
    } else {
        Facts::kind(set_value_kind(&name, &value.to_ascii_lowercase()))
    };
    Some(Facts {
        functions: vec![func],
        literal_names: true,
        ..facts
    })
}

/// RESET ALL / RESET default_transaction_isolation undo a session-wide SERIALIZABLE.
pub(crate) fn reset_statement(c: &mut Cur) -> StmtKind {
    if c.eat_kw("all") {
        return set_kind(false, SetEffect::ResetAll);
    }
    if c.eat_kw("default_transaction_isolation") {
        return set_kind(
            false,
            SetEffect::SessionIsolation {
                serializable: false,
            },
        );
    }
    set_kind(false, SetEffect::None)
}
