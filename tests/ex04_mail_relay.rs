//! Example 04, the mail relay and its client: the SMTP and POP3 contract,
//! interop with real mail clients (Python's `smtplib` and `poplib`, `curl`),
//! durable delivery and relaying, and the chapter's exercises.
//!
//! Check your own relay with:
//! `NETLESSONS_04_MAIL_RELAY="python3 my_relay.py" cargo test --test ex04_mail_relay`
//! (it must take `--smtp-addr`, `--pop3-addr`, `--spool`, `--users`, `--domain`,
//! `--relay-allow`, `--next-hop` and `--max-size`, and print both `listening on` lines).

mod common;

use assert_cmd::Command as AssertCommand;
use common::{Server, connect, have, override_command, reference_only, temp_dir};
use predicates::prelude::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const RELAY: &str = "04_mail_relay";
const CLIENT: &str = "04_mail_client";

/// The users of most tests: `name:password`.
const USERS: &str = "alice:alice-pw\nbob:bob-pw\ncarol:carol-pw\n";

/// How long to wait for mail to arrive somewhere.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A relay under test with its spool folder.
struct Relay {
    server: Server,
    spool: PathBuf,
}

impl Relay {
    fn smtp(&self) -> SocketAddr {
        self.server.addr_of("smtp")
    }
    fn pop3(&self) -> SocketAddr {
        self.server.addr_of("pop3")
    }
}

/// Starts a relay on free ports with `args`.
fn start(args: &[&str]) -> Server {
    Server::start_with(
        RELAY,
        &["--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0"],
        args,
        2,
    )
}

/// A fresh spool and users file under `name`, and a relay using them
/// (domain `example.test`) plus `extra` flags.
fn relay(name: &str, extra: &[&str]) -> Relay {
    let dir = temp_dir(name);
    let spool = dir.join("spool");
    let users = dir.join("users");
    fs::write(&users, USERS).unwrap();
    let mut args = vec![
        "--spool",
        spool.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Relay {
        server: start(&args),
        spool,
    }
}

/// Faster retries, when the reference relay runs (a hidden knob a learner's
/// program need not have).
fn fast_retries() -> Vec<&'static str> {
    if override_command(RELAY).is_none() {
        vec![
            "--retry-base-ms",
            "100",
            "--retry-max-ms",
            "1000",
            "--auth-delay-ms",
            "10",
        ]
    } else {
        Vec::new()
    }
}

/// A raw SMTP (or POP3) conversation over a socket, for exact replies.
struct Wire {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Wire {
    fn open(addr: SocketAddr) -> Wire {
        let stream = connect(addr);
        Wire {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// Connects and checks the SMTP greeting.
    fn smtp(addr: SocketAddr) -> Wire {
        let mut wire = Wire::open(addr);
        let greeting = wire.reply();
        assert!(greeting.starts_with("220"), "greeting: {greeting:?}");
        wire
    }

    /// Connects, checks the POP3 greeting and logs in.
    fn pop3(addr: SocketAddr, user: &str, password: &str) -> Wire {
        let mut wire = Wire::open(addr);
        assert!(wire.line().starts_with("+OK"));
        assert!(wire.cmd_line(&format!("USER {user}")).starts_with("+OK"));
        let reply = wire.cmd_line(&format!("PASS {password}"));
        assert!(reply.starts_with("+OK"), "login as {user}: {reply}");
        wire
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// One line, without its `\r\n` (which must be there).
    fn line(&mut self) -> String {
        common::read_crlf_line(&mut self.reader)
    }

    /// A whole SMTP reply, continuation lines joined by `\n`.
    fn reply(&mut self) -> String {
        common::read_smtp_reply(&mut self.reader)
    }

    /// Sends an SMTP command, returns the reply.
    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// Sends a POP3 command, returns the first reply line.
    fn cmd_line(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// The lines of a POP3 multi-line reply up to the `.`, still stuffed.
    fn multiline(&mut self) -> Vec<String> {
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
fn expect(reply: &str, code: &str) {
    assert!(reply.starts_with(code), "expected {code}, got {reply:?}");
}

/// One whole SMTP transaction; `data` is sent as is (already CRLF and
/// dot-stuffed), then `.`. Returns the reply to the final dot.
fn transaction(wire: &mut Wire, from: &str, to: &[&str], data: &[u8]) -> String {
    expect(&wire.cmd(&format!("MAIL FROM:<{from}>")), "250");
    for rcpt in to {
        expect(&wire.cmd(&format!("RCPT TO:<{rcpt}>")), "250");
    }
    expect(&wire.cmd("DATA"), "354");
    wire.send(data);
    wire.send(b".\r\n");
    wire.reply()
}

/// Sends one message over a fresh connection and expects it accepted.
fn send_message(addr: SocketAddr, from: &str, to: &[&str], data: &str) {
    let mut wire = Wire::smtp(addr);
    expect(&wire.cmd("EHLO test.client"), "250");
    expect(&transaction(&mut wire, from, to, data.as_bytes()), "250");
    expect(&wire.cmd("QUIT"), "221");
}

/// The messages in a Maildir (`new/` and `cur/`), oldest first.
fn maildir(spool: &Path, user: &str) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .filter_map(|sub| fs::read_dir(spool.join(user).join(sub)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().map(|p| fs::read(p).unwrap()).collect()
}

/// Every file anywhere under `dir`.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(all_files(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Polls `check` until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a Python script with arguments; returns stdout, failing on a non-zero exit.
fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "python failed: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A port that was free a moment ago (bind, read the port, drop).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------
// SMTP: delivery with real clients
// ---------------------------------------------------------------------------

/// Python's smtplib sends to a local user; the Maildir file in `new/` holds
/// the message with `\n` endings, a `Received:` header and the envelope sender.
#[test]
fn smtplib_delivers_into_maildir() {
    if !have("python3", "smtplib_delivers_into_maildir") {
        return;
    }
    let r = relay("smtplib_delivers", &[]);
    let script = r#"
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as s:
    refused = s.sendmail("alice@example.test", ["bob@example.test"], "Subject: hi\r\n\r\nhello from smtplib\r\n")
print("refused", refused)
"#;
    let out = python(script, &[&r.smtp().port().to_string()]);
    assert_eq!(out.trim(), "refused {}");
    let mail = maildir(&r.spool, "bob");
    assert_eq!(mail.len(), 1, "one message in bob's Maildir");
    let message = text(&mail[0]);
    assert!(
        message.contains("Subject: hi\n\nhello from smtplib\n"),
        "{message}"
    );
    assert!(message.contains("Received: from "), "{message}");
    assert!(
        !message.contains('\r'),
        "stored with LF endings: {message:?}"
    );
    assert!(
        fs::read_dir(r.spool.join("bob").join("new"))
            .unwrap()
            .count()
            == 1
    );
}

/// `curl smtp://` (with `--crlf`) delivers a message read from stdin.
#[test]
fn curl_smtp_delivers() {
    if !have("curl", "curl_smtp_delivers") {
        return;
    }
    let r = relay("curl_smtp", &[]);
    let mut curl = Command::new("curl")
        .args([
            "-sS",
            &format!("smtp://{}", r.smtp()),
            "--mail-from",
            "alice@example.test",
        ])
        .args([
            "--mail-rcpt",
            "bob@example.test",
            "--upload-file",
            "-",
            "--crlf",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    curl.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: by curl\n\nhello from curl\n")
        .unwrap();
    let out = curl.wait_with_output().unwrap();
    assert!(out.status.success(), "curl failed: {}", text(&out.stderr));
    let mail = maildir(&r.spool, "bob");
    assert_eq!(mail.len(), 1);
    assert!(text(&mail[0]).contains("Subject: by curl\n\nhello from curl\n"));
}

/// Lines starting with `.` (dot-stuffed on the wire), bare-LF lines, 8-bit
/// UTF-8 and empty lines all arrive intact.
#[test]
fn dots_bare_lf_and_8bit_arrive_intact() {
    let r = relay("dots_bare_lf", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    let data = "Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n.\x20\r\nbare\nlf\nend\r\n\r\nh\u{e9}llo \u{1f600}\r\n";
    expect(
        &transaction(
            &mut wire,
            "alice@example.test",
            &["bob@example.test"],
            data.as_bytes(),
        ),
        "250",
    );
    let mail = text(&maildir(&r.spool, "bob")[0]);
    assert!(
        mail.ends_with(
            "Subject: dots\n\n.leading dot\n..two dots\n \nbare\nlf\nend\n\nh\u{e9}llo \u{1f600}\n"
        ),
        "{mail:?}"
    );
}

/// `EHLO` answers in several lines and offers SIZE (with the limit) and
/// 8BITMIME; commands are case-insensitive; `HELO` works too.
#[test]
fn ehlo_is_multiline_and_commands_are_case_insensitive() {
    let r = relay("ehlo_multiline", &["--max-size", "123456"]);
    let mut wire = Wire::smtp(r.smtp());
    let ehlo = wire.cmd("ehlo test.client");
    let lines: Vec<&str> = ehlo.lines().collect();
    assert!(lines.len() >= 3, "{ehlo}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("250-")),
        "{ehlo}"
    );
    assert!(lines.last().unwrap().starts_with("250 "), "{ehlo}");
    assert!(
        lines
            .iter()
            .any(|l| l[4..].eq_ignore_ascii_case("SIZE 123456")),
        "{ehlo}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l[4..].eq_ignore_ascii_case("8BITMIME")),
        "{ehlo}"
    );
    expect(
        &wire.cmd("mail from:<alice@example.test> size=100 body=8bitmime"),
        "250",
    );
    expect(&wire.cmd("rcpt to:<BOB@Example.Test>"), "250");
    expect(&wire.cmd("rset"), "250");
    expect(&wire.cmd("noop"), "250");
    expect(&wire.cmd("HELO other.client"), "250");
    expect(&wire.cmd("VRFY bob"), "252");
    expect(&wire.cmd("qUiT"), "221");
}

/// Commands out of order get 503: MAIL before HELO, RCPT before MAIL, DATA
/// before MAIL or before any RCPT, a second MAIL.
#[test]
fn commands_out_of_order_get_503() {
    let r = relay("out_of_order", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("MAIL FROM:<alice@example.test>"), "503");
    expect(&wire.cmd("EHLO test.client"), "250");
    expect(&wire.cmd("RCPT TO:<bob@example.test>"), "503");
    expect(&wire.cmd("DATA"), "503");
    expect(&wire.cmd("MAIL FROM:<alice@example.test>"), "250");
    expect(&wire.cmd("MAIL FROM:<alice@example.test>"), "503");
    expect(&wire.cmd("DATA"), "503");
    // After all that, a proper transaction still works.
    expect(&wire.cmd("RCPT TO:<bob@example.test>"), "250");
    expect(&wire.cmd("DATA"), "354");
    wire.send(b"Subject: ok\r\n\r\nfine\r\n.\r\n");
    expect(&wire.reply(), "250");
    assert_eq!(maildir(&r.spool, "bob").len(), 1);
}

/// A declared size over `--max-size` is refused at MAIL (552); an actual
/// message over it is read to its end, refused with 552 and not stored.
#[test]
fn oversize_gets_552_declared_or_actual() {
    let r = relay("oversize", &["--max-size", "1000"]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    expect(&wire.cmd("MAIL FROM:<alice@example.test> SIZE=5000"), "552");
    let big = format!(
        "Subject: big\r\n\r\n{}",
        "0123456789012345678901234567890123456789\r\n".repeat(50)
    );
    let reply = transaction(
        &mut wire,
        "alice@example.test",
        &["bob@example.test"],
        big.as_bytes(),
    );
    expect(&reply, "552");
    // The session is still in step: a small message goes through.
    let reply = transaction(
        &mut wire,
        "alice@example.test",
        &["bob@example.test"],
        b"Subject: small\r\n\r\nok\r\n",
    );
    expect(&reply, "250");
    let mail = maildir(&r.spool, "bob");
    assert_eq!(mail.len(), 1, "only the small message is stored");
    assert!(text(&mail[0]).contains("Subject: small"));
}

/// A command line may be 512 bytes with its CRLF; a longer one gets 500 and
/// the session carries on.
#[test]
fn command_line_limit_is_512_bytes() {
    let r = relay("command_limit", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    let at_limit = format!("NOOP {}", "x".repeat(510 - 5));
    assert_eq!(at_limit.len() + 2, 512);
    expect(&wire.cmd(&at_limit), "250");
    let over = format!("NOOP {}", "x".repeat(2000));
    expect(&wire.cmd(&over), "500");
    expect(&wire.cmd("NOOP"), "250");
}

/// A control character inside an address (a lone `\r` here) still gets a
/// one-line refusal, with nothing of the client's control characters in it,
/// and the session carries on.
#[test]
fn control_characters_in_an_address_get_a_clean_reply() {
    let r = relay("control_chars", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    for command in ["MAIL FROM:<\ra@>", "MAIL FROM:<a\x1b[2J@example.test>"] {
        let reply = wire.cmd(command);
        expect(&reply, "5");
        assert!(
            !reply.contains(|c: char| c.is_control() && c != '\n'),
            "{command:?} got a reply with control characters: {reply:?}"
        );
    }
    expect(&wire.cmd("NOOP"), "250");
}

/// A text line may be 1000 bytes with its CRLF; a longer one makes the
/// message fail with `500 5.5.2 line too long` after the final dot, and
/// nothing is stored.
#[test]
fn text_line_limit_is_1000_bytes() {
    let r = relay("text_limit", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    let ok_line = "y".repeat(998);
    let ok = format!("Subject: at limit\r\n\r\n{ok_line}\r\n");
    expect(
        &transaction(
            &mut wire,
            "alice@example.test",
            &["bob@example.test"],
            ok.as_bytes(),
        ),
        "250",
    );
    let too_long = format!("Subject: over\r\n\r\n{}\r\nafter\r\n", "z".repeat(999));
    let reply = transaction(
        &mut wire,
        "alice@example.test",
        &["bob@example.test"],
        too_long.as_bytes(),
    );
    assert!(reply.starts_with("500 5.5.2 line too long"), "{reply}");
    expect(&wire.cmd("NOOP"), "250");
    let mail = maildir(&r.spool, "bob");
    assert_eq!(mail.len(), 1, "the over-long message was discarded");
    assert!(text(&mail[0]).contains(&format!("\n{ok_line}\n")));
}

/// Up to 100 recipients are accepted; the 101st gets 452, and the message
/// still goes to the first 100.
#[test]
fn recipient_limit_is_100() {
    let dir = temp_dir("recipient_limit");
    let users: String = (0..101).map(|i| format!("u{i}:pw{i}\n")).collect();
    fs::write(dir.join("users"), users).unwrap();
    let spool = dir.join("spool");
    let server = start(&[
        "--spool",
        spool.to_str().unwrap(),
        "--users",
        dir.join("users").to_str().unwrap(),
    ]);
    let mut wire = Wire::smtp(server.addr_of("smtp"));
    expect(&wire.cmd("EHLO test.client"), "250");
    expect(&wire.cmd("MAIL FROM:<alice@example.test>"), "250");
    for i in 0..100 {
        expect(&wire.cmd(&format!("RCPT TO:<u{i}@example.test>")), "250");
    }
    expect(&wire.cmd("RCPT TO:<u100@example.test>"), "452");
    expect(&wire.cmd("DATA"), "354");
    wire.send(b"Subject: many\r\n\r\nhi all\r\n.\r\n");
    expect(&wire.reply(), "250");
    assert_eq!(maildir(&spool, "u99").len(), 1);
    assert_eq!(maildir(&spool, "u100").len(), 0);
}

/// Python's `smtplib.sendmail` to 121 recipients: the first 100 are
/// delivered, and its refused dict names the other 21, each with the 452
/// it got. The 452s do not count towards the error limit that ends a
/// session (20 errors), which would otherwise cut the session before DATA.
#[test]
fn smtplib_to_121_recipients_delivers_the_first_100() {
    if !have(
        "python3",
        "smtplib_to_121_recipients_delivers_the_first_100",
    ) {
        return;
    }
    let dir = temp_dir("recipients_121");
    let users: String = (0..121).map(|i| format!("u{i}:pw{i}\n")).collect();
    fs::write(dir.join("users"), users).unwrap();
    let spool = dir.join("spool");
    let server = start(&[
        "--spool",
        spool.to_str().unwrap(),
        "--users",
        dir.join("users").to_str().unwrap(),
    ]);
    let smtp = server.addr_of("smtp");
    let out = python(
        r#"
import smtplib, sys
rcpts = ["u%d@example.test" % i for i in range(121)]
with smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=60) as s:
    refused = s.sendmail("alice@example.test", rcpts, "Subject: many\r\n\r\nhi all\r\n")
print(len(refused), sorted(set(code for code, _ in refused.values())), min(refused, key=lambda r: int(r[1:].split("@")[0])))
"#,
        &[&smtp.ip().to_string(), &smtp.port().to_string()],
    );
    assert_eq!(
        out.trim(),
        "21 [452] u100@example.test",
        "smtplib said {out:?}"
    );
    for i in 0..100 {
        assert_eq!(maildir(&spool, &format!("u{i}")).len(), 1, "u{i}'s mailbox");
    }
    for i in 100..121 {
        assert_eq!(maildir(&spool, &format!("u{i}")).len(), 0, "u{i}'s mailbox");
    }
}

/// A lone CR or a NUL anywhere in the text (`\r.\r\n`, which a next hop
/// taking CR as a line end would read as the end of the message, or
/// `a\0b`) gets `550 5.6.0` after the dot and nothing is stored; the
/// session goes on, and a clean message is delivered.
#[test]
fn bare_cr_or_nul_gets_550_and_nothing_is_stored() {
    let r = relay("bare_cr_nul", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    for data in [
        &b"Subject: cr\r\n\r\nfirst\r.\rMAIL FROM:<boss@example.test>\r\n"[..],
        b"Subject: cr at the end\r\n\r\nlast\r\r\n",
        b"Subject: nul\r\n\r\na\0b\r\n",
    ] {
        let reply = transaction(&mut wire, "alice@example.test", &["bob@example.test"], data);
        assert!(
            reply.starts_with("550 5.6.0"),
            "{:?}: expected 550 5.6.0, got {reply:?}",
            text(data)
        );
    }
    assert_eq!(
        maildir(&r.spool, "bob").len(),
        0,
        "a message with a bare CR or NUL was stored"
    );
    let reply = transaction(
        &mut wire,
        "alice@example.test",
        &["bob@example.test"],
        b"Subject: clean\r\n\r\nfine\r\n",
    );
    expect(&reply, "250");
    let mail = maildir(&r.spool, "bob");
    assert_eq!(mail.len(), 1);
    assert!(text(&mail[0]).ends_with("Subject: clean\n\nfine\n"));
}

/// Only `CRLF . CRLF` ends the text: a `.` line after a bare LF, or ended
/// by a bare LF (`\n.\n`, `\n.\r\n`, `\r\n.\n`), is text. So the
/// transaction a client hides behind one (SMTP smuggling) is stored as
/// part of the one message, never run as a second, and no message from
/// the smuggled sender appears.
#[test]
fn only_crlf_dot_crlf_ends_the_message() {
    let r = relay("smuggling", &[]);
    for end in ["\n.\n", "\n.\r\n", "\r\n.\n"] {
        let mut wire = Wire::smtp(r.smtp());
        expect(&wire.cmd("EHLO test.client"), "250");
        let data = format!(
            "Subject: outer\r\n\r\nhello{end}MAIL FROM:<boss@example.test>\r\n\
             RCPT TO:<carol@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\npay now\r\n"
        );
        let reply = transaction(
            &mut wire,
            "alice@example.test",
            &["bob@example.test"],
            data.as_bytes(),
        );
        expect(&reply, "250");
        // Nothing was taken as a command: the next reply is to our NOOP.
        expect(&wire.cmd("NOOP"), "250");
        expect(&wire.cmd("QUIT"), "221");
    }
    assert_eq!(
        maildir(&r.spool, "carol").len(),
        0,
        "a smuggled message was delivered"
    );
    let mail = maildir(&r.spool, "bob");
    assert_eq!(mail.len(), 3);
    for message in &mail {
        let message = text(message);
        assert!(
            message.contains("hello\n\nMAIL FROM:<boss@example.test>\n")
                && message.ends_with("Subject: smuggled\n\npay now\n"),
            "{message:?}"
        );
    }
}

/// Stray or unbalanced angle brackets in an address get 501, in `MAIL`
/// and in `RCPT`: `postmaster>@remote.test` would otherwise be relayed as
/// `<postmaster>@remote.test>`.
#[test]
fn stray_angle_brackets_get_501() {
    let r = relay("brackets", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    for bad in [
        "MAIL FROM:<<alice@example.test>",
        "MAIL FROM:alice>@example.test",
    ] {
        expect(&wire.cmd(bad), "501");
    }
    expect(&wire.cmd("MAIL FROM:<alice@example.test>"), "250");
    for bad in [
        "RCPT TO:postmaster>@remote.test",
        "RCPT TO:<postmaster>@remote.test>",
        "RCPT TO:<<bob@example.test>",
        "RCPT TO:<bob@example.test",
        "RCPT TO:bob@example.test>",
    ] {
        let reply = wire.cmd(bad);
        assert!(
            reply.starts_with("501"),
            "{bad:?}: expected 501, got {reply:?}"
        );
    }
    expect(&wire.cmd("RCPT TO:<bob@example.test>"), "250");
}

/// An unknown local user gets 550; a local part that cannot be a mailbox
/// folder gets 553; `postmaster` always exists; case does not matter.
#[test]
fn unknown_user_550_and_bad_local_part_553() {
    let r = relay("unknown_user", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    expect(&wire.cmd("MAIL FROM:<alice@example.test>"), "250");
    expect(&wire.cmd("RCPT TO:<nobody@example.test>"), "550");
    for bad in [
        "a+b@example.test",
        ".hidden@example.test",
        "../etc@example.test",
        "a/b@example.test",
    ] {
        expect(&wire.cmd(&format!("RCPT TO:<{bad}>")), "553");
    }
    expect(&wire.cmd("RCPT TO:<Postmaster@example.test>"), "250");
    expect(&wire.cmd("RCPT TO:<postmaster>"), "250");
    expect(&wire.cmd("RCPT TO:<CAROL@EXAMPLE.TEST>"), "250");
    expect(&wire.cmd("DATA"), "354");
    wire.send(b"Subject: hello\r\n\r\nhi\r\n.\r\n");
    expect(&wire.reply(), "250");
    assert_eq!(
        maildir(&r.spool, "postmaster").len(),
        1,
        "postmaster gets one copy"
    );
    assert_eq!(maildir(&r.spool, "carol").len(), 1);
    assert!(!r.spool.join("nobody").exists());
}

/// Every domain given to `--domain` is local.
#[test]
fn several_local_domains() {
    let r = relay("several_domains", &["--domain", "one.test,Two.Test"]);
    send_message(
        r.smtp(),
        "x@else.test",
        &["bob@one.test", "carol@two.test"],
        "Subject: d\r\n\r\nhi\r\n",
    );
    assert_eq!(maildir(&r.spool, "bob").len(), 1);
    assert_eq!(maildir(&r.spool, "carol").len(), 1);
}

/// Eight clients sending at once each get every message stored exactly once
/// (deliveries share folder syncs but never lose one).
#[test]
fn concurrent_senders_lose_nothing() {
    let r = relay("concurrent_senders", &[]);
    let addr = r.smtp();
    let senders: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let mut wire = Wire::smtp(addr);
                expect(&wire.cmd("EHLO test.client"), "250");
                for k in 0..10 {
                    let data = format!("Subject: {i}-{k}\r\n\r\nmessage {i}-{k}\r\n");
                    expect(
                        &transaction(
                            &mut wire,
                            "alice@example.test",
                            &["bob@example.test"],
                            data.as_bytes(),
                        ),
                        "250",
                    );
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let mail: Vec<String> = maildir(&r.spool, "bob").iter().map(|m| text(m)).collect();
    assert_eq!(mail.len(), 80);
    for i in 0..8 {
        for k in 0..10 {
            let needle = format!("\nmessage {i}-{k}\n");
            assert_eq!(
                mail.iter().filter(|m| m.contains(&needle)).count(),
                1,
                "{needle:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Relaying
// ---------------------------------------------------------------------------

/// From a client outside `--relay-allow`, mail for another domain gets
/// `554 5.7.1 … Relay access denied` at RCPT, and nothing is stored.
#[test]
fn relay_refused_outside_relay_allow() {
    // 127.0.0.1 is not in 10.0.0.0/8, so this test's client is "outside".
    let r = relay(
        "relay_refused",
        &["--relay-allow", "10.0.0.0/8", "--next-hop", "127.0.0.1:9"],
    );
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    expect(&wire.cmd("MAIL FROM:<spammer@else.test>"), "250");
    let reply = wire.cmd("RCPT TO:<victim@far.away.test>");
    assert!(
        reply.starts_with("554 5.7.1 <victim@far.away.test>: Relay access denied"),
        "{reply}"
    );
    expect(&wire.cmd("DATA"), "554");
    expect(&wire.cmd("QUIT"), "221");
    assert!(
        all_files(&r.spool).is_empty(),
        "stored: {:?}",
        all_files(&r.spool)
    );
}

/// Without `--next-hop`, a non-local recipient gets `550 5.1.2 … no route`.
#[test]
fn no_next_hop_means_no_route() {
    let r = relay("no_route", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    expect(&wire.cmd("MAIL FROM:<alice@example.test>"), "250");
    let reply = wire.cmd("RCPT TO:<carol@remote.test>");
    assert!(
        reply.starts_with("550 5.1.2 <carol@remote.test>: no route to that domain"),
        "{reply}"
    );
}

/// Starts the second relay of a chain: domain `remote.test`, user carol.
fn second_hop(name: &str, addr: &str) -> (Server, PathBuf) {
    let dir = temp_dir(name);
    let spool = dir.join("spool");
    fs::write(dir.join("users"), "carol:carol-pw\n").unwrap();
    let server = Server::start_with(
        RELAY,
        &["--smtp-addr", addr, "--pop3-addr", "127.0.0.1:0"],
        &[
            "--domain",
            "remote.test",
            "--spool",
            spool.to_str().unwrap(),
            "--users",
            dir.join("users").to_str().unwrap(),
        ],
        2,
    );
    (server, spool)
}

/// The largest file the relay may write in the full-disk tests (64 KiB).
const FILE_LIMIT: usize = 64 * 1024;

/// A relay whose every file write stops at [`FILE_LIMIT`] bytes with an
/// error, as a full disk would (`RLIMIT_FSIZE`, set by Python before it
/// runs the relay; `SIGXFSZ` ignored, so the write fails instead of
/// killing the process), relaying to `next_hop`.
fn relay_with_file_limit(name: &str, next_hop: &str) -> Relay {
    let dir = temp_dir(name);
    let spool = dir.join("spool");
    let users = dir.join("users");
    fs::write(&users, USERS).unwrap();
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import os, resource, signal, sys\n\
         signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n\
         limit = int(sys.argv[1])\n\
         resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n\
         os.execv(sys.argv[2], sys.argv[2:])",
        &FILE_LIMIT.to_string(),
    ])
    .arg(common::example_path(RELAY))
    .args(["--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0"])
    .arg("--spool")
    .arg(&spool)
    .arg("--users")
    .arg(&users)
    .args(["--next-hop", next_hop]);
    cmd.args(fast_retries());
    Relay {
        server: Server::start_command(RELAY, cmd, 2),
        spool,
    }
}

/// A message of about `size` bytes as stored (lines of 100 bytes with `\n`).
fn message_of(size: usize) -> Vec<u8> {
    let mut data = b"Subject: big\r\n\r\n".to_vec();
    let line = [vec![b'y'; 99], b"\r\n".to_vec()].concat();
    for _ in 0..(size - 14) / 100 {
        data.extend_from_slice(&line);
    }
    data
}

/// The files under the spool (not counting folders).
fn spool_files(spool: &Path) -> Vec<String> {
    let mut files: Vec<String> = all_files(spool)
        .iter()
        .map(|p| {
            p.strip_prefix(spool)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    files
}

/// A write that fails for want of space (a file limit here) answers `451`,
/// leaves no partial file behind (in `.incoming/`, a mailbox's `tmp/` or
/// the queue's), and the next message is delivered. Also: a message for a
/// local and a relayed recipient whose local copy fits but whose queue
/// file does not is delivered to nobody (every copy, or none), so the
/// client's retry brings no duplicate. (Reference only: it wraps the
/// relay's program in a file limit.)
#[test]
fn full_disk_gets_451_and_leaves_nothing_behind() {
    if !reference_only(RELAY, "full_disk_gets_451_and_leaves_nothing_behind")
        || !have("python3", "full_disk_gets_451_and_leaves_nothing_behind")
    {
        return;
    }
    // A next hop that is never there: relayed mail stays queued.
    let hop = format!("127.0.0.1:{}", free_port());
    let r = relay_with_file_limit("full_disk", &hop);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    // Far too big for the limit: the text itself cannot be kept.
    let reply = transaction(
        &mut wire,
        "alice@example.test",
        &["bob@example.test"],
        &message_of(2 * FILE_LIMIT),
    );
    expect(&reply, "451");
    assert_eq!(spool_files(&r.spool), Vec::<String>::new(), "left behind");
    // Bob's copy (65,114 bytes of text, a short Return-Path and our
    // Received: header) fits; the queue file, whose envelope names twenty
    // remote recipients (660 bytes), does not.
    let remote: Vec<String> = (0..20).map(|i| format!("someone{i}@remote.test")).collect();
    let mut to = vec!["bob@example.test"];
    to.extend(remote.iter().map(String::as_str));
    let reply = transaction(
        &mut wire,
        "alice@example.test",
        &to,
        &message_of(FILE_LIMIT - 420),
    );
    expect(&reply, "451");
    assert_eq!(
        spool_files(&r.spool),
        Vec::<String>::new(),
        "a copy was delivered although the message got 451"
    );
    // Nothing stuck: a small message for both goes through.
    let reply = transaction(
        &mut wire,
        "alice@example.test",
        &to,
        b"Subject: small\r\n\r\nok\r\n",
    );
    expect(&reply, "250");
    let files = spool_files(&r.spool);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].starts_with(".queue/active/") && files[1].starts_with("bob/new/"),
        "{files:?}"
    );
}

/// A chain of two relays: mail for `remote.test` sent to the first reaches
/// carol's Maildir on the second, with a `Received:` header from each hop.
#[test]
fn chain_of_two_relays_delivers() {
    let (hop2, spool2) = second_hop("chain_hop2", "127.0.0.1:0");
    let hop2_addr = hop2.addr_of("smtp").to_string();
    let mut args = vec!["--next-hop", hop2_addr.as_str()];
    args.extend(fast_retries());
    let hop1 = relay("chain_hop1", &args);
    send_message(
        hop1.smtp(),
        "alice@example.test",
        &["carol@remote.test", "bob@example.test"],
        "Subject: two hops\r\n\r\n..dotted line travels too\r\n",
    );
    assert_eq!(maildir(&hop1.spool, "bob").len(), 1, "the local copy");
    assert!(
        wait_until(DELIVERY_TIMEOUT, || maildir(&spool2, "carol").len() == 1),
        "never reached hop 2"
    );
    let mail = text(&maildir(&spool2, "carol")[0]);
    assert_eq!(mail.matches("Received: ").count(), 2, "{mail}");
    assert!(
        mail.contains("Subject: two hops\n\n.dotted line travels too\n"),
        "{mail}"
    );
    assert!(mail.contains("Return-Path: <alice@example.test>"), "{mail}");
    assert!(
        maildir(&hop1.spool, "carol").is_empty(),
        "no local copy for carol on hop 1"
    );
}

/// Restarts a relay on the port it had, trying a few times (the port may
/// take a moment to be free again).
fn restart_on<T>(addr: &str, start: impl Fn() -> T) -> T {
    for _ in 0..20 {
        if TcpListener::bind(addr).is_ok() {
            if let Ok(server) = catch_unwind(AssertUnwindSafe(&start)) {
                return server;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("could not restart a relay on {addr}");
}

/// With the next hop down, relayed mail waits in the queue; once the next
/// hop starts, the message is delivered.
#[test]
fn next_hop_down_then_up_delivers() {
    let port = free_port();
    let hop2_addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--next-hop", hop2_addr.as_str()];
    args.extend(fast_retries());
    let hop1 = relay("hop_down_hop1", &args);
    send_message(
        hop1.smtp(),
        "alice@example.test",
        &["carol@remote.test"],
        "Subject: patience\r\n\r\nwait\r\n",
    );
    // Nobody listens on hop 2's port yet: the message must wait, not vanish.
    thread::sleep(Duration::from_millis(300));
    let (_hop2, spool2) = restart_on(&hop2_addr, || second_hop("hop_down_hop2", &hop2_addr));
    assert!(
        wait_until(DELIVERY_TIMEOUT, || maildir(&spool2, "carol").len() == 1),
        "never delivered after hop 2 came up"
    );
    assert!(text(&maildir(&spool2, "carol")[0]).contains("Subject: patience"));
}

/// A relay killed with SIGKILL right after its 250 loses nothing: the local
/// copy is already in Maildir, and the relayed copy is delivered by the
/// restarted relay.
#[test]
fn kill_after_250_loses_nothing() {
    let (_hop2, spool2) = second_hop("kill_hop2", "127.0.0.1:0");
    let hop2_addr = _hop2.addr_of("smtp").to_string();
    let dead = format!("127.0.0.1:{}", free_port());
    let dir = temp_dir("kill_hop1");
    let spool = dir.join("spool");
    fs::write(dir.join("users"), USERS).unwrap();
    let base = vec![
        "--spool".to_string(),
        spool.to_str().unwrap().to_string(),
        "--users".to_string(),
        dir.join("users").to_str().unwrap().to_string(),
    ];
    let with_hop = |hop: &str| -> Server {
        let mut args = base.clone();
        args.extend(["--next-hop".to_string(), hop.to_string()]);
        args.extend(fast_retries().into_iter().map(String::from));
        start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // First life: the next hop is unreachable, so the message must be queued.
    let mut first = with_hop(&dead);
    let mut wire = Wire::smtp(first.addr_of("smtp"));
    expect(&wire.cmd("EHLO test.client"), "250");
    let data = b"Subject: survive\r\n\r\nkill -9 me\r\n";
    expect(
        &transaction(
            &mut wire,
            "alice@example.test",
            &["bob@example.test", "carol@remote.test"],
            data,
        ),
        "250",
    );
    first.kill();
    drop(wire);
    let local = maildir(&spool, "bob");
    assert_eq!(
        local.len(),
        1,
        "the local copy is in Maildir after the kill"
    );
    assert!(text(&local[0]).contains("kill -9 me"));
    // Second life, now with a working next hop: the queue is picked up.
    let _second = with_hop(&hop2_addr);
    assert!(
        wait_until(DELIVERY_TIMEOUT, || maildir(&spool2, "carol").len() == 1),
        "the queued copy was lost"
    );
    assert!(text(&maildir(&spool2, "carol")[0]).contains("kill -9 me"));
    assert_eq!(
        maildir(&spool, "bob").len(),
        1,
        "the local copy was not delivered twice"
    );
}

// ---------------------------------------------------------------------------
// POP3
// ---------------------------------------------------------------------------

/// Python's poplib logs in, lists, reads (TOP, RETR, UIDL) and deletes;
/// the deletion happens at QUIT.
#[test]
fn poplib_lists_reads_and_deletes() {
    if !have("python3", "poplib_lists_reads_and_deletes") {
        return;
    }
    let r = relay("poplib", &[]);
    send_message(
        r.smtp(),
        "alice@example.test",
        &["bob@example.test"],
        "Subject: one\r\n\r\nfirst\r\n",
    );
    send_message(
        r.smtp(),
        "alice@example.test",
        &["bob@example.test"],
        "Subject: two\r\n\r\n..second\r\n",
    );
    let script = r#"
import poplib, sys
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=20)
p.user("bob"); p.pass_("bob-pw")
count, size = p.stat()
resp, listing, _ = p.list()
assert len(listing) == 2 and count == 2, (count, listing)
assert sum(int(l.split()[1]) for l in listing) == size
resp, lines, octets = p.retr(2)
assert b"Subject: two" in lines and lines[-1] == b".second", lines
resp, top, _ = p.top(1, 0)
assert b"Subject: one" in top and b"first" not in top, top
uids = [l.split()[1] for l in p.uidl()[1]]
assert len(set(uids)) == 2
p.dele(1)
p.quit()
p = poplib.POP3("127.0.0.1", int(sys.argv[1]), timeout=20)
p.user("bob"); p.pass_("bob-pw")
print(p.stat()[0], p.uidl()[1][0].split()[1] == uids[1])
p.quit()
"#;
    assert_eq!(
        python(script, &[&r.pop3().port().to_string()]).trim(),
        "1 True"
    );
    let mail = maildir(&r.spool, "bob");
    assert_eq!(mail.len(), 1);
    assert!(text(&mail[0]).contains("Subject: two"));
}

/// `curl pop3://user:pass@host:port/` lists, `/1` reads, `-X DELE` deletes.
#[test]
fn curl_pop3_lists_reads_and_deletes() {
    if !have("curl", "curl_pop3_lists_reads_and_deletes") {
        return;
    }
    let r = relay("curl_pop3", &[]);
    send_message(
        r.smtp(),
        "alice@example.test",
        &["bob@example.test"],
        "Subject: for curl\r\n\r\nread me\r\n",
    );
    send_message(
        r.smtp(),
        "alice@example.test",
        &["bob@example.test"],
        "Subject: second\r\n\r\nme too\r\n",
    );
    let base = format!("pop3://bob:bob-pw@{}", r.pop3());
    let curl = |args: &[&str]| {
        let out = Command::new("curl").arg("-sS").args(args).output().unwrap();
        assert!(out.status.success(), "curl {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let listing = curl(&[&format!("{base}/")]);
    assert_eq!(listing.lines().count(), 2, "{listing:?}");
    assert!(listing.starts_with("1 "));
    let first = curl(&[&format!("{base}/1")]);
    assert!(
        first.contains("Subject: for curl\r\n\r\nread me\r\n"),
        "{first:?}"
    );
    curl(&["-X", "DELE", "-I", &format!("{base}/1")]);
    let listing = curl(&[&format!("{base}/")]);
    assert_eq!(listing.lines().count(), 1, "{listing:?}");
    assert!(curl(&[&format!("{base}/1")]).contains("Subject: second"));
}

/// On the wire, RETR sends CRLF lines, byte-stuffs lines starting with `.`,
/// ends with `.`, and LIST's size is the CRLF size.
#[test]
fn pop3_retr_is_crlf_and_byte_stuffed() {
    let r = relay("pop3_stuffing", &[]);
    send_message(
        r.smtp(),
        "alice@example.test",
        &["bob@example.test"],
        "Subject: s\r\n\r\n..dot\r\nplain\r\n",
    );
    let mut wire = Wire::pop3(r.pop3(), "bob", "bob-pw");
    let list = wire.cmd_line("LIST 1");
    let size: usize = list.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(wire.cmd_line("RETR 1").starts_with("+OK"));
    let lines = wire.multiline(); // Wire::line checks every line ends in CRLF
    assert_eq!(&lines[lines.len() - 2..], ["..dot", "plain"]);
    let unstuffed: usize = lines
        .iter()
        .map(|l| l.strip_prefix('.').unwrap_or(l).len() + 2)
        .sum();
    assert_eq!(
        unstuffed, size,
        "LIST size = message size with CRLF endings"
    );
    assert!(wire.cmd_line("QUIT").starts_with("+OK"));
}

/// Only one session per mailbox at a time; the lock goes with the session.
#[test]
fn pop3_one_session_per_mailbox() {
    let r = relay("pop3_lock", &[]);
    let mut first = Wire::pop3(r.pop3(), "bob", "bob-pw");
    let mut second = Wire::open(r.pop3());
    assert!(second.line().starts_with("+OK"));
    assert!(second.cmd_line("USER bob").starts_with("+OK"));
    let refused = second.cmd_line("PASS bob-pw");
    assert!(refused.starts_with("-ERR"), "{refused}");
    // Another mailbox is not affected.
    let _alice = Wire::pop3(r.pop3(), "alice", "alice-pw");
    assert!(first.cmd_line("QUIT").starts_with("+OK"));
    // Wait for the server to finish that session (it closes the connection).
    let mut rest = Vec::new();
    let _ = first.reader.read_to_end(&mut rest);
    assert!(second.cmd_line("USER bob").starts_with("+OK"));
    assert!(second.cmd_line("PASS bob-pw").starts_with("+OK"));
}

/// DELE marks; only QUIT removes. A client that disconnects without QUIT
/// deletes nothing; RSET unmarks.
#[test]
fn pop3_deletes_only_at_quit() {
    let r = relay("pop3_quit", &[]);
    send_message(
        r.smtp(),
        "alice@example.test",
        &["bob@example.test"],
        "Subject: keep\r\n\r\nme\r\n",
    );
    {
        let mut wire = Wire::pop3(r.pop3(), "bob", "bob-pw");
        assert!(wire.cmd_line("DELE 1").starts_with("+OK"));
        assert!(
            wire.cmd_line("RETR 1").starts_with("-ERR"),
            "a deleted message is gone for this session"
        );
        // Dropped without QUIT.
    }
    let mut wire = Wire::open(r.pop3());
    assert!(wire.line().starts_with("+OK"));
    assert!(wire.cmd_line("USER bob").starts_with("+OK"));
    // The first session's lock may take a moment to go (its thread must
    // notice the hang-up); retry the login within a bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = wire.cmd_line("PASS bob-pw");
        if reply.starts_with("+OK") {
            break;
        }
        assert!(Instant::now() < deadline, "mailbox still locked: {reply}");
        thread::sleep(Duration::from_millis(50));
        assert!(wire.cmd_line("USER bob").starts_with("+OK"));
    }
    assert!(wire.cmd_line("STAT").starts_with("+OK 1 "));
    assert!(wire.cmd_line("DELE 1").starts_with("+OK"));
    assert!(wire.cmd_line("RSET").starts_with("+OK"));
    assert!(wire.cmd_line("QUIT").starts_with("+OK"));
    assert_eq!(maildir(&r.spool, "bob").len(), 1);
}

/// A wrong password or unknown user gets `-ERR`; CAPA lists USER; the
/// greeting has no `<…>` APOP token.
#[test]
fn pop3_login_rules() {
    let r = relay("pop3_login", &fast_retries());
    let mut wire = Wire::open(r.pop3());
    let greeting = wire.line();
    assert!(
        greeting.starts_with("+OK") && !greeting.contains('<'),
        "{greeting}"
    );
    assert!(wire.cmd_line("CAPA").starts_with("+OK"));
    let caps = wire.multiline();
    assert!(caps.iter().any(|c| c == "USER"), "{caps:?}");
    assert!(
        wire.cmd_line("STAT").starts_with("-ERR"),
        "STAT before login"
    );
    assert!(wire.cmd_line("USER bob").starts_with("+OK"));
    assert!(wire.cmd_line("PASS wrong").starts_with("-ERR"));
    assert!(wire.cmd_line("USER nobody").starts_with("+OK"));
    assert!(wire.cmd_line("PASS bob-pw").starts_with("-ERR"));
    assert!(wire.cmd_line("QUIT").starts_with("+OK"));
}

// ---------------------------------------------------------------------------
// The client example
// ---------------------------------------------------------------------------

/// `04_mail_client send` delivers stdin as the body; `fetch` prints it back;
/// `fetch --delete` empties the mailbox.
#[test]
fn client_example_sends_and_fetches() {
    let r = relay("client_example", &[]);
    AssertCommand::from_std(common::command(CLIENT))
        .args([
            "send",
            "--addr",
            &r.smtp().to_string(),
            "--from",
            "alice@example.test",
        ])
        .args(["--to", "bob@example.test", "--subject", "from the client"])
        .write_stdin(".starts with a dot\nsecond line\n")
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stdout(predicate::str::starts_with("sent: 250"));
    let mail = text(&maildir(&r.spool, "bob")[0]);
    assert!(mail.contains("Subject: from the client\n"), "{mail}");
    assert!(
        mail.ends_with("\n\n.starts with a dot\nsecond line\n"),
        "{mail:?}"
    );
    for delete in [false, true] {
        let mut cmd = AssertCommand::from_std(common::command(CLIENT));
        cmd.args(["fetch", "--addr", &r.pop3().to_string(), "--user", "bob"])
            .env("NETLESSONS_PASSWORD", "bob-pw");
        if delete {
            cmd.arg("--delete");
        }
        cmd.timeout(Duration::from_secs(30))
            .assert()
            .success()
            .stdout(predicate::str::contains("1 message(s) for bob").and(
                predicate::str::contains("\n.starts with a dot\nsecond line\n"),
            ));
    }
    assert!(maildir(&r.spool, "bob").is_empty(), "--delete removed it");
}

/// The client reports the server's refusal and exits non-zero; fetch
/// without a password says where it comes from.
#[test]
fn client_example_reports_errors() {
    let r = relay("client_errors", &[]);
    AssertCommand::from_std(common::command(CLIENT))
        .args([
            "send",
            "--addr",
            &r.smtp().to_string(),
            "--from",
            "a@example.test",
            "--to",
            "nobody@example.test",
        ])
        .write_stdin("hi\n")
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains("550"));
    AssertCommand::from_std(common::command(CLIENT))
        .args(["fetch", "--addr", &r.pop3().to_string(), "--user", "bob"])
        .env_remove("NETLESSONS_PASSWORD")
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("NETLESSONS_PASSWORD"));
}

/// The client's --trace shows both directions of the SMTP conversation.
#[test]
fn client_trace_shows_the_conversation() {
    if !reference_only(CLIENT, "client_trace_shows_the_conversation") {
        return;
    }
    let r = relay("client_trace", &[]);
    AssertCommand::from_std(common::command(CLIENT))
        .args([
            "send",
            "--trace",
            "--addr",
            &r.smtp().to_string(),
            "--from",
            "a@example.test",
            "--to",
            "bob@example.test",
        ])
        .write_stdin("traced\n")
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stderr(
            predicate::str::contains("-> MAIL FROM:<a@example.test>")
                .and(predicate::str::contains("<- 250")),
        );
}

// ---------------------------------------------------------------------------
// Reference-only features
// ---------------------------------------------------------------------------

/// A permanent refusal from the next hop (`550` for an unknown user there)
/// is not retried: the message moves to `.queue/failed/` and the reason is logged.
#[test]
fn permanent_refusal_by_next_hop_is_not_retried() {
    if !reference_only(RELAY, "permanent_refusal_by_next_hop_is_not_retried") {
        return;
    }
    let (hop2, _spool2) = second_hop("refusal_hop2", "127.0.0.1:0");
    let hop2_addr = hop2.addr_of("smtp").to_string();
    let mut args = vec!["--next-hop", hop2_addr.as_str()];
    args.extend(fast_retries());
    let hop1 = relay("refusal_hop1", &args);
    send_message(
        hop1.smtp(),
        "alice@example.test",
        &["nobody@remote.test"],
        "Subject: lost\r\n\r\nx\r\n",
    );
    hop1.server
        .expect_stderr("failed for good", DELIVERY_TIMEOUT);
    let failed = hop1.spool.join(".queue").join("failed");
    assert_eq!(
        fs::read_dir(&failed).unwrap().count(),
        1,
        "kept for a human in {failed:?}"
    );
    assert_eq!(
        fs::read_dir(hop1.spool.join(".queue").join("active"))
            .unwrap()
            .count(),
        0
    );
    assert!(
        !hop1.server.stderr().contains("next try in"),
        "a 5xx must not be retried"
    );
}

/// `--pop3-idle-timeout 1`: a silent POP3 client is closed without a word,
/// and its `DELE`s are not applied (no UPDATE without QUIT).
#[test]
fn idle_pop3_client_is_closed_without_deleting() {
    if !reference_only(RELAY, "idle_pop3_client_is_closed_without_deleting") {
        return;
    }
    let r = relay("pop3_idle", &["--pop3-idle-timeout", "1"]);
    send_message(
        r.smtp(),
        "alice@example.test",
        &["bob@example.test"],
        "Subject: stay\r\n\r\nx\r\n",
    );
    let mut wire = Wire::pop3(r.pop3(), "bob", "bob-pw");
    assert!(wire.cmd_line("DELE 1").starts_with("+OK"));
    let mut rest = Vec::new();
    wire.reader.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "RFC 1939: close without a response, got {rest:?}"
    );
    assert_eq!(maildir(&r.spool, "bob").len(), 1);
}

/// After 20 error replies in one session the relay says `421` and hangs up.
#[test]
fn too_many_errors_end_the_session() {
    if !reference_only(RELAY, "too_many_errors_end_the_session") {
        return;
    }
    let r = relay("too_many_errors", &[]);
    let mut wire = Wire::smtp(r.smtp());
    for _ in 0..20 {
        expect(&wire.cmd("BOGUS"), "500");
    }
    // The 20th error is answered, then the goodbye follows unasked.
    expect(&wire.reply(), "421 4.7.0");
    let mut rest = Vec::new();
    wire.reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// Started without `--users`, the relay makes demo mailboxes alice and bob
/// and prints bob's password with a ready curl command: the chapter's
/// first "try it" works as printed.
#[test]
fn demo_mailboxes_work_as_printed() {
    if !reference_only(RELAY, "demo_mailboxes_work_as_printed")
        || !have("curl", "demo_mailboxes_work_as_printed")
    {
        return;
    }
    let spool = temp_dir("demo_mailboxes").join("spool");
    let server = start(&["--spool", spool.to_str().unwrap()]);
    // The line after the passwords: by then the whole list has arrived.
    server.expect_stderr("send bob a message", Duration::from_secs(10));
    let stderr = server.stderr();
    let command = stderr
        .lines()
        .find(|l| l.contains("curl pop3://bob:"))
        .unwrap();
    let url = command[command.find("pop3://").unwrap()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    send_message(
        server.addr_of("smtp"),
        "a@example.test",
        &["bob@example.test"],
        "Subject: hi\r\n\r\nhello\r\n",
    );
    let out = Command::new("curl").args(["-sS", &url]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Subject: hi\r\n\r\nhello\r\n"));
}

/// `--max-conns 1`: a second SMTP client gets `421 4.7.0 too many
/// connections`, a second POP3 client `-ERR too many connections`.
#[test]
fn max_conns_refusals() {
    if !reference_only(RELAY, "max_conns_refusals") {
        return;
    }
    let r = relay("max_conns", &["--max-conns", "1"]);
    let _smtp = Wire::smtp(r.smtp());
    let mut extra = Wire::open(r.smtp());
    assert_eq!(extra.line(), "421 4.7.0 too many connections");
    let mut pop = Wire::open(r.pop3());
    assert!(pop.line().starts_with("+OK"));
    let mut extra = Wire::open(r.pop3());
    assert_eq!(extra.line(), "-ERR too many connections");
}

// ---------------------------------------------------------------------------
// A scripted next hop
// ---------------------------------------------------------------------------

/// How a [`FakeHop`] behaves.
#[derive(Clone, Copy)]
struct HopScript {
    /// Offer 8BITMIME in the EHLO reply.
    eight_bit: bool,
    /// Never answer QUIT: wait until the relay hangs up.
    silent_quit: bool,
}

/// A next hop written in the test: it answers RCPT by the recipient
/// (`nobody…` gets 550, `later…` gets 451, anyone else 250), stores each
/// message's text, and records every command line it gets.
struct FakeHop {
    addr: SocketAddr,
    /// Every line received, commands and message text, in order.
    lines: Arc<Mutex<Vec<String>>>,
    /// Set at each QUIT: was the relay's queue (`.queue/active/`) already
    /// empty when its QUIT came (after waiting up to 10 s for it)?
    queue_empty_at_quit: Arc<Mutex<Vec<bool>>>,
}

impl FakeHop {
    fn start(script: HopScript, relay_spool: Option<PathBuf>) -> FakeHop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let queue_empty_at_quit = Arc::new(Mutex::new(Vec::new()));
        let (l, q) = (Arc::clone(&lines), Arc::clone(&queue_empty_at_quit));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (l, q, spool) = (Arc::clone(&l), Arc::clone(&q), relay_spool.clone());
                thread::spawn(move || {
                    let _ = FakeHop::session(stream, script, &l, &q, spool.as_deref());
                });
            }
        });
        FakeHop {
            addr,
            lines,
            queue_empty_at_quit,
        }
    }

    fn session(
        stream: TcpStream,
        script: HopScript,
        lines: &Mutex<Vec<String>>,
        quits: &Mutex<Vec<bool>>,
        relay_spool: Option<&Path>,
    ) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(90)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut out = stream;
        out.write_all(b"220 fake.test ESMTP\r\n")?;
        let mut in_data = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            lines.lock().unwrap().push(line.clone());
            if in_data {
                if line == "." {
                    in_data = false;
                    out.write_all(b"250 2.0.0 stored\r\n")?;
                }
                continue;
            }
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                if script.eight_bit {
                    b"250-fake.test\r\n250 8BITMIME\r\n"
                } else {
                    b"250-fake.test\r\n250 SIZE 1000000\r\n"
                }
            } else if upper.starts_with("RCPT TO:<NOBODY") {
                b"550 5.1.1 <nobody>: user unknown\r\n"
            } else if upper.starts_with("RCPT TO:<LATER") {
                b"451 4.3.0 try again later\r\n"
            } else if upper.starts_with("DATA") {
                in_data = true;
                b"354 go ahead\r\n"
            } else if upper.starts_with("QUIT") {
                if let Some(spool) = relay_spool {
                    let active = spool.join(".queue").join("active");
                    let empty = wait_until(Duration::from_secs(10), || {
                        fs::read_dir(&active).map_or(true, |mut d| d.next().is_none())
                    });
                    quits.lock().unwrap().push(empty);
                }
                if script.silent_quit {
                    // Say nothing; hold the connection until the relay goes.
                    let mut rest = Vec::new();
                    let _ = reader.read_to_end(&mut rest);
                    return Ok(());
                }
                out.write_all(b"221 bye\r\n")?;
                return Ok(());
            } else {
                b"250 2.0.0 ok\r\n"
            };
            out.write_all(reply)?;
        }
    }

    /// The lines received so far.
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// How many messages it stored.
    fn messages(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.eq_ignore_ascii_case("DATA"))
            .count()
    }
}

/// A relay forwarding to `hop`, with fast retries and `extra` flags.
fn relay_to(name: &str, hop: SocketAddr, extra: &[&str]) -> Relay {
    let hop = hop.to_string();
    let mut args = vec!["--next-hop", hop.as_str()];
    args.extend(fast_retries());
    args.extend_from_slice(extra);
    relay(name, &args)
}

/// The next hop's `250` after the dot is the handover: the relay removes
/// the queue file before it says QUIT (the hop checks, when the QUIT
/// arrives), and a hop that never answers QUIT does not stall the queue:
/// a second message follows at once, not after the 60 s reply timeout.
#[test]
fn handover_is_the_250_not_the_quit() {
    if !reference_only(RELAY, "handover_is_the_250_not_the_quit") {
        return;
    }
    let dir_name = "handover";
    // The hop must know the relay's spool before the relay starts: make it
    // where `relay` will.
    let spool = temp_dir(dir_name).join("spool");
    let hop = FakeHop::start(
        HopScript {
            eight_bit: true,
            silent_quit: true,
        },
        Some(spool.clone()),
    );
    let r = relay_to(dir_name, hop.addr, &[]);
    assert_eq!(r.spool, spool);
    let started = Instant::now();
    for subject in ["first", "second"] {
        send_message(
            r.smtp(),
            "alice@example.test",
            &["carol@remote.test"],
            &format!("Subject: {subject}\r\n\r\nhi\r\n"),
        );
    }
    assert!(
        wait_until(Duration::from_secs(40), || hop.messages() == 2),
        "the hop got {} of 2 messages in 40 s: {:?}",
        hop.messages(),
        hop.lines()
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "two messages took {took:?}: the relay waited for the reply to QUIT"
    );
    assert!(
        wait_until(Duration::from_secs(20), || hop
            .queue_empty_at_quit
            .lock()
            .unwrap()
            .len()
            == 2),
        "the relay did not say QUIT after each message"
    );
    assert_eq!(
        *hop.queue_empty_at_quit.lock().unwrap(),
        vec![true, true],
        "the queue file was still there when the relay said QUIT"
    );
}

/// Mail the next hop refuses for good (`550`) comes back to a local
/// sender as a bounce: `From: MAILER-DAEMON@example.test`, empty envelope
/// sender (`Return-Path: <>`), the reason, and the original headers. A
/// message whose sender was `<>` is not returned (it was itself a bounce),
/// and a remote sender's bounce is queued to the next hop from `<>`.
#[test]
fn refused_mail_bounces_to_its_sender() {
    if !reference_only(RELAY, "refused_mail_bounces_to_its_sender") {
        return;
    }
    let hop = FakeHop::start(
        HopScript {
            eight_bit: true,
            silent_quit: false,
        },
        None,
    );
    let r = relay_to("bounce", hop.addr, &[]);
    send_message(
        r.smtp(),
        "alice@example.test",
        &["nobody@remote.test"],
        "Subject: for nobody\r\nMessage-ID: <m1@example.test>\r\n\r\nhi\r\n",
    );
    assert!(
        wait_until(DELIVERY_TIMEOUT, || maildir(&r.spool, "alice").len() == 1),
        "no bounce reached alice; relay log:\n{}",
        r.server.stderr()
    );
    let bounce = text(&maildir(&r.spool, "alice")[0]);
    for needle in [
        "Return-Path: <>\n",
        "From: MAILER-DAEMON@example.test",
        "Subject: Undelivered Mail Returned to Sender",
        "Content-Type: multipart/report; report-type=delivery-status",
        "<nobody@remote.test>: 550 5.1.1 <nobody>: user unknown\n",
        "Final-Recipient: rfc822; nobody@remote.test",
        "Status: 5.1.1",
        "550 5.1.1 <nobody>: user unknown",
        "Subject: for nobody\nMessage-ID: <m1@example.test>\n",
    ] {
        assert!(
            bounce.contains(needle),
            "the bounce lacks {needle:?}:\n{bounce}"
        );
    }
    // From <>: dropped with a log line, never bounced.
    send_message(
        r.smtp(),
        "",
        &["nobody@remote.test"],
        "Subject: a bounce\r\n\r\nx\r\n",
    );
    r.server
        .expect_stderr("it was itself a bounce", DELIVERY_TIMEOUT);
    // A remote sender: the bounce goes out through the next hop, from <>.
    send_message(
        r.smtp(),
        "dave@remote.test",
        &["nobody@remote.test"],
        "Subject: from afar\r\n\r\nx\r\n",
    );
    assert!(
        wait_until(DELIVERY_TIMEOUT, || {
            let lines = hop.lines();
            lines
                .windows(2)
                .any(|w| w[0] == "MAIL FROM:<>" && w[1] == "RCPT TO:<dave@remote.test>")
                && lines
                    .iter()
                    .any(|l| l == "Subject: Undelivered Mail Returned to Sender")
        }),
        "no bounce went to dave through the next hop: {:?}",
        hop.lines()
    );
    assert_eq!(
        maildir(&r.spool, "alice").len(),
        1,
        "alice got a second bounce"
    );
}

/// Mail the next hop keeps refusing for now (`451`) is given up after
/// `--max-queue-age` (1.5 s here, through a hidden knob; 5 days by
/// default) and returned to its sender with the last reason.
#[test]
fn mail_past_max_queue_age_bounces() {
    if !reference_only(RELAY, "mail_past_max_queue_age_bounces") {
        return;
    }
    let hop = FakeHop::start(
        HopScript {
            eight_bit: true,
            silent_quit: false,
        },
        None,
    );
    let r = relay_to("max_age", hop.addr, &["--max-queue-age-ms", "1500"]);
    send_message(
        r.smtp(),
        "alice@example.test",
        &["later@remote.test"],
        "Subject: patience\r\n\r\nx\r\n",
    );
    assert!(
        wait_until(DELIVERY_TIMEOUT, || maildir(&r.spool, "alice").len() == 1),
        "no bounce reached alice; relay log:\n{}",
        r.server.stderr()
    );
    let bounce = text(&maildir(&r.spool, "alice")[0]);
    for needle in [
        "gave up after",
        "451 4.3.0 try again later",
        "Subject: patience\n",
    ] {
        assert!(
            bounce.contains(needle),
            "the bounce lacks {needle:?}:\n{bounce}"
        );
    }
    assert!(
        r.server.stderr().contains("next try in"),
        "it was not retried before it was given up"
    );
    assert_eq!(
        fs::read_dir(r.spool.join(".queue").join("active"))
            .unwrap()
            .count(),
        0,
        "the message is still queued"
    );
}

/// 8-bit mail is not sent to a next hop that does not offer 8BITMIME: it
/// bounces with that reason and the hop never gets a `MAIL`. 7-bit mail
/// still goes to that hop, and 8-bit mail to a hop that offers 8BITMIME
/// goes with `BODY=8BITMIME`.
#[test]
fn eight_bit_mail_needs_8bitmime_at_the_next_hop() {
    if !reference_only(RELAY, "eight_bit_mail_needs_8bitmime_at_the_next_hop") {
        return;
    }
    let plain = FakeHop::start(
        HopScript {
            eight_bit: false,
            silent_quit: false,
        },
        None,
    );
    let r = relay_to("eight_bit", plain.addr, &[]);
    send_message(
        r.smtp(),
        "alice@example.test",
        &["carol@remote.test"],
        "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n",
    );
    assert!(
        wait_until(DELIVERY_TIMEOUT, || maildir(&r.spool, "alice").len() == 1),
        "no bounce reached alice; relay log:\n{}",
        r.server.stderr()
    );
    let bounce = text(&maildir(&r.spool, "alice")[0]);
    assert!(bounce.contains("did not offer 8BITMIME"), "{bounce}");
    assert!(
        !plain.lines().iter().any(|l| l.starts_with("MAIL")),
        "the 8-bit message was offered to a hop without 8BITMIME: {:?}",
        plain.lines()
    );
    send_message(
        r.smtp(),
        "alice@example.test",
        &["carol@remote.test"],
        "Subject: plain\r\n\r\nascii\r\n",
    );
    assert!(
        wait_until(DELIVERY_TIMEOUT, || plain.messages() == 1),
        "the 7-bit message did not reach the hop: {:?}",
        plain.lines()
    );
    let modern = FakeHop::start(
        HopScript {
            eight_bit: true,
            silent_quit: false,
        },
        None,
    );
    let r2 = relay_to("eight_bit_ok", modern.addr, &[]);
    send_message(
        r2.smtp(),
        "alice@example.test",
        &["carol@remote.test"],
        "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n",
    );
    assert!(
        wait_until(DELIVERY_TIMEOUT, || modern.messages() == 1),
        "the 8-bit message did not reach the hop: {:?}",
        modern.lines()
    );
    assert!(
        modern
            .lines()
            .contains(&"MAIL FROM:<alice@example.test> BODY=8BITMIME".to_string())
    );
}

/// `--idle-timeout 1`: a silent SMTP client gets a 421 and is closed.
#[test]
fn idle_smtp_client_gets_421() {
    if !reference_only(RELAY, "idle_smtp_client_gets_421") {
        return;
    }
    let r = relay("idle_timeout", &["--idle-timeout", "1"]);
    let mut wire = Wire::smtp(r.smtp());
    let start = Instant::now();
    expect(&wire.reply(), "421");
    assert!(start.elapsed() >= Duration::from_millis(900));
    let mut rest = Vec::new();
    wire.reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// Connects to `addr`, reads the greeting, sends `prelude`, then sends one
/// byte every 200 ms, never a line break, until the server hangs up.
/// Returns what the server said and how long the trickle lasted.
fn slow_loris(addr: SocketAddr, prelude: &[u8]) -> (String, Duration) {
    let mut wire = Wire::open(addr);
    wire.line(); // the greeting
    wire.send(prelude);
    let socket = wire.writer.try_clone().unwrap();
    let limit = Duration::from_secs(10);
    let (said, closed) = common::trickle(
        &mut wire.reader,
        &mut wire.writer,
        &socket,
        b'N',
        Duration::from_millis(200),
        limit,
    );
    (text(&said), closed.unwrap_or(limit))
}

/// The line clock runs even with the idle timeouts off: an SMTP or POP3
/// client trickling a line one byte at a time (a slow-loris) is dropped
/// once the line is `--line-timeout` old (1 s here; 30 s by default), also
/// when it trickles the rest of an over-long line that the server is
/// skipping. A trickled SMTP command gets a 421 first.
#[test]
fn slow_loris_is_dropped_by_the_line_clock() {
    if !reference_only(RELAY, "slow_loris_is_dropped_by_the_line_clock") {
        return;
    }
    let r = relay(
        "line_clock",
        &[
            "--idle-timeout",
            "0",
            "--pop3-idle-timeout",
            "0",
            "--line-timeout",
            "1",
        ],
    );
    let cases = [
        ("SMTP", r.smtp(), 0),
        ("SMTP after 600 bytes", r.smtp(), 600),
        ("POP3", r.pop3(), 0),
        ("POP3 after 300 bytes", r.pop3(), 300),
    ];
    let running: Vec<_> = cases
        .into_iter()
        .map(|(name, addr, long)| {
            (
                name,
                thread::spawn(move || slow_loris(addr, &vec![b'a'; long])),
            )
        })
        .collect();
    for (name, handle) in running {
        let (said, lasted) = handle.join().unwrap();
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(10)).contains(&lasted),
            "{name}: the slow-loris lasted {lasted:?}, expected about 1 s; it was told {said:?}"
        );
        if name == "SMTP" {
            assert!(
                said.starts_with("421 "),
                "{name}: expected a 421, got {said:?}"
            );
        }
    }
}

/// `--trace` shows the SMTP and POP3 conversations on stderr only.
#[test]
fn trace_shows_smtp_and_pop3() {
    if !reference_only(RELAY, "trace_shows_smtp_and_pop3") {
        return;
    }
    let r = relay("trace", &["--trace"]);
    send_message(
        r.smtp(),
        "alice@example.test",
        &["bob@example.test"],
        "Subject: traced\r\n\r\nhi\r\n",
    );
    let mut wire = Wire::pop3(r.pop3(), "bob", "bob-pw");
    assert!(wire.cmd_line("QUIT").starts_with("+OK"));
    r.server
        .expect_stderr("<- RCPT TO:<bob@example.test>", Duration::from_secs(10));
    r.server.expect_stderr("-> 354 ", Duration::from_secs(10));
    r.server
        .expect_stderr("<- Subject: traced", Duration::from_secs(10));
    r.server
        .expect_stderr("<- USER bob", Duration::from_secs(10));
    assert_eq!(
        r.server.stdout().lines().count(),
        2,
        "stdout holds only the two listening lines"
    );
}

/// `--help` lists every option; a bad option is a usage error (exit 2).
#[test]
fn help_and_bad_flags() {
    if !reference_only(RELAY, "help_and_bad_flags") {
        return;
    }
    let help = AssertCommand::from_std(common::command(RELAY))
        .arg("--help")
        .timeout(Duration::from_secs(30))
        .assert()
        .success();
    let out = text(&help.get_output().stdout);
    for opt in [
        "--smtp-addr",
        "--addr",
        "--pop3-addr",
        "--domain",
        "--spool",
        "--users",
        "--relay-allow",
        "--next-hop",
        "--max-size",
        "--allow",
        "--max-conns",
        "--idle-timeout",
        "--trace",
    ] {
        assert!(out.contains(opt), "--help does not mention {opt}");
    }
    AssertCommand::from_std(common::command(RELAY))
        .args(["--relay-allow", "10.1.2.3/8"])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("10.0.0.0/8"));
    AssertCommand::from_std(common::command(CLIENT))
        .arg("--help")
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stdout(predicate::str::contains("send").and(predicate::str::contains("fetch")));
}

// ---------------------------------------------------------------------------
// Exercises (chapter 7)
// ---------------------------------------------------------------------------

/// Exercise 1: `HELP` answers 214 (RFC 5321 §4.1.1.8).
#[test]
fn exercise_1_help_answers_214() {
    let r = relay("exercise_1", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("HELP"), "214");
    expect(&wire.cmd("help"), "214");
}

/// Exercise 2: `EXPN` (expand a mailing list) is refused without giving
/// anything away: 502 (not implemented) or 252, never a member list.
#[test]
fn exercise_2_expn_gives_nothing_away() {
    let r = relay("exercise_2", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    let reply = wire.cmd("EXPN staff");
    assert!(
        reply.starts_with("502") || reply.starts_with("252"),
        "{reply}"
    );
    expect(&wire.cmd("NOOP"), "250");
}

/// Exercise 3: POP3 `STAT` after `DELE` no longer counts the message,
/// `LIST n` of it is an error, and `RSET` brings it back.
#[test]
fn exercise_3_stat_after_dele() {
    let r = relay("exercise_3", &[]);
    for n in 1..=2 {
        send_message(
            r.smtp(),
            "alice@example.test",
            &["bob@example.test"],
            &format!("Subject: {n}\r\n\r\nbody {n}\r\n"),
        );
    }
    let mut wire = Wire::pop3(r.pop3(), "bob", "bob-pw");
    let before = wire.cmd_line("STAT");
    let sizes: Vec<u64> = before
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse().unwrap())
        .collect();
    assert_eq!(sizes[0], 2, "{before}");
    let first: u64 = wire
        .cmd_line("LIST 1")
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert!(wire.cmd_line("DELE 1").starts_with("+OK"));
    assert_eq!(wire.cmd_line("STAT"), format!("+OK 1 {}", sizes[1] - first));
    assert!(wire.cmd_line("LIST 1").starts_with("-ERR"));
    assert!(wire.cmd_line("RSET").starts_with("+OK"));
    assert_eq!(wire.cmd_line("STAT"), before);
}

/// Exercise 4: a message that already carries 100 `Received:` headers is
/// in a mail loop and is refused with 554; 99 still pass.
#[test]
fn exercise_4_mail_loop_is_refused() {
    let r = relay("exercise_4", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    let with_hops = |n: usize| {
        let mut data =
            "Received: from a.test by b.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(n);
        data.push_str("Subject: loop\r\n\r\nround and round\r\n");
        data
    };
    expect(
        &transaction(
            &mut wire,
            "alice@example.test",
            &["bob@example.test"],
            with_hops(100).as_bytes(),
        ),
        "554",
    );
    expect(
        &transaction(
            &mut wire,
            "alice@example.test",
            &["bob@example.test"],
            with_hops(99).as_bytes(),
        ),
        "250",
    );
    assert_eq!(maildir(&r.spool, "bob").len(), 1);
}

/// `04_mail_relay 7005` (a port without `--addr`) is refused: exit 2 and
/// "did you mean --addr 127.0.0.1:7005?", not a server listening elsewhere.
#[test]
fn stray_argument_is_refused() {
    common::check_stray_argument(RELAY, "127.0.0.1", Duration::from_secs(30));
}

/// Exercise 5: a message whose `Message-ID`, envelope and text match one
/// stored within the last hour (a relay's retry after a crash between the
/// next hop's 250 and its queue removal) is answered 250 and not stored
/// again. Another envelope, another `Message-ID`, other text with the same
/// `Message-ID`, or no `Message-ID` at all: stored.
#[test]
fn exercise_5_duplicate_message_id_is_stored_once() {
    let r = relay("exercise_5", &[]);
    let mut wire = Wire::smtp(r.smtp());
    expect(&wire.cmd("EHLO test.client"), "250");
    let message = |id: &str| {
        format!("Subject: once\r\nMessage-ID: {id}\r\n\r\nonly once, please\r\n").into_bytes()
    };
    let send = |wire: &mut Wire, to: &[&str], data: &[u8]| {
        let reply = transaction(wire, "alice@example.test", to, data);
        expect(&reply, "250");
    };
    send(
        &mut wire,
        &["bob@example.test"],
        &message("<m1@laptop.test>"),
    );
    // The retry: same Message-ID, same envelope.
    send(
        &mut wire,
        &["bob@example.test"],
        &message("<m1@laptop.test>"),
    );
    assert_eq!(
        maildir(&r.spool, "bob").len(),
        1,
        "the duplicate was stored"
    );
    // A folded header line is the same field.
    let folded = b"Message-ID:\r\n <m3@laptop.test>\r\n\r\nfolded\r\n";
    send(&mut wire, &["bob@example.test"], folded);
    send(&mut wire, &["bob@example.test"], folded);
    assert_eq!(
        maildir(&r.spool, "bob").len(),
        2,
        "the folded duplicate was stored"
    );
    // Not duplicates: another Message-ID, another envelope, other text, no
    // Message-ID.
    send(
        &mut wire,
        &["bob@example.test"],
        b"Subject: once\r\nMessage-ID: <m1@laptop.test>\r\n\r\nsomething else\r\n",
    );
    send(
        &mut wire,
        &["bob@example.test"],
        &message("<m2@laptop.test>"),
    );
    send(
        &mut wire,
        &["bob@example.test", "carol@example.test"],
        &message("<m1@laptop.test>"),
    );
    send(
        &mut wire,
        &["bob@example.test"],
        b"Subject: no id\r\n\r\nx\r\n",
    );
    send(
        &mut wire,
        &["bob@example.test"],
        b"Subject: no id\r\n\r\nx\r\n",
    );
    assert_eq!(maildir(&r.spool, "bob").len(), 7);
    assert_eq!(maildir(&r.spool, "carol").len(), 1);
}
