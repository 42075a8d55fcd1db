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

//!
//! This file is the harness: the seed ([`Ctx`]), one garbage session on
//! the wire ([`Session`], [`hammer`]), what must hold afterwards
//! ([`still_up`], [`threads_settle`]), the generators every protocol shares,
//! and the slow-loris, flood and guessing drivers. Each server's garbage,
//! slow-loris and flood tests are in its own module, so that
//! `cargo test --test bad_input chat::` runs one server: `echo.rs`,
//! `chat.rs`, `files.rs`, `mail.rs` and `web.rs`.

#[path = "../common/mod.rs"]
mod common;

mod camera;
mod chat;
mod echo;
mod files;
mod mail;
mod web;

use common::files::hex_digest;
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

/// Starts watching `server` for the test `test`: its context (seed and
/// transcripts), the server, its thread count before any client, and its
/// address.
fn watch(test: &'static str, server: Server) -> (Arc<Ctx>, Server, Option<usize>, SocketAddr) {
    let ctx = Ctx::new(test);
    let before = baseline(&server);
    let addr = server.addr();
    (ctx, server, before, addr)
}

/// Runs `sessions` garbage sessions (see [`hammer`]), then checks that the
/// server is still up and back to its thread count `before`.
fn survive_garbage<F>(
    ctx: &Arc<Ctx>,
    server: &mut Server,
    before: Option<usize>,
    sessions: usize,
    session: F,
) where
    F: Fn(&mut Rng, &mut Vec<String>) -> Result<(), String> + Send + Sync + 'static,
{
    hammer(ctx, "garbage sessions", sessions, session);
    still_up(ctx, server);
    threads_settle(ctx, server, before);
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

/// A digest that certainly is not the digest of `data`.
fn wrong_digest(data: &[u8]) -> String {
    let mut other = data.to_vec();
    other.push(b'!');
    hex_digest(&other)
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
    let clients: Vec<(TcpStream, Vec<u8>)> = (0..GUESSES)
        .map(|_| {
            let mut stream = raw(addr);
            let guess = prepare(&mut stream);
            (stream, guess)
        })
        .collect();
    let send = |(stream, guess): &mut (TcpStream, Vec<u8>)| stream.write_all(guess).unwrap();
    let denied =
        common::answers_at_once(clients, send, GUESS_WATCH, move |(mut stream, _), left| {
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
        });
    denied.into_iter().filter(|&denied| denied).count()
}
