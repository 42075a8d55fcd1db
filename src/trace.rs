//! `--trace`: watch every message cross the wire.
//!
//! A protocol is much easier to learn when you can *see* it. With `--trace`,
//! every server and client prints each message it receives (`<-`) and sends
//! (`->`) on stderr, prefixed by the peer's address:
//!
//! ```text
//! 127.0.0.1:50412 <- PUT notes.txt 12 5891b5…
//! 127.0.0.1:50412 -> READY
//! 127.0.0.1:50412 <- [12 bytes]
//! ```
//!
//! Control bytes are escaped (`\r`, `\x00`) so nothing invisible hides, and
//! binary bodies are summarised by their size. The examples never call this
//! module directly: [`crate::connection::Connection`] traces every line and
//! body it moves, so a new protocol gets tracing for free. When tracing is off
//! a [`Trace`] is a `None` and each call is one branch: it costs nothing.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;

/// Longest piece of text shown per traced message; the rest is summarised.
const SHOW_AT_MOST: usize = 200;

/// The direction of a traced message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We received it from the peer (`<-`).
    Received,
    /// We sent it to the peer (`->`).
    Sent,
}

impl Direction {
    fn arrow(self) -> &'static str {
        match self {
            Direction::Received => "<-",
            Direction::Sent => "->",
        }
    }
}

/// A cheap, clonable handle that prints traced messages for one peer, or does
/// nothing when tracing is off.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The peer's address as text, or `None` when tracing is off.
    peer: Option<Arc<str>>,
}

impl Trace {
    /// A trace that prints nothing.
    pub fn off() -> Trace {
        Trace { peer: None }
    }

    /// A trace for messages exchanged with `peer`, printing only if `enabled`.
    pub fn new(peer: SocketAddr, enabled: bool) -> Trace {
        Trace {
            peer: enabled.then(|| Arc::from(peer.to_string())),
        }
    }

    /// Is tracing on?
    pub fn is_on(&self) -> bool {
        self.peer.is_some()
    }

    /// Traces a line (without its line ending), escaping control bytes.
    pub fn line(&self, direction: Direction, line: &[u8]) {
        if let Some(peer) = &self.peer {
            emit(peer, direction, &escape(line));
        }
    }

    /// Traces a binary body by its size: `[65536 bytes]`.
    pub fn body(&self, direction: Direction, len: usize) {
        if let Some(peer) = &self.peer {
            emit(peer, direction, &format!("[{len} bytes]"));
        }
    }

    /// Traces raw stream data of unknown shape (the echo server's chunks):
    /// shown as escaped text if it is short readable text, else by its size.
    pub fn data(&self, direction: Direction, data: &[u8]) {
        if let Some(peer) = &self.peer {
            let text = match std::str::from_utf8(data) {
                Ok(s) if data.len() <= SHOW_AT_MOST && !looks_binary(s) => {
                    format!("{:?}", s)
                }
                _ => format!("[{} bytes]", data.len()),
            };
            emit(peer, direction, &text);
        }
    }

    /// Traces an event that is not a message, such as a refusal or a timeout.
    pub fn note(&self, text: &str) {
        if let Some(peer) = &self.peer {
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "{peer} ** {text}");
        }
    }
}

fn looks_binary(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

fn emit(peer: &str, direction: Direction, text: &str) {
    // Lock stderr for the whole line so lines from different connection
    // threads never interleave mid-line. Errors writing a trace are ignored:
    // tracing must never break the program it observes.
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{peer} {} {text}", direction.arrow());
}

/// Escapes bytes for display: printable text as is, `\r` `\n` `\t` `\\` as
/// escapes, other control bytes and invalid UTF-8 as `\xNN`; text longer than
/// 200 bytes is cut with a note of the full size.
///
/// ```
/// use netlessons::trace::escape;
/// assert_eq!(escape(b"EHLO me\r"), "EHLO me\\r");
/// assert_eq!(escape(b"a\x00\xff"), "a\\x00\\xff");
/// ```
pub fn escape(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(SHOW_AT_MOST)];
    let mut out = String::with_capacity(shown.len());
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if bytes.len() > shown.len() {
        let _ = write!(out, "… ({} bytes)", bytes.len());
    }
    out
}

/// Writes one line on stderr: how every server and client in the crate logs.
///
/// Unlike `eprintln!`, this never panics. `eprintln!` panics when stderr
/// cannot be written (its reader, a pipe into a log collector or `less`,
/// has gone away), and a server must not die for want of a log line: a lost
/// line is the lesser harm. The line is written in one call under stderr's
/// lock, so lines from different connection threads never interleave.
/// Use it through [`log!`](crate::log).
pub fn log(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// `log!("{peer} refused: server full")`: [`trace::log`](crate::trace::log)
/// with `format!` syntax, a line on stderr that cannot panic.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::trace::log(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Escaping makes every control byte and invalid byte visible.
    #[test]
    fn escape_shows_the_invisible() {
        assert_eq!(escape(b"hi"), "hi");
        assert_eq!(escape(b"\t\\\x1b"), "\\t\\\\\\x1b");
        assert_eq!(escape("héllo".as_bytes()), "héllo");
        assert_eq!(escape(&[0xc3]), "\\xc3");
        let long = vec![b'a'; 300];
        assert!(escape(&long).ends_with("… (300 bytes)"));
    }

    /// A trace that is off stays off and reports so.
    #[test]
    fn off_is_off() {
        assert!(!Trace::off().is_on());
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(Trace::new(addr, true).is_on());
        assert!(!Trace::new(addr, false).is_on());
    }
}
