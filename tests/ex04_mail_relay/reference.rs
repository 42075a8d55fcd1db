//! Features of the reference relay a learner's program need not have:
//! permanent refusals, idle and line clocks, the error limit, demo
//! mailboxes, `--max-conns`, `--trace` and `--help`.

use super::*;

/// A permanent refusal from the next hop (`550` for an unknown user there)
/// is not retried: the message moves to `.queue/failed/` and the reason is logged.
#[test]
fn permanent_refusal_by_next_hop_is_not_retried() {
    if !reference_only(RELAY, "permanent_refusal_by_next_hop_is_not_retried") {
        return;
    }
    let hop2 = Relay::remote("refusal_hop2", "127.0.0.1:0", &[]);
    let hop1 = relay_to("refusal_hop1", hop2.smtp(), &[]);
    from_alice(
        hop1.smtp(),
        "nobody@remote.test",
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
    let r = Relay::start("pop3_idle", &["--pop3-idle-timeout", "1"]);
    mail_bob(r.smtp(), "Subject: stay\r\n\r\nx\r\n");
    let mut wire = MailWire::pop3(r.pop3(), "bob", "bob-pw");
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
    let r = Relay::start("too_many_errors", &[]);
    let mut wire = MailWire::smtp(r.smtp());
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
    let server = start_relay(&["--spool", spool.to_str().unwrap()]);
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
    let r = Relay::start("max_conns", &["--max-conns", "1"]);
    let _smtp = MailWire::smtp(r.smtp());
    let mut extra = MailWire::open(r.smtp());
    assert_eq!(extra.line(), "421 4.7.0 too many connections");
    let mut pop = MailWire::open(r.pop3());
    assert!(pop.line().starts_with("+OK"));
    let mut extra = MailWire::open(r.pop3());
    assert_eq!(extra.line(), "-ERR too many connections");
}

/// `--idle-timeout 1`: a silent SMTP client gets a 421 and is closed.
#[test]
fn idle_smtp_client_gets_421() {
    if !reference_only(RELAY, "idle_smtp_client_gets_421") {
        return;
    }
    let r = Relay::start("idle_timeout", &["--idle-timeout", "1"]);
    let mut wire = MailWire::smtp(r.smtp());
    let start = Instant::now();
    expect(&wire.reply(), "421");
    assert!(start.elapsed() >= Duration::from_millis(900));
    let mut rest = Vec::new();
    wire.reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
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
    let r = Relay::start("line_clock", &LINE_CLOCK_ONLY);
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
    let r = Relay::start("trace", &["--trace"]);
    mail_bob(r.smtp(), "Subject: traced\r\n\r\nhi\r\n");
    let mut wire = MailWire::pop3(r.pop3(), "bob", "bob-pw");
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

/// Connects to `addr`, reads the greeting, sends `prelude`, then sends one
/// byte every 200 ms, never a line break, until the server hangs up.
/// Returns what the server said and how long the trickle lasted.
fn slow_loris(addr: SocketAddr, prelude: &[u8]) -> (String, Duration) {
    let mut wire = MailWire::open(addr);
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
