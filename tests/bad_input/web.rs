//! The web server (`06_web_server`) under bad input: thousands of random
//! and mutated requests, slow-loris heads and bodies, and a flood past
//! `--max-conns`. Afterwards it must still be up, back to its thread count,
//! and serving a real request byte for byte.

use super::{
    Ctx, Ending, REPLY_TIMEOUT, Session, TRICKLE_GAP, TRICKLE_LIMIT, baseline, hammer, junk, pick,
    show, still_up, threads_settle,
};
use crate::common::http::{self, Client};
use crate::common::{Rng, Server, override_command, reference_only, temp_dir};
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

const WEB: &str = "06_web_server";

/// Garbage sessions in [`web_server_survives_garbage`].
const SESSIONS: usize = 3000;

/// The statuses a garbage session may see: anything else (a 500, a 200 for
/// a path outside the root, a made-up code) is a bug.
const ALLOWED: &[&str] = &[
    "200", "206", "301", "304", "400", "403", "404", "405", "413", "414", "416", "431", "501",
    "505",
];

/// Requests that are right, to be mutated.
const GOOD: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /hello.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=1-5\r\n\r\n",
    "HEAD /docs/ HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /docs HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    "GET /hello.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"x\", *\r\n\r\n",
    "GET http://t/docs/a.txt?q=%41 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
];

/// Pieces that make requests wrong in interesting ways.
const NASTY: &[&str] = &[
    "/../",
    "%2e%2e",
    "..%2f",
    "%2F",
    "%00",
    "\\",
    "%",
    "%zz",
    "\r",
    "\n",
    "\0",
    " ",
    ":",
    "\t",
    "Content-Length: 99999999999999999999\r\n",
    "Transfer-Encoding: gzip\r\n",
    "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
    "Host: a\r\nHost: b\r\n",
    "Range: bytes=-0\r\n",
    "Range: bytes=99999999999999999999-\r\n",
    "If-Modified-Since: x\r\n",
    "ffffffffffffffffff\r\n",
    "HTTP/9.9",
    "//evil.example",
    " HTTP/1.1",
];

/// One request, mutated: bytes flipped, pieces inserted or cut, lines
/// repeated, or a huge field.
fn mutated(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = pick(rng, GOOD).as_bytes().to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(bytes.len() as u64 + 1) as usize;
        match rng.below(6) {
            0 => {
                if at < bytes.len() {
                    bytes[at] = rng.next_u64() as u8;
                }
            }
            1 => {
                let piece = pick(rng, NASTY).as_bytes().to_vec();
                bytes.splice(at..at, piece);
            }
            2 => bytes.truncate(at),
            3 => {
                let len = [10, 8_100, 9_000, 70_000][rng.below(4) as usize];
                bytes.splice(at..at, vec![b'a'; len]);
            }
            4 => {
                let line = b"X-Repeat: yes\r\n".repeat(rng.below(120) as usize);
                let head_end = bytes
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .map_or(0, |i| i + 2);
                bytes.splice(head_end..head_end, line);
            }
            _ => bytes.splice(at..at, junk(rng)).for_each(drop),
        }
    }
    bytes
}

/// One garbage session: a few requests (mutated, random, or right), maybe
/// pipelined in one write, then an ending. What came back must be HTTP
/// responses with allowed statuses.
fn web_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let mut s = Session::open(addr, log)?;
    for _ in 0..=rng.below(3) {
        let request = match rng.below(4) {
            0 => junk(rng),
            1 => pick(rng, GOOD).as_bytes().to_vec(),
            _ => mutated(rng),
        };
        s.send_split(rng, &request);
    }
    let back = s.end(Ending::pick(rng, false))?;
    check_responses(&back)
}

/// Every status line in `back` (the start, and any later `HTTP/1.1 ` at
/// the start of a line) carries an allowed status.
fn check_responses(back: &[u8]) -> Result<(), String> {
    if back.is_empty() {
        return Ok(());
    }
    if !back.starts_with(b"HTTP/1.1 ") {
        return Err(format!(
            "the server sent something that is not HTTP: {}",
            show(back)
        ));
    }
    let text = String::from_utf8_lossy(back);
    for at in text.match_indices("HTTP/1.1 ").map(|(i, _)| i) {
        let line_start = at == 0 || text[..at].ends_with('\n');
        let code = text.get(at + 9..at + 12).unwrap_or("");
        if line_start && text[at..].contains("\r\n") && !ALLOWED.contains(&code) {
            return Err(format!(
                "the server answered {code:?}: {}",
                show(&back[at..])
            ));
        }
    }
    Ok(())
}

/// The site: a few small files and a folder.
fn site(test: &str) -> PathBuf {
    let root = temp_dir(test).join("root");
    fs::create_dir_all(root.join("docs")).unwrap();
    fs::write(root.join("hello.txt"), b"hello, world\n").unwrap();
    fs::write(root.join("docs/a.txt"), b"a\n").unwrap();
    fs::write(root.join("index.html"), b"<h1>home</h1>\n").unwrap();
    root
}

/// Starts the server on a fresh site; `extra` (the reference's own flags)
/// only for the reference, since a learner's server need not know them.
fn start(test: &str, extra: &[&str]) -> Server {
    let root = site(test);
    let mut args = vec!["--root", root.to_str().unwrap()];
    if override_command(WEB).is_none() {
        args.push("--quiet");
        args.extend_from_slice(extra);
    }
    Server::start(WEB, &args)
}

/// A real request, answered right.
fn serves_correctly(addr: SocketAddr) {
    let mut client = Client::connect(addr);
    client.get("/hello.txt", "");
    let r = client.read("GET");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello, world\n"[..]));
}

/// Thousands of random and mutated requests from eight clients at once: the
/// server stays up, answers only with allowed statuses, leaks no thread and
/// then serves a real request.
#[test]
fn web_server_survives_garbage() {
    let ctx = Ctx::new("web_server_survives_garbage");
    let mut server = start("web-garbage", &["--idle-timeout", "5"]);
    let before = baseline(&server);
    let addr = server.addr();
    hammer(&ctx, "garbage HTTP sessions", SESSIONS, move |rng, log| {
        web_session(addr, rng, log)
    });
    still_up(&ctx, &mut server);
    threads_settle(&ctx, &server, before);
    serves_correctly(addr);
}

/// Slow-loris clients (`--line-timeout 1`): a request line trickled a byte
/// at a time, a head trickled a header line at a time, a counted body and a
/// chunked body trickled: each is dropped within a few seconds of its first
/// byte, and another client is served meanwhile.
#[test]
fn slow_loris_is_dropped_web() {
    if !reference_only(WEB, "slow_loris_is_dropped_web") {
        return;
    }
    let ctx = Ctx::new("slow_loris_is_dropped_web");
    let server = start(
        "web-loris",
        &["--line-timeout", "1", "--idle-timeout", "60"],
    );
    let before = baseline(&server);
    let addr = server.addr();
    let cases: Vec<(&str, &'static str, &'static [u8])> = vec![
        ("request line", "GET /", b"a"),
        (
            "header lines",
            "GET / HTTP/1.1\r\nHost: t\r\n",
            b"X-Slow: 1\r\n",
        ),
        ("one header", "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ", b"a"),
        (
            "counted body",
            "GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n",
            b"x",
        ),
        (
            "chunked body",
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"1\r\nx\r\n",
        ),
        (
            "chunk size",
            "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"a",
        ),
    ];
    let running: Vec<_> = cases
        .into_iter()
        .map(|(name, start, piece)| {
            let stream = crate::common::connect(addr);
            (
                name,
                thread::spawn(move || trickle_pieces(stream, start.as_bytes(), piece)),
            )
        })
        .collect();
    // Served meanwhile.
    serves_correctly(addr);
    for (name, handle) in running {
        let after = handle
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            after >= Duration::from_millis(800),
            "{name}: dropped after {after:?}, before its clock ran out"
        );
    }
    threads_settle(&ctx, &server, before);
    serves_correctly(addr);
}

/// Sends `start`, then `piece` every [`TRICKLE_GAP`] until the server
/// closes; returns how long after the start it did.
fn trickle_pieces(mut stream: TcpStream, start: &[u8], piece: &[u8]) -> Result<Duration, String> {
    stream.write_all(start).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(TRICKLE_GAP)).unwrap();
    let began = Instant::now();
    let mut buf = [0u8; 4096];
    while began.elapsed() < TRICKLE_LIMIT {
        if stream.write_all(piece).is_err() {
            return Ok(began.elapsed());
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(began.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Ok(began.elapsed()), // a reset is a close too
        }
    }
    Err(format!(
        "still connected {TRICKLE_LIMIT:?} after it began trickling {}",
        show(piece)
    ))
}

/// `--max-conns 3`: 200 more clients each get `503` with `Retry-After: 1`
/// and a close; the three admitted keep being served; the thread count
/// comes back.
#[test]
fn max_conns_flood_web() {
    if !reference_only(WEB, "max_conns_flood_web") {
        return;
    }
    let ctx = Ctx::new("max_conns_flood_web");
    let mut server = start("web-flood", &["--max-conns", "3"]);
    let before = baseline(&server);
    let addr = server.addr();
    let mut held: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    for client in &mut held {
        client.get("/hello.txt", "");
        assert_eq!(client.read("GET").status, 200);
    }
    hammer(
        &ctx,
        "clients over --max-conns",
        super::FLOOD,
        move |_, log| {
            let s = Session::open(addr, log)?;
            let mut reader = s.reader;
            let r = http::read_response(&mut reader, "GET")
                .map_err(|e| format!("a refused client read {e}"))?
                .ok_or("a refused client got no answer")?;
            if r.status != 503 || r.header("retry-after") != Some("1") {
                return Err(format!(
                    "a refused client got {} {:?}",
                    r.status_line, r.headers
                ));
            }
            let mut rest = Vec::new();
            reader
                .read_to_end(&mut rest)
                .map_err(|e| format!("no close after the 503: {e}"))?;
            Ok(())
        },
    );
    for client in &mut held {
        client.get("/hello.txt", "");
        assert_eq!(client.read("GET").status, 200);
    }
    drop(held);
    still_up(&ctx, &mut server);
    threads_settle(&ctx, &server, before);
    let deadline = Instant::now() + REPLY_TIMEOUT * 3;
    loop {
        let mut probe = crate::common::connect(addr);
        let _ = probe.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        let mut reader = std::io::BufReader::new(probe);
        if let Ok(Some(r)) = http::read_response(&mut reader, "GET") {
            if r.status == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no client admitted after the held ones left"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
