//! What one statement leaves on its backend past the end of its transaction (see
//! [`Outlives`]), read from its tokens and its classified facts in the classification pass.

use super::cursor::Cur;
use super::lexer::Token;
use super::statement::{Facts, Outlives};

/// Advisory locks held until the session ends (the `_xact_` ones end with the transaction).
const SESSION_LOCKS: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// Whether a statement calling `functions` takes a session-level advisory lock.
pub(crate) fn takes_session_lock(functions: &[String]) -> bool {
    functions.iter().any(|f| {
        let name = f.strip_prefix("pg_catalog.").unwrap_or(f);
        SESSION_LOCKS.contains(&name)
    })
}

/// The state one statement (`toks` of `text`, classified as `facts`) leaves past its
/// transaction, advisory locks aside; `TempTable` only when nothing else.
pub(crate) fn statement_outlives(text: &str, toks: &[Token], facts: &Facts) -> Option<Outlives> {
    let c = Cur::new(text, toks);
    if c.kw_at(0, "listen") {
        return Some(Outlives::Listen);
    }
    if c.kw_at(0, "prepare") && !c.kw_at(1, "transaction") {
        return Some(Outlives::SqlPrepare);
    }
    if c.kw_at(0, "declare") && declares_hold_cursor(&c) {
        return Some(Outlives::HoldCursor);
    }
    if c.kw_at(0, "set")
        && (has_words(&c, &["session", "authorization"])
            || has_words(&c, &["session_authorization"]))
    {
        return Some(Outlives::SessionAuthorization);
    }
    // `CREATE TEMP TABLE … ON COMMIT DROP` goes with its transaction; `pg_temp.x`,
    // `SELECT … INTO TEMP` and `ON COMMIT DELETE ROWS` stay.
    if !facts.creates_temp.is_empty() && !has_words(&c, &["on", "commit", "drop"]) {
        return Some(Outlives::TempTable);
    }
    None
}

/// `DECLARE name [BINARY] [ASENSITIVE|INSENSITIVE] [[NO] SCROLL] CURSOR WITH HOLD FOR …`:
/// the options end at `FOR`, where the query (whose words do not count) begins.
fn declares_hold_cursor(c: &Cur) -> bool {
    let options_end = (1..c.toks.len())
        .find(|&i| c.kw_at(i, "for"))
        .unwrap_or(c.toks.len());
    (1..options_end).any(|i| c.kw_at(i, "with") && c.kw_at(i + 1, "hold"))
}

/// Whether the statement has the unquoted keywords `seq`, one after the other.
fn has_words(c: &Cur, seq: &[&str]) -> bool {
    (0..c.toks.len()).any(|i| seq.iter().enumerate().all(|(k, w)| c.kw_at(i + k, w)))
}
