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
pub fn forward(
    next_hop: &str,
    helo: &str,
    envelope: &Envelope,
    message: &[u8],
    trace: bool,
) -> Outcome {
    match attempt(next_hop, helo, envelope, message, trace) {
        Ok(outcome) => outcome,
        // No reply, or a broken connection. A message counts as sent only
        // after the final 250, so this is always "try again". If the line
        // broke after the next hop stored the message but before its 250
        // reached us, the recipient gets it twice: mail prefers a duplicate
        // to a loss (RFC 5321 §6.1).
        Err(e) => Outcome::Later(e.to_string()),
    }
}

fn attempt(
    next_hop: &str,
    helo: &str,
    envelope: &Envelope,
    message: &[u8],
    trace: bool,
) -> io::Result<Outcome> {
    let mut conn = connect(next_hop, trace)?;
    conn.set_line_ending(LineEnding::CrLf);
    conn.set_idle_timeout(Some(REPLY_TIMEOUT))?;
    let greeting = read_reply(&mut conn)?;
    if greeting.class() != 2 {
        return Ok(refused("greeting", &greeting));
    }
    conn.send_line(format!("EHLO {helo}"))?;
    let mut ehlo = read_reply(&mut conn)?;
    if ehlo.class() != 2 {
        // An old server that knows only HELO.
        conn.send_line(format!("HELO {helo}"))?;
        ehlo = read_reply(&mut conn)?;
        if ehlo.class() != 2 {
            return Ok(refused("HELO", &ehlo));
        }
    }
    // Say so when the message has 8-bit bytes and the next hop allows them.
    let eight_bit = message.iter().any(|&b| b >= 0x80)
        && ehlo
            .text
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("8BITMIME"));
    let body_param = if eight_bit { " BODY=8BITMIME" } else { "" };
    conn.send_line(format!("MAIL FROM:<{}>{body_param}", envelope.from))?;
    let reply = read_reply(&mut conn)?;
    if reply.class() != 2 {
        return Ok(refused("MAIL", &reply));
    }
    let mut accepted = 0;
    let mut rejected = Vec::new();
    let mut deferred = Vec::new();
    for rcpt in &envelope.to {
        conn.send_line(format!("RCPT TO:<{rcpt}>"))?;
        let reply = read_reply(&mut conn)?;
        match reply.class() {
            2 => accepted += 1,
            5 => rejected.push((rcpt.clone(), format!("{} {}", reply.code, reply.text))),
            _ => deferred.push((rcpt.clone(), format!("{} {}", reply.code, reply.text))),
        }
    }
    if accepted == 0 {
        quit(&mut conn);
        return Ok(Outcome::Sent { rejected, deferred });
    }
    conn.send_line("DATA")?;
    let reply = read_reply(&mut conn)?;
    if reply.code != 354 {
        return Ok(refused("DATA", &reply));
    }
    message::send_stuffed(&mut conn, message::lines(message))?;
    let reply = read_reply(&mut conn)?;
    if reply.class() != 2 {
        return Ok(refused("the message", &reply));
    }
    quit(&mut conn);
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

/// Says goodbye politely; the message is already safe, so errors do not matter.
fn quit(conn: &mut Connection) {
    let _ = conn.send_line("QUIT");
    let _ = read_reply(conn);
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
        let line = conn.read_line(MAX_REPLY_LINE)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the next hop closed the connection",
            )
        })?;
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
