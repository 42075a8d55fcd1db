//! Reading one request head: the request line, the header lines, the limits,
//! and every way a head can be wrong.
//!
//! An HTTP/1.1 request is chapter 3's line framing: lines ending in CRLF (we
//! accept a bare LF too, RFC 9112 §2.2), the first one the *request line*,
//! then `Name: value` header lines, then an empty line. What follows the
//! empty line is the body, framed by the headers (`Content-Length` or
//! `Transfer-Encoding: chunked`), or nothing.
//!
//! ```text
//! GET /notes/index.html HTTP/1.1      the request line: method, target, version
//! Host: 127.0.0.1:8080                header lines
//! User-Agent: curl/8.5.0
//!                                     the empty line: the head is over
//! ```
//!
//! Every limit below turns an attack (a head that never ends, a million
//! headers) into one clear status code. The errors are [`Status`]es the
//! caller answers with, then closes the connection: after a malformed head
//! we cannot know where the next request would start.

use crate::response::Status;
use netlessons::connection::Connection;
use netlessons::framing::is_too_long;
use std::io;
use std::time::Instant;

/// The longest request line: over this, `414 URI Too Long` (RFC 9112 §3
/// recommends supporting at least 8,000 bytes).
pub const MAX_REQUEST_LINE: usize = 8000;
/// The longest header line: over this, `431`.
pub const MAX_HEADER_LINE: usize = 8 * 1024;
/// The most header lines: over this, `431`.
pub const MAX_HEADERS: usize = 100;
/// The largest whole head: over this, `431`.
pub const MAX_HEAD: usize = 64 * 1024;
/// Empty lines ignored before a request line (RFC 9112 §2.2: some old
/// clients send a stray CRLF after a body).
const MAX_LEADING_EMPTY: usize = 4;

/// One request head, as read from the wire.
#[derive(Debug)]
pub struct Request {
    /// The method, case-sensitive: `GET`, `HEAD`, …
    pub method: String,
    /// The request target exactly as sent: `/index.html?x=1`.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    /// The header lines in order; each keeps its whole line, see [`Header`].
    pub headers: Vec<Header>,
    /// The request line as sent, for the log.
    pub line: String,
    /// When the head's first byte arrived (for the log's timing).
    pub started: Instant,
}

/// Why [`read_head`] returned no request.
#[derive(Debug)]
pub enum HeadError {
    /// A head that breaks a rule: answer with `status`, then close.
    /// `line` is the request line as far as it was read, for the log.
    Refuse {
        /// The answer.
        status: Status,
        /// The request line (empty if it was not read).
        line: Vec<u8>,
    },
    /// The connection failed, or a clock ran out: nobody is left to answer.
    Io(io::Error),
}

/// One header line, kept whole (one allocation per line): the name is the
/// part before the colon, the value the rest without surrounding spaces.
#[derive(Debug)]
pub struct Header {
    line: Vec<u8>,
    colon: usize,
}

impl Header {
    /// The header's name as sent (compare it with `eq_ignore_ascii_case`).
    pub fn name(&self) -> &[u8] {
        &self.line[..self.colon]
    }

    /// The value, without the optional spaces around it.
    pub fn value(&self) -> &[u8] {
        self.line[self.colon + 1..].trim_ascii()
    }
}

/// How the body after the head is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither `Content-Length` nor `Transfer-Encoding`.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Request {
    /// The values of every header named `name` (case-insensitive).
    pub fn all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name().eq_ignore_ascii_case(name.as_bytes()))
            .map(Header::value)
    }

    /// The value of the header `name`, if it was sent (the first one).
    pub fn header(&self, name: &'static str) -> Option<&[u8]> {
        self.all(name).next()
    }

    /// Does the `Connection` header list `option` (`close`, `keep-alive`)?
    pub fn connection_has(&self, option: &str) -> bool {
        self.all("connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|o| o.trim_ascii().eq_ignore_ascii_case(option.as_bytes()))
    }

    /// Should the connection stay open after the response? HTTP/1.1 says
    /// yes unless `Connection: close`; HTTP/1.0 says no unless the client
    /// asked for `Connection: keep-alive` (RFC 9112 §9.3).
    pub fn keep_alive(&self) -> bool {
        if self.minor >= 1 {
            !self.connection_has("close")
        } else {
            self.connection_has("keep-alive") && !self.connection_has("close")
        }
    }

    /// Works out the body's framing, refusing the ambiguous cases that
    /// request smuggling is built from (RFC 9112 §6.1, §6.3): a
    /// `Content-Length` next to a `Transfer-Encoding`, two different (or
    /// even two equal) lengths, a length that is not plain digits.
    pub fn body_framing(&self) -> Result<BodyFraming, Status> {
        let mut codings: Vec<&[u8]> = Vec::new();
        for value in self.all("transfer-encoding") {
            codings.extend(value.split(|&b| b == b',').map(<[u8]>::trim_ascii));
        }
        let lengths: Vec<&[u8]> = self.all("content-length").collect();
        if !codings.is_empty() {
            // HTTP/1.0 had no chunked coding: a 1.0 message that claims one
            // is broken or forged (RFC 9112 §6.1).
            if !lengths.is_empty() || self.minor == 0 {
                return Err(Status::BadRequest);
            }
            let is_chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
            let count = codings.iter().filter(|c| is_chunked(c)).count();
            let last_is_chunked = codings.last().is_some_and(|c| is_chunked(c));
            return match (count, last_is_chunked) {
                (1, true) if codings.len() == 1 => Ok(BodyFraming::Chunked),
                // gzip, chunked: framed right, but a coding we do not
                // implement; gzip alone: a coding we do not implement.
                (1, true) => Err(Status::NotImplemented),
                (0, _) if codings.iter().all(|c| !c.is_empty()) => Err(Status::NotImplemented),
                // chunked twice, chunked not last, an empty coding: the
                // body's end cannot be found, so neither can the next request.
                _ => Err(Status::BadRequest),
            };
        }
        match lengths.as_slice() {
            [] => Ok(BodyFraming::None),
            [one] if !one.is_empty() && one.len() <= 19 && one.iter().all(u8::is_ascii_digit) => {
                let text = std::str::from_utf8(one).map_err(|_| Status::BadRequest)?;
                text.parse()
                    .map(BodyFraming::Length)
                    .map_err(|_| Status::BadRequest)
            }
            _ => Err(Status::BadRequest),
        }
    }
}

/// Reads the next request head. `Ok(None)`: the client closed the
/// connection cleanly between requests (or sent only empty lines).
pub fn read_head(conn: &mut Connection) -> Result<Option<Request>, HeadError> {
    let refuse = |status, line: &[u8]| HeadError::Refuse {
        status,
        line: line.to_vec(),
    };
    // One clock for the whole head: every line must arrive within the line
    // timeout (30 s) of the head's first byte (a slow-loris defence).
    let mut started = None;
    let mut line = Vec::new();
    for _ in 0..=MAX_LEADING_EMPTY {
        line = match conn.read_line_in(MAX_REQUEST_LINE, &mut started) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(None),
            Err(e) if is_too_long(&e) => return Err(refuse(Status::UriTooLong, b"")),
            Err(e) => return Err(HeadError::Io(e)),
        };
        if !line.is_empty() {
            break;
        }
        started = None; // an empty line before the request is not its start
    }
    if line.is_empty() {
        return Ok(None);
    }
    let (method, target, minor) =
        parse_request_line(&line).map_err(|status| refuse(status, &line))?;
    let mut request = Request {
        method,
        target,
        minor,
        headers: Vec::new(),
        line: String::from_utf8_lossy(&line).into_owned(),
        started: started.unwrap_or_else(Instant::now),
    };
    let mut head_size = line.len();
    loop {
        let too_large = |r: &Request| refuse(Status::HeaderFieldsTooLarge, r.line.as_bytes());
        let header_line = match conn.read_line_in(MAX_HEADER_LINE, &mut started) {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(HeadError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a request head",
                )));
            }
            Err(e) if is_too_long(&e) => return Err(too_large(&request)),
            Err(e) => return Err(HeadError::Io(e)),
        };
        let line = header_line;
        if line.is_empty() {
            break;
        }
        head_size += line.len() + 2;
        if request.headers.len() == MAX_HEADERS || head_size > MAX_HEAD {
            return Err(too_large(&request));
        }
        let header = parse_header(line).map_err(|s| refuse(s, request.line.as_bytes()))?;
        request.headers.push(header);
    }
    check_host(&request).map_err(|s| refuse(s, request.line.as_bytes()))?;
    Ok(Some(request))
}

/// `METHOD SP request-target SP HTTP/1.x`, exactly one space apart
/// (RFC 9112 §3). Any other version number is `505`; anything else wrong
/// is `400`.
fn parse_request_line(line: &[u8]) -> Result<(String, String, u8), Status> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(Status::BadRequest);
    }
    // A target is visible ASCII only: no spaces, no control bytes, no
    // bytes over 127 (those must arrive percent-encoded).
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(Status::BadRequest);
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        // A well-formed version we do not speak (HTTP/2.0, HTTP/0.9, HTTP/1.2).
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Status::VersionNotSupported);
        }
        _ => return Err(Status::BadRequest),
    };
    // Both parts are ASCII, so these conversions cannot fail.
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((text(method), text(target), minor))
}

/// `Name: value`. The name is a token right up to the colon: a space before
/// the colon is refused (RFC 9112 §5.1), because one program reading
/// `Host : x` as `Host` and another as something else is a smuggling bug.
/// A line starting with a space (the obsolete line folding) is refused too,
/// and so is any control byte but a tab in the value.
fn parse_header(line: Vec<u8>) -> Result<Header, Status> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(Status::BadRequest)?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        return Err(Status::BadRequest);
    }
    let value = &line[colon + 1..];
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Status::BadRequest);
    }
    Ok(Header { line, colon })
}

/// HTTP/1.1 needs exactly one `Host` (RFC 9112 §3.2), and it must look like
/// a host name or address with an optional port. HTTP/1.0 may leave it out.
fn check_host(request: &Request) -> Result<(), Status> {
    let hosts: Vec<&[u8]> = request.all("host").collect();
    let valid = |h: &[u8]| {
        !h.is_empty()
            && h.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
    };
    match hosts.as_slice() {
        [] if request.minor == 0 => Ok(()),
        [one] if valid(one) => Ok(()),
        _ => Err(Status::BadRequest),
    }
}

/// A `tchar` (RFC 9110 §5.6.2): what names and methods are made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
