//! `http`: keep-alive GETs against a web server.
//!
//! ```text
//! 05_load_tester http --addr 127.0.0.1:8080 --path /1k.bin --conns 32 --duration 5
//! http conns=32 duration=5 path=/1k.bin size=1024 requests=… errors=0 reconnects=0 secs=5.001 req_per_s=… …
//! ```
//!
//! N connections, each sending `GET PATH HTTP/1.1` and reading the whole
//! response before it sends the next (one request in flight per
//! connection, the way a browser fetches one page's files over a few
//! connections, and the way load generators such as `wrk` measure). The
//! connections stay open between requests (keep-alive): what is measured is
//! the server's work per request, not the cost of opening connections.
//!
//! Every response is checked, because a fast wrong answer is not a result
//! (chapter 8's rule 6): its status must be `200`, and its body as long as
//! the file. Which length is right? `--size BYTES` says so; without it, one
//! probe request before the run (`probe`) learns it from the server and
//! every later response must agree. A response with another status or
//! length is counted in `errors`, and its connection carries on (the
//! response was still well framed, so the next one can be read). A broken
//! response (a malformed head, the connection closed mid-body, a timeout)
//! is counted too, and ends its thread's share of the run, as in `echo`.
//!
//! A server may close a connection after a response: when it says
//! `Connection: close`, or answers as HTTP/1.0 without `keep-alive`, or
//! after a number of requests (nginx closes a kept-alive connection after
//! 1,000 by default). The connection is then opened again before the next
//! request, counted in `reconnects`, and the reconnection is part of that
//! request's latency (someone waited for it).
//!
//! `--server-pid PID` adds the server's CPU time per request and its memory,
//! summed over PID and its child processes (nginx does its work in worker
//! processes, children of the one you started).
//!
//! A real load generator does more: `wrk` drives many connections from one
//! thread with an event loop, and can pipeline requests; ours keeps the
//! echo mode's threads (`--per-thread K` for lock-step batches). It also
//! reads only `Content-Length` bodies: every static file server sends one,
//! and a chunked body is reported as an error that says so.

use crate::measure::{self, Gate, Plan, Report, Tally};
use crate::{MB, Setup, connect};
use netlessons::cli::Matches;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest response head we accept: the same limit the course's web
/// server puts on request heads. Real heads are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// Each connection's read buffer. A small response arrives whole in one
/// read; a big body is read straight into it, 256 KiB per system call.
/// (The pages are only touched when used: 32 connections fetching 1 KiB
/// each touch one page of theirs.)
const BUFFER: usize = 256 * 1024;

/// Runs the mode and builds its report line.
pub fn run(args: &Matches, setup: Setup) -> io::Result<Report> {
    let conns = args.positive("--conns", 32);
    let plan = Plan::from_args(args, 1000);
    let warmup = args.number("--warmup", 10);
    let per_thread = args.positive("--per-thread", 1).min(conns);
    let path = args.get("--path").unwrap_or("/");
    let request = request(args, setup, path);

    // One probe first: it learns the body length (unless --size gives it)
    // and turns a wrong path or a server that is not there into one clear
    // error before any thread starts.
    let wanted = args.get("--size").map(|_| args.size("--size", 0) as u64);
    let expect = match probe(setup, &request, path, wanted) {
        Ok(expect) => expect,
        Err(e) => {
            let mut tally = Tally::default();
            tally.fail(e);
            let line = format!(
                "http conns={conns} {} path={path} requests=0 errors=1 reconnects=0",
                plan.field()
            );
            return Ok(tally.into_report(line));
        }
    };

    let threads = conns.div_ceil(per_thread);
    let reconnects = Arc::new(AtomicU64::new(0));
    let worker_reconnects = Arc::clone(&reconnects);
    // The common start, as in `echo`: every worker connects and warms up,
    // then all start together (see `measure::Gate`).
    let run = measure::measure_closed(args, threads, move |i, gate| {
        // Share the connections out: the last thread may have fewer.
        let mine = per_thread.min(conns - i * per_thread);
        let job = Job {
            setup,
            request: &request,
            expect,
            reconnects: &worker_reconnects,
        };
        http_worker(&job, mine, plan, warmup, gate)
    })?;
    let requests = run.tally.latencies.len();
    let line = format!(
        "http conns={conns} {}{} path={path} size={} requests={requests} errors={} \
         reconnects={} secs={secs:.3} req_per_s={:.0} mb_per_s={:.2}",
        plan.field(),
        if per_thread > 1 {
            format!(" per_thread={per_thread}")
        } else {
            String::new()
        },
        expect.length,
        run.tally.errors,
        reconnects.load(Ordering::Relaxed),
        requests as f64 / run.secs,
        run.tally.bytes as f64 / MB / run.secs,
        secs = run.secs,
    );
    Ok(run.into_report(line, args))
}

/// The request every connection sends, checked and made once: one write of
/// these bytes per request, nothing formatted or allocated in the loop.
fn request(args: &Matches, setup: Setup, path: &str) -> Arc<[u8]> {
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        args.fail(&format!(
            "--path must start with '/' and hold no spaces or control characters (percent-encode them): {path:?}"
        ));
    }
    // `Host` is required in HTTP/1.1 (RFC 9112 §3.2); the address we
    // connect to is what a browser would send for an address typed in.
    format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", setup.addr)
        .into_bytes()
        .into()
}

/// What every response must be.
#[derive(Debug, Clone, Copy)]
struct Expect {
    /// The body length (the file's size).
    length: u64,
}

/// What one worker thread needs, shared by all of them.
struct Job<'a> {
    setup: Setup,
    request: &'a [u8],
    expect: Expect,
    reconnects: &'a AtomicU64,
}

/// Sends one request on a connection of its own and checks the answer: a
/// `200`, and the body length `wanted` if given. Returns what every
/// response of the run must then be.
fn probe(setup: Setup, request: &[u8], path: &str, wanted: Option<u64>) -> io::Result<Expect> {
    let mut conn = HttpConn::open(setup)?;
    conn.stream.write_all(request)?;
    let response = conn.read_response()?;
    if response.status != 200 {
        return Err(io::Error::other(format!(
            "GET {path} was answered {}, not 200: check --path",
            response.status
        )));
    }
    if let Some(wanted) = wanted.filter(|&w| w != response.length) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "GET {path} returned a body of {} bytes, but --size says {wanted}",
                response.length
            ),
        ));
    }
    Ok(Expect {
        length: response.length,
    })
}

/// One worker thread with `count` connections, in lock-step batches when
/// `count` is more than 1 (see `measure::closed_loop`, which `echo` uses
/// too). Warm-up responses are checked too (a wrong one is an error all the
/// same), but neither timed nor counted as requests.
fn http_worker(job: &Job, count: usize, plan: Plan, warmup: usize, gate: &Gate) -> Tally {
    let mut sent = vec![Instant::now(); count];
    let open = || HttpConn::open(job.setup);
    measure::closed_loop(count, plan, warmup, gate, open, |conns, tally, timed| {
        batch(job, conns, &mut sent, |answer| match answer {
            Ok(latency) if timed => tally.record(latency, job.expect.length),
            Ok(_) => {}
            Err(e) => tally.fail(e),
        })
    })
}

/// One request on every connection, then every response. `done` gets each
/// response's latency, or why it was wrong; a broken connection is the
/// `Err` returned.
fn batch(
    job: &Job,
    conns: &mut [HttpConn],
    sent: &mut [Instant],
    mut done: impl FnMut(Result<Duration, String>),
) -> io::Result<()> {
    for (conn, sent) in conns.iter_mut().zip(sent.iter_mut()) {
        *sent = Instant::now();
        if conn.closing {
            *conn = HttpConn::open(job.setup)?;
            job.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        conn.stream.write_all(job.request)?;
    }
    for (conn, sent) in conns.iter_mut().zip(sent.iter()) {
        let response = conn.read_response()?;
        let latency = sent.elapsed();
        done(if response.status != 200 {
            Err(format!(
                "a response had status {}, not 200",
                response.status
            ))
        } else if response.length != job.expect.length {
            Err(format!(
                "a response had a body of {} bytes, not {}",
                response.length, job.expect.length
            ))
        } else {
            Ok(latency)
        });
    }
    Ok(())
}

/// One client connection: the socket, its read buffer, and whether the
/// server said it will close after the last response.
struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The last response ended the connection (`Connection: close`, or
    /// HTTP/1.0 without keep-alive): open a new one before the next request.
    closing: bool,
}

/// What the client learned from one response.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    /// The body's length, all of which has been read (and thrown away).
    length: u64,
    /// The server keeps the connection open after this response.
    keep_alive: bool,
}

impl HttpConn {
    fn open(setup: Setup) -> io::Result<HttpConn> {
        Ok(HttpConn {
            stream: connect(setup)?,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
            closing: false,
        })
    }

    /// Reads one whole response: the head, parsed, then the body, counted
    /// and thrown away.
    fn read_response(&mut self) -> io::Result<Response> {
        // The head: read until the buffer holds an empty line. One request
        // is in flight, so an emptied buffer can start again from the front.
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        let head_len = loop {
            if let Some(len) = head_length(&self.buf[self.start..self.end]) {
                break len;
            }
            if self.end - self.start >= MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a response head over 64 KiB: is this an HTTP server?",
                ));
            }
            let n = read_some(&mut self.stream, &mut self.buf[self.end..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    if self.end == self.start {
                        "the server closed the connection instead of answering"
                    } else {
                        "the server closed the connection in the middle of a response head"
                    },
                ));
            }
            self.end += n;
        };
        let head = parse_head(&self.buf[self.start..self.start + head_len])?;
        self.start += head_len;
        self.closing = !head.keep_alive;

        // The body: first whatever came with the head, then straight from
        // the socket into the buffer, never asking for more than is left
        // (the bytes after the body would belong to the next response).
        let buffered = (self.end - self.start) as u64;
        let taken = buffered.min(head.length);
        self.start += taken as usize;
        let mut left = head.length - taken;
        while left > 0 {
            let want = usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            let n = read_some(&mut self.stream, &mut self.buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the server closed the connection after {} of {} body bytes",
                        head.length - left,
                        head.length
                    ),
                ));
            }
            left -= n as u64;
        }
        Ok(head)
    }
}

/// `read`, retried when a signal interrupts it.
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The length of the head at the start of `bytes`, up to and including the
/// empty line that ends it (CRLF CRLF, or bare LFs, which RFC 9112 §2.2
/// lets a recipient accept); `None` if it has not all arrived yet.
fn head_length(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = bytes[from..].iter().position(|&b| b == b'\n') {
        let next = from + i + 1;
        match bytes.get(next) {
            Some(b'\n') => return Some(next + 1),
            Some(b'\r') if bytes.get(next + 1) == Some(&b'\n') => return Some(next + 2),
            _ => from = next,
        }
    }
    None
}

/// Parses a response head: `HTTP/1.x CODE reason`, then header lines. Reads
/// only what the client needs: the status, the body's length, and whether
/// the connection stays open.
fn parse_head(head: &[u8]) -> io::Result<Response> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let text = std::str::from_utf8(head)
        .map_err(|_| bad("a response head that is not text".to_string()))?;
    let mut lines = text.lines(); // splits at "\n", dropping a "\r" before it
    let status_line = lines.next().unwrap_or("");
    let (version, rest) = status_line
        .split_once(' ')
        .ok_or_else(|| bad(format!("not an HTTP status line: {status_line:?}")))?;
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(bad(format!("not an HTTP/1.x response: {status_line:?}"))),
    };
    let code = rest
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()));
    let status: u16 = code
        .and_then(|c| c.parse().ok())
        .filter(|_| matches!(rest.as_bytes().get(3), None | Some(b' ')))
        .ok_or_else(|| bad(format!("no status code in {status_line:?}")))?;

    let mut length: Option<u64> = None;
    let (mut close, mut keep_alive) = (false, false);
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("a header line without a colon: {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad(format!("a bad Content-Length: {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("two different Content-Length headers".to_string()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(format!(
                "a body sent with Transfer-Encoding: {value} (the load tester reads only \
                 Content-Length bodies, which every static file server sends)"
            )));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    // 1xx, 204 and 304 never have a body (RFC 9112 §6.3); anything else
    // without a length runs until the server closes, which would leave
    // nothing to measure the next request on.
    let length = match length {
        Some(n) => n,
        None if status < 200 || status == 204 || status == 304 => 0,
        None => {
            return Err(bad(format!(
                "a {status} response without Content-Length: its body would end only when \
                 the connection closes"
            )));
        }
    };
    Ok(Response {
        status,
        length,
        // HTTP/1.1 persists unless told to close; HTTP/1.0 closes unless it
        // said keep-alive (RFC 9112 §9.3).
        keep_alive: !close && (!http10 || keep_alive),
    })
}
