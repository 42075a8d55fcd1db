//! Reading the message text after `DATA`: where it ends, what is refused,
//! and how long it may take.
//!
//! The text is a series of lines ended by a line holding a single `.`. That
//! sounds simple, and it is where mail servers have been attacked:
//!
//! * **Where does it end?** Only at `CR LF . CR LF`. A line may end in a
//!   bare `LF` (`curl` without `--crlf` sends them, and so do many scripts):
//!   we take it as a line end and store it like any other. But `LF . LF`,
//!   or `LF . CR LF`, does *not* end the message. If it did, a client could
//!   hide a second transaction after it (`MAIL FROM:<ceo@bank.test>`…):
//!   a server in front of us that ends messages only at `CR LF . CR LF`
//!   would pass the whole thing on as one message, and we would store two,
//!   the second with a sender nobody checked. That is *SMTP smuggling*
//!   (2023); this rule is what Postfix 3.9 does with
//!   `smtpd_forbid_bare_newline = normalize`.
//! * **Bare CR and NUL.** A lone `CR` (not followed by `LF`) is a line end
//!   to some programs and not to others, so `\r.\r\n` could end a message
//!   at the next hop but not here: the same smuggling one step later. A
//!   NUL byte truncates text in programs written in C. Neither belongs in
//!   a mail (RFC 5322 §2.3), so a message holding one is refused with
//!   `550 5.6.0` and not stored: what we pass on, to a next hop or over
//!   POP3, has CR and LF only as CRLF.
//! * **How long may it take?** The *body clock*, as the file server uses
//!   for uploads (`Connection::read_body`): the line timeout (30 s), plus
//!   one second for every 500 bytes that have arrived. A client trickling
//!   one line just before each idle timeout would otherwise hold its thread
//!   for ever.
//!
//! The text is not collected in memory: each line goes straight to a
//! [`Draft`] file as soon as it has arrived.
//!
//! We scan the raw bytes ourselves (`Connection::fill_buf`, then `consume`
//! what we used), rather than asking the connection for lines, because we
//! need to see exactly how each line ended (`CR LF` or a bare `LF`), which
//! a line reader hides.

use crate::draft::Draft;
use netlessons::connection::{Connection, MIN_BODY_RATE};
use std::io;
use std::time::{Duration, Instant};

/// Longest line of message text: 1000 bytes with the `\r\n` (RFC 5321
/// §4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 998;

/// The limits a message must keep to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message, in bytes on the wire (`--max-size`).
    pub max_size: u64,
    /// The session's idle timeout, which also bounds each wait here.
    pub idle_timeout: Option<Duration>,
    /// The line timeout: the body clock's starting allowance, and the
    /// longest single wait (`None`: no body clock).
    pub line_timeout: Option<Duration>,
}

/// How reading a message's text ended (the final `.` has been read in
/// every case, so the session can go on).
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// The whole message is in the draft.
    Complete,
    /// Some line was over [`MAX_TEXT_LINE`]; the message was discarded.
    LineTooLong,
    /// The message was over `--max-size`; it was discarded.
    TooBig,
    /// The text held a lone CR or a NUL byte; it was discarded.
    BareCrOrNul,
}

/// Why reading stopped before the final `.` (the session must end).
#[derive(Debug)]
pub enum Cut {
    /// The body clock ran out: the client sent too slowly. Holds the log text.
    TooSlow(String),
    /// The client hung up, or another read error (idle timeout included).
    Failed(io::Error),
}

/// Reads the message text from `conn` into `draft`, up to the final `.`,
/// undoing dot-stuffing. Over-long lines, over-size messages and bare
/// CR/NUL bytes are read to the end anyway (the client is still sending,
/// and we must find the `.` to stay in step with it), but not kept.
pub fn receive(conn: &mut Connection, draft: &mut Draft, limits: Limits) -> Result<Incoming, Cut> {
    let mut reader = Reader::new(limits);
    let result = reader.run(conn, draft);
    // The body clock shortened the connection's timeouts: put the session's back.
    let restored = conn.set_idle_timeout(limits.idle_timeout);
    let incoming = result?;
    restored.map_err(Cut::Failed)?;
    Ok(incoming)
}

/// The state of one message being read.
struct Reader {
    limits: Limits,
    /// The line so far (at most a line's limit plus `\r`), without `\n`.
    line: Vec<u8>,
    /// The current line is over the limit: skip to its end.
    skipping: bool,
    /// Did the previous line end in `CR LF`? (The `DATA` command counts.)
    after_crlf: bool,
    /// Bytes read from the client, for the body clock.
    received: u64,
    /// Bytes of text on the wire, for `--max-size` (each line plus `\r\n`).
    size: u64,
    too_long: bool,
    bare_cr_or_nul: bool,
    /// Time spent waiting for the client (our own disk writes do not count).
    waited: Duration,
    /// The wait currently set on the connection.
    current_wait: Option<Duration>,
}

impl Reader {
    fn new(limits: Limits) -> Reader {
        Reader {
            limits,
            line: Vec::with_capacity(MAX_TEXT_LINE + 1),
            skipping: false,
            after_crlf: true,
            received: 0,
            size: 0,
            too_long: false,
            bare_cr_or_nul: false,
            waited: Duration::ZERO,
            current_wait: limits.idle_timeout,
        }
    }

    fn run(&mut self, conn: &mut Connection, draft: &mut Draft) -> Result<Incoming, Cut> {
        loop {
            let available = self.read(conn)?;
            // Up to and including the first `\n`, or all of it.
            let (used, line_ended) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let bytes = &available[..used - usize::from(line_ended)];
            self.take(bytes);
            self.received += used as u64;
            // Only what we used: after the final dot, the rest is the
            // client's next command.
            conn.consume(used);
            if line_ended && self.end_of_line(draft) {
                return Ok(self.outcome(draft));
            }
        }
    }

    /// Adds bytes of the current line (no `\n` among them).
    fn take(&mut self, bytes: &[u8]) {
        if self.skipping {
            return;
        }
        // Room for a line at the limit plus the `\r` of its `\r\n`.
        let room = MAX_TEXT_LINE + 1 - self.line.len();
        if bytes.len() > room {
            self.skipping = true;
            self.too_long = true;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// A `\n` arrived: deal with the line. Returns true at the final dot.
    fn end_of_line(&mut self, draft: &mut Draft) -> bool {
        let crlf = self.line.last() == Some(&b'\r');
        if crlf {
            self.line.pop();
        }
        let after_crlf = std::mem::replace(&mut self.after_crlf, crlf);
        if self.skipping {
            self.skipping = false;
            return false;
        }
        if self.line.len() > MAX_TEXT_LINE {
            // A line of 999 bytes with a bare LF: it fit in the buffer only
            // because a `\r` might have come last.
            self.too_long = true;
            self.line.clear();
            return false;
        }
        // `CR LF . CR LF`, and nothing else, ends the message.
        if crlf && after_crlf && self.line == b"." {
            return true;
        }
        // Dot-stuffing: the sender doubled a leading '.'; undo it.
        let text = self.line.strip_prefix(b".").unwrap_or(&self.line);
        if text.iter().any(|&b| b == b'\r' || b == 0) {
            self.bare_cr_or_nul = true;
        }
        self.size += text.len() as u64 + 2;
        if self.keeping() {
            draft.push_line(text);
        } else {
            draft.discard(); // give the disk space back at once
        }
        self.line.clear();
        false
    }

    /// Is the message still one we will store?
    fn keeping(&self) -> bool {
        !self.too_long && !self.bare_cr_or_nul && self.size <= self.limits.max_size
    }

    fn outcome(&self, draft: &mut Draft) -> Incoming {
        if self.too_long {
            Incoming::LineTooLong
        } else if self.size > self.limits.max_size {
            Incoming::TooBig
        } else if self.bare_cr_or_nul {
            draft.discard();
            Incoming::BareCrOrNul
        } else {
            Incoming::Complete
        }
    }

    /// Waits for bytes to arrive (at least one), under the body clock, and
    /// shows them without taking them.
    fn read<'c>(&mut self, conn: &'c mut Connection) -> Result<&'c [u8], Cut> {
        // The body clock: what it allows so far, minus what we waited.
        let mut wait = self.limits.idle_timeout;
        let mut clock_set_it = false;
        if let Some(grace) = self.limits.line_timeout {
            let allowed = grace.saturating_add(Duration::from_secs(self.received / MIN_BODY_RATE));
            let remaining = allowed.saturating_sub(self.waited);
            if remaining.is_zero() {
                return Err(Cut::TooSlow(self.too_slow(grace)));
            }
            // Capped at the line timeout, so that during a fast message
            // (where `remaining` races ahead) the value stays the same and
            // setting it costs no system call.
            let limit = remaining.min(grace);
            if wait.is_none_or(|idle| limit < idle) {
                wait = Some(limit);
                clock_set_it = true;
            }
        }
        if wait != self.current_wait {
            conn.set_idle_timeout(wait).map_err(Cut::Failed)?;
            self.current_wait = wait;
        }
        let asked = Instant::now();
        let result = conn.fill_buf();
        self.waited += asked.elapsed();
        match result {
            Ok([]) => Err(Cut::Failed(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client hung up in the middle of a message; nothing was delivered",
            ))),
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::TimedOut && clock_set_it => {
                let grace = self.limits.line_timeout.unwrap_or_default();
                Err(Cut::TooSlow(self.too_slow(grace)))
            }
            Err(e) => Err(Cut::Failed(e)),
        }
    }

    fn too_slow(&self, grace: Duration) -> String {
        format!(
            "message arrived too slowly: {} bytes after waiting {:.1} s (a message may keep us \
             waiting {} s plus 1 s per {MIN_BODY_RATE} bytes, and at most {} s at a time)",
            self.received,
            self.waited.as_secs_f64(),
            grace.as_secs(),
            grace.as_secs()
        )
    }
}
