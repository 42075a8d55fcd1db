//! # 05_load_tester: measuring a server honestly
//!
//! A load generator for the course's servers, and for any other echo, chat or
//! file server that speaks the same protocol. It opens many connections at
//! once, drives them as fast as the server answers, and prints what it saw on
//! one line: requests per second, megabytes per second, latency percentiles,
//! and errors.
//!
//! ```text
//! cargo run --release --example 01_echo_server                          # terminal 1
//! cargo run --release --example 05_load_tester -- echo --conns 32       # terminal 2
//! echo conns=32 rounds=1000 size=64 requests=32000 errors=0 secs=0.48 req_per_s=66420 ...
//! ```
//!
//! Modes:
//!
//! * `echo`: N connections, each doing M round trips of S bytes (send, then
//!   wait for the same bytes back). Latency is the time of one round trip.
//!   Each connection has its own client thread, unless `--per-thread K`
//!   gives each thread K of them; `--server-pid` adds the server's CPU time
//!   per request.
//! * `stream`: one connection streams S bytes through an echo server while a
//!   second thread reads them back: raw throughput.
//! * `c10k`: 10,000 echo connections opened by 8 threads as fast as each can
//!   (each proves itself with one round trip), all held open, then all
//!   answering once more after a hold. `--server-pid` reports the server's
//!   memory while it holds them all.
//! * `chat`: one sender and N receivers on a chat server; latency is the time
//!   from a message's send to each receipt (fan-out).
//! * `file`: repeated `GET` (or `PUT`) of one file on the file server, after the
//!   library's `auth::client_handshake`; MB/s of verified transfers.
//! * `hash`: no network at all: how fast the library's SHA-256 hashes a file,
//!   to compare with `sha256sum` and with `file` downloads, which must hash
//!   every byte too.
//!
//! The techniques are the lesson as much as the numbers (chapter 8,
//! `docs/08-measuring.md`): every worker connects and warms up first, then
//! all start together at a barrier; each keeps its latencies in its own
//! buffer, merged and sorted only at the end; and the percentiles, not the
//! average, tell you what a slow client feels.
//!
//! A load generator shares the machine with the server it measures. Only
//! ratios measured side by side in the same run mean anything: run the same
//! command against a baseline server, then against yours.

use netlessons::auth;
use netlessons::cli::{Command, Matches};
use netlessons::connection::{Connection, connect_error};
use netlessons::sha256::{Sha256, to_hex};
use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// One megabyte, as throughput is usually quoted (and as `dd` prints it): 10^6 bytes.
const MB: f64 = 1_000_000.0;
/// Longest chat message we send; the chat server refuses lines over 1024 bytes.
const MAX_CHAT_LINE: usize = 1000;
/// The piece size for streaming and file transfers: big enough that each
/// system call moves a lot, small enough to stay in the CPU's cache.
const CHUNK: usize = 64 * 1024;
/// The stack for each client thread. Our workers keep their buffers on the
/// heap, so a small stack is enough even for hundreds of threads.
const CLIENT_STACK: usize = 256 * 1024;

const AFTER_HELP: &str = "\
Defaults per mode:
  echo    --addr 127.0.0.1:7001 --conns 32 --rounds 1000 (or --duration SECS) --size 64 --warmup 100
          --per-thread 1 (a thread per connection; 8 or 16 cost the client less)
  stream  --addr 127.0.0.1:7001 --size 1G (bytes through one connection)
  c10k    --addr 127.0.0.1:7001 --conns 10000 --threads 8 --hold 5 --size 64
  chat    --addr 127.0.0.1:7002 --conns 8 (receivers) --rounds 200 (messages) --size 64
  file    --addr 127.0.0.1:7003 --rounds 3 (transfers) --size 64M (for --put)
  hash    --file PATH (hashes it once with the library's SHA-256; no server)
Sizes take a K, M or G suffix (powers of 1024). Rates: 1 MB = 10^6 bytes.

The output is one line of key=value pairs; the exit status is 1 if any
connection failed. The file mode reads the secret from NETLESSONS_SECRET.

Examples (start the server first, in another terminal):
  05_load_tester echo --conns 256
  05_load_tester c10k --server-pid \"$(pgrep -f 01_echo_server)\"
  NETLESSONS_SECRET=... 05_load_tester file --user learner --get big.bin

c10k needs one file descriptor per connection in this process and another in
the server: raise the limit in both shells first, e.g. `ulimit -n 20000`.";

fn main() -> ExitCode {
    let args = Command::new(
        "05_load_tester",
        "Drives an echo, chat or file server with many connections and reports \
         requests/s, MB/s, latency percentiles and errors.",
    )
    .positional("MODE", "echo | stream | c10k | chat | file | hash")
    .opt(
        "--addr",
        "HOST:PORT",
        "the server (default: per mode, see below)",
        None,
    )
    .opt(
        "--conns",
        "N",
        "concurrent connections (chat: receivers)",
        None,
    )
    .opt(
        "--rounds",
        "M",
        "round trips per connection (chat: messages; file: transfers)",
        None,
    )
    .opt(
        "--size",
        "BYTES",
        "bytes per round trip or message (stream: in all; file: PUT size)",
        None,
    )
    .opt(
        "--duration",
        "SECS",
        "run each echo connection for SECS seconds instead of --rounds (echo)",
        None,
    )
    .opt(
        "--warmup",
        "M",
        "unmeasured round trips per connection before the start (echo)",
        None,
    )
    .opt(
        "--per-thread",
        "K",
        "connections each client thread drives in lock-step (echo; default 1)",
        None,
    )
    .opt(
        "--threads",
        "T",
        "client threads that open the connections (c10k)",
        Some("8"),
    )
    .opt(
        "--hold",
        "SECS",
        "how long to hold every connection open before they answer (c10k)",
        Some("5"),
    )
    .opt(
        "--server-pid",
        "PID",
        "report this process's memory (VmRSS, VmHWM) from /proc, and its CPU time per request (echo)",
        None,
    )
    .opt(
        "--user",
        "NAME",
        "user for the file server's handshake (file)",
        None,
    )
    .opt("--get", "NAME", "download this file (file)", None)
    .opt(
        "--put",
        "NAME",
        "upload --size generated bytes under this name (file)",
        None,
    )
    .flag(
        "--no-verify",
        "do not hash downloads to check their digest (file)",
    )
    .opt("--file", "PATH", "the file to hash (hash)", None)
    .opt(
        "--timeout",
        "SECS",
        "give up on a connection that is silent this long",
        Some("30"),
    )
    .after_help(AFTER_HELP)
    .parse_env();

    let mode = match args.positionals() {
        [mode] => mode.clone(),
        [] => args.fail("which mode? echo, stream, c10k, chat, file or hash"),
        [_, extra, ..] => args.fail(&format!("unexpected argument '{extra}'")),
    };
    let (default_port, run): (u16, fn(&Matches, Setup) -> Report) = match mode.as_str() {
        "echo" => (7001, run_echo),
        "stream" => (7001, run_stream),
        "c10k" => (7001, run_c10k),
        "chat" => (7002, run_chat),
        "file" => (7003, run_file),
        "hash" => (7003, run_hash),
        other => args.fail(&format!(
            "unknown mode '{other}': use echo, stream, c10k, chat, file or hash"
        )),
    };
    let addr_text = args
        .get("--addr")
        .map_or_else(|| format!("127.0.0.1:{default_port}"), str::to_string);
    // Resolve the name once, up front: thousands of connections should not
    // each ask the resolver, and a typo should fail here, clearly.
    let addr = match addr_text.to_socket_addrs().map(|mut all| all.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => args.fail(&format!("'{addr_text}' resolves to no address")),
        Err(e) => args.fail(&format!("bad --addr '{addr_text}': {e}")),
    };
    let timeout = match args.seconds("--timeout") {
        Some(t) => t,
        None => args.fail("--timeout must be at least 1 second"),
    };
    let setup = Setup { addr, timeout };
    open_file_limit(); // read it now, while we can still open a file

    let report = run(&args, setup);
    println!("{}", report.line);
    if let Some(e) = &report.first_error {
        eprintln!("first error: {e}");
    }
    if report.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What every mode needs.
#[derive(Debug, Clone, Copy)]
struct Setup {
    addr: SocketAddr,
    timeout: Duration,
}

/// What a mode prints: one line, plus the count and first of its errors.
struct Report {
    line: String,
    errors: u64,
    first_error: Option<String>,
}

/// What one worker thread collects. Each worker has its own, so measuring
/// never takes a lock shared with the others: a shared, locked list would
/// make every thread wait for every other, and we would measure the lock.
#[derive(Debug, Default)]
struct Tally {
    /// One entry per completed operation (round trip, delivery, transfer).
    latencies: Vec<Duration>,
    /// Payload bytes moved.
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    /// A tally with room for `n` latencies, reserved before the clock starts
    /// so that growing the buffer never lands inside a measurement.
    fn with_capacity(n: usize) -> Tally {
        Tally {
            latencies: Vec::with_capacity(n),
            ..Tally::default()
        }
    }

    fn fail(&mut self, e: impl fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// ` errors=… p50_ms=… p99_ms=… max_ms=…` for the report line.
    fn latency_fields(&mut self) -> String {
        // Sorting once at the end is cheap next to the run itself, and exact
        // (no histogram buckets to round into).
        self.latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            " p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3}",
            ms(percentile(&self.latencies, 50.0)),
            ms(percentile(&self.latencies, 90.0)),
            ms(percentile(&self.latencies, 99.0)),
            ms(self.latencies.last().copied().unwrap_or_default()),
        )
    }

    fn into_report(self, line: String) -> Report {
        Report {
            line,
            errors: self.errors,
            first_error: self.first_error,
        }
    }
}

/// The `p`th percentile of sorted values, by the nearest-rank method: the
/// smallest value that at least p% of the values are less than or equal to.
///
/// Why percentiles and not the mean: the mean hides the slow requests. If
/// 99 round trips take 1 ms and one takes 500 ms, the mean says 6 ms, which
/// no request took; p50 says 1 ms (the typical one), max says 500 ms (the
/// one that someone waited for).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `count` workers on their own threads and merges their tallies.
///
/// If a thread cannot be started (the system is out of threads or memory),
/// the measurement is meaningless and the workers already started would
/// wait at their barrier forever, so we stop the whole program, saying why.
fn run_workers<F>(count: usize, work: F) -> Tally
where
    F: Fn(usize) -> Tally + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let mut handles = Vec::with_capacity(count);
    let mut total = Tally::default();
    for i in 0..count {
        let work = Arc::clone(&work);
        match thread::Builder::new()
            .name(format!("load-{i}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || work(i))
        {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                eprintln!(
                    "error: could not start client thread {i} of {count}: {e} (try fewer --conns)"
                );
                std::process::exit(1);
            }
        }
    }
    for handle in handles {
        match handle.join() {
            Ok(tally) => total.merge(tally),
            Err(_) => total.fail("a client thread panicked"),
        }
    }
    total
}

// ---------------------------------------------------------------------------
// echo: N connections × M round trips of S bytes
// ---------------------------------------------------------------------------

fn run_echo(args: &Matches, setup: Setup) -> Report {
    let conns = positive(args, "--conns", 32);
    let rounds = positive(args, "--rounds", 1000);
    let size = size_arg(args, "--size", 64);
    let warmup = number(args, "--warmup", 100);
    let per_thread = positive(args, "--per-thread", 1).min(conns);
    // With --duration, every connection runs until the time is up: the
    // count of round trips is then the result rather than the setting.
    let plan = match args.seconds("--duration") {
        Some(time) => Plan::For(time),
        None => Plan::Rounds(rounds),
    };
    let payload = Arc::new(payload(size));
    let threads = conns.div_ceil(per_thread);

    // Every worker thread plus this one meet at the barrier. Each worker
    // first connects and warms up (first connections are slow: the server
    // starts a thread, caches are cold, the CPU may still be at a low
    // clock), and only then do all start measuring *together*. Without the
    // barrier the first threads would run alone against an idle server and
    // the last ones would finish alone, and neither is the load we claim to
    // measure.
    let barrier = Arc::new(Barrier::new(threads + 1));
    // One start time for everyone: whichever thread gets past the barrier
    // first reads the clock, and all the others use that reading. (Each
    // reading its own could differ by a scheduling delay, and a run "for
    // 1 s" could then measure 0.99 s.)
    let clock = Arc::new(OnceLock::new());
    let (worker_barrier, worker_clock) = (Arc::clone(&barrier), Arc::clone(&clock));
    let handle = thread::spawn(move || {
        run_workers(threads, move |i| {
            // Share the connections out: the last thread may have fewer.
            let mine = per_thread.min(conns - i * per_thread);
            echo_worker(
                setup,
                &payload,
                mine,
                plan,
                warmup,
                &worker_barrier,
                &worker_clock,
            )
        })
    });
    barrier.wait();
    let start = *clock.get_or_init(Instant::now);
    let cpu_before = server_cpu(args);
    let mut tally = handle.join().unwrap_or_else(|_| {
        let mut t = Tally::default();
        t.fail("the worker pool panicked");
        t
    });
    let secs = start.elapsed().as_secs_f64();
    let cpu_after = server_cpu(args);

    let requests = tally.latencies.len();
    let mut line = format!(
        "echo conns={conns} {} size={size}{} requests={requests} errors={} secs={secs:.3} \
         req_per_s={:.0} mb_per_s={:.2}",
        match plan {
            Plan::Rounds(rounds) => format!("rounds={rounds}"),
            Plan::For(time) => format!("duration={}", time.as_secs()),
        },
        if per_thread > 1 {
            format!(" per_thread={per_thread}")
        } else {
            String::new()
        },
        tally.errors,
        requests as f64 / secs,
        tally.bytes as f64 / MB / secs,
    );
    line.push_str(&tally.latency_fields());
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        // The server's own CPU time per request: unlike requests/s, this
        // does not depend on how much CPU the load tester took for itself.
        // (The window runs from the barrier until every worker has
        // finished, so it also holds the server's work on the closing
        // connections: a little, next to thousands of requests.)
        let per_request = after.saturating_sub(before).as_secs_f64() / requests.max(1) as f64;
        let _ = write!(line, " server_cpu_us_per_req={:.2}", per_request * 1e6);
    }
    line.push_str(&memory_fields(args));
    tally.into_report(line)
}

/// How long each echo connection runs.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// This many round trips.
    Rounds(usize),
    /// As many round trips as fit in this time.
    For(Duration),
}

/// One echo worker thread with `count` connections: connect, warm up, wait
/// for everyone, then the planned timed round trips.
///
/// With one connection (the default) this is the simplest client there is:
/// send, wait for the reply, repeat. With several (`--per-thread`) the
/// thread drives them in lock-step: it sends one request on each, then
/// reads each reply in turn. Every connection still has exactly one request
/// in flight, so the server sees the same load, but the client thread
/// sleeps once per *batch* instead of once per request: by the time it has
/// read the first reply, the others have usually arrived. That is how
/// load generators such as `wrk` keep their own cost down (with an event
/// loop rather than lock-step), and on a machine where client and server
/// share the cores, a cheaper client leaves more of them to the server.
/// Each latency runs from the moment its request was sent to the moment
/// its whole reply was read, so waiting behind the batch is counted.
fn echo_worker(
    setup: Setup,
    payload: &[u8],
    count: usize,
    plan: Plan,
    warmup: usize,
    barrier: &Barrier,
    clock: &OnceLock<Instant>,
) -> Tally {
    // For a timed run we cannot know the count; 100,000 entries (1.6 MB)
    // per connection cover a few seconds, and past that the buffer grows,
    // rarely.
    let mut tally = Tally::with_capacity(
        count
            * match plan {
                Plan::Rounds(rounds) => rounds,
                Plan::For(_) => 100_000,
            },
    );
    let mut reply = vec![0u8; payload.len()];
    let mut sent = vec![Instant::now(); count];
    let ready = (0..count)
        .map(|_| connect(setup))
        .collect::<io::Result<Vec<TcpStream>>>()
        .and_then(|mut streams| {
            for _ in 0..warmup {
                batch_round_trip(&mut streams, payload, &mut reply, &mut sent, |_| {})?;
            }
            Ok(streams)
        });
    // Every worker must reach the barrier, even one that failed to
    // connect: the others (and the clock) are waiting for all of them.
    barrier.wait();
    let start = *clock.get_or_init(Instant::now);
    let mut streams = match ready {
        Ok(streams) => streams,
        Err(e) => {
            tally.fail(e);
            tally.errors += count as u64 - 1; // none of this thread's ran
            return tally;
        }
    };
    loop {
        let done = match plan {
            Plan::Rounds(rounds) => tally.latencies.len() >= rounds * count,
            Plan::For(time) => start.elapsed() >= time,
        };
        if done {
            break;
        }
        let finished = batch_round_trip(&mut streams, payload, &mut reply, &mut sent, |t| {
            tally.latencies.push(t);
            tally.bytes += payload.len() as u64;
        });
        if let Err(e) = finished {
            // One broken connection ends its thread's share of the run. The
            // others stop with it, and count as errors too, so that
            // `errors` is always the number of connections that did not
            // finish.
            tally.fail(e);
            tally.errors += count as u64 - 1;
            break;
        }
    }
    tally
}

/// One request on every stream, then every reply; `done` gets the latency
/// of each round trip as it completes.
fn batch_round_trip(
    streams: &mut [TcpStream],
    payload: &[u8],
    reply: &mut [u8],
    sent: &mut [Instant],
    mut done: impl FnMut(Duration),
) -> io::Result<()> {
    for (stream, sent) in streams.iter_mut().zip(sent.iter_mut()) {
        *sent = Instant::now();
        stream.write_all(payload)?;
    }
    for (stream, sent) in streams.iter_mut().zip(sent.iter()) {
        read_reply(stream, payload, reply)?;
        done(sent.elapsed());
    }
    Ok(())
}

/// Sends `payload`, reads the same number of bytes back, and checks them.
fn round_trip(stream: &mut TcpStream, payload: &[u8], reply: &mut [u8]) -> io::Result<()> {
    stream.write_all(payload)?;
    read_reply(stream, payload, reply)
}

/// Reads the echo of `payload` into `reply` and checks it.
///
/// `read_exact` matters: the reply may arrive in several pieces, and a
/// single `read` could return only the first.
fn read_reply(stream: &mut TcpStream, payload: &[u8], reply: &mut [u8]) -> io::Result<()> {
    stream.read_exact(reply).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                e.kind(),
                "the server closed the connection before echoing everything",
            )
        } else {
            e
        }
    })?;
    if reply != payload {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the reply differs from what was sent",
        ));
    }
    Ok(())
}

/// `size` printable bytes ending in a newline, so that a server that echoes
/// whole lines (not only a byte-for-byte echo) can be measured too.
fn payload(size: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    if let Some(last) = bytes.last_mut() {
        *last = b'\n';
    }
    bytes
}

/// Connects with timeouts and `TCP_NODELAY` (our messages are whole; Nagle's
/// algorithm would hold each back waiting for the previous reply's ACK).
fn connect(setup: Setup) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&setup.addr, setup.timeout).map_err(|e| {
        // Check for EMFILE before connect_error rewords the error (a
        // reworded io::Error no longer carries the OS error number).
        if e.raw_os_error() == Some(EMFILE) {
            out_of_files(e)
        } else {
            connect_error(&setup.addr.to_string(), e)
        }
    })?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(setup.timeout))?;
    stream.set_write_timeout(Some(setup.timeout))?;
    Ok(stream)
}

/// The OS error "too many open files" (EMFILE): 24 on Linux and macOS.
const EMFILE: i32 = 24;

/// The error for running out of file descriptors, the first wall a load
/// test hits: every socket is one, and the usual default limit (1024) is far
/// below 10,000. Std cannot raise the limit (that takes `setrlimit`, which
/// std does not wrap); the shell can: `ulimit -n 20000`.
#[derive(Debug)]
struct OutOfFiles(String);

impl fmt::Display for OutOfFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutOfFiles {}

fn out_of_files(e: io::Error) -> io::Error {
    let limit = open_file_limit().map_or_else(String::new, |n| format!(" (the limit here is {n})"));
    io::Error::other(OutOfFiles(format!(
        "{e}: this process ran out of file descriptors{limit}; raise the limit \
         in this shell and the server's with `ulimit -n 20000`, then run again"
    )))
}

/// Is this the error made by [`out_of_files`]?
fn is_out_of_files(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OutOfFiles>())
}

/// The soft limit on open files, from `/proc/self/limits` (Linux only).
///
/// Read once and kept: by the time we need it for an error message, we are
/// out of file descriptors and could not open that file any more.
fn open_file_limit() -> Option<u64> {
    static LIMIT: OnceLock<Option<u64>> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    })
}

// ---------------------------------------------------------------------------
// stream: one connection, S bytes through the echo server
// ---------------------------------------------------------------------------

fn run_stream(args: &Matches, setup: Setup) -> Report {
    let total = size_arg(args, "--size", 1 << 30) as u64;
    let mut tally = Tally::default();
    let start = Instant::now();
    match stream_once(setup, total) {
        Ok(()) => tally.bytes = total,
        Err(e) => tally.fail(e),
    }
    let secs = start.elapsed().as_secs_f64();
    let line = format!(
        "stream bytes={total} errors={} secs={secs:.3} mb_per_s={:.1}{}",
        tally.errors,
        tally.bytes as f64 / MB / secs,
        memory_fields(args),
    );
    tally.into_report(line)
}

/// Writes `total` bytes from one thread while this one reads the echo.
///
/// Two threads are not optional: if we wrote everything first, the echoed
/// bytes would fill our receive buffer, the server would block writing them
/// and stop reading, our writes would block too, and both sides would wait
/// for each other forever (a deadlock).
fn stream_once(setup: Setup, total: u64) -> io::Result<()> {
    let stream = connect(setup)?;
    let mut writer = stream.try_clone()?;
    // The pattern, twice over, so that any 64 KiB window of the stream can be
    // checked against one slice of it without wrapping around.
    let pattern: Vec<u8> = (0..2 * CHUNK).map(|i| (i % CHUNK % 251) as u8).collect();
    let pattern = Arc::new(pattern);
    let to_send = Arc::clone(&pattern);
    let sender = thread::spawn(move || -> io::Result<()> {
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            writer.write_all(&to_send[..n])?;
            left -= n as u64;
        }
        // Half-close: "that was everything". An echo server then finishes
        // echoing and closes, and our reads see the end.
        writer.shutdown(Shutdown::Write)
    });
    let mut reader = stream;
    let mut buf = vec![0u8; CHUNK];
    let mut got: u64 = 0;
    let result = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        // Sent byte k was (k % CHUNK) % 251; CHUNK-sized writes restart the
        // pattern, so position `got` in the stream is pattern[got % CHUNK].
        let offset = (got % CHUNK as u64) as usize;
        if buf[..n] != pattern[offset..offset + n] {
            break Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("echoed bytes differ from what was sent, near byte {got}"),
            ));
        }
        got += n as u64;
        if got > total {
            break Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes came back than were sent",
            ));
        }
    };
    // If reading failed, unblock the sender (it may be stuck in a write).
    if result.is_err() {
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the sending thread panicked")));
    result?;
    sent?;
    if got < total {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the server closed after echoing {got} of {total} bytes"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// c10k: ten thousand connections at once
// ---------------------------------------------------------------------------

fn run_c10k(args: &Matches, setup: Setup) -> Report {
    let conns = positive(args, "--conns", 10_000);
    let threads = positive(args, "--threads", 8).min(conns);
    let hold = Duration::from_secs(number(args, "--hold", 5) as u64);
    let size = size_arg(args, "--size", 64);
    let payload = Arc::new(payload(size));

    // Each connection is one file descriptor here (and one in the server).
    // Say so before we start rather than fail at connection 1,021.
    if let Some(limit) = open_file_limit()
        && limit < conns as u64 + 32
    {
        eprintln!(
            "warning: this process may open only {limit} files, fewer than {conns} connections \
             need; raise it with `ulimit -n 20000` (here and in the server's shell)"
        );
    }

    // Three meeting points: all connections open; the hold is over; (end).
    // Every thread passes each barrier whatever happened to it, so one
    // failure cannot leave the others waiting forever.
    let opened = Arc::new(Barrier::new(threads + 1));
    let release = Arc::new(Barrier::new(threads + 1));
    let (o, r) = (Arc::clone(&opened), Arc::clone(&release));
    // Each thread's connections come back to us at the end, so that they are
    // all still open when we read the server's memory.
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let held_by_workers = Arc::clone(&held);
    let start = Instant::now();
    let pool = thread::spawn(move || {
        run_workers(threads, move |i| {
            // Share the connections out: the first `conns % threads`
            // threads take one more.
            let mine = conns / threads + usize::from(i < conns % threads);
            c10k_worker(setup, &payload, mine, &o, &r, &held_by_workers)
        })
    });
    opened.wait();
    let open_secs = start.elapsed().as_secs_f64();
    let during_hold = server_memory(args);
    thread::sleep(hold);
    release.wait();
    let answer_start = Instant::now();
    let mut tally = pool.join().unwrap_or_else(|_| {
        let mut t = Tally::default();
        t.fail("the worker pool panicked");
        t
    });
    let answer_secs = answer_start.elapsed().as_secs_f64();
    let after = server_memory(args);
    let open = held.lock().unwrap_or_else(|p| p.into_inner()).len();
    drop(held);

    // The storm is the work the server had to do: accept and answer every
    // connection, then answer each again. The hold is not part of it.
    let storm_secs = open_secs + answer_secs;
    let mut line = format!(
        "c10k conns={conns} threads={threads} size={size} held={open} requests={} errors={} \
         open_secs={open_secs:.3} answer_secs={answer_secs:.3} storm_secs={storm_secs:.3} \
         req_per_s={:.0}",
        tally.latencies.len(),
        tally.errors,
        tally.latencies.len() as f64 / storm_secs,
    );
    line.push_str(&tally.latency_fields());
    if let Some(m) = during_hold {
        let _ = write!(
            line,
            " hold_rss_mib={:.1} hold_threads={}",
            m.rss_mib, m.threads
        );
    }
    if let Some(m) = after {
        let _ = write!(
            line,
            " server_rss_mib={:.1} server_hwm_mib={:.1}",
            m.rss_mib, m.hwm_mib
        );
    }
    tally.into_report(line)
}

/// Opens `count` connections one after another, each proving itself with a
/// round trip; waits; then does one more round trip on each.
fn c10k_worker(
    setup: Setup,
    payload: &[u8],
    count: usize,
    opened: &Barrier,
    release: &Barrier,
    held: &Mutex<Vec<TcpStream>>,
) -> Tally {
    let mut tally = Tally::with_capacity(2 * count);
    let mut reply = vec![0u8; payload.len()];
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let result = connect(setup).and_then(|mut stream| {
            round_trip(&mut stream, payload, &mut reply)?;
            Ok(stream)
        });
        match result {
            Ok(stream) => {
                tally.latencies.push(t.elapsed());
                tally.bytes += payload.len() as u64;
                streams.push(stream);
            }
            Err(e) => {
                let out_of_fds = is_out_of_files(&e);
                tally.fail(e);
                if out_of_fds {
                    break; // every further attempt would fail the same way
                }
            }
        }
    }
    opened.wait();
    release.wait();
    for stream in &mut streams {
        let t = Instant::now();
        match round_trip(stream, payload, &mut reply) {
            Ok(()) => {
                tally.latencies.push(t.elapsed());
                tally.bytes += payload.len() as u64;
            }
            Err(e) => tally.fail(e),
        }
    }
    held.lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(streams);
    tally
}

/// A server's memory, from `/proc/PID/status` (Linux).
struct Memory {
    /// Resident set: the memory it occupies now.
    rss_mib: f64,
    /// High-water mark: the most it ever occupied.
    hwm_mib: f64,
    threads: u64,
}

/// Reads the `--server-pid` process's memory, if that option was given.
fn server_memory(args: &Matches) -> Option<Memory> {
    let pid: u32 = args.parse_value("--server-pid")?;
    let status = match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("warning: cannot read /proc/{pid}/status ({e}); memory not reported");
            return None;
        }
    };
    // Lines look like "VmRSS:     12345 kB".
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Some(Memory {
        rss_mib: field("VmRSS:") as f64 / 1024.0,
        hwm_mib: field("VmHWM:") as f64 / 1024.0,
        threads: field("Threads:"),
    })
}

/// The CPU time (user + system, all threads) the `--server-pid` process has
/// used so far, if that option was given.
///
/// `/proc/PID/stat` counts it in clock ticks of 1/100 s (Linux's `USER_HZ`,
/// which is 100 whatever the kernel's own tick rate), so a measurement
/// should last many ticks: half a second is 50, good to about 2 %.
fn server_cpu(args: &Matches) -> Option<Duration> {
    let pid: u32 = args.parse_value("--server-pid")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (NAME) STATE …": NAME may contain spaces and parentheses, so
    // count the fields after the *last* ')'. utime and stime are fields 14
    // and 15 of the line, so the 12th and 13th after the name.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// ` server_rss_mib=… server_hwm_mib=…` if `--server-pid` was given.
fn memory_fields(args: &Matches) -> String {
    server_memory(args).map_or_else(String::new, |m| {
        format!(
            " server_rss_mib={:.1} server_hwm_mib={:.1}",
            m.rss_mib, m.hwm_mib
        )
    })
}

// ---------------------------------------------------------------------------
// chat: one sender, N receivers, fan-out latency
// ---------------------------------------------------------------------------

/// How many deliveries have happened, so the sender can wait for all
/// receivers to get message k before it sends message k+1.
#[derive(Default)]
struct Deliveries {
    count: Mutex<u64>,
    changed: Condvar,
}

fn run_chat(args: &Matches, setup: Setup) -> Report {
    let receivers = positive(args, "--conns", 8);
    let messages = positive(args, "--rounds", 200);
    let size = size_arg(args, "--size", 64).min(MAX_CHAT_LINE);

    // All clocks are measured from one Instant: the sender writes its
    // elapsed nanoseconds into each message, and a receiver subtracts that
    // from its own reading of the same clock. (Across two machines this
    // would need synchronised clocks; within one process it is exact.)
    let epoch = Instant::now();
    let deliveries = Arc::new(Deliveries::default());
    // Handles on every receiver's socket, so that a sender that gives up can
    // wake receivers blocked in a read (shutdown makes their read return).
    let sockets: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let barrier = Arc::new(Barrier::new(receivers + 1));

    let (d, s, b) = (
        Arc::clone(&deliveries),
        Arc::clone(&sockets),
        Arc::clone(&barrier),
    );
    let pool = thread::spawn(move || {
        run_workers(receivers, move |_| {
            chat_receiver(setup, messages, epoch, &b, &d, &s)
        })
    });
    let mut sender = Tally::default();
    let sent = chat_sender(
        setup,
        receivers,
        messages,
        size,
        epoch,
        &barrier,
        &deliveries,
    );
    let secs = sent.as_ref().map_or(0.0, |(_, secs)| *secs);
    if let Err(e) = &sent {
        sender.fail(e);
        for socket in sockets.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
    let mut tally = pool.join().unwrap_or_else(|_| {
        let mut t = Tally::default();
        t.fail("the receiver pool panicked");
        t
    });
    tally.merge(sender);
    let delivered = tally.latencies.len();
    let mut line = format!(
        "chat receivers={receivers} messages={messages} size={size} deliveries={delivered} errors={} \
         secs={secs:.3} deliveries_per_s={:.0}",
        tally.errors,
        delivered as f64 / secs.max(1e-9),
    );
    line.push_str(&tally.latency_fields());
    line.push_str(&memory_fields(args));
    tally.into_report(line)
}

/// Joins the chat, waits at the barrier for every receiver, then sends
/// `messages` messages, each only after everyone received the previous one
/// (lock-step: we measure fan-out latency, not a queue filling up).
/// Returns the number sent and the seconds it took.
fn chat_sender(
    setup: Setup,
    receivers: usize,
    messages: usize,
    size: usize,
    epoch: Instant,
    barrier: &Barrier,
    deliveries: &Deliveries,
) -> io::Result<(usize, f64)> {
    let joined = chat_join(setup);
    barrier.wait();
    let mut conn = joined?;
    // The server adds a client to the room at some point around its welcome
    // line; ask who is online until everyone is, so no message is sent
    // before all receivers can get it.
    wait_until_online(&mut conn, receivers + 1, setup.timeout)?;
    let start = Instant::now();
    for seq in 0..messages {
        let sent_at = epoch.elapsed().as_nanos();
        let mut text = format!("{seq} {sent_at} ");
        while text.len() < size {
            text.push('x');
        }
        conn.send_line(&text)?;
        conn.flush()?;
        let want = (seq as u64 + 1) * receivers as u64;
        let count = deliveries.count.lock().unwrap_or_else(|p| p.into_inner());
        let (count, waited) = deliveries
            .changed
            .wait_timeout_while(count, setup.timeout, |n| *n < want)
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "message {seq} reached only {} of {receivers} receivers",
                    (*count + receivers as u64).saturating_sub(want)
                ),
            ));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    conn.send_line("/quit")?;
    conn.flush()?;
    Ok((messages, secs))
}

/// Sends `/who` until it lists at least `want` names.
fn wait_until_online(conn: &mut Connection, want: usize, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        conn.send_line("/who")?;
        loop {
            let line = read_chat_line(conn)?;
            if let Some(names) = line.strip_prefix("* online: ") {
                if names.split(", ").count() >= want {
                    return Ok(());
                }
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "not every receiver joined the chat",
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Connects to the chat and reads the welcome line.
fn chat_join(setup: Setup) -> io::Result<Connection> {
    let stream = connect(setup)?;
    let mut conn = Connection::new(stream, false)?;
    let welcome = read_chat_line(&mut conn)?;
    if !welcome.starts_with("* ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected a welcome line from the chat server, got {welcome:?}"),
        ));
    }
    Ok(conn)
}

fn read_chat_line(conn: &mut Connection) -> io::Result<String> {
    conn.read_text_line(4096)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the chat server closed the connection",
        )
    })
}

/// One receiver: joins, then reads until it has seen every message,
/// recording each message's delay from send to receipt.
fn chat_receiver(
    setup: Setup,
    messages: usize,
    epoch: Instant,
    barrier: &Barrier,
    deliveries: &Deliveries,
    sockets: &Mutex<Vec<TcpStream>>,
) -> Tally {
    let mut tally = Tally::with_capacity(messages);
    let joined = chat_join(setup).and_then(|conn| {
        sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn.socket().try_clone()?);
        Ok(conn)
    });
    barrier.wait();
    let mut conn = match joined {
        Ok(conn) => conn,
        Err(e) => {
            tally.fail(e);
            return tally;
        }
    };
    while tally.latencies.len() < messages {
        let line = match read_chat_line(&mut conn) {
            Ok(line) => line,
            Err(e) => {
                tally.fail(e);
                break;
            }
        };
        let now = epoch.elapsed().as_nanos();
        // Skip the server's notices ("* guest3 joined") and anything else
        // that is not one of our "NAME: seq nanos xxx" messages.
        let Some(sent_at) = line
            .split_once(": ")
            .filter(|_| !line.starts_with("* ") && !line.starts_with("! "))
            .and_then(|(_, text)| text.split(' ').nth(1))
            .and_then(|nanos| nanos.parse::<u128>().ok())
        else {
            continue;
        };
        let delay = Duration::from_nanos(now.saturating_sub(sent_at) as u64);
        tally.latencies.push(delay);
        tally.bytes += line.len() as u64 + 1;
        *deliveries.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        deliveries.changed.notify_all();
    }
    tally
}

// ---------------------------------------------------------------------------
// file: GET or PUT through the file server, after the auth handshake
// ---------------------------------------------------------------------------

fn run_file(args: &Matches, setup: Setup) -> Report {
    let rounds = positive(args, "--rounds", 3);
    let Some(user) = args.get("--user") else {
        args.fail("file mode needs --user NAME (and the secret in NETLESSONS_SECRET)")
    };
    let secret = match std::env::var("NETLESSONS_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ => args.fail("file mode needs the secret in the environment: NETLESSONS_SECRET=... 05_load_tester file ..."),
    };
    let verify = !args.flag("--no-verify");
    let (op, name, data) = match (args.get("--get"), args.get("--put")) {
        (Some(name), None) => ("get", name, None),
        (None, Some(name)) => {
            let size = size_arg(args, "--size", 64 << 20);
            ("put", name, Some(generated_data(size)))
        }
        _ => args.fail("file mode needs exactly one of --get NAME or --put NAME"),
    };
    // Hash an upload before the clock starts: PUT announces the digest in
    // its header line, so the client must know it before sending a byte.
    let digest = data
        .as_ref()
        .map(|d| to_hex(&netlessons::sha256::sha256(d)));

    let mut tally = Tally::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        let result = match &data {
            None => file_get(setup, user, &secret, name, verify),
            Some(data) => file_put(
                setup,
                user,
                &secret,
                name,
                data,
                digest.as_deref().unwrap_or(""),
            ),
        };
        match result {
            Ok(bytes) => {
                tally.latencies.push(t.elapsed());
                tally.bytes += bytes;
            }
            Err(e) => {
                tally.fail(e);
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut line = format!(
        "file op={op} name={name} transfers={} bytes={} errors={} secs={secs:.3} mb_per_s={:.1}",
        tally.latencies.len(),
        tally.bytes,
        tally.errors,
        tally.bytes as f64 / MB / secs,
    );
    if op == "get" {
        let _ = write!(line, " verified={verify}");
    }
    line.push_str(&tally.latency_fields());
    line.push_str(&memory_fields(args));
    tally.into_report(line)
}

/// Connects and runs the handshake from the library.
fn file_login(setup: Setup, user: &str, secret: &str) -> io::Result<Connection> {
    let mut conn = Connection::new(connect(setup)?, false)?;
    auth::client_handshake(&mut conn, user, secret)?;
    Ok(conn)
}

/// Reads a reply line, turning `ERR reason` into an error.
fn file_reply(conn: &mut Connection) -> io::Result<String> {
    let line = conn.read_text_line(1024)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file server closed the connection",
        )
    })?;
    if line.starts_with("ERR") {
        return Err(io::Error::other(format!("the file server said: {line}")));
    }
    Ok(line)
}

/// Downloads `name` once; returns its size.
///
/// Checking the digest means hashing every byte, and SHA-256 is slower than
/// loopback TCP. Done in line (read a chunk, hash it, read the next) the
/// two would take turns and the time would be their sum. Instead a second
/// thread hashes while this one reads: on two cores the transfer then takes
/// about as long as the hashing alone. A bounded channel connects them, so
/// a reader faster than the hasher waits instead of piling up memory
/// (backpressure), and the buffers travel back to be reused.
///
/// The body is read with `read_some` straight into those 256 KiB buffers,
/// rather than with `read_body`, which hands out the connection's 8 KiB
/// buffer piece by piece: one copy instead of two, and a 32nd of the system
/// calls, which leaves more of the second core to the server.
fn file_get(setup: Setup, user: &str, secret: &str, name: &str, verify: bool) -> io::Result<u64> {
    let mut conn = file_login(setup, user, secret)?;
    conn.send_line(format!("GET {name}"))?;
    let header = file_reply(&mut conn)?;
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected reply {header:?}"),
        )
    };
    let mut words = header.split(' ');
    let (Some("OK"), Some(size), Some(expected), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(bad());
    };
    let size: u64 = size.parse().map_err(|_| bad())?;
    let expected = expected.to_string();

    const BATCH: usize = 256 * 1024;
    // Full buffers go to the hasher with how many bytes they hold; empty
    // ones come back.
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(4);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    let hasher = verify.then(|| {
        thread::spawn(move || {
            let mut hash = Sha256::new();
            for (batch, len) in full_rx {
                hash.update(&batch[..len]);
                let _ = empty_tx.send(batch); // back for reuse
            }
            to_hex(&hash.finish())
        })
    });
    let mut left = size;
    while left > 0 {
        let mut batch = empty_rx.try_recv().unwrap_or_else(|_| vec![0u8; BATCH]);
        let want = usize::try_from(left).map_or(BATCH, |left| left.min(BATCH));
        let mut len = 0;
        while len < want {
            let n = conn.read_some(&mut batch[len..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the server closed after {} of {size} bytes",
                        size - left + len as u64
                    ),
                ));
            }
            len += n;
        }
        left -= len as u64;
        if verify && full_tx.send((batch, len)).is_err() {
            break; // the hasher is gone; its join below says why
        }
    }
    if let Some(hasher) = hasher {
        drop(full_tx); // ends the hasher's loop
        let got = hasher
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        if got != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "digest mismatch for {name}: the server said {expected}, the bytes hash to {got}"
                ),
            ));
        }
    }
    conn.send_line("QUIT")?;
    conn.flush()?;
    Ok(size)
}

/// Uploads `data` as `name` once; returns its size.
fn file_put(
    setup: Setup,
    user: &str,
    secret: &str,
    name: &str,
    data: &[u8],
    digest: &str,
) -> io::Result<u64> {
    let mut conn = file_login(setup, user, secret)?;
    conn.send_line(format!("PUT {name} {} {digest}", data.len()))?;
    let ready = file_reply(&mut conn)?;
    if ready != "READY" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected READY, got {ready:?}"),
        ));
    }
    for chunk in data.chunks(CHUNK) {
        conn.send_body(chunk)?;
    }
    let done = file_reply(&mut conn)?;
    if !done.starts_with("OK ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected OK, got {done:?}"),
        ));
    }
    conn.send_line("QUIT")?;
    conn.flush()?;
    Ok(data.len() as u64)
}

/// `size` bytes that do not compress or repeat (xorshift), for uploads.
fn generated_data(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    data
}

// ---------------------------------------------------------------------------
// hash: the library's SHA-256 alone, for comparison with sha256sum
// ---------------------------------------------------------------------------

/// Hashes `--file` once, reading it in 1 MiB pieces on this one thread, the
/// way `sha256sum` does, so that the two figures compare like with like.
/// Run it twice: the first run may be reading from the disk, the second
/// reads from the page cache (as `sha256sum` will, right after).
///
/// Two rates come out: `mb_per_s` for the whole job (read and hash, what
/// `sha256sum` does), and `hash_only_mb_per_s` counting only the time spent
/// hashing: the ceiling for anything that must hash every byte, such as a
/// verified download.
fn run_hash(args: &Matches, _setup: Setup) -> Report {
    let Some(path) = args.get("--file") else {
        args.fail("hash mode needs --file PATH")
    };
    let mut tally = Tally::default();
    let mut hashing = Duration::ZERO;
    let start = Instant::now();
    let digest = hash_file(path, &mut tally.bytes, &mut hashing).unwrap_or_else(|e| {
        tally.fail(format!("could not read {path}: {e}"));
        String::new()
    });
    let secs = start.elapsed().as_secs_f64();
    let line = format!(
        "hash bytes={} errors={} secs={secs:.3} mb_per_s={:.1} hash_only_mb_per_s={:.1} sha256={digest}",
        tally.bytes,
        tally.errors,
        tally.bytes as f64 / MB / secs,
        tally.bytes as f64 / MB / hashing.as_secs_f64().max(1e-9),
    );
    tally.into_report(line)
}

fn hash_file(path: &str, bytes: &mut u64, hashing: &mut Duration) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let t = Instant::now();
        hash.update(&buf[..n]);
        *hashing += t.elapsed();
        *bytes += n as u64;
    }
    Ok(to_hex(&hash.finish()))
}

// ---------------------------------------------------------------------------
// small helpers for the options
// ---------------------------------------------------------------------------

/// An option's number, or the mode's default.
fn number(args: &Matches, long: &str, default: usize) -> usize {
    args.parse_value(long).unwrap_or(default)
}

/// Like [`number`], but at least 1.
fn positive(args: &Matches, long: &str, default: usize) -> usize {
    let n = number(args, long, default);
    if n == 0 {
        args.fail(&format!("{long} must be at least 1"));
    }
    n
}

/// A size such as `64`, `8K`, `64M` or `1G` (powers of 1024).
fn size_arg(args: &Matches, long: &str, default: usize) -> usize {
    let Some(text) = args.get(long) else {
        return default;
    };
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_uppercase()),
        _ => (text, ' '),
    };
    let scale: usize = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => args.fail(&format!(
            "invalid size '{text}' for {long}: use a number with K, M or G"
        )),
    };
    match digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
    {
        Some(n) if n > 0 => n,
        _ => args.fail(&format!(
            "invalid size '{text}' for {long}: use a number such as 64, 8K or 1G"
        )),
    }
}
