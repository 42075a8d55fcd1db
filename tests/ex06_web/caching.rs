//! `304 Not Modified`, `206 Partial Content` and `416`, and a 1 GiB file
//! served in bounded memory.

use super::*;

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
