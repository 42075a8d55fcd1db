//! The mail tests' one client: [`MailWire`] speaks SMTP and POP3 over a raw
//! socket so a test sees every reply exactly, and [`Relay`] starts the mail
//! relay on free ports with a fresh spool and users file.
//!
//! Both protocols end their lines with `\r\n`. An SMTP reply may span lines
//! (`250-…` goes on, `250 …` ends it); a POP3 reply is one line, and a
//! multi-line POP3 answer (`LIST`, `RETR`) ends with a line holding `.`:
//! [`read_crlf_line`] and [`read_smtp_reply`] read them.

use super::{Server, connect, temp_dir};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

/// The mail relay example every mail test starts.
pub const MAIL_RELAY: &str = "04_mail_relay";

/// The users of most mail tests: `name:password`.
pub const USERS: &str = "alice:alice-pw\nbob:bob-pw\ncarol:carol-pw\n";

/// The idle timeouts off and a line clock of one second: a client that
/// trickles a line is dropped by the line clock alone.
pub const LINE_CLOCK_ONLY: [&str; 6] = [
    "--idle-timeout",
    "0",
    "--pop3-idle-timeout",
    "0",
    "--line-timeout",
    "1",
];

/// A relay under test with its spool folder.
pub struct Relay {
    pub server: Server,
    pub spool: PathBuf,
}

impl Relay {
    /// A fresh folder `name` with a spool and [`USERS`], and a relay on free
    /// ports using them plus `extra` flags.
    pub fn start(name: &str, extra: &[&str]) -> Relay {
        Relay::start_in(&temp_dir(name), USERS, extra)
    }

    /// A relay with its spool and a users file holding `users` in `dir`
    /// (kept across restarts: start it again on the same `dir`).
    pub fn start_in(dir: &Path, users: &str, extra: &[&str]) -> Relay {
        Relay::start_on("127.0.0.1:0", dir, users, extra)
    }

    /// A second relay, the final destination of `remote.test` with carol's
    /// mailbox alone, in a fresh folder `name`, its SMTP listener on
    /// `smtp_addr` (a fixed port to start it again on, or port 0).
    pub fn remote(name: &str, smtp_addr: &str, extra: &[&str]) -> Relay {
        let mut args = vec!["--domain", "remote.test"];
        args.extend_from_slice(extra);
        Relay::start_on(smtp_addr, &temp_dir(name), "carol:carol-pw\n", &args)
    }

    /// [`Relay::start_in`] with the SMTP listener on `smtp_addr`.
    fn start_on(smtp_addr: &str, dir: &Path, users: &str, extra: &[&str]) -> Relay {
        let spool = dir.join("spool");
        let users_file = dir.join("users");
        fs::write(&users_file, users).unwrap();
        let mut args = vec![
            "--spool",
            spool.to_str().unwrap(),
            "--users",
            users_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let server = Server::start_with(
            MAIL_RELAY,
            &["--smtp-addr", smtp_addr, "--pop3-addr", "127.0.0.1:0"],
            &args,
            2,
        );
        Relay { server, spool }
    }

    /// The SMTP listener's address.
    pub fn smtp(&self) -> SocketAddr {
        self.server.addr_of("smtp")
    }

    /// The POP3 listener's address.
    pub fn pop3(&self) -> SocketAddr {
        self.server.addr_of("pop3")
    }
}

/// Starts the relay on free SMTP and POP3 ports with `args`.
pub fn start_relay(args: &[&str]) -> Server {
    Server::start_with(MAIL_RELAY, &FREE_PORTS, args, 2)
}

/// The listener flags of a relay on free ports.
const FREE_PORTS: [&str; 4] = ["--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0"];

/// A raw SMTP or POP3 conversation over a socket, for exact replies.
pub struct MailWire {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl MailWire {
    /// Connects, reading nothing yet.
    pub fn open(addr: SocketAddr) -> MailWire {
        let stream = connect(addr);
        MailWire {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Connects and checks the (possibly two-line) SMTP `220` greeting.
    pub fn smtp(addr: SocketAddr) -> MailWire {
        let mut wire = MailWire::open(addr);
        let greeting = wire.reply();
        assert!(greeting.starts_with("220"), "greeting: {greeting:?}");
        wire
    }

    /// Connects, checks the SMTP greeting and says `EHLO name`, expecting `250`.
    #[track_caller]
    pub fn ehlo(addr: SocketAddr, name: &str) -> MailWire {
        let mut wire = MailWire::smtp(addr);
        wire.cmd_expect(&format!("EHLO {name}"), "250");
        wire
    }

    /// Connects, checks the POP3 greeting and logs in.
    pub fn pop3(addr: SocketAddr, user: &str, password: &str) -> MailWire {
        let mut wire = MailWire::open(addr);
        assert!(wire.line().starts_with("+OK"));
        assert!(wire.cmd_line(&format!("USER {user}")).starts_with("+OK"));
        let reply = wire.cmd_line(&format!("PASS {password}"));
        assert!(reply.starts_with("+OK"), "login as {user}: {reply}");
        wire
    }

    /// Sends `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Sends `line` and its `\r\n`.
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\r\n").as_bytes());
    }

    /// One line, without its `\r\n` (which must be there).
    pub fn line(&mut self) -> String {
        read_crlf_line(&mut self.reader)
    }

    /// A whole SMTP reply, continuation lines joined by `\n`.
    pub fn reply(&mut self) -> String {
        read_smtp_reply(&mut self.reader)
    }

    /// Sends an SMTP command, returns the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send_line(line);
        self.reply()
    }

    /// Sends an SMTP command and asserts its reply starts with `code`.
    #[track_caller]
    pub fn cmd_expect(&mut self, line: &str, code: &str) {
        let reply = self.cmd(line);
        assert!(
            reply.starts_with(code),
            "{line:?}: expected {code}, got {reply:?}"
        );
    }

    /// Sends a POP3 command, returns the first reply line.
    pub fn cmd_line(&mut self, line: &str) -> String {
        self.send_line(line);
        self.line()
    }

    /// Sends a POP3 command and asserts it was answered `+OK`.
    #[track_caller]
    pub fn cmd_ok(&mut self, line: &str) -> String {
        let reply = self.cmd_line(line);
        assert!(reply.starts_with("+OK"), "{line:?}: got {reply:?}");
        reply
    }

    /// The lines of a POP3 multi-line reply up to the `.`, still stuffed.
    pub fn multiline(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            if line == "." {
                return lines;
            }
            lines.push(line);
        }
    }
}

/// Asserts an SMTP reply starts with `code`.
#[track_caller]
pub fn expect(reply: &str, code: &str) {
    assert!(reply.starts_with(code), "expected {code}, got {reply:?}");
}

/// One whole SMTP transaction: MAIL, the RCPTs, DATA, then `data` as it is
/// (already CRLF and dot-stuffed) and the final dot. Returns the reply to
/// the dot.
pub fn transaction(wire: &mut MailWire, from: &str, to: &[&str], data: &[u8]) -> String {
    expect(&wire.cmd(&format!("MAIL FROM:<{from}>")), "250");
    for rcpt in to {
        expect(&wire.cmd(&format!("RCPT TO:<{rcpt}>")), "250");
    }
    expect(&wire.cmd("DATA"), "354");
    wire.send(data);
    wire.cmd(".")
}

/// Sends one message over a fresh connection and expects it accepted.
pub fn send_message(addr: SocketAddr, from: &str, to: &[&str], data: &str) {
    let mut wire = MailWire::ehlo(addr, "test.client");
    expect(&transaction(&mut wire, from, to, data.as_bytes()), "250");
    expect(&wire.cmd("QUIT"), "221");
}

/// [`transaction`] from alice to bob, both of `example.test`.
pub fn alice_to_bob(wire: &mut MailWire, data: &[u8]) -> String {
    transaction(wire, "alice@example.test", &["bob@example.test"], data)
}

/// [`send_message`] from alice to bob, both of `example.test`.
pub fn mail_bob(addr: SocketAddr, data: &str) {
    from_alice(addr, "bob@example.test", data);
}

/// [`send_message`] from `alice@example.test` to one recipient, `to`.
pub fn from_alice(addr: SocketAddr, to: &str, data: &str) {
    send_message(addr, "alice@example.test", &[to], data);
}

/// Runs a Python script (the interop tests' `smtplib` and `poplib`): the
/// one runner every test file shares.
#[allow(unused_imports, reason = "not every test file runs Python")]
pub use super::process::python;

/// One line of a CRLF protocol (SMTP, POP3) without its `\r\n`; panics if
/// the line does not end in `\r\n` (a bare `\n`, or the server closing).
pub fn read_crlf_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.ends_with("\r\n"), "expected a CRLF line, got {line:?}");
    line.truncate(line.len() - 2);
    line
}

/// A whole SMTP reply, its lines joined by `\n`. A reply goes on while its
/// lines read `250-…` (a `-` after the code) and ends with `250 …`.
pub fn read_smtp_reply(reader: &mut impl BufRead) -> String {
    let mut all = String::new();
    loop {
        let line = read_crlf_line(reader);
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
        all.push('\n');
    }
}
