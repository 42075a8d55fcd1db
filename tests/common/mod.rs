//! Test support: start an example (or a learner's program), find its address,
//! keep its output drained, and kill and reap it when the test ends.
//!
//! # Pointing the tests at your own program
//!
//! Every example can be replaced by any program, in any language, through an
//! environment variable named after the example in upper case:
//!
//! ```text
//! NETLESSONS_01_ECHO_SERVER="python3 my_echo.py" cargo test --test ex01_echo
//! ```
//!
//! The program is run from the crate's folder (where `Cargo.toml` is, so a
//! relative path such as `python3 my_echo.py` works) as
//! `sh -c 'exec <your command> "$@"' sh --addr 127.0.0.1:0 …`, must honour
//! `--addr`, and must print `listening on ADDR` as its first line on stdout.
//! A test that wants a client to work in a folder of its own passes that
//! folder in full paths on the command line, and in `NETLESSONS_WORKDIR`.
//!
//! Tests of the reference's extra flags (`--allow`, `--max-conns`, …) are
//! skipped under an override, and each prints a `skipped …` line with a
//! running count: cargo's summary counts a skipped test as passed. A test
//! that checks your program but cannot run here (no root, a missing tool)
//! fails under an override instead of skipping, so it never passes unchecked.
//!
//! No wait is unbounded: a program that exits before printing its address
//! is reported at once with its last stderr lines, a client that never
//! connects to a fake server is reported within seconds ([`fake`]), and
//! failures follow one house style ([`report`]).
#![allow(dead_code)] // each test file uses a different part of this module

pub mod camera;
pub mod fake;
pub mod http;
pub mod report;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to print its `listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Read/write timeout on test sockets: a hung server fails the test instead
/// of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The environment variable that overrides `example`, e.g.
/// `NETLESSONS_01_ECHO_SERVER`.
pub fn override_var(example: &str) -> String {
    format!("NETLESSONS_{}", example.to_uppercase())
}

/// The learner's command replacing `example`, if the instructor set one.
pub fn override_command(example: &str) -> Option<String> {
    std::env::var(override_var(example))
        .ok()
        .filter(|c| !c.trim().is_empty())
}

/// Is any example overridden in this run? Then the run checks a learner's
/// program, and a test that cannot check it must fail rather than skip.
pub fn any_override() -> bool {
    std::env::vars().any(|(k, v)| k.starts_with("NETLESSONS_0") && !v.trim().is_empty())
}

/// True if `example` runs the reference implementation. Otherwise prints
/// that the test `what` was skipped (it checks a reference-only feature).
pub fn reference_only(example: &str, what: &str) -> bool {
    if override_command(example).is_some() {
        skipped(&format!(
            "{what} under {} (it checks a feature of the reference example, not of the exercise)",
            override_var(example)
        ));
        return false;
    }
    true
}

/// Says on the real stderr that a test was skipped, and why, with a running
/// count: libtest has no "skipped" result, so its summary counts the test
/// as passed, and these lines are the honest count.
pub fn skipped(why: &str) {
    static SKIPPED: AtomicUsize = AtomicUsize::new(0);
    let n = SKIPPED.fetch_add(1, Ordering::SeqCst) + 1;
    say(&format!(
        "skipped {why} [{n} skipped so far in this run; cargo's summary counts them as passed]"
    ));
}

/// Writes a note on the real stderr (libtest captures `eprintln!`).
pub fn say(text: &str) {
    let _ = writeln!(io::stderr(), "{text}");
}

/// Is a command-line tool installed? If not, say the test is skipped.
///
/// Under an override the test is checking a learner's program, so a
/// missing tool fails it instead: a check that did not run must not pass.
#[track_caller]
pub fn have(tool: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !any_override(),
            "{test} cannot check your program: `{tool}` is not installed (install it and run again)"
        );
        skipped(&format!("{test}: `{tool}` is not installed"));
    }
    found
}

/// Builds an example once per test process with the same `cargo` that built
/// the tests, and returns the path of its executable.
///
/// Examples have no `CARGO_BIN_EXE_*` variables, and `cargo test --test X`
/// alone does not build them, hence this.
pub fn example_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--example",
            name,
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("could not run cargo to build the example");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .filter(|l| {
            l.contains("\"compiler-artifact\"") && l.contains(&format!("\"name\":\"{name}\""))
        })
        .find_map(|l| {
            let start = l.find("\"executable\":\"")? + "\"executable\":\"".len();
            let end = l[start..].find('"')? + start;
            Some(PathBuf::from(&l[start..end]))
        })
        .unwrap_or_else(|| panic!("cargo did not report an executable for example {name}"));
    built.insert(name.to_string(), path.clone());
    path
}

/// The crate's folder, where an overridden command runs.
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A `Command` that runs `example`: the learner's program under an override
/// (run from the crate's folder, as README says), else the reference example.
pub fn command(example: &str) -> Command {
    match override_command(example) {
        // `exec` replaces the shell with the program, so that killing the
        // child kills the program itself, not just a shell around it.
        Some(cmd) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("exec {cmd} \"$@\""), "sh"])
                .current_dir(crate_dir());
            c
        }
        None => Command::new(example_path(example)),
    }
}

/// Like [`command`], for a test that works in the folder `dir`. The
/// reference runs in `dir`; a learner's program still runs from the
/// crate's folder (so its relative path works) and finds `dir` in
/// `NETLESSONS_WORKDIR`. Either way, give file arguments as full paths.
pub fn command_in(example: &str, dir: &Path) -> Command {
    let mut c = command(example);
    if override_command(example).is_some() {
        c.env("NETLESSONS_WORKDIR", dir);
    } else {
        c.current_dir(dir);
    }
    c
}

/// How a failure names what ran: the learner's command, or the example.
pub fn describe(example: &str) -> String {
    match override_command(example) {
        Some(cmd) => format!(
            "{example} (your command `{cmd}` from {}, run from {})",
            override_var(example),
            crate_dir().display()
        ),
        None => format!("{example} (the reference example)"),
    }
}

/// Output collected from a running server's stderr.
#[derive(Default)]
struct Collected {
    text: Mutex<String>,
    grew: Condvar,
    /// Set when the pipe reached its end (the program closed it or exited).
    ended: std::sync::atomic::AtomicBool,
}

/// A running server example. Killed and reaped on drop.
pub struct Server {
    name: String,
    child: Child,
    listeners: Vec<(String, SocketAddr)>,
    stderr: Arc<Collected>,
    stdout: Arc<Collected>,
}

impl Server {
    /// Starts `example` with `--addr 127.0.0.1:0` plus `args`, and waits for
    /// its `listening on` line.
    pub fn start(example: &str, args: &[&str]) -> Server {
        Server::start_with(example, &["--addr", "127.0.0.1:0"], args, 1)
    }

    /// Starts `example` with `addr_args` then `args`, expecting `listeners`
    /// `listening on` lines (the mail relay has two).
    pub fn start_with(
        example: &str,
        addr_args: &[&str],
        args: &[&str],
        listeners: usize,
    ) -> Server {
        let mut cmd = command(example);
        cmd.args(addr_args).args(args);
        Server::start_command(example, cmd, listeners)
    }

    /// Starts a ready-made `cmd` (for example the server run inside a
    /// network namespace with `ip netns exec`) and waits for its `listening
    /// on` lines, naming it `example` in messages. `start_with` is this with
    /// the example's own command.
    pub fn start_command(example: &str, mut cmd: Command, listeners: usize) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", describe(example)));
        let stderr = Arc::new(Collected::default());
        let stdout = Arc::new(Collected::default());
        // Keep draining stderr (and stdout below) for the server's whole
        // life: with --trace it writes a lot, and a full pipe would block it.
        drain(child.stderr.take().unwrap(), Arc::clone(&stderr));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let stdout_sink = Arc::clone(&stdout);
        thread::spawn(move || {
            let mut lines = BufReader::new(out);
            let mut line = String::new();
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                let _ = tx.send(line.clone());
                stdout_sink.text.lock().unwrap().push_str(&line);
                stdout_sink.grew.notify_all();
                line.clear();
            }
            // Dropping `tx` here tells the waiting test that stdout ended.
        });
        let mut server = Server {
            name: example.to_string(),
            child,
            listeners: Vec::new(),
            stderr,
            stdout,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while server.listeners.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                // Stdout ended: the program exited (or could not start at
                // all) before it printed its address. Say so at once.
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{}", server.gone_early()),
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} is running but did not print 'listening on ADDR' on stdout within {:?} \
                     (is the line flushed?)\n  stdout so far: {}\n  its last stderr lines:\n{}",
                    describe(example),
                    STARTUP_TIMEOUT,
                    report::show(server.stdout().as_bytes()),
                    report::tail(&server.stderr())
                ),
            };
            let Some(rest) = line.trim_end().strip_prefix("listening on ") else {
                panic!(
                    "{}: expected 'listening on ADDR' as the first line on stdout, got {}\n  \
                     its last stderr lines:\n{}",
                    describe(example),
                    report::show(line.as_bytes()),
                    report::tail(&server.stderr())
                )
            };
            let (addr, label) = match rest.split_once(' ') {
                Some((addr, label)) => (addr, label.trim_matches(|c| c == '(' || c == ')')),
                None => (rest, ""),
            };
            let addr: SocketAddr = addr.parse().unwrap_or_else(|e| {
                panic!(
                    "{}: bad address in {}: {e}",
                    describe(example),
                    report::show(line.as_bytes())
                )
            });
            server.listeners.push((label.to_string(), addr));
        }
        server
    }

    /// The failure message for a server whose stdout ended before its
    /// `listening on` line(s): its exit status and last stderr lines.
    fn gone_early(&mut self) -> String {
        // It closed stdout, so it is exiting: give it a bounded moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                _ if Instant::now() >= deadline => break None,
                _ => thread::sleep(Duration::from_millis(20)),
            }
        };
        wait_ended(&self.stderr, Duration::from_secs(5));
        let what = match status {
            Some(status) if matches!(status.code(), Some(126 | 127)) => {
                format!("could not start ({})", report::explain_status(status))
            }
            Some(status) => format!("exited ({})", report::explain_status(status)),
            None => "closed its stdout".to_string(),
        };
        format!(
            "{} {what} before printing 'listening on ADDR'; its last stderr lines:\n{}",
            describe(&self.name),
            report::tail(&self.stderr())
        )
    }

    /// The (first) listening address.
    pub fn addr(&self) -> SocketAddr {
        self.listeners[0].1
    }

    /// The address printed with ` (label)`, e.g. `pop3`.
    pub fn addr_of(&self, label: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("{} printed no 'listening on … ({label})' line", self.name))
            .1
    }

    /// Everything the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text.lock().unwrap().clone()
    }

    /// Everything the server wrote on stdout so far (its `listening on` lines included).
    pub fn stdout(&self) -> String {
        self.stdout.text.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`; false after `timeout`.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        wait_for(&self.stderr, needle, timeout)
    }

    /// Waits until stderr contains `needle`; after `timeout`, fails the test
    /// (at the caller's line) showing everything the server wrote on stderr.
    #[track_caller]
    pub fn expect_stderr(&self, needle: &str, timeout: Duration) {
        assert!(
            self.wait_for_stderr(needle, timeout),
            "no {needle:?} on {}'s stderr within {timeout:?}; it holds:\n{}",
            self.name,
            self.stderr()
        );
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id (to count its threads in /proc, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server at once (SIGKILL: no chance to clean up) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failing test shows what the server said: a learner's server
        // that crashed explains itself here, not as a bare "connection reset".
        if thread::panicking() {
            let state = match self.child.try_wait() {
                Ok(Some(status)) => format!("had exited ({})", report::explain_status(status)),
                _ => "was still running".to_string(),
            };
            eprintln!(
                "when the test failed, {} {state}; its last stderr lines:\n{}",
                describe(&self.name),
                report::tail(&self.stderr())
            );
        }
        self.kill();
    }
}

fn drain(mut from: impl Read + Send + 'static, into: Arc<Collected>) {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.text
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            into.grew.notify_all();
        }
        into.ended.store(true, Ordering::SeqCst);
        into.grew.notify_all();
    });
}

/// Waits (at most `timeout`) until the pipe behind `collected` has ended.
fn wait_ended(collected: &Collected, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut text = collected.text.lock().unwrap();
    while !collected.ended.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        text = collected.grew.wait_timeout(text, left).unwrap().0;
    }
}

fn wait_for(collected: &Collected, needle: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut text = collected.text.lock().unwrap();
    loop {
        if text.contains(needle) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        text = collected.grew.wait_timeout(text, left).unwrap().0;
    }
}

/// A slow-loris client's loop: sends `byte` every `gap` (never a line
/// break), keeping whatever the server says meanwhile, until the server
/// hangs up or `limit` has passed. `reader` and `writer` are the two ends
/// of one connection.
///
/// Returns what the server sent, and how long after the first byte it hung
/// up (`None`: it was still connected at `limit`).
pub fn trickle(
    reader: &mut impl Read,
    writer: &mut impl Write,
    socket: &TcpStream,
    byte: u8,
    gap: Duration,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    // A read that waits at most `gap` is the pause between two bytes.
    socket.set_read_timeout(Some(gap)).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        if writer.write_all(&[byte]).is_err() {
            return (got, Some(start.elapsed())); // reset: the server hung up
        }
        match reader.read(&mut buf) {
            Ok(0) => return (got, Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // Nothing within `gap`: still connected, send the next byte.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, Some(start.elapsed())),
        }
    }
    (got, None)
}

/// Connects to `addr` with [`IO_TIMEOUT`] on reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("could not connect to {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads until the peer closes; panics on a timeout or error.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("reading until the server closes");
    out
}

/// The names in the folder `dir`, hidden ones included, sorted (byte order),
/// so a test can compare a folder with a literal list.
pub fn dir_entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("could not list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// One line of a CRLF protocol (SMTP, POP3) without its `\r\n`; panics if
/// the line does not end in `\r\n` (a bare `\n`, or the server closing).
pub fn read_crlf_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.ends_with("\r\n"), "expected a CRLF line, got {line:?}");
    line.truncate(line.len() - 2);
    line
}

/// A whole SMTP reply, its lines joined by `\n`. A reply goes on while its
/// lines read `250-…` (a `-` after the code) and ends with `250 …`.
pub fn read_smtp_reply(reader: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let line = read_crlf_line(reader);
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
        all.push('\n');
    }
}

/// Checks the command-line basics every example shares: `--help` prints a
/// usage containing `usage_shows` and exits 0; an unknown flag is a usage
/// error, `error: unknown option '--no-such-flag'` on stderr and exit status 2.
/// Each run may take up to `timeout`. A failure is reported at the caller's line.
///
/// The wording checked is the reference's, so an example replaced by a
/// learner's program (its own override variable) is skipped, and says so:
/// each example of a pair is judged by its own variable.
#[track_caller]
pub fn check_help_and_unknown_flag(example: &str, usage_shows: &str, timeout: Duration) {
    use assert_cmd::Command as AssertCommand;
    use predicates::prelude::*;
    if !reference_only(example, "help_and_bad_flags") {
        return;
    }
    AssertCommand::from_std(command(example))
        .arg("--help")
        .timeout(timeout)
        .assert()
        .success()
        .stdout(predicate::str::contains("Usage:").and(predicate::str::contains(usage_shows)));
    AssertCommand::from_std(command(example))
        .arg("--no-such-flag")
        .timeout(timeout)
        .assert()
        .code(2)
        .stderr(
            predicate::str::starts_with("error: unknown option '--no-such-flag'")
                // The usage line and a pointer to --help, not the whole
                // help, which would bury the one line that matters.
                .and(predicate::str::contains("Usage: "))
                .and(predicate::str::contains("try '--help'"))
                .and(predicate::str::contains("Options:").not()),
        );
}

/// Checks that the server `example` refuses a stray positional argument (a
/// port typed without `--addr`) with a usage error, exit status 2 and a
/// guess: `did you mean --addr 127.0.0.1:7005?` (the host is the default
/// `--addr`'s). Skipped under an override: the wording is the reference's.
#[track_caller]
pub fn check_stray_argument(example: &str, default_host: &str, timeout: Duration) {
    use assert_cmd::Command as AssertCommand;
    use predicates::prelude::*;
    if !reference_only(example, "a stray positional argument is refused") {
        return;
    }
    AssertCommand::from_std(command(example))
        .arg("7005")
        .timeout(timeout)
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::starts_with(format!(
            "error: unexpected argument '7005': did you mean --addr {default_host}:7005?"
        )));
}

/// The client's half of the file server's login, as the lines on the wire.
///
/// Built by [`file_login_lines`] from the server's nonce; tests that speak the
/// protocol over a raw socket send [`line`](FileLogin::line) and compare the
/// reply with [`ok`](FileLogin::ok).
#[derive(Debug, Clone)]
pub struct FileLogin {
    /// `AUTH <user> <cn> <client proof>`, without a line ending.
    pub line: String,
    /// `OK <server proof>`: the one reply that shows the server knows the
    /// secret too. A client must check it, not just the `OK`.
    pub ok: String,
}

/// Answers the file server's challenge `AUTH HMAC-SHA256 <sn>` as `user`
/// with `secret`, using a fresh client nonce (so a wrong `secret` gives a
/// well-formed but wrong answer, for tests of refusals).
pub fn file_login_lines(sn: &str, user: &str, secret: &str) -> io::Result<FileLogin> {
    use netlessons::auth::{client_proof, new_nonce, server_proof};
    let cn = new_nonce()?;
    Ok(FileLogin {
        line: format!("AUTH {user} {cn} {}", client_proof(secret, sn, &cn, user)),
        ok: format!("OK {}", server_proof(secret, sn, &cn, user)),
    })
}

/// The seeded generator tests make their data with (the library's), so a
/// failure prints its seed and can be repeated.
#[allow(unused_imports, reason = "not every test file makes random data")]
pub use netlessons::random::Rng;

/// A fresh, empty folder for one test under the target directory, removed first if left over.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
