//! Runs a [`Sequence`] on one connection and returns the backend's answers as normalized
//! lines: what legitimately differs between a direct server connection and one through the
//! proxy (process ids, secret keys, ParameterStatus, table OIDs of two databases, the
//! server's source file/line/routine in errors) is dropped, everything else is kept.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::frontend::{error_fields, send_cancel, BackendMsg, ReadEnd, Wire};
use crate::script::{Msg, Sequence};

/// How long one round may take before the run counts as hung (a difference of its own).
const ROUND_BOUND: Duration = Duration::from_secs(5);
/// A cancelled query sleeps for 10 s; its answer must come well before that.
const CANCEL_BOUND: Duration = Duration::from_secs(8);

/// Runs `seq` as `postgres` on database `db` at 127.0.0.1:`port`.
pub async fn run(port: u16, db: &str, seq: &Sequence) -> Vec<String> {
    let mut out = Vec::new();
    let mut wire = match Wire::login(port, "postgres", db, ROUND_BOUND).await {
        Ok(w) => w,
        Err(e) => return vec![format!("!! {e}")],
    };
    let mut oids = HashMap::new();
    for chunk in chunks(seq) {
        let ok = if let [Msg::Cancel(sql)] = chunk.as_slice() {
            run_cancel(&mut wire, port, sql, &mut oids, &mut out).await
        } else if let [Msg::Terminate] = chunk.as_slice() {
            wire.terminate().await;
            // Give the proxy time to put the old session's backend connections back in its
            // cache, so the new session really may get one of them.
            tokio::time::sleep(Duration::from_millis(100)).await;
            out.push("-- new session".into());
            match Wire::login(port, "postgres", db, ROUND_BOUND).await {
                Ok(w) => {
                    wire = w;
                    continue;
                }
                Err(e) => {
                    out.push(format!("!! {e}"));
                    return out;
                }
            }
        } else {
            let mut bytes = Vec::new();
            chunk.iter().for_each(|m| m.encode(&mut bytes));
            let want = chunk.iter().map(Msg::ready_count).sum();
            match wire.send(&bytes).await {
                Ok(()) => read_ready(&mut wire, want, ROUND_BOUND, &mut oids, &mut out).await,
                Err(e) => {
                    out.push(format!("!! {e}"));
                    false
                }
            }
        };
        if !ok {
            return out;
        }
    }
    wire.terminate().await;
    out
}

/// What is sent in one write: one round, or (pipelined) all rounds between cancels.
fn chunks(seq: &Sequence) -> Vec<Vec<Msg>> {
    let mut out: Vec<Vec<Msg>> = Vec::new();
    for round in seq.rounds() {
        let alone = |r: &[Msg]| matches!(r, [Msg::Cancel(_)] | [Msg::Terminate]);
        let join = seq.pipelined && !alone(round) && out.last().is_some_and(|last| !alone(last));
        match out.last_mut() {
            Some(last) if join => last.extend_from_slice(round),
            _ => out.push(round.to_vec()),
        }
    }
    out
}

/// Reads until `want` ReadyForQuery messages arrived; false (with a `!!` line) on a hang or
/// a closed connection.
async fn read_ready(
    wire: &mut Wire,
    want: usize,
    bound: Duration,
    oids: &mut HashMap<i32, usize>,
    out: &mut Vec<String>,
) -> bool {
    let deadline = Instant::now() + bound;
    let mut got = 0;
    while got < want {
        match wire.next(deadline).await {
            Ok(m) => {
                got += usize::from(m.tag == b'Z');
                out.extend(normalize(&m, oids));
            }
            Err(ReadEnd::Timeout) => {
                out.push(format!(
                    "!! hang: {got} of {want} ReadyForQuery within {bound:?}"
                ));
                return false;
            }
            Err(ReadEnd::Closed) => {
                out.push(format!(
                    "!! connection closed after {got} of {want} ReadyForQuery"
                ));
                return false;
            }
        }
    }
    true
}

/// Sends `sql` (a long sleep), then a CancelRequest every 150 ms until the answer starts.
/// Only the answer is compared (57014 then ReadyForQuery), not when it came.
async fn run_cancel(
    wire: &mut Wire,
    port: u16,
    sql: &str,
    oids: &mut HashMap<i32, usize>,
    out: &mut Vec<String>,
) -> bool {
    let mut bytes = Vec::new();
    Msg::Query(sql.into()).encode(&mut bytes);
    if let Err(e) = wire.send(&bytes).await {
        out.push(format!("!! {e}"));
        return false;
    }
    let Some(key) = wire.key else {
        out.push("!! no BackendKeyData to cancel with".into());
        return false;
    };
    for _ in 0..20 {
        if wire.has_input(Duration::from_millis(150)).await {
            break;
        }
        if let Err(e) = send_cancel(port, key).await {
            out.push(format!("!! {e}"));
            return false;
        }
    }
    read_ready(wire, 1, CANCEL_BOUND, oids, out).await
}

/// One backend message as a comparable line, or `None` for what legitimately differs.
/// Table OIDs (two databases, temporary tables) become the order of first appearance.
pub fn normalize(m: &BackendMsg, oids: &mut HashMap<i32, usize>) -> Option<String> {
    let b = &m.body;
    let line = match m.tag {
        // ParameterStatus and BackendKeyData: per connection, and the proxy's own.
        b'S' | b'K' => return None,
        b'1' => "ParseComplete".into(),
        b'2' => "BindComplete".into(),
        b'3' => "CloseComplete".into(),
        b'n' => "NoData".into(),
        b's' => "PortalSuspended".into(),
        b'I' => "EmptyQueryResponse".into(),
        b'c' => "CopyDone".into(),
        b'Z' => format!("ReadyForQuery {}", b.first().map_or('?', |&c| c as char)),
        b'C' => format!("CommandComplete {}", cstr(b)),
        b'd' => format!("CopyData {:?}", String::from_utf8_lossy(b)),
        b'G' | b'H' | b'W' => format!("Copy{}Response {:02x?}", copy_kind(m.tag), b),
        b'D' => format!("DataRow {}", data_row(b)),
        b'T' => format!("RowDescription {}", row_description(b, oids)),
        b't' => format!("ParameterDescription {:02x?}", b),
        b'E' | b'N' => {
            let kept: Vec<String> = error_fields(b)
                .into_iter()
                // F, L, R: the server's source file, line and routine.
                .filter(|(code, _)| !matches!(code, b'F' | b'L' | b'R'))
                .map(|(code, v)| format!("{}={v}", code as char))
                .collect();
            let what = if m.tag == b'E' { "Error" } else { "Notice" };
            format!("{what} {}", kept.join(" | "))
        }
        other => format!("'{}' {:02x?}", other as char, b),
    };
    Some(line)
}

fn copy_kind(tag: u8) -> &'static str {
    match tag {
        b'G' => "In",
        b'H' => "Out",
        _ => "Both",
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn be_i16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn data_row(b: &[u8]) -> String {
    let n = be_i16(b, 0).unwrap_or(0).max(0) as usize;
    let mut at = 2;
    let mut vals = Vec::with_capacity(n);
    for _ in 0..n {
        let len = be_i32(b, at).unwrap_or(-1);
        at += 4;
        if len < 0 {
            vals.push("NULL".to_string());
        } else {
            let end = (at + len as usize).min(b.len());
            vals.push(format!("{:?}", String::from_utf8_lossy(&b[at..end])));
            at = end;
        }
    }
    format!("[{}]", vals.join(", "))
}

fn row_description(b: &[u8], oids: &mut HashMap<i32, usize>) -> String {
    let n = be_i16(b, 0).unwrap_or(0).max(0) as usize;
    let mut at = 2;
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let name = cstr(&b[at.min(b.len())..]);
        at += name.len() + 1;
        let table = be_i32(b, at).unwrap_or(0);
        let attnum = be_i16(b, at + 4).unwrap_or(0);
        let typ = be_i32(b, at + 6).unwrap_or(0);
        let len = be_i16(b, at + 10).unwrap_or(0);
        let typmod = be_i32(b, at + 12).unwrap_or(0);
        let format = be_i16(b, at + 16).unwrap_or(0);
        at += 18;
        let table = match table {
            0 => "-".to_string(),
            oid => {
                let next = oids.len() + 1;
                format!("t{}", oids.entry(oid).or_insert(next))
            }
        };
        cols.push(format!(
            "{name}:{typ}/{len}/{typmod} {table}.{attnum} f{format}"
        ));
    }
    format!("[{}]", cols.join(", "))
}
