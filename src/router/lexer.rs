//! A PostgreSQL-aware tokenizer for the fast classification path.
//!
//! It understands exactly what changes where a statement starts and ends: `'…'`, `E'…'`
//! (backslash escapes), `"…"` identifiers, `$tag$…$tag$` bodies, `--` and nested `/* */`
//! comments. It never allocates per token: tokens are byte ranges into the text. Written by
//! hand because sqlparser's tokenizer allocates a `String` per word and costs microseconds,
//! while this scan is what every statement pays before the verdict cache can even be asked.

/// What one token is. Comments and whitespace produce no token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokKind {
    /// Unquoted identifier or keyword (compare with `eq_ignore_ascii_case`).
    Word,
    /// `"quoted identifier"` or `U&"…"`; the range includes the quotes (so that scanning
    /// resumes after the closing one).
    QuotedIdent,
    /// Any string literal (plain, E'', U&'', B'', X'', dollar-quoted).
    Str,
    /// Numeric literal.
    Number,
    /// `$1`-style parameter.
    Param,
    /// A single punctuation byte: `( ) , ; . [ ]`.
    Punct(u8),
    /// `::` cast operator.
    Cast,
    /// Any other operator run (`=`, `<>`, `->>`, …).
    Op,
}

/// One token: kind plus byte range into the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokKind,
    pub start: usize,
    pub end: usize,
}

/// The token stream of one text, and what the scan learned on the way.
#[derive(Debug, Default)]
pub struct Lexed {
    pub tokens: Vec<Token>,
    /// A quote, dollar quote or block comment was still open at the end of the text.
    pub unterminated: bool,
    /// Deepest parenthesis nesting seen (sqlparser refuses deep input; so do we, earlier).
    pub max_depth: usize,
}

impl Lexed {
    /// Number of non-empty statements separated by top-level semicolons.
    #[cfg(test)]
    pub fn statement_count(&self) -> usize {
        let mut count = 0;
        let mut in_stmt = false;
        for t in &self.tokens {
            if t.kind == TokKind::Punct(b';') {
                in_stmt = false;
            } else if !in_stmt {
                in_stmt = true;
                count += 1;
            }
        }
        count
    }
}

/// Byte classes, one table lookup per byte on the hot path.
const IDENT_START: u8 = 1;
const IDENT_CONT: u8 = 2;
const SPACE: u8 = 4;
const OP_CHAR: u8 = 8;

static CLASSES: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let start = c.is_ascii_alphabetic() || c == b'_' || c >= 0x80;
        if start {
            t[b] |= IDENT_START | IDENT_CONT;
        }
        if c.is_ascii_digit() || c == b'$' {
            t[b] |= IDENT_CONT;
        }
        if c.is_ascii_whitespace() || c == 0x0b {
            t[b] |= SPACE;
        }
        if matches!(
            c,
            b'+' | b'-'
                | b'*'
                | b'/'
                | b'<'
                | b'>'
                | b'='
                | b'~'
                | b'!'
                | b'@'
                | b'#'
                | b'%'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
                | b':'
        ) {
            t[b] |= OP_CHAR;
        }
        b += 1;
    }
    t
}

fn is_ident_start(b: u8) -> bool {
    CLASSES[b as usize] & IDENT_START != 0
}

pub(crate) fn is_ident_cont(b: u8) -> bool {
    CLASSES[b as usize] & IDENT_CONT != 0
}

fn is_space(b: u8) -> bool {
    CLASSES[b as usize] & SPACE != 0
}

fn is_op_char(b: u8) -> bool {
    CLASSES[b as usize] & OP_CHAR != 0
}

/// Skip a `/* … */` comment starting at `i` (which points at `/*`); nested like PostgreSQL.
/// Returns the index after the comment, or `None` when it never closes.
pub fn skip_block_comment(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Index after a quoted run opened at `i` (pointing at the quote `q`); doubled quotes escape,
/// and with `backslash` (E'' strings) so does `\`.
pub(crate) fn skip_quoted(b: &[u8], i: usize, q: u8, backslash: bool) -> Option<usize> {
    let mut j = i + 1;
    loop {
        // Jump to the next byte that can end or escape (a tight loop: bodies can be long).
        j += b
            .get(j..)?
            .iter()
            .position(|&c| c == q || (backslash && c == b'\\'))?;
        if b[j] != q {
            j += 2; // backslash escape
        } else if b.get(j + 1) == Some(&q) {
            j += 2;
        } else {
            return Some(j + 1);
        }
    }
}

/// If a dollar-quote opener `$tag$` starts at `i`, return the tag's end (index after `$tag$`).
pub(crate) fn dollar_tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if j < b.len() && b[j] == b'$' {
        return Some(j + 1);
    }
    if j >= b.len() || !(is_ident_start(b[j])) {
        return None;
    }
    while j < b.len() && (is_ident_start(b[j]) || b[j].is_ascii_digit()) {
        j += 1;
    }
    (j < b.len() && b[j] == b'$').then_some(j + 1)
}

/// Index after the dollar-quoted body whose opener `b[i..open_end]` is the tag.
pub(crate) fn skip_dollar_body(b: &[u8], i: usize, open_end: usize) -> Option<usize> {
    let tag = &b[i..open_end];
    let mut j = open_end;
    while j + tag.len() <= b.len() {
        if b[j] == b'$' && &b[j..j + tag.len()] == tag {
            return Some(j + tag.len());
        }
        j += 1;
    }
    None
}

/// Tokenize `text`. Never panics; an unterminated construct ends the scan with
/// `unterminated = true`.
pub fn lex(text: &str) -> Lexed {
    let b = text.as_bytes();
    let mut out = Lexed {
        tokens: Vec::with_capacity(b.len() / 4 + 4),
        ..Lexed::default()
    };
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match lex_one(b, i) {
            Step::Skip(next) => i = next,
            Step::Tok(kind, start, end) => {
                match kind {
                    TokKind::Punct(b'(') => {
                        depth += 1;
                        out.max_depth = out.max_depth.max(depth);
                    }
                    TokKind::Punct(b')') => depth = depth.saturating_sub(1),
                    _ => {}
                }
                out.tokens.push(Token { kind, start, end });
                i = end.max(i + 1);
            }
            Step::Unterminated => {
                out.unterminated = true;
                break;
            }
        }
    }
    out
}

/// What [`lex_one`] found at one position.
pub(crate) enum Step {
    Skip(usize),
    Tok(TokKind, usize, usize),
    Unterminated,
}

/// Scan one token (or one skipped run) starting at `i` (`i < b.len()`). Dispatches on the
/// first byte: this runs for every token of every statement, cached or not.
#[inline(always)]
pub(crate) fn lex_one(b: &[u8], i: usize) -> Step {
    let c = b[i];
    let next = b.get(i + 1).copied();
    match c {
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
            let run = b[i..].iter().position(|&x| !is_space(x));
            Step::Skip(run.map_or(b.len(), |p| i + p))
        }
        b'a'..=b'z' | b'A'..=b'Z' | b'_' | 0x80..=0xff => word_or_prefixed(b, i, c, next),
        b'0'..=b'9' => Step::Tok(TokKind::Number, i, number_end(b, i)),
        b'\'' => string_tok(skip_quoted(b, i, b'\'', false), i),
        b'"' => match skip_quoted(b, i, b'"', false) {
            Some(e) => Step::Tok(TokKind::QuotedIdent, i, e),
            None => Step::Unterminated,
        },
        b'$' => dollar(b, i, next),
        b'-' if next == Some(b'-') => {
            let end = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
            Step::Skip(end)
        }
        b'/' if next == Some(b'*') => {
            skip_block_comment(b, i).map_or(Step::Unterminated, Step::Skip)
        }
        b'.' if next.is_some_and(|d| d.is_ascii_digit()) => {
            Step::Tok(TokKind::Number, i, number_end(b, i))
        }
        b':' if next == Some(b':') => Step::Tok(TokKind::Cast, i, i + 2),
        b'(' | b')' | b',' | b';' | b'.' | b'[' | b']' => Step::Tok(TokKind::Punct(c), i, i + 1),
        _ if is_op_char(c) => {
            let mut end = i + 1;
            while end < b.len() && is_op_char(b[end]) {
                // `--` or `/*` inside an operator run starts a comment.
                if (b[end] == b'-' && b.get(end + 1) == Some(&b'-'))
                    || (b[end] == b'/' && b.get(end + 1) == Some(&b'*'))
                {
                    break;
                }
                end += 1;
            }
            Step::Tok(TokKind::Op, i, end)
        }
        _ => Step::Tok(TokKind::Op, i, i + 1),
    }
}

/// A word, or a string with a letter prefix: `E'…'`, `B'…'`, `X'…'`, `N'…'`, `U&'…'`,
/// `U&"…"`.
fn word_or_prefixed(b: &[u8], i: usize, c: u8, next: Option<u8>) -> Step {
    match (c, next) {
        (b'e' | b'E', Some(b'\'')) => return string_tok(skip_quoted(b, i + 1, b'\'', true), i),
        (b'b' | b'B' | b'x' | b'X' | b'n' | b'N', Some(b'\'')) => {
            return string_tok(skip_quoted(b, i + 1, b'\'', false), i)
        }
        (b'u' | b'U', Some(b'&')) => match b.get(i + 2) {
            Some(b'\'') => return string_tok(skip_quoted(b, i + 2, b'\'', false), i),
            Some(b'"') => {
                return match skip_quoted(b, i + 2, b'"', false) {
                    Some(e) => Step::Tok(TokKind::QuotedIdent, i, e),
                    None => Step::Unterminated,
                }
            }
            _ => {}
        },
        _ => {}
    }
    let end = b[i..]
        .iter()
        .position(|&x| !is_ident_cont(x))
        .map_or(b.len(), |p| i + p);
    Step::Tok(TokKind::Word, i, end)
}

/// `$1` parameter, `$tag$…$tag$` body, or a lone `$` operator.
fn dollar(b: &[u8], i: usize, next: Option<u8>) -> Step {
    if next.is_some_and(|d| d.is_ascii_digit()) {
        let end = b[i + 1..]
            .iter()
            .position(|x| !x.is_ascii_digit())
            .map_or(b.len(), |p| i + 1 + p);
        return Step::Tok(TokKind::Param, i, end);
    }
    if let Some(open_end) = dollar_tag_end(b, i) {
        return string_tok(skip_dollar_body(b, i, open_end), i);
    }
    Step::Tok(TokKind::Op, i, i + 1)
}

/// End of the numeric literal at `i`, as PostgreSQL's lexer sees it: `0x`/`0o`/`0b` integers,
/// or digits with an optional fraction and exponent (`_` separators allowed). Letters right
/// after a number are *not* part of it: PostgreSQL before 15 reads `0into` as `0 into`, so
/// swallowing them would hide a keyword such as `INTO` from the classifier.
pub(crate) fn number_end(b: &[u8], i: usize) -> usize {
    let digits = |from: usize, ok: fn(u8) -> bool| {
        b[from..]
            .iter()
            .position(|&x| !(ok(x) || x == b'_'))
            .map_or(b.len(), |p| from + p)
    };
    if b.get(i) == Some(&b'0') {
        let radix: Option<fn(u8) -> bool> = match b.get(i + 1) {
            Some(b'x' | b'X') => Some(|x| x.is_ascii_hexdigit()),
            Some(b'o' | b'O') => Some(|x| (b'0'..=b'7').contains(&x)),
            Some(b'b' | b'B') => Some(|x| x == b'0' || x == b'1'),
            _ => None,
        };
        if let Some(ok) = radix.filter(|ok| b.get(i + 2).is_some_and(|&x| ok(x))) {
            return digits(i + 2, ok);
        }
    }
    let mut end = digits(i, |x| x.is_ascii_digit());
    if b.get(end) == Some(&b'.') && b.get(end + 1) != Some(&b'.') {
        end = digits(end + 1, |x| x.is_ascii_digit());
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(end + 1), Some(b'+' | b'-')));
        if b.get(end + 1 + sign).is_some_and(|x| x.is_ascii_digit()) {
            end = digits(end + 1 + sign, |x| x.is_ascii_digit());
        }
    }
    end
}

fn string_tok(end: Option<usize>, start: usize) -> Step {
    match end {
        Some(e) => Step::Tok(TokKind::Str, start, e),
        None => Step::Unterminated,
    }
}

/// Pgpool-II's first-character rule (spec 5.3 step 2): a balanceable text starts with
/// `s S w W t T (`, or is empty / `;`. Leading whitespace is skipped only when
/// `ignore_leading_white_space` is on. A leading comment fails the test, which is what makes
/// `/*NO LOAD BALANCE*/` work.
pub fn passes_first_char_rule(text: &str, ignore_leading_white_space: bool) -> bool {
    let t = if ignore_leading_white_space {
        text.trim_start_matches(|c: char| c.is_ascii_whitespace())
    } else {
        text
    };
    match t.as_bytes().first() {
        None => true,
        Some(c) => matches!(c, b's' | b'S' | b'w' | b'W' | b't' | b'T' | b'(' | b';'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        lex(text)
            .tokens
            .iter()
            .map(|t| text[t.start..t.end].to_string())
            .collect()
    }

    #[test]
    fn quotes_comments_and_dollar_bodies_hide_their_contents() {
        let cases: &[(&str, &[&str])] = &[
            ("select 'a;b'", &["select", "'a;b'"]),
            ("select 'it''s'", &["select", "'it''s'"]),
            (r"select E'a\'b;'", &["select", r"E'a\'b;'"]),
            ("select $$ ; $$", &["select", "$$ ; $$"]),
            ("select $x$ $$ ; $x$", &["select", "$x$ $$ ; $x$"]),
            ("select /* a /* b */ ; */ 1", &["select", "1"]),
            ("select -- ;\n 1", &["select", "1"]),
            ("select \"a;\"\"b\"", &["select", "\"a;\"\"b\""]),
            // The closing quote of an identifier does not open another one.
            (
                "select \"a\" from \"T\" \"t\"",
                &["select", "\"a\"", "from", "\"T\"", "\"t\""],
            ),
            ("select \"a\".\"b\"", &["select", "\"a\"", ".", "\"b\""]),
            ("select U&\"a\" x", &["select", "U&\"a\"", "x"]),
            ("select $1::int", &["select", "$1", "::", "int"]),
            ("select a$b", &["select", "a$b"]),
            ("select 1.5e3", &["select", "1.5e3"]),
            // Found by the classifier fuzz target: letters after a number start a new token.
            ("select #0into t1", &["select", "#", "0", "into", "t1"]),
            ("select 1e5from t", &["select", "1e5", "from", "t"]),
            ("select 0x1Fin", &["select", "0x1F", "in"]),
            ("select 0b2", &["select", "0", "b2"]),
            ("select 1_000.5_0", &["select", "1_000.5_0"]),
            ("select 1..2", &["select", "1", ".", ".2"]),
        ];
        for (text, want) in cases {
            assert_eq!(words(text), *want, "{text}");
        }
    }

    #[test]
    fn unterminated_constructs_are_flagged() {
        for text in [
            "select 'abc",
            "select $$ abc",
            "select /* abc",
            "select \"abc",
            "e'\\'",
            "select \"a\" \"b",
        ] {
            assert!(lex(text).unterminated, "{text}");
        }
        for text in ["select \"a\"", "select \"a\" from \"b\"", "select U&\"a\""] {
            assert!(!lex(text).unterminated, "{text}");
        }
        assert!(!lex("select 'a' -- unterminated line comment is fine").unterminated);
    }

    #[test]
    fn statement_count_ignores_empty_statements_and_quoted_semicolons() {
        let cases = [
            ("", 0),
            (";;", 0),
            ("select 1", 1),
            ("select 1;", 1),
            ("select ';'; ", 1),
            ("select 1; select 2", 2),
            ("begin; insert into t values (1); commit;", 3),
        ];
        for (text, want) in cases {
            assert_eq!(lex(text).statement_count(), want, "{text}");
        }
    }

    #[test]
    fn first_char_rule_matches_pgpool() {
        let cases = [
            ("SELECT 1", true, true),
            ("  select 1", true, true),
            ("  select 1", false, false),
            ("/*NO LOAD BALANCE*/ SELECT 1", true, false),
            ("-- c\nSELECT 1", true, false),
            ("VALUES (1)", true, false),
            ("(select 1)", true, true),
            ("", true, true),
            (";", true, true),
        ];
        for (text, ignore_ws, want) in cases {
            assert_eq!(passes_first_char_rule(text, ignore_ws), want, "{text}");
        }
    }

    #[test]
    fn byte_classes_match_their_definitions() {
        for b in 0..=255u8 {
            let start = b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
            assert_eq!(is_ident_start(b), start, "{b}");
            assert_eq!(is_ident_cont(b), start || b.is_ascii_digit() || b == b'$');
            assert_eq!(is_space(b), b.is_ascii_whitespace() || b == 0x0b, "{b}");
            assert_eq!(is_op_char(b), b"+-*/<>=~!@#%^&|`?:".contains(&b), "{b}");
        }
    }

    #[test]
    fn depth_is_measured_without_recursion() {
        let deep = "(".repeat(10_000);
        assert_eq!(lex(&deep).max_depth, 10_000);
    }
}
