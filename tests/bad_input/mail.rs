//! The mail relay (`04_mail_relay`) under bad input: SMTP and POP3 garbage,
//! its spam filters under garbage, slow-loris lines and bodies, bounded
//! memory for half-sent messages, a flood past `--max-conns`, and parallel
//! POP3 password guessing.

use super::*;
use common::files_under;
use common::mail::{LINE_CLOCK_ONLY, MailWire, Relay};

/// Mail relay: 4,000 garbage sessions on SMTP and POP3 (bad commands and
/// addresses, `SIZE=` huge, DATA never finished, over-long lines, too big,
/// looping, wrong passwords, `RETR 99999999999999999999`) store nothing and
/// leave no thread; then a real message is sent and fetched, and the spool
/// holds that message alone. (Reference only: it relies on the hidden
/// `--auth-delay-ms`; at the default 500 ms per wrong password it would take minutes.)
#[test]
fn mail_relay_survives_garbage() {
    if !reference_only(MAIL, "mail_relay_survives_garbage") {
        return;
    }
    let ctx = Ctx::new("mail_relay_survives_garbage");
    let (mut server, spool) = start_relay("mail", &[]);
    let before = baseline(&server);
    let (smtp, pop3) = (server.addr_of("smtp"), server.addr_of("pop3"));
    hammer(
        &ctx,
        "garbage SMTP and POP3 sessions",
        4000,
        move |rng, log| {
            if rng.below(5) < 3 {
                smtp_session(smtp, rng, log)
            } else {
                pop3_session(pop3, rng, log)
            }
        },
    );
    still_up(&ctx, &mut server);
    threads_settle(&ctx, &server, before);
    assert_eq!(
        files_under(&spool),
        Vec::<String>::new(),
        "the garbage left files in the spool\n{}",
        ctx.about()
    );

    send_and_fetch_one(&ctx, smtp, pop3);

    let files = files_under(&spool);
    assert!(
        files.len() == 1 && files[0].starts_with("bob/new/"),
        "the spool should hold bob's one message, and holds {files:?}\n{}",
        ctx.about()
    );
    threads_settle(&ctx, &server, before);
}

/// Mail relay, spam filters (chapter 11): 800 sessions from a client
/// outside `--relay-allow` (loopback is moved outside): garbage sent before
/// the greeting, a flood of made-up senders (each a new greylist triplet),
/// and random rule-triggering messages (GTUBE, forged `X-Spam-*` fields,
/// folded lines, capitals, a forged local `From:`) from a sender that passed
/// greylisting. Afterwards the relay is up with no thread left behind, the
/// passed sender still passes, the greylist holds at most its cap (50 here)
/// after a restart, and every stored message carries exactly one verdict of
/// ours, with GTUBE always in `.Junk`.
#[test]
fn mail_relay_filters_survive_garbage() {
    if !reference_only(MAIL, "mail_relay_filters_survive_garbage") {
        return;
    }
    let ctx = Ctx::new("mail_relay_filters_survive_garbage");
    let filters = [
        "--relay-allow",
        "::1/128",
        "--greet-wait-ms",
        "500",
        "--greylist-ms",
        "300",
        "--greylist-max",
        "50",
    ];
    let (mut server, spool) = start_relay("filters", &filters);
    let smtp = server.addr_of("smtp");
    pass_greylisting(smtp);
    let before = baseline(&server);
    hammer(
        &ctx,
        "filter sessions from outside",
        800,
        move |rng, log| match rng.below(3) {
            0 => talk_before_greeting(smtp, rng, log),
            1 => made_up_sender(smtp, rng, log),
            _ => rule_triggering_message(smtp, rng, log),
        },
    );
    still_up(&ctx, &mut server);
    threads_settle(&ctx, &server, before);
    assert!(
        rcpt_accepted(smtp, FRIEND),
        "the flood pushed out a passed sender"
    );

    check_verdicts(&ctx, &spool);

    greylist_kept_after_restart(server, &spool, &filters);
}

/// Mail relay (`--line-timeout 1`, idle timeouts off): slow-loris clients are
/// dropped after about a second on SMTP (in a command, in the rest of an
/// over-long command, in a message's text) and on POP3 (in a command, in
/// the rest of an over-long one); the half-received message is not stored.
#[test]
fn slow_loris_is_dropped_mail_relay() {
    if !reference_only(MAIL, "slow_loris_is_dropped_mail_relay") {
        return;
    }
    let ctx = Ctx::new("slow_loris_is_dropped_mail_relay");
    let (server, spool) = start_relay("loris", &LINE_CLOCK_ONLY);
    let before = baseline(&server);
    let (smtp, pop3) = (server.addr_of("smtp"), server.addr_of("pop3"));
    let greeted = |addr: SocketAddr, prelude: &'static [u8], byte: u8| -> LorisSetup {
        Box::new(move || {
            let mut stream = raw(addr);
            let greeting = raw_line(&mut stream);
            assert!(
                greeting.starts_with("220") || greeting.starts_with("+OK"),
                "{greeting}"
            );
            stream.write_all(prelude).unwrap();
            (stream, byte)
        })
    };
    let long_smtp: &'static [u8] = Box::leak(vec![b'a'; 600].into_boxed_slice());
    let long_pop3: &'static [u8] = Box::leak(vec![b'a'; 300].into_boxed_slice());
    let got = lorises(vec![
        ("SMTP command", greeted(smtp, b"EH", b'L')),
        ("SMTP over-long command", greeted(smtp, long_smtp, b'a')),
        (
            "SMTP message text",
            greeted(
                smtp,
                b"EHLO x\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: half\r\n\r\nnever fin",
                b'i',
            ),
        ),
        ("POP3 command", greeted(pop3, b"US", b'E')),
        ("POP3 over-long command", greeted(pop3, long_pop3, b'a')),
    ]);
    for (name, text) in &got {
        if name.starts_with("SMTP") && !name.contains("over-long") {
            assert!(
                String::from_utf8_lossy(text).contains("421 "),
                "{name}: expected a 421 before the close, got {}",
                show(text)
            );
        }
    }
    let mut wire = MailWire::smtp(smtp);
    wire.cmd_expect("NOOP", "250");
    assert_eq!(
        files_under(&spool),
        Vec::<String>::new(),
        "a half-received message was stored"
    );
    drop(wire);
    threads_settle(&ctx, &server, before);
}

/// Mail relay (`--line-timeout 1`, idle timeout 30 s): a client that sends
/// its message text one empty line every 200 ms (5 bytes/s, each line
/// finished at once, so neither the line clock nor the idle clock ever
/// rings) is dropped by the body clock after about a second, as the file
/// server drops a trickled upload: told `421`, the reason logged, nothing
/// stored.
#[test]
fn slow_message_body_is_dropped_mail_relay() {
    if !reference_only(MAIL, "slow_message_body_is_dropped_mail_relay") {
        return;
    }
    let ctx = Ctx::new("slow_message_body_is_dropped_mail_relay");
    let (server, spool) = start_relay(
        "slow-body",
        &["--idle-timeout", "30", "--line-timeout", "1"],
    );
    let before = baseline(&server);
    let smtp = server.addr_of("smtp");
    let got = lorises(vec![(
        "SMTP message text, a line at a time",
        Box::new(move || {
            let mut stream = raw(smtp);
            assert!(raw_line(&mut stream).starts_with("220"));
            stream
                .write_all(b"HELO x\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
                .unwrap();
            for expected in ["250", "250", "250", "354"] {
                let reply = raw_line(&mut stream);
                assert!(
                    reply.starts_with(expected),
                    "expected {expected}, got {reply:?}"
                );
            }
            (stream, b'\n')
        }),
    )]);
    let text = String::from_utf8_lossy(&got[0].1);
    assert!(
        text.starts_with("421 "),
        "expected a 421 before the close, got {text:?}"
    );
    server.expect_stderr("message arrived too slowly", Duration::from_secs(5));
    let mut wire = MailWire::smtp(smtp);
    wire.cmd_expect("NOOP", "250");
    drop(wire);
    assert_eq!(
        files_under(&spool),
        Vec::<String>::new(),
        "a half-received message was stored"
    );
    threads_settle(&ctx, &server, before);
}

/// Mail relay (`--max-size` 8 MiB): 32 clients each send 2 MiB of a 4 MiB
/// message and hold it there. Until the relay has taken all 64 MiB (seen
/// in its `SPOOL/.incoming/` files, where the reference streams message
/// text, so a busy machine only makes the test wait), its resident memory
/// grows by less than 16 MiB. When the clients hang up, nothing is left in
/// the spool, and a real message is still delivered. (Reference only, and
/// skipped without `/proc`.)
#[test]
fn mail_relay_memory_stays_bounded() {
    if !reference_only(MAIL, "mail_relay_memory_stays_bounded") {
        return;
    }
    let (server, spool) = start_relay(
        "rss",
        // A long line clock: on a loaded machine the last client may take
        // a while to send its share, and the first ones sit silent meanwhile.
        &["--max-size", "8388608", "--line-timeout", "120"],
    );
    let pid = server.pid();
    let smtp = server.addr_of("smtp");
    // One message first, so that what any delivery allocates once is in
    // the baseline.
    let mut wire = MailWire::smtp(smtp);
    wire.cmd_expect("HELO warm.test", "250");
    assert!(to_bob(&mut wire, "Subject: warm-up\r\n\r\nfirst\r\n").starts_with("250"));
    let Some(rss_before) = resident_bytes(pid) else {
        say("mail_relay_memory_stays_bounded: skipped (no /proc/PID/status)");
        return;
    };
    let clients = hold_half_sent(smtp);
    let rss = watch_memory(pid, &spool.join(".incoming"), rss_before);
    say(&format!(
        "mail_relay_memory_stays_bounded: {HALF_SENT_CLIENTS} half-sent messages of \
         {} KiB each: memory grew by {} KiB",
        HALF_SENT_BYTES / 1024,
        rss.saturating_sub(rss_before) / 1024
    ));
    drop(clients);
    // The hang-ups remove the half-received messages (each connection's
    // thread notices its client went, in its own time).
    let deadline = Instant::now() + Duration::from_secs(60);
    while files_under(&spool).len() > 1 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(to_bob(&mut wire, "Subject: after\r\n\r\nstill here\r\n").starts_with("250"));
    let files = files_under(&spool);
    assert!(
        files.len() == 2 && files.iter().all(|f| f.starts_with("bob/new/")),
        "the spool should hold bob's two messages, and holds {files:?}"
    );
}

/// Mail relay (`--max-conns 2`, a limit per listener): 200 more SMTP clients
/// get `421 4.7.0 too many connections`, 200 more POP3 clients `-ERR too
/// many connections`; the sessions already open carry on.
#[test]
fn max_conns_flood_mail_relay() {
    if !reference_only(MAIL, "max_conns_flood_mail_relay") {
        return;
    }
    let ctx = Ctx::new("max_conns_flood_mail_relay");
    let (server, spool) = start_relay("flood", &["--max-conns", "2"]);
    let before = baseline(&server);
    let (smtp, pop3) = (server.addr_of("smtp"), server.addr_of("pop3"));
    let mut smtp_held: Vec<MailWire> = (0..2).map(|_| MailWire::ehlo(smtp, "held.test")).collect();
    let mut pop3_held: Vec<MailWire> = ["alice", "bob"]
        .iter()
        .map(|user| MailWire::pop3(pop3, user, &format!("{user}-pw")))
        .collect();
    flood(&ctx, smtp, b"421 4.7.0 too many connections\r\n");
    flood(&ctx, pop3, b"-ERR too many connections\r\n");
    for wire in &mut smtp_held {
        wire.cmd_expect("NOOP", "250");
    }
    for wire in &mut pop3_held {
        assert_eq!(wire.cmd_ok("STAT"), "+OK 0 0");
    }
    drop(smtp_held.pop());
    drop(pop3_held.pop());
    eventually_admitted("smtp", || {
        let mut stream = raw(smtp);
        raw_line(&mut stream).starts_with("220")
    });
    eventually_admitted("pop3", || {
        let mut stream = raw(pop3);
        raw_line(&mut stream).starts_with("+OK")
    });
    drop((smtp_held, pop3_held));
    assert_eq!(files_under(&spool), Vec::<String>::new());
    threads_settle(&ctx, &server, before);
}

/// POP3 (`--auth-delay-ms 20`): 40 wrong `PASS`es sent at once from one
/// address get at most a dozen `-ERR [AUTH]` answers in 3 s, not 40.
#[test]
fn parallel_guessing_pop3() {
    if !reference_only(MAIL, "parallel_guessing_pop3") {
        return;
    }
    let (server, _spool) = start_relay(
        "guessing",
        &["--auth-delay-ms", "20", "--free-failures", "5"],
    );
    let denied = guess_flood(
        server.addr_of("pop3"),
        |stream| {
            assert!(raw_line(stream).starts_with("+OK"));
            stream.write_all(b"USER alice\r\n").unwrap();
            assert!(raw_line(stream).starts_with("+OK"));
            b"PASS a-guess\r\n".to_vec()
        },
        "-ERR [AUTH]",
    );
    assert!(
        (5..=GUESS_ANSWERS_MAX).contains(&denied),
        "{denied} of {GUESSES} parallel guesses answered within {GUESS_WATCH:?}"
    );
    server.expect_stderr("too many failed logins from this address", REPLY_TIMEOUT);
}

/// The real session after the garbage: a message to bob, fetched back over
/// POP3 with its subject and text intact.
fn send_and_fetch_one(ctx: &Ctx, smtp: SocketAddr, pop3: SocketAddr) {
    let subject = format!("after the garbage {}", ctx.seed);
    let mut wire = MailWire::ehlo(smtp, "checker.test");
    let reply = to_bob(
        &mut wire,
        &format!("Subject: {subject}\r\n\r\nstill here\r\n"),
    );
    assert!(
        reply.starts_with("250"),
        "the message was refused: {reply:?}\n{}",
        ctx.about()
    );
    wire.cmd_expect("QUIT", "221");

    let mut wire = MailWire::pop3(pop3, "bob", "bob-pw");
    let stat = wire.cmd_ok("STAT");
    assert!(
        stat.starts_with("+OK 1 "),
        "bob's mailbox: {stat:?}\n{}",
        ctx.about()
    );
    wire.cmd_ok("RETR 1");
    let message: String = wire.multiline().iter().map(|l| format!("{l}\n")).collect();
    assert!(
        message.contains(&format!("Subject: {subject}\n\nstill here\n")),
        "{message}"
    );
    wire.cmd_ok("QUIT");
}

/// Retries [`FRIEND`] as a real server does until it passes greylisting.
fn pass_greylisting(smtp: SocketAddr) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    while !rcpt_accepted(smtp, FRIEND) {
        assert!(
            Instant::now() < deadline,
            "{FRIEND} never passed greylisting"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Every message the filter sessions left in the spool carries exactly one
/// verdict of ours, its folder matches it, and GTUBE is always in `.Junk`.
fn check_verdicts(ctx: &Ctx, spool: &Path) {
    let mut stored = 0;
    for name in files_under(spool) {
        if name == ".greylist" {
            continue;
        }
        let in_junk = name.starts_with("bob/.Junk/new/");
        assert!(
            in_junk || name.starts_with("bob/new/") || name == "bob/.Junk/maildirfolder",
            "unexpected file {name}\n{}",
            ctx.about()
        );
        if name.ends_with("maildirfolder") {
            continue;
        }
        stored += 1;
        let text = String::from_utf8_lossy(&fs::read(spool.join(&name)).unwrap()).into_owned();
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        let fields = |prefix: &str| {
            head.lines()
                .filter(|l| l.to_ascii_lowercase().starts_with(prefix))
                .count()
        };
        assert_eq!(fields("x-spam-status:"), 1, "{name}:\n{text}");
        assert_eq!(fields("x-spam-level:"), 1, "{name}:\n{text}");
        assert!(
            fields("x-spam-flag:") <= 1 && !head.contains("FAKED"),
            "{name}:\n{text}"
        );
        assert_eq!(
            in_junk,
            head.contains("X-Spam-Flag: YES"),
            "{name}:\n{text}"
        );
        if body.contains(GTUBE) {
            assert!(in_junk, "GTUBE in the inbox: {name}");
        }
    }
    assert!(stored > 0, "no message was stored\n{}", ctx.about());
}

/// A restart compacts the greylist's log: the table is within its cap (50)
/// on disk too, and the passed sender still passes.
fn greylist_kept_after_restart(mut server: Server, spool: &Path, filters: &[&str]) {
    server.kill();
    let dir = spool.parent().unwrap();
    let relay = Relay::start_in(dir, MAIL_USERS, filters);
    let table = fs::read_to_string(spool.join(".greylist")).unwrap();
    let entries = table.lines().filter(|l| !l.starts_with('#')).count();
    assert!(entries <= 50, "{entries} triplets kept, the cap is 50");
    assert!(
        rcpt_accepted(relay.smtp(), FRIEND),
        "forgot a passed sender"
    );
}

/// SMTP commands with wrong arguments, broken addresses and huge sizes.
/// None of them names a recipient that would be accepted, so no sequence of
/// them can ever reach `354`, let alone store a message.
const SMTP_JUNK: &[&str] = &[
    "HELO",
    "EHLO",
    "EHLO ",
    "EHLO [127.0.0.1]",
    "helo a b c",
    "MAIL",
    "MAIL FROM:",
    "MAIL FROM:<",
    "MAIL FROM:<>",
    "MAIL FROM:<alice@example.test",
    "MAIL FROM:alice@example.test",
    "MAIL FROM:<alice@example.test> SIZE=99999999999999999999",
    "MAIL FROM:<alice@example.test> SIZE=18446744073709551616",
    "MAIL FROM:<alice@example.test> SIZE=999999",
    "MAIL FROM:<alice@example.test> SIZE=-1",
    "MAIL FROM:<alice@example.test> SIZE=",
    "MAIL FROM:<alice@example.test> SIZE",
    "MAIL FROM:<alice@example.test>SIZE=10",
    "MAIL FROM:<alice@example.test> BODY=BINARYMIME",
    "MAIL FROM:<@a,@b:alice@example.test>",
    "MAIL FROM:<@:>",
    "MAIL FROM:<@>",
    "MAIL FROM:<a@>",
    "MAIL FROM:<x@[300.1.1.1]>",
    "MAIL FROM:<x@[IPv6:zz::1]>",
    "MAIL FROM:<é@example.test>",
    "mail from:<a@ex\u{e4}mple.test>",
    "RCPT",
    "RCPT TO:",
    "RCPT TO:<>",
    "RCPT TO:<nobody@example.test>",
    "RCPT TO:<../../etc@example.test>",
    "RCPT TO:<.queue@example.test>",
    "RCPT TO:<bob@elsewhere.test>",
    "RCPT TO:<bob@example.test> NOTIFY=NEVER",
    "RCPT TO:<bob@example.test>NOTIFY=NEVER",
    "RCPT TO:<x@-bad-.test>",
    "RCPT TO:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.test>",
    "DATA",
    "DATA x",
    "BDAT 99999999999999999999 LAST",
    "RSET",
    "RSET x",
    "NOOP",
    "VRFY",
    "VRFY bob",
    "EXPN staff",
    "HELP",
    "AUTH PLAIN AGJvYgBib2ItcHc=",
    "STARTTLS",
    "TURN",
    "QUIT now",
    ".",
    "",
    " ",
];

/// One SMTP command line of garbage. Over 512 bytes it gets `500 line too
/// long`, and the session carries on.
fn smtp_junk(rng: &mut Rng) -> Vec<u8> {
    let prefixes = ["MAIL FROM:<", "RCPT TO:<", "EHLO ", "VRFY "];
    junk_command(rng, ("MAIL FROM:<", 510, 3000), &prefixes, SMTP_JUNK)
}

/// One command line of garbage: random bytes; a line of `over.0` and at
/// least `over.1` more bytes (up to `over.2` beyond that), past the line
/// limit; broken UTF-8 after one of `prefixes`; or a line of `table`.
fn junk_command(
    rng: &mut Rng,
    over: (&str, usize, u64),
    prefixes: &[&str],
    table: &[&str],
) -> Vec<u8> {
    match rng.below(8) {
        0 => junk(rng),
        1 => {
            let mut line = over.0.as_bytes().to_vec();
            let len = over.1 + rng.below(over.2) as usize;
            line.extend(printable(rng, len));
            line
        }
        2 => {
            let mut line = pick(rng, prefixes).as_bytes().to_vec();
            line.extend(broken_utf8(rng));
            line
        }
        _ => pick(rng, table).as_bytes().to_vec(),
    }
}

/// A message line that can never end the message: it starts with a letter
/// (the end is a line holding a single `.`), and holds no line break.
fn safe_text_line(rng: &mut Rng) -> Vec<u8> {
    let mut line = b"x".to_vec();
    match rng.below(3) {
        0 => line.extend(broken_utf8(rng)),
        1 => {
            let len = rng.below(80) as usize;
            line.extend(
                rng.bytes(len)
                    .into_iter()
                    .filter(|&b| b != b'\n' && b != b'\r'),
            );
        }
        _ => {
            let len = rng.below(80) as usize;
            line.extend(printable(rng, len));
        }
    }
    line
}

/// The lines of a transaction that gets as far as `354` (a correct greeting,
/// sender and recipient), then a message that must never be stored: it is
/// never finished, or it breaks a limit before its final dot.
fn smtp_transaction(rng: &mut Rng) -> (Vec<Vec<u8>>, bool) {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let greeting = pick(rng, &["EHLO client.test", "HELO client.test", "ehlo x"]);
    lines.push(greeting.as_bytes().to_vec());
    let from = pick(
        rng,
        &[
            "MAIL FROM:<alice@example.test>",
            "MAIL FROM:<>",
            "mail from:<alice@example.test> size=100",
            "MAIL FROM:<alice@example.test> BODY=8BITMIME",
        ],
    );
    lines.push(from.as_bytes().to_vec());
    for _ in 0..1 + rng.below(3) {
        let rcpt = pick(
            rng,
            &[
                "RCPT TO:<bob@example.test>",
                "rcpt to:<ALICE@Example.Test>",
                "RCPT TO:<postmaster>",
                "RCPT TO:<nobody@example.test>",
            ],
        );
        lines.push(rcpt.as_bytes().to_vec());
    }
    lines.push(b"RCPT TO:<bob@example.test>".to_vec());
    lines.push(b"DATA".to_vec());
    let kind = rng.below(4);
    if kind != 3 {
        for _ in 0..rng.below(12) {
            lines.push(safe_text_line(rng));
        }
    }
    match kind {
        // Never finished: the session ends inside DATA, maybe with the final
        // dot sent but not its line ending.
        0 => {
            if rng.below(2) == 0 {
                lines.push(b".".to_vec());
            }
            (lines, true)
        }
        // A line over 1000 bytes, then the dot: 500, nothing stored.
        1 => {
            let mut line = b"x".to_vec();
            let len = 999 + rng.below(4000) as usize;
            line.extend(printable(rng, len));
            lines.push(line);
            lines.push(b".".to_vec());
            (lines, false)
        }
        // Over --max-size, then the dot: 552, nothing stored.
        2 => {
            let mut size = 0;
            while size <= MAIL_MAX_SIZE {
                let mut line = b"x".to_vec();
                line.extend(printable(rng, 200));
                size += line.len() + 2;
                lines.push(line);
            }
            lines.push(b".".to_vec());
            (lines, false)
        }
        // A message that has been through 100 relays (1,300 bytes of
        // headers, under --max-size): a mail loop, 554, nothing stored.
        _ => {
            lines.extend(vec![b"Received: x".to_vec(); 100]);
            lines.push(b"".to_vec());
            lines.push(b"xbody".to_vec());
            lines.push(b".".to_vec());
            (lines, false)
        }
    }
}

/// One garbage SMTP session: junk commands, or a transaction whose message
/// must not be stored; pipelined, without waiting for replies.
fn smtp_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let mut bytes = Vec::new();
    if rng.below(3) == 0 {
        let (lines, unfinished) = smtp_transaction(rng);
        for (i, line) in lines.iter().enumerate() {
            bytes.extend_from_slice(line);
            let last = i + 1 == lines.len();
            if unfinished && last {
                // The last line of an unfinished message may be cut anywhere,
                // but it must never become a lone "." line.
                if line != b"." && rng.below(2) == 0 {
                    bytes.extend_from_slice(b"\r\n");
                }
            } else {
                bytes.extend_from_slice(if rng.below(4) == 0 { b"\n" } else { b"\r\n" });
            }
        }
        if !unfinished && rng.below(2) == 0 {
            // After the refused message, more junk commands.
            let more: Vec<Vec<u8>> = (0..rng.below(4)).map(|_| smtp_junk(rng)).collect();
            bytes.extend(lines_to_bytes(rng, &more, true));
        }
    } else {
        let lines: Vec<Vec<u8>> = (0..1 + rng.below(8)).map(|_| smtp_junk(rng)).collect();
        bytes = lines_to_bytes(rng, &lines, true);
    }
    let end = Ending::pick(rng, true); // the greeting is certain
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &bytes);
    s.end(end).map(drop)
}

/// POP3 commands with wrong arguments and huge numbers.
const POP3_JUNK: &[&str] = &[
    "USER",
    "USER ",
    "USER nobody",
    "USER ../../etc/passwd",
    "USER .queue",
    "PASS",
    "PASS ",
    "PASS wrong",
    "APOP bob 0123456789abcdef0123456789abcdef",
    "AUTH",
    "AUTH PLAIN",
    "STLS",
    "CAPA",
    "CAPA x",
    "STAT",
    "LIST",
    "LIST 0",
    "LIST -1",
    "LIST 99999999999999999999",
    "LIST abc",
    "UIDL",
    "UIDL 1 2",
    "RETR",
    "RETR 0",
    "RETR 1",
    "RETR -1",
    "RETR 99999999999999999999",
    "TOP",
    "TOP 1",
    "TOP 1 -1",
    "TOP 1 99999999999999999999",
    "TOP x y",
    "DELE",
    "DELE 0",
    "DELE 1",
    "DELE 99999999999999999999",
    "RSET",
    "RSET x",
    "NOOP",
    "NOOP x",
    "QUIT now",
    ".",
    "",
    " ",
];

/// One POP3 command line of garbage. Over 255 bytes it gets `-ERR line
/// too long`, and the session carries on.
fn pop3_junk(rng: &mut Rng) -> Vec<u8> {
    let prefixes = ["USER ", "PASS ", "RETR ", "TOP 1 "];
    junk_command(rng, ("USER ", 253, 2000), &prefixes, POP3_JUNK)
}

/// One garbage POP3 session: junk commands, maybe after a correct login or
/// a few wrong passwords; pipelined, without waiting for replies.
fn pop3_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let mut bytes = Vec::new();
    match rng.below(3) {
        // A correct login (mailboxes are empty during the garbage), then
        // junk. Two sessions may want the same mailbox: one gets [IN-USE].
        0 => {
            let user = pick(rng, &["alice", "bob", "BOB"]);
            let password = format!("{}-pw", user.to_lowercase());
            bytes.extend(format!("USER {user}\r\nPASS {password}\r\n").bytes());
        }
        // Wrong passwords: after the third, the server hangs up.
        1 => {
            for _ in 0..1 + rng.below(4) {
                let pass = pick(rng, &["PASS bob", "PASS  bob-pw", "PASS bob-pw ", "PASS"]);
                bytes.extend(format!("USER bob\r\n{pass}\r\n").bytes());
            }
        }
        _ => {}
    }
    let lines: Vec<Vec<u8>> = (0..1 + rng.below(8)).map(|_| pop3_junk(rng)).collect();
    bytes.extend(lines_to_bytes(rng, &lines, true));
    let end = Ending::pick(rng, true); // the greeting is certain
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &bytes);
    s.end(end).map(drop)
}

/// A mail relay with `extra` flags; returns it and its spool folder.
fn start_relay(test: &str, extra: &[&str]) -> (Server, PathBuf) {
    let dir = temp_dir(&format!("bad-input-mail-{test}"));
    let max = MAIL_MAX_SIZE.to_string();
    let mut args = vec![
        "--max-size",
        &max,
        "--auth-delay-ms",
        "1",
        // Thousands of wrong passwords from one address, on purpose: no
        // slowing down (the throttle has its own test).
        "--free-failures",
        "1000000000",
    ];
    args.extend_from_slice(extra);
    let relay = Relay::start_in(&dir, MAIL_USERS, &args);
    (relay.server, relay.spool)
}

/// The sender of [`mail_relay_filters_survive_garbage`] that passes greylisting.
const FRIEND: &str = "friend@far.test";

/// The GTUBE test string, which every content filter scores as spam.
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A polite SMTP session up to `MAIL FROM:<from>`: reads the whole
/// greeting (through the wait) first.
fn polite(addr: SocketAddr, from: &str) -> MailWire {
    let mut wire = MailWire::ehlo(addr, "mx.far.test");
    wire.cmd_expect(&format!("MAIL FROM:<{from}>"), "250");
    wire
}

/// Is `bob@example.test` accepted at once from `from`?
fn rcpt_accepted(addr: SocketAddr, from: &str) -> bool {
    let mut wire = polite(addr, from);
    wire.send_line("RCPT TO:<bob@example.test>");
    let reply = wire.reply();
    assert!(
        reply.starts_with("250") || reply.starts_with("451 4.7.1"),
        "{reply:?}"
    );
    wire.cmd_expect("QUIT", "221");
    reply.starts_with("250")
}

/// Garbage before the greeting: the relay answers the `220-` line, then
/// `521` and closes, or (if the garbage came late) the final `220 `.
fn talk_before_greeting(
    addr: SocketAddr,
    rng: &mut Rng,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let mut bytes = junk(rng);
    bytes.insert(0, b'E'); // never empty
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &bytes);
    let ending = Ending::pick(rng, true);
    let back = s.end(ending)?;
    if ending == Ending::HalfClose {
        let text = String::from_utf8_lossy(&back);
        if !text.starts_with("220-") {
            return Err(format!(
                "no 220- first line before the wait: {}",
                show(&back)
            ));
        }
        if let Some(at) = text.find("521 5.5.1 protocol error: talked before the greeting\r\n") {
            let after = &text[at..].split_once("\r\n").map_or("", |(_, rest)| rest);
            if !after.is_empty() {
                return Err(format!("the relay went on after its 521: {}", show(&back)));
            }
        } else if !text.contains("\r\n220 ") {
            return Err(format!(
                "neither 521 nor the final greeting: {}",
                show(&back)
            ));
        }
    }
    Ok(())
}

/// A new, made-up sender: its first `RCPT` must be greylisted.
fn made_up_sender(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let from = format!("bot{:016x}@spam{}.test", rng.next_u64(), rng.below(1000));
    log.push(format!("made-up sender {from}"));
    let mut wire = polite(addr, &from);
    wire.send_line("RCPT TO:<bob@example.test>");
    let reply = wire.reply();
    if !reply.starts_with("451 4.7.1 <bob@example.test>: greylisted") {
        return Err(format!("a made-up sender's first RCPT got {reply:?}"));
    }
    wire.cmd_expect("QUIT", "221");
    Ok(())
}

/// Header lines that trigger rules, forge a verdict, or fold.
const SCORED_HEADERS: &[&str] = &[
    "X-Spam-Flag: NO FAKED",
    "x-spam-status: No, score=-99.0 FAKED",
    "X-SPAM-LEVEL: FAKED",
    "X-Spam-Report: FAKED\r\n\tfolded FAKED line\r\n  and FAKED another",
    "Subject: CHEAP PILLS FOR EVERYONE",
    "Subject: lunch?",
    "From: Boss <ceo@example.test>",
    "From: friend@far.test",
    "Date: Tue, 1 Dec 2026 12:00:00 +0000",
    "Message-ID: <garbage@far.test>",
    "To: bob@example.test",
    "X-Mailer: bulk\r\n\tfolded",
];

/// A message from [`FRIEND`] with random headers from [`SCORED_HEADERS`]
/// and a random body (GTUBE sometimes): stored with our verdict.
fn rule_triggering_message(
    addr: SocketAddr,
    rng: &mut Rng,
    log: &mut Vec<String>,
) -> Result<(), String> {
    let mut text = String::new();
    for _ in 0..rng.below(8) {
        text.push_str(pick(rng, SCORED_HEADERS));
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    // At most 8 header lines and 6 body lines of at most 150 bytes: under
    // the relay's --max-size of 2000 bytes.
    for _ in 0..rng.below(7) {
        let line = match rng.below(5) {
            0 => GTUBE.to_string(),
            1 => "X-Spam-Flag: NO (in the body, where it stays)".to_string(),
            2 => "x".repeat(rng.below(150) as usize),
            _ => String::from_utf8_lossy(&printable(rng, 60)).into_owned(),
        };
        // Dot-stuffing: a line starting with '.' gets one more.
        if line.starts_with('.') {
            text.push('.');
        }
        text.push_str(&line);
        text.push_str("\r\n");
    }
    log.push(format!("message of {} bytes", text.len()));
    let mut wire = polite(addr, FRIEND);
    wire.send_line("RCPT TO:<bob@example.test>");
    let reply = wire.reply();
    if !reply.starts_with("250") {
        return Err(format!("the passed sender's RCPT got {reply:?}"));
    }
    wire.cmd_expect("DATA", "354");
    wire.writer
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    wire.send_line(".");
    let reply = wire.reply();
    if !reply.starts_with("250") {
        return Err(format!("a message was refused: {reply:?}"));
    }
    wire.cmd_expect("QUIT", "221");
    Ok(())
}

/// A message from alice to bob on an open session: MAIL, RCPT, DATA, `text`
/// (CRLF lines, none a lone dot) and the final dot; the reply to the dot.
fn to_bob(wire: &mut MailWire, text: &str) -> String {
    wire.cmd_expect("MAIL FROM:<alice@example.test>", "250");
    wire.cmd_expect("RCPT TO:<bob@example.test>", "250");
    wire.cmd_expect("DATA", "354");
    wire.send_line(&format!("{text}."));
    wire.reply()
}

/// [`HALF_SENT_CLIENTS`] sessions, each holding [`HALF_SENT_BYTES`] of a
/// 4 MiB message, sent from as many threads at once.
fn hold_half_sent(smtp: SocketAddr) -> Vec<MailWire> {
    let senders: Vec<_> = (0..HALF_SENT_CLIENTS)
        .map(|i| {
            thread::spawn(move || {
                let mut client = MailWire::smtp(smtp);
                client.cmd_expect(&format!("HELO holder{i}.test"), "250");
                client.cmd_expect("MAIL FROM:<alice@example.test> SIZE=4194304", "250");
                client.cmd_expect("RCPT TO:<bob@example.test>", "250");
                client.cmd_expect("DATA", "354");
                let line = [b"x".repeat(78), b"\r\n".to_vec()].concat();
                let block = line.repeat(HALF_SENT_BYTES / line.len());
                client.writer.write_all(&block).unwrap();
                client
                    .writer
                    .write_all(&line[..HALF_SENT_BYTES - block.len()])
                    .unwrap();
                client
            })
        })
        .collect();
    senders.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Watches the relay's resident memory (from `rss_before`) until it has
/// stored the half-sent text in `incoming`: it must grow by less than
/// [`HALF_SENT_GROWTH`] all the while. Returns the last reading.
fn watch_memory(pid: u32, incoming: &Path, rss_before: u64) -> u64 {
    // Stored with `\n` endings (79 bytes a line), less what may still sit
    // in each connection's write buffer.
    let expected = (HALF_SENT_CLIENTS * (HALF_SENT_BYTES / 80 * 79 - 8192)) as u64;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut rss = rss_before;
    loop {
        rss = resident_bytes(pid).unwrap_or(rss);
        let read = bytes_in(incoming);
        assert!(
            rss.saturating_sub(rss_before) < HALF_SENT_GROWTH,
            "the relay's memory grew by {} KiB (from {} KiB) with {} KiB of half-sent \
             messages stored",
            rss.saturating_sub(rss_before) / 1024,
            rss_before / 1024,
            read / 1024
        );
        if read >= expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay stored only {read} of {expected} bytes of the half-sent messages in 120 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
    rss
}

/// The resident memory (`VmRSS`, in bytes) of process `pid`, where `/proc` has it.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The bytes in the files of `dir` (none if it is missing).
fn bytes_in(dir: &Path) -> u64 {
    fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Clients that hold a half-sent message in [`mail_relay_memory_stays_bounded`].
const HALF_SENT_CLIENTS: usize = 32;
/// How much of its message each of them sends (of a 4 MiB message).
const HALF_SENT_BYTES: usize = 2 * 1024 * 1024;
/// How much the relay's memory may grow while they hold: far below the
/// 64 MiB their text would take in memory, far above the few KiB each
/// connection needs (thread stack pages, read and write buffers).
const HALF_SENT_GROWTH: u64 = 16 * 1024 * 1024;
