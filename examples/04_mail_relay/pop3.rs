//! The POP3 side: reading your mail (RFC 1939).
//!
//! SMTP moves mail between servers; POP3 is how a person's mail program
//! fetches it from the last one. A session has three states:
//!
//! 1. **AUTHORIZATION**: `USER bob`, `PASS secret`. On success the mailbox
//!    is *locked* (one session at a time) and its list of messages fixed.
//! 2. **TRANSACTION**: `STAT`, `LIST`, `RETR 1`, `DELE 1`, … Messages are
//!    numbered 1, 2, 3 for this session. `DELE` only *marks* a message.
//! 3. **UPDATE**, entered by `QUIT`: the marked messages are removed. A
//!    session that ends any other way (a dropped connection, a timeout)
//!    removes nothing, so a crash in the middle never loses mail.
//!
//! Replies start with `+OK` or `-ERR`. Multi-line replies (a message, a
//! list) end with a line holding a single `.`, and lines of the message that
//! start with `.` get another one in front (*byte-stuffing*, the same trick
//! as SMTP's dot-stuffing).
//!
//! Passwords travel in the clear: real servers offer POP3 only inside TLS
//! (port 995, or `STLS`), which std cannot do.

use crate::Mailboxes;
use crate::message;
use crate::spool::{Spool, Stored};
use netlessons::auth::LoginThrottle;
use netlessons::connection::{Connection, LineEnding};
use netlessons::framing::is_too_long;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Longest command line (RFC 2449 allows 255 bytes with the `\r\n`).
pub const MAX_COMMAND_LINE: usize = 253;
/// After this many wrong passwords, the session is closed.
const MAX_AUTH_FAILURES: u32 = 3;

/// What every POP3 session shares.
#[derive(Debug)]
pub struct Pop3Service {
    /// Users, their passwords and their mailboxes.
    pub mailboxes: Arc<Mailboxes>,
    /// Where the mail is.
    pub spool: Arc<Spool>,
    /// Mailboxes with a session in progress (the lock of RFC 1939 §8).
    pub locked: Mutex<HashSet<String>>,
    /// Failed logins per client address: the wait before each answer to
    /// `PASS` (the same throttle as the file server's handshake).
    pub logins: LoginThrottle,
}

/// Holds a mailbox's lock; dropping it (however the session ends) unlocks.
///
/// A real server locks with a file in the mailbox, so that other programs
/// (a second server, a local mail reader) see the lock too. Ours lives in
/// memory and only keeps out other sessions of this process.
struct MailboxLock<'a> {
    service: &'a Pop3Service,
    mailbox: String,
}

impl Drop for MailboxLock<'_> {
    fn drop(&mut self) {
        locked(self.service).remove(&self.mailbox);
    }
}

fn locked(service: &Pop3Service) -> MutexGuard<'_, HashSet<String>> {
    service
        .locked
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Talks POP3 with one client until `QUIT` or until it goes away.
pub fn serve(mut conn: Connection, service: &Pop3Service) -> io::Result<()> {
    conn.set_line_ending(LineEnding::CrLf);
    // No "<...>" token here: a client seeing one would try APOP, an old
    // login that needs the password stored in the clear on the server.
    conn.send_line("+OK POP3 netlessons 04_mail_relay ready")?;
    let Some((_lock, messages)) = authorize(&mut conn, service)? else {
        return conn.flush();
    };
    // `_lock` keeps the mailbox locked until this function returns.
    transaction(&mut conn, messages)
}

/// One command line, understood (see [`parse_request`]). The verb decides
/// the variant; what it means depends on the state: `USER` in the
/// TRANSACTION state is refused, whatever its argument.
#[derive(Debug, PartialEq, Eq)]
enum Pop3Request<'a> {
    /// `CAPA`: what do you support?
    Capa,
    /// `USER name` (trimmed; empty when missing).
    User(&'a str),
    /// `PASS secret`: the whole rest of the line, since a password may
    /// hold spaces.
    Pass(&'a str),
    /// `STAT`: how many messages, how many octets.
    Stat,
    /// `LIST [n]`: sizes; `None` lists them all.
    List(Option<Number>),
    /// `UIDL [n]`: unique ids; `None` lists them all.
    Uidl(Option<Number>),
    /// `RETR n`: a whole message.
    Retr(Number),
    /// `TOP n k`: the headers and `k` lines of the body (`None`: `k` is
    /// missing or not a number).
    Top(Number, Option<usize>),
    /// `DELE n`: mark a message deleted.
    Dele(Number),
    /// `NOOP`.
    Noop,
    /// `RSET`: unmark every deleted message.
    Rset,
    /// `QUIT`: leave (and, logged in, remove the marked messages).
    Quit,
    /// A known command without its message number: how to use it.
    Usage(&'static str),
    /// Anything else.
    Unknown,
}

/// A message number as the client wrote it: `None` when it is not a number
/// at all. Whether such a message exists is for the session to say.
type Number = Option<usize>;

/// Reads a command line as a request. Pure: easy to test, easy to extend.
/// Verbs are case-insensitive; the arguments follow the first space.
fn parse_request(line: &str) -> Pop3Request<'_> {
    let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
    let mut words = args.split_whitespace();
    let number = |word: &str| word.parse::<usize>().ok();
    match verb.to_ascii_uppercase().as_str() {
        "CAPA" => Pop3Request::Capa,
        "USER" => Pop3Request::User(args.trim()),
        "PASS" => Pop3Request::Pass(args),
        "STAT" => Pop3Request::Stat,
        "LIST" => Pop3Request::List(words.next().map(number)),
        "UIDL" => Pop3Request::Uidl(words.next().map(number)),
        "RETR" => match words.next() {
            Some(n) => Pop3Request::Retr(number(n)),
            None => Pop3Request::Usage("RETR message-number"),
        },
        "TOP" => match words.next() {
            Some(n) => Pop3Request::Top(number(n), words.next().and_then(number)),
            None => Pop3Request::Usage("TOP message-number"),
        },
        "DELE" => match words.next() {
            Some(n) => Pop3Request::Dele(number(n)),
            None => Pop3Request::Usage("DELE message-number"),
        },
        "NOOP" => Pop3Request::Noop,
        "RSET" => Pop3Request::Rset,
        "QUIT" => Pop3Request::Quit,
        _ => Pop3Request::Unknown,
    }
}

/// Reads one command line: `Ok(None)` when the client is gone (or timed
/// out: RFC 1939 says to close without a word then). A line too long is
/// answered here and skipped.
fn read_command(conn: &mut Connection) -> io::Result<Option<String>> {
    loop {
        match conn.read_line(MAX_COMMAND_LINE) {
            // Commands are ASCII; anything else will not match a verb.
            Ok(Some(line)) => return Ok(Some(String::from_utf8_lossy(&line).into_owned())),
            Ok(None) => return Ok(None),
            Err(e) if is_too_long(&e) => {
                if !conn.skip_line()? {
                    return Ok(None);
                }
                conn.send_line("-ERR line too long")?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `CAPA` (RFC 2449): what we support. `curl` asks first, and uses
/// `USER`/`PASS` only if `USER` is listed.
fn capabilities(conn: &mut Connection) -> io::Result<()> {
    for line in [
        "+OK capability list follows",
        "USER",
        "UIDL",
        "TOP",
        "RESP-CODES",
        "IMPLEMENTATION netlessons",
        ".",
    ] {
        conn.send_line(line)?;
    }
    Ok(())
}

/// The AUTHORIZATION state. Returns the lock and the message list, or
/// `None` if the client left (or failed too often).
fn authorize<'a>(
    conn: &mut Connection,
    service: &'a Pop3Service,
) -> io::Result<Option<(MailboxLock<'a>, Vec<Stored>)>> {
    let mut user: Option<String> = None;
    let mut failures = 0;
    while let Some(line) = read_command(conn)? {
        match parse_request(&line) {
            Pop3Request::Capa => capabilities(conn)?,
            Pop3Request::User("") => conn.send_line("-ERR usage: USER name")?,
            Pop3Request::User(name) => {
                // Say +OK whether or not the user exists: otherwise anyone
                // could find out which names are real.
                user = Some(name.to_ascii_lowercase());
                conn.send_line("+OK send PASS")?;
            }
            Pop3Request::Pass(password) => {
                let Some(name) = user.take() else {
                    conn.send_line("-ERR send USER first")?;
                    continue;
                };
                match pass(conn, service, name, password)? {
                    Login::In(lock, messages) => return Ok(Some((lock, messages))),
                    Login::Wrong => {
                        failures += 1;
                        if failures >= MAX_AUTH_FAILURES {
                            return Ok(None);
                        }
                    }
                    Login::InUse => {}
                }
            }
            Pop3Request::Quit => {
                conn.send_line("+OK bye")?;
                return Ok(None);
            }
            _ => conn.send_line("-ERR log in first with USER and PASS")?,
        }
    }
    Ok(None)
}

/// How a `PASS` went (when the session goes on).
enum Login<'a> {
    /// Logged in: the mailbox is locked and its messages listed.
    In(MailboxLock<'a>, Vec<Stored>),
    /// A wrong user name or password (answered).
    Wrong,
    /// Right, but another session has the mailbox (answered).
    InUse,
}

/// `PASS`: checks `password` for `name`, after the throttle's wait; if it
/// is right, locks the mailbox and lists its messages.
fn pass<'a>(
    conn: &mut Connection,
    service: &'a Pop3Service,
    name: String,
    password: &str,
) -> io::Result<Login<'a>> {
    let right = service.mailboxes.check_password(&name, password);
    if !service.logins.before_answer(conn.peer_addr().ip(), right) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "too many failed logins from this address in the last minute: \
             closed without an answer",
        ));
    }
    if !right {
        conn.send_line("-ERR [AUTH] invalid user name or password")?;
        return Ok(Login::Wrong);
    }
    if !locked(service).insert(name.clone()) {
        conn.send_line("-ERR [IN-USE] mailbox is in use by another session, try later")?;
        return Ok(Login::InUse);
    }
    let lock = MailboxLock {
        service,
        mailbox: name.clone(),
    };
    let messages = match service.spool.list(&name) {
        Ok(messages) => messages,
        Err(e) => {
            conn.send_line("-ERR [SYS/TEMP] could not read the mailbox")?;
            return Err(e);
        }
    };
    let total: u64 = messages.iter().map(|m| m.size).sum();
    conn.send_line(format!(
        "+OK {name} has {} messages ({total} octets)",
        messages.len()
    ))?;
    Ok(Login::In(lock, messages))
}

/// The TRANSACTION state, then UPDATE on `QUIT`.
fn transaction(conn: &mut Connection, messages: Vec<Stored>) -> io::Result<()> {
    let mut maildrop = Maildrop {
        deleted: vec![false; messages.len()],
        messages,
    };
    while let Some(line) = read_command(conn)? {
        match parse_request(&line) {
            Pop3Request::Quit => return maildrop.update(conn),
            request => maildrop.answer(conn, request)?,
        }
    }
    // The client left without QUIT: nothing is deleted (RFC 1939 §6).
    Ok(())
}

/// A logged-in session's messages (numbered from 1 for the client), and
/// which of them `DELE` has marked.
struct Maildrop {
    messages: Vec<Stored>,
    deleted: Vec<bool>,
}

impl Maildrop {
    /// Carries out one request of the TRANSACTION state (all but `QUIT`).
    fn answer(&mut self, conn: &mut Connection, request: Pop3Request<'_>) -> io::Result<()> {
        match request {
            Pop3Request::Capa => capabilities(conn),
            Pop3Request::Noop => conn.send_line("+OK"),
            Pop3Request::Stat => self.stat(conn),
            Pop3Request::List(n) => self.list(conn, n, |i, m| format!("{} {}", i + 1, m.size)),
            Pop3Request::Uidl(n) => self.list(conn, n, |i, m| format!("{} {}", i + 1, m.uid)),
            Pop3Request::Retr(n) => self.retr(conn, n),
            Pop3Request::Top(n, lines) => self.top(conn, n, lines),
            Pop3Request::Dele(n) => self.dele(conn, n),
            Pop3Request::Rset => {
                self.deleted.fill(false);
                conn.send_line(format!("+OK {} messages", self.messages.len()))
            }
            Pop3Request::Usage(usage) => conn.send_line(format!("-ERR usage: {usage}")),
            Pop3Request::User(_) | Pop3Request::Pass(_) => conn.send_line("-ERR already logged in"),
            Pop3Request::Unknown => conn.send_line("-ERR unknown command"),
            Pop3Request::Quit => unreachable!("transaction() handles QUIT itself"),
        }
    }

    /// The index of message `n`. Message numbers count from 1; a deleted
    /// message no longer exists for this session's commands.
    fn index(&self, n: Number) -> Result<usize, &'static str> {
        let n = n.ok_or("-ERR invalid message number")?;
        if n == 0 || n > self.messages.len() {
            return Err("-ERR no such message");
        }
        if self.deleted[n - 1] {
            return Err("-ERR message already deleted");
        }
        Ok(n - 1)
    }

    /// The messages not marked deleted, with their index.
    fn live(&self) -> impl Iterator<Item = (usize, &Stored)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
    }

    /// `STAT`: the count and total size of the messages not deleted.
    fn stat(&self, conn: &mut Connection) -> io::Result<()> {
        let (count, size) = self
            .live()
            .fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.size));
        conn.send_line(format!("+OK {count} {size}"))
    }

    /// `LIST` and `UIDL`: one message's line (`show`), or every live one's.
    fn list(
        &self,
        conn: &mut Connection,
        n: Option<Number>,
        show: fn(usize, &Stored) -> String,
    ) -> io::Result<()> {
        match n.map(|n| self.index(n)) {
            Some(Ok(i)) => conn.send_line(format!("+OK {}", show(i, &self.messages[i]))),
            Some(Err(e)) => conn.send_line(e),
            None => {
                conn.send_line("+OK listing follows")?;
                for (i, m) in self.live() {
                    conn.send_line(show(i, m))?;
                }
                conn.send_line(".")
            }
        }
    }

    /// `RETR n`: the whole message.
    fn retr(&self, conn: &mut Connection, n: Number) -> io::Result<()> {
        match self.index(n) {
            Ok(i) => self.send_message(conn, i, None),
            Err(e) => conn.send_line(e),
        }
    }

    /// `TOP n k`: the headers, the blank line, and `k` lines of the body.
    fn top(&self, conn: &mut Connection, n: Number, lines: Option<usize>) -> io::Result<()> {
        let i = match self.index(n) {
            Ok(i) => i,
            Err(e) => return conn.send_line(e),
        };
        match lines {
            Some(k) => self.send_message(conn, i, Some(k)),
            None => conn.send_line("-ERR usage: TOP message-number lines"),
        }
    }

    /// Sends message `i` byte-stuffed: whole (`body_lines` is `None`, for
    /// `RETR`), or its headers and that many body lines (for `TOP`).
    fn send_message(
        &self,
        conn: &mut Connection,
        i: usize,
        body_lines: Option<usize>,
    ) -> io::Result<()> {
        let Ok(text) = fs::read(&self.messages[i].path) else {
            return conn.send_line("-ERR that message is gone");
        };
        if body_lines.is_none() {
            conn.send_line(format!("+OK {} octets", self.messages[i].size))?;
        } else {
            conn.send_line("+OK top of message follows")?;
        }
        let mut in_body = false;
        let mut body_sent = 0;
        let lines = message::lines(&text).take_while(|line| {
            let keep = !in_body || body_lines.is_none_or(|k| body_sent < k);
            if in_body {
                body_sent += 1;
            }
            if line.is_empty() {
                in_body = true;
            }
            keep
        });
        message::send_stuffed(conn, lines)
    }

    /// `DELE n`: marks the message; it is removed at `QUIT`.
    fn dele(&mut self, conn: &mut Connection, n: Number) -> io::Result<()> {
        match self.index(n) {
            Ok(i) => {
                self.deleted[i] = true;
                conn.send_line(format!("+OK message {} deleted", i + 1))
            }
            Err(e) => conn.send_line(e),
        }
    }

    /// `QUIT` and the UPDATE state: now, and only now, the deletions happen.
    fn update(self, conn: &mut Connection) -> io::Result<()> {
        let mut failed = 0;
        for (m, _) in self.messages.iter().zip(&self.deleted).filter(|(_, d)| **d) {
            if let Err(e) = fs::remove_file(&m.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    failed += 1;
                }
            }
        }
        let left = self.deleted.iter().filter(|d| !**d).count();
        if failed > 0 {
            conn.send_line(format!("-ERR {failed} deleted messages were not removed"))?;
        } else {
            conn.send_line(format!("+OK bye ({left} messages left)"))?;
        }
        conn.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verbs are case-insensitive and the arguments follow the first space.
    #[test]
    fn parses_verbs() {
        assert_eq!(parse_request("CAPA"), Pop3Request::Capa);
        assert_eq!(parse_request("capa"), Pop3Request::Capa);
        assert_eq!(parse_request("StAt"), Pop3Request::Stat);
        assert_eq!(parse_request("NOOP"), Pop3Request::Noop);
        assert_eq!(parse_request("RSET"), Pop3Request::Rset);
        assert_eq!(parse_request("QUIT"), Pop3Request::Quit);
        assert_eq!(parse_request("QUIT "), Pop3Request::Quit);
        assert_eq!(parse_request(""), Pop3Request::Unknown);
        assert_eq!(parse_request("APOP bob 1234"), Pop3Request::Unknown);
        // Only a space separates: a tab is part of the verb.
        assert_eq!(parse_request("QUIT\t"), Pop3Request::Unknown);
    }

    /// `USER` is trimmed; `PASS` keeps the whole rest of the line.
    #[test]
    fn parses_login() {
        assert_eq!(parse_request("USER bob"), Pop3Request::User("bob"));
        assert_eq!(parse_request("user  Bob  "), Pop3Request::User("Bob"));
        assert_eq!(parse_request("USER"), Pop3Request::User(""));
        assert_eq!(parse_request("USER   "), Pop3Request::User(""));
        assert_eq!(parse_request("PASS a b "), Pop3Request::Pass("a b "));
        assert_eq!(parse_request("PASS"), Pop3Request::Pass(""));
    }

    /// Message numbers: a word that is not a number is `None`, a missing
    /// one is a usage error (or, for `LIST` and `UIDL`, the whole list).
    #[test]
    fn parses_message_numbers() {
        assert_eq!(parse_request("LIST"), Pop3Request::List(None));
        assert_eq!(parse_request("LIST 2"), Pop3Request::List(Some(Some(2))));
        assert_eq!(parse_request("list  x"), Pop3Request::List(Some(None)));
        assert_eq!(parse_request("UIDL 1"), Pop3Request::Uidl(Some(Some(1))));
        assert_eq!(parse_request("UIDL "), Pop3Request::Uidl(None));
        assert_eq!(parse_request("RETR 1"), Pop3Request::Retr(Some(1)));
        assert_eq!(parse_request("RETR -1"), Pop3Request::Retr(None));
        assert_eq!(
            parse_request("RETR"),
            Pop3Request::Usage("RETR message-number")
        );
        assert_eq!(parse_request("DELE 0"), Pop3Request::Dele(Some(0)));
        assert_eq!(
            parse_request("DELE"),
            Pop3Request::Usage("DELE message-number")
        );
    }

    /// `TOP n k`: a missing or bad `k` is kept apart from a bad `n`, since
    /// the message number is checked first.
    #[test]
    fn parses_top() {
        assert_eq!(parse_request("TOP 1 5"), Pop3Request::Top(Some(1), Some(5)));
        assert_eq!(parse_request("TOP 1"), Pop3Request::Top(Some(1), None));
        assert_eq!(parse_request("TOP x 5"), Pop3Request::Top(None, Some(5)));
        assert_eq!(parse_request("TOP 1 -5"), Pop3Request::Top(Some(1), None));
        assert_eq!(
            parse_request("top"),
            Pop3Request::Usage("TOP message-number")
        );
    }
}
