//! Bad input: whatever clients send, every server stays up, keeps serving
//! well-behaved clients, leaks no threads and stores nothing it should not.
//!
//! Each `*_survives_garbage` test runs a few thousand short malicious
//! sessions against one server from eight client threads at once: random
//! bytes, over-long lines, invalid UTF-8, commands with wrong arguments,
//! huge declared sizes, truncated bodies, messages never finished, and
//! sessions that end abruptly (a half-close in the middle of a command, a
//! reset, a close with replies unread). Afterwards the server must:
//!
//! * still be running, with no panic in its log;
//! * get back to the number of threads it had before (counted in
//!   `/proc/PID/task`; skipped where there is no `/proc`);
//! * serve a real session correctly (an echo round trip; two chat clients
//!   talking; a file stored and fetched; a mail sent and fetched);
//! * hold on disk exactly what that real session stored: no file from the
//!   garbage, no temporary left behind.
//!
//! The other tests drop slow-loris clients (a byte every so often, never a
//! newline) with short timeouts, and flood each server past `--max-conns`.
//!
//! The inputs come from a seeded generator. A failure message gives the seed
//! and the last bytes each client thread sent; run the test again with
//! `NETLESSONS_SEED=<seed> cargo test --test bad_input <test>` to get the same
//! inputs (the order in which eight threads reach the server varies).

mod common;
#[path = "bad_input/web.rs"]
mod web;

use common::{Rng, Server, dir_entries, file_login_lines, reference_only, say, temp_dir};
use netlessons::sha256::{sha256, to_hex};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const ECHO: &str = "01_echo_server";
const CHAT: &str = "02_chat_server";
const FILES: &str = "03_file_server";
const MAIL: &str = "04_mail_relay";

/// Client threads that hammer a server at once.
const THREADS: usize = 8;
/// How long a garbage session waits for a connection, or for a reply that
/// must come (a greeting; the end of the stream after a half-close).
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Threads a server may have above its starting count once every client has
/// gone (a thread may be between "done" and "gone" when we look).
const THREAD_SLACK: usize = 2;
/// How long threads may take to end once their clients have gone. The chat
/// server lingers up to 1 s after a goodbye, and waits up to 2 s for a
/// writer; the rest is room for a busy machine.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The file server's users and the upload limit the tests give it.
const FILE_SECRET: &str = "garbage-in-nothing-out";
const FILE_MAX_SIZE: usize = 4096;
/// The mail relay's users and size limit.
const MAIL_USERS: &str = "alice:alice-pw\nbob:bob-pw\n";
const MAIL_MAX_SIZE: usize = 2000;

// ---------------------------------------------------------------------------
// The seed, and what a failure message says
// ---------------------------------------------------------------------------

/// One test's identity for failure messages: its name, its seed, and the
/// last session each client thread ran.
struct Ctx {
    test: &'static str,
    seed: u64,
    last: Mutex<Vec<String>>,
}

impl Ctx {
    /// The seed is `NETLESSONS_SEED` if set, else taken from the clock.
    fn new(test: &'static str) -> Arc<Ctx> {
        let seed = match std::env::var("NETLESSONS_SEED") {
            Ok(text) => text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("NETLESSONS_SEED must be a number, not {text:?}")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        };
        Arc::new(Ctx {
            test,
            seed,
            last: Mutex::new(vec![String::new(); THREADS]),
        })
    }

    /// An independent generator for one client thread (or one purpose).
    fn rng(&self, stream: u64) -> Rng {
        Rng::new(self.seed ^ (stream + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// Keeps the transcript of the session `thread` just ran: its first
    /// step and its last few (what it sent last matters most).
    fn remember(&self, thread: usize, transcript: &[String]) {
        const KEPT: usize = 8;
        let text = if transcript.len() <= KEPT + 1 {
            transcript.join("\n    ")
        } else {
            format!(
                "{}\n    …\n    {}",
                transcript[0],
                transcript[transcript.len() - KEPT..].join("\n    ")
            )
        };
        self.last.lock().unwrap()[thread] = text;
    }

    /// The seed, how to repeat the run, and what each client thread sent last.
    fn about(&self) -> String {
        let mut out = format!(
            "seed {seed}: repeat with NETLESSONS_SEED={seed} cargo test --test bad_input {test}",
            seed = self.seed,
            test = self.test
        );
        for (i, last) in self.last.lock().unwrap().iter().enumerate() {
            if !last.is_empty() {
                out.push_str(&format!("\n  client thread {i}, last session:\n    {last}"));
            }
        }
        out
    }
}

/// Bytes shown in a failure message: escaped, and cut short if long.
fn show(bytes: &[u8]) -> String {
    const SHOWN: usize = 160;
    let head = &bytes[..bytes.len().min(SHOWN)];
    let mut text = format!("\"{}\"", head.escape_ascii());
    if bytes.len() > SHOWN {
        text.push_str(&format!("… ({} bytes in all)", bytes.len()));
    }
    text
}

// ---------------------------------------------------------------------------
// One garbage session on the wire
// ---------------------------------------------------------------------------

/// How a garbage session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Close at once, replies unread (the kernel resets the connection if
    /// any had arrived).
    Abandon,
    /// Wait until the server has sent something, leave it unread and close:
    /// always a reset. Only where a reply is certain (a greeting, an echo).
    Reset,
    /// Shut down our sending side, maybe in the middle of a command, and read
    /// until the server closes. It must, promptly: this is how we catch hangs.
    HalfClose,
    /// Read whatever has already arrived, then close normally.
    Drain,
}

impl Ending {
    /// A random ending; `Reset` only if `reply_certain`. Half-closes come
    /// most often: a reset makes the kernel throw away what the server has
    /// not read yet, so after one the server never sees most of our bytes.
    fn pick(rng: &mut Rng, reply_certain: bool) -> Ending {
        match rng.below(20) {
            0..=2 => Ending::Abandon,
            3..=5 if reply_certain => Ending::Reset,
            3..=14 => Ending::HalfClose,
            _ => Ending::Drain,
        }
    }
}

/// A client connection that writes down what it does, for failure messages.
/// The server may close or reset at any point (that is its right after bad
/// input), so a failed write just ends the sending.
struct Session<'a> {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    log: &'a mut Vec<String>,
    /// A write failed: the server has closed (or reset) the connection.
    broken: bool,
}

impl<'a> Session<'a> {
    fn open(addr: SocketAddr, log: &'a mut Vec<String>) -> Result<Session<'a>, String> {
        log.push(format!("connect to {addr}"));
        let stream = TcpStream::connect_timeout(&addr, REPLY_TIMEOUT)
            .map_err(|e| format!("could not connect to {addr}: {e}"))?;
        // Timeouts on both sides: no session can hang the test. A write can
        // block only if the server stops reading while we keep sending.
        let set = |s: &TcpStream| -> io::Result<()> {
            s.set_read_timeout(Some(REPLY_TIMEOUT))?;
            s.set_write_timeout(Some(REPLY_TIMEOUT))
        };
        set(&stream).map_err(|e| e.to_string())?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        Ok(Session {
            writer: stream,
            reader,
            log,
            broken: false,
        })
    }

    /// Sends `bytes` (in one write).
    fn send(&mut self, bytes: &[u8]) {
        if self.broken || bytes.is_empty() {
            return;
        }
        self.log.push(format!("send {}", show(bytes)));
        if let Err(e) = self.writer.write_all(bytes) {
            self.log.push(format!("(write failed: {e})"));
            self.broken = true;
        }
    }

    /// Sends `bytes` in one to three writes, split at random points, so the
    /// server also meets lines that arrive in pieces.
    fn send_split(&mut self, rng: &mut Rng, bytes: &[u8]) {
        let mut rest = bytes;
        for _ in 0..rng.below(3) {
            let cut = rng.below(rest.len() as u64 + 1) as usize;
            self.send(&rest[..cut]);
            rest = &rest[cut..];
        }
        self.send(rest);
    }

    /// Reads one line that the protocol promises (a greeting, a reply to a
    /// correct login): its absence is a failure.
    fn line(&mut self, what: &str) -> Result<String, String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(_) if line.ends_with(b"\n") => {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                self.log.push(format!("got {text:?}"));
                Ok(text)
            }
            Ok(_) => Err(format!(
                "expected {what}, the server closed after {}",
                show(&line)
            )),
            Err(e) => Err(format!("expected {what}: {e}")),
        }
    }

    /// Ends the session; returns what came back after a half-close.
    fn end(self, ending: Ending) -> Result<Vec<u8>, String> {
        self.log.push(format!("{ending:?}"));
        match ending {
            Ending::Abandon => Ok(Vec::new()),
            Ending::Reset => {
                // `peek` waits for data without taking it: once it returns,
                // our receive buffer holds unread bytes, and closing a socket
                // with unread bytes sends a reset instead of a normal close.
                let _ = self.writer.peek(&mut [0u8; 1]);
                Ok(Vec::new())
            }
            Ending::Drain => {
                let mut reader = self.reader;
                if reader.get_ref().set_nonblocking(true).is_ok() {
                    let mut sink = [0u8; 4096];
                    while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                }
                Ok(Vec::new())
            }
            Ending::HalfClose => {
                let _ = self.writer.shutdown(Shutdown::Write);
                let mut reader = self.reader;
                let mut back = Vec::new();
                let deadline = Instant::now() + REPLY_TIMEOUT;
                let mut buf = [0u8; 8192];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => return Ok(back),
                        Ok(n) => back.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            return Err(format!(
                                "the server kept the connection open for {REPLY_TIMEOUT:?} after \
                                 the client shut down its sending side (a hang); it had sent {}",
                                show(&back)
                            ));
                        }
                        // A reset is a close too.
                        Err(_) => return Ok(back),
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "the server was still sending {REPLY_TIMEOUT:?} after the client's \
                             half-close: {}",
                            show(&back)
                        ));
                    }
                }
            }
        }
    }
}

/// Runs `sessions` client sessions (`what` they are, for the summary line)
/// from [`THREADS`] client threads at once. `session` gets its thread's
/// generator and a transcript to write into, and returns an error only for
/// what the server must not do.
fn hammer<F>(ctx: &Arc<Ctx>, what: &str, sessions: usize, session: F)
where
    F: Fn(&mut Rng, &mut Vec<String>) -> Result<(), String> + Send + Sync + 'static,
{
    let start = Instant::now();
    let session = Arc::new(session);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ctx, session) = (Arc::clone(ctx), Arc::clone(&session));
            let count = sessions / THREADS + usize::from(t < sessions % THREADS);
            thread::spawn(move || -> Result<(), String> {
                let mut rng = ctx.rng(t as u64);
                let mut log = Vec::new();
                for n in 0..count {
                    log.clear();
                    let result = session(&mut rng, &mut log);
                    ctx.remember(t, &log);
                    result.map_err(|e| format!("client thread {t}, session {n}: {e}"))?;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{e}\n{}", ctx.about()),
            Err(_) => panic!("a client thread panicked\n{}", ctx.about()),
        }
    }
    say(&format!(
        "{}: {sessions} {what} in {:.1} s (seed {})",
        ctx.test,
        start.elapsed().as_secs_f64(),
        ctx.seed
    ));
}

// ---------------------------------------------------------------------------
// What must hold afterwards
// ---------------------------------------------------------------------------

/// The number of threads of process `pid`, where `/proc` exists.
fn thread_count(pid: u32) -> Option<usize> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .ok()
        .map(|tasks| tasks.count())
}

/// The server's thread count now (`None` without `/proc`).
fn baseline(server: &Server) -> Option<usize> {
    thread_count(server.pid())
}

/// The server is running and no connection thread panicked.
fn still_up(ctx: &Ctx, server: &mut Server) {
    assert!(
        server.is_running(),
        "the server died; its stderr:\n{}\n{}",
        tail(&server.stderr()),
        ctx.about()
    );
    let log = server.stderr();
    if let Some(at) = log.find("panicked") {
        let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = log[at..].find('\n').map_or(log.len(), |i| at + i);
        panic!(
            "a server thread panicked: {}\n{}",
            &log[start..end],
            ctx.about()
        );
    }
}

/// The last lines of a long log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Waits (bounded) until the server is back to `baseline` threads plus
/// [`THREAD_SLACK`]; fails if it is not. Skipped where `/proc` is absent.
fn threads_settle(ctx: &Ctx, server: &Server, baseline: Option<usize>) {
    let Some(baseline) = baseline else {
        say(&format!(
            "{}: thread count not checked (no /proc/PID/task on this system)",
            ctx.test
        ));
        return;
    };
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let now = thread_count(server.pid()).unwrap_or(0);
        if now <= baseline + THREAD_SLACK {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "thread leak: the server had {baseline} threads before the test and still has \
                 {now} {SETTLE_TIMEOUT:?} after every client left\n{}",
                ctx.about()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Generators shared by every protocol
// ---------------------------------------------------------------------------

/// Byte sequences that are not valid UTF-8: a lone continuation byte, a
/// truncated sequence, an overlong encoding, a UTF-16 surrogate, 0xff.
const INVALID_UTF8: &[&[u8]] = &[
    b"\x80",
    b"\xc3",
    b"\xc3\x28",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",
    b"\xf0\x9f\x98",
    b"\xf8\x88\x80\x80\x80",
    b"\xff\xfe",
];

/// One of `from`, at random.
fn pick<'a, T: ?Sized>(rng: &mut Rng, from: &[&'a T]) -> &'a T {
    from[rng.below(from.len() as u64) as usize]
}

/// `len` printable ASCII bytes (no line breaks).
fn printable(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| b' ' + rng.below(95) as u8).collect()
}

/// Text with invalid UTF-8 spliced in.
fn broken_utf8(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(20) as usize;
    let mut out = printable(rng, len);
    for _ in 0..1 + rng.below(3) {
        out.extend_from_slice(pick(rng, INVALID_UTF8));
        let more = rng.below(10) as usize;
        out.extend(printable(rng, more));
    }
    out
}

/// A piece of plain garbage: random bytes, invalid UTF-8, runs of one byte,
/// line breaks of every kind, NULs, terminal escapes.
fn junk(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => {
            let len = rng.below(512) as usize;
            rng.bytes(len)
        }
        1 => {
            let len = rng.below(8192) as usize;
            rng.bytes(len)
        }
        2 => broken_utf8(rng),
        3 => {
            let byte = *pick(rng, &[&b'a', &b'.', &b' ', &b'\r', &b'/']);
            vec![byte; rng.below(20_000) as usize]
        }
        4 => {
            let ending = pick(rng, &[&b"\n"[..], b"\r\n", b"\r", b"\n\r"]);
            ending.repeat(rng.below(50) as usize)
        }
        5 => vec![0u8; rng.below(300) as usize],
        6 => b"\x1b[2J\x1b[31m\x07\x08\x7f\x1b]0;pwned\x07\x00\t".to_vec(),
        _ => {
            let len = rng.below(200) as usize;
            printable(rng, len)
        }
    }
}

/// A line ending, usually a proper one.
fn ending(rng: &mut Rng) -> &'static [u8] {
    match rng.below(10) {
        0 => b"",
        1 => b"\r",
        2..=4 => b"\r\n",
        _ => b"\n",
    }
}

/// Lines joined with random endings; sometimes cut short in the middle.
fn lines_to_bytes(rng: &mut Rng, lines: &[Vec<u8>], may_cut: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line);
        out.extend_from_slice(ending(rng));
    }
    if may_cut && !out.is_empty() && rng.below(4) == 0 {
        // Stop in the middle of a command: the session then ends with its
        // line (or body) unfinished.
        let cut = rng.below(out.len() as u64) as usize;
        out.truncate(cut);
    }
    out
}

/// SHA-256 in lowercase hex, as the file protocol carries it.
fn hex_digest(data: &[u8]) -> String {
    to_hex(&sha256(data))
}

/// A digest that certainly is not the digest of `data`.
fn wrong_digest(data: &[u8]) -> String {
    let mut other = data.to_vec();
    other.push(b'!');
    hex_digest(&other)
}

// ---------------------------------------------------------------------------
// 01 echo
// ---------------------------------------------------------------------------

/// One garbage echo session. After a half-close the server must have echoed
/// exactly what was sent, byte for byte.
fn echo_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let mut payload = Vec::new();
    for _ in 0..rng.below(4) {
        payload.extend(junk(rng));
    }
    // Kept under the socket buffers: we send all before we read, and the
    // echo must fit in our receive buffer meanwhile (see ex01's round trip).
    payload.truncate(48 * 1024);
    let end = Ending::pick(rng, !payload.is_empty());
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &payload);
    let sent_all = !s.broken;
    let back = s.end(end)?;
    if end == Ending::HalfClose && sent_all && back != payload {
        let first = back
            .iter()
            .zip(&payload)
            .position(|(a, b)| a != b)
            .unwrap_or(back.len().min(payload.len()));
        return Err(format!(
            "echoed {} bytes for {} sent, first difference at byte {first}",
            back.len(),
            payload.len()
        ));
    }
    Ok(())
}

/// Sends `payload` while reading the echo, then half-closes; returns the echo.
fn echo_round_trip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let stream = common::connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let sending = payload.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&sending).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = stream;
    let echoed = common::read_to_end(&mut reader);
    sender.join().unwrap();
    echoed
}

/// Echo: 4,000 garbage sessions later the server is up, echoes 100 KB byte
/// for byte and has no more threads than before. (Contract flags only: it
/// runs under the instructor's override too.)
#[test]
fn echo_survives_garbage() {
    let ctx = Ctx::new("echo_survives_garbage");
    let mut server = Server::start(ECHO, &[]);
    let before = baseline(&server);
    let addr = server.addr();
    hammer(&ctx, "garbage sessions", 4000, move |rng, log| {
        echo_session(addr, rng, log)
    });
    still_up(&ctx, &mut server);
    threads_settle(&ctx, &server, before);
    let payload = ctx.rng(1000).bytes(100_000);
    let echoed = echo_round_trip(addr, &payload);
    assert!(
        echoed == payload,
        "a well-formed client got {} bytes back for 100000 sent, or different bytes\n{}",
        echoed.len(),
        ctx.about()
    );
    threads_settle(&ctx, &server, before);
}

// ---------------------------------------------------------------------------
// 02 chat
// ---------------------------------------------------------------------------

/// Chat lines with wrong arguments, odd spacing and hostile names.
const CHAT_JUNK: &[&str] = &[
    "/nick",
    "/nick ",
    "/nick two words",
    "/nick 0123456789abcdefg",
    "/nick é",
    "/nick ../../etc",
    "/nick guest1",
    "/nick GUEST2",
    "/NICK upper",
    "/msg",
    "/msg nobody",
    "/msg nobody hello",
    "/msg guest1 hi",
    "/msg  guest2   spaced   out",
    "/who extra words",
    "/me",
    "/me waves",
    "/topic",
    "/help me",
    "/",
    "//",
    "/ nick x",
    "/quit",
    "/quit now",
    "/dance",
    "",
    " ",
    "\t",
    "hello",
];

/// One chat line of garbage (without its line ending).
fn chat_line(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => junk(rng),
        // Over the 1024-byte limit: `! line too long`, then the server closes.
        1 => {
            let len = 1025 + rng.below(4000) as usize;
            printable(rng, len)
        }
        2 => printable(rng, 1024),
        3 => broken_utf8(rng),
        4 => {
            let mut line = b"/nick ".to_vec();
            let len = rng.below(20) as usize;
            line.extend(printable(rng, len));
            line
        }
        5 => {
            let mut line = b"/topic ".to_vec();
            let len = rng.below(1100) as usize;
            line.extend(printable(rng, len));
            line
        }
        6 => {
            let mut line = b"/msg ".to_vec();
            line.extend(broken_utf8(rng));
            line
        }
        _ => pick(rng, CHAT_JUNK).as_bytes().to_vec(),
    }
}

/// One garbage chat session: a few bad lines, sent without waiting.
fn chat_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let lines: Vec<Vec<u8>> = (0..1 + rng.below(6)).map(|_| chat_line(rng)).collect();
    let bytes = lines_to_bytes(rng, &lines, true);
    // Every chat client is welcomed: a reply is certain.
    let end = Ending::pick(rng, true);
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &bytes);
    s.end(end).map(drop)
}

/// One `\n`-terminated UTF-8 line from a check client, without its `\n`;
/// panics (showing what came) on anything else, the server closing included.
fn read_lf_line(reader: &mut impl BufRead) -> String {
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).unwrap();
    assert!(
        line.ends_with(b"\n"),
        "expected a line, got {}",
        show(&line)
    );
    line.pop();
    String::from_utf8(line).expect("a UTF-8 line")
}

/// A chat client for the checks after the garbage.
struct Chatter {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// The guest name the server gave this client on joining.
    name: String,
}

impl Chatter {
    /// Connects and reads the welcome (and the topic, if garbage set one).
    fn join(addr: SocketAddr) -> Chatter {
        let stream = common::connect(addr);
        let mut chatter = Chatter {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            name: String::new(),
        };
        let welcome = chatter.line();
        assert!(
            welcome.starts_with("* welcome"),
            "expected a welcome, got {welcome:?}"
        );
        chatter.name = Chatter::guest_name(&welcome);
        chatter
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn line(&mut self) -> String {
        read_lf_line(&mut self.reader)
    }

    /// Reads one notice about another client, `* NAME<ending>`.
    fn expect_notice(&mut self, ending: &str) {
        let line = self.line();
        assert!(
            line.starts_with("* ") && line.ends_with(ending),
            "expected a notice ending in {ending:?}, got {line:?}"
        );
    }

    /// Asserts that the next line about any of `ours` (the checkers' names)
    /// is `want`. Lines about nobody of ours are skipped: a garbage session
    /// that the server accepts late (from its backlog) may still join, say
    /// something and leave, or set the topic, while the checkers talk.
    fn expect(&mut self, want: &str, ours: &[&str], ctx: &Ctx) {
        // Bounded: every read has the socket's timeout, and at most this
        // many unrelated lines are skipped.
        for _ in 0..10_000 {
            let line = self.line();
            if line == want {
                return;
            }
            let mentions_ours = line
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .any(|word| ours.contains(&word));
            assert!(
                !mentions_ours,
                "unexpected chat line {line:?}, expected {want:?}\n{}",
                ctx.about()
            );
        }
        panic!("{want:?} never came\n{}", ctx.about());
    }

    /// The guest name the server gave us, from its welcome line
    /// (`* welcome, you are guestN …`).
    fn guest_name(welcome: &str) -> String {
        welcome
            .strip_prefix("* welcome, you are ")
            .and_then(|rest| rest.split([' ', ',', ')']).next())
            .unwrap_or_else(|| panic!("no name in the welcome {welcome:?}"))
            .to_string()
    }
}

/// Sends `/who` until the answer is `want`, skipping other lines meanwhile;
/// fails after [`SETTLE_TIMEOUT`].
fn wait_for_who(chatter: &mut Chatter, want: &str, ctx: &Ctx) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        chatter.send("/who");
        let mut answer = chatter.line();
        while !answer.starts_with("* online: ") {
            answer = chatter.line();
        }
        if answer == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ghosts in the room: {answer:?}, expected {want:?}\n{}",
            ctx.about()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Two clients that find each other after the garbage: nicknames, a message
/// from one to the other, a private message, and `/who` listing exactly them.
fn chat_works(addr: SocketAddr, ctx: &Ctx) {
    let mut a = Chatter::join(addr);
    a.send("/nick checker-a");
    // A garbage client still on its way out may say one last thing (the
    // thread check allows for one such client): wait until the room holds
    // nobody but us, then expect every line exactly.
    wait_for_who(&mut a, "* online: checker-a", ctx);
    let mut b = Chatter::join(addr);
    let b_guest = b.name.clone();
    let ours = ["checker-a", "checker-b", b_guest.as_str()];
    a.expect(&format!("* {b_guest} joined"), &ours, ctx);
    b.send("/nick checker-b");
    b.expect("* you are now checker-b", &ours, ctx);
    a.expect(&format!("* {b_guest} is now checker-b"), &ours, ctx);
    a.send("hello after the garbage");
    b.expect("checker-a: hello after the garbage", &ours, ctx);
    b.send("/msg checker-a and back");
    a.expect("[private] checker-b: and back", &ours, ctx);
    wait_for_who(&mut b, "* online: checker-a, checker-b", ctx);
    a.send("/quit");
    a.expect("* bye", &ours, ctx);
}

/// Chat: 3,000 garbage sessions later (over-long lines, invalid UTF-8, bad
/// commands, abrupt ends) two clients still talk, nobody else is in the room,
/// and no thread is left over. (Contract flags only: runs under an override.)
#[test]
fn chat_survives_garbage() {
    let ctx = Ctx::new("chat_survives_garbage");
    let mut server = Server::start(CHAT, &[]);
    let before = baseline(&server);
    let addr = server.addr();
    hammer(&ctx, "garbage sessions", 3000, move |rng, log| {
        chat_session(addr, rng, log)
    });
    still_up(&ctx, &mut server);
    threads_settle(&ctx, &server, before);
    chat_works(addr, &ctx);
    threads_settle(&ctx, &server, before);
}

// ---------------------------------------------------------------------------
// 03 file server
// ---------------------------------------------------------------------------

/// Names the garbage tries to store under (one is the name the real client
/// uses afterwards).
const FILE_NAMES: &[&str] = &["g0", "g1.txt", "a-b_c.d", "kept.bin"];

/// File commands with wrong arguments, bad names and impossible sizes.
const FILE_JUNK: &[&str] = &[
    "LIST x",
    "LIST ",
    "QUIT now",
    "GET",
    "GET ",
    "GET ../x",
    "GET /etc/passwd",
    "GET .upload-0000000000000000",
    "GET a b",
    "GET .",
    "GET ..",
    "STAT",
    "STAT ../x",
    "DELETE",
    "DELETE ../../x",
    "DELETE .",
    "PUT",
    "PUT ",
    "PUT x",
    "PUT x 5",
    "PUT x -5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x +5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 0x10 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 5 E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "PUT x 5 e3b0c442",
    "PUT x 5 zzb0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 99999999999999999999 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 18446744073709551615 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 18446744073709551616 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 4097 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT ../x 5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT .hidden 5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT a b 5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT  x  5  e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "AUTH learner x y",
    "HELO",
    "",
    " ",
    "list",
];

/// A broken handshake answer (the server's nonce is never read, so no proof
/// can be right).
fn auth_junk(rng: &mut Rng) -> Vec<u8> {
    let nonce = to_hex(&rng.bytes(32));
    let proof = to_hex(&rng.bytes(32));
    let mut line = match rng.below(10) {
        0 => format!("AUTH learner {nonce} {proof}").into_bytes(),
        1 => format!("AUTH nobody {nonce} {proof}").into_bytes(),
        2 => format!("AUTH learner {nonce}").into_bytes(),
        3 => format!("AUTH learner {nonce} {proof} extra").into_bytes(),
        4 => format!("auth  learner  {nonce}  {proof}").into_bytes(),
        5 => {
            // Over the 512-byte limit of a handshake line.
            let mut line = b"AUTH learner ".to_vec();
            let len = 500 + rng.below(6000) as usize;
            line.extend(printable(rng, len));
            line
        }
        6 => {
            let mut line = b"AUTH ".to_vec();
            line.extend(broken_utf8(rng));
            line.extend(format!(" {nonce} {proof}").bytes());
            line
        }
        7 => format!("PUT g0 5 {}", hex_digest(b"hello")).into_bytes(),
        8 => pick(rng, &["LIST", "QUIT", "", "AUTH", "GET g0"])
            .as_bytes()
            .to_vec(),
        _ => junk(rng),
    };
    line.extend_from_slice(ending(rng));
    if rng.below(3) == 0 {
        line.extend(junk(rng));
    }
    line
}

/// One command after a correct login, possibly with a body. Returns the
/// bytes and whether the session must end right after them (a body cut
/// short must stay short: what we sent next would complete it).
fn file_command(rng: &mut Rng) -> (Vec<u8>, bool) {
    let name = pick(rng, FILE_NAMES);
    let mut bytes = match rng.below(10) {
        0 | 1 => pick(rng, FILE_JUNK).as_bytes().to_vec(),
        2 => {
            // Over the command line limit: ERR bad request, then a close.
            let len = 4097 + rng.below(8000) as usize;
            let mut line = b"GET ".to_vec();
            line.extend(printable(rng, len));
            line
        }
        3 | 4 => {
            // A body cut short: the server must throw its temporary away.
            let size = 1 + rng.below(FILE_MAX_SIZE as u64) as usize;
            let body = rng.bytes(size);
            let sent = rng.below(size as u64) as usize;
            let mut out = format!("PUT {name} {size} {}\n", hex_digest(&body)).into_bytes();
            out.extend_from_slice(&body[..sent]);
            return (out, true);
        }
        5 | 6 => {
            // A whole body with the wrong digest (and maybe bytes past its
            // end, which the server must read as the next command).
            let size = rng.below(FILE_MAX_SIZE as u64 + 1) as usize;
            let body = rng.bytes(size);
            let mut out = format!("PUT {name} {size} {}\n", wrong_digest(&body)).into_bytes();
            out.extend_from_slice(&body);
            if rng.below(3) == 0 {
                out.extend(junk(rng));
            }
            return (out, false);
        }
        7 => {
            let mut line = pick(rng, &["GET ", "STAT ", "DELETE ", "PUT "])
                .as_bytes()
                .to_vec();
            line.extend(broken_utf8(rng));
            line
        }
        8 => format!("{} {name}", pick(rng, &["GET", "STAT", "get", "DELETE"])).into_bytes(),
        _ => junk(rng),
    };
    bytes.extend_from_slice(ending(rng));
    (bytes, false)
}

/// Reads the challenge, answers it correctly, checks the server's proof.
fn file_login(s: &mut Session<'_>) -> Result<(), String> {
    let challenge = s.line("the AUTH challenge")?;
    let Some(sn) = challenge.strip_prefix("AUTH HMAC-SHA256 ") else {
        return Err(format!("expected the AUTH challenge, got {challenge:?}"));
    };
    let login = file_login_lines(sn, "learner", FILE_SECRET).map_err(|e| e.to_string())?;
    s.send(format!("{}\n", login.line).as_bytes());
    let ok = s.line("OK <server proof> after a correct login")?;
    if ok != login.ok {
        return Err(format!("a correct login got {ok:?}"));
    }
    Ok(())
}

/// One garbage file session: a broken handshake, or a correct login
/// followed by bad commands.
fn file_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let mut s = Session::open(addr, log)?;
    if rng.below(10) < 4 {
        // Garbage instead of a login. The challenge is certainly there, unread.
        let bytes = auth_junk(rng);
        s.send_split(rng, &bytes);
        let end = Ending::pick(rng, true);
        return s.end(end).map(drop);
    }
    file_login(&mut s)?;
    for _ in 0..1 + rng.below(6) {
        let (bytes, must_end) = file_command(rng);
        s.send_split(rng, &bytes);
        if must_end {
            break;
        }
    }
    let end = Ending::pick(rng, false);
    s.end(end).map(drop)
}

/// A logged-in file client for the checks (panics on any surprise).
struct FileClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl FileClient {
    fn login(addr: SocketAddr) -> FileClient {
        let stream = common::connect(addr);
        let mut client = FileClient {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let challenge = client.line();
        let sn = challenge
            .strip_prefix("AUTH HMAC-SHA256 ")
            .unwrap_or_else(|| panic!("expected the AUTH challenge, got {challenge:?}"))
            .to_string();
        let login = file_login_lines(&sn, "learner", FILE_SECRET).unwrap();
        let ok = client.ask(login.line.as_bytes());
        assert_eq!(ok, login.ok);
        client
    }

    fn line(&mut self) -> String {
        read_lf_line(&mut self.reader)
    }

    fn ask(&mut self, line: &[u8]) -> String {
        self.writer.write_all(line).unwrap();
        self.writer.write_all(b"\n").unwrap();
        self.line()
    }
}

/// A served folder and a users file for one test.
fn file_setup(test: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(&format!("bad-input-files-{test}"));
    let root = dir.join("root");
    fs::create_dir(&root).unwrap();
    let users = dir.join("users.txt");
    fs::write(&users, format!("learner:{FILE_SECRET}\n")).unwrap();
    (root, users)
}

/// Starts the file server with a 1 ms pause before DENIED and no slowing
/// down of an address that fails often (hidden knobs: the garbage tests fail
/// thousands of logins from one address on purpose) and a small
/// `--max-size`, plus `extra`.
fn start_file_server(root: &Path, users: &Path, extra: &[&str]) -> Server {
    let max = FILE_MAX_SIZE.to_string();
    let mut args = vec![
        "--root",
        root.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
        "--deny-delay-ms",
        "1",
        "--free-failures",
        "1000000000",
        "--max-size",
        &max,
    ];
    args.extend_from_slice(extra);
    Server::start(FILES, &args)
}

/// File server: 3,000 garbage sessions (broken handshakes; after a real login,
/// bad names, impossible sizes such as `PUT x 99999999999999999999 …`,
/// bodies cut short, wrong digests, over-long lines) leave the root empty and
/// no thread behind; then a real client stores and fetches a file, and the
/// root holds exactly that file. (Reference only: it relies on the hidden
/// `--deny-delay-ms`; at the default 500 ms per DENIED it would take minutes.)
#[test]
fn file_server_survives_garbage() {
    if !reference_only(FILES, "file_server_survives_garbage") {
        return;
    }
    let ctx = Ctx::new("file_server_survives_garbage");
    let (root, users) = file_setup("files");
    let mut server = start_file_server(&root, &users, &[]);
    let before = baseline(&server);
    let addr = server.addr();
    hammer(&ctx, "garbage sessions", 3000, move |rng, log| {
        file_session(addr, rng, log)
    });
    still_up(&ctx, &mut server);
    threads_settle(&ctx, &server, before);
    assert_eq!(
        dir_entries(&root),
        Vec::<String>::new(),
        "the garbage left files in the root\n{}",
        ctx.about()
    );

    let data = ctx.rng(1000).bytes(3000);
    let digest = hex_digest(&data);
    let mut client = FileClient::login(addr);
    let ready = client.ask(format!("PUT kept.bin {} {digest}", data.len()).as_bytes());
    assert_eq!(ready, "READY", "{}", ctx.about());
    client.writer.write_all(&data).unwrap();
    assert_eq!(client.line(), format!("OK {} {digest}", data.len()));
    assert_eq!(
        client.ask(b"GET kept.bin"),
        format!("OK {} {digest}", data.len())
    );
    let mut body = vec![0u8; data.len()];
    client.reader.read_exact(&mut body).unwrap();
    assert!(body == data, "GET returned other bytes than were stored");
    assert_eq!(client.ask(b"LIST"), "OK 1");
    assert_eq!(client.line(), format!("{} {digest} kept.bin", data.len()));
    assert_eq!(client.ask(b"QUIT"), "BYE");
    drop(client);
    assert_eq!(dir_entries(&root), ["kept.bin"], "{}", ctx.about());
    threads_settle(&ctx, &server, before);
}

// ---------------------------------------------------------------------------
// 04 mail relay
// ---------------------------------------------------------------------------

/// SMTP commands with wrong arguments, broken addresses and huge sizes.
/// None of them names a recipient that would be accepted, so no sequence of
/// them can ever reach `354`, let alone store a message.
const SMTP_JUNK: &[&str] = &[
    "HELO",
    "EHLO",
    "EHLO ",
    "EHLO [127.0.0.1]",
    "helo a b c",
    "MAIL",
    "MAIL FROM:",
    "MAIL FROM:<",
    "MAIL FROM:<>",
    "MAIL FROM:<alice@example.test",
    "MAIL FROM:alice@example.test",
    "MAIL FROM:<alice@example.test> SIZE=99999999999999999999",
    "MAIL FROM:<alice@example.test> SIZE=18446744073709551616",
    "MAIL FROM:<alice@example.test> SIZE=999999",
    "MAIL FROM:<alice@example.test> SIZE=-1",
    "MAIL FROM:<alice@example.test> SIZE=",
    "MAIL FROM:<alice@example.test> SIZE",
    "MAIL FROM:<alice@example.test>SIZE=10",
    "MAIL FROM:<alice@example.test> BODY=BINARYMIME",
    "MAIL FROM:<@a,@b:alice@example.test>",
    "MAIL FROM:<@:>",
    "MAIL FROM:<@>",
    "MAIL FROM:<a@>",
    "MAIL FROM:<x@[300.1.1.1]>",
    "MAIL FROM:<x@[IPv6:zz::1]>",
    "MAIL FROM:<é@example.test>",
    "mail from:<a@ex\u{e4}mple.test>",
    "RCPT",
    "RCPT TO:",
    "RCPT TO:<>",
    "RCPT TO:<nobody@example.test>",
    "RCPT TO:<../../etc@example.test>",
    "RCPT TO:<.queue@example.test>",
    "RCPT TO:<bob@elsewhere.test>",
    "RCPT TO:<bob@example.test> NOTIFY=NEVER",
    "RCPT TO:<bob@example.test>NOTIFY=NEVER",
    "RCPT TO:<x@-bad-.test>",
    "RCPT TO:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.test>",
    "DATA",
    "DATA x",
    "BDAT 99999999999999999999 LAST",
    "RSET",
    "RSET x",
    "NOOP",
    "VRFY",
    "VRFY bob",
    "EXPN staff",
    "HELP",
    "AUTH PLAIN AGJvYgBib2ItcHc=",
    "STARTTLS",
    "TURN",
    "QUIT now",
    ".",
    "",
    " ",
];

/// One SMTP command line of garbage.
fn smtp_junk(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => junk(rng),
        // Over 512 bytes: `500 line too long`, and the session carries on.
        1 => {
            let mut line = b"MAIL FROM:<".to_vec();
            let len = 510 + rng.below(3000) as usize;
            line.extend(printable(rng, len));
            line
        }
        2 => {
            let mut line = pick(rng, &["MAIL FROM:<", "RCPT TO:<", "EHLO ", "VRFY "])
                .as_bytes()
                .to_vec();
            line.extend(broken_utf8(rng));
            line
        }
        _ => pick(rng, SMTP_JUNK).as_bytes().to_vec(),
    }
}

/// A message line that can never end the message: it starts with a letter
/// (the end is a line holding a single `.`), and holds no line break.
fn safe_text_line(rng: &mut Rng) -> Vec<u8> {
    let mut line = b"x".to_vec();
    match rng.below(3) {
        0 => line.extend(broken_utf8(rng)),
        1 => {
            let len = rng.below(80) as usize;
            line.extend(
                rng.bytes(len)
                    .into_iter()
                    .filter(|&b| b != b'\n' && b != b'\r'),
            );
        }
        _ => {
            let len = rng.below(80) as usize;
            line.extend(printable(rng, len));
        }
    }
    line
}

/// The lines of a transaction that gets as far as `354` (a correct greeting,
/// sender and recipient), then a message that must never be stored: it is
/// never finished, or it breaks a limit before its final dot.
fn smtp_transaction(rng: &mut Rng) -> (Vec<Vec<u8>>, bool) {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let greeting = pick(rng, &["EHLO client.test", "HELO client.test", "ehlo x"]);
    lines.push(greeting.as_bytes().to_vec());
    let from = pick(
        rng,
        &[
            "MAIL FROM:<alice@example.test>",
            "MAIL FROM:<>",
            "mail from:<alice@example.test> size=100",
            "MAIL FROM:<alice@example.test> BODY=8BITMIME",
        ],
    );
    lines.push(from.as_bytes().to_vec());
    for _ in 0..1 + rng.below(3) {
        let rcpt = pick(
            rng,
            &[
                "RCPT TO:<bob@example.test>",
                "rcpt to:<ALICE@Example.Test>",
                "RCPT TO:<postmaster>",
                "RCPT TO:<nobody@example.test>",
            ],
        );
        lines.push(rcpt.as_bytes().to_vec());
    }
    lines.push(b"RCPT TO:<bob@example.test>".to_vec());
    lines.push(b"DATA".to_vec());
    let kind = rng.below(4);
    if kind != 3 {
        for _ in 0..rng.below(12) {
            lines.push(safe_text_line(rng));
        }
    }
    match kind {
        // Never finished: the session ends inside DATA, maybe with the final
        // dot sent but not its line ending.
        0 => {
            if rng.below(2) == 0 {
                lines.push(b".".to_vec());
            }
            (lines, true)
        }
        // A line over 1000 bytes, then the dot: 500, nothing stored.
        1 => {
            let mut line = b"x".to_vec();
            let len = 999 + rng.below(4000) as usize;
            line.extend(printable(rng, len));
            lines.push(line);
            lines.push(b".".to_vec());
            (lines, false)
        }
        // Over --max-size, then the dot: 552, nothing stored.
        2 => {
            let mut size = 0;
            while size <= MAIL_MAX_SIZE {
                let mut line = b"x".to_vec();
                line.extend(printable(rng, 200));
                size += line.len() + 2;
                lines.push(line);
            }
            lines.push(b".".to_vec());
            (lines, false)
        }
        // A message that has been through 100 relays (1,300 bytes of
        // headers, under --max-size): a mail loop, 554, nothing stored.
        _ => {
            lines.extend(vec![b"Received: x".to_vec(); 100]);
            lines.push(b"".to_vec());
            lines.push(b"xbody".to_vec());
            lines.push(b".".to_vec());
            (lines, false)
        }
    }
}

/// One garbage SMTP session: junk commands, or a transaction whose message
/// must not be stored; pipelined, without waiting for replies.
fn smtp_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let mut bytes = Vec::new();
    if rng.below(3) == 0 {
        let (lines, unfinished) = smtp_transaction(rng);
        for (i, line) in lines.iter().enumerate() {
            bytes.extend_from_slice(line);
            let last = i + 1 == lines.len();
            if unfinished && last {
                // The last line of an unfinished message may be cut anywhere,
                // but it must never become a lone "." line.
                if line != b"." && rng.below(2) == 0 {
                    bytes.extend_from_slice(b"\r\n");
                }
            } else {
                bytes.extend_from_slice(if rng.below(4) == 0 { b"\n" } else { b"\r\n" });
            }
        }
        if !unfinished && rng.below(2) == 0 {
            // After the refused message, more junk commands.
            let more: Vec<Vec<u8>> = (0..rng.below(4)).map(|_| smtp_junk(rng)).collect();
            bytes.extend(lines_to_bytes(rng, &more, true));
        }
    } else {
        let lines: Vec<Vec<u8>> = (0..1 + rng.below(8)).map(|_| smtp_junk(rng)).collect();
        bytes = lines_to_bytes(rng, &lines, true);
    }
    let end = Ending::pick(rng, true); // the greeting is certain
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &bytes);
    s.end(end).map(drop)
}

/// POP3 commands with wrong arguments and huge numbers.
const POP3_JUNK: &[&str] = &[
    "USER",
    "USER ",
    "USER nobody",
    "USER ../../etc/passwd",
    "USER .queue",
    "PASS",
    "PASS ",
    "PASS wrong",
    "APOP bob 0123456789abcdef0123456789abcdef",
    "AUTH",
    "AUTH PLAIN",
    "STLS",
    "CAPA",
    "CAPA x",
    "STAT",
    "LIST",
    "LIST 0",
    "LIST -1",
    "LIST 99999999999999999999",
    "LIST abc",
    "UIDL",
    "UIDL 1 2",
    "RETR",
    "RETR 0",
    "RETR 1",
    "RETR -1",
    "RETR 99999999999999999999",
    "TOP",
    "TOP 1",
    "TOP 1 -1",
    "TOP 1 99999999999999999999",
    "TOP x y",
    "DELE",
    "DELE 0",
    "DELE 1",
    "DELE 99999999999999999999",
    "RSET",
    "RSET x",
    "NOOP",
    "NOOP x",
    "QUIT now",
    ".",
    "",
    " ",
];

/// One POP3 command line of garbage.
fn pop3_junk(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => junk(rng),
        // Over 255 bytes: `-ERR line too long`, and the session carries on.
        1 => {
            let mut line = b"USER ".to_vec();
            let len = 253 + rng.below(2000) as usize;
            line.extend(printable(rng, len));
            line
        }
        2 => {
            let mut line = pick(rng, &["USER ", "PASS ", "RETR ", "TOP 1 "])
                .as_bytes()
                .to_vec();
            line.extend(broken_utf8(rng));
            line
        }
        _ => pick(rng, POP3_JUNK).as_bytes().to_vec(),
    }
}

/// One garbage POP3 session: junk commands, maybe after a correct login or
/// a few wrong passwords; pipelined, without waiting for replies.
fn pop3_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let mut bytes = Vec::new();
    match rng.below(3) {
        // A correct login (mailboxes are empty during the garbage), then
        // junk. Two sessions may want the same mailbox: one gets [IN-USE].
        0 => {
            let user = pick(rng, &["alice", "bob", "BOB"]);
            let password = format!("{}-pw", user.to_lowercase());
            bytes.extend(format!("USER {user}\r\nPASS {password}\r\n").bytes());
        }
        // Wrong passwords: after the third, the server hangs up.
        1 => {
            for _ in 0..1 + rng.below(4) {
                let pass = pick(rng, &["PASS bob", "PASS  bob-pw", "PASS bob-pw ", "PASS"]);
                bytes.extend(format!("USER bob\r\n{pass}\r\n").bytes());
            }
        }
        _ => {}
    }
    let lines: Vec<Vec<u8>> = (0..1 + rng.below(8)).map(|_| pop3_junk(rng)).collect();
    bytes.extend(lines_to_bytes(rng, &lines, true));
    let end = Ending::pick(rng, true); // the greeting is certain
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &bytes);
    s.end(end).map(drop)
}

/// A raw SMTP or POP3 client for the checks (CRLF lines).
struct MailWire {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl MailWire {
    fn open(addr: SocketAddr) -> MailWire {
        let stream = common::connect(addr);
        MailWire {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    fn line(&mut self) -> String {
        common::read_crlf_line(&mut self.reader)
    }

    /// A whole SMTP reply (continuation lines joined with `\n`).
    fn reply(&mut self) -> String {
        common::read_smtp_reply(&mut self.reader)
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
    }

    fn smtp(&mut self, line: &str, code: &str) {
        self.send(line);
        let reply = self.reply();
        assert!(
            reply.starts_with(code),
            "{line:?}: expected {code}, got {reply:?}"
        );
    }

    fn pop3(&mut self, line: &str) -> String {
        self.send(line);
        let reply = self.line();
        assert!(reply.starts_with("+OK"), "{line:?}: got {reply:?}");
        reply
    }
}

/// Every file under `dir`, relative to it, sorted.
fn all_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A mail relay with `extra` flags; returns it and its spool folder.
fn start_relay(test: &str, extra: &[&str]) -> (Server, PathBuf) {
    let dir = temp_dir(&format!("bad-input-mail-{test}"));
    let spool = dir.join("spool");
    let users = dir.join("users");
    fs::write(&users, MAIL_USERS).unwrap();
    let max = MAIL_MAX_SIZE.to_string();
    let mut args = vec![
        "--spool",
        spool.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
        "--max-size",
        &max,
        "--auth-delay-ms",
        "1",
        // Thousands of wrong passwords from one address, on purpose: no
        // slowing down (the throttle has its own test).
        "--free-failures",
        "1000000000",
    ];
    args.extend_from_slice(extra);
    let server = Server::start_with(
        MAIL,
        &["--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0"],
        &args,
        2,
    );
    (server, spool)
}

/// Mail relay: 4,000 garbage sessions on SMTP and POP3 (bad commands and
/// addresses, `SIZE=` huge, DATA never finished, over-long lines, too big,
/// looping, wrong passwords, `RETR 99999999999999999999`) store nothing and
/// leave no thread; then a real message is sent and fetched, and the spool
/// holds that message alone. (Reference only: it relies on the hidden
/// `--auth-delay-ms`; at the default 500 ms per wrong password it would take minutes.)
#[test]
fn mail_relay_survives_garbage() {
    if !reference_only(MAIL, "mail_relay_survives_garbage") {
        return;
    }
    let ctx = Ctx::new("mail_relay_survives_garbage");
    let (mut server, spool) = start_relay("mail", &[]);
    let before = baseline(&server);
    let (smtp, pop3) = (server.addr_of("smtp"), server.addr_of("pop3"));
    hammer(
        &ctx,
        "garbage SMTP and POP3 sessions",
        4000,
        move |rng, log| {
            if rng.below(5) < 3 {
                smtp_session(smtp, rng, log)
            } else {
                pop3_session(pop3, rng, log)
            }
        },
    );
    still_up(&ctx, &mut server);
    threads_settle(&ctx, &server, before);
    assert_eq!(
        all_files(&spool),
        Vec::<String>::new(),
        "the garbage left files in the spool\n{}",
        ctx.about()
    );

    let subject = format!("after the garbage {}", ctx.seed);
    let mut wire = MailWire::open(smtp);
    assert!(wire.reply().starts_with("220"));
    wire.smtp("EHLO checker.test", "250");
    wire.smtp("MAIL FROM:<alice@example.test>", "250");
    wire.smtp("RCPT TO:<bob@example.test>", "250");
    wire.smtp("DATA", "354");
    wire.send(&format!("Subject: {subject}\r\n\r\nstill here\r\n."));
    let reply = wire.reply();
    assert!(
        reply.starts_with("250"),
        "the message was refused: {reply:?}\n{}",
        ctx.about()
    );
    wire.smtp("QUIT", "221");

    let mut wire = MailWire::open(pop3);
    assert!(wire.line().starts_with("+OK"));
    wire.pop3("USER bob");
    wire.pop3("PASS bob-pw");
    let stat = wire.pop3("STAT");
    assert!(
        stat.starts_with("+OK 1 "),
        "bob's mailbox: {stat:?}\n{}",
        ctx.about()
    );
    wire.pop3("RETR 1");
    let mut message = String::new();
    loop {
        let line = wire.line();
        if line == "." {
            break;
        }
        message.push_str(&line);
        message.push('\n');
    }
    assert!(
        message.contains(&format!("Subject: {subject}\n\nstill here\n")),
        "{message}"
    );
    wire.pop3("QUIT");

    let files = all_files(&spool);
    assert!(
        files.len() == 1 && files[0].starts_with("bob/new/"),
        "the spool should hold bob's one message, and holds {files:?}\n{}",
        ctx.about()
    );
    threads_settle(&ctx, &server, before);
}

/// Mail relay, spam filters (chapter 11): 800 sessions from a client
/// outside `--relay-allow` (loopback is moved outside): garbage sent before
/// the greeting, a flood of made-up senders (each a new greylist triplet),
/// and random rule-triggering messages (GTUBE, forged `X-Spam-*` fields,
/// folded lines, capitals, a forged local `From:`) from a sender that passed
/// greylisting. Afterwards the relay is up with no thread left behind, the
/// passed sender still passes, the greylist holds at most its cap (50 here)
/// after a restart, and every stored message carries exactly one verdict of
/// ours, with GTUBE always in `.Junk`.
#[test]
fn mail_relay_filters_survive_garbage() {
    if !reference_only(MAIL, "mail_relay_filters_survive_garbage") {
        return;
    }
    let ctx = Ctx::new("mail_relay_filters_survive_garbage");
    let filters = [
        "--relay-allow",
        "::1/128",
        "--greet-wait-ms",
        "500",
        "--greylist-ms",
        "300",
        "--greylist-max",
        "50",
    ];
    let (mut server, spool) = start_relay("filters", &filters);
    let smtp = server.addr_of("smtp");
    // A sender that retries as a real server does, and so passes.
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !rcpt_accepted(smtp, FRIEND) {
        assert!(
            Instant::now() < deadline,
            "{FRIEND} never passed greylisting"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let before = baseline(&server);
    hammer(
        &ctx,
        "filter sessions from outside",
        800,
        move |rng, log| match rng.below(3) {
            0 => talk_before_greeting(smtp, rng, log),
            1 => made_up_sender(smtp, rng, log),
            _ => rule_triggering_message(smtp, rng, log),
        },
    );
    still_up(&ctx, &mut server);
    threads_settle(&ctx, &server, before);
    assert!(
        rcpt_accepted(smtp, FRIEND),
        "the flood pushed out a passed sender"
    );

    let mut stored = 0;
    for name in all_files(&spool) {
        if name == ".greylist" {
            continue;
        }
        let in_junk = name.starts_with("bob/.Junk/new/");
        assert!(
            in_junk || name.starts_with("bob/new/") || name == "bob/.Junk/maildirfolder",
            "unexpected file {name}\n{}",
            ctx.about()
        );
        if name.ends_with("maildirfolder") {
            continue;
        }
        stored += 1;
        let text = String::from_utf8_lossy(&fs::read(spool.join(&name)).unwrap()).into_owned();
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        let fields = |prefix: &str| {
            head.lines()
                .filter(|l| l.to_ascii_lowercase().starts_with(prefix))
                .count()
        };
        assert_eq!(fields("x-spam-status:"), 1, "{name}:\n{text}");
        assert_eq!(fields("x-spam-level:"), 1, "{name}:\n{text}");
        assert!(
            fields("x-spam-flag:") <= 1 && !head.contains("FAKED"),
            "{name}:\n{text}"
        );
        assert_eq!(
            in_junk,
            head.contains("X-Spam-Flag: YES"),
            "{name}:\n{text}"
        );
        if body.contains(GTUBE) {
            assert!(in_junk, "GTUBE in the inbox: {name}");
        }
    }
    assert!(stored > 0, "no message was stored\n{}", ctx.about());

    // A restart compacts the log: the table is within its cap on disk too.
    server.kill();
    let users = spool.parent().unwrap().join("users");
    let mut args = vec![
        "--spool",
        spool.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
    ];
    args.extend_from_slice(&filters);
    let server = Server::start_with(
        MAIL,
        &["--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0"],
        &args,
        2,
    );
    let table = fs::read_to_string(spool.join(".greylist")).unwrap();
    let entries = table.lines().filter(|l| !l.starts_with('#')).count();
    assert!(entries <= 50, "{entries} triplets kept, the cap is 50");
    assert!(
        rcpt_accepted(server.addr_of("smtp"), FRIEND),
        "forgot a passed sender"
    );
}

/// The sender of [`mail_relay_filters_survive_garbage`] that passes greylisting.
const FRIEND: &str = "friend@far.test";

/// The GTUBE test string, which every content filter scores as spam.
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A polite SMTP session up to `MAIL FROM:<from>`: reads the whole
/// greeting (through the wait) first.
fn polite(addr: SocketAddr, from: &str) -> MailWire {
    let mut wire = MailWire::open(addr);
    let greeting = wire.reply();
    assert!(greeting.starts_with("220"), "{greeting:?}");
    wire.smtp("EHLO mx.far.test", "250");
    wire.smtp(&format!("MAIL FROM:<{from}>"), "250");
    wire
}

/// Is `bob@example.test` accepted at once from `from`?
fn rcpt_accepted(addr: SocketAddr, from: &str) -> bool {
    let mut wire = polite(addr, from);
    wire.send("RCPT TO:<bob@example.test>");
    let reply = wire.reply();
    assert!(
        reply.starts_with("250") || reply.starts_with("451 4.7.1"),
        "{reply:?}"
    );
    wire.smtp("QUIT", "221");
    reply.starts_with("250")
}

/// Garbage before the greeting: the relay answers the `220-` line, then
/// `521` and closes, or (if the garbage came late) the final `220 `.
fn talk_before_greeting(
    addr: SocketAddr,
    rng: &mut Rng,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let mut bytes = junk(rng);
    bytes.insert(0, b'E'); // never empty
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &bytes);
    let ending = Ending::pick(rng, true);
    let back = s.end(ending)?;
    if ending == Ending::HalfClose {
        let text = String::from_utf8_lossy(&back);
        if !text.starts_with("220-") {
            return Err(format!(
                "no 220- first line before the wait: {}",
                show(&back)
            ));
        }
        if let Some(at) = text.find("521 5.5.1 protocol error: talked before the greeting\r\n") {
            let after = &text[at..].split_once("\r\n").map_or("", |(_, rest)| rest);
            if !after.is_empty() {
                return Err(format!("the relay went on after its 521: {}", show(&back)));
            }
        } else if !text.contains("\r\n220 ") {
            return Err(format!(
                "neither 521 nor the final greeting: {}",
                show(&back)
            ));
        }
    }
    Ok(())
}

/// A new, made-up sender: its first `RCPT` must be greylisted.
fn made_up_sender(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let from = format!("bot{:016x}@spam{}.test", rng.next_u64(), rng.below(1000));
    log.push(format!("made-up sender {from}"));
    let mut wire = polite(addr, &from);
    wire.send("RCPT TO:<bob@example.test>");
    let reply = wire.reply();
    if !reply.starts_with("451 4.7.1 <bob@example.test>: greylisted") {
        return Err(format!("a made-up sender's first RCPT got {reply:?}"));
    }
    wire.smtp("QUIT", "221");
    Ok(())
}

/// Header lines that trigger rules, forge a verdict, or fold.
const SCORED_HEADERS: &[&str] = &[
    "X-Spam-Flag: NO FAKED",
    "x-spam-status: No, score=-99.0 FAKED",
    "X-SPAM-LEVEL: FAKED",
    "X-Spam-Report: FAKED\r\n\tfolded FAKED line\r\n  and FAKED another",
    "Subject: CHEAP PILLS FOR EVERYONE",
    "Subject: lunch?",
    "From: Boss <ceo@example.test>",
    "From: friend@far.test",
    "Date: Tue, 1 Dec 2026 12:00:00 +0000",
    "Message-ID: <garbage@far.test>",
    "To: bob@example.test",
    "X-Mailer: bulk\r\n\tfolded",
];

/// A message from [`FRIEND`] with random headers from [`SCORED_HEADERS`]
/// and a random body (GTUBE sometimes): stored with our verdict.
fn rule_triggering_message(
    addr: SocketAddr,
    rng: &mut Rng,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let mut text = String::new();
    for _ in 0..rng.below(8) {
        text.push_str(pick(rng, SCORED_HEADERS));
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    // At most 8 header lines and 6 body lines of at most 150 bytes: under
    // the relay's --max-size of 2000 bytes.
    for _ in 0..rng.below(7) {
        let line = match rng.below(5) {
            0 => GTUBE.to_string(),
            1 => "X-Spam-Flag: NO (in the body, where it stays)".to_string(),
            2 => "x".repeat(rng.below(150) as usize),
            _ => String::from_utf8_lossy(&printable(rng, 60)).into_owned(),
        };
        // Dot-stuffing: a line starting with '.' gets one more.
        if line.starts_with('.') {
            text.push('.');
        }
        text.push_str(&line);
        text.push_str("\r\n");
    }
    log.push(format!("message of {} bytes", text.len()));
    let mut wire = polite(addr, FRIEND);
    wire.send("RCPT TO:<bob@example.test>");
    let reply = wire.reply();
    if !reply.starts_with("250") {
        return Err(format!("the passed sender's RCPT got {reply:?}"));
    }
    wire.smtp("DATA", "354");
    wire.writer
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    wire.send(".");
    let reply = wire.reply();
    if !reply.starts_with("250") {
        return Err(format!("a message was refused: {reply:?}"));
    }
    wire.smtp("QUIT", "221");
    Ok(())
}

// ---------------------------------------------------------------------------
// Slow-loris clients
// ---------------------------------------------------------------------------

/// How often a slow-loris client sends its next byte.
const TRICKLE_GAP: Duration = Duration::from_millis(200);
/// A slow-loris client still connected this long after its first byte has
/// not been dropped (the servers run with a 1 s clock).
const TRICKLE_LIMIT: Duration = Duration::from_secs(8);

/// Trickles `byte` over `stream` every [`TRICKLE_GAP`], never a line break,
/// reading whatever the server says meanwhile, until the server closes.
/// Returns what the server sent and how long after the first byte it closed.
fn trickle(stream: TcpStream, byte: u8) -> Result<(Vec<u8>, Duration), String> {
    let (got, closed) = common::trickle(
        &mut &stream,
        &mut &stream,
        &stream,
        byte,
        TRICKLE_GAP,
        TRICKLE_LIMIT,
    );
    match closed {
        Some(after) => Ok((got, after)),
        None => Err(format!(
            "a client trickling one byte every {TRICKLE_GAP:?} was still connected after \
             {TRICKLE_LIMIT:?}; the server had sent {}",
            show(&got)
        )),
    }
}

/// How a slow-loris client gets going: connect, get as far into the
/// protocol as it needs, and return the socket and the byte to trickle.
type LorisSetup = Box<dyn FnOnce() -> (TcpStream, u8) + Send>;

/// Runs slow-loris clients at once, on threads of their own. Panics unless
/// every one was dropped between 0.8 s (by the 1 s clock, not for some
/// other reason) and [`TRICKLE_LIMIT`]. Returns what each was told.
fn lorises(clients: Vec<(&'static str, LorisSetup)>) -> Vec<(&'static str, Vec<u8>)> {
    let running: Vec<_> = clients
        .into_iter()
        .map(|(name, setup)| {
            (
                name,
                thread::spawn(move || {
                    let (stream, byte) = setup();
                    trickle(stream, byte)
                }),
            )
        })
        .collect();
    running
        .into_iter()
        .map(|(name, handle)| {
            let (got, after) = handle
                .join()
                .unwrap_or_else(|_| panic!("{name}: the slow-loris client failed"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                after >= Duration::from_millis(800),
                "{name}: dropped after {after:?}, before its 1 s clock ran out; it got {}",
                show(&got)
            );
            (name, got)
        })
        .collect()
}

/// Connects with [`common::connect`]'s timeouts.
fn raw(addr: SocketAddr) -> TcpStream {
    common::connect(addr)
}

/// Reads one `\n`-terminated line from a raw stream, a byte at a time (so
/// nothing after it is taken from the socket).
fn raw_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("expected a line, got {} then {other:?}", show(&line)),
        }
    }
    String::from_utf8_lossy(&line).trim_end().to_string()
}

/// Echo (`--idle-timeout 1`): every byte is a whole message in echo, so a
/// client trickling bytes gets each one back; once it stalls, it is dropped
/// after the idle second, like a client that never sent anything. Another
/// client is served meanwhile.
#[test]
fn slow_loris_is_dropped_echo() {
    if !reference_only(ECHO, "slow_loris_is_dropped_echo") {
        return;
    }
    let server = Server::start(ECHO, &["--idle-timeout", "1"]);
    let before = baseline(&server);
    let addr = server.addr();
    let trickler = thread::spawn(move || {
        let mut stream = raw(addr);
        for (i, &b) in b"slowly".iter().enumerate() {
            if i > 0 {
                thread::sleep(Duration::from_millis(300));
            }
            stream.write_all(&[b]).unwrap();
            let mut back = [0u8; 1];
            stream.read_exact(&mut back).unwrap();
            assert_eq!(back[0], b, "a trickled byte came back changed");
        }
        // 1.5 s of trickling is past the 1 s idle timeout: the client was
        // kept because each byte was a complete message. Now it stalls.
        let stalled = Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (rest, stalled.elapsed())
    });
    let silent = thread::spawn(move || {
        let mut stream = raw(addr);
        let start = Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (rest, start.elapsed())
    });
    assert_eq!(echo_round_trip(addr, b"meanwhile\n"), b"meanwhile\n");
    for (who, handle) in [
        ("the stalled trickler", trickler),
        ("the silent client", silent),
    ] {
        let (rest, after) = handle.join().unwrap();
        assert!(rest.is_empty(), "{who} got {}", show(&rest));
        assert!(
            (Duration::from_millis(800)..TRICKLE_LIMIT).contains(&after),
            "{who} was dropped after {after:?}, expected about 1 s"
        );
    }
    let ctx = Ctx::new("slow_loris_is_dropped_echo");
    threads_settle(&ctx, &server, before);
}

/// Chat (`--line-timeout 1`, idle timeout off as by default): a client that
/// trickles a line without ever ending it gets `! …` and is dropped after
/// about a second, and the room hears it left; a silent client stays
/// (reading without talking is normal in a chat).
#[test]
fn slow_loris_is_dropped_chat() {
    if !reference_only(CHAT, "slow_loris_is_dropped_chat") {
        return;
    }
    let ctx = Ctx::new("slow_loris_is_dropped_chat");
    let server = Server::start(CHAT, &["--line-timeout", "1"]);
    let before = baseline(&server);
    let addr = server.addr();
    let mut watcher = Chatter::join(addr);
    let silent = Chatter::join(addr);
    watcher.expect_notice(" joined");
    let got = lorises(vec![(
        "chat slow-loris",
        Box::new(move || {
            let mut stream = raw(addr);
            assert!(raw_line(&mut stream).starts_with("* welcome"));
            (stream, b'z')
        }),
    )]);
    let text = String::from_utf8_lossy(&got[0].1);
    assert!(
        text.starts_with("! "),
        "the slow-loris was told nothing: {text:?}"
    );
    // The watcher saw the slow-loris join and leave; the silent client stays.
    watcher.expect_notice(" joined");
    watcher.expect_notice(" left");
    watcher.send("/who");
    let answer = watcher.line();
    assert!(
        answer.starts_with("* online: ") && answer.matches(", ").count() == 1,
        "expected the watcher and the silent client: {answer:?}"
    );
    drop((watcher, silent));
    threads_settle(&ctx, &server, before);
}

/// File server (`--line-timeout 1`, idle 30 s): a client trickling its
/// handshake answer, a logged-in one trickling a command, and one trickling
/// an upload's body (5 bytes/s, under the 500 bytes/s a body must average
/// after its first second) are each dropped after about a second, which the
/// 30 s idle clock alone would never do. So is one that goes silent in the
/// middle of a body. No partial upload is left behind, and a real client is
/// served meanwhile.
#[test]
fn slow_loris_is_dropped_file_server() {
    if !reference_only(FILES, "slow_loris_is_dropped_file_server") {
        return;
    }
    let ctx = Ctx::new("slow_loris_is_dropped_file_server");
    let (root, users) = file_setup("loris");
    let server = start_file_server(
        &root,
        &users,
        &["--line-timeout", "1", "--idle-timeout", "30"],
    );
    let before = baseline(&server);
    let addr = server.addr();
    lorises(vec![
        (
            "slow-loris in the handshake",
            Box::new(move || {
                let mut stream = raw(addr);
                assert!(raw_line(&mut stream).starts_with("AUTH HMAC-SHA256 "));
                (stream, b'A')
            }),
        ),
        (
            "slow-loris after login",
            Box::new(move || {
                let client = FileClient::login(addr);
                (client.writer, b'L')
            }),
        ),
        (
            "slow-loris in an upload's body",
            Box::new(move || {
                let mut client = FileClient::login(addr);
                let digest = to_hex(&sha256(&[b'B'; 1000]));
                let ready = client.ask(format!("PUT loris.bin 1000 {digest}").as_bytes());
                assert_eq!(ready, "READY");
                (client.writer, b'B')
            }),
        ),
    ]);
    server.expect_stderr("body arrived too slowly", Duration::from_secs(5));
    // A client that stops outright in the middle of a body: the idle clock
    // (30 s) would wait, but no single wait in a body may outlast the line
    // timeout (1 s here).
    let mut stalled = FileClient::login(addr);
    let digest = to_hex(&sha256(&[b'S'; 1000]));
    let ready = stalled.ask(format!("PUT stalled.bin 1000 {digest}").as_bytes());
    assert_eq!(ready, "READY");
    stalled.writer.write_all(&[b'S'; 10]).unwrap();
    let since = Instant::now();
    stalled
        .writer
        .set_read_timeout(Some(TRICKLE_LIMIT))
        .unwrap();
    let mut rest = Vec::new();
    let closed = stalled.reader.read_to_end(&mut rest);
    let after = since.elapsed();
    assert!(
        closed.is_ok() && after >= Duration::from_millis(800) && after < TRICKLE_LIMIT,
        "a client silent in the middle of a body should be dropped after about 1 s, \
         not {closed:?} after {after:?} (it was told {})",
        show(&rest)
    );
    let mut client = FileClient::login(addr);
    assert_eq!(client.ask(b"LIST"), "OK 0");
    drop(client);
    assert_eq!(dir_entries(&root), Vec::<String>::new());
    threads_settle(&ctx, &server, before);
}

/// Mail relay (`--line-timeout 1`, idle timeouts off): slow-loris clients are
/// dropped after about a second on SMTP (in a command, in the rest of an
/// over-long command, in a message's text) and on POP3 (in a command, in
/// the rest of an over-long one); the half-received message is not stored.
#[test]
fn slow_loris_is_dropped_mail_relay() {
    if !reference_only(MAIL, "slow_loris_is_dropped_mail_relay") {
        return;
    }
    let ctx = Ctx::new("slow_loris_is_dropped_mail_relay");
    let (server, spool) = start_relay(
        "loris",
        &[
            "--idle-timeout",
            "0",
            "--pop3-idle-timeout",
            "0",
            "--line-timeout",
            "1",
        ],
    );
    let before = baseline(&server);
    let (smtp, pop3) = (server.addr_of("smtp"), server.addr_of("pop3"));
    let greeted = |addr: SocketAddr, prelude: &'static [u8], byte: u8| -> LorisSetup {
        Box::new(move || {
            let mut stream = raw(addr);
            let greeting = raw_line(&mut stream);
            assert!(
                greeting.starts_with("220") || greeting.starts_with("+OK"),
                "{greeting}"
            );
            stream.write_all(prelude).unwrap();
            (stream, byte)
        })
    };
    let long_smtp: &'static [u8] = Box::leak(vec![b'a'; 600].into_boxed_slice());
    let long_pop3: &'static [u8] = Box::leak(vec![b'a'; 300].into_boxed_slice());
    let got = lorises(vec![
        ("SMTP command", greeted(smtp, b"EH", b'L')),
        ("SMTP over-long command", greeted(smtp, long_smtp, b'a')),
        (
            "SMTP message text",
            greeted(
                smtp,
                b"EHLO x\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: half\r\n\r\nnever fin",
                b'i',
            ),
        ),
        ("POP3 command", greeted(pop3, b"US", b'E')),
        ("POP3 over-long command", greeted(pop3, long_pop3, b'a')),
    ]);
    for (name, text) in &got {
        if name.starts_with("SMTP") && !name.contains("over-long") {
            assert!(
                String::from_utf8_lossy(text).contains("421 "),
                "{name}: expected a 421 before the close, got {}",
                show(text)
            );
        }
    }
    let mut wire = MailWire::open(smtp);
    assert!(wire.reply().starts_with("220"));
    wire.smtp("NOOP", "250");
    assert_eq!(
        all_files(&spool),
        Vec::<String>::new(),
        "a half-received message was stored"
    );
    drop(wire);
    threads_settle(&ctx, &server, before);
}

/// Mail relay (`--line-timeout 1`, idle timeout 30 s): a client that sends
/// its message text one empty line every 200 ms (5 bytes/s, each line
/// finished at once, so neither the line clock nor the idle clock ever
/// rings) is dropped by the body clock after about a second, as the file
/// server drops a trickled upload: told `421`, the reason logged, nothing
/// stored.
#[test]
fn slow_message_body_is_dropped_mail_relay() {
    if !reference_only(MAIL, "slow_message_body_is_dropped_mail_relay") {
        return;
    }
    let ctx = Ctx::new("slow_message_body_is_dropped_mail_relay");
    let (server, spool) = start_relay(
        "slow-body",
        &["--idle-timeout", "30", "--line-timeout", "1"],
    );
    let before = baseline(&server);
    let smtp = server.addr_of("smtp");
    let got = lorises(vec![(
        "SMTP message text, a line at a time",
        Box::new(move || {
            let mut stream = raw(smtp);
            assert!(raw_line(&mut stream).starts_with("220"));
            stream
                .write_all(b"HELO x\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
                .unwrap();
            for expected in ["250", "250", "250", "354"] {
                let reply = raw_line(&mut stream);
                assert!(
                    reply.starts_with(expected),
                    "expected {expected}, got {reply:?}"
                );
            }
            (stream, b'\n')
        }),
    )]);
    let text = String::from_utf8_lossy(&got[0].1);
    assert!(
        text.starts_with("421 "),
        "expected a 421 before the close, got {text:?}"
    );
    server.expect_stderr("message arrived too slowly", Duration::from_secs(5));
    let mut wire = MailWire::open(smtp);
    assert!(wire.reply().starts_with("220"));
    wire.smtp("NOOP", "250");
    drop(wire);
    assert_eq!(
        all_files(&spool),
        Vec::<String>::new(),
        "a half-received message was stored"
    );
    threads_settle(&ctx, &server, before);
}

/// The resident memory (`VmRSS`, in bytes) of process `pid`, where `/proc` has it.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The bytes in the files of `dir` (none if it is missing).
fn bytes_in(dir: &Path) -> u64 {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Clients that hold a half-sent message in [`mail_relay_memory_stays_bounded`].
const HALF_SENT_CLIENTS: usize = 32;
/// How much of its message each of them sends (of a 4 MiB message).
const HALF_SENT_BYTES: usize = 2 * 1024 * 1024;
/// How much the relay's memory may grow while they hold: far below the
/// 64 MiB their text would take in memory, far above the few KiB each
/// connection needs (thread stack pages, read and write buffers).
const HALF_SENT_GROWTH: u64 = 16 * 1024 * 1024;

/// Mail relay (`--max-size` 8 MiB): 32 clients each send 2 MiB of a 4 MiB
/// message and hold it there. Until the relay has taken all 64 MiB (seen
/// in its `SPOOL/.incoming/` files, where the reference streams message
/// text, so a busy machine only makes the test wait), its resident memory
/// grows by less than 16 MiB. When the clients hang up, nothing is left in
/// the spool, and a real message is still delivered. (Reference only, and
/// skipped without `/proc`.)
#[test]
fn mail_relay_memory_stays_bounded() {
    if !reference_only(MAIL, "mail_relay_memory_stays_bounded") {
        return;
    }
    let (server, spool) = start_relay(
        "rss",
        // A long line clock: on a loaded machine the last client may take
        // a while to send its share, and the first ones sit silent meanwhile.
        &["--max-size", "8388608", "--line-timeout", "120"],
    );
    let pid = server.pid();
    let smtp = server.addr_of("smtp");
    // One message first, so that what any delivery allocates once is in
    // the baseline.
    let mut wire = MailWire::open(smtp);
    assert!(wire.reply().starts_with("220"));
    wire.smtp("HELO warm.test", "250");
    wire.smtp("MAIL FROM:<alice@example.test>", "250");
    wire.smtp("RCPT TO:<bob@example.test>", "250");
    wire.smtp("DATA", "354");
    wire.send("Subject: warm-up\r\n\r\nfirst\r\n.");
    assert!(wire.reply().starts_with("250"));
    let Some(rss_before) = resident_bytes(pid) else {
        say("mail_relay_memory_stays_bounded: skipped (no /proc/PID/status)");
        return;
    };
    let senders: Vec<_> = (0..HALF_SENT_CLIENTS)
        .map(|i| {
            thread::spawn(move || {
                let mut client = MailWire::open(smtp);
                assert!(client.reply().starts_with("220"));
                client.smtp(&format!("HELO holder{i}.test"), "250");
                client.smtp("MAIL FROM:<alice@example.test> SIZE=4194304", "250");
                client.smtp("RCPT TO:<bob@example.test>", "250");
                client.smtp("DATA", "354");
                let line = [b"x".repeat(78), b"\r\n".to_vec()].concat();
                let block = line.repeat(HALF_SENT_BYTES / line.len());
                client.writer.write_all(&block).unwrap();
                client
                    .writer
                    .write_all(&line[..HALF_SENT_BYTES - block.len()])
                    .unwrap();
                client
            })
        })
        .collect();
    let clients: Vec<MailWire> = senders.into_iter().map(|h| h.join().unwrap()).collect();
    // Stored with `\n` endings (79 bytes a line), less what may still sit
    // in each connection's write buffer.
    let expected = (HALF_SENT_CLIENTS * (HALF_SENT_BYTES / 80 * 79 - 8192)) as u64;
    let incoming = spool.join(".incoming");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut rss = rss_before;
    loop {
        rss = resident_bytes(pid).unwrap_or(rss);
        let read = bytes_in(&incoming);
        assert!(
            rss.saturating_sub(rss_before) < HALF_SENT_GROWTH,
            "the relay's memory grew by {} KiB (from {} KiB) with {} KiB of half-sent \
             messages stored",
            rss.saturating_sub(rss_before) / 1024,
            rss_before / 1024,
            read / 1024
        );
        if read >= expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay stored only {read} of {expected} bytes of the half-sent messages in 120 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
    say(&format!(
        "mail_relay_memory_stays_bounded: {HALF_SENT_CLIENTS} half-sent messages of \
         {} KiB each: memory grew by {} KiB",
        HALF_SENT_BYTES / 1024,
        rss.saturating_sub(rss_before) / 1024
    ));
    drop(clients);
    // The hang-ups remove the half-received messages (each connection's
    // thread notices its client went, in its own time).
    let deadline = Instant::now() + Duration::from_secs(60);
    while all_files(&spool).len() > 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    wire.smtp("MAIL FROM:<alice@example.test>", "250");
    wire.smtp("RCPT TO:<bob@example.test>", "250");
    wire.smtp("DATA", "354");
    wire.send("Subject: after\r\n\r\nstill here\r\n.");
    assert!(wire.reply().starts_with("250"));
    let files = all_files(&spool);
    assert!(
        files.len() == 2 && files.iter().all(|f| f.starts_with("bob/new/")),
        "the spool should hold bob's two messages, and holds {files:?}"
    );
}

// ---------------------------------------------------------------------------
// A flood past --max-conns
// ---------------------------------------------------------------------------

/// Connections the flood opens (from [`THREADS`] threads at once).
const FLOOD: usize = 200;

/// Opens [`FLOOD`] connections that send nothing; each must get exactly
/// `refusal` and then the end of the stream.
fn flood(ctx: &Arc<Ctx>, addr: SocketAddr, refusal: &'static [u8]) {
    let what = format!("clients over --max-conns at {addr}");
    hammer(ctx, &what, FLOOD, move |_, log| {
        let s = Session::open(addr, log)?;
        let mut reader = s.reader;
        let mut got = Vec::new();
        match reader.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "a client over --max-conns expected {} then a close, got {} then {e}",
                    show(refusal),
                    show(&got)
                ));
            }
        }
        if got != refusal {
            return Err(format!(
                "a client over --max-conns expected {}, got {}",
                show(refusal),
                show(&got)
            ));
        }
        Ok(())
    });
}

/// Polls `admitted` until it returns true (a new client is served once a
/// place is free); fails after a while.
fn eventually_admitted(what: &str, mut admitted: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !admitted() {
        assert!(
            Instant::now() < deadline,
            "{what}: no client admitted after one left"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Echo (`--max-conns 3`): 200 more clients are closed without a byte; the
/// three connected ones keep echoing; when one leaves, a new one is served.
#[test]
fn max_conns_flood_echo() {
    if !reference_only(ECHO, "max_conns_flood_echo") {
        return;
    }
    let ctx = Ctx::new("max_conns_flood_echo");
    let server = Server::start(ECHO, &["--max-conns", "3"]);
    let before = baseline(&server);
    let addr = server.addr();
    let ping = |stream: &mut TcpStream| {
        stream.write_all(b"ping\n").unwrap();
        let mut back = [0u8; 5];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping\n");
    };
    let mut held: Vec<TcpStream> = (0..3).map(|_| raw(addr)).collect();
    held.iter_mut().for_each(ping);
    flood(&ctx, addr, b"");
    held.iter_mut().for_each(ping);
    drop(held.pop());
    eventually_admitted("echo", || {
        let mut stream = raw(addr);
        stream.write_all(b"x").unwrap();
        let mut back = [0u8; 1];
        matches!(stream.read(&mut back), Ok(1))
    });
    drop(held);
    threads_settle(&ctx, &server, before);
}

/// Chat (`--max-conns 3`): 200 more clients get `! server full`; the three
/// in the room hear no join or leave from them and keep talking.
#[test]
fn max_conns_flood_chat() {
    if !reference_only(CHAT, "max_conns_flood_chat") {
        return;
    }
    let ctx = Ctx::new("max_conns_flood_chat");
    let server = Server::start(CHAT, &["--max-conns", "3"]);
    let before = baseline(&server);
    let addr = server.addr();
    let mut held: Vec<Chatter> = Vec::new();
    for _ in 0..3 {
        let newcomer = Chatter::join(addr);
        for earlier in &mut held {
            earlier.expect_notice(" joined");
        }
        held.push(newcomer);
    }
    held[0].send("/nick first");
    assert_eq!(held[0].line(), "* you are now first");
    for other in &mut held[1..] {
        assert!(other.line().ends_with(" is now first"));
    }
    flood(&ctx, addr, b"! server full\n");
    held[0].send("still talking");
    for other in &mut held[1..] {
        // The very next line: nothing about the refused clients came first.
        assert_eq!(other.line(), "first: still talking");
    }
    drop(held.pop());
    eventually_admitted("chat", || {
        let mut stream = raw(addr);
        raw_line(&mut stream).starts_with("* welcome")
    });
    drop(held);
    threads_settle(&ctx, &server, before);
}

/// File server (`--max-conns 3`): 200 more clients get `ERR server full`
/// (not even a challenge); the three logged-in ones keep working.
#[test]
fn max_conns_flood_file_server() {
    if !reference_only(FILES, "max_conns_flood_file_server") {
        return;
    }
    let ctx = Ctx::new("max_conns_flood_file_server");
    let (root, users) = file_setup("flood");
    let server = start_file_server(&root, &users, &["--max-conns", "3"]);
    let before = baseline(&server);
    let addr = server.addr();
    let mut held: Vec<FileClient> = (0..3).map(|_| FileClient::login(addr)).collect();
    flood(&ctx, addr, b"ERR server full\n");
    for client in &mut held {
        assert_eq!(client.ask(b"LIST"), "OK 0");
    }
    drop(held.pop());
    eventually_admitted("file server", || {
        let mut stream = raw(addr);
        raw_line(&mut stream).starts_with("AUTH HMAC-SHA256 ")
    });
    drop(held);
    threads_settle(&ctx, &server, before);
}

/// Mail relay (`--max-conns 2`, a limit per listener): 200 more SMTP clients
/// get `421 4.7.0 too many connections`, 200 more POP3 clients `-ERR too
/// many connections`; the sessions already open carry on.
#[test]
fn max_conns_flood_mail_relay() {
    if !reference_only(MAIL, "max_conns_flood_mail_relay") {
        return;
    }
    let ctx = Ctx::new("max_conns_flood_mail_relay");
    let (server, spool) = start_relay("flood", &["--max-conns", "2"]);
    let before = baseline(&server);
    let (smtp, pop3) = (server.addr_of("smtp"), server.addr_of("pop3"));
    let mut smtp_held: Vec<MailWire> = (0..2)
        .map(|_| {
            let mut wire = MailWire::open(smtp);
            assert!(wire.reply().starts_with("220"));
            wire.smtp("EHLO held.test", "250");
            wire
        })
        .collect();
    let mut pop3_held: Vec<MailWire> = ["alice", "bob"]
        .iter()
        .map(|user| {
            let mut wire = MailWire::open(pop3);
            assert!(wire.line().starts_with("+OK"));
            wire.pop3(&format!("USER {user}"));
            wire.pop3(&format!("PASS {user}-pw"));
            wire
        })
        .collect();
    flood(&ctx, smtp, b"421 4.7.0 too many connections\r\n");
    flood(&ctx, pop3, b"-ERR too many connections\r\n");
    for wire in &mut smtp_held {
        wire.smtp("NOOP", "250");
    }
    for wire in &mut pop3_held {
        assert_eq!(wire.pop3("STAT"), "+OK 0 0");
    }
    drop(smtp_held.pop());
    drop(pop3_held.pop());
    eventually_admitted("smtp", || {
        let mut stream = raw(smtp);
        raw_line(&mut stream).starts_with("220")
    });
    eventually_admitted("pop3", || {
        let mut stream = raw(pop3);
        raw_line(&mut stream).starts_with("+OK")
    });
    drop((smtp_held, pop3_held));
    assert_eq!(all_files(&spool), Vec::<String>::new());
    threads_settle(&ctx, &server, before);
}

// ---------------------------------------------------------------------------
// A flood past the safe cap of a server with low limits
// ---------------------------------------------------------------------------

/// The open-files limit the low-limit servers run under (`ulimit -n`).
const LOW_NOFILE: usize = 64;
/// Connections the flood holds open at once: well past what 64 files allow.
const LOW_FLOOD: usize = 150;

/// Starts `example` (with `args`) under `ulimit -n 64`, from a shell that
/// lowers the limit and then becomes the server (`exec`), so the limit is
/// the server's own and nothing else on the machine is touched. Returns the
/// server and the cap it announced.
fn start_with_low_limit(example: &str, args: &[&str]) -> (Server, usize) {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {LOW_NOFILE} && exec \"$0\" \"$@\""))
        .arg(common::example_path(example))
        .args(["--addr", "127.0.0.1:0"])
        .args(args);
    let server = Server::start_command(example, cmd, 1);
    let told = "connections at once (limited by open files (ulimit -n 64)";
    server.expect_stderr(told, REPLY_TIMEOUT);
    let log = server.stderr();
    let line = log.lines().find(|l| l.contains(told)).unwrap();
    let cap: usize = line
        .strip_prefix("at most ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{example}: no number in {line:?}"));
    assert!(
        (1..LOW_NOFILE).contains(&cap),
        "{example}: a cap of {cap} cannot fit in {LOW_NOFILE} open files"
    );
    (server, cap)
}

/// Echo under `ulimit -n 64` with no `--max-conns`: it announces a cap that
/// fits its files; of 150 clients held at once exactly that many are echoed
/// and every other one is closed without a byte at once (none is left
/// waiting, unanswered, behind a failing `accept`); the admitted ones keep
/// echoing, and once the flood has gone a new client is served.
#[test]
fn low_limit_flood_echo() {
    if !reference_only(ECHO, "low_limit_flood_echo") {
        return;
    }
    let (mut server, cap) = start_with_low_limit(ECHO, &[]);
    let addr = server.addr();
    let mut admitted = Vec::new();
    for i in 0..LOW_FLOOD {
        let mut stream = raw(addr);
        stream.write_all(b"x").unwrap();
        let mut back = [0u8; 1];
        match stream.read(&mut back) {
            Ok(1) => admitted.push(stream),
            Ok(_) => {} // closed without a byte: the refusal
            Err(e) => panic!(
                "client {i} of the flood got neither its echo nor a refusal: {e}\n{}",
                server.stderr()
            ),
        }
    }
    assert_eq!(
        admitted.len(),
        cap,
        "clients served beside the announced cap"
    );
    for stream in &mut admitted {
        stream.write_all(b"y").unwrap();
        let mut back = [0u8; 1];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"y");
    }
    drop(admitted);
    eventually_admitted("echo under ulimit -n 64", || {
        let mut stream = raw(addr);
        stream.write_all(b"z").unwrap();
        let mut back = [0u8; 1];
        matches!(stream.read(&mut back), Ok(1))
    });
    assert!(server.is_running(), "{}", server.stderr());
}

/// Chat (two threads a client) under `ulimit -n 64` with `--max-conns 1000`:
/// the larger figure is lowered with a warning; of 150 clients held at once
/// exactly the cap get `* welcome`, every other one `! server full` at once;
/// the room still talks, and after the flood a new client gets in.
#[test]
fn low_limit_flood_chat() {
    if !reference_only(CHAT, "low_limit_flood_chat") {
        return;
    }
    let (mut server, cap) = start_with_low_limit(CHAT, &["--max-conns", "1000"]);
    server.expect_stderr("warning: --max-conns 1000 is more than", REPLY_TIMEOUT);
    let addr = server.addr();
    let mut admitted = Vec::new();
    for i in 0..LOW_FLOOD {
        let mut stream = raw(addr);
        let mut first = Vec::new();
        let mut byte = [0u8; 1];
        while !first.ends_with(b"\n") {
            match stream.read(&mut byte) {
                Ok(1) => first.push(byte[0]),
                other => panic!(
                    "client {i} of the flood got {} then {other:?}, not a welcome or a \
                     refusal\n{}",
                    show(&first),
                    server.stderr()
                ),
            }
        }
        if first.starts_with(b"* welcome") {
            admitted.push(stream);
        } else {
            assert_eq!(show(&first), show(b"! server full\n"), "client {i}");
        }
    }
    assert_eq!(
        admitted.len(),
        cap,
        "clients in the room beside the announced cap"
    );
    drop(admitted);
    eventually_admitted("chat under ulimit -n 64", || {
        let mut stream = raw(addr);
        raw_line(&mut stream).starts_with("* welcome")
    });
    assert!(server.is_running(), "{}", server.stderr());
}

// ---------------------------------------------------------------------------
// Password guessing over many connections at once
// ---------------------------------------------------------------------------

/// Wrong logins the guessing tests send at once, each on its own connection.
const GUESSES: usize = 40;
/// How long the guessing tests count answers for.
const GUESS_WATCH: Duration = Duration::from_secs(3);
/// The most answers a throttled address can get in [`GUESS_WATCH`] with a
/// 20 ms delay: 5 free, then 40, 80, 160, … ms apart (about 9), with room.
const GUESS_ANSWERS_MAX: usize = 12;

/// Opens [`GUESSES`] connections, lets `prepare` bring each to the point
/// where one line decides (reading the greeting), sends every `guess` at
/// once, and counts how many got `denial` within [`GUESS_WATCH`]. Any other
/// reply fails the test; a connection closed without an answer, or still
/// waiting, is fine.
fn guess_flood(
    addr: SocketAddr,
    prepare: fn(&mut TcpStream) -> Vec<u8>,
    denial: &'static str,
) -> usize {
    let mut clients: Vec<(TcpStream, Vec<u8>)> = (0..GUESSES)
        .map(|_| {
            let mut stream = raw(addr);
            let guess = prepare(&mut stream);
            (stream, guess)
        })
        .collect();
    let start = Instant::now();
    for (stream, guess) in &mut clients {
        stream.write_all(guess).unwrap();
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|(mut stream, _)| {
            thread::spawn(move || {
                let left = GUESS_WATCH
                    .saturating_sub(start.elapsed())
                    .max(Duration::from_millis(1));
                stream.set_read_timeout(Some(left)).unwrap();
                let mut got = Vec::new();
                let mut byte = [0u8; 1];
                while !got.ends_with(b"\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => got.push(byte[0]),
                        Ok(_) => break,
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                        Err(e) => panic!("reading the answer to a guess: {e}"),
                    }
                }
                let text = String::from_utf8_lossy(&got).into_owned();
                assert!(
                    text.is_empty() || text.starts_with(denial),
                    "a guess got {text:?}, not {denial:?} or nothing"
                );
                text.starts_with(denial)
            })
        })
        .collect();
    readers
        .into_iter()
        .map(|r| r.join().unwrap())
        .filter(|&denied| denied)
        .count()
}

/// File server (`--deny-delay-ms 20`, the usual 5 free failures a minute):
/// 40 wrong logins sent at once from one address get at most a dozen
/// `DENIED`s in 3 s, not 40 in 20 ms: parallel connections do not multiply
/// a guesser's speed. The others wait their turn or are closed unanswered
/// (and logged).
#[test]
fn parallel_guessing_file_server() {
    if !reference_only(FILES, "parallel_guessing_file_server") {
        return;
    }
    let (root, users) = file_setup("guessing");
    let server = start_file_server(
        &root,
        &users,
        &["--deny-delay-ms", "20", "--free-failures", "5"],
    );
    let denied = guess_flood(
        server.addr(),
        |stream| {
            let challenge = raw_line(stream);
            let sn = challenge.strip_prefix("AUTH HMAC-SHA256 ").unwrap();
            let login = file_login_lines(sn, "learner", "a-guess").unwrap();
            format!("{}\n", login.line).into_bytes()
        },
        "DENIED",
    );
    assert!(
        (5..=GUESS_ANSWERS_MAX).contains(&denied),
        "{denied} of {GUESSES} parallel guesses answered within {GUESS_WATCH:?}"
    );
    server.expect_stderr("too many failed logins from this address", REPLY_TIMEOUT);
}

/// POP3 (`--auth-delay-ms 20`): 40 wrong `PASS`es sent at once from one
/// address get at most a dozen `-ERR [AUTH]` answers in 3 s, not 40.
#[test]
fn parallel_guessing_pop3() {
    if !reference_only(MAIL, "parallel_guessing_pop3") {
        return;
    }
    let (server, _spool) = start_relay(
        "guessing",
        &["--auth-delay-ms", "20", "--free-failures", "5"],
    );
    let denied = guess_flood(
        server.addr_of("pop3"),
        |stream| {
            assert!(raw_line(stream).starts_with("+OK"));
            stream.write_all(b"USER alice\r\n").unwrap();
            assert!(raw_line(stream).starts_with("+OK"));
            b"PASS a-guess\r\n".to_vec()
        },
        "-ERR [AUTH]",
    );
    assert!(
        (5..=GUESS_ANSWERS_MAX).contains(&denied),
        "{denied} of {GUESSES} parallel guesses answered within {GUESS_WATCH:?}"
    );
    server.expect_stderr("too many failed logins from this address", REPLY_TIMEOUT);
}
