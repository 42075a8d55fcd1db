//! From a target to a file: every trick for leaving the root refused,
//! escaped names served, folders redirected to their slash (never to
//! `//host`), `index.html`, and listings that are sorted and escaped.

use super::*;

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
    const ESCAPED: [(&str, &str); 4] = [
        ("/docs/a%20b.txt", "space"),
        ("/docs/%C3%BC.txt", "umlaut"),
        (
            "/docs/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%26.txt",
            "hostile",
        ),
        ("/docs/100%25.txt", "percent"),
    ];
    let (server, _root) = start("escaped", &[]);
    for (target, body) in ESCAPED {
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
    let Some((server, _root)) = start_reference("no_listing_flag", &["--no-listing"]) else {
        return;
    };
    // A folder without an index is not listed; one with an index is served.
    for (folder, status) in [("/docs/", 404), ("/blog/", 200)] {
        assert_eq!(get(&server, folder).status, status, "{folder}");
    }
}
