//! Tokenizer for `pgpool.conf`, mirroring the token classes of Pgpool-II's flex lexer
//! (`pool_config.l`) so that files Pgpool-II accepts are read the same way here.
//!
//! Written by hand because the format is a dozen lines of flex rules with quirks (no escape
//! processing, newline as a token, a stray byte as a valid value) that no config crate shares.

/// The token classes of Pgpool-II's lexer. Only the distinction KEY / EQUALS / EOL / STRING
/// / anything-else matters to the parser; the rest is kept for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    Key,
    UnquotedString,
    Integer,
    Real,
    /// A quoted string; its text is the content without the quotes.
    Str,
    Equals,
    Eol,
    /// Any other single byte (`*`, `|`, a lone `'`): Pgpool-II accepts it as a value.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub text: String,
    /// 1-based line on which the token starts.
    pub line: usize,
}

/// Splits configuration text into tokens; comments and blanks are dropped, newlines kept.
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    while pos < bytes.len() {
        let b = bytes[pos];
        match b {
            b' ' | b'\t' | b'\r' => pos += 1,
            b'\n' => {
                tokens.push(token(TokenKind::Eol, "\n", line));
                line += 1;
                pos += 1;
            }
            b'#' => {
                while pos < bytes.len() && bytes[pos] != b'\n' {
                    pos += 1;
                }
            }
            _ => {
                let (kind, len) = longest_match(&bytes[pos..]);
                let raw = &bytes[pos..pos + len];
                let text = match kind {
                    TokenKind::Str => &raw[1..raw.len() - 1],
                    _ => raw,
                };
                tokens.push(token(kind, &String::from_utf8_lossy(text), line));
                pos += len;
            }
        }
    }
    tokens
}

fn token(kind: TokenKind, text: &str, line: usize) -> Token {
    Token {
        kind,
        text: text.to_string(),
        line,
    }
}

/// Picks the longest of the candidate token classes, as flex does; on a tie the earlier
/// rule wins (KEY before UNQUOTED_STRING, INTEGER before REAL).
fn longest_match(s: &[u8]) -> (TokenKind, usize) {
    let candidates = [
        (TokenKind::Key, key_len(s)),
        (TokenKind::UnquotedString, unquoted_len(s)),
        (TokenKind::Integer, integer_len(s)),
        (TokenKind::Real, real_len(s)),
        (TokenKind::Str, string_len(s)),
        (TokenKind::Equals, usize::from(s.first() == Some(&b'='))),
    ];
    let mut best = (TokenKind::Other, 1);
    let mut best_len = 0;
    for (kind, len) in candidates {
        if len > best_len {
            best = (kind, len);
            best_len = len;
        }
    }
    best
}

fn is_key_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_key_char(b: u8) -> bool {
    is_key_start(b) || b.is_ascii_digit()
}

fn key_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&b) if is_key_start(b) => 1 + s[1..].iter().take_while(|&&b| is_key_char(b)).count(),
        _ => 0,
    }
}

fn unquoted_len(s: &[u8]) -> usize {
    let extra = |b: u8| is_key_char(b) || matches!(b, b'-' | b'.' | b':' | b'/');
    match s.first() {
        Some(&b) if is_key_start(b) => 1 + s[1..].iter().take_while(|&&b| extra(b)).count(),
        _ => 0,
    }
}

fn sign_len(s: &[u8]) -> usize {
    usize::from(matches!(s.first(), Some(b'-' | b'+')))
}

/// `[-+]?(digits | 0x hexdigits)[A-Za-z]*`: a unit suffix is part of the number token.
fn integer_len(s: &[u8]) -> usize {
    let mut i = sign_len(s);
    let rest = &s[i..];
    let digits = if rest.len() > 2 && rest[0] == b'0' && matches!(rest[1], b'x' | b'X') {
        let hex = rest[2..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if hex == 0 {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        } else {
            2 + hex
        }
    } else {
        rest.iter().take_while(|b| b.is_ascii_digit()).count()
    };
    if digits == 0 {
        return 0;
    }
    i += digits;
    i + s[i..]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count()
}

/// `[-+]?digits.digits([eE][-+]?digits)?`
fn real_len(s: &[u8]) -> usize {
    let digits = |from: usize| s[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut i = sign_len(s);
    let int = digits(i);
    if int == 0 || s.get(i + int) != Some(&b'.') {
        return 0;
    }
    i += int + 1;
    let frac = digits(i);
    if frac == 0 {
        return 0;
    }
    i += frac;
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(s.get(i + 1), Some(b'-' | b'+')));
        let exp = digits(i + 1 + sign);
        if exp > 0 {
            i += 1 + sign + exp;
        }
    }
    i
}

/// `'…'` where a backslash protects the next character (so `\'` does not end the string)
/// and a newline is not allowed. Returns 0 for an unterminated string.
fn string_len(s: &[u8]) -> usize {
    if s.first() != Some(&b'\'') {
        return 0;
    }
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\'' => return i + 1,
            b'\n' => return 0,
            b'\\' if i + 1 < s.len() && s[i + 1] != b'\n' => i += 2,
            _ => i += 1,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::TokenKind::*;
    use super::*;

    fn kinds(text: &str) -> Vec<(TokenKind, String)> {
        tokenize(text)
            .into_iter()
            .map(|t| (t.kind, t.text))
            .collect()
    }

    #[test]
    fn token_classes_follow_the_flex_rules() {
        let cases: &[(&str, &[(TokenKind, &str)])] = &[
            ("port 9999", &[(Key, "port"), (Integer, "9999")]),
            ("a=1", &[(Key, "a"), (Equals, "="), (Integer, "1")]),
            ("t = 30s", &[(Key, "t"), (Equals, "="), (Integer, "30s")]),
            ("x = 0x1F", &[(Key, "x"), (Equals, "="), (Integer, "0x1F")]),
            ("x = -2.5e3", &[(Key, "x"), (Equals, "="), (Real, "-2.5e3")]),
            (
                "h = my-host.svc",
                &[(Key, "h"), (Equals, "="), (UnquotedString, "my-host.svc")],
            ),
            (
                "s = 'it\\'s'",
                &[(Key, "s"), (Equals, "="), (Str, "it\\'s")],
            ),
            ("l = *", &[(Key, "l"), (Equals, "="), (Other, "*")]),
            ("k = v # note", &[(Key, "k"), (Equals, "="), (Key, "v")]),
            (
                "s = '# not a comment'",
                &[(Key, "s"), (Equals, "="), (Str, "# not a comment")],
            ),
            (
                "s = 'open\n",
                &[
                    (Key, "s"),
                    (Equals, "="),
                    (Other, "'"),
                    (Key, "open"),
                    (Eol, "\n"),
                ],
            ),
        ];
        for (input, expected) in cases {
            let expected: Vec<(TokenKind, String)> =
                expected.iter().map(|(k, t)| (*k, t.to_string())).collect();
            assert_eq!(kinds(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn lines_are_counted_across_comments_and_blank_lines() {
        let tokens = tokenize("# c\n\na = 1\n  b = 'x'\n");
        let b = tokens.iter().find(|t| t.text == "b").map(|t| t.line);
        assert_eq!(b, Some(4));
    }
}
