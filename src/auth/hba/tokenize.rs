//! The pg_hba.conf tokenizer Pgpool-II copied from PostgreSQL 10: fields separated by
//! blanks, comma lists inside a field, double quotes that protect blanks/commas and strip
//! keyword meaning, `#` comments, and `@file` includes that splice in every token of the
//! named file.

use std::path::Path;

/// Includes may nest, but a file including itself must not loop forever.
const MAX_INCLUDE_DEPTH: usize = 10;

/// One token; `quoted` tokens are never keywords (`"all"` is a database named all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaToken {
    pub text: String,
    pub quoted: bool,
}

impl HbaToken {
    /// True when this is the unquoted keyword `kw`.
    pub fn is_keyword(&self, kw: &str) -> bool {
        !self.quoted && self.text == kw
    }
}

/// A non-empty line: its number and its fields, each a non-empty list of tokens.
#[derive(Debug)]
pub(super) struct TokLine {
    pub line_no: usize,
    pub fields: Vec<Vec<HbaToken>>,
}

/// A tokenizer failure: line number in the top file and the message.
pub(super) type TokError = (usize, String);

/// Tokenizes a whole file; `dir` resolves relative `@file` names.
pub(super) fn tokenize(text: &str, dir: &Path, depth: usize) -> Result<Vec<TokLine>, TokError> {
    let mut lines = Vec::new();
    for (idx, line) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let fields = line_fields(line, dir, depth).map_err(|m| (line_no, m))?;
        if !fields.is_empty() {
            lines.push(TokLine { line_no, fields });
        }
    }
    Ok(lines)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

fn line_fields(line: &str, dir: &Path, depth: usize) -> Result<Vec<Vec<HbaToken>>, String> {
    let mut rest = line;
    let mut fields = Vec::new();
    loop {
        let mut field = Vec::new();
        loop {
            let (token, comma, after) = next_token(rest)?;
            rest = after;
            if let Some(t) = token {
                match t
                    .text
                    .strip_prefix('@')
                    .filter(|n| !t.quoted && !n.is_empty())
                {
                    Some(name) => field.extend(include_file(name, dir, depth)?),
                    None => field.push(t),
                }
            }
            if !comma {
                break;
            }
        }
        if !field.is_empty() {
            fields.push(field);
        }
        if rest.trim_start_matches(is_blank).is_empty() {
            return Ok(fields);
        }
    }
}

/// Reads one token. Returns it (`None` for an empty unquoted token), whether a comma ended
/// it (the field continues), and the rest of the line (empty after a comment).
fn next_token(s: &str) -> Result<(Option<HbaToken>, bool, &str), String> {
    let s = s.trim_start_matches(is_blank);
    let mut text = String::new();
    let (mut in_quote, mut quoted) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => {
                in_quote = !in_quote;
                quoted = true;
            }
            '#' if !in_quote => return finish(text, quoted, false, ""),
            ',' if !in_quote => return finish(text, quoted, true, &s[i + 1..]),
            c if is_blank(c) && !in_quote => return finish(text, quoted, false, &s[i..]),
            c => text.push(c),
        }
    }
    if in_quote {
        return Err("unterminated quoted string".to_string());
    }
    finish(text, quoted, false, "")
}

fn finish(
    text: String,
    quoted: bool,
    comma: bool,
    rest: &str,
) -> Result<(Option<HbaToken>, bool, &str), String> {
    let token = (quoted || !text.is_empty()).then_some(HbaToken { text, quoted });
    Ok((token, comma, rest))
}

/// Every token of every line of `name` (relative to `dir`), includes expanded in turn.
fn include_file(name: &str, dir: &Path, depth: usize) -> Result<Vec<HbaToken>, String> {
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(format!(
            "could not open secondary authentication file \"@{name}\": nesting too deep"
        ));
    }
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "could not open secondary authentication file \"@{name}\" as \"{}\": {e}",
            path.display()
        )
    })?;
    let inner_dir = path.parent().unwrap_or(dir);
    let lines = tokenize(&text, inner_dir, depth + 1)
        .map_err(|(line, m)| format!("in \"@{name}\" line {line}: {m}"))?;
    Ok(lines
        .into_iter()
        .flat_map(|l| l.fields.into_iter().flatten())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> Vec<Vec<(String, bool)>> {
        let lines = tokenize(line, Path::new("."), 0).expect("tokenize");
        lines
            .into_iter()
            .flat_map(|l| l.fields)
            .map(|f| f.into_iter().map(|t| (t.text, t.quoted)).collect())
            .collect()
    }

    #[test]
    fn tokenizer_table() {
        let t = |s: &str| (s.to_string(), false);
        let q = |s: &str| (s.to_string(), true);
        type Fields = Vec<Vec<(String, bool)>>;
        let cases: Vec<(&str, Fields)> = vec![
            ("", vec![]),
            ("   # only a comment", vec![]),
            (
                "host all all",
                vec![vec![t("host")], vec![t("all")], vec![t("all")]],
            ),
            (
                "host\ta,b ,c",
                vec![vec![t("host")], vec![t("a"), t("b")], vec![t("c")]],
            ),
            (
                "local a, b trust",
                vec![vec![t("local")], vec![t("a"), t("b")], vec![t("trust")]],
            ),
            (
                "x \"all\" \"a b,c\"",
                vec![vec![t("x")], vec![q("all")], vec![q("a b,c")]],
            ),
            ("x \"\" y", vec![vec![t("x")], vec![q("")], vec![t("y")]]),
            ("x y#comment", vec![vec![t("x")], vec![t("y")]]),
            ("x \"y#z\"", vec![vec![t("x")], vec![q("y#z")]]),
            ("x y\r", vec![vec![t("x")], vec![t("y")]]),
        ];
        for (line, want) in cases {
            assert_eq!(fields(line), want, "{line:?}");
        }
    }

    #[test]
    fn unterminated_quote_is_an_error_with_line_number() {
        let err = tokenize("# c\nhost \"all", Path::new("."), 0).expect_err("error");
        assert_eq!(err.0, 2);
    }
}
