//! The dispatching `lex_one` against the plain cascade of tests it replaced, on every short
//! text over the bytes that matter to the lexer: they must tokenize alike.

use super::lexer::{
    dollar_tag_end, lex_one, number_end, skip_block_comment, skip_dollar_body, skip_quoted, Step,
    TokKind,
};

/// The cascade as it was (with the quoted-identifier range fixed; it skipped blanks one at a
/// time, so skips are not compared).
fn reference_lex_one(b: &[u8], i: usize) -> Step {
    let c = b[i];
    let next = b.get(i + 1).copied();
    if c.is_ascii_whitespace() || c == 0x0b {
        return Step::Skip(i + 1);
    }
    if c == b'-' && next == Some(b'-') {
        let end = b[i..]
            .iter()
            .position(|&x| x == b'\n')
            .map_or(b.len(), |p| i + p);
        return Step::Skip(end);
    }
    if c == b'/' && next == Some(b'*') {
        return skip_block_comment(b, i).map_or(Step::Unterminated, Step::Skip);
    }
    if c == b'\'' {
        return string_tok(skip_quoted(b, i, b'\'', false), i);
    }
    if (c == b'e' || c == b'E') && next == Some(b'\'') {
        return string_tok(skip_quoted(b, i + 1, b'\'', true), i);
    }
    if matches!(c, b'b' | b'B' | b'x' | b'X' | b'n' | b'N') && next == Some(b'\'') {
        return string_tok(skip_quoted(b, i + 1, b'\'', false), i);
    }
    if (c == b'u' || c == b'U') && next == Some(b'&') {
        match b.get(i + 2) {
            Some(b'\'') => return string_tok(skip_quoted(b, i + 2, b'\'', false), i),
            Some(b'"') => {
                return match skip_quoted(b, i + 2, b'"', false) {
                    Some(e) => Step::Tok(TokKind::QuotedIdent, i, e),
                    None => Step::Unterminated,
                }
            }
            _ => {}
        }
    }
    if c == b'"' {
        return match skip_quoted(b, i, b'"', false) {
            Some(e) => Step::Tok(TokKind::QuotedIdent, i, e),
            None => Step::Unterminated,
        };
    }
    if c == b'$' {
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
        return Step::Tok(TokKind::Op, i, i + 1);
    }
    if is_ident_start(c) {
        let end = b[i..]
            .iter()
            .position(|&x| !is_ident_cont(x))
            .map_or(b.len(), |p| i + p);
        return Step::Tok(TokKind::Word, i, end);
    }
    if c.is_ascii_digit() || (c == b'.' && next.is_some_and(|d| d.is_ascii_digit())) {
        return Step::Tok(TokKind::Number, i, number_end(b, i));
    }
    if c == b':' && next == Some(b':') {
        return Step::Tok(TokKind::Cast, i, i + 2);
    }
    if matches!(c, b'(' | b')' | b',' | b';' | b'.' | b'[' | b']') {
        return Step::Tok(TokKind::Punct(c), i, i + 1);
    }
    if is_op_char(c) {
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
        return Step::Tok(TokKind::Op, i, end);
    }
    Step::Tok(TokKind::Op, i, i + 1)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn is_op_char(b: u8) -> bool {
    b"+-*/<>=~!@#%^&|`?:".contains(&b)
}

fn string_tok(end: Option<usize>, start: usize) -> Step {
    match end {
        Some(e) => Step::Tok(TokKind::Str, start, e),
        None => Step::Unterminated,
    }
}

fn tokens(text: &[u8], one: fn(&[u8], usize) -> Step) -> Vec<(TokKind, usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match one(text, i) {
            Step::Skip(next) => i = next,
            Step::Tok(kind, start, end) => {
                out.push((kind, start, end));
                i = end.max(i + 1);
            }
            Step::Unterminated => {
                out.push((TokKind::Op, usize::MAX, usize::MAX));
                break;
            }
        }
    }
    out
}

#[test]
fn dispatching_lexer_matches_the_cascade() {
    let alphabet = b" \t\n\x0b-/*'\"$eEbBxXnNuU&a_0159.:;(),[]+<=#\\\xc3";
    let mut text = Vec::new();
    let mut count = 0usize;
    for len in 1..=4u32 {
        let n = alphabet.len().pow(len);
        for mut k in 0..n {
            text.clear();
            for _ in 0..len {
                text.push(alphabet[k % alphabet.len()]);
                k /= alphabet.len();
            }
            assert_eq!(
                tokens(&text, lex_one),
                tokens(&text, reference_lex_one),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
            count += 1;
        }
    }
    assert!(count > 1_000_000);
}
