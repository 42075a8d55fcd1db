//! The first filter: the **greeting wait** (Postfix `postscreen`'s
//! *pregreet test*).
//!
//! SMTP is a protocol where the server speaks first: a client connects and
//! must wait for the `220` greeting before it says `EHLO`. RFC 5321 §4.3.1
//! says so, and every real mail program obeys it. Spam software in a hurry
//! often does not: it fires `EHLO`, `MAIL`, `RCPT` and the message in one
//! burst as soon as the connection opens, to send more mail per minute.
//!
//! So for a client outside `--relay-allow` the greeting comes in two parts,
//! a multi-line reply (`220-` means "more lines follow"):
//!
//! ```text
//! S: 220-example.test ESMTP netlessons 04_mail_relay
//!        ... one second (--greet-wait) of silence ...
//! S: 220 example.test ESMTP netlessons 04_mail_relay
//! ```
//!
//! A client that sends anything before the last line has shown it does not
//! read replies, and gets
//! `521 5.5.1 protocol error: talked before the greeting` (521: this host
//! does not accept mail from you, RFC 7504), then the connection is closed.
//!
//! The `220-` line matters: postscreen sends it because some bots wait for
//! *a* first line and then talk, and a multi-line greeting catches those
//! too. An honest client reads the whole reply (up to `220 `) first.
//!
//! The cost: every outside client waits a second before it can start. A
//! real server keeps a cache of clients that passed, so the wait is paid
//! once a day rather than on every connection; ours pays it every time.

use netlessons::connection::Connection;
use netlessons::server::lingering_close;
use std::io;
use std::time::{Duration, Instant};

/// After a refusal, how much of what the client still sends we read (and
/// discard) at most.
const LINGER_BYTES: u64 = 64 * 1024;

/// How the greeting wait ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Pregreet {
    /// The client stayed silent for the whole wait: it may go on.
    Quiet,
    /// The client sent these bytes (the first of them) before the greeting.
    TalkedEarly(Vec<u8>),
    /// The client closed the connection during the wait.
    HungUp,
}

/// Waits `wait` for the client to say anything, without consuming it:
/// the bytes stay in the socket, so a client that passed loses nothing
/// (it cannot have, since it sent nothing), and one that talked early
/// shows in the trace what it sent.
///
/// The caller has sent (and flushed) the `220-` first line.
pub fn listen(conn: &mut Connection, wait: Duration) -> io::Result<Pregreet> {
    let socket = conn.socket();
    // The connection manages the socket's read timeout for its own reads;
    // put it back as it was when we are done.
    let before = socket.read_timeout()?;
    let deadline = Instant::now() + wait;
    let mut first = [0u8; 512];
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Pregreet::Quiet;
        }
        socket.set_read_timeout(Some(left))?;
        // `peek` waits for data like `read`, but leaves it in the socket.
        match socket.peek(&mut first) {
            Ok(0) => break Pregreet::HungUp,
            Ok(n) => break Pregreet::TalkedEarly(first[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue; // silence until the deadline: the loop ends above
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A reset during the wait: the client is gone.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break Pregreet::HungUp,
            Err(e) => {
                socket.set_read_timeout(before)?;
                return Err(e);
            }
        }
    };
    socket.set_read_timeout(before)?;
    if let Pregreet::TalkedEarly(bytes) = &outcome {
        // Read what the client sent early through the connection, so that
        // `--trace` shows it; it is discarded either way.
        let mut sink = vec![0u8; bytes.len()];
        let _ = conn.read_some(&mut sink);
    }
    Ok(outcome)
}

/// Sends what is queued (the `521`), then closes politely: a bot that
/// talked early has left bytes we never read, and closing on unread bytes
/// makes the kernel answer with a reset that can arrive before our reply is
/// read. The library's lingering close (`netlessons::server::lingering_close`)
/// closes our side first, then reads and drops what the client still sends,
/// for a short while.
pub fn close_after_refusal(conn: &mut Connection) {
    lingering_close(conn, LINGER_BYTES);
}
