//! The SMTP side: receiving mail (RFC 5321), one session per connection.
//!
//! An SMTP conversation is a series of command lines, each answered by a
//! reply line that starts with a three-digit code. The first digit is what
//! a client acts on: `2` done, `3` go on (send the message), `4` try again
//! later, `5` give up. Here is a whole session, `C:` the client, `S:` us:
//!
//! ```text
//! S: 220 example.test ESMTP netlessons 04_mail_relay
//! C: EHLO laptop
//! S: 250-example.test greets laptop
//! S: 250-SIZE 10485760
//! S: 250-8BITMIME
//! S: 250 ENHANCEDSTATUSCODES
//! C: MAIL FROM:<alice@example.test>
//! S: 250 2.1.0 OK
//! C: RCPT TO:<bob@example.test>
//! S: 250 2.1.5 OK
//! C: DATA
//! S: 354 End data with <CR><LF>.<CR><LF>
//! C: Subject: hi
//! C:
//! C: hello
//! C: .
//! S: 250 2.0.0 OK: queued as 1718000000.M000001P2Q3.host
//! C: QUIT
//! S: 221 2.0.0 Bye
//! ```
//!
//! `MAIL`, `RCPT` and `DATA` must come in that order (a *transaction*); out
//! of order gets `503`. The `x.y.z` after the code is an *enhanced status
//! code* (RFC 3463), a finer reason meant for programs.
//!
//! Three spam filters (chapter 11) make their decisions at three points of
//! the session, each marked `Spam filter` below:
//!
//! 1. before the banner, the greeting wait (`greet.rs`): in [`serve`];
//! 2. at `RCPT`, greylisting (`greylist.rs`): in `Session::rcpt`;
//! 3. after `DATA`, content scoring (`score.rs`): in `Session::deliver`,
//!    in `deliver.rs`, this module's second half.
//!
//! The first two apply only to clients outside `--relay-allow`: our own
//! users, sending from inside, are neither bots nor strangers.

// The session's second half, after the final `.`, has a file of its own.
#[path = "deliver.rs"]
mod deliver;

use crate::Mailboxes;
use crate::address::{self, Address, Param};
use crate::data::{self, Cut, Incoming};
use crate::dedup::Recent;
use crate::greet::{self, Pregreet};
use crate::greylist::{Decision, Greylist};
use crate::queue::Queue;
use crate::score::Scorer;
use crate::spool::Spool;
use netlessons::connection::{Connection, LineEnding};
use netlessons::framing::is_too_long;
use netlessons::subnet::Allowlist;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Longest command line: RFC 5321 §4.5.3.1.4 allows 512 bytes *with* the
/// `\r\n`, so 510 without.
pub const MAX_COMMAND_LINE: usize = 510;
/// At most this many recipients per message (§4.5.3.1.8 says servers must
/// take at least 100; past our limit a client gets `452` and sends the rest
/// in another transaction).
pub const MAX_RECIPIENTS: usize = 100;
/// After this many error replies in one session we hang up, as Postfix does:
/// a client that keeps getting errors is broken or probing.
pub const MAX_ERRORS: u32 = 20;

/// What every SMTP session shares: configuration and the stores.
#[derive(Debug)]
pub struct SmtpService {
    /// Our name, in the greeting and in `Received:` headers.
    pub host: String,
    /// The domains we deliver locally, lower case.
    pub domains: Vec<String>,
    /// Which local mailboxes exist.
    pub mailboxes: Arc<Mailboxes>,
    /// Who may send mail to other domains through us.
    pub relay_allow: Allowlist,
    /// Where mail for other domains goes, if anywhere.
    pub queue: Option<Arc<Queue>>,
    /// Where local mail goes.
    pub spool: Arc<Spool>,
    /// Largest message we take, in bytes (`--max-size`).
    pub max_size: u64,
    /// The session's idle timeout (`--idle-timeout`).
    pub idle_timeout: Option<Duration>,
    /// The line timeout, also the start of a message's body clock.
    pub line_timeout: Option<Duration>,
    /// Messages stored lately, to drop a retried copy (`None`: off).
    pub recent: Option<Recent>,
    /// How long `recent` remembers (`--dedup-window`).
    pub dedup_window: Duration,
    /// The spam filters (chapter 11).
    pub filters: SpamFilters,
}

/// The three spam filters, in the order a session meets them.
#[derive(Debug)]
pub struct SpamFilters {
    /// The greeting wait for outside clients (`--greet-wait`); `None`: off.
    pub greet_wait: Option<Duration>,
    /// The greylist for outside clients (`--greylist`); `None`: off.
    pub greylist: Option<Greylist>,
    /// The content rules and threshold every message is scored with.
    pub scorer: Scorer,
}

/// One mail transaction: from `MAIL` to the end of `DATA` (or `RSET`).
#[derive(Debug, Default)]
struct Transaction {
    /// The reverse path (where problems are reported); empty for `<>`.
    from: String,
    /// Local mailboxes to deliver to.
    local: Vec<String>,
    /// Addresses in other domains, to relay.
    remote: Vec<String>,
    /// Did the client try any `RCPT`, even a refused one?
    tried_rcpt: bool,
}

impl Transaction {
    fn recipients(&self) -> usize {
        self.local.len() + self.remote.len()
    }
}

/// The session's state between commands.
struct Session<'a> {
    service: &'a SmtpService,
    conn: Connection,
    /// The name the client gave in `HELO`/`EHLO`, once it has.
    helo: Option<String>,
    /// `EHLO` (extended SMTP) rather than `HELO`.
    esmtp: bool,
    transaction: Option<Transaction>,
    errors: u32,
    /// The client is outside `--relay-allow`: the first two spam filters
    /// apply to it.
    outside: bool,
}

/// Talks SMTP with one client until it says `QUIT` or goes away.
pub fn serve(conn: Connection, service: &SmtpService) -> io::Result<()> {
    // (An IPv4-mapped IPv6 peer is matched as IPv4, as everywhere.)
    let outside = !service.relay_allow.contains(conn.peer_addr().ip());
    let mut session = Session {
        service,
        conn,
        helo: None,
        esmtp: false,
        transaction: None,
        errors: 0,
        outside,
    };
    // SMTP lines end in "\r\n" on the wire, in both directions.
    session.conn.set_line_ending(LineEnding::CrLf);
    // ---- Spam filter 1, before the banner: the greeting wait. An outside
    // client hears the first line of a two-line greeting, then silence; if
    // it talks before the last line it is a bot in a hurry (greet.rs).
    if !session.greet()? {
        return Ok(());
    }
    loop {
        let line = match session.conn.read_line(MAX_COMMAND_LINE) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()), // the client hung up without QUIT: fine
            Err(e) if is_too_long(&e) => {
                // Throw away the rest of the line, say so, and carry on.
                if !session.conn.skip_line()? {
                    return Ok(());
                }
                session.error("500 5.5.2 line too long")?;
                continue;
            }
            Err(e) => return Err(session.fail(e)),
        };
        // Commands are ASCII; anything else will not match a command word.
        let line = String::from_utf8_lossy(&line).into_owned();
        let (verb, args) = match line.split_once(' ') {
            Some((verb, args)) => (verb.to_ascii_uppercase(), args.trim()),
            None => (line.trim().to_ascii_uppercase(), ""),
        };
        match verb.as_str() {
            "EHLO" | "HELO" => session.hello(&verb, args)?,
            "MAIL" => session.mail(args)?,
            "RCPT" => session.rcpt(args)?,
            "DATA" => session.data(args)?,
            "RSET" => {
                session.transaction = None;
                session.reply("250 2.0.0 OK")?;
            }
            "NOOP" => session.reply("250 2.0.0 OK")?,
            // VRFY would tell a spammer which addresses exist, so real
            // servers answer "I won't say, but send it and I'll try".
            "VRFY" if args.is_empty() => session.error("501 5.5.4 Syntax: VRFY address")?,
            "VRFY" => session.reply("252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery")?,
            "HELP" => session.reply(
                "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT (see RFC 5321)",
            )?,
            "QUIT" => {
                session.reply("221 2.0.0 Bye")?;
                return session.conn.flush();
            }
            // Commands from RFC 5321 and its extensions that we know but do
            // not offer: 502 means "recognised, not implemented" (so the
            // client knows not to retry), unlike 500 "what?".
            "EXPN" | "TURN" | "ETRN" | "SEND" | "SOML" | "SAML" | "BDAT" | "AUTH" | "STARTTLS" => {
                session.error(&format!("502 5.5.1 {verb} not implemented"))?
            }
            _ => session.error("500 5.5.2 command not recognized")?,
        }
        if session.errors >= MAX_ERRORS {
            session.reply("421 4.7.0 too many errors, closing connection")?;
            return session.conn.flush();
        }
    }
}

impl Session<'_> {
    /// Queues one reply line (sent at the next read, or by `flush`).
    ///
    /// Some replies quote the client (`553 5.1.7 <its address>: …`), and a
    /// client may have put control characters there: a lone `\r` is not a
    /// line ending to us, but it is one to many clients, and `send_line`
    /// refuses to send it (it would split the reply in two). So every
    /// control character becomes `?`, and the client still gets its answer.
    fn reply(&mut self, text: &str) -> io::Result<()> {
        if text.contains(char::is_control) {
            let one_line: String = text
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            return self.conn.send_line(one_line);
        }
        self.conn.send_line(text)
    }

    /// Sends an error reply and counts it.
    fn error(&mut self, text: &str) -> io::Result<()> {
        self.errors += 1;
        self.reply(text)
    }

    /// `552`: the message is (or is declared) over `--max-size`.
    fn too_big(&mut self) -> io::Result<()> {
        let max = self.service.max_size;
        self.error(&format!(
            "552 5.3.4 message size exceeds fixed maximum message size ({max} bytes)"
        ))
    }

    /// A read failed. If it was the idle timeout, tell the client with a
    /// `421` before we hang up (RFC 5321 §4.5.3.2 allows closing after 5
    /// minutes of silence; `421` means "closing, try later").
    fn fail(&mut self, e: io::Error) -> io::Error {
        if e.kind() == io::ErrorKind::TimedOut {
            let text = format!(
                "421 4.4.2 {} timeout exceeded, closing connection",
                self.service.host
            );
            let _ = self.reply(&text).and_then(|()| self.conn.flush());
        }
        e
    }

    /// `EHLO name` / `HELO name`: who are you? `EHLO` gets the list of
    /// extensions we support, one per line: every line but the last has a
    /// `-` after the code, the last a space. That is how any multi-line
    /// reply shows where it ends.
    fn hello(&mut self, verb: &str, args: &str) -> io::Result<()> {
        let Some(name) = args.split_whitespace().next() else {
            return self.error(&format!("501 5.5.4 Syntax: {verb} hostname"));
        };
        // A new greeting starts over, like RSET.
        self.transaction = None;
        self.helo = Some(name.to_string());
        self.esmtp = verb == "EHLO";
        let host = &self.service.host;
        if !self.esmtp {
            return self.reply(&format!("250 {host}"));
        }
        let max = self.service.max_size;
        self.reply(&format!("250-{host} greets {name}"))?;
        // SIZE: how big a message may be, so a client can give up early.
        self.reply(&format!("250-SIZE {max}"))?;
        // 8BITMIME: message bytes may have the high bit set (UTF-8 text).
        self.reply("250-8BITMIME")?;
        self.reply("250 ENHANCEDSTATUSCODES")
    }

    /// `MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]`: a new message.
    fn mail(&mut self, args: &str) -> io::Result<()> {
        if self.helo.is_none() {
            return self.error("503 5.5.1 Error: send HELO/EHLO first");
        }
        if self.transaction.is_some() {
            return self.error("503 5.5.1 Error: nested MAIL command");
        }
        let (path, params) = match address::split_path(args, "FROM:") {
            Ok(parsed) => parsed,
            Err(why) => {
                return self.error(&format!("501 5.5.4 Syntax: MAIL FROM:<address> ({why})"));
            }
        };
        // The empty path <> is legal: it is how bounces say "do not reply".
        let from = if path.is_empty() {
            String::new()
        } else {
            match address::parse_address(path) {
                Ok(addr) => addr.text(),
                Err(why) => {
                    return self.error(&format!("553 5.1.7 <{path}>: bad sender address: {why}"));
                }
            }
        };
        for Param { key, value } in params {
            match (key.as_str(), value.as_deref()) {
                ("SIZE", Some(size)) => match size.parse::<u64>() {
                    // Refusing a declared size now saves sending it all.
                    Ok(size) if size > self.service.max_size => return self.too_big(),
                    Ok(_) => {}
                    Err(_) => return self.error("501 5.5.4 SIZE must be a number of bytes"),
                },
                ("BODY", Some(body))
                    if body.eq_ignore_ascii_case("7BIT")
                        || body.eq_ignore_ascii_case("8BITMIME") => {}
                _ => return self.error(&format!("555 5.5.4 unsupported MAIL parameter {key}")),
            }
        }
        self.transaction = Some(Transaction {
            from,
            ..Transaction::default()
        });
        self.reply("250 2.1.0 OK")
    }

    /// `RCPT TO:<address>`: one recipient. This is where we decide whose
    /// mail we take: local users, or (for trusted clients only) other domains.
    fn rcpt(&mut self, args: &str) -> io::Result<()> {
        let Some(transaction) = self.transaction.as_mut() else {
            return self.error("503 5.5.1 Error: need MAIL command");
        };
        transaction.tried_rcpt = true;
        let count = transaction.recipients();
        let (path, params) = match address::split_path(args, "TO:") {
            Ok(parsed) => parsed,
            Err(why) => return self.error(&format!("501 5.5.4 Syntax: RCPT TO:<address> ({why})")),
        };
        if let Some(param) = params.first() {
            return self.error(&format!(
                "555 5.5.4 unsupported RCPT parameter {}",
                param.key
            ));
        }
        if count >= MAX_RECIPIENTS {
            // Not an error of the client's: `reply`, not `error`, so it does
            // not count towards MAX_ERRORS. smtplib sends every recipient
            // before DATA and takes each 452 as "this one later"; counting
            // them would cut a session of 121 recipients before DATA and
            // deliver nothing.
            return self.reply(&format!(
                "452 4.5.3 Error: too many recipients (at most {MAX_RECIPIENTS})"
            ));
        }
        let addr = match address::parse_address(path) {
            Ok(addr) => addr,
            Err(why) => {
                return self.error(&format!("553 5.1.3 <{path}>: bad recipient address: {why}"));
            }
        };
        let route = match self.route(&addr) {
            Ok(route) => route,
            Err(reply) => return self.error(&reply),
        };
        // ---- Spam filter 2, at RCPT: greylisting. Only a recipient we
        // would take is greylisted (a refusal above says more), and only
        // for an outside client; a retry after the delay passes (greylist.rs).
        if self.greylisted(&addr)? {
            return Ok(());
        }
        match route {
            Route::Local(mailbox) => {
                let transaction = self.transaction.as_mut().expect("checked above");
                if !transaction.local.contains(&mailbox) {
                    transaction.local.push(mailbox);
                }
            }
            Route::Remote => {
                let transaction = self.transaction.as_mut().expect("checked above");
                let text = addr.text();
                if !transaction.remote.contains(&text) {
                    transaction.remote.push(text);
                }
            }
        }
        self.reply("250 2.1.5 OK")
    }

    /// Sends the greeting: at once to an inside client; to an outside one
    /// in two lines with the greeting wait between them (`greet.rs`).
    /// Returns false when the session is over (the client talked early and
    /// was refused, or hung up).
    fn greet(&mut self) -> io::Result<bool> {
        let banner = format!("{} ESMTP netlessons 04_mail_relay", self.service.host);
        let wait = match (self.outside, self.service.filters.greet_wait) {
            (true, Some(wait)) => wait,
            _ => {
                self.reply(&format!("220 {banner}"))?;
                return Ok(true);
            }
        };
        self.reply(&format!("220-{banner}"))?;
        self.conn.flush()?;
        let peer = self.conn.peer_addr();
        match greet::listen(&mut self.conn, wait)? {
            Pregreet::Quiet => {
                netlessons::log!(
                    "{peer} greet: waited for the greeting ({} ms): passed",
                    wait.as_millis()
                );
                self.reply(&format!("220 {banner}"))?;
                Ok(true)
            }
            Pregreet::TalkedEarly(bytes) => {
                netlessons::log!(
                    "{peer} greet: talked before the greeting (sent \"{}\"): refused with 521",
                    netlessons::trace::escape(&bytes[..bytes.len().min(40)])
                );
                self.reply("521 5.5.1 protocol error: talked before the greeting")?;
                greet::close_after_refusal(&mut self.conn);
                Ok(false)
            }
            Pregreet::HungUp => {
                netlessons::log!("{peer} greet: hung up during the greeting wait");
                Ok(false)
            }
        }
    }

    /// Asks the greylist about `rcpt` from an outside client (`greylist.rs`).
    /// Returns true after answering `451`: the recipient is refused for now.
    fn greylisted(&mut self, rcpt: &Address) -> io::Result<bool> {
        let Some(greylist) = self
            .service
            .filters
            .greylist
            .as_ref()
            .filter(|_| self.outside)
        else {
            return Ok(false);
        };
        let from = self.transaction.as_ref().map_or("", |t| t.from.as_str());
        let peer = self.conn.peer_addr();
        let text = rcpt.text();
        let key = crate::greylist::triplet(peer.ip(), from, &text);
        let decision = match greylist.check(peer.ip(), from, &text) {
            Ok(decision) => decision,
            Err(e) => {
                // Without a record of the sighting we cannot keep the
                // promise a 451 makes ("try again and it will pass").
                netlessons::log!("{peer} greylist: could not record {key}: {e}");
                self.reply("451 4.3.0 Error: greylist unavailable; try again later")?;
                return Ok(true);
            }
        };
        let (kind, wait) = match decision {
            Decision::New { wait } => ("new", wait),
            Decision::Early { wait } => ("early retry", wait),
            Decision::Passed { after } => {
                let ms = after.as_millis();
                netlessons::log!("{peer} greylist: {key}: passed, retried after {ms} ms");
                return Ok(false);
            }
            Decision::Known => {
                netlessons::log!("{peer} greylist: {key}: known, passes");
                return Ok(false);
            }
        };
        netlessons::log!(
            "{peer} greylist: {key}: {kind}, 451 for {} ms",
            wait.as_millis()
        );
        // Whole seconds, rounded up: "try again in 0 seconds" would invite
        // a retry that is still too early. And a reply, not an error: an
        // honest sender gets this once per recipient, and it must not end
        // the session (MAX_ERRORS).
        let secs = wait.as_millis().div_ceil(1000);
        self.reply(&format!(
            "451 4.7.1 <{text}>: greylisted, try again in {secs} seconds"
        ))?;
        Ok(true)
    }

    /// Where mail for `addr` goes, or the reply that refuses it.
    fn route(&self, addr: &Address) -> Result<Route, String> {
        let service = self.service;
        let text = addr.text();
        if addr.domain.is_empty() || service.domains.contains(&addr.domain) {
            let Some(mailbox) = address::mailbox_name(&addr.local) else {
                return Err(format!(
                    "553 5.1.3 <{text}>: mailbox name not allowed (use a-z, 0-9, '.', '_' and '-')"
                ));
            };
            if !service.mailboxes.exists(&mailbox) {
                return Err(format!(
                    "550 5.1.1 <{text}>: Recipient address rejected: User unknown"
                ));
            }
            return Ok(Route::Local(mailbox));
        }
        // Another domain. An *open relay* would take this from anyone, and
        // spammers would use it to send mail in our name. We take it only
        // from clients we trust (by their address, which they cannot fake
        // on an established TCP connection).
        if !service.relay_allow.contains(self.conn.peer_addr().ip()) {
            return Err(format!("554 5.7.1 <{text}>: Relay access denied"));
        }
        if service.queue.is_none() {
            return Err(format!("550 5.1.2 <{text}>: no route to that domain"));
        }
        Ok(Route::Remote)
    }

    /// `DATA`: the message itself, up to a line holding a single `.`.
    fn data(&mut self, args: &str) -> io::Result<()> {
        let Some(transaction) = &self.transaction else {
            return self.error("503 5.5.1 Error: need MAIL command");
        };
        if transaction.recipients() == 0 {
            return if transaction.tried_rcpt {
                self.error("554 5.5.1 Error: no valid recipients")
            } else {
                self.error("503 5.5.1 Error: need RCPT command")
            };
        }
        if !args.is_empty() {
            return self.error("501 5.5.4 Syntax: DATA (no arguments)");
        }
        // The text goes to a file as it arrives, never whole into memory
        // (see `Draft`). The file is made before the 354: if even that
        // fails (a full disk), the client hears so before sending it all.
        let mut draft = match self.service.spool.new_draft() {
            Ok(draft) => draft,
            Err(e) => return self.could_not_store(&e),
        };
        if self.service.recent.is_some() {
            draft.hash_text(); // for exercise 5's duplicate check
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>")?;
        let limits = data::Limits {
            max_size: self.service.max_size,
            idle_timeout: self.service.idle_timeout,
            line_timeout: self.service.line_timeout,
        };
        let incoming = match data::receive(&mut self.conn, &mut draft, limits) {
            Ok(incoming) => incoming,
            Err(Cut::TooSlow(why)) => {
                netlessons::log!("{} {why}", self.conn.peer_addr());
                let text = format!(
                    "421 4.4.2 {} message arrived too slowly, closing connection",
                    self.service.host
                );
                let _ = self.reply(&text).and_then(|()| self.conn.flush());
                return Err(io::Error::new(io::ErrorKind::TimedOut, why));
            }
            Err(Cut::Failed(e)) => return Err(self.fail(e)),
        };
        // Whatever happens next, this transaction is over.
        let transaction = self.transaction.take().expect("checked above");
        match incoming {
            Incoming::Complete => {}
            Incoming::LineTooLong => return self.error("500 5.5.2 line too long"),
            Incoming::TooBig => return self.too_big(),
            Incoming::BareCrOrNul => {
                return self.error("550 5.6.0 message contains a bare CR or NUL");
            }
        }
        if let Err(e) = draft.finish() {
            return self.could_not_store(&e);
        }
        self.deliver(&transaction, &mut draft)
    }
}

/// Where a recipient's mail goes.
enum Route {
    /// Into this local mailbox.
    Local(String),
    /// Into the relay queue.
    Remote,
}
