//! The message text itself: the `Received:` header every hop adds, the date
//! format mail uses, and the *wire form* of a stored message.
//!
//! We store messages the way Unix mail tools expect, with `\n` line endings.
//! On the wire, SMTP and POP3 want `\r\n` and *dot-stuffing*: a message ends
//! with a line holding a single `.`, so a line of the message that starts
//! with `.` is sent with one more `.` in front (`.hidden` → `..hidden`), and
//! the receiver strips it again. The helpers here do that conversion, in one
//! place, for the POP3 server and for forwarding.

use netlessons::connection::Connection;
use std::io;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// A message with this many `Received:` headers or more has been passed
/// around in a loop (RFC 5321 §6.3 asks for a threshold of at least 100).
pub const MAX_HOPS: usize = 100;

/// The lines of a stored message, without their `\n`. A last line without a
/// `\n` still counts as a line.
pub fn lines(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    // An empty message has no lines at all (`split` would yield one empty line).
    (!message.is_empty())
        .then(|| body.split(|&b| b == b'\n'))
        .into_iter()
        .flatten()
}

/// The size of the message on the wire, as POP3's `LIST` reports it: every
/// line ends in `\r\n` there (dot-stuffing is not counted, as RFC 1939 says).
pub fn wire_size(message: &[u8]) -> u64 {
    lines(message).map(|line| line.len() as u64 + 2).sum()
}

/// Sends `lines` dot-stuffed with `\r\n` endings, then the final `.` line.
/// The connection must already use [`netlessons::connection::LineEnding::CrLf`].
pub fn send_stuffed<'a>(
    conn: &mut Connection,
    lines: impl Iterator<Item = &'a [u8]>,
) -> io::Result<()> {
    for line in lines {
        let stuffed;
        let line = if line.first() == Some(&b'.') {
            stuffed = [b".", line].concat();
            &stuffed[..]
        } else {
            line
        };
        if line.contains(&b'\r') {
            // A lone '\r' inside a line is legal in a stored message but
            // `send_line` refuses it (it guards against line injection), so
            // this rare line goes out as raw bytes.
            conn.send_body(line)?;
            conn.send_body(b"\r\n")?;
        } else {
            conn.send_line(line)?;
        }
    }
    conn.send_line(".")
}

/// Where a message came from, for its `Received:` header.
#[derive(Debug, Clone)]
pub struct Hop<'a> {
    /// The name the client gave in `HELO`/`EHLO`.
    pub helo: &'a str,
    /// The client's real address, which (unlike `helo`) it cannot make up.
    pub peer: IpAddr,
    /// Our own name.
    pub by: &'a str,
    /// `SMTP` after `HELO`, `ESMTP` after `EHLO`.
    pub with: &'a str,
    /// Our id for this message, to find it in our logs.
    pub id: &'a str,
    /// The recipient, when there is only one (RFC 5321 §4.4 `for` clause).
    pub for_rcpt: Option<&'a str>,
}

/// The `Received:` header for one hop (RFC 5321 §4.4), folded over three
/// lines, ending in `\n`. Every server that passes a message on adds one at
/// the top, so the headers read as the message's route, newest first.
pub fn received_header(hop: &Hop<'_>, now: SystemTime) -> String {
    let for_clause = hop
        .for_rcpt
        .map(|r| format!("\n\tfor <{r}>"))
        .unwrap_or_default();
    format!(
        "Received: from {} ([{}])\n\tby {} (netlessons 04_mail_relay) with {} id {}{};\n\t{}\n",
        sanitize(hop.helo),
        hop.peer,
        hop.by,
        hop.with,
        hop.id,
        for_clause,
        rfc5322_date(now)
    )
}

/// Keeps a client-supplied word safe to put in a header: printable ASCII
/// without spaces, at most 64 characters.
fn sanitize(word: &str) -> String {
    keep_chars(
        word,
        |c| c.is_ascii_graphic() && !"()<>;\\\"".contains(c),
        64,
        "unknown",
    )
}

/// The characters of `text` that `keep` accepts, at most `max` of them, or
/// `fallback` when none is left: how a name from outside (a client's
/// `HELO`, this machine's host name) is made safe to write into a header
/// or a file name.
pub fn keep_chars(text: &str, keep: impl Fn(char) -> bool, max: usize, fallback: &str) -> String {
    let kept: String = text.chars().filter(|c| keep(*c)).take(max).collect();
    if kept.is_empty() {
        fallback.to_string()
    } else {
        kept
    }
}

/// Reads one line the peer owes us (a reply): the end of the stream here
/// is an error, `UnexpectedEof`, saying `closed`.
pub fn read_owed_line(conn: &mut Connection, max: usize, closed: &str) -> io::Result<Vec<u8>> {
    conn.read_line(max)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, closed.to_string()))
}

/// A date as mail headers write it (RFC 5322 §3.3), in UTC:
/// `Tue, 11 Jun 2024 10:00:00 +0000`. std has no calendar, so we compute one.
pub fn rfc5322_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let rest = secs % 86_400;
    format!(
        "{}, {day} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Year, month (1–12) and day (1–31) of a day counted from 1970-01-01, by
/// Howard Hinnant's `civil_from_days` algorithm (eras of 400 years, each of
/// which repeats the Gregorian calendar exactly).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153; // month counted from March
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}
