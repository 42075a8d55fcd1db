//! The house style for a failing test: what was sent, what was expected,
//! what came, and (when a program died or never started) the last lines it
//! wrote on stderr. Bytes are shown escaped and cut to a few hundred, with
//! their total length, so that any failure fits on a screen.

use std::fmt::Write as _;

/// How many bytes of a message a failure shows, at most.
pub const SHOWN_BYTES: usize = 300;
/// How many of a program's last stderr lines a failure shows.
pub const SHOWN_LINES: usize = 15;

/// `bytes` as an escaped, quoted string, cut to [`SHOWN_BYTES`], with the
/// total length: `"hello\n" (6 bytes)` or `"aaaa…" (100000 bytes, first 300 shown)`.
pub fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(SHOWN_BYTES)];
    let mut out = String::from("\"");
    for &b in cut {
        // `escape_ascii` shows \n, \t, \\, \" and \xNN for the rest.
        let _ = write!(out, "{}", std::ascii::escape_default(b));
    }
    if cut.len() < bytes.len() {
        let _ = write!(
            out,
            "…\" ({} bytes, first {} shown)",
            bytes.len(),
            cut.len()
        );
    } else {
        let _ = write!(out, "\" ({} bytes)", bytes.len());
    }
    out
}

/// Where two byte strings first differ, as `byte 17`, or that one is a
/// prefix of the other.
pub fn first_difference(got: &[u8], expected: &[u8]) -> String {
    match got.iter().zip(expected).position(|(a, b)| a != b) {
        Some(i) => format!("they first differ at byte {i}"),
        None if got.len() < expected.len() => {
            format!("what came stops after {} bytes", got.len())
        }
        None => format!(
            "what came goes on past the expected {} bytes",
            expected.len()
        ),
    }
}

/// Fails the test (at the caller's line) unless `got == expected`, in the
/// house style: `what` says what the bytes are, `sent` what caused them.
#[track_caller]
pub fn assert_bytes(what: &str, sent: &[u8], expected: &[u8], got: &[u8]) {
    if got != expected {
        panic!(
            "{what}: wrong bytes ({})\n  sent:     {}\n  expected: {}\n  came:     {}",
            first_difference(got, expected),
            show(sent),
            show(expected),
            show(got)
        );
    }
}

/// The last [`SHOWN_LINES`] lines of `text`, indented, or a note that it is empty.
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "    (nothing)".to_string();
    }
    let start = lines.len().saturating_sub(SHOWN_LINES);
    let mut out = String::new();
    if start > 0 {
        let _ = writeln!(out, "    … ({start} earlier lines left out)");
    }
    for line in &lines[start..] {
        let shown = if line.len() > SHOWN_BYTES {
            show(line.as_bytes())
        } else {
            line.to_string()
        };
        let _ = writeln!(out, "    {shown}");
    }
    out.truncate(out.trim_end().len());
    out
}

/// What an exit status means to a learner: `exit status 127` is the shell
/// saying the command was not found, and so on.
pub fn explain_status(status: std::process::ExitStatus) -> String {
    match status.code() {
        Some(127) => format!(
            "{status}: the shell could not find the command (is it installed, is the path right? \
             the command runs from the crate's folder)"
        ),
        Some(126) => format!("{status}: the file is there but could not be run (not executable?)"),
        Some(_) => status.to_string(),
        None => format!("{status}: killed by a signal"),
    }
}

/// Runs a client program to its end, feeding it `stdin`, for at most
/// `timeout`; `who` names it in failures (see [`super::describe`]).
///
/// A program that cannot start, or does not finish in time (it is killed),
/// fails the test in the house style, with what it was sent, what it
/// printed so far and its last stderr lines.
#[track_caller]
pub fn run_to_end(
    who: &str,
    mut cmd: std::process::Command,
    stdin: &[u8],
    timeout: std::time::Duration,
) -> Finished {
    use std::io::{Read, Write};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {who}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let sent = stdin.to_vec();
    let to_send = sent.clone();
    // Feed stdin from a thread: a client that prints while it reads would
    // otherwise deadlock with us once both pipes are full.
    std::thread::spawn(move || {
        let _ = input.write_all(&to_send);
        // Dropping `input` closes the pipe: end of input for the client.
    });
    let (done, ended) = std::sync::mpsc::channel();
    let collect = |mut from: Box<dyn Read + Send>| {
        let into = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&into);
        let done = done.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            let _ = done.send(());
        });
        into
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{who} did not finish within {timeout:?} (it was killed)\n  sent:    {}\n  \
                 printed: {}\n  its last stderr lines:\n{}",
                show(&sent),
                show(&stdout.lock().unwrap()),
                tail(&String::from_utf8_lossy(&stderr.lock().unwrap()))
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    // The program has exited; its pipes end as soon as any children it left
    // behind do. Wait for both readers, but never without a bound.
    for _ in 0..2 {
        let _ = ended.recv_timeout(std::time::Duration::from_secs(5));
    }
    let stdout = std::mem::take(&mut *stdout.lock().unwrap());
    let stderr = std::mem::take(&mut *stderr.lock().unwrap());
    Finished {
        who: who.to_string(),
        sent,
        status,
        stdout,
        stderr,
    }
}

/// A client program that ran to its end (see [`run_to_end`]).
pub struct Finished {
    /// The program, as failures name it.
    pub who: String,
    /// What it was given on stdin.
    pub sent: Vec<u8>,
    /// How it ended.
    pub status: std::process::ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: Vec<u8>,
    /// Everything it printed on stderr.
    pub stderr: Vec<u8>,
}

impl Finished {
    /// Its last stderr lines, for failure messages.
    pub fn stderr_tail(&self) -> String {
        tail(&String::from_utf8_lossy(&self.stderr))
    }

    /// Fails the test unless the program exited 0 and printed exactly `expected`.
    #[track_caller]
    pub fn expect_stdout(&self, expected: &[u8]) -> &Self {
        if !self.status.success() || self.stdout != expected {
            panic!(
                "{} {}, and {}\n  sent:     {}\n  expected: {}\n  came:     {}\n  its last \
                 stderr lines:\n{}",
                self.who,
                if self.status.success() {
                    "exited 0".to_string()
                } else {
                    format!("failed ({})", explain_status(self.status))
                },
                if self.stdout == expected {
                    "printed what was expected".to_string()
                } else {
                    format!(
                        "printed the wrong bytes ({})",
                        first_difference(&self.stdout, expected)
                    )
                },
                show(&self.sent),
                show(expected),
                show(&self.stdout),
                self.stderr_tail()
            );
        }
        self
    }

    /// Fails the test unless the program exited non-zero.
    #[track_caller]
    pub fn expect_failure(&self) -> &Self {
        if self.status.success() {
            panic!(
                "{} exited 0, but it should have failed\n  sent:    {}\n  printed: {}\n  its \
                 last stderr lines:\n{}",
                self.who,
                show(&self.sent),
                show(&self.stdout),
                self.stderr_tail()
            );
        }
        self
    }
}
