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

/// Reads one command: `Ok(None)` when the client is gone (or timed out:
/// RFC 1939 says to close without a word then).
fn command(conn: &mut Connection) -> io::Result<Option<(String, String)>> {
    loop {
        let line = match conn.read_line(MAX_COMMAND_LINE) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(None),
            Err(e) if is_too_long(&e) => {
                if !conn.skip_line()? {
                    return Ok(None);
                }
                conn.send_line("-ERR line too long")?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let line = String::from_utf8_lossy(&line).into_owned();
        let (verb, args) = match line.split_once(' ') {
            Some((verb, args)) => (verb.to_ascii_uppercase(), args.to_string()),
            None => (line.to_ascii_uppercase(), String::new()),
        };
        return Ok(Some((verb, args)));
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
    while let Some((verb, args)) = command(conn)? {
        match verb.as_str() {
            "CAPA" => capabilities(conn)?,
            "USER" if args.trim().is_empty() => conn.send_line("-ERR usage: USER name")?,
            "USER" => {
                // Say +OK whether or not the user exists: otherwise anyone
                // could find out which names are real.
                user = Some(args.trim().to_ascii_lowercase());
                conn.send_line("+OK send PASS")?;
            }
            "PASS" => {
                let Some(name) = user.take() else {
                    conn.send_line("-ERR send USER first")?;
                    continue;
                };
                // The password is the whole rest of the line: it may hold spaces.
                let right = service.mailboxes.check_password(&name, &args);
                if !service.logins.before_answer(conn.peer_addr().ip(), right) {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        "too many failed logins from this address in the last minute: \
                         closed without an answer",
                    ));
                }
                if !right {
                    failures += 1;
                    conn.send_line("-ERR [AUTH] invalid user name or password")?;
                    if failures >= MAX_AUTH_FAILURES {
                        return Ok(None);
                    }
                    continue;
                }
                if !locked(service).insert(name.clone()) {
                    conn.send_line(
                        "-ERR [IN-USE] mailbox is in use by another session, try later",
                    )?;
                    continue;
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
                return Ok(Some((lock, messages)));
            }
            "QUIT" => {
                conn.send_line("+OK bye")?;
                return Ok(None);
            }
            _ => conn.send_line("-ERR log in first with USER and PASS")?,
        }
    }
    Ok(None)
}

/// The TRANSACTION state, then UPDATE on `QUIT`.
fn transaction(conn: &mut Connection, messages: Vec<Stored>) -> io::Result<()> {
    let mut deleted = vec![false; messages.len()];
    while let Some((verb, args)) = command(conn)? {
        // Message numbers count from 1; a deleted message no longer exists
        // for this session's commands.
        let number = |text: &str| -> Result<usize, &'static str> {
            let n: usize = text
                .trim()
                .parse()
                .map_err(|_| "-ERR invalid message number")?;
            if n == 0 || n > messages.len() {
                return Err("-ERR no such message");
            }
            if deleted[n - 1] {
                return Err("-ERR message already deleted");
            }
            Ok(n - 1)
        };
        let mut words = args.split_whitespace();
        match verb.as_str() {
            "CAPA" => capabilities(conn)?,
            "NOOP" => conn.send_line("+OK")?,
            "STAT" => {
                let (count, size) =
                    live(&messages, &deleted).fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.size));
                conn.send_line(format!("+OK {count} {size}"))?;
            }
            "LIST" | "UIDL" => {
                let show = |i: usize, m: &Stored| {
                    if verb == "LIST" {
                        format!("{} {}", i + 1, m.size)
                    } else {
                        format!("{} {}", i + 1, m.uid)
                    }
                };
                match words.next() {
                    Some(arg) => match number(arg) {
                        Ok(i) => conn.send_line(format!("+OK {}", show(i, &messages[i])))?,
                        Err(e) => conn.send_line(e)?,
                    },
                    None => {
                        conn.send_line("+OK listing follows")?;
                        for (i, m) in live(&messages, &deleted) {
                            conn.send_line(show(i, m))?;
                        }
                        conn.send_line(".")?;
                    }
                }
            }
            "RETR" | "TOP" => {
                let i = match words.next().map(number) {
                    Some(Ok(i)) => i,
                    Some(Err(e)) => {
                        conn.send_line(e)?;
                        continue;
                    }
                    None => {
                        conn.send_line(format!("-ERR usage: {verb} message-number"))?;
                        continue;
                    }
                };
                // TOP n k: the headers, the blank line, and k lines of body.
                let body_lines = if verb == "TOP" {
                    match words.next().map(|k| k.parse::<usize>()) {
                        Some(Ok(k)) => Some(k),
                        _ => {
                            conn.send_line("-ERR usage: TOP message-number lines")?;
                            continue;
                        }
                    }
                } else {
                    None
                };
                let text = match fs::read(&messages[i].path) {
                    Ok(text) => text,
                    Err(_) => {
                        conn.send_line("-ERR that message is gone")?;
                        continue;
                    }
                };
                if verb == "RETR" {
                    conn.send_line(format!("+OK {} octets", messages[i].size))?;
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
                message::send_stuffed(conn, lines)?;
            }
            "DELE" => match words.next().map(number) {
                Some(Ok(i)) => {
                    deleted[i] = true;
                    conn.send_line(format!("+OK message {} deleted", i + 1))?;
                }
                Some(Err(e)) => conn.send_line(e)?,
                None => conn.send_line("-ERR usage: DELE message-number")?,
            },
            "RSET" => {
                deleted.fill(false);
                conn.send_line(format!("+OK {} messages", messages.len()))?;
            }
            "QUIT" => {
                // UPDATE: now, and only now, the deletions happen.
                let mut failed = 0;
                for (m, _) in messages.iter().zip(&deleted).filter(|(_, d)| **d) {
                    if let Err(e) = fs::remove_file(&m.path) {
                        if e.kind() != io::ErrorKind::NotFound {
                            failed += 1;
                        }
                    }
                }
                let left = deleted.iter().filter(|d| !**d).count();
                if failed > 0 {
                    conn.send_line(format!("-ERR {failed} deleted messages were not removed"))?;
                } else {
                    conn.send_line(format!("+OK bye ({left} messages left)"))?;
                }
                return conn.flush();
            }
            "USER" | "PASS" => conn.send_line("-ERR already logged in")?,
            _ => conn.send_line("-ERR unknown command")?,
        }
    }
    // The client left without QUIT: nothing is deleted (RFC 1939 §6).
    Ok(())
}

/// The messages not marked deleted, with their index.
fn live<'a>(
    messages: &'a [Stored],
    deleted: &'a [bool],
) -> impl Iterator<Item = (usize, &'a Stored)> {
    messages.iter().enumerate().filter(|(i, _)| !deleted[*i])
}
