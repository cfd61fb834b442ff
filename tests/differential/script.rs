//! Client message sequences: the messages, their wire encoding, and their text form in
//! Pgpool-II's pgproto script format (`'P' "s1" "SELECT 1" 0`, `'S'`, …), printed for a
//! difference and parsed back for the regression cases.

use crate::common::frontend::{frame, put_cstr};

/// One client message (or, for [`Msg::Cancel`], a query and a CancelRequest while it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Query(String),
    Parse {
        name: String,
        sql: String,
    },
    /// Text-format parameters, text-format results.
    Bind {
        portal: String,
        stmt: String,
        params: Vec<String>,
    },
    Describe {
        kind: char,
        name: String,
    },
    Execute {
        portal: String,
        max_rows: i32,
    },
    Close {
        kind: char,
        name: String,
    },
    Flush,
    Sync,
    CopyData(String),
    CopyDone,
    CopyFail(String),
    /// A simple Query, then CancelRequests until it answers (not in pgproto: `'K'`).
    Cancel(String),
    /// Terminate, then log in again: the next messages go on a new session.
    Terminate,
}

/// A whole sequence as one client sends it on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// Send every round before reading any answer (otherwise: one round, then its answers).
    pub pipelined: bool,
    pub msgs: Vec<Msg>,
}

impl Msg {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = Vec::new();
        let (tag, body) = match self {
            Msg::Query(sql) | Msg::Cancel(sql) => {
                put_cstr(&mut b, sql);
                (b'Q', b)
            }
            Msg::Parse { name, sql } => {
                put_cstr(&mut b, name);
                put_cstr(&mut b, sql);
                b.extend_from_slice(&0i16.to_be_bytes());
                (b'P', b)
            }
            Msg::Bind {
                portal,
                stmt,
                params,
            } => {
                put_cstr(&mut b, portal);
                put_cstr(&mut b, stmt);
                b.extend_from_slice(&0i16.to_be_bytes());
                b.extend_from_slice(&(params.len() as i16).to_be_bytes());
                for p in params {
                    b.extend_from_slice(&(p.len() as i32).to_be_bytes());
                    b.extend_from_slice(p.as_bytes());
                }
                b.extend_from_slice(&0i16.to_be_bytes());
                (b'B', b)
            }
            Msg::Describe { kind, name } | Msg::Close { kind, name } => {
                b.push(*kind as u8);
                put_cstr(&mut b, name);
                (
                    if matches!(self, Msg::Describe { .. }) {
                        b'D'
                    } else {
                        b'C'
                    },
                    b,
                )
            }
            Msg::Execute { portal, max_rows } => {
                put_cstr(&mut b, portal);
                b.extend_from_slice(&max_rows.to_be_bytes());
                (b'E', b)
            }
            Msg::Flush => (b'H', b),
            Msg::Terminate => (b'X', b),
            Msg::Sync => (b'S', b),
            Msg::CopyData(data) => (b'd', data.as_bytes().to_vec()),
            Msg::CopyDone => (b'c', b),
            Msg::CopyFail(why) => {
                put_cstr(&mut b, why);
                (b'f', b)
            }
        };
        out.extend_from_slice(&frame(tag, &body));
    }

    pub fn is_copy(&self) -> bool {
        matches!(self, Msg::CopyData(_) | Msg::CopyDone | Msg::CopyFail(_))
    }

    /// Parse, Bind, Describe, Execute, Close or Flush: waits for a Sync.
    pub fn is_extended(&self) -> bool {
        matches!(
            self,
            Msg::Parse { .. }
                | Msg::Bind { .. }
                | Msg::Describe { .. }
                | Msg::Execute { .. }
                | Msg::Close { .. }
                | Msg::Flush
        )
    }

    /// How many ReadyForQuery messages the server sends for it.
    pub fn ready_count(&self) -> usize {
        usize::from(matches!(self, Msg::Query(_) | Msg::Sync | Msg::Cancel(_)))
    }

    /// One line of pgproto script.
    pub fn pgproto(&self) -> String {
        let q = quote;
        match self {
            Msg::Query(sql) => format!("'Q' {}", q(sql)),
            Msg::Cancel(sql) => format!(
                "'K' {}  # Query, then CancelRequest until it answers",
                q(sql)
            ),
            Msg::Parse { name, sql } => format!("'P' {} {} 0", q(name), q(sql)),
            Msg::Bind {
                portal,
                stmt,
                params,
            } => {
                let mut line = format!("'B' {} {} 0 {}", q(portal), q(stmt), params.len());
                for p in params {
                    line.push_str(&format!(" {} {}", p.len(), q(p)));
                }
                line + " 0"
            }
            Msg::Describe { kind, name } => format!("'D' '{kind}' {}", q(name)),
            Msg::Execute { portal, max_rows } => format!("'E' {} {max_rows}", q(portal)),
            Msg::Close { kind, name } => format!("'C' '{kind}' {}", q(name)),
            Msg::Flush => "'H'".into(),
            Msg::Terminate => "'X'  # and log in again".into(),
            Msg::Sync => "'S'".into(),
            Msg::CopyData(data) => format!("'d' {}", q(data)),
            Msg::CopyDone => "'c'".into(),
            Msg::CopyFail(why) => format!("'f' {}", q(why)),
        }
    }
}

const PIPELINED: &str = "# pipelined: every round is sent before any answer is read";

impl Sequence {
    /// The rounds: each ends where the client waits for a ReadyForQuery (a Sync, a Query
    /// with its COPY data, a cancelled query).
    pub fn rounds(&self) -> Vec<&[Msg]> {
        let msgs = &self.msgs;
        let mut out = Vec::new();
        let mut start = 0;
        for (i, m) in msgs.iter().enumerate() {
            let next_is_copy = msgs.get(i + 1).is_some_and(Msg::is_copy);
            let ends = match m {
                Msg::Sync | Msg::Cancel(_) | Msg::Terminate => true,
                Msg::Query(_) | Msg::CopyData(_) | Msg::CopyDone | Msg::CopyFail(_) => {
                    !next_is_copy
                }
                _ => false,
            };
            if ends {
                out.push(&msgs[start..=i]);
                start = i + 1;
            }
        }
        if start < msgs.len() {
            out.push(&msgs[start..]);
        }
        out
    }

    /// The pgproto script, `'Y'` (wait for ReadyForQuery) after each round.
    pub fn script(&self) -> String {
        let mut s = String::new();
        if self.pipelined {
            s.push_str(PIPELINED);
            s.push('\n');
        }
        for round in self.rounds() {
            for m in round {
                s.push_str(&m.pgproto());
                s.push('\n');
            }
            if !self.pipelined && round.last() != Some(&Msg::Terminate) {
                s.push_str("'Y'\n");
            }
        }
        if self.pipelined {
            s.push_str("'Y'\n");
        }
        s.push_str("'X'\n");
        s
    }

    /// Makes a sequence valid after messages were removed: every extended-protocol run is
    /// closed by a Sync before the next simple Query and at the end, COPY data only follows
    /// a COPY … FROM STDIN Query (which always gets its CopyDone or CopyFail).
    pub fn fixed_up(mut self) -> Sequence {
        let mut out: Vec<Msg> = Vec::new();
        let mut open = false; // extended messages since the last Sync
        let mut in_copy = false; // after COPY … FROM STDIN, before CopyDone/CopyFail
        for m in self.msgs.drain(..) {
            if in_copy && !m.is_copy() {
                out.push(Msg::CopyDone);
                in_copy = false;
            }
            if m.is_copy() && !in_copy {
                continue;
            }
            if m == Msg::Terminate && matches!(out.last(), None | Some(Msg::Terminate)) {
                continue;
            }
            if matches!(m, Msg::Query(_) | Msg::Cancel(_) | Msg::Terminate) && open {
                out.push(Msg::Sync);
                open = false;
            }
            match &m {
                Msg::Query(sql) => in_copy = is_copy_in(sql),
                Msg::CopyDone | Msg::CopyFail(_) => in_copy = false,
                Msg::Sync => open = false,
                m if m.is_extended() => open = true,
                _ => {}
            }
            out.push(m);
        }
        if in_copy {
            out.push(Msg::CopyDone);
        }
        if open {
            out.push(Msg::Sync);
        }
        while out.last() == Some(&Msg::Terminate) {
            out.pop();
        }
        self.msgs = out;
        self
    }

    /// Reads a script printed by [`Sequence::script`].
    pub fn parse(text: &str) -> Sequence {
        let mut seq = Sequence {
            pipelined: text.lines().any(|l| l.trim() == PIPELINED),
            msgs: Vec::new(),
        };
        for line in text.lines() {
            let tokens = tokenize(line);
            let Some(first) = tokens.first() else {
                continue;
            };
            let s = |i: usize| tokens.get(i).cloned().unwrap_or_default();
            let n = |i: usize| s(i).parse::<i32>().unwrap_or(0);
            let ch = |i: usize| s(i).chars().next().unwrap_or('S');
            let m = match first.as_str() {
                "Q" => Msg::Query(s(1)),
                "K" => Msg::Cancel(s(1)),
                "P" => Msg::Parse {
                    name: s(1),
                    sql: s(2),
                },
                "B" => Msg::Bind {
                    portal: s(1),
                    stmt: s(2),
                    params: (0..n(4) as usize).map(|i| s(6 + 2 * i)).collect(),
                },
                "D" => Msg::Describe {
                    kind: ch(1),
                    name: s(2),
                },
                "E" => Msg::Execute {
                    portal: s(1),
                    max_rows: n(2),
                },
                "C" => Msg::Close {
                    kind: ch(1),
                    name: s(2),
                },
                "H" => Msg::Flush,
                "S" => Msg::Sync,
                "d" => Msg::CopyData(s(1)),
                "c" => Msg::CopyDone,
                "f" => Msg::CopyFail(s(1)),
                "X" => Msg::Terminate,
                "Y" => continue,
                other => panic!("unknown pgproto line {other:?}: {line}"),
            };
            seq.msgs.push(m);
        }
        seq.fixed_up()
    }
}

pub fn is_copy_in(sql: &str) -> bool {
    let up = sql.to_ascii_uppercase();
    up.starts_with("COPY ") && up.contains("FROM STDIN")
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Tokens of one script line: 'c' character literals and "…" strings (both unquoted),
/// bare words; `#` starts a comment.
fn tokenize(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            c if c.is_whitespace() => {}
            '\'' => {
                let v: String = chars.by_ref().take_while(|&c| c != '\'').collect();
                out.push(v);
            }
            '"' => {
                let mut v = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('n') => v.push('\n'),
                            Some('t') => v.push('\t'),
                            Some(o) => v.push(o),
                            None => {}
                        },
                        c => v.push(c),
                    }
                }
                out.push(v);
            }
            c => {
                let mut v = String::from(c);
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    v.push(c);
                    chars.next();
                }
                out.push(v);
            }
        }
    }
    out
}
