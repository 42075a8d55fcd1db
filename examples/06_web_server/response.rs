//! Writing a response head: the status line, the headers every response
//! carries, and dates, which HTTP writes in one fixed format (computed here
//! by hand from the system clock, since std has no calendar).
//!
//! ```text
//! HTTP/1.1 200 OK                               the status line
//! Date: Sun, 06 Nov 1994 08:49:37 GMT           IMF-fixdate, always GMT
//! Server: netlessons-06_web_server
//! Content-Length: 5120                          how to find the body's end
//! Content-Type: text/html; charset=utf-8
//!                                               then the body
//! ```
//!
//! The status code is the server's answer to "may I have this?": it grants
//! (`200`, `206`), redirects (`301`), says nothing changed (`304`), or
//! refuses, naming whose fault it is: `4xx` the client's, `5xx` ours.
//!
//! Heads are written into one reusable buffer per connection, and a small
//! body goes into the same buffer after them, so that a whole response
//! leaves in one `write` (one system call, usually one TCP segment).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The value of our `Server` header.
pub const SERVER: &str = "netlessons-06_web_server";

/// Every status this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200: here it is.
    Ok,
    /// 206: here is the part you asked for.
    PartialContent,
    /// 301: it lives at another address (`Location`).
    MovedPermanently,
    /// 304: your cached copy is still good.
    NotModified,
    /// 400: the request is malformed.
    BadRequest,
    /// 403: the file exists, but we may not read it.
    Forbidden,
    /// 404: nothing here (or nothing we will admit to).
    NotFound,
    /// 405: we know that method, but not for files (`Allow` says what is).
    MethodNotAllowed,
    /// 413: the request's body is too large.
    ContentTooLarge,
    /// 414: the request line is too long.
    UriTooLong,
    /// 416: the range asked for lies outside the file.
    RangeNotSatisfiable,
    /// 431: a header line, or the whole head, is too large.
    HeaderFieldsTooLarge,
    /// 501: a method or transfer coding we do not implement.
    NotImplemented,
    /// 505: an HTTP version we do not speak.
    VersionNotSupported,
}

impl Status {
    /// The code and reason phrase, as they appear in the status line.
    pub fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::PartialContent => "206 Partial Content",
            Status::MovedPermanently => "301 Moved Permanently",
            Status::NotModified => "304 Not Modified",
            Status::BadRequest => "400 Bad Request",
            Status::Forbidden => "403 Forbidden",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::ContentTooLarge => "413 Content Too Large",
            Status::UriTooLong => "414 URI Too Long",
            Status::RangeNotSatisfiable => "416 Range Not Satisfiable",
            Status::HeaderFieldsTooLarge => "431 Request Header Fields Too Large",
            Status::NotImplemented => "501 Not Implemented",
            Status::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }

    /// The three-digit code, for the log.
    pub fn code(self) -> u16 {
        self.line()[..3].parse().unwrap_or(500)
    }
}

/// Starts a response head in `out` (cleared first): the status line and the
/// headers every response carries. The caller adds its own headers with
/// [`header`] and ends the head with [`end_head`].
pub fn start_head(out: &mut Vec<u8>, status: Status, content_length: u64) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.line().as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    push_http_date(out, SystemTime::now());
    out.extend_from_slice(b"\r\nServer: ");
    out.extend_from_slice(SERVER.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    push_number(out, content_length);
    out.extend_from_slice(b"\r\n");
}

/// Adds one header line.
pub fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Ends the head: the connection header, if one is needed, and the empty line.
///
/// HTTP/1.1 keeps a connection open unless told otherwise, so `close`
/// must be said; an HTTP/1.0 client that asked for keep-alive must be told
/// it got it, or it will wait for a close that never comes.
pub fn end_head(out: &mut Vec<u8>, persistence: Persistence) {
    match persistence {
        Persistence::Close => header(out, "Connection", "close"),
        Persistence::KeepAlive10 => header(out, "Connection", "keep-alive"),
        Persistence::KeepAlive => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// What happens to the connection after this response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Stays open (HTTP/1.1's default: nothing to say).
    KeepAlive,
    /// Stays open, for an HTTP/1.0 client that asked (say so).
    KeepAlive10,
    /// Closed after the response.
    Close,
}

/// The short HTML page an error response carries.
pub fn error_page(status: Status, detail: &str) -> String {
    let line = status.line();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{line}</title></head>\n\
         <body><h1>{line}</h1><p>{detail}</p></body></html>\n"
    )
}

/// Appends a number in decimal without `format!`'s machinery (this runs for
/// every response).
fn push_number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `time` as an IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Times before 1970 are written as 1970.
pub fn http_date(time: SystemTime) -> String {
    let mut out = Vec::with_capacity(29);
    push_http_date(&mut out, time);
    String::from_utf8(out).unwrap_or_default()
}

fn push_http_date(out: &mut Vec<u8>, time: SystemTime) {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let rest = secs % 86_400;
    let mut text = String::with_capacity(29);
    let _ = write!(
        text,
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    );
    out.extend_from_slice(text.as_bytes());
}

/// Parses an IMF-fixdate back into seconds since 1970, for
/// `If-Modified-Since` and `If-Range`. `None` for anything else: RFC 9110
/// says an invalid date is ignored, as if the header were absent.
///
/// A simplification: recipients should also accept the two obsolete formats
/// (RFC 850's `Sunday, 06-Nov-94 …` and C's `asctime`); no browser has sent
/// those for decades, so we treat them as invalid.
pub fn parse_http_date(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let mut parts = text.split(' ');
    let (Some(_day), Some(d), Some(mon), Some(y), Some(hms), Some("GMT"), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let number = |s: &str, len: usize| -> Option<u64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let day = number(d, 2)?;
    let month = MONTHS.iter().position(|&m| m == mon)? as u64 + 1;
    let year = number(y, 4)?;
    let mut hms = hms.split(':');
    let (Some(h), Some(m), Some(s), None) = (hms.next(), hms.next(), hms.next(), hms.next()) else {
        return None;
    };
    let (h, m, s) = (number(h, 2)?, number(m, 2)?, number(s, 2)?);
    if year < 1970 || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year as i64, month as i64, day as i64);
    Some(days as u64 * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), in the proleptic
/// Gregorian calendar. This is Howard Hinnant's `civil_from_days`: it shifts
/// the year to start in March, so the leap day falls at the very end, and
/// counts in 400-year eras, which all have the same length.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year, from March 1
    let mp = (5 * doy + 2) / 153; // month, from March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The example date of RFC 9110 comes out exactly, and parses back.
    #[test]
    fn rfc_example_date() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    /// Dates round-trip across leap years and century boundaries.
    #[test]
    fn dates_round_trip() {
        for secs in [0, 951_782_400, 4_107_542_400, 1_709_164_800, 2_000_000_000] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_http_date(http_date(t).as_bytes()), Some(secs));
        }
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
