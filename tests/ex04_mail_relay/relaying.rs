//! Relaying: who may relay, where mail goes without a next hop, a full
//! disk, a chain of two relays, a next hop that is down, and a kill after
//! the `250` (the queue is durable).

use super::*;

/// From a client outside `--relay-allow`, mail for another domain gets
/// `554 5.7.1 … Relay access denied` at RCPT, and nothing is stored.
#[test]
fn relay_refused_outside_relay_allow() {
    // 127.0.0.1 is not in 10.0.0.0/8, so this test's client is "outside".
    let (r, mut wire) = smtp_session(
        "relay_refused",
        &["--relay-allow", "10.0.0.0/8", "--next-hop", "127.0.0.1:9"],
    );
    expect(&wire.cmd("MAIL FROM:<spammer@else.test>"), "250");
    let reply = wire.cmd("RCPT TO:<victim@far.away.test>");
    assert!(
        reply.starts_with("554 5.7.1 <victim@far.away.test>: Relay access denied"),
        "{reply}"
    );
    expect(&wire.cmd("DATA"), "554");
    expect(&wire.cmd("QUIT"), "221");
    assert!(
        files_under(&r.spool).is_empty(),
        "stored: {:?}",
        files_under(&r.spool)
    );
}

/// Without `--next-hop`, a non-local recipient gets `550 5.1.2 … no route`.
#[test]
fn no_next_hop_means_no_route() {
    let (_relay, mut wire) = smtp_session("no_route", &[]);
    expect(&wire.cmd("MAIL FROM:<alice@example.test>"), "250");
    let reply = wire.cmd("RCPT TO:<carol@remote.test>");
    assert!(
        reply.starts_with("550 5.1.2 <carol@remote.test>: no route to that domain"),
        "{reply}"
    );
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
    let mut wire = MailWire::ehlo(r.smtp(), "test.client");
    // Far too big for the limit: the text itself cannot be kept.
    let reply = alice_to_bob(&mut wire, &message_of(2 * FILE_LIMIT));
    expect(&reply, "451");
    assert_eq!(files_under(&r.spool), Vec::<String>::new(), "left behind");
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
        files_under(&r.spool),
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
    let files = files_under(&r.spool);
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
    let hop2 = Relay::remote("chain_hop2", "127.0.0.1:0", &[]);
    let spool2 = &hop2.spool;
    let hop1 = relay_to("chain_hop1", hop2.smtp(), &[]);
    send_message(
        hop1.smtp(),
        "alice@example.test",
        &["carol@remote.test", "bob@example.test"],
        "Subject: two hops\r\n\r\n..dotted line travels too\r\n",
    );
    assert_eq!(maildir(&hop1.spool, "bob").len(), 1, "the local copy");
    assert!(
        wait_until(DELIVERY_TIMEOUT, || maildir(spool2, "carol").len() == 1),
        "never reached hop 2"
    );
    let mail = text(&maildir(spool2, "carol")[0]);
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

/// With the next hop down, relayed mail waits in the queue; once the next
/// hop starts, the message is delivered.
#[test]
fn next_hop_down_then_up_delivers() {
    let port = free_port();
    let hop2_addr = format!("127.0.0.1:{port}");
    let hop1 = relay_to("hop_down_hop1", hop2_addr.parse().unwrap(), &[]);
    from_alice(
        hop1.smtp(),
        "carol@remote.test",
        "Subject: patience\r\n\r\nwait\r\n",
    );
    // Nobody listens on hop 2's port yet: the message must wait, not vanish.
    thread::sleep(Duration::from_millis(300));
    let hop2 = restart_on(&hop2_addr, || {
        Relay::remote("hop_down_hop2", &hop2_addr, &[])
    });
    let spool2 = &hop2.spool;
    assert!(
        wait_until(DELIVERY_TIMEOUT, || maildir(spool2, "carol").len() == 1),
        "never delivered after hop 2 came up"
    );
    assert!(text(&maildir(spool2, "carol")[0]).contains("Subject: patience"));
}

/// A relay killed with SIGKILL right after its 250 loses nothing: the local
/// copy is already in Maildir, and the relayed copy is delivered by the
/// restarted relay.
#[test]
fn kill_after_250_loses_nothing() {
    let hop2 = Relay::remote("kill_hop2", "127.0.0.1:0", &[]);
    let spool2 = &hop2.spool;
    let hop2_addr = hop2.smtp().to_string();
    let dead = format!("127.0.0.1:{}", free_port());
    let dir = temp_dir("kill_hop1");
    let with_hop = |hop: &str| {
        let mut args = vec!["--next-hop", hop];
        args.extend(fast_retries());
        Relay::start_in(&dir, USERS, &args)
    };
    // First life: the next hop is unreachable, so the message must be queued.
    let mut first = with_hop(&dead);
    let spool = first.spool.clone();
    let mut wire = MailWire::ehlo(first.smtp(), "test.client");
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
    first.server.kill();
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
        wait_until(DELIVERY_TIMEOUT, || maildir(spool2, "carol").len() == 1),
        "the queued copy was lost"
    );
    assert!(text(&maildir(spool2, "carol")[0]).contains("kill -9 me"));
    assert_eq!(
        maildir(&spool, "bob").len(),
        1,
        "the local copy was not delivered twice"
    );
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
