//! Framing: turning a byte stream into messages.
//!
//! TCP delivers a *stream of bytes*, not messages. One `write` of `"hello\n"` may
//! arrive as `"hel"` and `"lo\n"`, and two writes may arrive glued together in one
//! read. So every protocol needs a rule that says where one message ends and the
//! next begins. This module implements the two rules the examples use:
//!
//! * **Lines**: a message ends at `\n` (a `\r\n` is accepted too, because `telnet`,
//!   `nc -C`, SMTP and POP3 send it). Good for text protocols people can type.
//! * **Length prefixes**: a message is a 4-byte big-endian length followed by that
//!   many bytes. Good for binary data, which may contain any byte, `\n` included.
//!
//! A length often arrives in a header instead, followed by that many bytes of
//! body (the file server's `OK <size> <sha256>`); [`copy_exact`] moves such a
//! counted body through one fixed buffer, however large it is. HTTP adds a
//! third rule, *chunked* bodies: a length line in hex before each piece
//! ([`read_chunked`]).
//!
//! Both rules come with a **maximum size**. Without one, a peer that never sends
//! `\n` (or announces a 4 GiB frame) makes the server buffer without end until it
//! runs out of memory. A limit turns that attack into a clear error.
//!
//! The readers return `io::Result<Option<…>>`, the shape mini-redis uses:
//!
//! * `Ok(Some(msg))` – a complete message;
//! * `Ok(None)` – the peer closed the connection cleanly *between* messages;
//! * `Err(e)` – something went wrong: the stream ended in the middle of a message
//!   ([`io::ErrorKind::UnexpectedEof`]) or a message broke the limit
//!   ([`io::ErrorKind::InvalidData`], see [`is_too_long`]).
//!
//! ```
//! use netlessons::framing::read_line_limited;
//! use std::io::Cursor;
//!
//! // Two messages that arrived in one read, the second with a CRLF ending.
//! let mut input = Cursor::new(b"hello\nworld\r\n".to_vec());
//! assert_eq!(read_line_limited(&mut input, 64)?, Some(b"hello".to_vec()));
//! assert_eq!(read_line_limited(&mut input, 64)?, Some(b"world".to_vec()));
//! assert_eq!(read_line_limited(&mut input, 64)?, None); // clean end of stream
//! # Ok::<(), std::io::Error>(())
//! ```

use std::error::Error;
use std::fmt;
use std::io::{self, BufRead, Read, Write};

/// The error inside an [`io::Error`] when a line or frame breaks its size limit.
///
/// Its `Display` text is what the chat server sends back:
/// `line too long (max 1024 bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    /// What was too long: `"line"` or `"frame"`.
    pub what: &'static str,
    /// The limit that was broken, in bytes.
    pub max: u64,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} too long (max {} bytes)", self.what, self.max)
    }
}

impl Error for TooLong {}

/// True if `err` came from a line or frame that broke its size limit.
///
/// Servers use this to tell "the peer sent too much" (answer with a clear
/// message) apart from "the connection failed" (nothing left to answer).
pub fn is_too_long(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<TooLong>())
}

fn too_long(what: &'static str, max: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TooLong { what, max })
}

/// Where a line read stands when [`read_line_with`] is about to wait for more bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineState {
    /// No byte of the next line has arrived yet: the peer is idle.
    Idle,
    /// Part of a line has arrived; the rest is still on its way.
    Started,
}

/// Reads one line of at most `max` bytes (not counting its `\n` or `\r\n`).
///
/// Returns the line without its line ending, `Ok(None)` on a clean end of
/// stream, an [`io::ErrorKind::UnexpectedEof`] error if the stream ends in the
/// middle of a line, and an [`io::ErrorKind::InvalidData`] error (see
/// [`is_too_long`]) for a line longer than `max`. After a too-long error the
/// rest of that line is still unread; call [`skip_line`] to resynchronise, or
/// close the connection.
///
/// ```
/// use netlessons::framing::{is_too_long, read_line_limited};
/// let mut input = std::io::Cursor::new(b"0123456789\n".to_vec());
/// let err = read_line_limited(&mut input, 4).unwrap_err();
/// assert!(is_too_long(&err));
/// assert_eq!(err.to_string(), "line too long (max 4 bytes)");
/// ```
pub fn read_line_limited<R: BufRead + ?Sized>(
    reader: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    read_line_with(reader, max, |_, _| Ok(()))
}

/// [`read_line_limited`], calling `before_wait` each time more bytes are needed.
///
/// The hook learns whether a line has started ([`LineState`]), so a server can
/// wait patiently for an idle peer but insist that a line, once begun, is
/// finished quickly (that is how [`crate::connection::Connection`] drops
/// slow-loris clients that trickle one byte at a time).
pub fn read_line_with<R, F>(
    reader: &mut R,
    max: usize,
    mut before_wait: F,
) -> io::Result<Option<Vec<u8>>>
where
    R: BufRead + ?Sized,
    F: FnMut(&mut R, LineState) -> io::Result<()>,
{
    let mut line = Vec::new();
    loop {
        let state = if line.is_empty() {
            LineState::Idle
        } else {
            LineState::Started
        };
        before_wait(reader, state)?;
        // `fill_buf` returns what is already buffered, or blocks for one read.
        // A read returns *whatever has arrived*: part of a line, one line, or
        // several. That is why we scan and keep what we have, and loop.
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            // End of stream. Between lines that is a normal goodbye; inside a
            // line the peer vanished mid-message.
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed in the middle of a line ({} bytes without a line ending)",
                        line.len()
                    ),
                ))
            };
        }
        // Never take more than max + 2 bytes of a line (content + "\r\n"): a peer
        // must not be able to make us buffer more than the limit.
        let room = max + 2 - line.len();
        match available.iter().take(room).position(|&b| b == b'\n') {
            Some(i) => {
                line.extend_from_slice(&available[..i]);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    // Leave the "\n" unread, so that after any too-long error
                    // the rest of the line (at least its "\n") is still there
                    // for skip_line: one rule, whichever read saw the end.
                    reader.consume(i);
                    return Err(too_long("line", max as u64));
                }
                reader.consume(i + 1);
                return Ok(Some(line));
            }
            None => {
                let take = available.len().min(room);
                line.extend_from_slice(&available[..take]);
                reader.consume(take);
                // The line may still be legal if all we lack is its "\n" (we
                // hold max bytes plus a '\r'); anything longer is over the limit.
                let could_still_fit =
                    line.len() <= max || (line.len() == max + 1 && line.last() == Some(&b'\r'));
                if !could_still_fit {
                    return Err(too_long("line", max as u64));
                }
            }
        }
    }
}

/// Discards bytes up to and including the next `\n`.
///
/// Returns `Ok(false)` if the stream ended first. Used after a too-long line
/// when the protocol wants to carry on (SMTP answers `500` and keeps going).
pub fn skip_line<R: BufRead + ?Sized>(reader: &mut R) -> io::Result<bool> {
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(false);
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(true);
            }
            None => {
                let n = available.len();
                reader.consume(n);
            }
        }
    }
}

/// Writes `line` followed by `\n`.
///
/// Refuses a line that itself contains `\n` or `\r` with
/// [`io::ErrorKind::InvalidInput`]: it would turn into two messages at the other
/// end, which is how "header injection" bugs happen.
pub fn write_line<W: Write + ?Sized>(writer: &mut W, line: &[u8]) -> io::Result<()> {
    write_line_ending(writer, line, b"\n")
}

/// Writes `line` followed by `ending` (`b"\n"` or `b"\r\n"`), refusing embedded
/// line breaks like [`write_line`].
pub fn write_line_ending<W: Write + ?Sized>(
    writer: &mut W,
    line: &[u8],
    ending: &[u8],
) -> io::Result<()> {
    if line.iter().any(|&b| b == b'\n' || b == b'\r') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a line to send must not contain a line break",
        ));
    }
    writer.write_all(line)?;
    writer.write_all(ending)
}

/// The largest frame [`write_frame`] can describe: a u32 length.
pub const MAX_FRAME_LEN: usize = u32::MAX as usize;

/// Writes one length-prefixed frame: a 4-byte big-endian length, then the payload.
///
/// ```
/// use netlessons::framing::{read_frame, write_frame};
/// let mut wire = Vec::new();
/// write_frame(&mut wire, b"\x00binary\n\xff")?;
/// assert_eq!(&wire[..4], &[0, 0, 0, 9]); // the length, big-endian
/// let mut input = std::io::Cursor::new(wire);
/// assert_eq!(read_frame(&mut input, 1024)?, Some(b"\x00binary\n\xff".to_vec()));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_frame<W: Write + ?Sized>(writer: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame holds at most {MAX_FRAME_LEN} bytes"),
        )
    })?;
    writer.write_all(&len.to_be_bytes())?;
    writer.write_all(payload)
}

/// Reads one length-prefixed frame of at most `max` bytes.
///
/// `Ok(None)` means the stream ended cleanly before a new frame began. A
/// stream that ends inside the header or the payload is an
/// [`io::ErrorKind::UnexpectedEof`] error, and a declared length over `max` is
/// an [`io::ErrorKind::InvalidData`] error raised *before* allocating anything,
/// so a peer cannot make us reserve 4 GiB by sending four bytes.
pub fn read_frame<R: Read + ?Sized>(reader: &mut R, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    // Read the header by hand rather than with read_exact, to tell "no frame at
    // all" (clean close) from "half a header" (the peer died mid-frame).
    let mut got = 0;
    while got < header.len() {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed inside a frame header ({got} of 4 bytes)"),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(header) as u64;
    if len > max as u64 {
        return Err(too_long("frame", max as u64));
    }
    let mut payload = Vec::with_capacity(len as usize);
    let read = reader.take(len).read_to_end(&mut payload)?;
    if (read as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed inside a frame ({read} of {len} bytes)"),
        ));
    }
    Ok(Some(payload))
}

// Bodies: the bytes after a header that counts them, or in counted chunks.
mod body;
pub use body::{
    ChunkSource, MAX_CHUNK_LINE, MAX_TRAILERS, ShortSource, copy_exact, is_short_source,
    parse_chunk_size, read_chunked,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor};

    /// A reader that hands out at most one byte per read, like a very slow network.
    pub(crate) struct OneByte<'a>(pub(crate) &'a [u8]);
    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    /// A line split across many reads is reassembled exactly.
    #[test]
    fn reassembles_partial_reads() {
        let mut r = BufReader::new(OneByte(b"partial read\r\nnext\n"));
        assert_eq!(
            read_line_limited(&mut r, 100).unwrap(),
            Some(b"partial read".to_vec())
        );
        assert_eq!(
            read_line_limited(&mut r, 100).unwrap(),
            Some(b"next".to_vec())
        );
        assert_eq!(read_line_limited(&mut r, 100).unwrap(), None);
    }

    /// Exactly max bytes is fine with either ending; max + 1 is too long.
    #[test]
    fn limit_is_exact() {
        for input in [&b"abcd\n"[..], b"abcd\r\n"] {
            let mut r = Cursor::new(input.to_vec());
            assert_eq!(
                read_line_limited(&mut r, 4).unwrap(),
                Some(b"abcd".to_vec())
            );
        }
        let mut r = BufReader::new(OneByte(b"abcde\n"));
        let err = read_line_limited(&mut r, 4).unwrap_err();
        assert!(is_too_long(&err));
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    /// An endless line is refused after max + 2 bytes, not buffered forever.
    #[test]
    fn endless_line_is_cut_off() {
        let mut r = BufReader::new(io::repeat(b'x'));
        let err = read_line_limited(&mut r, 1000).unwrap_err();
        assert!(is_too_long(&err));
    }

    /// A stream that stops mid-line is an error, not a short line.
    #[test]
    fn eof_mid_line_is_an_error() {
        let mut r = Cursor::new(b"no newline".to_vec());
        let err = read_line_limited(&mut r, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(!is_too_long(&err));
    }

    /// skip_line drops the rest of an over-long line so reading can resume.
    #[test]
    fn skip_line_resynchronises() {
        // Far too long (cut off before the "\n") and just too long (the "\n"
        // was in sight): skip_line resumes at the next line either way.
        for input in [&b"0123456789\nok\n"[..], b"abcde\nok\n"] {
            let mut r = Cursor::new(input.to_vec());
            assert!(read_line_limited(&mut r, 4).is_err());
            assert!(skip_line(&mut r).unwrap());
            assert_eq!(read_line_limited(&mut r, 4).unwrap(), Some(b"ok".to_vec()));
            assert!(!skip_line(&mut r).unwrap());
        }
    }

    /// The hook sees Idle before a line and Started once part of it arrived.
    #[test]
    fn hook_sees_line_state() {
        let mut r = BufReader::new(OneByte(b"ab\n"));
        let mut states = Vec::new();
        let line = read_line_with(&mut r, 10, |_, s| {
            states.push(s);
            Ok(())
        })
        .unwrap();
        assert_eq!(line, Some(b"ab".to_vec()));
        assert_eq!(
            states,
            [LineState::Idle, LineState::Started, LineState::Started]
        );
    }

    /// Lines with embedded breaks are refused; good lines get their ending.
    #[test]
    fn write_line_refuses_injection() {
        let mut out = Vec::new();
        write_line(&mut out, b"hi").unwrap();
        write_line_ending(&mut out, b"there", b"\r\n").unwrap();
        assert_eq!(out, b"hi\nthere\r\n");
        let err = write_line(&mut out, b"a\nb").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// Frames round-trip binary data, split into one-byte reads.
    #[test]
    fn frames_round_trip() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"").unwrap();
        write_frame(&mut wire, &[0, 10, 13, 255]).unwrap();
        let mut r = OneByte(&wire);
        assert_eq!(read_frame(&mut r, 8).unwrap(), Some(vec![]));
        assert_eq!(read_frame(&mut r, 8).unwrap(), Some(vec![0, 10, 13, 255]));
        assert_eq!(read_frame(&mut r, 8).unwrap(), None);
    }

    /// A huge declared length is refused before any allocation; truncation is an error.
    #[test]
    fn frame_errors() {
        let mut r = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let err = read_frame(&mut r, 1024).unwrap_err();
        assert!(is_too_long(&err));
        assert_eq!(err.to_string(), "frame too long (max 1024 bytes)");
        let mut r = Cursor::new(vec![0, 0]);
        assert_eq!(
            read_frame(&mut r, 1024).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut r = Cursor::new(vec![0, 0, 0, 5, b'a']);
        assert_eq!(
            read_frame(&mut r, 1024).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
