//! A cursor over one statement's tokens, shared by the lexical tiers.

use super::lexer::{TokKind, Token};

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

impl<'a> Cur<'a> {
    /// The whole statement's text (first token to last).
    pub fn text_of_all(&self) -> &'a str {
        match (self.toks.first(), self.toks.last()) {
            (Some(a), Some(z)) => self.text.get(a.start..z.end).unwrap_or(""),
            _ => "",
        }
    }
}

/// `"a""b"` or `U&"a"` → `a"b` / `a` (Unicode escapes are left as written).
pub(crate) fn unquote_ident(quoted: &str) -> String {
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
