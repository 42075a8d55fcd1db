//! The web server's contract (`06_web_server`), checked over raw sockets:
//! every status, every header, keep-alive, pipelining, path safety,
//! listings, conditional and range requests, and large files.
//!
//! Real clients the crate did not write (curl, wget, Python, Chromium) are
//! in `interop.rs`, the small curl (`06_web_client`) in `client.rs`;
//! chapter 10's exercises are checked here. Point it at your own server:
//! `NETLESSONS_06_WEB_SERVER="python3 my_server.py" cargo test --test ex06_web`.

#[path = "../common/mod.rs"]
mod common;

mod caching;
mod client;
mod errors;
mod interop;
mod paths;

use common::http::{self, Client, Response};
use common::{Server, reference_only, temp_dir};
use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SERVER: &str = "06_web_server";
const CLIENT: &str = "06_web_client";

/// The contents of `hello.txt`: 1000 bytes that differ, so a wrong range shows.
fn hello() -> Vec<u8> {
    (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Starts the server on a fresh copy of the test site.
fn start(name: &str, args: &[&str]) -> (Server, PathBuf) {
    let root = site(name);
    let mut all = vec!["--root", root.to_str().unwrap()];
    all.extend_from_slice(args);
    (Server::start(SERVER, &all), root)
}

/// Starts the server for `test`, a test of the reference's own flags: under
/// an override it says the test was skipped and gives `None`.
fn start_reference(test: &str, args: &[&str]) -> Option<(Server, PathBuf)> {
    reference_only(SERVER, test).then(|| start(test, args))
}

/// `GET path` on a fresh connection, returning the response.
fn get(server: &Server, path: &str) -> Response {
    http::get(server.addr(), path)
}

/// Sends `raw` on a fresh connection; returns the response and whether the
/// server closed the connection after it.
fn exchange(server: &Server, raw: &str) -> (Response, bool) {
    let mut client = Client::connect(server.addr());
    client.send(raw);
    let method = raw.split(' ').next().unwrap_or("GET");
    let response = client.read(method);
    let closed = client.is_closed();
    (response, closed)
}

/// A 200 carries every header of the contract, and the body exactly.
#[test]
fn serves_a_file_with_every_header() {
    let (server, _root) = start("every_header", &[]);
    let r = get(&server, "/hello.txt");
    assert_eq!(r.status_line, "HTTP/1.1 200 OK");
    assert_eq!(r.body, hello());
    assert_eq!(r.header("content-length"), Some("1000"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("server"), Some("netlessons-06_web_server"));
    assert_imf_fixdate(r.header("date").expect("a Date header"));
    assert_imf_fixdate(r.header("last-modified").expect("a Last-Modified header"));
    let etag = r.header("etag").expect("an ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    // The same file gives the same tag; a changed file a different one.
    assert_eq!(get(&server, "/hello.txt").header("etag"), Some(etag));
}

/// HEAD answers the GET's head without its body: the next response on the
/// same connection starts right after the head.
#[test]
fn head_has_the_headers_and_no_body() {
    let (server, _root) = start("head", &[]);
    let mut client = Client::connect(server.addr());
    client.send("HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.read("HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert!(head.body.is_empty());
    client.get("/hello.txt", "");
    let r = client.read("GET");
    assert_eq!(r.body, hello());
    assert_eq!(r.header("etag"), head.header("etag"));
}

/// Content-Type by the last extension, in any case; unknown is octet-stream.
#[test]
fn mime_types_by_last_extension() {
    let (server, _root) = start("mime", &[]);
    let mut client = Client::connect(server.addr());
    for (name, mime) in TYPES {
        client.get(&format!("/types/{name}"), "");
        let r = client.read("GET");
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(mime), "{name}");
    }
}

/// One connection serves many requests (HTTP/1.1 persists by default).
#[test]
fn keep_alive_serves_many_requests() {
    let (server, _root) = start("keep_alive", &[]);
    let mut client = Client::connect(server.addr());
    for _ in 0..50 {
        client.get("/hello.txt", "");
        let r = client.read("GET");
        assert_eq!(r.status, 200);
        assert!(!r.closes());
    }
}

/// Requests sent together in one write are answered in order.
#[test]
fn pipelined_requests_answered_in_order() {
    let (server, _root) = start("pipelining", &[]);
    let mut client = Client::connect(server.addr());
    client.send(
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n\
         HEAD /index.html HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /missing HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /types/data.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(client.read("GET").body, hello());
    let head = client.read("HEAD");
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(client.read("GET").status, 404);
    let last = client.read("GET");
    assert_eq!(last.body, b"{\"ok\": true}\n");
    assert!(last.closes());
    assert!(client.is_closed());
}

/// `Connection: close` from the client closes after that response, and the
/// response says so.
#[test]
fn connection_close_closes() {
    let (server, _root) = start("conn_close", &[]);
    let (r, closed) = exchange(
        &server,
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(r.closes() && closed);
}

/// HTTP/1.0 closes unless it asks for keep-alive; then the answer says
/// `Connection: keep-alive` and the connection stays open.
#[test]
fn http10_with_and_without_keep_alive() {
    let (server, _root) = start("http10", &[]);
    let (r, closed) = exchange(&server, "GET /hello.txt HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.body.len()), (200, 1000));
    assert!(closed, "HTTP/1.0 without keep-alive must close");
    let mut client = Client::connect(server.addr());
    for _ in 0..3 {
        client.send("GET /hello.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = client.read("GET");
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(r.body, hello());
    }
}

/// A body on a GET (counted or chunked) is read and thrown away, so its
/// bytes are never taken for the next request.
#[test]
fn get_body_is_discarded() {
    let (server, _root) = start("get_body", &[]);
    let mut client = Client::connect(server.addr());
    // The body looks like a request: if it were not discarded, it would be answered.
    let fake = "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n";
    client.send(format!(
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{fake}",
        fake.len()
    ));
    assert_eq!(client.read("GET").status, 200);
    client.send(format!(
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{fake}\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n",
        fake.len()
    ));
    assert_eq!(client.read("GET").status, 200);
    client.get("/index.html", "");
    let r = client.read("GET");
    assert_eq!(r.status, 200, "the request after the bodies");
    assert!(r.text().contains("home"));
}

/// A kept-alive connection that sends nothing is closed after
/// `--idle-timeout`.
#[test]
fn idle_connection_is_closed() {
    let Some((server, _root)) =
        start_reference("idle_connection_is_closed", &["--idle-timeout", "1"])
    else {
        return;
    };
    let mut client = Client::connect(server.addr());
    client.get("/hello.txt", "");
    assert_eq!(client.read("GET").status, 200);
    let start = Instant::now();
    assert!(client.is_closed(), "the idle connection must be closed");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        start.elapsed()
    );
    // A spare connection that never sends a byte is closed too.
    let mut spare = Client::connect(server.addr());
    assert!(spare.is_closed());
}

/// Past `--max-conns`, a client gets `503` with `Retry-After: 1`.
#[test]
fn max_conns_gives_503() {
    let Some((server, _root)) = start_reference("max_conns_gives_503", &["--max-conns", "1"])
    else {
        return;
    };
    // The first connection is served, and holds the one slot.
    let mut first = Client::connect(server.addr());
    assert_eq!(first.get("/hello.txt", "").read("GET").status, 200);
    // Read before sending: the refusal comes at once, unasked.
    let mut second = Client::connect(server.addr());
    let r = second.read("GET");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.closes() && second.is_closed());
    // The first connection still works, and when it goes, a new one may come.
    first.get("/hello.txt", "Connection: close\r\n");
    assert_eq!(first.read("GET").status, 200);
    assert!(first.is_closed());
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut third = Client::connect(server.addr());
        // A refused connection may be reset under our request: just retry.
        let _ = third
            .stream
            .write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        let status = http::read_response(&mut third.reader, "GET")
            .ok()
            .flatten()
            .map(|r| r.status);
        if status == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--trace` shows each head both ways, bodies summarised.
#[test]
fn trace_shows_heads_both_ways() {
    let Some((server, _root)) = start_reference("trace_shows_heads_both_ways", &["--trace"]) else {
        return;
    };
    get(&server, "/hello.txt");
    for needle in [
        "<- GET /hello.txt HTTP/1.1",
        "<- Host: test",
        "-> HTTP/1.1 200 OK",
        "-> Content-Length: 1000",
        "-> [1000 bytes]",
    ] {
        server.expect_stderr(needle, Duration::from_secs(10));
    }
}

/// One log line per response, with peer, request line, status, bytes, time.
#[test]
fn log_line_per_response() {
    let Some((server, _root)) = start_reference("log_line_per_response", &[]) else {
        return;
    };
    get(&server, "/hello.txt");
    get(&server, "/missing\x7f");
    server.expect_stderr(
        "\"GET /hello.txt HTTP/1.1\" 200 1000 ",
        Duration::from_secs(10),
    );
    // The rest of the line may still be on its way through the pipe: wait
    // for its end (an "ms" then a newline) as well.
    server.expect_stderr("ms\n", Duration::from_secs(10));
    let log = server.stderr();
    let line = log.lines().find(|l| l.contains("/hello.txt")).unwrap();
    assert!(
        line.starts_with("127.0.0.1:") && line.ends_with("ms"),
        "{line}"
    );
    // A request line with a control byte is refused, and logged escaped.
    server.expect_stderr(
        "\"GET /missing\\x7f HTTP/1.1\" 400",
        Duration::from_secs(10),
    );
}

/// `--quiet` writes no log line per response.
#[test]
fn quiet_means_no_log() {
    let Some((server, _root)) = start_reference("quiet_means_no_log", &["--quiet"]) else {
        return;
    };
    assert_eq!(get(&server, "/hello.txt").status, 200);
    assert_eq!(get(&server, "/missing").status, 404);
    // The log line would be written before the response: none can be late.
    assert!(!server.stderr().contains("\"GET "), "{}", server.stderr());
}

/// Without `--root`, the folder the server runs in is served.
#[test]
fn default_root_is_the_current_folder() {
    // Under an override the learner's program runs from the crate's folder
    // (see tests/common), so its default folder cannot be pointed here.
    if !reference_only(SERVER, "default_root_is_the_current_folder") {
        return;
    }
    let root = site("default_root");
    let cmd = common::command_in(SERVER, &root);
    let mut cmd = cmd;
    cmd.args(["--addr", "127.0.0.1:0"]);
    let server = Server::start_command(SERVER, cmd, 1);
    let r = get(&server, "/hello.txt");
    assert_eq!((r.status, r.body), (200, hello()));
}

/// The start-up text names the folder and gives a curl command and a URL.
#[test]
fn startup_tells_what_and_how() {
    let Some((server, root)) = start_reference("startup_tells_what_and_how", &[]) else {
        return;
    };
    let shown = fs::canonicalize(&root).unwrap();
    server.expect_stderr(&shown.display().to_string(), Duration::from_secs(10));
    server.expect_stderr(
        &format!("curl -v http://127.0.0.1:{}/", server.addr().port()),
        Duration::from_secs(10),
    );
    server.expect_stderr(
        &format!("open http://127.0.0.1:{}/", server.addr().port()),
        Duration::from_secs(10),
    );
}

/// `--help` prints usage; an unknown flag is a usage error.
#[test]
fn help_and_bad_flags() {
    for (program, usage) in [(SERVER, "--root DIR"), (CLIENT, "URL")] {
        common::check_help_and_unknown_flag(program, usage, Duration::from_secs(60));
    }
}

// ---------------------------------------------------------------------------
// Chapter 10's exercises (implemented in the reference).

/// Exercise 1: subtitles (`.vtt`) are served as `text/vtt; charset=utf-8`.
#[test]
fn exercise_1_vtt_mime_type() {
    let (server, _root) = start("ex1", &[]);
    let r = get(&server, "/types/subs.vtt");
    assert_eq!(r.header("content-type"), Some("text/vtt; charset=utf-8"));
}

/// Exercise 2: `If-Modified-Since` equal to or after the file's date is
/// answered `304`, an earlier date `200`.
#[test]
fn exercise_2_if_modified_since() {
    let (server, _root) = start("ex2", &[]);
    let date = get(&server, "/hello.txt")
        .header("last-modified")
        .unwrap()
        .to_string();
    let mut client = Client::connect(server.addr());
    client.get("/hello.txt", &format!("If-Modified-Since: {date}\r\n"));
    assert_eq!(client.read("GET").status, 304);
    client.get(
        "/hello.txt",
        "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n",
    );
    assert_eq!(client.read("GET").status, 200);
}

/// Exercise 3: with a `404.html` in the root, a missing file is answered
/// with that page (status still 404, connection kept).
#[test]
fn exercise_3_custom_404_page() {
    let (server, root) = start("ex3", &[]);
    fs::write(
        root.join("404.html"),
        "<h1>lost? try the <a href=\"/\">home page</a></h1>\n",
    )
    .unwrap();
    let mut client = Client::connect(server.addr());
    client.get("/nowhere", "");
    let r = client.read("GET");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("lost? try"), "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    client.get("/hello.txt", "");
    assert_eq!(client.read("GET").status, 200);
}

// ---------------------------------------------------------------------------
// Helpers.

/// Checks the IMF-fixdate shape: `Sun, 06 Nov 1994 08:49:37 GMT`.
#[track_caller]
fn assert_imf_fixdate(date: &str) {
    let b = date.as_bytes();
    let ok = b.len() == 29
        && ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&date[..3])
        && &date[3..5] == ", "
        && b[5..7].iter().all(u8::is_ascii_digit)
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&&date[8..11])
        && b[12..16].iter().all(u8::is_ascii_digit)
        && b[19] == b':'
        && b[22] == b':'
        && date.ends_with(" GMT");
    assert!(ok, "not an IMF-fixdate: {date:?}");
}

/// The peak resident memory of a process (Linux `VmHWM`), if known.
fn peak_memory_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The files under the test site's `types/`, and the `Content-Type` each
/// must be served with.
const TYPES: [(&str, &str); 31] = [
    ("index.html", "text/html; charset=utf-8"),
    ("page.HTM", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("mod.mjs", "text/javascript; charset=utf-8"),
    ("data.json", "application/json"),
    ("notes.md", "text/plain; charset=utf-8"),
    ("main.rs", "text/plain; charset=utf-8"),
    ("Cargo.toml", "text/plain; charset=utf-8"),
    ("Cargo.lock", "text/plain; charset=utf-8"),
    ("table.csv", "text/plain; charset=utf-8"),
    ("logo.svg", "image/svg+xml"),
    ("pic.png", "image/png"),
    ("photo.jpg", "image/jpeg"),
    ("photo.jpeg", "image/jpeg"),
    ("anim.gif", "image/gif"),
    ("pic.webp", "image/webp"),
    ("favicon.ico", "image/x-icon"),
    ("font.woff2", "font/woff2"),
    ("font.woff", "font/woff"),
    ("font.ttf", "font/ttf"),
    ("prog.wasm", "application/wasm"),
    ("book.pdf", "application/pdf"),
    ("movie.mp4", "video/mp4"),
    ("movie.webm", "video/webm"),
    ("song.mp3", "audio/mpeg"),
    ("song.ogg", "audio/ogg"),
    ("sound.wav", "audio/wav"),
    ("all.zip", "application/zip"),
    ("backup.tar.gz", "application/octet-stream"),
    ("noext", "application/octet-stream"),
];

/// The test site's files (beside `hello.txt` and `types/`): the ones
/// served, and the ones that must never be (dot-files).
const SITE_FILES: [(&str, &[u8]); 14] = [
    ("index.html", b"<h1>home</h1>\n"),
    ("empty.txt", b""),
    (".env", b"SECRET=1\n"),
    (".git/config", b"SECRET\n"),
    ("blog/index.html", b"<h1>blog</h1>\n"),
    ("evil.example/index.html", b"not a redirect target\n"),
    ("docs/a.txt", b"a\n"),
    ("docs/a b.txt", b"space"),
    ("docs/\u{fc}.txt", b"umlaut"),
    ("docs/<img src=x onerror=alert(1)>&.txt", b"hostile"),
    ("docs/100%.txt", b"percent"),
    ("docs/.hidden", b"SECRET"),
    ("docs/sub/five.txt", b"12345"),
    ("docs/five.txt", b"12345"),
];

/// Builds the test site in a fresh folder and returns its path.
fn site(name: &str) -> PathBuf {
    let base = temp_dir(&format!("web-{name}"));
    let root = base.join("root");
    let write = |path: &str, body: &[u8]| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    };
    write("hello.txt", &hello());
    for (path, body) in SITE_FILES {
        write(path, body);
    }
    for (name, _) in TYPES {
        write(&format!("types/{name}"), b"x");
    }
    write("types/subs.vtt", b"x");
    write("types/data.json", b"{\"ok\": true}\n");
    fs::write(base.join("outside.txt"), b"SECRET outside the root\n").unwrap();
    fs::create_dir_all(base.join("outdir")).unwrap();
    fs::write(base.join("outdir/secret.txt"), b"SECRET\n").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(base.join("outside.txt"), root.join("out-link.txt")).unwrap();
        std::os::unix::fs::symlink(base.join("outdir"), root.join("out-dir")).unwrap();
        std::os::unix::fs::symlink("hello.txt", root.join("in-link.txt")).unwrap();
    }
    root
}
