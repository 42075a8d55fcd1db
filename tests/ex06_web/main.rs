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

mod client;
mod interop;

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
    let cases = [
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
    let mut client = Client::connect(server.addr());
    for (name, mime) in cases {
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

/// Every malformed head gets `400` and the connection is closed.
#[test]
fn malformed_heads_get_400_and_close() {
    let (server, _root) = start("bad_400", &[]);
    let cases = [
        ("missing Host", "GET / HTTP/1.1\r\n\r\n"),
        ("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n"),
        ("bad Host", "GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n"),
        ("space before colon", "GET / HTTP/1.1\r\nHost : t\r\n\r\n"),
        ("no colon", "GET / HTTP/1.1\r\nHost: t\r\nnonsense\r\n\r\n"),
        (
            "folded line",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n 2\r\n\r\n",
        ),
        (
            "control byte",
            "GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n",
        ),
        (
            "CL and TE",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two CLs",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        ),
        (
            "CL list",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1, 1\r\n\r\nx",
        ),
        (
            "negative CL",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "CL with sign",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: +1\r\n\r\nx",
        ),
        (
            "chunked twice",
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "chunked not last",
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ),
        (
            "bad chunk size",
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
        ),
        (
            "TE on 1.0",
            "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        ("two spaces", "GET  / HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("no version", "GET /\r\nHost: t\r\n\r\n"),
        ("bad version", "GET / HTTP/1\r\nHost: t\r\n\r\n"),
        ("lowercase version", "GET / http/1.1\r\nHost: t\r\n\r\n"),
        ("asterisk", "GET * HTTP/1.1\r\nHost: t\r\n\r\n"),
        (
            "relative target",
            "GET hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        (
            "other scheme",
            "GET ftp://t/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
        ("fragment", "GET /hello.txt#x HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("bare CR in line", "GET /\rx HTTP/1.1\r\nHost: t\r\n\r\n"),
        (
            "high byte in target",
            "GET /\u{e9} HTTP/1.1\r\nHost: t\r\n\r\n",
        ),
    ];
    for (what, raw) in cases {
        let (r, closed) = exchange(&server, raw);
        assert_eq!(r.status, 400, "{what}: {}", r.status_line);
        assert!(closed, "{what}: the connection must close after a 400");
        assert!(r.closes(), "{what}: the 400 must say Connection: close");
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{what}"
        );
        assert!(r.text().contains("400"), "{what}: an HTML body");
    }
}

/// Known methods other than GET and HEAD get `405` with `Allow`; unknown
/// tokens (methods are case-sensitive, so `get` is one) get `501`.
#[test]
fn methods_405_and_501() {
    let (server, _root) = start("methods", &[]);
    for method in [
        "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
    ] {
        let (r, closed) = exchange(
            &server,
            &format!("{method} /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
        assert!(closed, "{method}");
    }
    let (r, _) = exchange(&server, "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 405, "OPTIONS *");
    for method in ["BREW", "get", "Get"] {
        let (r, closed) = exchange(&server, &format!("{method} / HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 501, "{method}");
        assert!(closed, "{method}");
    }
    // A POST with a body we never read still gets its answer (no reset).
    let body = "x".repeat(100_000);
    let (r, _) = exchange(
        &server,
        &format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 405);
}

/// A transfer coding other than chunked is `501`; versions other than 1.0
/// and 1.1 are `505`.
#[test]
fn codings_501_and_versions_505() {
    let (server, _root) = start("codings", &[]);
    for te in ["gzip", "gzip, chunked", "identity"] {
        let (r, closed) = exchange(
            &server,
            &format!("GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: {te}\r\n\r\n"),
        );
        assert_eq!(r.status, 501, "{te}");
        assert!(closed);
    }
    for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        let (r, closed) = exchange(&server, &format!("GET / {version}\r\nHost: t\r\n\r\n"));
        assert_eq!(r.status, 505, "{version}");
        assert!(closed);
    }
}

/// Over the limits: a body over 1 MiB is `413`, a request line over 8,000
/// bytes `414`, a header line over 8 KiB, more than 100 headers or a head
/// over 64 KiB `431`; each closes.
#[test]
fn limits_413_414_431() {
    let (server, _root) = start("limits", &[]);
    let (r, closed) = exchange(
        &server,
        "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\n",
    );
    assert_eq!((r.status, closed), (413, true), "counted body over 1 MiB");
    let big_chunk = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        2 << 20
    );
    let (r, closed) = exchange(&server, &big_chunk);
    assert_eq!((r.status, closed), (413, true), "chunked body over 1 MiB");
    // Exactly 1 MiB is fine.
    let mut client = Client::connect(server.addr());
    client.send(format!(
        "GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    ));
    client.send(vec![b'x'; 1 << 20]);
    assert_eq!(client.read("GET").status, 200, "a 1 MiB body is allowed");

    let path = format!("/{}", "a".repeat(8000));
    let (r, closed) = exchange(&server, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(
        (r.status, closed),
        (414, true),
        "request line over 8000 bytes"
    );
    let (r, _) = exchange(
        &server,
        &format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(7900)),
    );
    assert_eq!(r.status, 404, "a long but legal request line");

    let line = format!("X-Big: {}\r\n", "b".repeat(8 * 1024));
    let (r, closed) = exchange(&server, &format!("GET / HTTP/1.1\r\nHost: t\r\n{line}\r\n"));
    assert_eq!((r.status, closed), (431, true), "header line over 8 KiB");
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let (r, closed) = exchange(&server, &format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n"));
    assert_eq!((r.status, closed), (431, true), "101 headers");
    let fine: String = (0..98).map(|i| format!("X-{i}: v\r\n")).collect();
    let (r, _) = exchange(&server, &format!("GET / HTTP/1.1\r\nHost: t\r\n{fine}\r\n"));
    assert_eq!(r.status, 200, "99 headers are fine");
    let wide: String = (0..10)
        .map(|i| format!("X-{i}: {}\r\n", "c".repeat(7000)))
        .collect();
    let (r, closed) = exchange(&server, &format!("GET / HTTP/1.1\r\nHost: t\r\n{wide}\r\n"));
    assert_eq!((r.status, closed), (431, true), "a head over 64 KiB");
}

/// Every trick for leaving the root is refused: `..` raw or encoded,
/// encoded slashes, backslashes, NULs, invalid escapes (`400`); dot-files
/// and symlinks out of the root are not found (`404`).
#[test]
fn path_safety() {
    let (server, _root) = start("paths", &[]);
    let refused = [
        "/../outside.txt",
        "/docs/../../outside.txt",
        "/%2e%2e/outside.txt",
        "/%2E%2E/outside.txt",
        "/.%2e/outside.txt",
        "/..%2foutside.txt",
        "/docs%2f..%2f..%2foutside.txt",
        "/docs%2Fa.txt",
        "/hello.txt%00.html",
        "/%00",
        "/docs\\a.txt",
        "/..\\outside.txt",
        "/docs%5ca.txt",
        "/%zz",
        "/%2",
        "/..",
    ];
    for target in refused {
        let (r, closed) = exchange(
            &server,
            &format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n"),
        );
        assert_eq!(r.status, 400, "{target}");
        assert!(closed, "{target}");
        assert!(
            !r.text().contains("SECRET"),
            "{target} leaked the outside file"
        );
    }
    let hidden = [
        "/.env",
        "/%2eenv",
        "/.git/config",
        "/docs/.hidden",
        "/./hello.txt",
        "/out-link.txt",
        "/out-dir/secret.txt",
    ];
    for target in hidden {
        let r = get(&server, target);
        assert_eq!(r.status, 404, "{target}");
        assert!(!r.closes(), "{target}: a 404 keeps the connection");
        assert!(!r.text().contains("SECRET"), "{target} leaked");
    }
    // A symlink that stays inside the root is served.
    let r = get(&server, "/in-link.txt");
    assert_eq!((r.status, r.body), (200, hello()));
    // Absolute-form targets name the path on this server.
    let r = get(&server, "http://example.test/hello.txt");
    assert_eq!((r.status, r.body), (200, hello()));
    let r = get(&server, "HTTP://example.test:8080/hello.txt?q=1");
    assert_eq!(r.status, 200);
    // The query is ignored when mapping to a file; `//` counts as `/`.
    assert_eq!(get(&server, "/hello.txt?x=../../y").status, 200);
    assert_eq!(get(&server, "//hello.txt").status, 200);
    // `%252e` is decoded once, into the name `%2e`, which is not there.
    assert_eq!(get(&server, "/%252e%252e/outside.txt").status, 404);
}

/// Names that need escaping are served when asked for escaped.
#[test]
fn escaped_names_are_served() {
    let (server, _root) = start("escaped", &[]);
    for (target, body) in [
        ("/docs/a%20b.txt", "space"),
        ("/docs/%C3%BC.txt", "umlaut"),
        (
            "/docs/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%26.txt",
            "hostile",
        ),
        ("/docs/100%25.txt", "percent"),
    ] {
        let r = get(&server, target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.text(), body, "{target}");
    }
}

/// A folder without its slash is redirected to the slash, always to a path
/// starting with exactly one `/` (never `//host`: CVE-2021-28861).
#[test]
fn folders_redirect_to_their_slash() {
    let (server, _root) = start("redirects", &[]);
    for (target, location) in [
        ("/docs", "/docs/"),
        ("/docs?x=1", "/docs/?x=1"),
        ("//evil.example", "/evil.example/"),
        ("///evil.example", "/evil.example/"),
        ("/evil.example", "/evil.example/"),
        ("http://t//evil.example", "/evil.example/"),
        ("/docs/sub", "/docs/sub/"),
    ] {
        let r = get(&server, target);
        assert_eq!(r.status, 301, "{target}");
        assert_eq!(r.header("location"), Some(location), "{target}");
        assert!(!r.closes(), "{target}");
    }
}

/// `/dir/` serves `dir/index.html` when there is one.
#[test]
fn folder_serves_its_index() {
    let (server, _root) = start("index", &[]);
    let r = get(&server, "/blog/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<h1>blog</h1>\n");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(get(&server, "/").text().contains("<h1>home</h1>"));
}

/// A listing: byte order, names HTML-escaped and percent-encoded in links,
/// sizes, folders ending in `/`, no dot-files.
#[test]
fn listing_is_sorted_escaped_and_safe() {
    let (server, _root) = start("listing", &[]);
    let r = get(&server, "/docs/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(
        !html.contains("<img"),
        "an HTML-hostile name must be escaped:\n{html}"
    );
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;&amp;.txt"),
        "{html}"
    );
    assert!(
        html.contains("href=\"%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%26.txt\""),
        "{html}"
    );
    assert!(html.contains("href=\"a%20b.txt\""), "{html}");
    assert!(html.contains("href=\"sub/\">sub/</a>"), "{html}");
    assert!(html.contains("5 bytes"), "sizes are shown:\n{html}");
    assert!(
        !html.contains(".hidden"),
        "dot-files are not listed:\n{html}"
    );
    let order: Vec<usize> = ["%3Cimg", "a%20b.txt", "a.txt", "sub/", "%C3%BC.txt"]
        .iter()
        .map(|n| {
            html.find(&format!("href=\"{n}"))
                .unwrap_or_else(|| panic!("{n} in\n{html}"))
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "byte order: '<' before 'a' before 'sub' before 'ü':\n{html}"
    );
}

/// `--no-listing` answers `404` for a folder without `index.html`.
#[test]
fn no_listing_flag() {
    if !reference_only(SERVER, "no_listing_flag") {
        return;
    }
    let (server, _root) = start("no_listing", &["--no-listing"]);
    assert_eq!(get(&server, "/docs/").status, 404);
    assert_eq!(get(&server, "/blog/").status, 200);
}

/// `If-None-Match` (a list, `*`, weak comparison) matching gives `304`;
/// otherwise `If-Modified-Since` not older than the file does. A 304 has
/// no body and keeps the connection.
#[test]
fn conditional_requests_304() {
    let (server, _root) = start("conditional", &[]);
    let first = get(&server, "/hello.txt");
    let etag = first.header("etag").unwrap().to_string();
    let date = first.header("last-modified").unwrap().to_string();
    let mut client = Client::connect(server.addr());
    let cases = [
        (format!("If-None-Match: {etag}\r\n"), 304),
        (format!("If-None-Match: \"other\", {etag}\r\n"), 304),
        (format!("If-None-Match: W/{etag}\r\n"), 304),
        ("If-None-Match: *\r\n".to_string(), 304),
        ("If-None-Match: \"other\"\r\n".to_string(), 200),
        (format!("If-Modified-Since: {date}\r\n"), 304),
        (
            "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".to_string(),
            200,
        ),
        ("If-Modified-Since: yesterday\r\n".to_string(), 200),
        // If-None-Match wins: it does not match, so the date is not asked.
        (
            format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {date}\r\n"),
            200,
        ),
    ];
    for (extra, status) in cases {
        client.get("/hello.txt", &extra);
        let r = client.read("GET");
        assert_eq!(r.status, status, "{extra}");
        if status == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some(etag.as_str()));
        } else {
            assert_eq!(r.body, hello(), "{extra}");
        }
    }
}

/// One range gives `206` and `Content-Range`; past the end `416` with
/// `bytes */size`; several ranges, nonsense or a stale `If-Range` the whole
/// file.
#[test]
fn range_requests() {
    let (server, _root) = start("ranges", &[]);
    let whole = hello();
    let etag = get(&server, "/hello.txt")
        .header("etag")
        .unwrap()
        .to_string();
    let mut client = Client::connect(server.addr());
    let part = |a: usize, b: usize| {
        (
            206,
            Some(format!("bytes {a}-{b}/1000")),
            whole[a..=b].to_vec(),
        )
    };
    let cases = [
        ("Range: bytes=0-9\r\n".to_string(), part(0, 9)),
        ("Range: bytes=990-5000\r\n".to_string(), part(990, 999)),
        ("Range: bytes=500-\r\n".to_string(), part(500, 999)),
        ("Range: bytes=-100\r\n".to_string(), part(900, 999)),
        ("Range: bytes=-5000\r\n".to_string(), part(0, 999)),
        (
            "Range: bytes=1000-\r\n".to_string(),
            (416, Some("bytes */1000".to_string()), vec![]),
        ),
        (
            "Range: bytes=0-1,5-6\r\n".to_string(),
            (200, None, whole.clone()),
        ),
        (
            "Range: bytes=9-1\r\n".to_string(),
            (200, None, whole.clone()),
        ),
        (
            "Range: lines=1-2\r\n".to_string(),
            (200, None, whole.clone()),
        ),
        (
            format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
            part(0, 9),
        ),
        (
            "Range: bytes=0-9\r\nIf-Range: \"stale\"\r\n".to_string(),
            (200, None, whole.clone()),
        ),
    ];
    for (extra, (status, range, body)) in cases {
        client.get("/hello.txt", &extra);
        let r = client.read("GET");
        assert_eq!(r.status, status, "{extra}");
        assert_eq!(
            r.header("content-range").map(str::to_string),
            range,
            "{extra}"
        );
        if status == 416 {
            assert!(r.text().contains("416"), "an HTML body");
        } else {
            assert_eq!(r.body, body, "{extra}");
            assert_eq!(
                r.header("content-length"),
                Some(body.len().to_string().as_str())
            );
        }
    }
    // An empty file has no satisfiable range.
    client.get("/empty.txt", "Range: bytes=0-\r\n");
    assert_eq!(client.read("GET").status, 416);
}

/// A kept-alive connection that sends nothing is closed after
/// `--idle-timeout`.
#[test]
fn idle_connection_is_closed() {
    if !reference_only(SERVER, "idle_connection_is_closed") {
        return;
    }
    let (server, _root) = start("idle", &["--idle-timeout", "1"]);
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
    if !reference_only(SERVER, "max_conns_gives_503") {
        return;
    }
    let (server, _root) = start("max_conns", &["--max-conns", "1"]);
    let mut first = Client::connect(server.addr());
    first.get("/hello.txt", "");
    assert_eq!(first.read("GET").status, 200);
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

/// A 1 GiB (sparse) file is served whole, and a range near its end, while
/// the server's memory stays small: files are streamed, never read whole.
#[test]
fn one_gib_file_in_bounded_memory() {
    let (server, root) = start("big_file", &[]);
    let big = fs::File::create(root.join("big.bin")).unwrap();
    big.set_len(1 << 30).unwrap();
    let mut client = Client::connect(server.addr());
    client.get("/big.bin", "");
    let r = http::read_response(&mut client.reader, "HEAD")
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1073741824"));
    let copied = std::io::copy(
        &mut (&mut client.reader).take(1 << 30),
        &mut std::io::sink(),
    )
    .unwrap();
    assert_eq!(copied, 1 << 30);
    client.get("/big.bin", "Range: bytes=-10\r\n");
    let r = client.read("GET");
    assert_eq!(
        r.header("content-range"),
        Some("bytes 1073741814-1073741823/1073741824")
    );
    assert_eq!(r.body, vec![0u8; 10]);
    if let Some(kib) = peak_memory_kib(server.pid()) {
        assert!(kib < 64 * 1024, "the server's peak memory was {kib} KiB");
    }
}

/// `--trace` shows each head both ways, bodies summarised.
#[test]
fn trace_shows_heads_both_ways() {
    if !reference_only(SERVER, "trace_shows_heads_both_ways") {
        return;
    }
    let (server, _root) = start("trace", &["--trace"]);
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
    if !reference_only(SERVER, "log_line_per_response") {
        return;
    }
    let (server, _root) = start("log", &[]);
    get(&server, "/hello.txt");
    get(&server, "/missing\x7f");
    server.expect_stderr(
        "\"GET /hello.txt HTTP/1.1\" 200 1000 ",
        Duration::from_secs(10),
    );
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
    if !reference_only(SERVER, "quiet_means_no_log") {
        return;
    }
    let (server, _root) = start("quiet", &["--quiet"]);
    assert_eq!(get(&server, "/hello.txt").status, 200);
    assert_eq!(get(&server, "/missing").status, 404);
    // The log line would be written before the response: none can be late.
    assert!(!server.stderr().contains("\"GET "), "{}", server.stderr());
}

/// Without `--root`, the folder the server runs in is served.
#[test]
fn default_root_is_the_current_folder() {
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
    if !reference_only(SERVER, "startup_tells_what_and_how") {
        return;
    }
    let (server, root) = start("startup", &[]);
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
    common::check_help_and_unknown_flag(SERVER, "--root DIR", Duration::from_secs(60));
    common::check_help_and_unknown_flag(CLIENT, "URL", Duration::from_secs(60));
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

/// Builds the test site in a fresh folder and returns its path.
fn site(name: &str) -> PathBuf {
    let base = temp_dir(&format!("web-{name}"));
    let root = base.join("root");
    let write = |path: &str, body: &[u8]| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    };
    write("index.html", b"<h1>home</h1>\n");
    write("hello.txt", &hello());
    write("empty.txt", b"");
    write(".env", b"SECRET=1\n");
    write(".git/config", b"SECRET\n");
    write("blog/index.html", b"<h1>blog</h1>\n");
    write("evil.example/index.html", b"not a redirect target\n");
    write("docs/a.txt", b"a\n");
    write("docs/a b.txt", b"space");
    write("docs/\u{fc}.txt", b"umlaut");
    write("docs/<img src=x onerror=alert(1)>&.txt", b"hostile");
    write("docs/100%.txt", b"percent");
    write("docs/.hidden", b"SECRET");
    write("docs/sub/five.txt", b"12345");
    write("docs/five.txt", b"12345");
    for name in [
        "index.html",
        "page.HTM",
        "style.css",
        "app.js",
        "mod.mjs",
        "notes.md",
        "main.rs",
        "Cargo.toml",
        "Cargo.lock",
        "table.csv",
        "logo.svg",
        "pic.png",
        "photo.jpg",
        "photo.jpeg",
        "anim.gif",
        "pic.webp",
        "favicon.ico",
        "font.woff2",
        "font.woff",
        "font.ttf",
        "prog.wasm",
        "book.pdf",
        "movie.mp4",
        "movie.webm",
        "song.mp3",
        "song.ogg",
        "sound.wav",
        "all.zip",
        "backup.tar.gz",
        "noext",
        "subs.vtt",
    ] {
        write(&format!("types/{name}"), b"x");
    }
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
