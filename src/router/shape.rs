//! Statement shapes: a text with its plain literals cut out, so that texts differing only in
//! literal values (pgbench's `WHERE aid = 4711`, ORMs without prepared statements) can share
//! one cached verdict.
//!
//! Two texts have the same shape only when they are equal byte for byte (whitespace,
//! comments and case included) except inside *holes*: literals at the same places, of the
//! same kind. So all that needs proving is that a literal's value cannot change the verdict:
//!
//! * A literal is a hole only in a form that our lexer and sqlparser's read
//!   alike whatever its value: an integer of at most 18 digits (sqlparser parses some
//!   integers as `u64`/`i64`) or a decimal `12.5`, not followed by a letter, digit, `_`, `$`
//!   or `.` (so `0into`, `1e5` and `0x1F` keep their bytes); or a `'…'` string with no prefix
//!   (`E`, `B`, `X`, `N`, `U&` keep theirs) and no `'`, `\`, newline or `*/` inside. Integer,
//!   decimal and string holes are of different kinds. Dollar-quoted bodies, `$n` parameters
//!   and quoted identifiers always keep their bytes.
//! * Holes are cut only from single, terminated statements led by a word in `shaped_word`
//!   (or `(`), whose verdict the classifier takes from keywords, names and token kinds, never
//!   from a literal's text. SET (replayed later by its text), PREPARE (its body's text),
//!   EXPLAIN (reads `ANALYZE 'off'`), COPY, SHOW, PGPOOL and multi-statement or unterminated
//!   texts are keyed by their exact text.
//! * sqlparser accepts a string literal as a name (`FROM 'pg_class'`); the classifier reports
//!   that, and such a text is not cached by shape (see `cache.rs`).

use std::cell::Cell;

use super::lexer::{is_ident_cont, lex_one, Step, TokKind};

/// Most holes one shape may have; a text with more literals is keyed by its exact text.
pub(crate) const MAX_HOLES: usize = 4096;

thread_local! {
    /// Each thread's hole list, reused from text to text so that a shape costs no allocation.
    static HOLES: Cell<Vec<Hole>> = const { Cell::new(Vec::new()) };
}

/// Whether a statement led by `word` has a verdict that does not depend on literal values
/// (the classifier decides it from keywords, names and token kinds).
fn shaped_word(word: &[u8]) -> bool {
    let mut lower = [0u8; 12];
    let Some(buf) = lower.get_mut(..word.len()) else {
        return false; // longer than any word below
    };
    for (l, &c) in buf.iter_mut().zip(word) {
        *l = c.to_ascii_lowercase();
    }
    matches!(
        &*buf,
        b"select"
            | b"with"
            | b"values"
            | b"table"
            | b"insert"
            | b"update"
            | b"delete"
            | b"merge"
            | b"truncate"
            | b"create"
            | b"drop"
            | b"alter"
            | b"grant"
            | b"revoke"
            | b"vacuum"
            | b"analyze"
            | b"analyse"
            | b"cluster"
            | b"reindex"
            | b"checkpoint"
            | b"refresh"
            | b"comment"
            | b"security"
            | b"reassign"
            | b"import"
            | b"load"
            | b"notify"
            | b"lock"
            | b"call"
            | b"do"
            | b"execute"
            | b"deallocate"
            | b"declare"
            | b"fetch"
            | b"move"
            | b"close"
            | b"listen"
            | b"unlisten"
            | b"discard"
            | b"begin"
            | b"start"
            | b"commit"
            | b"end"
            | b"rollback"
            | b"abort"
            | b"savepoint"
            | b"release"
    )
}

/// Byte range of one literal cut out of a text, and the literal's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Hole {
    start: u32,
    end: u32,
    kind: HoleKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum HoleKind {
    #[default]
    Integer,
    Decimal,
    String,
}

impl HoleKind {
    /// What the hash takes for a hole of this kind.
    fn mark(self) -> u64 {
        match self {
            HoleKind::Integer => 0x696e_7465_6765_7201,
            HoleKind::Decimal => 0x6465_6369_6d61_6c02,
            HoleKind::String => 0x7374_7269_6e67_0003,
        }
    }
}

/// A text's shape: its hash and where its holes are (none when keyed by exact text).
pub(crate) struct Shape {
    pub hash: u64,
    holes: Vec<Hole>,
}

impl Drop for Shape {
    fn drop(&mut self) {
        let holes = std::mem::take(&mut self.holes);
        if holes.capacity() <= MAX_HOLES {
            // Gone only while the thread exits; then there is nothing to keep it for.
            let _ = HOLES.try_with(|h| h.set(holes));
        }
    }
}

impl Shape {
    /// The shape of `text`, hashed with the per-classifier `seed`. One pass of the lexer, no
    /// allocation once the thread's hole list has grown to its texts.
    pub fn of(text: &str, seed: u64) -> Shape {
        let mut holes = HOLES.try_with(Cell::take).unwrap_or_default();
        holes.clear();
        let mut shape = Shape { hash: 0, holes };
        let mut h = ShapeHasher::new(seed);
        if text.len() <= u32::MAX as usize && shape.cut_holes(text, &mut h) {
            shape.hash = h.finish();
        } else {
            shape.holes.clear();
            let mut exact = ShapeHasher::new(seed);
            exact.bytes(text.as_bytes());
            shape.hash = exact.finish();
        }
        shape
    }

    pub fn holes(&self) -> &[Hole] {
        &self.holes
    }

    /// Scans `text`, hashing it with its holes cut out. `false`: the text must be keyed by
    /// its exact bytes (not a statement whose verdict ignores literal values).
    fn cut_holes(&mut self, text: &str, h: &mut ShapeHasher) -> bool {
        let b = text.as_bytes();
        let mut i = 0;
        let mut seg_start = 0;
        let mut first = true;
        let mut after_semicolon = false;
        while i < b.len() {
            let (kind, start, end) = match lex_one(b, i) {
                Step::Skip(next) => {
                    i = next;
                    continue;
                }
                Step::Unterminated => return false,
                Step::Tok(kind, start, end) => (kind, start, end),
            };
            if first {
                first = false;
                let shaped = matches!(kind, TokKind::Punct(b'('))
                    || (matches!(kind, TokKind::Word)
                        && shaped_word(b.get(start..end).unwrap_or(&[])));
                if !shaped {
                    return false;
                }
            } else if matches!(kind, TokKind::Punct(b';')) {
                after_semicolon = true;
            } else if after_semicolon {
                return false; // a second statement
            }
            let literal = matches!(kind, TokKind::Number | TokKind::Str);
            if let Some(hole_kind) = literal.then(|| hole_kind(b, kind, start, end)).flatten() {
                if self.holes.len() == MAX_HOLES {
                    return false;
                }
                h.bytes(b.get(seg_start..start).unwrap_or(&[]));
                h.word(hole_kind.mark());
                self.holes.push(Hole {
                    start: start as u32,
                    end: end as u32,
                    kind: hole_kind,
                });
                seg_start = end;
            }
            i = end.max(i + 1);
        }
        h.bytes(b.get(seg_start..).unwrap_or(&[]));
        true
    }

    /// Whether `text` (this shape's text) and a cached text with its holes have the same
    /// shape: equal outside the holes, holes at the same places and of the same kinds.
    pub fn matches(&self, text: &str, cached: &str, cached_holes: &[Hole]) -> bool {
        let (a, b) = (text.as_bytes(), cached.as_bytes());
        if self.holes.len() != cached_holes.len() {
            return false;
        }
        let (mut ia, mut ib) = (0usize, 0usize);
        for (ha, hb) in self.holes().iter().zip(cached_holes) {
            let (sa, sb) = (ha.start as usize, hb.start as usize);
            if ha.kind != hb.kind || a.get(ia..sa).is_none() || a.get(ia..sa) != b.get(ib..sb) {
                return false;
            }
            ia = ha.end as usize;
            ib = hb.end as usize;
        }
        a.get(ia..).is_some() && a.get(ia..) == b.get(ib..)
    }
}

/// The kind of hole the token `b[start..end]` makes if it is a literal in a hole form (see
/// the module notes); `None` keeps its bytes in the shape.
fn hole_kind(b: &[u8], kind: TokKind, start: usize, end: usize) -> Option<HoleKind> {
    let body = b.get(start..end)?;
    match kind {
        TokKind::Number => {
            if b.get(end).is_some_and(|&c| is_ident_cont(c) || c == b'.') {
                return None;
            }
            let (int, frac) = match body.iter().position(|&c| c == b'.') {
                Some(dot) => (body.get(..dot)?, Some(body.get(dot + 1..)?)),
                None => (body, None),
            };
            let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
            match frac {
                None if digits(int) && int.len() <= 18 => Some(HoleKind::Integer),
                Some(f) if digits(int) && digits(f) => Some(HoleKind::Decimal),
                _ => None,
            }
        }
        TokKind::Str => {
            let inner = body.strip_prefix(b"'")?.strip_suffix(b"'")?;
            let after_name = start > 0 && b.get(start - 1).is_some_and(|&c| is_ident_cont(c));
            let plain = !after_name
                && !inner.iter().any(|&c| matches!(c, b'\'' | b'\\' | b'\n'))
                && !inner.windows(2).any(|w| w == b"*/");
            plain.then_some(HoleKind::String)
        }
        _ => None,
    }
}

/// A fast keyed hash over a shape (a folded 64×64→128 multiply per 8 bytes, in the manner of
/// foldhash/wyhash). Written here because the input is a stream of text segments and hole
/// marks, which a `Hasher` would take one `write` call at a time. The seed is random per
/// classifier, so clients cannot aim texts at one bucket; a collision costs a cache miss,
/// never a wrong verdict (entries are compared in full before use).
pub(crate) struct ShapeHasher(u64);

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl ShapeHasher {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn word(&mut self, w: u64) {
        self.0 = folded_multiply(self.0 ^ w, MULTIPLIER);
    }

    /// One text segment (its length is hashed too, so segments cannot slide into holes).
    pub fn bytes(&mut self, b: &[u8]) {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        let mut tail = [0u8; 8];
        if let Some(t) = tail.get_mut(..rest.len()) {
            t.copy_from_slice(rest);
        }
        self.word(u64::from_le_bytes(tail));
        self.word(b.len() as u64);
    }

    pub fn finish(&self) -> u64 {
        folded_multiply(self.0 ^ (self.0 >> 29), MULTIPLIER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_shape(a: &str, b: &str) -> bool {
        let (sa, sb) = (Shape::of(a, 7), Shape::of(b, 7));
        let matched = sa.matches(a, b, sb.holes());
        assert_eq!(matched, sb.matches(b, a, sa.holes()), "{a:?} / {b:?}");
        if matched {
            assert_eq!(sa.hash, sb.hash, "{a:?} / {b:?}");
        }
        matched
    }

    #[test]
    fn texts_differing_only_in_plain_literals_share_a_shape() {
        let cases = [
            (
                "select a from t where id = 1",
                "select a from t where id = 4711",
            ),
            (
                "select a from t where x = 'a'",
                "select a from t where x = 'xyz dé'",
            ),
            (
                "select a from t where x = ''",
                "select a from t where x = 'b'",
            ),
            ("select 1.5, 2", "select 10.25, 3"),
            ("select 123456789012345678", "select 1"),
            (
                "insert into t values (1, 'a')",
                "insert into t values (22, 'bb')",
            ),
            (
                "update t set a = 1 where id = 2;",
                "update t set a = 3 where id = 4;",
            ),
            ("(select 1) union (select 2)", "(select 3) union (select 4)"),
            (
                "select * from t where a in (1, 2)",
                "select * from t where a in (3, 4)",
            ),
            ("select 'a' from t", "select '/* x' from t"),
        ];
        for (a, b) in cases {
            assert!(same_shape(a, b), "{a:?} / {b:?}");
        }
    }

    #[test]
    fn anything_but_a_plain_literal_value_makes_another_shape() {
        let cases = [
            // Literal kind, count and form.
            (
                "select a from t where x = 1",
                "select a from t where x = '1'",
            ),
            (
                "select a from t where x in (1)",
                "select a from t where x in (1, 2)",
            ),
            ("select E'a' from t", "select E'b' from t"),
            ("select 'a' from t", "select E'a' from t"),
            ("select $$a$$ from t", "select $$b$$ from t"),
            ("select 'it''s'", "select 'its'"),
            ("select 'a\\'", "select 'b\\'"),
            ("select 'a\nb'", "select 'a b'"),
            ("select 'a*/'", "select 'ab'"),
            ("select 0x1F", "select 0x2F"),
            ("select 1e5", "select 2e5"),
            ("select 1_000", "select 2_000"),
            ("select 0into t1", "select 1into t1"),
            ("select $1", "select $2"),
            // Names, quoting, case, whitespace, comments.
            ("select \"Foo\" from t", "select foo from t"),
            ("select a from t", "select b from t"),
            ("SELECT a FROM t", "select a from t"),
            ("select a from t", "select a  from t"),
            ("/*NO LOAD BALANCE*/ select 1", "select 1"),
            ("select 1 -- a", "select 1 -- b"),
        ];
        for (a, b) in cases {
            assert!(!same_shape(a, b), "{a:?} / {b:?}");
        }
    }

    #[test]
    fn literal_reading_statements_are_keyed_by_exact_text() {
        for text in [
            "set transaction_read_only = 'off'",
            "SET application_name = 'x'",
            "explain (analyze 'off') insert into t values (1)",
            "prepare p as select 1",
            "copy (select 1) to stdout",
            "pgpool set client_idle_limit = 5",
            "show pool_nodes",
            "select 1; select 2",
            "select 1; insert into t values (1)",
            "select 'unterminated",
            "'lit' select",
            "; select 1",
        ] {
            assert!(Shape::of(text, 7).holes().is_empty(), "{text:?}");
        }
        assert_eq!(Shape::of("select 1;", 7).holes().len(), 1);
        assert_eq!(Shape::of("select 1;;", 7).holes().len(), 1);
    }

    #[test]
    fn leading_words_are_matched_whole_and_in_any_case() {
        for (word, shaped) in [
            ("select", true),
            ("SeLeCt", true),
            ("ROLLBACK", true),
            ("deallocate", true),
            ("selects", false),
            ("sel", false),
            ("set", false),
            ("prepare", false),
            ("explain", false),
            ("copy", false),
            ("show", false),
            ("pgpool", false),
            ("deallocatexyz", false),
            ("", false),
        ] {
            assert_eq!(shaped_word(word.as_bytes()), shaped, "{word}");
        }
    }

    #[test]
    fn too_many_literals_fall_back_to_the_exact_text() {
        let many = (0..MAX_HOLES + 1)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!("select * from t where a in ({many})");
        assert!(Shape::of(&sql, 7).holes().is_empty());
    }
}
