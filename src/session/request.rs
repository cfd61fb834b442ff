//! Groups client messages into requests, the unit the proxy routes: a simple Query, an
//! extended-protocol batch up to Sync (or Flush), a FunctionCall, COPY data, or Terminate.

use bytes::BytesMut;

use crate::protocol::{tag, Frame, PgError};

#[derive(Debug, Clone)]
pub enum Request {
    /// A simple Query; the text is decoded when routed.
    Simple(Frame),
    /// Parse/Bind/Describe/Execute/Close… ending with Sync (`sync = true`) or Flush.
    Extended {
        frames: Vec<Frame>,
        sync: bool,
    },
    FunctionCall(Frame),
    /// CopyData/CopyDone/CopyFail: forwarded at once to the backend in COPY.
    Copy(Frame),
    Terminate,
}

impl Request {
    /// How many ReadyForQuery messages the backend will send for this request.
    pub fn expected_ready(&self) -> usize {
        match self {
            Request::Simple(_) | Request::FunctionCall(_) => 1,
            Request::Extended { sync, .. } => usize::from(*sync),
            Request::Copy(_) | Request::Terminate => 0,
        }
    }

    /// The request's bytes as the backend should receive them.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Request::Simple(f) | Request::FunctionCall(f) | Request::Copy(f) => f.encode(out),
            Request::Extended { frames, .. } => frames.iter().for_each(|f| f.encode(out)),
            Request::Terminate => {}
        }
    }
}

/// Accumulates extended-protocol messages until a Sync or Flush completes a batch.
#[derive(Default)]
pub struct Assembler {
    batch: Vec<Frame>,
    /// Wire bytes of `batch`, kept as frames come (re-summing per frame is quadratic).
    bytes: usize,
}

impl Assembler {
    /// Feeds one client message; returns a complete request when there is one.
    pub fn push(&mut self, f: Frame) -> Result<Option<Request>, PgError> {
        let req = match f.tag {
            tag::QUERY => Request::Simple(f),
            tag::PARSE | tag::BIND | tag::DESCRIBE | tag::EXECUTE | tag::CLOSE => {
                self.bytes += f.wire_len();
                self.batch.push(f);
                return Ok(None);
            }
            tag::SYNC | tag::FLUSH => {
                let sync = f.tag == tag::SYNC;
                self.batch.push(f);
                self.bytes = 0;
                Request::Extended {
                    frames: std::mem::take(&mut self.batch),
                    sync,
                }
            }
            tag::FUNCTION_CALL => Request::FunctionCall(f),
            tag::COPY_DATA | tag::COPY_DONE | tag::COPY_FAIL => Request::Copy(f),
            tag::TERMINATE => Request::Terminate,
            other => {
                return Err(PgError::fatal(
                    "08P01",
                    format!("invalid frontend message type {}", other),
                ))
            }
        };
        Ok(Some(req))
    }

    /// Total bytes held, to bound what a client can make the proxy buffer.
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn f(t: u8) -> Frame {
        Frame::new(t, Bytes::new())
    }

    #[test]
    fn batches_end_at_sync_or_flush() {
        let mut a = Assembler::default();
        assert!(a.push(f(b'P')).unwrap().is_none());
        assert!(a.push(f(b'B')).unwrap().is_none());
        assert!(a.push(f(b'E')).unwrap().is_none());
        match a.push(f(b'S')).unwrap() {
            Some(Request::Extended { frames, sync: true }) => assert_eq!(frames.len(), 4),
            other => panic!("{other:?}"),
        }
        assert!(a
            .push(Frame::new(b'P', Bytes::from_static(b"abc")))
            .unwrap()
            .is_none());
        assert_eq!(a.pending_bytes(), 5 + 3);
        assert!(matches!(
            a.push(f(b'H')).unwrap(),
            Some(Request::Extended { sync: false, .. })
        ));
        assert_eq!(a.pending_bytes(), 0);
    }

    #[test]
    fn ready_counts_match_the_protocol() {
        let cases = [
            (Request::Simple(f(b'Q')), 1),
            (Request::FunctionCall(f(b'F')), 1),
            (Request::Copy(f(b'd')), 0),
            (
                Request::Extended {
                    frames: vec![],
                    sync: false,
                },
                0,
            ),
            (
                Request::Extended {
                    frames: vec![],
                    sync: true,
                },
                1,
            ),
        ];
        for (r, n) in cases {
            assert_eq!(r.expected_ready(), n, "{r:?}");
        }
    }

    #[test]
    fn unknown_message_types_are_protocol_violations() {
        let mut a = Assembler::default();
        let e = a.push(f(b'?')).unwrap_err();
        assert_eq!(e.code, "08P01");
    }
}
