//! POP3, the reading side: `poplib` and `curl` list, read and delete; on
//! the wire, byte-stuffing, one session per mailbox, deletion at `QUIT`
//! only, and the login rules.

use super::*;

/// Python's poplib logs in, lists, reads (TOP, RETR, UIDL) and deletes;
/// the deletion happens at QUIT.
#[test]
fn poplib_lists_reads_and_deletes() {
    if !have("python3", "poplib_lists_reads_and_deletes") {
        return;
    }
    let r = Relay::start("poplib", &[]);
    mail_bob(r.smtp(), "Subject: one\r\n\r\nfirst\r\n");
    mail_bob(r.smtp(), "Subject: two\r\n\r\n..second\r\n");
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
    let r = Relay::start("curl_pop3", &[]);
    mail_bob(r.smtp(), "Subject: for curl\r\n\r\nread me\r\n");
    mail_bob(r.smtp(), "Subject: second\r\n\r\nme too\r\n");
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
    let r = Relay::start("pop3_stuffing", &[]);
    mail_bob(r.smtp(), "Subject: s\r\n\r\n..dot\r\nplain\r\n");
    let mut wire = MailWire::pop3(r.pop3(), "bob", "bob-pw");
    let list = wire.cmd_line("LIST 1");
    let size: usize = list.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(wire.cmd_line("RETR 1").starts_with("+OK"));
    let lines = wire.multiline(); // MailWire::line checks every line ends in CRLF
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
    let r = Relay::start("pop3_lock", &[]);
    let mut first = MailWire::pop3(r.pop3(), "bob", "bob-pw");
    let mut second = MailWire::open(r.pop3());
    assert!(second.line().starts_with("+OK"));
    assert!(second.cmd_line("USER bob").starts_with("+OK"));
    let refused = second.cmd_line("PASS bob-pw");
    assert!(refused.starts_with("-ERR"), "{refused}");
    // Another mailbox is not affected.
    let _alice = MailWire::pop3(r.pop3(), "alice", "alice-pw");
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
    let r = Relay::start("pop3_quit", &[]);
    mail_bob(r.smtp(), "Subject: keep\r\n\r\nme\r\n");
    {
        let mut wire = MailWire::pop3(r.pop3(), "bob", "bob-pw");
        assert!(wire.cmd_line("DELE 1").starts_with("+OK"));
        assert!(
            wire.cmd_line("RETR 1").starts_with("-ERR"),
            "a deleted message is gone for this session"
        );
        // Dropped without QUIT.
    }
    let mut wire = MailWire::open(r.pop3());
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
    let r = Relay::start("pop3_login", &fast_retries());
    let mut wire = MailWire::open(r.pop3());
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
