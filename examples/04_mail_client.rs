//! # 04_mail_client: send mail over SMTP, fetch it over POP3
//!
//! The two halves of a mail program, each a short conversation with a
//! server: `send` speaks SMTP to hand a message over, `fetch` speaks POP3 to
//! list and read a mailbox. Both work with any server that speaks those
//! protocols, not only `04_mail_relay`.
//!
//! ```text
//! cargo run --example 04_mail_relay                         # terminal 1
//! echo 'See you at noon.' | cargo run --example 04_mail_client -- \
//!     send --from alice@example.test --to bob@example.test --subject lunch
//! NETLESSONS_PASSWORD=… cargo run --example 04_mail_client -- fetch --user bob
//! ```
//!
//! Add `--trace` to see every line of the conversation.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

// The relay's message helpers (dot-stuffing, the date format) are exactly
// what a client needs too, so we compile the same file here rather than
// keep a copy.
#[allow(dead_code)]
#[path = "04_mail_relay/message.rs"]
mod message;

use netlessons::auth::new_nonce;
use netlessons::cli::{Command, Matches};
use netlessons::connection::{Connection, LineEnding};
use netlessons::log;
use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::time::SystemTime;

/// Longest reply line we accept from a server.
const MAX_LINE: usize = 64 * 1024;

fn main() -> ExitCode {
    let args = Command::new(
        "04_mail_client",
        "Sends a message over SMTP (send), or lists and prints a mailbox over POP3 (fetch).",
    )
    .positional("send|fetch", "what to do")
    .opt("--addr", "HOST:PORT", "the server [default: 127.0.0.1:2525 for send, 127.0.0.1:1110 for fetch]", None)
    .opt("--from", "ADDRESS", "send: the sender", None)
    .opt("--to", "ADDRESS[,ADDRESS...]", "send: the recipients", None)
    .opt("--subject", "TEXT", "send: the subject line", Some("(no subject)"))
    .opt("--user", "NAME", "fetch: whose mailbox (the password comes from NETLESSONS_PASSWORD)", None)
    .flag("--delete", "fetch: delete the messages after printing them")
    .flag("--trace", "show every message that crosses the wire on stderr")
    .after_help(
        "Examples:\n  \
         echo hello | 04_mail_client send --from alice@example.test --to bob@example.test --subject hi\n  \
         NETLESSONS_PASSWORD=secret 04_mail_client fetch --user bob",
    )
    .parse_env();
    let result = match args.positionals() {
        [cmd] if cmd == "send" => send(&args),
        [cmd] if cmd == "fetch" => fetch(&args),
        [] => args.fail("say what to do: send or fetch"),
        other => args.fail(&format!(
            "unexpected arguments {other:?}: say send or fetch"
        )),
    };
    netlessons::cli::exit_status(result)
}

/// `send`: one SMTP transaction with the message read from stdin.
fn send(args: &Matches) -> io::Result<()> {
    let from = args
        .get("--from")
        .unwrap_or_else(|| args.fail("send needs --from ADDRESS"));
    let to: Vec<&str> = args
        .get("--to")
        .unwrap_or_else(|| args.fail("send needs --to ADDRESS"))
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let subject = args.get("--subject").unwrap_or("(no subject)");
    for field in [from, subject].iter().chain(&to) {
        if field.contains(['\r', '\n']) {
            args.fail("--from, --to and --subject must be single lines");
        }
    }
    let mut body = Vec::new();
    io::stdin().read_to_end(&mut body)?;

    // The message: a header section, a blank line, the body. The envelope
    // (MAIL FROM/RCPT TO below) is what servers route by; these headers are
    // what the reader sees, and they need not agree (think of Bcc).
    let mut text = format!(
        "From: <{from}>\nTo: {}\nSubject: {subject}\nDate: {}\nMessage-ID: <{}@netlessons>\n\n",
        to.iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", "),
        message::rfc5322_date(SystemTime::now()),
        &new_nonce()?[..24],
    )
    .into_bytes();
    // Lines may come from a file with "\r\n" endings: store "\n" only.
    for line in body.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        text.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        text.push(b'\n');
    }

    let addr = args.get("--addr").unwrap_or("127.0.0.1:2525");
    let mut conn = Connection::connect(addr, args.flag("--trace"))?;
    conn.set_line_ending(LineEnding::CrLf);
    expect_smtp(&mut conn, "the greeting", 220)?;
    conn.send_line("EHLO netlessons-client")?;
    expect_smtp(&mut conn, "EHLO", 250)?;
    conn.send_line(format!("MAIL FROM:<{from}>"))?;
    expect_smtp(&mut conn, "MAIL FROM", 250)?;
    for rcpt in &to {
        conn.send_line(format!("RCPT TO:<{rcpt}>"))?;
        expect_smtp(&mut conn, &format!("RCPT TO:<{rcpt}>"), 250)?;
    }
    conn.send_line("DATA")?;
    expect_smtp(&mut conn, "DATA", 354)?;
    message::send_stuffed(&mut conn, message::lines(&text))?;
    let accepted = expect_smtp(&mut conn, "the message", 250)?;
    conn.send_line("QUIT")?;
    let _ = read_smtp_reply(&mut conn);
    println!("sent: {accepted}");
    Ok(())
}

/// Reads one SMTP reply (following `250-` continuation lines) and returns
/// its last line.
fn read_smtp_reply(conn: &mut Connection) -> io::Result<String> {
    loop {
        let line = read_line(conn)?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line);
        }
    }
}

/// Reads a reply and fails unless its code is `code`, quoting the server.
fn expect_smtp(conn: &mut Connection, after: &str, code: u16) -> io::Result<String> {
    let reply = read_smtp_reply(conn)?;
    if reply.get(..3) != Some(&code.to_string()) {
        return Err(io::Error::other(format!(
            "the server refused {after}: {reply}"
        )));
    }
    Ok(reply)
}

fn read_line(conn: &mut Connection) -> io::Result<String> {
    let line = message::read_owed_line(conn, MAX_LINE, "the server closed the connection")?;
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// `fetch`: log in over POP3, list the mailbox and print every message.
fn fetch(args: &Matches) -> io::Result<()> {
    let user = args
        .get("--user")
        .unwrap_or_else(|| args.fail("fetch needs --user NAME"));
    let Ok(password) = std::env::var("NETLESSONS_PASSWORD") else {
        args.fail(&format!("set NETLESSONS_PASSWORD to {user}'s password (the relay prints demo passwords at start)"));
    };
    let addr = args.get("--addr").unwrap_or("127.0.0.1:1110");
    let mut conn = Connection::connect(addr, args.flag("--trace"))?;
    conn.set_line_ending(LineEnding::CrLf);
    expect_pop3(&mut conn, "the greeting")?;
    conn.send_line(format!("USER {user}"))?;
    expect_pop3(&mut conn, "USER")?;
    // The password crosses the wire in the clear (--trace shows it): real
    // mail programs only do this inside TLS.
    conn.send_line(format!("PASS {password}"))?;
    expect_pop3(&mut conn, "the login")?;

    conn.send_line("LIST")?;
    expect_pop3(&mut conn, "LIST")?;
    let mut list = Vec::new();
    for line in read_multiline(&mut conn)? {
        let text = String::from_utf8_lossy(&line).into_owned();
        let mut words = text.split_whitespace();
        if let (Some(n), Some(size)) = (words.next(), words.next()) {
            list.push((n.to_string(), size.to_string()));
        }
    }
    let mut out = io::stdout().lock();
    writeln!(out, "{} message(s) for {user}", list.len())?;
    for (n, size) in &list {
        conn.send_line(format!("RETR {n}"))?;
        expect_pop3(&mut conn, &format!("RETR {n}"))?;
        writeln!(out, "\n--- message {n} ({size} octets) ---")?;
        for line in read_multiline(&mut conn)? {
            out.write_all(&line)?;
            out.write_all(b"\n")?;
        }
        if args.flag("--delete") {
            conn.send_line(format!("DELE {n}"))?;
            expect_pop3(&mut conn, &format!("DELE {n}"))?;
        }
    }
    out.flush()?;
    // QUIT is what makes deletions happen (POP3's UPDATE state).
    conn.send_line("QUIT")?;
    expect_pop3(&mut conn, "QUIT")?;
    if args.flag("--delete") {
        log!("deleted {} message(s)", list.len());
    }
    Ok(())
}

/// Reads a `+OK`/`-ERR` reply; `-ERR` becomes an error quoting the server.
fn expect_pop3(conn: &mut Connection, after: &str) -> io::Result<String> {
    let reply = read_line(conn)?;
    if !reply.starts_with("+OK") {
        return Err(io::Error::other(format!(
            "the server refused {after}: {reply}"
        )));
    }
    Ok(reply)
}

/// Reads the lines of a multi-line POP3 reply up to the lone `.`, undoing
/// byte-stuffing.
fn read_multiline(conn: &mut Connection) -> io::Result<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    loop {
        let line =
            message::read_owed_line(conn, MAX_LINE, "the server closed the connection mid-reply")?;
        if line == b"." {
            return Ok(lines);
        }
        lines.push(
            line.strip_prefix(b".")
                .map_or_else(|| line.clone(), <[u8]>::to_vec),
        );
    }
}
