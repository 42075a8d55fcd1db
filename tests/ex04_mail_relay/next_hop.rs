//! The relay against a next hop written in the test ([`FakeHop`]): the
//! `250` after the dot is the handover, refused and expired mail bounces
//! to its sender, and 8-bit mail needs `8BITMIME` at the next hop.

use super::*;

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
        from_alice(
            r.smtp(),
            "carol@remote.test",
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
    let hop = FakeHop::answering(true);
    let r = relay_to("bounce", hop.addr, &[]);
    from_alice(
        r.smtp(),
        "nobody@remote.test",
        "Subject: for nobody\r\nMessage-ID: <m1@example.test>\r\n\r\nhi\r\n",
    );
    let bounce = bounce_to_alice(&r);
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
    let hop = FakeHop::answering(true);
    let r = relay_to("max_age", hop.addr, &["--max-queue-age-ms", "1500"]);
    from_alice(
        r.smtp(),
        "later@remote.test",
        "Subject: patience\r\n\r\nx\r\n",
    );
    let bounce = bounce_to_alice(&r);
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
    let plain = FakeHop::answering(false);
    let r = relay_to("eight_bit", plain.addr, &[]);
    from_alice(
        r.smtp(),
        "carol@remote.test",
        "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n",
    );
    let bounce = bounce_to_alice(&r);
    assert!(bounce.contains("did not offer 8BITMIME"), "{bounce}");
    assert!(
        !plain.lines().iter().any(|l| l.starts_with("MAIL")),
        "the 8-bit message was offered to a hop without 8BITMIME: {:?}",
        plain.lines()
    );
    from_alice(
        r.smtp(),
        "carol@remote.test",
        "Subject: plain\r\n\r\nascii\r\n",
    );
    assert!(
        wait_until(DELIVERY_TIMEOUT, || plain.messages() == 1),
        "the 7-bit message did not reach the hop: {:?}",
        plain.lines()
    );
    let modern = FakeHop::answering(true);
    let r2 = relay_to("eight_bit_ok", modern.addr, &[]);
    from_alice(
        r2.smtp(),
        "carol@remote.test",
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
    /// A hop that answers every QUIT, offering 8BITMIME if `eight_bit`.
    fn answering(eight_bit: bool) -> FakeHop {
        let script = HopScript {
            eight_bit,
            silent_quit: false,
        };
        FakeHop::start(script, None)
    }

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

/// Waits for the one bounce in alice's mailbox and returns its text.
#[track_caller]
fn bounce_to_alice(r: &Relay) -> String {
    assert!(
        wait_until(DELIVERY_TIMEOUT, || maildir(&r.spool, "alice").len() == 1),
        "no bounce reached alice; relay log:\n{}",
        r.server.stderr()
    );
    text(&maildir(&r.spool, "alice")[0])
}
