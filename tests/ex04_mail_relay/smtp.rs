//! SMTP, the receiving side: real clients (`smtplib`, `curl`) deliver into
//! Maildir; the dialogue's order, limits and refusals, on the wire.

use super::*;

/// Python's smtplib sends to a local user; the Maildir file in `new/` holds
/// the message with `\n` endings, a `Received:` header and the envelope sender.
#[test]
fn smtplib_delivers_into_maildir() {
    if !have("python3", "smtplib_delivers_into_maildir") {
        return;
    }
    let r = Relay::start("smtplib_delivers", &[]);
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
    let r = Relay::start("curl_smtp", &[]);
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
    let (r, mut wire) = smtp_session("dots_bare_lf", &[]);
    let data = "Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n.\x20\r\nbare\nlf\nend\r\n\r\nh\u{e9}llo \u{1f600}\r\n";
    expect(&alice_to_bob(&mut wire, data.as_bytes()), "250");
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
    let r = Relay::start("ehlo_multiline", &["--max-size", "123456"]);
    let mut wire = MailWire::smtp(r.smtp());
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
    let r = Relay::start("out_of_order", &[]);
    let mut wire = MailWire::smtp(r.smtp());
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
    let (r, mut wire) = smtp_session("oversize", &["--max-size", "1000"]);
    expect(&wire.cmd("MAIL FROM:<alice@example.test> SIZE=5000"), "552");
    let big = format!(
        "Subject: big\r\n\r\n{}",
        "0123456789012345678901234567890123456789\r\n".repeat(50)
    );
    let reply = alice_to_bob(&mut wire, big.as_bytes());
    expect(&reply, "552");
    // The session is still in step: a small message goes through.
    let reply = alice_to_bob(&mut wire, b"Subject: small\r\n\r\nok\r\n");
    expect(&reply, "250");
    let mail = maildir(&r.spool, "bob");
    assert_eq!(mail.len(), 1, "only the small message is stored");
    assert!(text(&mail[0]).contains("Subject: small"));
}

/// A command line may be 512 bytes with its CRLF; a longer one gets 500 and
/// the session carries on.
#[test]
fn command_line_limit_is_512_bytes() {
    let (_relay, mut wire) = smtp_session("command_limit", &[]);
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
    let (_relay, mut wire) = smtp_session("control_chars", &[]);
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
    let (r, mut wire) = smtp_session("text_limit", &[]);
    let ok_line = "y".repeat(998);
    let ok = format!("Subject: at limit\r\n\r\n{ok_line}\r\n");
    expect(&alice_to_bob(&mut wire, ok.as_bytes()), "250");
    let too_long = format!("Subject: over\r\n\r\n{}\r\nafter\r\n", "z".repeat(999));
    let reply = alice_to_bob(&mut wire, too_long.as_bytes());
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
    let r = Relay::start_in(&temp_dir("recipient_limit"), &numbered_users(101), &[]);
    let spool = &r.spool;
    let mut wire = MailWire::ehlo(r.smtp(), "test.client");
    expect(&wire.cmd("MAIL FROM:<alice@example.test>"), "250");
    for i in 0..100 {
        expect(&wire.cmd(&format!("RCPT TO:<u{i}@example.test>")), "250");
    }
    expect(&wire.cmd("RCPT TO:<u100@example.test>"), "452");
    expect(&wire.cmd("DATA"), "354");
    wire.send(b"Subject: many\r\n\r\nhi all\r\n.\r\n");
    expect(&wire.reply(), "250");
    assert_eq!(maildir(spool, "u99").len(), 1);
    assert_eq!(maildir(spool, "u100").len(), 0);
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
    let r = Relay::start_in(&temp_dir("recipients_121"), &numbered_users(121), &[]);
    let spool = &r.spool;
    let smtp = r.smtp();
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
        assert_eq!(maildir(spool, &format!("u{i}")).len(), 1, "u{i}'s mailbox");
    }
    for i in 100..121 {
        assert_eq!(maildir(spool, &format!("u{i}")).len(), 0, "u{i}'s mailbox");
    }
}

/// A lone CR or a NUL anywhere in the text (`\r.\r\n`, which a next hop
/// taking CR as a line end would read as the end of the message, or
/// `a\0b`) gets `550 5.6.0` after the dot and nothing is stored; the
/// session goes on, and a clean message is delivered.
#[test]
fn bare_cr_or_nul_gets_550_and_nothing_is_stored() {
    let (r, mut wire) = smtp_session("bare_cr_nul", &[]);
    for data in [
        &b"Subject: cr\r\n\r\nfirst\r.\rMAIL FROM:<boss@example.test>\r\n"[..],
        b"Subject: cr at the end\r\n\r\nlast\r\r\n",
        b"Subject: nul\r\n\r\na\0b\r\n",
    ] {
        let reply = alice_to_bob(&mut wire, data);
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
    let reply = alice_to_bob(&mut wire, b"Subject: clean\r\n\r\nfine\r\n");
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
    let r = Relay::start("smuggling", &[]);
    for end in ["\n.\n", "\n.\r\n", "\r\n.\n"] {
        let mut wire = MailWire::ehlo(r.smtp(), "test.client");
        let data = format!(
            "Subject: outer\r\n\r\nhello{end}MAIL FROM:<boss@example.test>\r\n\
             RCPT TO:<carol@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\npay now\r\n"
        );
        let reply = alice_to_bob(&mut wire, data.as_bytes());
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
    let (_relay, mut wire) = smtp_session("brackets", &[]);
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
    let (r, mut wire) = smtp_session("unknown_user", &[]);
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
    let r = Relay::start("several_domains", &["--domain", "one.test,Two.Test"]);
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
    let r = Relay::start("concurrent_senders", &[]);
    let addr = r.smtp();
    let senders: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let mut wire = MailWire::ehlo(addr, "test.client");
                for k in 0..10 {
                    let data = format!("Subject: {i}-{k}\r\n\r\nmessage {i}-{k}\r\n");
                    expect(&alice_to_bob(&mut wire, data.as_bytes()), "250");
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

/// A users file of `n` users, `u0:pw0` to `u{n-1}:pw{n-1}`.
fn numbered_users(n: usize) -> String {
    (0..n).map(|i| format!("u{i}:pw{i}\n")).collect()
}
