//! # 05_load_tester: measuring a server honestly
//!
//! A load generator for the course's servers, and for any other echo, chat,
//! file or web server that speaks the same protocol. It opens many connections at
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
//! Read the files in this order (chapter 8 walks them the same way):
//!
//! * `measure.rs`: how every mode measures: the common start (`Gate`), a
//!   tally per worker, percentiles and the `--histogram` bars, and the
//!   closed loop `echo` and `http` share (`closed_loop`). Read it first.
//! * `echo.rs`: N connections, each doing M round trips of S bytes (send,
//!   then wait for the same bytes back). Latency is the time of one round
//!   trip. `--per-thread K` drives K connections from each client thread;
//!   `--server-pid` adds the server's CPU time per request.
//! * `stream.rs`: one connection streams S bytes through an echo server while
//!   a second thread reads them back: raw throughput.
//! * `c10k.rs`: 10,000 echo connections opened by 8 threads as fast as each
//!   can (each proves itself with one round trip), all held open, then all
//!   answering once more after a hold.
//! * `chat.rs`: one sender and N receivers on a chat server; latency is the
//!   time from a message's send to each receipt (fan-out).
//! * `file.rs`: repeated `GET` (or `PUT`) of one file on the file server,
//!   after the library's `auth::client_handshake`; and `hash`, no network at
//!   all: how fast the library's SHA-256 hashes a file, to compare with
//!   `sha256sum` and with `file` downloads, which must hash every byte too.
//! * `http.rs`: keep-alive `GET`s of one path on a web server over N
//!   connections, every response's status and length checked.
//! * `proc.rs`: the server's memory and CPU time, from `/proc`
//!   (`--server-pid`).
//!
//! This file holds the mode list ([`MODES`]), the command line
//! ([`command`]), the dispatch ([`run`]) and what every mode shares: the
//! address and timeout ([`Setup`]) and [`connect`].
//!
//! A load generator shares the machine with the server it measures. Only
//! ratios measured side by side in the same run mean anything: run the same
//! command against a baseline server, then against yours.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

mod c10k;
mod chat;
mod echo;
mod file;
mod http;
mod measure;
mod proc;
mod stream;

use measure::Report;
use netlessons::cli::{Command, Matches};
use netlessons::connection::connect_error;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// A mode: runs against the server at [`Setup`] and reports one line.
type Mode = fn(&Matches, Setup) -> io::Result<Report>;

/// The modes, in reading order: name, the default port, the function.
const MODES: &[(&str, u16, Mode)] = &[
    ("echo", 7001, echo::run),
    ("stream", 7001, stream::run),
    ("c10k", 7001, c10k::run),
    ("chat", 7002, chat::run),
    ("file", 7003, file::run),
    ("hash", 7003, file::run_hash),
    ("http", 8080, http::run),
];

/// One megabyte, as throughput is usually quoted (and as `dd` prints it): 10^6 bytes.
const MB: f64 = 1_000_000.0;
/// The piece size for streaming and file transfers: big enough that each
/// system call moves a lot, small enough to stay in the CPU's cache.
const CHUNK: usize = 64 * 1024;

const AFTER_HELP: &str = "\
Defaults per mode:
  echo    --addr 127.0.0.1:7001 --conns 32 --rounds 1000 (or --duration SECS) --size 64 --warmup 100
          --per-thread 1 (a thread per connection; 8 or 16 cost the client less)
  stream  --addr 127.0.0.1:7001 --size 1G (bytes through one connection)
  c10k    --addr 127.0.0.1:7001 --conns 10000 --threads 8 --hold 5 --size 64
  chat    --addr 127.0.0.1:7002 --conns 8 (receivers) --rounds 200 (messages) --size 64
          or --joins N: a join storm of N clients (8 threads), then a fresh client's welcome and line
  file    --addr 127.0.0.1:7003 --rounds 3 (transfers) --size 64M (for --put)
  hash    --file PATH (hashes it once with the library's SHA-256; no server)
  http    --addr 127.0.0.1:8080 --path / --conns 32 --rounds 1000 (or --duration SECS) --warmup 10
          --size BYTES (the body length every response must have; default: what a first GET returns)
Sizes take a K, M or G suffix (powers of 1024). Rates: 1 MB = 10^6 bytes.

The output is one line of key=value pairs; the exit status is 1 if any
connection failed. The file mode reads the secret from NETLESSONS_SECRET.

Examples (start the server first, in another terminal):
  05_load_tester echo --conns 256
  05_load_tester c10k --server-pid \"$(pgrep -f 01_echo_server)\"
  NETLESSONS_SECRET=... 05_load_tester file --user learner --get big.bin
  05_load_tester http --addr 127.0.0.1:8080 --path /index.html --duration 5

c10k needs one file descriptor per connection in this process and another in
the server: raise the limit in both shells first, e.g. `ulimit -n 20000`.";

/// The one place that prints an error and picks the exit status.
fn main() -> ExitCode {
    netlessons::cli::exit_status(run())
}

/// The command line (`--help` shows it): the options every mode reads,
/// then each group of modes' own, then how the report is made.
fn command() -> Command {
    let command = Command::new(
        "05_load_tester",
        "Drives an echo, chat, file or web server with many connections and reports \
         requests/s, MB/s, latency percentiles and errors.",
    )
    .positional("MODE", "echo | stream | c10k | chat | file | hash | http")
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
        "bytes per round trip or message (stream: in all; file: PUT size; http: body length)",
        None,
    );
    report_options(file_options(crowd_options(closed_loop_options(command))))
}

/// The closed loops' options: `echo` and `http` (`measure::closed_loop`).
fn closed_loop_options(command: Command) -> Command {
    command
        .opt(
            "--duration",
            "SECS",
            "run each connection for SECS seconds instead of --rounds (echo, http)",
            None,
        )
        .opt(
            "--warmup",
            "M",
            "unmeasured round trips per connection before the start (echo, http)",
            None,
        )
        .opt(
            "--per-thread",
            "K",
            "connections each client thread drives in lock-step (echo, http; default 1)",
            None,
        )
        .opt(
            "--path",
            "PATH",
            "the target to GET (http; default /)",
            None,
        )
}

/// The crowds' options: `c10k` and the chat's join storm.
fn crowd_options(command: Command) -> Command {
    command
        .opt(
            "--threads",
            "T",
            "client threads that open the connections (c10k)",
            Some("8"),
        )
        .opt(
            "--joins",
            "N",
            "a join storm instead: N clients join at once, then a fresh one talks (chat)",
            None,
        )
        .opt(
            "--hold",
            "SECS",
            "how long to hold every connection open before they answer (c10k)",
            Some("5"),
        )
}

/// The file server's options: `file` and `hash`.
fn file_options(command: Command) -> Command {
    command
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
}

/// What every mode's report may add, and how long to wait for a server.
fn report_options(command: Command) -> Command {
    command
        .opt(
            "--server-pid",
            "PID",
            "report this process's memory (VmRSS, VmHWM) from /proc, and its CPU time per \
             request (echo, http), its child processes' included",
            None,
        )
        .flag(
            "--histogram",
            "after the report line, draw the latencies as bars (as `hey` does)",
        )
        .opt(
            "--timeout",
            "SECS",
            "give up on a connection that is silent this long",
            Some("30"),
        )
        .after_help(AFTER_HELP)
}

/// Parses the command line, picks the mode, runs it and prints its report.
/// Exit status 1 if any connection failed.
fn run() -> io::Result<ExitCode> {
    let args = command().parse_env();
    let names = MODES.iter().map(|m| m.0).collect::<Vec<_>>().join(", ");
    let mode = match args.positionals() {
        [mode] => mode.clone(),
        [] => args.fail(&format!("which mode? {names}")),
        [_, extra, ..] => args.fail(&format!("unexpected argument '{extra}'")),
    };
    let Some(&(_, default_port, mode_run)) = MODES.iter().find(|m| m.0 == mode) else {
        args.fail(&format!("unknown mode '{mode}': use {names}"))
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
    proc::open_file_limit(); // read it now, while we can still open a file

    let report = mode_run(&args, setup)?;
    println!("{}", report.line);
    if args.flag("--histogram") {
        print!("{}", measure::histogram(&report.latencies));
    }
    if let Some(e) = &report.first_error {
        netlessons::log!("first error: {e}");
    }
    Ok(if report.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What every mode needs.
#[derive(Debug, Clone, Copy)]
struct Setup {
    addr: SocketAddr,
    timeout: Duration,
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
    let limit =
        proc::open_file_limit().map_or_else(String::new, |n| format!(" (the limit here is {n})"));
    io::Error::other(OutOfFiles(format!(
        "{e}: this process ran out of file descriptors{limit}; raise the limit \
         in this shell and the server's with `ulimit -n 20000`, then run again"
    )))
}

/// Is this the error made by [`out_of_files`]?
fn is_out_of_files(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OutOfFiles>())
}
