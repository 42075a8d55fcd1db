//! Bodies: the bytes that follow a header, counted or chunked.
//!
//! A header line often says how long the next message is (the file
//! server's `OK <size> <sha256>`, an HTTP `Content-Length`): then exactly
//! that many bytes follow, and [`copy_exact`] moves them through one fixed
//! buffer, however many there are. HTTP has one more way, *chunked*: the
//! body comes in pieces, each after its length in hex ([`read_chunked`]).
//! Both are re-exported from [`crate::framing`], where the line and frame
//! rules they build on live.

use super::{is_too_long, read_line_limited, too_long};
use std::error::Error;
use std::fmt;
use std::io::{self, BufRead, Read, Write};

/// The error inside an [`io::Error`] when [`copy_exact`] runs out of input early.
///
/// Its `Display` text says how far it got: `the source ended after 3 of 10 bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortSource {
    /// How many bytes were promised.
    pub expected: u64,
    /// How many bytes the source actually had.
    pub got: u64,
}

impl fmt::Display for ShortSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the source ended after {} of {} bytes",
            self.got, self.expected
        )
    }
}

impl Error for ShortSource {}

/// True if `err` came from [`copy_exact`] finding its source shorter than promised.
///
/// Lets a caller reword that one case ("the file shrank while it was being
/// sent") while passing every other error, such as a failed send, through.
pub fn is_short_source(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<ShortSource>())
}

/// Reads exactly `len` bytes from `reader` through `buf`, handing each chunk to `each`.
///
/// This is how the file examples move a file of any size in constant memory:
/// one fixed buffer, refilled until `len` bytes have gone through. Bytes past
/// `len` are left unread. A source that ends early is an
/// [`io::ErrorKind::UnexpectedEof`] error (see [`is_short_source`]): the
/// caller has usually promised its peer `len` bytes already (a size in a
/// header), and a short body would break that promise silently. An error
/// returned by `each` stops the copy and is returned unchanged. An empty
/// `buf` is refused with [`io::ErrorKind::InvalidInput`] unless `len` is 0.
///
/// ```
/// use netlessons::framing::{copy_exact, is_short_source};
/// let mut buf = [0u8; 4];
/// let mut out = Vec::new();
/// let mut input = std::io::Cursor::new(b"0123456789".to_vec());
/// copy_exact(&mut input, 6, &mut buf, |chunk| {
///     out.extend_from_slice(chunk);
///     Ok(())
/// })?;
/// assert_eq!(out, b"012345"); // two chunks: 4 bytes, then 2
///
/// let mut short = std::io::Cursor::new(b"abc".to_vec());
/// let err = copy_exact(&mut short, 10, &mut buf, |_| Ok(())).unwrap_err();
/// assert!(is_short_source(&err));
/// assert_eq!(err.to_string(), "the source ended after 3 of 10 bytes");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn copy_exact<R: Read + ?Sized>(
    reader: &mut R,
    len: u64,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    if buf.is_empty() && len > 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "copy_exact needs a buffer of at least one byte",
        ));
    }
    let mut left = len;
    while left > 0 {
        // Never ask for more than is left, so the bytes after `len` stay unread.
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => {
                let got = len - left;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    ShortSource { expected: len, got },
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Where [`read_chunked`] gets a chunked body's lines and data from.
///
/// Any [`BufRead`] is one (a socket in a `BufReader`, bytes in a `Cursor`);
/// so is a [`crate::connection::Connection`], whose line and body clocks
/// then run over every piece of the body as over any other message.
pub trait ChunkSource {
    /// One line of at most `max` bytes without its line ending, as
    /// [`read_line_limited`] reads it (`Ok(None)`: the stream ended).
    fn chunk_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>>;
    /// Exactly `len` bytes of data, written to `sink`; a stream that ends
    /// early is an [`io::ErrorKind::UnexpectedEof`] error.
    fn chunk_data(&mut self, len: u64, sink: &mut dyn Write) -> io::Result<()>;
}

impl<R: BufRead + ?Sized> ChunkSource for R {
    fn chunk_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        read_line_limited(self, max)
    }

    fn chunk_data(&mut self, len: u64, sink: &mut dyn Write) -> io::Result<()> {
        let copied = io::copy(&mut Read::take(&mut *self, len), sink)?;
        if copied < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                ShortSource {
                    expected: len,
                    got: copied,
                },
            ));
        }
        Ok(())
    }
}

/// The longest chunk-size line [`read_chunked`] accepts (the size in hex
/// plus any `;name=value` extensions, which it ignores).
pub const MAX_CHUNK_LINE: usize = 4096;

/// The most trailer lines [`read_chunked`] reads after the last chunk.
pub const MAX_TRAILERS: usize = 100;

/// Reads one body sent with `Transfer-Encoding: chunked` (RFC 9112 §7.1),
/// writes its data to `sink` and returns how many data bytes there were.
///
/// Chunked framing is chapter 3's length prefix again, written in text: each
/// chunk is its length in hex on a line of its own, then that many bytes,
/// then a line ending; a chunk of length 0 ends the body, followed by
/// optional trailer lines (headers sent after the body) and an empty line.
/// A sender uses it when it does not know the length in advance:
///
/// ```text
/// 5\r\n
/// hello\r\n
/// 7;note=ignored\r\n
/// , world\r\n
/// 0\r\n
/// \r\n
/// ```
///
/// Everything is limited: a body over `max` data bytes is a
/// [`TooLong`](super::TooLong) error (see [`is_too_long`]) raised *before* the oversized
/// chunk is read, a chunk-size line over [`MAX_CHUNK_LINE`] bytes or more
/// than [`MAX_TRAILERS`] trailers are too, and a malformed size (not hex,
/// more than 16 digits, a sign, a space before it) is an
/// [`io::ErrorKind::InvalidData`] error. Being strict here is a defence:
/// two programs that disagree on where a chunked body ends can be made to
/// read a second, hidden request inside the first (*request smuggling*).
///
/// ```
/// use netlessons::framing::read_chunked;
/// let mut wire = std::io::Cursor::new(b"5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\nNEXT".to_vec());
/// let mut body = Vec::new();
/// assert_eq!(read_chunked(&mut wire, &mut body, 1024)?, 12);
/// assert_eq!(body, b"hello, world");
/// assert_eq!(wire.position(), 31); // "NEXT" is still unread
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read_chunked<S: ChunkSource + ?Sized>(
    source: &mut S,
    sink: &mut dyn Write,
    max: u64,
) -> io::Result<u64> {
    let mut total: u64 = 0;
    loop {
        let line = source
            .chunk_line(MAX_CHUNK_LINE)?
            .ok_or_else(|| chunk_eof("before a chunk size"))?;
        let size = parse_chunk_size(&line)?;
        if size == 0 {
            break;
        }
        // Check the limit before reading: the size is only a promise.
        if total.saturating_add(size) > max {
            return Err(too_long("chunked body", max));
        }
        source.chunk_data(size, sink)?;
        total += size;
        // Every chunk's data ends with a line ending and nothing else.
        match source.chunk_line(0) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(chunk_eof("after a chunk's data")),
            Err(e) if is_too_long(&e) => return Err(bad_chunk("chunk data longer than its size")),
            Err(e) => return Err(e),
        }
    }
    // Trailer lines, read and ignored, up to the empty line.
    for _ in 0..=MAX_TRAILERS {
        let line = source
            .chunk_line(MAX_CHUNK_LINE)?
            .ok_or_else(|| chunk_eof("in the trailers"))?;
        if line.is_empty() {
            return Ok(total);
        }
    }
    Err(too_long("trailer section", MAX_TRAILERS as u64))
}

/// Parses the hex size at the start of a chunk-size line, ignoring any
/// `;extension` after it (RFC 9112 §7.1.1). At most 16 hex digits, so the
/// value always fits a `u64`.
///
/// ```
/// use netlessons::framing::parse_chunk_size;
/// assert_eq!(parse_chunk_size(b"1a")?, 26);
/// assert_eq!(parse_chunk_size(b"0 ; last")?, 0);
/// assert!(parse_chunk_size(b"+5").is_err());
/// assert!(parse_chunk_size(b"").is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(bad_chunk("chunk size is not 1 to 16 hex digits"));
    }
    let rest = &line[digits..];
    // After the size: nothing, or optional spaces then ";" and extensions.
    let after_space = rest.trim_ascii_start();
    if !(rest.is_empty() || after_space.starts_with(b";")) {
        return Err(bad_chunk("unexpected bytes after the chunk size"));
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| bad_chunk("chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| bad_chunk("chunk size"))
}

fn bad_chunk(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed chunked body: {what}"),
    )
}

fn chunk_eof(where_: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("connection closed inside a chunked body ({where_})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::tests::OneByte;
    use std::io::{BufReader, Cursor};

    /// copy_exact hands over exactly `len` bytes, chunk by chunk, and leaves the rest unread.
    #[test]
    fn copy_exact_stops_at_len() {
        let mut input = OneByte(b"hello world");
        let mut buf = [0u8; 4];
        let mut out = Vec::new();
        let mut chunks = 0;
        copy_exact(&mut input, 5, &mut buf, |chunk| {
            out.extend_from_slice(chunk);
            chunks += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(chunks, 5); // one byte per read from OneByte
        assert_eq!(input.0, b" world");

        let mut input = Cursor::new(b"0123456789".to_vec());
        let mut sizes = Vec::new();
        copy_exact(&mut input, 9, &mut buf, |chunk| {
            sizes.push(chunk.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(sizes, [4, 4, 1]);
        assert_eq!(input.position(), 9);
    }

    /// A source shorter than promised is an UnexpectedEof that says how far it got.
    #[test]
    fn copy_exact_short_source() {
        let mut buf = [0u8; 4];
        let mut seen = 0;
        let err = copy_exact(&mut Cursor::new(b"abcdef".to_vec()), 8, &mut buf, |chunk| {
            seen += chunk.len();
            Ok(())
        })
        .unwrap_err();
        assert_eq!(seen, 6);
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(is_short_source(&err));
        assert_eq!(err.to_string(), "the source ended after 6 of 8 bytes");
        // Nothing to copy needs nothing from the source, not even a buffer.
        copy_exact(&mut Cursor::new(Vec::new()), 0, &mut [], |_| Ok(())).unwrap();
        let err = copy_exact(&mut Cursor::new(b"x".to_vec()), 1, &mut [], |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// An error from the callback stops the copy and comes back unchanged.
    #[test]
    fn copy_exact_passes_callback_errors() {
        let mut buf = [0u8; 2];
        let mut calls = 0;
        let err = copy_exact(&mut Cursor::new(b"abcdef".to_vec()), 6, &mut buf, |_| {
            calls += 1;
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "peer gone"))
        })
        .unwrap_err();
        assert_eq!(calls, 1);
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(!is_short_source(&err));
        assert_eq!(err.to_string(), "peer gone");
    }

    /// A chunked body split into one-byte reads decodes exactly, trailers
    /// and all, and what follows it stays unread.
    #[test]
    fn chunked_body_across_partial_reads() {
        let wire = b"3\r\nabc\r\nA;x=1\r\n0123456789\r\n0\r\nT: 1\r\nU: 2\r\n\r\nNEXT";
        let mut r = BufReader::new(OneByte(wire));
        let mut body = Vec::new();
        assert_eq!(read_chunked(&mut r, &mut body, 100).unwrap(), 13);
        assert_eq!(body, b"abc0123456789");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"NEXT");
    }

    /// Over the limit is a TooLong error before the chunk is read; a
    /// malformed size, data longer than its size and an early end are
    /// errors of their own kinds.
    #[test]
    fn chunked_body_errors() {
        let decode =
            |wire: &[u8], max| read_chunked(&mut Cursor::new(wire.to_vec()), &mut io::sink(), max);
        let err = decode(b"10\r\n", 15).unwrap_err();
        assert!(is_too_long(&err), "{err}");
        assert!(decode(b"10\r\n0123456789abcdef\r\n0\r\n\r\n", 16).is_ok());
        for bad in [
            &b"x\r\n"[..],
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\n",
            b"5 x\r\n",
            b"11111111111111111\r\n",
        ] {
            let err = decode(bad, 100).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}: {err}");
        }
        let err = decode(b"3\r\nabcd\r\n0\r\n\r\n", 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        for cut in [&b"3\r\nab"[..], b"3\r\nabc\r\n", b"0\r\nT: 1\r\n", b""] {
            let err = decode(cut, 100).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{cut:?}: {err}");
        }
        let trailers = format!("0\r\n{}\r\n", "T: 1\r\n".repeat(MAX_TRAILERS + 1));
        assert!(is_too_long(&decode(trailers.as_bytes(), 100).unwrap_err()));
    }
}
