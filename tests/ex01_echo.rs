//! Example 01, the echo server and client: its contract, interop with real
//! clients, and the chapter's exercises.
//!
//! Check your own echo server with:
//! `NETLESSONS_01_ECHO_SERVER="python3 my_echo.py" cargo test --test ex01_echo`

mod common;

use assert_cmd::Command as AssertCommand;
use common::fake::FakeServer;
use common::{Rng, Server, connect, have, read_to_end, reference_only};
use predicates::prelude::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const SERVER: &str = "01_echo_server";
const CLIENT: &str = "01_echo_client";

/// Every byte comes back, in order, including NUL and every other value, 4 MiB of it.
#[test]
fn echoes_binary_payloads_byte_exact() {
    let server = Server::start(SERVER, &[]);
    let mut payload: Vec<u8> = (0..=255u8).collect();
    payload.extend(Rng::new(1).bytes(4 * 1024 * 1024));
    payload.extend([0, 0, b'\n', b'\r', 0]);
    let echoed = echo_round_trip(connect(server.addr()), payload.clone());
    assert_eq!(echoed.len(), payload.len(), "echoed length differs");
    assert!(echoed == payload, "echoed bytes differ from what was sent");
}

/// A client that sends one byte per write (so one byte per TCP segment) gets each back.
#[test]
fn echoes_a_client_that_writes_one_byte_at_a_time() {
    let server = Server::start(SERVER, &[]);
    let mut stream = connect(server.addr());
    for &b in b"slow\x00client\n" {
        stream.write_all(&[b]).unwrap();
        let mut got = [0u8; 1];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got[0], b);
    }
}

/// Fifty clients at once each get exactly their own bytes back, and all
/// fifty are served while every one of them is connected: a server that
/// serves one client at a time fails this.
#[test]
fn serves_fifty_concurrent_clients() {
    let server = Server::start(SERVER, &[]);
    if let Err(why) = fifty_at_once(server.addr(), common::IO_TIMEOUT) {
        panic!("{why}");
    }
}

/// The check above fails a server that serves one client at a time (a
/// tiny one written here): a test of the test.
#[test]
fn one_client_at_a_time_fails_the_fifty_clients_check() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The mistake chapter 2 warns about: serve each client to its end
    // before accepting the next, all on one thread.
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = stream.try_clone().unwrap();
            let _ = std::io::copy(&mut reader, &mut stream);
        }
    });
    // It never answers the second client, so a short wait is enough here.
    let why = fifty_at_once(addr, Duration::from_secs(2))
        .expect_err("a one-at-a-time server passed the fifty-clients check");
    assert!(why.contains("one client at a time"), "{why}");
}

/// One client stays connected and idle while another is served: threads at work.
#[test]
fn an_idle_client_does_not_block_others() {
    let server = Server::start(SERVER, &[]);
    let _idle = connect(server.addr());
    let echoed = echo_round_trip(connect(server.addr()), b"still here\n".to_vec());
    assert_eq!(echoed, b"still here\n");
}

/// The client example sends each stdin line and prints each reply, then exits 0.
#[test]
fn client_example_echoes_stdin_lines() {
    let server = Server::start(SERVER, &[]);
    run_client(
        &server.addr().to_string(),
        b"hello\nsecond line\n\nlast without newline",
    )
    .expect_stdout(b"hello\nsecond line\n\nlast without newline\n");
}

/// The client example explains a refused connection and exits non-zero.
#[test]
fn client_example_reports_connection_refused() {
    // Bind then drop a listener: its port is now (very likely) closed.
    let port = common::free_port();
    let assert = AssertCommand::from_std(common::command(CLIENT))
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .write_stdin("hi\n")
        .timeout(Duration::from_secs(30))
        .assert()
        .failure();
    // The wording is the reference's; a learner's client need only fail.
    if common::override_command(CLIENT).is_some() {
        return;
    }
    assert.stderr(
        predicate::str::contains("could not connect").and(predicate::str::contains("refused")),
    );
}

/// A server that closes at once (as one does to a peer outside its
/// `--allow`), whether with a clean close or a reset, is explained by the
/// client example: "without answering: are you outside its --allow list?".
#[test]
fn client_example_explains_a_close_before_any_reply() {
    // A close before reading anything, and a close with our line unread,
    // which the system answers with a reset.
    let closes_at_once = FakeServer::start("a server that closes at once", drop);
    let resets = FakeServer::start("a server that resets", |stream| {
        let _ = stream.peek(&mut [0u8; 1]); // our line has arrived, unread
    });
    for fake in [closes_at_once, resets] {
        let done = run_client(&fake.addr().to_string(), b"hi\n");
        done.expect_failure();
        if common::override_command(CLIENT).is_none() {
            let stderr = String::from_utf8_lossy(&done.stderr);
            assert!(
                stderr.contains(
                    "the server closed the connection without answering: are you outside \
                     its --allow list?"
                ),
                "{}",
                done.stderr_tail()
            );
        }
        fake.result(Duration::from_secs(10));
    }
}

/// A Python `socket` client, written by nobody here, gets its bytes back.
#[test]
fn python_socket_client_interop() {
    if !have("python3", "python_socket_client_interop") {
        return;
    }
    let server = Server::start(SERVER, &[]);
    let script = r#"
import socket, sys
port = int(sys.argv[1])
with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
    data = bytes(range(256)) * 1000
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
print("ok" if got == data else f"mismatch {len(got)} of {len(data)}")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &server.addr().port().to_string()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `printf 'hi\n' | nc -N` prints `hi`, as chapter 2 promises.
#[test]
fn nc_interop() {
    if !have("nc", "nc_interop") {
        return;
    }
    let server = Server::start(SERVER, &[]);
    let mut nc = Command::new("nc")
        .args(["-N", "127.0.0.1", &server.addr().port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    nc.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = nc.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"hi\n");
}

/// A peer outside --allow is closed before a single byte is read or written.
#[test]
fn peer_outside_allowlist_gets_nothing() {
    if !reference_only(SERVER, "peer_outside_allowlist_gets_nothing") {
        return;
    }
    // 127.0.0.1 is not in 10.0.0.0/8, so our own test client is "outside".
    common::assert_outsider_gets_nothing(SERVER, b"anyone there?\n");
}

/// The same server admits the peer once its network is in the list.
#[test]
fn peer_inside_allowlist_is_served() {
    if !reference_only(SERVER, "peer_inside_allowlist_is_served") {
        return;
    }
    let server = Server::start(SERVER, &["--allow", "10.0.0.0/8, 127.0.0.0/8"]);
    assert_eq!(
        echo_round_trip(connect(server.addr()), b"in\n".to_vec()),
        b"in\n"
    );
}

/// A malformed --allow is refused at start with the masked form suggested.
#[test]
fn bad_allowlist_is_a_clear_usage_error() {
    if !reference_only(SERVER, "bad_allowlist_is_a_clear_usage_error") {
        return;
    }
    AssertCommand::from_std(common::command(SERVER))
        .args(["--addr", "127.0.0.1:0", "--allow", "10.1.2.3/8"])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("10.0.0.0/8"));
}

/// With --max-conns 2, a third client is closed without a byte; once a slot
/// frees up, new clients are served again.
#[test]
fn max_conns_refuses_the_extra_client() {
    if !reference_only(SERVER, "max_conns_refuses_the_extra_client") {
        return;
    }
    let server = Server::start(SERVER, &["--max-conns", "2"]);
    let mut first = connect(server.addr());
    let mut second = connect(server.addr());
    // A round trip on each proves both are being served (counted) now.
    for s in [&mut first, &mut second] {
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
    }
    let mut third = connect(server.addr());
    assert!(
        read_to_end(&mut third).is_empty(),
        "echo's refusal is silence"
    );
    server.expect_stderr("refused: server full", Duration::from_secs(10));
    drop(first);
    // The freed slot is noticed when the server's thread ends: retry a few
    // times (bounded) until a new client is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A refused attempt may fail either way (EOF, or an error when our
        // write meets the closed socket), so errors here just mean "retry".
        let attempt = || -> std::io::Result<Vec<u8>> {
            let mut s = connect(server.addr());
            s.write_all(b"again")?;
            s.shutdown(Shutdown::Write)?;
            let mut got = Vec::new();
            s.read_to_end(&mut got)?;
            Ok(got)
        };
        if attempt().is_ok_and(|got| got == b"again") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no slot freed after a client left"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The second client was never disturbed.
    second.write_all(b"y").unwrap();
    let mut b = [0u8; 1];
    second.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"y");
}

/// --idle-timeout drops a silent client; a talking one within the limit stays.
#[test]
fn idle_timeout_drops_a_silent_client() {
    if !reference_only(SERVER, "idle_timeout_drops_a_silent_client") {
        return;
    }
    let server = Server::start(SERVER, &["--idle-timeout", "1"]);
    let mut silent = connect(server.addr());
    let start = Instant::now();
    assert!(read_to_end(&mut silent).is_empty());
    let waited = start.elapsed();
    common::assert_dropped_after_a_second(waited, Duration::from_secs(15));
    server.expect_stderr("idle", Duration::from_secs(10));
}

// The tests `help_and_bad_flags` and `stray_argument_is_refused`.
common::cli::server_and_client_flag_tests!(SERVER, CLIENT, usage_shows = "--addr");

/// The server reports a port in use in plain words.
#[test]
fn address_in_use_is_explained() {
    if !reference_only(SERVER, "address_in_use_is_explained") {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    AssertCommand::from_std(common::command(SERVER))
        .args(["--addr", &taken.local_addr().unwrap().to_string()])
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains("already in use").and(predicate::str::contains("--addr")));
}

/// --trace shows what was received (<-) and sent (->), on stderr only.
#[test]
fn trace_shows_both_directions() {
    if !reference_only(SERVER, "trace_shows_both_directions") {
        return;
    }
    let server = Server::start(SERVER, &["--trace"]);
    let echoed = echo_round_trip(connect(server.addr()), b"traced\n".to_vec());
    assert_eq!(echoed, b"traced\n");
    server.expect_stderr("<- \"traced\\n\"", Duration::from_secs(10));
    server.expect_stderr("-> \"traced\\n\"", Duration::from_secs(10));
    assert_eq!(
        server.stdout().lines().count(),
        1,
        "stdout holds only the listening line"
    );
}

/// The client's --trace shows its side of the conversation too.
#[test]
fn client_trace_shows_both_directions() {
    if !reference_only(CLIENT, "client_trace_shows_both_directions") {
        return;
    }
    let server = Server::start(SERVER, &[]);
    common::cli::traced_client_run(CLIENT, server.addr(), "ping\n")
        .stdout("ping\n")
        .stderr(predicate::str::contains("-> ping").and(predicate::str::contains("<- ping")));
}

/// Exercise (chapter 3): the client prints whole replies even when each
/// arrives in many small pieces.
#[test]
fn exercise_1_client_reassembles_split_replies() {
    let addr = dribbling_echo_server(3);
    run_client(&addr.to_string(), b"partial reads\nare normal\n")
        .expect_stdout(b"partial reads\nare normal\n");
}

/// Exercise (chapter 3): the client handles a 100 000-byte line, far more
/// than one read returns.
#[test]
fn exercise_2_client_handles_long_lines() {
    let server_addr = dribbling_echo_server(16 * 1024);
    let long: String = (0..100_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let lines = format!("{long}\nshort\n");
    run_client(&server_addr.to_string(), lines.as_bytes()).expect_stdout(lines.as_bytes());
}

/// A client that vanishes mid-stream without reading its echo does not
/// disturb the server: the next client is served.
#[test]
fn survives_a_client_that_vanishes_mid_stream() {
    let server = Server::start(SERVER, &[]);
    {
        let mut rude = connect(server.addr());
        rude.write_all(&vec![7u8; 256 * 1024]).unwrap();
        // Dropped here without reading: the close resets the connection.
    }
    let echoed = echo_round_trip(connect(server.addr()), b"next\n".to_vec());
    assert_eq!(echoed, b"next\n");
}

/// Sends `payload` from another thread while reading the echo here, then
/// half-closes; returns everything echoed until the server closed.
///
/// Writing and reading at the same time matters: if we wrote 4 MiB before
/// reading, the server's replies would fill our receive buffer, the server
/// would stop reading, and both sides would wait for each other forever.
fn echo_round_trip(stream: TcpStream, payload: Vec<u8>) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&payload).unwrap();
        // Half-close: "I have sent everything". The server sees end of
        // stream, finishes echoing, and closes its side too.
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = stream;
    let echoed = read_to_end(&mut reader);
    sender.join().unwrap();
    echoed
}

/// Connects fifty clients and keeps them all open. Each says hello and must
/// get it back while the others are connected (waiting at most `wait`);
/// then all fifty send 10 KB or more at the same time and must get exactly
/// their own bytes back.
fn fifty_at_once(addr: SocketAddr, wait: Duration) -> Result<(), String> {
    let mut clients = Vec::new();
    for i in 0..50u64 {
        let mut stream = connect(addr);
        stream.set_read_timeout(Some(wait)).unwrap();
        let hello = format!("hello from client {i}\n");
        stream.write_all(hello.as_bytes()).unwrap();
        let mut got = vec![0u8; hello.len()];
        if let Err(e) = stream.read_exact(&mut got) {
            return Err(format!(
                "client {i} sent {hello:?} and got no echo within {wait:?} ({e}) while {i} \
                 other clients were still connected: does the server serve one client at a \
                 time? Each client needs its own thread."
            ));
        }
        common::report::assert_bytes(
            &format!("client {i}'s echo"),
            hello.as_bytes(),
            hello.as_bytes(),
            &got,
        );
        stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
        clients.push(stream);
    }
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            thread::spawn(move || {
                let payload = Rng::new(i as u64 + 100).bytes(10_000 + i * 997);
                let echoed = echo_round_trip(stream, payload.clone());
                common::report::assert_bytes(
                    &format!("client {i}'s echo (someone else's or damaged bytes?)"),
                    &payload,
                    &payload,
                    &echoed,
                );
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| "a client failed (its message is above)".to_string())?;
    }
    Ok(())
}

/// A stand-in echo server made by the test: it echoes each line back in
/// pieces of `piece` bytes with a pause between them, like a slow network.
/// A client that assumes "one read = one reply" breaks against it.
fn dribbling_echo_server(piece: usize) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = Vec::new();
        while std::io::BufRead::read_until(&mut reader, b'\n', &mut line).is_ok_and(|n| n > 0) {
            for chunk in line.chunks(piece) {
                if writer.write_all(chunk).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(2));
            }
            line.clear();
        }
    });
    addr
}

/// Runs the client example (or a learner's client) against `addr` with
/// `stdin`, to its end, for at most 30 s; failures show what was sent,
/// expected and printed, cut to fit a screen.
fn run_client(addr: &str, stdin: &[u8]) -> common::report::Finished {
    let mut cmd = common::command(CLIENT);
    cmd.args(["--addr", addr]);
    common::report::run_to_end(
        &common::describe(CLIENT),
        cmd,
        stdin,
        Duration::from_secs(30),
    )
}
