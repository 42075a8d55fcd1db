//! The clocks of a [`Connection`](super::Connection): how long we wait for
//! the peer before we give up on it.
//!
//! A timeout set on a socket bounds one system call. A peer that sends (or
//! takes) a byte just before each timeout makes every call succeed, and so
//! would hold a thread for ever. So each limit here is a *clock* that runs
//! over a whole piece of the conversation, and every wait is given what is
//! left of it:
//!
//! * the **idle clock**: the peer must complete a message within the idle
//!   timeout of our starting to wait for it;
//! * the **line clock**: once a line (or a message of several lines) has
//!   begun, it must be finished within the line timeout;
//! * the **body clock**: a counted body may keep us waiting for the line
//!   timeout plus one second per [`MIN_BODY_RATE`] bytes received;
//! * the **reply clock** ([`ReplyWriter`]): a whole reply must go out within
//!   the idle timeout.
//!
//! The first three are one [`ReadClock`], started each time we wait to read.

use super::{MIN_BODY_RATE, SharedStream};
use crate::framing::LineState;
use crate::trace::Trace;
use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Which clock ran out, to say so in the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rang {
    /// The idle clock: no complete message in time.
    Idle,
    /// The line clock: a line started and was not finished in time.
    Line,
    /// The body clock, `received` of `len` bytes in.
    Body { received: u64, len: u64 },
}

/// The read clocks of one wait for the peer: idle, line and body.
#[derive(Debug, Clone)]
pub(super) struct ReadClock {
    idle: Option<Duration>,
    line: Option<Duration>,
    /// When the peer must have completed its message (`None`: never).
    /// `checked_add` throughout: a limit too far off to represent is none.
    idle_deadline: Option<Instant>,
    /// When the line (or the message it belongs to) must be finished, once
    /// it has begun and while a line timeout is set.
    line_deadline: Option<Instant>,
    /// How long a body has kept us waiting so far.
    waited: Duration,
}

impl ReadClock {
    /// Starts the idle clock now. The line clock starts with the line's
    /// first byte, or has run since `line_started` (the first byte of a
    /// message of several lines, or now for the rest of an over-long line).
    pub(super) fn start(
        idle: Option<Duration>,
        line: Option<Duration>,
        line_started: Option<Instant>,
    ) -> ReadClock {
        let now = Instant::now();
        ReadClock {
            idle,
            line,
            idle_deadline: idle.and_then(|d| now.checked_add(d)),
            line_deadline: line_started.zip(line).and_then(|(s, l)| s.checked_add(l)),
            waited: Duration::ZERO,
        }
    }

    /// How long the next wait for a line's bytes may last, or a `TimedOut`
    /// error if a clock has run out already.
    pub(super) fn line_wait(&mut self, state: LineState) -> io::Result<Option<Duration>> {
        if state == LineState::Idle && self.line_deadline.is_none() {
            // Nothing of the line (or message) yet: wait up to the idle
            // timeout. The same value every time, so setting it on the
            // socket costs no system call after the first.
            return Ok(self.idle);
        }
        // Part of a line is here: wait only until the nearer deadline.
        if self.line_deadline.is_none() {
            self.line_deadline = self.line.and_then(|l| Instant::now().checked_add(l));
        }
        match [self.idle_deadline, self.line_deadline]
            .into_iter()
            .flatten()
            .min()
        {
            None => Ok(None),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::from(io::ErrorKind::TimedOut));
                }
                Ok(Some(left))
            }
        }
    }

    /// When the line clock started, if it did.
    pub(super) fn line_started(&self) -> Option<Instant> {
        self.line_deadline
            .zip(self.line)
            .and_then(|(deadline, limit)| deadline.checked_sub(limit))
    }

    /// Which clock stopped a line: the line clock, if it was running and
    /// is the nearer one; otherwise the idle clock.
    pub(super) fn line_rang(&self) -> Rang {
        match (self.line_deadline, self.idle_deadline) {
            (Some(line), Some(idle)) if line > idle => Rang::Idle,
            (Some(_), _) => Rang::Line,
            (None, _) => Rang::Idle,
        }
    }

    /// What the body clock allows once `received` bytes are in (`None`: no
    /// limit, when the clock is off or the sum is too large to represent).
    fn body_allows(&self, received: u64) -> Option<Duration> {
        self.line
            .and_then(|grace| grace.checked_add(Duration::from_secs(received / MIN_BODY_RATE)))
    }

    /// How long the next wait for a body's bytes may last, `received` bytes
    /// in: the idle timeout, or less if the body clock says so. A `TimedOut`
    /// error if the body clock has run out.
    pub(super) fn body_wait(&self, received: u64) -> io::Result<Option<Duration>> {
        let (Some(grace), Some(allowed)) = (self.line, self.body_allows(received)) else {
            return Ok(self.idle);
        };
        let remaining = allowed.saturating_sub(self.waited);
        if remaining.is_zero() {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        // Capped at the line timeout, so that during a fast upload (where
        // `remaining` races ahead) the value stays the same and setting it
        // costs no system call.
        let limit = remaining.min(grace);
        Ok(Some(self.idle.map_or(limit, |idle| idle.min(limit))))
    }

    /// The body kept us waiting this long more. Only time spent *waiting for
    /// the peer* counts: time our side spends writing the body away is not
    /// the peer's fault.
    pub(super) fn body_waited(&mut self, waited: Duration) {
        self.waited += waited;
    }

    /// Which clock stopped a body: the body clock's, if it set the `wait`
    /// that ran out, else the idle clock's.
    pub(super) fn body_rang(&self, wait: Option<Duration>, received: u64, len: u64) -> Rang {
        if self.line.is_some() && self.body_allows(received).is_some() && wait != self.idle {
            Rang::Body { received, len }
        } else {
            Rang::Idle
        }
    }

    /// Turns a read timeout into an error that says which limit was hit,
    /// noted in the trace too. Other errors pass unchanged. (On Unix a
    /// timed-out read reports `WouldBlock`, on Windows `TimedOut`.)
    pub(super) fn explain(&self, e: io::Error, rang: Rang, trace: &Trace) -> io::Error {
        if !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return e;
        }
        let text = match (rang, self.line, self.idle) {
            (Rang::Body { received, len }, Some(grace), _) => format!(
                "body arrived too slowly: {received} of {len} bytes after waiting {:.1} s \
                 (a body may keep us waiting {grace} s plus 1 s per {MIN_BODY_RATE} bytes, \
                 and at most {grace} s at a time)",
                self.waited.as_secs_f64(),
                grace = grace.as_secs_f64()
            ),
            (Rang::Line, Some(limit), _) => {
                format!("line not finished within {} s", limit.as_secs())
            }
            (_, _, Some(idle)) => {
                format!(
                    "no complete message for {} s (idle timeout)",
                    idle.as_secs()
                )
            }
            _ => "timed out".to_string(),
        };
        trace.note(&text);
        io::Error::new(io::ErrorKind::TimedOut, text)
    }
}

/// The sending side of a [`Connection`](super::Connection): the socket, and the **reply clock**.
///
/// A write timeout on the socket bounds each system call, not a reply: a
/// peer that asks for a big reply (a 1 GiB `GET`) and then reads a little
/// just before every timeout lets each `write` make some progress, so the
/// timeout starts again and again, and the peer holds the thread for as long
/// as it likes. So the idle timeout is measured over the whole reply: from
/// the first write after we last read, to the last one before we read again.
/// (A real server may also ask for a minimum send rate; nginx's
/// `send_timeout`, by contrast, is per write, as ours used to be.)
#[derive(Debug, Clone)]
pub(super) struct ReplyWriter {
    stream: SharedStream,
    /// The longest a whole reply may take to go out (the idle timeout).
    limit: Option<Duration>,
    /// When the reply now going out started.
    started: Option<Instant>,
    /// The write timeout set on the socket now, so that we only make the
    /// system call when it must change.
    current: Option<Duration>,
}

impl ReplyWriter {
    /// A writer on `stream` with no reply clock yet.
    pub(super) fn new(stream: SharedStream) -> ReplyWriter {
        ReplyWriter {
            stream,
            limit: None,
            started: None,
            current: None,
        }
    }

    /// Sets the longest a whole reply may take (the idle timeout), which
    /// the caller has just set on the socket as its write timeout.
    pub(super) fn set_limit(&mut self, limit: Option<Duration>) {
        self.limit = limit;
        self.current = limit;
    }

    /// We are about to wait for the peer: the reply we were sending is
    /// done, so the next write starts a new reply clock.
    pub(super) fn reply_done(&mut self) {
        self.started = None;
    }

    /// Sets the socket's write timeout to what is left of the reply's time,
    /// or fails if nothing is. The timeout is tightened only in steps of a
    /// second, so a fast reply costs no system call beyond its writes.
    fn arm(&mut self) -> io::Result<()> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        let left = limit.saturating_sub(now.duration_since(started));
        if left.is_zero() {
            return Err(self.too_slow());
        }
        let stale = match self.current {
            Some(current) => current < left || current > left + Duration::from_secs(1),
            None => true,
        };
        if stale {
            self.stream.socket().set_write_timeout(Some(left))?;
            self.current = Some(left);
        }
        Ok(())
    }

    fn too_slow(&self) -> io::Error {
        let limit = self.limit.map_or(0, |l| l.as_secs());
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client stopped reading: a reply was not taken within {limit} s (idle timeout)"
            ),
        )
    }
}

impl Write for ReplyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.stream.write(buf).map_err(|e| match e.kind() {
            // On Unix a timed-out write reports `WouldBlock`, on Windows `TimedOut`.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.too_slow(),
            _ => e,
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
