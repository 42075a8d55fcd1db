//! # 06_web_server: the course, served to your browser
//!
//! "The most common type of server you will interact with is a web server."
//! This one serves the files of one folder over HTTP/1.1 (RFC 9110, RFC
//! 9112) to any browser, `curl`, `wget` or phone on your network: GET and
//! HEAD, keep-alive and pipelining, directory listings, caching (`304`) and
//! ranges (`206`, which is how a video player seeks).
//!
//! ```text
//! cargo doc --no-deps
//! cargo run --example 06_web_server -- --root target/doc
//! # then open http://127.0.0.1:8080/netlessons/tutorial/
//! ```
//!
//! The files, in the order a request meets them:
//!
//! * `main.rs` (this file): the flags, and one connection's loop: read a
//!   request, answer it, again, until the connection closes.
//! * `request.rs`: reading the request head: lines, limits, errors, framing.
//! * `body.rs`: bodies both ways, each under one clock: the one a client
//!   sends (read and thrown away) and a big file sent back (streamed).
//! * `files.rs`: from a target to a file, safely; listings; MIME types.
//! * `ranges.rs`: `304 Not Modified` and `206 Partial Content`.
//! * `response.rs`: the status line, the headers, and the `Date`.
//!
//! Chapter 10 (`docs/10-web-server.md`) walks through them.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

mod body;
mod files;
mod ranges;
mod request;
mod response;

use body::MAX_REQUEST_BODY;
use files::{Resolved, Site};
use netlessons::cli::Command;
use netlessons::connection::Connection;
use netlessons::server::{Server, lingering_close};
use netlessons::trace::{Direction, escape};
use ranges::{RangeAnswer, Validators};
use request::{HeadError, Request};
use response::{Persistence, Status};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the server listens unless `--addr` says otherwise.
const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// A response body up to this size is copied behind its head in one buffer
/// and both leave in one `write`; a larger one is streamed from the file
/// after the head. Allocated once per connection, never per request.
const SMALL_BODY: usize = 16 * 1024;

/// Room for a response head in the same buffer.
const HEAD_ROOM: usize = 2 * 1024;

/// The `404.html` page (chapter 10's exercise) is served if it is at most
/// this large.
const MAX_ERROR_PAGE: u64 = 64 * 1024;

/// What a client over `--max-conns` is told before it is closed. It is
/// made once at start, so it carries no `Date` (a simplification: RFC 9110
/// asks for one whenever the server has a clock).
fn busy_reply() -> Vec<u8> {
    let body = "<!DOCTYPE html>\n<html><body><h1>503 Service Unavailable</h1>\
                <p>Too many connections; try again in a second.</p></body></html>\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nServer: {}\r\nRetry-After: 1\r\n\
         Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        response::SERVER,
        body.len()
    )
    .into_bytes()
}

/// Everything a connection thread needs to know.
struct Config {
    site: Site,
    /// Log one line per response (`--quiet` turns it off).
    log: bool,
    idle_timeout: Option<Duration>,
    /// The line clock (30 s), which also bounds a chunked body's wait.
    line_timeout: Option<Duration>,
}

fn main() -> ExitCode {
    netlessons::cli::exit_status(run())
}

/// Checks the root, binds, prints the address, and serves until stopped. An
/// error here (the port is taken, the root is not a folder) goes back to
/// `main`, which prints it.
fn run() -> io::Result<()> {
    let args = command().parse_env();
    let root_arg = PathBuf::from(args.get("--root").unwrap_or("."));
    // Canonical once, at start: every file served must lie under this path.
    let root = match fs::canonicalize(&root_arg) {
        Ok(root) if root.is_dir() => root,
        Ok(_) => {
            let message = format!("--root {} is not a folder", root_arg.display());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        Err(e) => {
            let message = format!("cannot serve {}: {e}", root_arg.display());
            return Err(io::Error::new(e.kind(), message));
        }
    };
    let config = args.server_config("http", Some(&busy_reply()));
    let shared = Arc::new(Config {
        site: Site {
            root,
            listing: !args.flag("--no-listing"),
        },
        log: !args.flag("--quiet"),
        idle_timeout: config.idle_timeout,
        line_timeout: config.line_timeout,
    });
    let server = Server::bind(config)?;
    println!("listening on {}", server.local_addr());
    let _ = io::stdout().flush();
    print_welcome(server.local_addr(), &shared.site.root);
    server.serve(move |conn| serve_connection(conn, &shared))
}

/// The command line: the flags every server has, and the folder to serve.
fn command() -> Command {
    Command::new(
        "06_web_server",
        "A web server: serves the files under a folder over HTTP/1.1 to browsers, curl and wget.",
    )
    .server_options(DEFAULT_ADDR, Some(15))
    .opt("--root", "DIR", "the folder to serve", Some("."))
    .flag(
        "--no-listing",
        "answer 404 for a folder without index.html instead of listing it",
    )
    .flag("--quiet", "no log line per response (for benchmarks)")
    .after_help(
        "Serve this course to your browser:\n  \
         cargo doc --no-deps\n  \
         cargo run --example 06_web_server -- --root target/doc\n  \
         then open http://127.0.0.1:8080/netlessons/tutorial/\n\n\
         With --addr 0.0.0.0:8080, other devices on your network can connect too.",
    )
}

/// Tells a person on stderr what is served and how to look at it.
fn print_welcome(addr: SocketAddr, root: &Path) {
    // 0.0.0.0 means "every address of this machine": not one to type into
    // a browser here, where 127.0.0.1 reaches the same server.
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        }
    };
    let mut path = "/";
    if root.join("netlessons/tutorial/index.html").is_file() {
        path = "/netlessons/tutorial/"; // the course itself, from `cargo doc`
    }
    netlessons::log!("serving the folder {}", root.display());
    netlessons::log!("try:  curl -v http://{host}:{}{path}", addr.port());
    netlessons::log!("or open http://{host}:{}{path} in a browser", addr.port());
    if addr.ip().is_unspecified() {
        netlessons::log!(
            "other devices on your network: use this machine's address instead of {host}"
        );
    }
}

/// One connection: read a request, answer it, and again, until either side
/// closes. Requests sent before their answers (pipelining) are simply read
/// in turn, so they are answered in order.
fn serve_connection(mut conn: Connection, config: &Config) -> io::Result<()> {
    // The one buffer this connection's responses are built in (head plus a
    // small body), reused for every request.
    let mut out = Vec::with_capacity(HEAD_ROOM + SMALL_BODY);
    loop {
        let request = match request::read_head(&mut conn) {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()), // the client closed between requests
            Err(HeadError::Refuse { status, line }) => {
                let started = Instant::now();
                let sent = send_error(&mut conn, &mut out, status, false, Persistence::Close);
                log(config, &conn, &line, status, sent?, started);
                lingering_close(&mut conn, MAX_REQUEST_BODY);
                return Ok(());
            }
            Err(HeadError::Io(e)) => return Err(e),
        };
        let (status, sent, persistence) = answer(&mut conn, config, &request, &mut out)?;
        log(
            config,
            &conn,
            request.line.as_bytes(),
            status,
            sent,
            request.started,
        );
        if persistence == Persistence::Close {
            lingering_close(&mut conn, MAX_REQUEST_BODY);
            return Ok(());
        }
    }
}

/// Answers one request: checks what the head allows, discards any body the
/// client sent, then serves the target. Returns the status, the body bytes
/// sent and what became of the connection.
fn answer(
    conn: &mut Connection,
    config: &Config,
    request: &Request,
    out: &mut Vec<u8>,
) -> io::Result<(Status, u64, Persistence)> {
    let head_only = request.method == "HEAD";
    let refusal = match request.method.as_str() {
        "GET" | "HEAD" => body::discard_body(conn, request, config.line_timeout)?.err(),
        "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "TRACE" | "CONNECT" => {
            Some(Status::MethodNotAllowed)
        }
        _ => Some(Status::NotImplemented),
    };
    if let Some(status) = refusal {
        // The body, if any, is left unread: we close after this answer.
        let sent = send_error(conn, out, status, head_only, Persistence::Close)?;
        return Ok((status, sent, Persistence::Close));
    }
    let persistence = match (request.keep_alive(), request.minor) {
        (false, _) => Persistence::Close,
        (true, 0) => Persistence::KeepAlive10,
        (true, _) => Persistence::KeepAlive,
    };
    let (status, sent) = match files::resolve(&config.site, &request.target) {
        Resolved::File { file, meta, mime } => {
            serve_file(conn, config, request, out, (file, meta, mime), persistence)?
        }
        Resolved::Redirect(location) => {
            let page = response::error_page(
                Status::MovedPermanently,
                &format!(
                    "Moved to <a href=\"{0}\">{0}</a>.",
                    files::html_escape(&location)
                ),
            );
            response::start_head(out, Status::MovedPermanently, page.len() as u64);
            response::header(out, "Location", &location);
            finish_page(conn, out, page.as_bytes(), head_only, persistence)
                .map(|n| (Status::MovedPermanently, n))?
        }
        Resolved::Listing(html) => {
            response::start_head(out, Status::Ok, html.len() as u64);
            finish_page(conn, out, html.as_bytes(), head_only, persistence)
                .map(|n| (Status::Ok, n))?
        }
        Resolved::NotFound => not_found(conn, config, out, head_only, persistence)?,
        Resolved::BadRequest => {
            let status = Status::BadRequest;
            let sent = send_error(conn, out, status, head_only, Persistence::Close)?;
            return Ok((status, sent, Persistence::Close));
        }
        Resolved::Forbidden => {
            let status = Status::Forbidden;
            (
                status,
                send_error(conn, out, status, head_only, persistence)?,
            )
        }
    };
    Ok((status, sent, persistence))
}

/// Serves a file: `304` if the client's copy is current, else `200`, or
/// `206`/`416` for a range. Returns the status and the body bytes sent.
fn serve_file(
    conn: &mut Connection,
    config: &Config,
    request: &Request,
    out: &mut Vec<u8>,
    (mut file, meta, mime): (File, fs::Metadata, &'static str),
    persistence: Persistence,
) -> io::Result<(Status, u64)> {
    let size = meta.len();
    let validators = Validators::of(&meta);
    let head_only = request.method == "HEAD";
    let (status, first, len) = if ranges::not_modified(request, &validators) {
        (Status::NotModified, 0, 0)
    } else {
        // A HEAD ignores Range (RFC 9110 §14.2): its answer is the 200's head.
        let answer = if head_only {
            RangeAnswer::Whole
        } else {
            ranges::range(request, &validators, size)
        };
        match answer {
            RangeAnswer::Whole => (Status::Ok, 0, size),
            RangeAnswer::Part { first, last } => (Status::PartialContent, first, last - first + 1),
            RangeAnswer::Unsatisfiable => {
                let status = Status::RangeNotSatisfiable;
                let page = response::error_page(status, "That range lies outside the file.");
                response::start_head(out, status, page.len() as u64);
                response::header(out, "Content-Range", &format!("bytes */{size}"));
                let sent = finish_page(conn, out, page.as_bytes(), head_only, persistence)?;
                return Ok((status, sent));
            }
        }
    };
    // A 304 carries the validators but no body; its Content-Length is the
    // one the 200 would have had (RFC 9110 §8.6).
    response::start_head(
        out,
        status,
        if status == Status::NotModified {
            size
        } else {
            len
        },
    );
    response::header(out, "Content-Type", mime);
    response::header(out, "X-Content-Type-Options", "nosniff");
    response::header(out, "Last-Modified", &validators.last_modified());
    response::header(out, "ETag", &validators.etag);
    response::header(out, "Accept-Ranges", "bytes");
    if status == Status::PartialContent {
        let range = format!("bytes {first}-{}/{size}", first + len - 1);
        response::header(out, "Content-Range", &range);
    }
    response::end_head(out, persistence);
    trace_head(conn, out);
    if head_only || status == Status::NotModified {
        write_all(conn, out)?;
        return Ok((status, 0));
    }
    if first > 0 {
        file.seek(SeekFrom::Start(first))?;
    }
    if len <= SMALL_BODY as u64 {
        // Head and body in one write: one system call, one packet.
        let head_len = out.len();
        out.resize(head_len + len as usize, 0);
        file.read_exact(&mut out[head_len..])?;
        write_all(conn, out)?;
    } else {
        write_all(conn, out)?;
        body::stream_file(conn.socket(), &file, len, config.idle_timeout)?;
    }
    conn.trace().body(Direction::Sent, len as usize);
    Ok((status, len))
}

/// A `404`: the site's own `404.html` if it has one (chapter 10's
/// exercise), else our short page. The connection stays open.
fn not_found(
    conn: &mut Connection,
    config: &Config,
    out: &mut Vec<u8>,
    head_only: bool,
    persistence: Persistence,
) -> io::Result<(Status, u64)> {
    let status = Status::NotFound;
    let custom = config.site.root.join("404.html");
    let page = match fs::metadata(&custom) {
        Ok(meta) if meta.is_file() && meta.len() <= MAX_ERROR_PAGE => fs::read(&custom).ok(),
        _ => None,
    };
    let page = page.unwrap_or_else(|| {
        response::error_page(status, "There is no such file here.").into_bytes()
    });
    response::start_head(out, status, page.len() as u64);
    Ok((
        status,
        finish_page(conn, out, &page, head_only, persistence)?,
    ))
}

/// Sends an error response with its short HTML page. Returns the body bytes sent.
fn send_error(
    conn: &mut Connection,
    out: &mut Vec<u8>,
    status: Status,
    head_only: bool,
    persistence: Persistence,
) -> io::Result<u64> {
    let detail = match status {
        Status::MethodNotAllowed => "This server only reads files: GET and HEAD.",
        Status::NotImplemented => "This server does not implement that.",
        Status::Forbidden => "The server may not read that file.",
        _ => "The server could not accept this request.",
    };
    let page = response::error_page(status, detail);
    response::start_head(out, status, page.len() as u64);
    if status == Status::MethodNotAllowed {
        response::header(out, "Allow", "GET, HEAD");
    }
    finish_page(conn, out, page.as_bytes(), head_only, persistence)
}

/// Ends a head for an HTML page and sends head and page (one write when
/// the page is small). Returns the body bytes sent.
fn finish_page(
    conn: &mut Connection,
    out: &mut Vec<u8>,
    page: &[u8],
    head_only: bool,
    persistence: Persistence,
) -> io::Result<u64> {
    response::header(out, "Content-Type", "text/html; charset=utf-8");
    response::header(out, "X-Content-Type-Options", "nosniff");
    response::end_head(out, persistence);
    trace_head(conn, out);
    if head_only {
        write_all(conn, out)?;
        return Ok(0);
    }
    if page.len() <= SMALL_BODY {
        out.extend_from_slice(page);
        write_all(conn, out)?;
    } else {
        write_all(conn, out)?;
        write_all(conn, page)?;
    }
    conn.trace().body(Direction::Sent, page.len());
    Ok(page.len() as u64)
}

/// Writes straight to the socket: the response is already one piece in our
/// buffer, so the connection's own write buffer would only add a copy.
fn write_all(conn: &mut Connection, bytes: &[u8]) -> io::Result<()> {
    conn.flush()?;
    let mut socket = conn.socket();
    socket.write_all(bytes)
}

/// `--trace`: shows each line of the head we are about to send.
fn trace_head(conn: &Connection, head: &[u8]) {
    if conn.trace().is_on() {
        for line in head.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                conn.trace().line(Direction::Sent, line);
            }
        }
    }
}

/// The log line: `127.0.0.1:50412 "GET / HTTP/1.1" 200 5120 0.4ms`.
fn log(config: &Config, conn: &Connection, line: &[u8], status: Status, sent: u64, since: Instant) {
    if config.log {
        let ms = since.elapsed().as_secs_f64() * 1000.0;
        let _ = writeln!(
            io::stderr().lock(),
            "{} \"{}\" {} {sent} {ms:.1}ms",
            conn.peer_addr(),
            escape(line),
            status.code()
        );
    }
}
