//! Example 02, the chat server and client: the chat contract line by line,
//! backpressure (a frozen client must not stall the room), interop with `nc`,
//! the client example, and the chapter's exercises.
//!
//! Check your own chat server with:
//! `NETLESSONS_02_CHAT_SERVER="python3 my_chat.py" cargo test --test ex02_chat`

mod common;

use assert_cmd::Command as AssertCommand;
use common::chat::Chatter;
use common::{Server, connect, have, reference_only, say};
use predicates::prelude::*;
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

const SERVER: &str = "02_chat_server";
const CLIENT: &str = "02_chat_client";

/// A newcomer gets a welcome; everyone already there gets `* guestN joined`.
#[test]
fn welcome_and_join_notices() {
    let server = Server::start(SERVER, &[]);
    let mut clients = join_all(server.addr(), 3);
    clients[0].expect_who("guest1, guest2, guest3");
    clients[2].expect_who("guest1, guest2, guest3");
}

/// A storm of 300 joins from six threads at once keeps every announcement:
/// a member who was there first hears each newcomer join exactly once; every
/// newcomer hears of those who joined after it, each once, and never of its
/// own arrival; and the room still carries a message afterwards.
#[test]
fn a_join_storm_keeps_every_announcement() {
    const STORM: usize = 300;
    const THREADS: usize = 6;
    let server = Server::start(SERVER, &[]);
    let addr = server.addr();
    let mut first = Chatter::join(addr, "guest1");
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            thread::spawn(move || {
                (0..STORM / THREADS)
                    .map(|_| {
                        // "* welcome, you are guestN (type /help …)"
                        Chatter::join_guest(addr)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut storm: Vec<Chatter> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let names: std::collections::HashSet<String> = storm.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names.len(), STORM, "every newcomer has its own name");
    let mut heard = Vec::new();
    while heard.len() < STORM {
        let line = first.line();
        let name = line
            .strip_prefix("* ")
            .and_then(|rest| rest.strip_suffix(" joined"))
            .unwrap_or_else(|| panic!("guest1 expected join notices, got {line:?}"));
        heard.push(name.to_string());
    }
    let heard_set: std::collections::HashSet<String> = heard.iter().cloned().collect();
    assert_eq!(heard_set, names, "guest1 heard each join once");
    first.send("/nick first");
    first.expect("* you are now first");
    first.send("storm over");
    for c in &mut storm {
        let mut joins_heard = std::collections::HashSet::new();
        loop {
            let line = c.line();
            if line == "first: storm over" {
                break;
            }
            if let Some(name) = line
                .strip_prefix("* ")
                .and_then(|r| r.strip_suffix(" joined"))
            {
                assert_ne!(name, c.name, "{} was told of its own join", c.name);
                assert!(
                    names.contains(name),
                    "{}: a join of a stranger: {line:?}",
                    c.name
                );
                assert!(
                    joins_heard.insert(name.to_string()),
                    "{}: twice: {line:?}",
                    c.name
                );
            } else {
                assert_eq!(line, "* guest1 is now first", "{}", c.name);
            }
        }
    }
}

/// A chat line goes to everyone but its sender, as `NAME: text`.
#[test]
fn a_message_goes_to_everyone_but_the_sender() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 3);
    c[0].send("hello, all of you");
    c[1].expect("guest1: hello, all of you");
    c[2].expect("guest1: hello, all of you");
    c[1].send("hi guest1 ✓ ünïcödé");
    c[0].expect("guest2: hi guest1 ✓ ünïcödé");
    c[2].expect("guest2: hi guest1 ✓ ünïcödé");
    // The senders got nothing back: their next line answers /who.
    c[0].expect_who("guest1, guest2, guest3");
    c[1].expect_who("guest1, guest2, guest3");
}

/// Lines ending in `\r\n` (telnet, Windows) work like lines ending in `\n`.
#[test]
fn crlf_lines_are_accepted() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    c[0].send_bytes(b"typed in telnet\r\n/who\r\n");
    c[1].expect("guest1: typed in telnet");
    c[0].expect("* online: guest1, guest2");
}

/// `/nick`: success and the rename notice; taken, taken in another case and
/// invalid names refused with nothing changed; your own name in another case is fine.
#[test]
fn nick_renames_and_refuses_conflicts() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 3);
    rename(&mut c, 0, "alice");
    for refused in [
        "alice",
        "ALICE",
        "Alice",
        "bad name",
        "seventeen_chars_x",
        "café",
        "a.b",
        "x!",
    ] {
        c[1].send(&format!("/nick {refused}"));
        c[1].expect_error();
    }
    // Nothing changed, and nobody heard about the failed attempts.
    c[1].expect_who("alice, guest2, guest3");
    c[0].expect_who("alice, guest2, guest3");
    c[2].expect_who("alice, guest2, guest3");
    // A 16-character name is the longest allowed.
    rename(&mut c, 1, "sixteen_chars_ok");
    // Your own name in another case is yours to take.
    rename(&mut c, 0, "Alice");
    c[0].send("hi");
    c[1].expect("Alice: hi");
    c[2].expect("Alice: hi");
    c[2].expect_who("Alice, guest3, sixteen_chars_ok");
}

/// `/who` lists everyone, sorted by byte order (capitals before lower case).
#[test]
fn who_is_sorted_by_byte_order() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 4);
    rename(&mut c, 0, "zed");
    rename(&mut c, 1, "bob");
    rename(&mut c, 2, "Carol");
    rename(&mut c, 3, "_under");
    c[1].expect_who("Carol, _under, bob, zed");
}

/// New clients are `guestN` with N counting up, skipping names in use
/// (in any case).
#[test]
fn guest_numbers_skip_names_in_use() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 1);
    rename(&mut c, 0, "Guest2");
    // The next number is 2, but Guest2 is taken (ignoring case): guest3.
    let b = Chatter::join(server.addr(), "guest3");
    c[0].expect("* guest3 joined");
    c.push(b);
    rename(&mut c, 1, "guest4");
    let d = Chatter::join(server.addr(), "guest5");
    c[0].expect("* guest5 joined");
    c[1].expect("* guest5 joined");
    c.push(d);
    c[2].expect_who("Guest2, guest4, guest5");
}

/// `/msg NAME text` reaches NAME alone as `[private] FROM: text`; an unknown
/// name gets `! no such user NAME`.
#[test]
fn private_messages() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 3);
    rename(&mut c, 1, "bob");
    c[0].send("/msg bob psst, over here");
    c[1].expect("[private] guest1: psst, over here");
    c[2].expect_who("bob, guest1, guest3"); // guest3 saw nothing
    c[0].send("/msg nobody hello?");
    c[0].expect("! no such user nobody");
    c[0].expect_who("bob, guest1, guest3");
    c[1].expect_who("bob, guest1, guest3");
}

/// `/quit`: `* bye`, then the server closes; the others get `* NAME left`.
#[test]
fn quit_says_bye_and_others_see_left() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 3);
    rename(&mut c, 1, "bob");
    c[1].send("/quit");
    c[1].expect("* bye");
    c[1].expect_closed();
    c[0].expect("* bob left");
    c[2].expect("* bob left");
    c[0].expect_who("guest1, guest3");
}

/// An unknown command gets `! unknown command /command`; empty lines are ignored.
#[test]
fn unknown_commands_and_empty_lines() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    c[0].send("/dance a jig");
    c[0].expect("! unknown command /dance");
    c[0].send_bytes(b"\n\r\n\n");
    c[0].send("after the blanks");
    // guest2's next line is the message: the empty lines were not passed on.
    c[1].expect("guest1: after the blanks");
    // And guest1 got no answer to them either.
    c[0].expect_who("guest1, guest2");
}

/// A line of exactly 1024 bytes (with `\n` or `\r\n`) is accepted.
#[test]
fn a_1024_byte_line_is_accepted() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    let ascii = "a".repeat(1024);
    c[0].send(&ascii);
    c[1].expect(&format!("guest1: {ascii}"));
    let two_byte_chars = "é".repeat(512); // 1024 bytes, 512 characters
    c[0].send_bytes(format!("{two_byte_chars}\r\n").as_bytes());
    c[1].expect(&format!("guest1: {two_byte_chars}"));
    c[0].expect_who("guest1, guest2");
}

/// A 1025-byte line gets `! line too long (max 1024 bytes)`, then the server
/// closes; the others see the client leave.
#[test]
fn a_1025_byte_line_is_refused_and_closed() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    c[0].send(&"b".repeat(1025));
    c[0].expect("! line too long (max 1024 bytes)");
    c[0].expect_closed();
    c[1].expect("* guest1 left");
    c[1].expect_who("guest2");
}

/// A line that is far too long (100 KB) gets the same answer: the server
/// neither buffers it all nor loses the error line in a reset.
#[test]
fn a_huge_line_is_refused_cleanly() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    let mut writer = c[0].writer.try_clone().unwrap();
    // Write from another thread: the server stops reading after 1 KB, so
    // the write may only complete once the server has closed.
    let sending = thread::spawn(move || {
        let _ = writer.write_all(&vec![b'z'; 100_000]);
        let _ = writer.write_all(b"\n");
    });
    c[0].expect("! line too long (max 1024 bytes)");
    c[1].expect("* guest1 left");
    sending.join().unwrap();
}

/// Invalid UTF-8 gets `! …`; the line is dropped and the connection stays.
#[test]
fn invalid_utf8_is_refused_and_the_connection_stays() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    for bad in [
        &b"caf\xe9"[..],
        b"\xff\xfe\xfd",
        b"cut \xc3",
        b"overlong \xc0\xaf",
        b"\xed\xa0\x80",
    ] {
        let mut line = bad.to_vec();
        line.push(b'\n');
        c[0].send_bytes(&line);
        c[0].expect_error();
    }
    c[0].send("still here");
    c[1].expect("guest1: still here"); // nothing of the bad lines reached guest2
    c[0].expect_who("guest1, guest2");
}

/// Clients that vanish (a clean close, a reset, a close mid-line) are
/// announced as `* NAME left`, and the room carries on.
#[test]
fn abrupt_disconnects_are_announced() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    // A clean close, without /quit.
    let closer = Chatter::join(server.addr(), "guest3");
    c[0].expect("* guest3 joined");
    c[1].expect("* guest3 joined");
    drop(closer);
    c[0].expect("* guest3 left");
    c[1].expect("* guest3 left");
    // A reset: closing with unread data (the welcome was never read) makes
    // the kernel send a reset instead of a normal close.
    let resetter = Chatter::raw(server.addr());
    c[0].expect("* guest4 joined");
    c[1].expect("* guest4 joined");
    drop(resetter);
    c[0].expect("* guest4 left");
    c[1].expect("* guest4 left");
    // Half a line, then gone.
    let mut halfway = Chatter::join(server.addr(), "guest5");
    c[0].expect("* guest5 joined");
    c[1].expect("* guest5 joined");
    halfway.send_bytes(b"I was about to say");
    drop(halfway);
    c[0].expect("* guest5 left");
    c[1].expect("* guest5 left");
    c[0].send("anyone?");
    c[1].expect("guest1: anyone?");
    c[1].expect_who("guest1, guest2");
}

/// Ten clients talking at once: each gets every line of the nine others,
/// each sender's lines in the order sent, and never its own.
#[test]
fn ten_clients_talk_at_once() {
    const CLIENTS: usize = 10;
    const LINES: usize = 50;
    let server = Server::start(SERVER, &[]);
    let clients = join_all(server.addr(), CLIENTS);
    let talkers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut me)| {
            thread::spawn(move || {
                let mut out = BufWriter::new(me.writer.try_clone().unwrap());
                for n in 0..LINES {
                    writeln!(out, "line {n} from {i}").unwrap();
                }
                out.flush().unwrap();
                let mut next = [0usize; CLIENTS];
                for _ in 0..(CLIENTS - 1) * LINES {
                    let line = me.line();
                    let (from, text) = line
                        .split_once(": ")
                        .unwrap_or_else(|| panic!("odd line {line:?}"));
                    let sender: usize = from.trim_start_matches("guest").parse().unwrap();
                    let sender = sender - 1;
                    assert_ne!(sender, i, "client {i} got its own line back");
                    assert_eq!(
                        text,
                        format!("line {} from {sender}", next[sender]),
                        "out of order"
                    );
                    next[sender] += 1;
                }
            })
        })
        .collect();
    for talker in talkers {
        talker.join().unwrap();
    }
}

/// The backpressure test. One client never reads while another sends 34 MB
/// of chat lines (more than the kernel's buffers can hold for the silent
/// one); a third, reading client gets every line, in order, promptly, and
/// the silent one is disconnected (`* guest2 left`, and its socket closes).
#[test]
fn a_frozen_client_is_dropped_and_cannot_stall_the_room() {
    const LINES: usize = 34_000;
    let server = Server::start(SERVER, &[]);
    let mut reader = Chatter::join(server.addr(), "guest1");
    let mut frozen = connect(server.addr()); // guest2 never reads a byte
    reader.expect("* guest2 joined");
    let sender = Chatter::join(server.addr(), "guest3");
    reader.expect("* guest3 joined");

    let filler = "x".repeat(992);
    let started = Instant::now();
    // Send in a thread of its own: we must read at the same time, or our
    // own buffers would fill and we would stall ourselves.
    let mut out = BufWriter::with_capacity(64 * 1024, sender.writer.try_clone().unwrap());
    let text = filler.clone();
    let sending = thread::spawn(move || {
        for n in 0..LINES {
            if let Err(e) = writeln!(out, "{n:07} {text}") {
                panic!("the sender was blocked or cut off after {n} lines: {e}");
            }
        }
        writeln!(out, "done").unwrap();
        out.flush().unwrap();
    });

    let mut next = 0;
    let mut frozen_left = false;
    loop {
        let line = reader.line_or(|e| {
            format!(
                "no line for {:?} ({e}) after {next} lines: the room stalled. Does a \
                 broadcast block on writing to the client that does not read?",
                common::IO_TIMEOUT
            )
        });
        if line == "guest3: done" {
            break;
        }
        if line == "* guest2 left" {
            frozen_left = true;
            continue;
        }
        let Some(body) = line.strip_prefix("guest3: ") else {
            panic!("unexpected line {:?}", &line[..line.len().min(80)]);
        };
        let want = format!("{next:07} {filler}");
        assert!(
            body == want,
            "line {next} missing or damaged: got {:?}",
            &body[..body.len().min(20)]
        );
        next += 1;
    }
    sending.join().unwrap();
    let elapsed = started.elapsed();
    say(&format!(
        "a_frozen_client…: {LINES} lines of 1000 bytes in {elapsed:?}"
    ));
    assert_eq!(next, LINES, "the reading client lost lines");
    if !frozen_left {
        reader.expect("* guest2 left");
    }
    assert!(
        elapsed < Duration::from_secs(60),
        "far too slow: {elapsed:?}"
    );
    // The frozen client's connection was closed: reading now drains what the
    // kernel still held for it, then ends (rather than timing out).
    let mut buf = vec![0u8; 64 * 1024];
    let mut drained = 0usize;
    loop {
        match frozen.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                panic!("the frozen client was never disconnected: {e} (after {drained} bytes)")
            }
        }
    }
    assert!(
        drained < LINES * 1000,
        "the frozen client got everything: it was not dropped"
    );
    reader.expect_who("guest1, guest3");
}

/// A slow client that keeps reading (pausing all the time) is not a frozen
/// one: it gets every line; the sender is slowed down to its pace instead.
#[test]
fn a_slow_but_reading_client_keeps_every_line() {
    const LINES: usize = 4_000;
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    let filler = "y".repeat(992);
    let mut out = BufWriter::new(c[1].writer.try_clone().unwrap());
    let text = filler.clone();
    let sending = thread::spawn(move || {
        for n in 0..LINES {
            writeln!(out, "{n:07} {text}").unwrap();
        }
        out.flush().unwrap();
    });
    for n in 0..LINES {
        if n % 8 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        let line = c[0].line();
        assert!(
            line == format!("guest2: {n:07} {filler}"),
            "line {n} missing or damaged"
        );
    }
    sending.join().unwrap();
    c[0].expect_who("guest1, guest2");
}

/// `nc`, a client this crate did not write: two `nc` users and one socket chat.
#[test]
fn nc_interop() {
    if !have("nc", "nc_interop") {
        return;
    }
    let server = Server::start(SERVER, &[]);
    let port = server.addr().port().to_string();
    let spawn_nc = || {
        Command::new("nc")
            .args(["-N", "127.0.0.1", &port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nc")
    };
    let mut a = Chatter::join(server.addr(), "guest1");
    let mut ann = spawn_nc();
    a.expect("* guest2 joined");
    let mut other = spawn_nc();
    a.expect("* guest3 joined");
    let mut ann_in = ann.stdin.take().unwrap();
    ann_in.write_all(b"/nick ann\nhello from nc\n").unwrap();
    a.expect("* guest2 is now ann");
    a.expect("ann: hello from nc");
    a.send("hi ann");
    a.expect_who("ann, guest1, guest3");
    drop(ann_in); // nc -N: end of input closes its sending side
    a.expect("* ann left");
    drop(other.stdin.take());
    a.expect("* guest3 left");
    let ann_out = finish(ann, Duration::from_secs(20));
    let other_out = finish(other, Duration::from_secs(20));
    assert!(ann_out.contains("* you are now ann\n"), "nc saw: {ann_out}");
    assert!(ann_out.contains("guest1: hi ann\n"), "nc saw: {ann_out}");
    assert!(
        other_out.contains("ann: hello from nc\n"),
        "nc saw: {other_out}"
    );
    assert!(
        other_out.contains("guest1: hi ann\n"),
        "nc saw: {other_out}"
    );
}

/// The client example: `printf '/who\n' | 02_chat_client` prints the answer,
/// then leaves (`* bye`) and exits 0.
#[test]
fn client_example_answers_piped_commands() {
    let server = Server::start(SERVER, &[]);
    AssertCommand::from_std(common::command(CLIENT))
        .args(["--addr", &server.addr().to_string()])
        .write_stdin("/who\n")
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with("* welcome")
                .and(predicate::str::contains("\n* online: guest1\n"))
                .and(predicate::str::ends_with("* bye\n")),
        );
}

/// The client example at work: a running client, its input still open,
/// prints what others say as it arrives, sends what is typed, and leaves
/// at the end of input.
#[test]
fn client_example_prints_while_you_type() {
    let server = Server::start(SERVER, &[]);
    let mut a = Chatter::join(server.addr(), "guest1");
    let (mut client, mut typing, printed) = start_client(server.addr());
    a.expect("* guest2 joined");
    assert!(
        wait_for_line(&printed, |l| l.starts_with("* welcome")),
        "no welcome printed"
    );
    a.send("hi there, are you typing?");
    assert!(wait_for_line(&printed, |l| l == "guest1: hi there, are you typing?"));
    typing.write_all(b"/nick bob\nyes, I am\n").unwrap();
    a.expect("* guest2 is now bob");
    a.expect("bob: yes, I am");
    assert!(wait_for_line(&printed, |l| l == "* you are now bob"));
    drop(typing); // end of input
    a.expect("* bob left");
    let status =
        wait_bounded(&mut client, Duration::from_secs(20)).expect("the client did not exit");
    assert!(status.success(), "the client failed: {status}");
}

/// The client example says so clearly when the server goes away, and exits
/// with a failure status.
#[test]
fn client_example_reports_the_server_going_away() {
    let mut server = Server::start(SERVER, &[]);
    let mut client = common::command(CLIENT)
        .args(["--addr", &server.addr().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _typing = client.stdin.take().unwrap(); // kept open: the user is still there
    let printed = common::lines_of(client.stdout.take().unwrap());
    assert!(
        wait_for_line(&printed, |l| l.starts_with("* welcome")),
        "no welcome printed"
    );
    server.kill();
    let status =
        wait_bounded(&mut client, Duration::from_secs(20)).expect("the client did not exit");
    assert!(
        !status.success(),
        "the client should fail when the server vanishes"
    );
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("server") && (err.contains("closed") || err.contains("lost")),
        "stderr: {err}"
    );
}

/// The client example explains a refused connection and exits non-zero.
#[test]
fn client_example_reports_connection_refused() {
    let port = common::free_port();
    AssertCommand::from_std(common::command(CLIENT))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .write_stdin("hi\n")
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("could not connect").and(predicate::str::contains("refused")),
        );
}

/// The client example refuses to send a line over 1024 bytes (the server
/// would hang up) and carries on.
#[test]
fn client_example_keeps_long_lines_to_itself() {
    if !reference_only(CLIENT, "client_example_keeps_long_lines_to_itself") {
        return;
    }
    let server = Server::start(SERVER, &[]);
    AssertCommand::from_std(common::command(CLIENT))
        .args(["--addr", &server.addr().to_string()])
        .write_stdin(format!("{}\n/who\n", "q".repeat(2000)))
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stdout(predicate::str::contains("* online: guest1"))
        .stderr(predicate::str::contains("not sent"));
}

/// The client's --trace shows both directions on stderr.
#[test]
fn client_trace_shows_both_directions() {
    if !reference_only(CLIENT, "client_trace_shows_both_directions") {
        return;
    }
    let server = Server::start(SERVER, &[]);
    common::cli::traced_client_run(CLIENT, server.addr(), "/who\n").stderr(
        predicate::str::contains("-> /who").and(predicate::str::contains("<- * online: guest1")),
    );
}

/// With --max-conns 2, a third client gets `! server full` and is closed;
/// after someone leaves, newcomers get in again.
#[test]
fn max_conns_refuses_with_server_full() {
    if !reference_only(SERVER, "max_conns_refuses_with_server_full") {
        return;
    }
    let server = Server::start(SERVER, &["--max-conns", "2"]);
    let mut c = join_all(server.addr(), 2);
    let mut third = Chatter::raw(server.addr());
    third.expect("! server full");
    third.expect_closed();
    server.expect_stderr("refused: server full", Duration::from_secs(10));
    c[0].send("/quit");
    c[0].expect("* bye");
    drop(c.remove(0));
    c[0].expect("* guest1 left");
    // The slot frees once the server's thread for guest1 has ended: retry,
    // a bounded number of times, until a newcomer is welcomed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = Chatter::raw(server.addr());
        let first = again.line();
        if first.starts_with("* welcome") {
            break;
        }
        assert_eq!(first, "! server full");
        assert!(
            Instant::now() < deadline,
            "no slot freed after a client left"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A peer outside --allow is closed before a byte is read or written.
#[test]
fn peer_outside_allowlist_gets_nothing() {
    if !reference_only(SERVER, "peer_outside_allowlist_gets_nothing") {
        return;
    }
    common::assert_outsider_gets_nothing(SERVER, b"");
    let allowed = Server::start(SERVER, &["--allow", "127.0.0.0/8"]);
    Chatter::join(allowed.addr(), "guest1").expect_who("guest1");
}

/// The idle timeout is off by default (reading without talking is normal in
/// a chat); --idle-timeout 1 drops a silent client, telling it why.
#[test]
fn idle_timeout_is_off_by_default_and_works_when_set() {
    if !reference_only(SERVER, "idle_timeout_is_off_by_default_and_works_when_set") {
        return;
    }
    AssertCommand::from_std(common::command(SERVER))
        .arg("--help")
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("--idle-timeout SECS")
                .and(predicate::str::contains("[default: 0]")),
        );
    let server = Server::start(SERVER, &["--idle-timeout", "1"]);
    let start = Instant::now();
    let mut silent = Chatter::join(server.addr(), "guest1");
    let notice = silent.expect_error();
    assert!(notice.contains("idle"), "{notice}");
    silent.expect_closed();
    let waited = start.elapsed();
    common::assert_dropped_after_a_second(waited, Duration::from_secs(15));
}

/// --trace shows lines received (<-) and sent (->) on stderr only.
#[test]
fn trace_shows_both_directions() {
    if !reference_only(SERVER, "trace_shows_both_directions") {
        return;
    }
    let server = Server::start(SERVER, &["--trace"]);
    Chatter::join(server.addr(), "guest1").expect_who("guest1");
    server.expect_stderr("<- /who", Duration::from_secs(10));
    server.expect_stderr("-> * online: guest1", Duration::from_secs(10));
    assert_eq!(
        server.stdout().lines().count(),
        1,
        "stdout holds only the listening line"
    );
}

// The tests `help_and_bad_flags` and `stray_argument_is_refused`.
common::cli::server_and_client_flag_tests!(SERVER, CLIENT, usage_shows = "127.0.0.1:7002");

/// Terminal escape sequences in chat lines are defused (shown as `�`), so
/// nobody can clear or recolour other people's screens.
#[test]
fn control_characters_are_neutralised() {
    if !reference_only(SERVER, "control_characters_are_neutralised") {
        return;
    }
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    c[0].send("\u{1b}[2Jgotcha\u{7}\tok");
    c[1].expect("guest1: \u{fffd}[2Jgotcha\u{fffd}\tok");
}

/// Exercise 1 (chapter 4): `/me text` sends `* NAME text` to everyone else;
/// `/me` alone is an error.
#[test]
fn exercise_1_me_actions() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 3);
    c[0].send("/me waves at everyone");
    c[1].expect("* guest1 waves at everyone");
    c[2].expect("* guest1 waves at everyone");
    c[0].expect_who("guest1, guest2, guest3"); // not sent back to guest1
    c[0].send("/me");
    c[0].expect_error();
    c[1].expect_who("guest1, guest2, guest3"); // nothing reached the others
}

/// Exercise 2 (chapter 4): `/topic TEXT` sets the room's topic and tells
/// everyone; `/topic` shows it; a newcomer gets it right after the welcome.
#[test]
fn exercise_2_topic() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    c[1].send("/topic");
    c[1].expect("* no topic set");
    c[0].send("/topic sockets and threads");
    c[0].expect("* guest1 set the topic: sockets and threads");
    c[1].expect("* guest1 set the topic: sockets and threads");
    c[1].send("/topic");
    c[1].expect("* topic: sockets and threads");
    let mut newcomer = Chatter::join(server.addr(), "guest3");
    newcomer.expect("* topic: sockets and threads");
    c[0].expect("* guest3 joined");
    newcomer.expect_who("guest1, guest2, guest3");
}

/// Closing our sending side counts as leaving, like a close.
#[test]
fn half_close_counts_as_leaving() {
    let server = Server::start(SERVER, &[]);
    let mut c = join_all(server.addr(), 2);
    c[0].writer.shutdown(Shutdown::Write).unwrap();
    c[1].expect("* guest1 left");
    c[0].expect_closed();
}

/// Connects `n` clients one after another, as the contract names them
/// (`guest1`, `guest2`, …); each earlier client sees each later one join.
fn join_all(addr: SocketAddr, n: usize) -> Vec<Chatter> {
    let mut clients: Vec<Chatter> = Vec::new();
    for i in 1..=n {
        let name = format!("guest{i}");
        let newcomer = Chatter::join(addr, &name);
        for earlier in &mut clients {
            earlier.expect(&format!("* {name} joined"));
        }
        clients.push(newcomer);
    }
    clients
}

/// `clients[who]` takes `name`; checks the answer and everyone's notice.
fn rename(clients: &mut [Chatter], who: usize, name: &str) {
    let old = clients[who].name.clone();
    clients[who].send(&format!("/nick {name}"));
    clients[who].expect(&format!("* you are now {name}"));
    clients[who].name = name.to_string();
    for (i, other) in clients.iter_mut().enumerate() {
        if i != who {
            other.expect(&format!("* {old} is now {name}"));
        }
    }
}

/// Waits (bounded) for a child to exit and returns its stdout.
fn finish(mut child: Child, timeout: Duration) -> String {
    let status = wait_bounded(&mut child, timeout);
    assert!(
        status.is_some(),
        "the program did not exit within {timeout:?}"
    );
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// Waits for a child to exit, for at most `timeout`; kills it if it did not.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Starts the client example with its input and output connected to us.
fn start_client(addr: SocketAddr) -> (Child, ChildStdin, Receiver<String>) {
    let mut client = common::command(CLIENT)
        .args(["--addr", &addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let typing = client.stdin.take().unwrap();
    let printed = common::lines_of(client.stdout.take().unwrap());
    (client, typing, printed)
}

/// Waits (bounded) until a line matching `wanted` arrives.
fn wait_for_line(lines: &Receiver<String>, wanted: impl Fn(&str) -> bool) -> bool {
    let deadline = Instant::now() + common::IO_TIMEOUT;
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if wanted(&line) {
            return true;
        }
    }
    false
}
