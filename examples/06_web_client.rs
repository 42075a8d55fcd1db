//! # 06_web_client: a small curl
//!
//! Fetches one URL over HTTP/1.1 and prints the body on stdout (the status
//! line and headers go to stderr, as `curl -v` shows them):
//!
//! ```text
//! cargo run --example 06_web_server                        # terminal 1
//! cargo run --example 06_web_client -- http://127.0.0.1:8080/   # terminal 2
//! cargo run --example 06_web_client -- -I http://127.0.0.1:8080/Cargo.toml
//! cargo run --example 06_web_client -- -r 0-99 http://127.0.0.1:8080/README.md
//! ```
//!
//! A response body is framed in one of three ways, and a client must handle
//! all of them: a `Content-Length` (a counted body, chapter 5),
//! `Transfer-Encoding: chunked` (hex length-prefixed pieces, chapter 3 in
//! text form: what real servers send when they do not know the length in
//! advance), or neither, when the body runs until the server closes.
//!
//! Redirects (`301`, `302`, `303`, `307`, `308`) are followed, up to five, on
//! the same host only. Everything else that is not a `2xx` is an error: exit
//! status 1 and one line saying what happened.
//!
//! A simplification: no `https://` (that needs TLS, which std does not have),
//! no cookies, no compression, one connection per request.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

use netlessons::cli::Command;
use netlessons::connection::{Connection, LineEnding};
use netlessons::framing::{self, is_too_long};
use std::fs::File;
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// How long to wait to connect, and for each piece of the response (the
/// hidden `--timeout-secs` shortens it for tests).
const TIMEOUT_SECS: &str = "30";
/// The longest status or header line we accept.
const MAX_LINE: usize = 64 * 1024;
/// The most headers we accept in one response.
const MAX_HEADERS: usize = 200;
/// The most redirects we follow (curl's `--max-redirs` is 50; browsers ~20).
const MAX_REDIRECTS: usize = 5;

fn main() -> ExitCode {
    let args = Command::new(
        "06_web_client",
        "Fetches a URL over HTTP/1.1, like a small curl.",
    )
    .positional("URL", "what to fetch: http://HOST[:PORT]/PATH")
    .flag("--head", "send HEAD instead of GET: headers only")
    .alias("-I", "--head")
    .opt(
        "--output",
        "FILE",
        "write the body to FILE instead of stdout",
        None,
    )
    .alias("-o", "--output")
    .opt(
        "--range",
        "RANGE",
        "ask for part of the body, as curl writes it: 0-99, 100-, -50",
        None,
    )
    .alias("-r", "--range")
    .flag("--trace", "show every line that crosses the wire on stderr")
    .hidden_opt("--timeout-secs", Some(TIMEOUT_SECS))
    .parse_env();
    let [url] = args.positionals() else {
        args.fail("give exactly one URL, for example http://127.0.0.1:8080/");
    };
    let options = Options {
        head: args.flag("--head"),
        range: args.get("--range").map(str::to_string),
        trace: args.flag("--trace"),
        timeout: Duration::from_secs(args.value::<u64>("--timeout-secs").max(1)),
    };
    netlessons::cli::exit_status(run(url, &options, args.get("--output")))
}

/// Fetches `url` into `output` (a file) or stdout. An error (the file cannot
/// be made, the server refuses) goes back to `main`, which prints it.
fn run(url: &str, options: &Options, output: Option<&str>) -> io::Result<()> {
    let mut sink: Box<dyn Write> = match output {
        Some(path) => match File::create(path) {
            Ok(file) => Box::new(io::BufWriter::new(file)),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot write {path}: {e}"),
                ));
            }
        },
        None => Box::new(io::stdout().lock()),
    };
    fetch(url, options, &mut *sink)?;
    sink.flush()
}

/// What the flags ask of [`fetch`].
struct Options {
    head: bool,
    range: Option<String>,
    trace: bool,
    timeout: Duration,
}

/// An `http://` URL, split into what a request needs.
#[derive(Debug, Clone)]
struct Url {
    /// `host:port` as written (the `Host` header), port included if given.
    authority: String,
    /// Where to connect: host and port (80 if none was given).
    connect_to: String,
    /// The path and query: `/index.html?x=1`.
    target: String,
}

impl Url {
    fn parse(text: &str) -> io::Result<Url> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{why}: {text}"));
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(bad(
                    "https needs TLS, which this small client does not speak",
                ));
            }
            _ => return Err(bad("not an http:// URL")),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') || authority.contains(' ') {
            return Err(bad("no usable host in the URL"));
        }
        // A port is what follows the last ':', unless it is inside [IPv6].
        let has_port = authority
            .rfind(':')
            .is_some_and(|i| !authority[i..].contains(']'));
        let connect_to = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Url {
            authority: authority.to_string(),
            connect_to,
            target,
        })
    }

    /// Where a `Location` leads from this URL. Only the same host (and
    /// port) is followed: a redirect elsewhere is an error, not a surprise.
    fn follow(&self, location: &str) -> io::Result<Url> {
        let next = if location.contains("://") {
            Url::parse(location)?
        } else if let Some(rest) = location.strip_prefix("//") {
            Url::parse(&format!("http://{rest}"))?
        } else if location.starts_with('/') {
            Url {
                target: location.to_string(),
                ..self.clone()
            }
        } else {
            // Relative to the current path's folder.
            let path = self.target.split('?').next().unwrap_or("/");
            let folder = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            Url {
                target: format!("{folder}{location}"),
                ..self.clone()
            }
        };
        if !next.connect_to.eq_ignore_ascii_case(&self.connect_to) {
            return Err(io::Error::other(format!(
                "redirected to another host ({location}); not followed"
            )));
        }
        Ok(next)
    }
}

/// Fetches `url`, following same-host redirects, and writes the body to `sink`.
fn fetch(url: &str, options: &Options, sink: &mut dyn Write) -> io::Result<()> {
    let mut url = Url::parse(url)?;
    for _ in 0..=MAX_REDIRECTS {
        let mut conn = connect(&url, options)?;
        send_request(&mut conn, &url, options)?;
        let head = read_head(&mut conn)?;
        let redirect = matches!(head.status, 301 | 302 | 303 | 307 | 308);
        if let (true, Some(location)) = (redirect, head.header("location")) {
            netlessons::log!("* following the redirect to {location}");
            url = url.follow(location)?;
            continue;
        }
        if !options.head && !matches!(head.status, 204 | 304) {
            read_body(&mut conn, &head, sink)?;
        }
        return if (200..300).contains(&head.status) {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "the server answered {}",
                head.status_line
            )))
        };
    }
    Err(io::Error::other(format!(
        "more than {MAX_REDIRECTS} redirects; giving up"
    )))
}

fn connect(url: &Url, options: &Options) -> io::Result<Connection> {
    let addrs = url.connect_to.to_socket_addrs().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot find the address of {}: {e}", url.authority),
        )
    })?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, options.timeout) {
            Ok(stream) => {
                let mut conn = Connection::new(stream, options.trace)?;
                conn.set_idle_timeout(Some(options.timeout))?;
                conn.set_line_ending(LineEnding::CrLf);
                return Ok(conn);
            }
            Err(e) => last = e,
        }
    }
    Err(netlessons::connection::connect_error(&url.authority, last))
}

fn send_request(conn: &mut Connection, url: &Url, options: &Options) -> io::Result<()> {
    let method = if options.head { "HEAD" } else { "GET" };
    conn.send_line(format!("{method} {} HTTP/1.1", url.target))?;
    conn.send_line(format!("Host: {}", url.authority))?;
    conn.send_line("User-Agent: netlessons-06_web_client")?;
    conn.send_line("Accept: */*")?;
    if let Some(range) = &options.range {
        conn.send_line(format!("Range: bytes={range}"))?;
    }
    // One request per connection: say so, and the server closes after it.
    conn.send_line("Connection: close")?;
    conn.send_line("")?;
    conn.flush()
}

/// A response's status line and headers.
struct Head {
    status: u16,
    status_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed response: {what}"),
    )
}

/// Reads the status line and headers, printing them on stderr.
fn read_head(conn: &mut Connection) -> io::Result<Head> {
    let next_line = |conn: &mut Connection| -> io::Result<String> {
        match conn.read_line(MAX_LINE) {
            Ok(Some(line)) => String::from_utf8(line).map_err(|_| malformed("a line is not UTF-8")),
            Ok(None) => Err(malformed(
                "the server closed the connection without an answer",
            )),
            Err(e) if is_too_long(&e) => Err(malformed("a line is too long")),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from the server in time: {e}"),
            )),
            Err(e) => Err(e),
        }
    };
    let status_line = next_line(conn)?;
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(malformed(&format!("not a status line: {status_line:?}")));
    }
    let status = code
        .parse()
        .map_err(|_| malformed("the status is not a number"))?;
    netlessons::log!("< {status_line}");
    let mut headers = Vec::new();
    loop {
        let line = next_line(conn)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(malformed("too many headers"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed(&format!("a header without a colon: {line:?}")))?;
        netlessons::log!("< {name}: {}", value.trim());
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        status,
        status_line,
        headers,
    })
}

/// Reads the body, however it is framed, into `sink`.
fn read_body(conn: &mut Connection, head: &Head, sink: &mut dyn Write) -> io::Result<()> {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().ends_with("chunked"));
    if chunked {
        framing::read_chunked(conn, sink, u64::MAX)?;
        return Ok(());
    }
    if let Some(length) = head.header("content-length") {
        let length: u64 = length
            .parse()
            .map_err(|_| malformed(&format!("Content-Length {length:?}")))?;
        let mut sink = sink;
        return conn.read_body(length, &mut sink, |_| {});
    }
    // Neither: the body is everything until the server closes.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.read_some(&mut buf)? {
            0 => return Ok(()),
            n => sink.write_all(&buf[..n])?,
        }
    }
}
