//! Starting a program under test, keeping its output drained, and killing
//! and reaping it when the test ends: [`Server`], and the [`command`] that
//! runs either the reference example or a learner's program in its place.

use super::{override_command, override_var, report};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to print its `listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Runs a Python script (`python3 -c script args…`) to its end and returns
/// its stdout; a non-zero exit fails the test, showing Python's stderr.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads lines from `output` (a child's stdout, say) on a thread of their
/// own, as they come; the channel ends when the output does.
pub fn lines_of(output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
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
