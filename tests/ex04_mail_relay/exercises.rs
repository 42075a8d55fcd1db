//! Chapter 7's exercises, one test each (and the stray-argument check).

use super::*;

/// Exercise 1: `HELP` answers 214 (RFC 5321 §4.1.1.8).
#[test]
fn exercise_1_help_answers_214() {
    let r = Relay::start("exercise_1", &[]);
    let mut wire = MailWire::smtp(r.smtp());
    expect(&wire.cmd("HELP"), "214");
    expect(&wire.cmd("help"), "214");
}

/// Exercise 2: `EXPN` (expand a mailing list) is refused without giving
/// anything away: 502 (not implemented) or 252, never a member list.
#[test]
fn exercise_2_expn_gives_nothing_away() {
    let (_relay, mut wire) = smtp_session("exercise_2", &[]);
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
    let r = Relay::start("exercise_3", &[]);
    for n in 1..=2 {
        mail_bob(r.smtp(), &format!("Subject: {n}\r\n\r\nbody {n}\r\n"));
    }
    let mut wire = MailWire::pop3(r.pop3(), "bob", "bob-pw");
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
    let (r, mut wire) = smtp_session("exercise_4", &[]);
    let with_hops = |n: usize| {
        let mut data =
            "Received: from a.test by b.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n".repeat(n);
        data.push_str("Subject: loop\r\n\r\nround and round\r\n");
        data
    };
    expect(&alice_to_bob(&mut wire, with_hops(100).as_bytes()), "554");
    expect(&alice_to_bob(&mut wire, with_hops(99).as_bytes()), "250");
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
    let (r, mut wire) = smtp_session("exercise_5", &[]);
    let message = |id: &str| {
        format!("Subject: once\r\nMessage-ID: {id}\r\n\r\nonly once, please\r\n").into_bytes()
    };
    let send = |wire: &mut MailWire, to: &[&str], data: &[u8]| {
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
