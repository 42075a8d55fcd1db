//! The SMTP *client* inside the relay: one attempt to hand a queued message
//! to the next hop.
//!
//! This is the other half of store-and-forward. The queue (`queue.rs`)
//! decides *when* to try; this file does one try and reports how it went,
//! in the three outcomes SMTP reply codes give us: done (`2xx`), try again
//! later (`4xx`, or no answer at all), or give up (`5xx`).

use crate::message;
use netlessons::connection::{Connection, LineEnding, connect_error};
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long to wait for the next hop to accept the TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for any reply. RFC 5321 §4.5.3.2 suggests minutes (up
/// to 10 for the reply after the final `.`); we are less patient, since a
/// failed attempt is simply retried later.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the reply to `QUIT`.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest reply line we accept.
const MAX_REPLY_LINE: usize = 2048;

/// A message to forward: the envelope and the text (with `\n` endings).
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The reverse path, empty for `<>`.
    pub from: String,
    /// The recipients still waiting for delivery.
    pub to: Vec<String>,
}

/// How one attempt went.
#[derive(Debug)]
pub enum Outcome {
    /// The next hop took the message for these recipients; the others got
    /// a temporary (`deferred`) or permanent (`rejected`) refusal, each with
    /// the reply that said so.
    Sent {
        /// Refused for good: `(recipient, reply)`.
        rejected: Vec<(String, String)>,
        /// Refused for now, to retry: `(recipient, reply)`.
        deferred: Vec<(String, String)>,
    },
    /// Nothing was delivered; try again later (`4xx`, a timeout, a refused
    /// connection, a next hop that hung up).
    Later(String),
    /// Nothing was delivered, and trying again will not help (`5xx`).
    Never(String),
}

/// A reply: its code and its text lines joined.
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn class(&self) -> u16 {
        self.code / 100
    }
}

/// Tries once to hand `message` to the SMTP server at `next_hop`.
/// `helo` is our name, for the `EHLO` line.
///
/// Returns how it went and, when the session is still open, the
/// connection: the caller records the outcome first (removes the queue
/// file, say), and only then says goodbye with [`quit`]. The next hop's
/// `250` after the final dot is the handover: from then on the message is
/// its responsibility, whatever happens to the `QUIT`.
pub fn forward(
    next_hop: &str,
    helo: &str,
    envelope: &Envelope,
    message: &[u8],
    trace: bool,
) -> (Outcome, Option<Connection>) {
    // No reply, or a broken connection. A message counts as sent only
    // after the final 250, so this is always "try again". If the line
    // broke after the next hop stored the message but before its 250
    // reached us, the recipient gets it twice: mail prefers a duplicate to
    // a loss (RFC 5321 §6.1).
    let mut conn = match connect(next_hop, trace) {
        Ok(conn) => conn,
        Err(e) => return (Outcome::Later(e.to_string()), None),
    };
    match session(&mut conn, helo, envelope, message) {
        Ok(outcome) => (outcome, Some(conn)),
        Err(e) => (Outcome::Later(e.to_string()), None),
    }
}

/// The SMTP conversation, up to the reply to the final dot.
fn session(
    conn: &mut Connection,
    helo: &str,
    envelope: &Envelope,
    message: &[u8],
) -> io::Result<Outcome> {
    conn.set_line_ending(LineEnding::CrLf);
    conn.set_idle_timeout(Some(REPLY_TIMEOUT))?;
    let greeting = read_reply(conn)?;
    if greeting.class() != 2 {
        return Ok(refused("greeting", &greeting));
    }
    conn.send_line(format!("EHLO {helo}"))?;
    let mut ehlo = read_reply(conn)?;
    if ehlo.class() != 2 {
        // An old server that knows only HELO.
        conn.send_line(format!("HELO {helo}"))?;
        ehlo = read_reply(conn)?;
        if ehlo.class() != 2 {
            return Ok(refused("HELO", &ehlo));
        }
    }
    // A message with 8-bit bytes (UTF-8 text, say) may go only to a server
    // that offers 8BITMIME (RFC 6152), and we must say BODY=8BITMIME. To
    // one that does not, a real server converts the message to 7 bits
    // (quoted-printable, RFC 1652 §6) or returns it; we return it.
    let eight_bit = message.iter().any(|&b| b >= 0x80);
    if eight_bit
        && !ehlo
            .text
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("8BITMIME"))
    {
        return Ok(Outcome::Never(
            "the next hop does not accept 8-bit mail (it did not offer 8BITMIME), \
             and this message has 8-bit bytes"
                .to_string(),
        ));
    }
    let body_param = if eight_bit { " BODY=8BITMIME" } else { "" };
    conn.send_line(format!("MAIL FROM:<{}>{body_param}", envelope.from))?;
    let reply = read_reply(conn)?;
    if reply.class() != 2 {
        return Ok(refused("MAIL", &reply));
    }
    let mut accepted = 0;
    let mut rejected = Vec::new();
    let mut deferred = Vec::new();
    for rcpt in &envelope.to {
        conn.send_line(format!("RCPT TO:<{rcpt}>"))?;
        let reply = read_reply(conn)?;
        match reply.class() {
            2 => accepted += 1,
            5 => rejected.push((rcpt.clone(), format!("{} {}", reply.code, reply.text))),
            _ => deferred.push((rcpt.clone(), format!("{} {}", reply.code, reply.text))),
        }
    }
    if accepted == 0 {
        return Ok(Outcome::Sent { rejected, deferred });
    }
    conn.send_line("DATA")?;
    let reply = read_reply(conn)?;
    if reply.code != 354 {
        return Ok(refused("DATA", &reply));
    }
    message::send_stuffed(conn, message::lines(message))?;
    let reply = read_reply(conn)?;
    if reply.class() != 2 {
        return Ok(refused("the message", &reply));
    }
    Ok(Outcome::Sent { rejected, deferred })
}

/// Connects with a timeout (a plain `connect` to an address that drops
/// packets can hang for minutes).
fn connect(next_hop: &str, trace: bool) -> io::Result<Connection> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{next_hop} has no address"),
    );
    for addr in next_hop
        .to_socket_addrs()
        .map_err(|e| connect_error(next_hop, e))?
    {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Connection::new(stream, trace),
            Err(e) => last = connect_error(next_hop, e),
        }
    }
    Err(last)
}

/// Says goodbye politely, waiting for the reply only briefly: the outcome
/// is already recorded, so errors and silence do not matter. (Waiting the
/// full reply timeout here would stall the whole queue behind one slow
/// server, for nothing.)
pub fn quit(mut conn: Connection) {
    if conn.set_idle_timeout(Some(QUIT_TIMEOUT)).is_ok() && conn.send_line("QUIT").is_ok() {
        let _ = read_reply(&mut conn);
    }
}

/// A refusal at `stage`, temporary or permanent by its code.
fn refused(stage: &str, reply: &Reply) -> Outcome {
    let why = format!("{stage} refused: {} {}", reply.code, reply.text);
    if reply.class() == 5 {
        Outcome::Never(why)
    } else {
        Outcome::Later(why)
    }
}

/// Reads one reply, following `250-…` continuation lines to the last one
/// (`250 …`), and checks the code is three digits.
fn read_reply(conn: &mut Connection) -> io::Result<Reply> {
    let mut text = String::new();
    loop {
        let line =
            message::read_owed_line(conn, MAX_REPLY_LINE, "the next hop closed the connection")?;
        let line = String::from_utf8_lossy(&line);
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not an SMTP reply: {line:?}"),
                )
            })?;
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(line.get(4..).unwrap_or(""));
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(Reply { code, text });
        }
    }
}
