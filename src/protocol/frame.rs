//! Tagged message framing: 1-byte tag, 4-byte big-endian length (which counts itself), body.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::violation::ProtocolError;

/// Tag byte plus length word.
pub const HEADER_LEN: usize = 5;

/// How far ahead of the bytes received a partial message's buffer may grow.
pub const GROW_STEP: usize = 64 * 1024;

/// One whole protocol message. The body excludes the tag and the length word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub body: Bytes,
}

impl Frame {
    pub fn new(tag: u8, body: impl Into<Bytes>) -> Self {
        Frame {
            tag,
            body: body.into(),
        }
    }

    /// Bytes on the wire for this message.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.wire_len());
        out.put_u8(self.tag);
        out.put_u32((self.body.len() + 4) as u32);
        out.extend_from_slice(&self.body);
    }
}

/// Splits a byte stream into [`Frame`]s, refusing lengths that are negative, smaller than the
/// length word itself, or larger than `max_len` — before allocating anything for them.
#[derive(Clone, Copy, Debug)]
pub struct FrameDecoder {
    pub max_len: u64,
}

impl FrameDecoder {
    pub fn new(max_len: u64) -> Self {
        FrameDecoder { max_len }
    }

    /// Reads the header at the start of `buf` without consuming it: `(tag, body_len)`.
    pub fn peek_header(&self, buf: &[u8]) -> Result<Option<(u8, usize)>, ProtocolError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let tag = buf[0];
        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as i64;
        if len < 4 {
            return Err(ProtocolError::BadLength {
                tag: tag as char,
                len,
            });
        }
        if len as u64 > self.max_len {
            return Err(ProtocolError::TooLarge {
                len: len as u64,
                limit: self.max_len,
            });
        }
        Ok(Some((tag, len as usize - 4)))
    }

    /// Takes one complete frame off the front of `buf`, or `None` if more bytes are needed.
    /// The buffer grows with what arrives, at most [`GROW_STEP`] ahead of it: a length word
    /// is only a claim, and reserving it up front would let a client that declares 1 GB and
    /// sends a few bytes make the proxy hold 1 GB.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some((tag, body_len)) = self.peek_header(buf)? else {
            return Ok(None);
        };
        if buf.len() < HEADER_LEN + body_len {
            buf.reserve((HEADER_LEN + body_len - buf.len()).min(GROW_STEP));
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let body = buf.split_to(body_len).freeze();
        Ok(Some(Frame { tag, body }))
    }
}

/// Appends a message built by `fill` with the right length word.
pub(crate) fn put_message(out: &mut BytesMut, tag: u8, fill: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let len_at = out.len();
    out.put_u32(0);
    fill(out);
    let len = (out.len() - len_at) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

/// A cursor over a message body with checked reads: malformed input is an error, never a panic.
pub(crate) struct BodyReader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        BodyReader { buf, what }
    }

    pub(crate) fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(ProtocolError::Malformed(self.what))?;
        let s = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| ProtocolError::BadString(self.what))?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, ProtocolError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::Malformed(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(tag: u8, len: i32, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u8(tag);
        b.put_i32(len);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn decodes_whole_frames_and_waits_for_partial_ones() {
        let dec = FrameDecoder::new(1024);
        let mut buf = raw(b'Q', 9, b"abcd\0");
        buf.extend_from_slice(&raw(b'S', 4, b""));
        buf.extend_from_slice(&[b'X', 0, 0]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(Frame::new(b'Q', &b"abcd\0"[..]))
        );
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(Frame::new(b'S', Bytes::new()))
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn refuses_bad_lengths_before_allocating() {
        let dec = FrameDecoder::new(1 << 20);
        let cases: &[(i32, bool)] = &[
            (0, true),
            (3, true),
            (-1, true),
            (i32::MIN, true),
            (i32::MAX, true),
            ((1 << 20) + 1, true),
            (4, false),
            (1 << 20, false),
        ];
        for &(len, bad) in cases {
            let mut buf = raw(b'Q', len, b"");
            let res = dec.decode(&mut buf);
            assert_eq!(res.is_err(), bad, "length {len}");
        }
    }

    #[test]
    fn a_declared_length_reserves_no_more_than_a_step() {
        let dec = FrameDecoder::new(1 << 30);
        let mut buf = raw(b'Q', 1 << 30, b"abc");
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() <= 2 * GROW_STEP, "{}", buf.capacity());
    }

    #[test]
    fn encode_round_trips() {
        let f = Frame::new(b'D', &b"\x00\x01\x00\x00\x00\x01x"[..]);
        let mut out = BytesMut::new();
        f.encode(&mut out);
        assert_eq!(FrameDecoder::new(100).decode(&mut out).unwrap(), Some(f));
    }

    #[test]
    fn body_reader_reports_truncation_instead_of_panicking() {
        let mut r = BodyReader::new(b"ab", "Bind");
        assert!(r.cstr().is_err());
        let mut r = BodyReader::new(b"\x00", "Bind");
        assert!(r.i16().is_err());
    }
}
