//! Every way a request can be refused: `400` for each malformed head,
//! `405` and `501` for methods, `501` and `505` for codings and versions,
//! `413`, `414` and `431` for the limits. Each closes the connection.

use super::*;

/// Every malformed head gets `400` and the connection is closed.
#[test]
fn malformed_heads_get_400_and_close() {
    let (server, _root) = start("bad_400", &[]);
    for (what, raw) in MALFORMED {
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

// ---------------------------------------------------------------------------
// Helpers.

/// The malformed heads: what each breaks, and the bytes sent.
const MALFORMED: [(&str, &str); 27] = [
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
