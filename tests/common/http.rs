//! A small HTTP/1.1 client for tests: send raw request bytes, read back
//! responses exactly as they were framed on the wire, and say what is wrong
//! when they are not.
//!
//! It is strict where a test needs strictness: every head line must end in
//! CRLF, the body is read by `Content-Length` (or chunked, or to the close
//! when there is neither), and whatever follows a response stays unread for
//! the next one, so pipelining and keep-alive can be checked byte by byte.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// One response as read from the wire.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code, `200`.
    pub status: u16,
    /// The whole status line, `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// The header lines in order, as (name, value); names as sent.
    pub headers: Vec<(String, String)>,
    /// The body bytes (empty for HEAD, 304 and 204).
    pub body: Vec<u8>,
}

impl Response {
    /// The value of header `name` (case-insensitive), if there is exactly
    /// one; panics if it appears twice, which no test expects.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "header {name} appears twice");
        first
    }

    /// The body as text (lossy), for messages and `contains` checks.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Does the response say the connection closes after it?
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A kept-alive connection to a web server: send requests, read responses.
pub struct Client {
    /// The write half.
    pub stream: TcpStream,
    /// The read half, buffered; bytes after one response wait here.
    pub reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr` with the tests' I/O timeout.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = super::connect(addr);
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> &mut Client {
        self.stream.write_all(bytes.as_ref()).unwrap();
        self
    }

    /// Sends `GET path` with a Host header and the extra header lines
    /// (each ending in `\r\n`).
    pub fn get(&mut self, path: &str, extra: &str) -> &mut Client {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
        self.send(request)
    }

    /// Reads one response to a request of `method` (`HEAD` has no body).
    #[track_caller]
    pub fn read(&mut self, method: &str) -> Response {
        match read_response(&mut self.reader, method) {
            Ok(Some(r)) => r,
            Ok(None) => panic!("the server closed the connection instead of answering"),
            Err(e) => panic!("reading a response failed: {e}"),
        }
    }

    /// True if the server has closed the connection (the next read sees
    /// the end of the stream, or a reset), false if it sends more bytes.
    pub fn is_closed(&mut self) -> bool {
        match self.reader.fill_buf() {
            Ok(buf) => buf.is_empty(),
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
        }
    }
}

/// One request sent on a fresh connection, one response read (as for `method`).
#[track_caller]
pub fn request(addr: SocketAddr, raw: &str, method: &str) -> Response {
    let mut client = Client::connect(addr);
    client.send(raw);
    client.read(method)
}

/// `GET path` on a fresh connection.
#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let mut client = Client::connect(addr);
    client.get(path, "");
    client.read("GET")
}

/// Reads one response. `Ok(None)`: the stream ended before its first byte.
pub fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<Option<Response>> {
    let Some(status_line) = read_crlf(reader)? else {
        return Ok(None);
    };
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(bad(format!("not a status line: {status_line:?}")));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| bad(format!("bad code in {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_crlf(reader)?.ok_or_else(|| bad("the stream ended in the head".into()))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header without a colon: {line:?}")))?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        status_line,
        headers,
        body: Vec::new(),
    };
    if method == "HEAD" || status == 304 || status == 204 || status < 200 {
        return Ok(Some(response));
    }
    let chunked = response
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let length = response.header("content-length").map(str::to_string);
    if chunked {
        netlessons::framing::read_chunked(reader, &mut response.body, 1 << 34)?;
    } else if let Some(length) = length {
        let n: u64 = length
            .parse()
            .map_err(|_| bad(format!("bad length {length}")))?;
        let got = io::copy(&mut reader.take(n), &mut response.body)?;
        if got < n {
            return Err(bad(format!("body ended after {got} of {n} bytes")));
        }
    } else {
        reader.read_to_end(&mut response.body)?;
    }
    Ok(Some(response))
}

/// One head line, which must end in CRLF. `None` at a clean end of stream.
fn read_crlf(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    reader.take(70_000).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if !line.ends_with(b"\r\n") {
        return Err(bad(format!(
            "a head line that does not end in CRLF: {:?}",
            String::from_utf8_lossy(&line)
        )));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| bad("a head line that is not UTF-8".into()))
}

fn bad(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text)
}
