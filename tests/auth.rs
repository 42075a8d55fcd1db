//! The auth handshake (`src/auth.rs`), both sides, over real sockets.
//!
//! A small server made with the library's own `Server` runs the server side
//! of the handshake on `127.0.0.1:0` and reports each verdict; the tests play
//! honest clients, guessers, replayers, impostor servers and Python.

mod common;

use common::files::FileClient;
use common::have;
use netlessons::auth::{self, Users};
use netlessons::connection::Connection;
use netlessons::server::{Server, ServerConfig, ShutdownHandle};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The pause before `DENIED` in these tests: short, but long enough to measure.
const DELAY: Duration = Duration::from_millis(60);

const USERS: &str = "# test users\nada:s3cret\nbob:pw:with:colons\n";

/// The right secret gets `OK <server proof>`, the server learns who it is
/// talking to, and the conversation carries on.
#[test]
fn right_secret_succeeds() {
    let server = HandshakeServer::start();
    let mut conn = Connection::connect(server.addr, false).unwrap();
    auth::client_handshake(&mut conn, "ada", "s3cret").unwrap();
    assert_eq!(
        conn.read_line(100).unwrap().as_deref(),
        Some(&b"hello ada"[..])
    );
    assert_eq!(server.verdict().as_deref(), Some("ada"));
    // A secret containing ':' (split at the first colon only).
    let mut conn = Connection::connect(server.addr, false).unwrap();
    auth::client_handshake(&mut conn, "bob", "pw:with:colons").unwrap();
    assert_eq!(server.verdict().as_deref(), Some("bob"));
}

/// A wrong secret is refused with `PermissionDenied` and a clear message.
#[test]
fn wrong_secret_is_denied() {
    let server = HandshakeServer::start();
    let mut conn = Connection::connect(server.addr, false).unwrap();
    let err = auth::client_handshake(&mut conn, "ada", "guess").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("access denied"), "{err}");
    assert_eq!(server.verdict(), None);
}

/// A user who is not in the table is refused the same way.
#[test]
fn unknown_user_is_denied() {
    let server = HandshakeServer::start();
    let mut conn = Connection::connect(server.addr, false).unwrap();
    let err = auth::client_handshake(&mut conn, "mallory", "s3cret").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(server.verdict(), None);
}

/// Every malformed answer gets `DENIED` and the connection closes; no
/// answer crashes the server or gets anything else.
#[test]
fn malformed_auth_lines_are_denied() {
    let server = HandshakeServer::start();
    let cn = "11".repeat(32);
    let malformed: Vec<MakeAnswer<'_>> = vec![
        Box::new(|_| b"\n".to_vec()),
        Box::new(|_| b"HELLO\n".to_vec()),
        Box::new(|_| b"AUTH ada\n".to_vec()),
        Box::new(|sn| {
            format!(
                "AUTH ada nothex {}",
                auth::client_proof("s3cret", sn, "nothex", "ada")
            )
            .into_bytes()
        }),
        // Upper-case hex is not the nonce format.
        Box::new(|_| format!("AUTH ada {} {}\n", "AB".repeat(32), "00".repeat(32)).into_bytes()),
        // A right proof with an extra word is still not the format.
        Box::new(|sn| {
            answer("ada", "s3cret", sn, &cn)
                .replace('\n', " extra\n")
                .into_bytes()
        }),
        // Two spaces instead of one.
        Box::new(|sn| {
            answer("ada", "s3cret", sn, &cn)
                .replacen(' ', "  ", 1)
                .into_bytes()
        }),
        Box::new(|_| b"AUTH \xff\xfe \x00\n".to_vec()),
        // Far longer than any real answer.
        Box::new(|_| [vec![b'A'; 5000], b"\n".to_vec()].concat()),
    ];
    for (i, make) in malformed.iter().enumerate() {
        let (reply, _) = try_answer(&server, |sn| {
            let mut line = make(sn);
            if line.last() != Some(&b'\n') {
                line.push(b'\n');
            }
            line
        });
        assert_eq!(
            String::from_utf8_lossy(&reply),
            "DENIED\n",
            "malformed answer #{i}"
        );
    }
    // And the server still serves honest clients.
    let mut conn = Connection::connect(server.addr, false).unwrap();
    auth::client_handshake(&mut conn, "ada", "s3cret").unwrap();
}

/// Parallel connections do not multiply a guesser's speed: 40 wrong answers
/// sent at once from one address get at most a dozen `DENIED`s in the first
/// 3 s (5 at the usual delay, then one after another at doubling intervals),
/// where the per-connection delay alone would answer all 40 within 60 ms.
/// The others wait their turn or are closed without an answer; none is told
/// anything else.
#[test]
fn parallel_guesses_are_answered_one_after_another() {
    const GUESSES: usize = 40;
    const WATCH: Duration = Duration::from_secs(3);
    // The course's limits, except that no answer waits more than 2 s (so the
    // test's queued connections are done soon after it looks).
    let throttle = auth::LoginThrottle::with_limits(
        DELAY,
        auth::FREE_FAILURES,
        auth::FAILURE_WINDOW,
        Duration::from_secs(2),
    );
    let server = HandshakeServer::start_with(throttle);
    let cn = "33".repeat(32);
    let clients: Vec<(FileClient, String)> = (0..GUESSES)
        .map(|_| {
            let mut raw = FileClient::connect(server.addr);
            let sn = challenge(&mut raw);
            (raw, sn)
        })
        .collect();
    let send = |(raw, sn): &mut (FileClient, String)| {
        raw.send_bytes(answer("ada", "a-guess", sn, &cn).as_bytes());
    };
    let outcomes = common::answers_at_once(clients, send, WATCH, |(mut raw, _), left| {
        raw.writer.set_read_timeout(Some(left)).unwrap();
        let mut got = Vec::new();
        match raw.reader.read_to_end(&mut got) {
            Ok(_) if got.is_empty() => "closed unanswered",
            Ok(_) if got == b"DENIED\n" => "denied",
            Ok(_) => panic!("a guess got {:?}", String::from_utf8_lossy(&got)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                assert!(got.is_empty(), "a partial answer: {got:?}");
                "still waiting"
            }
            Err(e) => panic!("reading a guess's answer: {e}"),
        }
    });
    let count = |what| outcomes.iter().filter(|&&o| o == what).count();
    let denied = count("denied");
    assert!(
        (auth::FREE_FAILURES..=12).contains(&denied),
        "{denied} of {GUESSES} parallel guesses answered within {WATCH:?} (outcomes: {outcomes:?})"
    );
    assert!(count("closed unanswered") > 0, "{outcomes:?}");
}

/// The throttle counts an IPv4 address, or an IPv6 /64, as one client (a
/// mapped IPv4 address as that IPv4 address); past the free failures the
/// answers double and queue, one beyond the maximum wait is not answered,
/// and a success resets the count.
#[test]
fn throttle_counts_per_client_doubles_and_resets() {
    let ms = Duration::from_millis;
    let throttle = auth::LoginThrottle::with_limits(ms(1), 5, Duration::from_secs(60), ms(10));
    let ip = |text: &str| text.parse().unwrap();
    for _ in 0..3 {
        assert_eq!(throttle.wait_for(ip("2001:db8::1"), false), Some(ms(1)));
        assert_eq!(throttle.wait_for(ip("192.0.2.1"), false), Some(ms(1)));
    }
    // The same /64, and the same IPv4 address seen through a dual-stack socket.
    for _ in 0..2 {
        assert_eq!(
            throttle.wait_for(ip("2001:db8::ffff:2"), false),
            Some(ms(1))
        );
        assert_eq!(
            throttle.wait_for(ip("::ffff:192.0.2.1"), false),
            Some(ms(1))
        );
    }
    // Another /64, another IPv4 address: fresh counts.
    assert_eq!(throttle.wait_for(ip("2001:db8:0:1::1"), false), Some(ms(1)));
    assert_eq!(throttle.wait_for(ip("192.0.2.2"), false), Some(ms(1)));
    // The 6th failure: twice the delay. The 7th, at once: after the 6th's
    // answer, then four times the delay. The 8th would wait 2 + 4 + 8 > 10 ms.
    let sixth = throttle.wait_for(ip("192.0.2.1"), false).unwrap();
    assert!(sixth <= ms(2) && sixth > ms(1), "{sixth:?}");
    let seventh = throttle.wait_for(ip("192.0.2.1"), false).unwrap();
    assert!(seventh > ms(5) && seventh <= ms(6), "{seventh:?}");
    assert_eq!(throttle.wait_for(ip("192.0.2.1"), false), None);
    // A success waits its turn like a failure, then resets the count.
    thread::sleep(ms(20));
    assert!(throttle.before_answer(ip("192.0.2.1"), true));
    assert_eq!(throttle.wait_for(ip("192.0.2.1"), false), Some(ms(1)));
    // Meanwhile the IPv6 client is still at 5: its next failure doubles.
    assert_eq!(throttle.wait_for(ip("2001:db8::3"), false), Some(ms(2)));
}

/// Failures older than the window no longer count.
#[test]
fn throttle_forgets_failures_after_the_window() {
    let ms = Duration::from_millis;
    let throttle = auth::LoginThrottle::with_limits(ms(1), 2, ms(100), ms(1000));
    let peer = "198.51.100.4".parse().unwrap();
    assert_eq!(throttle.wait_for(peer, false), Some(ms(1)));
    assert_eq!(throttle.wait_for(peer, false), Some(ms(1)));
    assert!(throttle.wait_for(peer, false).unwrap() > ms(1));
    thread::sleep(ms(250));
    assert_eq!(throttle.wait_for(peer, false), Some(ms(1)));
}

/// Wrong secret, unknown user and a malformed line are indistinguishable:
/// the same bytes, each after at least the deny delay.
#[test]
fn every_failure_looks_the_same() {
    let server = HandshakeServer::start();
    let cn = "22".repeat(32);
    let wrong_secret = try_answer(&server, |sn| answer("ada", "wrong", sn, &cn).into_bytes());
    let unknown_user = try_answer(&server, |sn| {
        answer("nobody", "s3cret", sn, &cn).into_bytes()
    });
    let malformed = try_answer(&server, |_| b"AUTH ada\n".to_vec());
    for (what, (reply, took)) in [
        ("wrong secret", wrong_secret),
        ("unknown user", unknown_user),
        ("malformed", malformed),
    ] {
        assert_eq!(reply, b"DENIED\n", "{what}");
        assert!(
            took >= DELAY,
            "{what}: DENIED after {took:?}, before the {DELAY:?} delay"
        );
    }
}

/// CRLF line endings are accepted (`nc -C`, telnet).
#[test]
fn crlf_answer_is_accepted() {
    let server = HandshakeServer::start();
    let mut raw = FileClient::connect(server.addr);
    let sn = challenge(&mut raw);
    let cn = "33".repeat(32);
    raw.send_bytes(
        answer("ada", "s3cret", &sn, &cn)
            .replace('\n', "\r\n")
            .as_bytes(),
    );
    let ok = raw.line();
    assert_eq!(
        ok,
        format!("OK {}", auth::server_proof("s3cret", &sn, &cn, "ada"))
    );
}

/// A response captured from one connection is worthless on the next: the
/// server's nonce is new every time.
#[test]
fn replayed_response_is_denied() {
    let server = HandshakeServer::start();
    // An eavesdropper records a complete, successful login…
    let mut first = FileClient::connect(server.addr);
    let sn1 = challenge(&mut first);
    let captured = answer("ada", "s3cret", &sn1, &"44".repeat(32));
    first.send_bytes(captured.as_bytes());
    assert!(first.line().starts_with("OK "), "the honest login works");
    assert_eq!(server.verdict().as_deref(), Some("ada"));
    // …and plays it back on a new connection.
    let mut second = FileClient::connect(server.addr);
    let sn2 = challenge(&mut second);
    assert_ne!(sn1, sn2, "a fresh nonce per connection");
    second.send_bytes(captured.as_bytes());
    assert_eq!(second.rest_clean(), b"DENIED\n");
    assert_eq!(server.verdict(), None);
}

/// A server that does not know the secret cannot produce the server proof,
/// and the client refuses to go on: mutual authentication.
#[test]
fn impostor_server_is_detected() {
    // Knows the format, not the secret.
    let (addr, fake) = impostor(|sn, line| {
        let cn = line.split(' ').nth(2).unwrap_or("");
        auth::server_proof("not-the-secret", sn, cn, "ada")
    });
    let mut conn = Connection::connect(addr, false).unwrap();
    let err = auth::client_handshake(&mut conn, "ada", "s3cret").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("impostor"), "{err}");
    drop(conn);
    assert!(
        fake.join().unwrap().is_empty(),
        "the client sent nothing more to the impostor"
    );
}

/// Reflection: an impostor that sends the client's own proof back as its
/// "server proof" is caught too, because the two proofs hash different words.
#[test]
fn reflected_client_proof_is_not_a_server_proof() {
    let (addr, fake) = impostor(|_, line| line.split(' ').nth(3).unwrap_or("").to_string());
    let mut conn = Connection::connect(addr, false).unwrap();
    let err = auth::client_handshake(&mut conn, "ada", "s3cret").unwrap_err();
    assert!(err.to_string().contains("impostor"), "{err}");
    drop(conn);
    assert!(fake.join().unwrap().is_empty());
}

/// A refusal such as `ERR server full` instead of a challenge is reported as
/// a refusal, not as a garbled handshake; a silent close as end of stream.
#[test]
fn client_reports_refusal_and_early_close() {
    for (sent, kind, needle) in [
        (
            &b"ERR server full\n"[..],
            io::ErrorKind::ConnectionRefused,
            "server full",
        ),
        (
            b"220 smtp.example ESMTP\r\n",
            io::ErrorKind::InvalidData,
            "unexpected reply",
        ),
        (b"", io::ErrorKind::UnexpectedEof, "closed"),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(sent).unwrap();
        });
        let mut conn = Connection::connect(addr, false).unwrap();
        let err = auth::client_handshake(&mut conn, "ada", "s3cret").unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        fake.join().unwrap();
    }
}

/// The proofs match values computed independently with Python's `hmac`
/// (see the docs), so any language can take part.
#[test]
fn proofs_match_known_values() {
    let (sn, cn) = ("00".repeat(32), "11".repeat(32));
    assert_eq!(
        auth::client_proof("s3cret", &sn, &cn, "ada"),
        "94d27144903826cc99141802b17cf5220b804c6438ed7c4bf3cda6b9c5e788d8"
    );
    assert_eq!(
        auth::server_proof("s3cret", &sn, &cn, "ada"),
        "4aff9bd7feac2c7999ed8d4d47d823964dc496e17a3af67f7c9a9b678e1b5cda"
    );
}

/// A client written in Python with `hmac` and `hashlib` logs in, and checks
/// the server's proof the same way.
#[test]
fn python_hmac_client_logs_in() {
    if !have("python3", "python_hmac_client_logs_in") {
        return;
    }
    let server = HandshakeServer::start();
    let script = r#"
import hashlib, hmac, os, socket, sys
user, secret = "ada", b"s3cret"
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20) as s:
    f = s.makefile("rwb")
    sn = f.readline().decode().split()[2]
    cn = os.urandom(32).hex()
    proof = lambda role: hmac.new(secret, f"{role} {sn} {cn} {user}".encode(), hashlib.sha256).hexdigest()
    f.write(f"AUTH {user} {cn} {proof('client')}\n".encode()); f.flush()
    ok = f.readline().decode().split()
    assert ok[0] == "OK" and hmac.compare_digest(ok[1], proof("server")), ok
    print(f.readline().decode().strip())
"#;
    let out = common::python(script, &[&server.addr.port().to_string()]);
    assert_eq!(out.trim(), "hello ada");
    assert_eq!(server.verdict().as_deref(), Some("ada"));
}

/// Nonces and demo secrets are fresh lowercase hex of the right length.
#[test]
fn nonces_and_secrets_are_fresh_hex() {
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let (a, b) = (auth::new_nonce().unwrap(), auth::new_nonce().unwrap());
    assert!(a.len() == 64 && hex(&a) && a != b);
    let (a, b) = (auth::new_secret().unwrap(), auth::new_secret().unwrap());
    assert!(a.len() == 32 && hex(&a) && a != b);
}

/// The users file: split at the first `:`, `\r` stripped, comments and
/// blank lines skipped, secrets kept exactly as written.
#[test]
fn users_file_parsing() {
    let users = Users::parse(
        "# team\r\n\n  \nada:s3cret\r\nbob:a:b:c\n  # indented comment\ncy: spaced \n",
    )
    .unwrap();
    assert_eq!(users.names().collect::<Vec<_>>(), ["ada", "bob", "cy"]);
    assert_eq!(users.secret("ada"), Some("s3cret"));
    assert_eq!(users.secret("bob"), Some("a:b:c"));
    assert_eq!(users.secret("cy"), Some(" spaced "));
    assert_eq!(users.secret("eve"), None);
    assert!(Users::parse("").unwrap().is_empty());
    // Debug shows names, never secrets.
    let shown = format!("{users:?}");
    assert!(
        shown.contains("ada") && !shown.contains("s3cret"),
        "{shown}"
    );
}

/// Mistakes in a users file are errors that name the line.
#[test]
fn users_file_errors_name_the_line() {
    for (text, line, needle) in [
        ("ada:pw\nno colon here\n", "line 2", "name:secret"),
        ("# c\n\nbad name:pw\n", "line 3", "invalid user name"),
        ("ada:\n", "line 1", "empty secret"),
        (":pw\n", "line 1", "invalid user name"),
    ] {
        let err = Users::parse(text).unwrap_err();
        assert!(
            err.contains(line) && err.contains(needle),
            "{text:?} gave {err:?}"
        );
    }
    let err = Users::load(std::path::Path::new("/no/such/users-file")).unwrap_err();
    assert!(err.to_string().contains("/no/such/users-file"), "{err}");
}

/// A server that runs `serve_handshake` on every connection, greets a user
/// who got in with `hello <user>`, and reports each verdict on a channel.
struct HandshakeServer {
    addr: SocketAddr,
    verdicts: Receiver<Option<String>>,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl HandshakeServer {
    fn start() -> HandshakeServer {
        HandshakeServer::start_with(auth::LoginThrottle::new(DELAY))
    }

    /// Like `start`, with a throttle of the test's choosing.
    fn start_with(throttle: auth::LoginThrottle) -> HandshakeServer {
        let users = Users::parse(USERS).unwrap();
        let server = Server::bind(ServerConfig::new("127.0.0.1:0")).unwrap();
        let addr = server.local_addr();
        let stop = server.shutdown_handle();
        let (tx, verdicts) = mpsc::channel();
        let thread = thread::spawn(move || {
            server
                .serve(move |mut conn| {
                    conn.set_idle_timeout(Some(common::IO_TIMEOUT))?;
                    let verdict = auth::serve_handshake(&mut conn, &users, &throttle)?;
                    let _ = tx.send(verdict.clone());
                    if let Some(user) = verdict {
                        conn.send_line(format!("hello {user}"))?;
                        conn.flush()?;
                    }
                    Ok(())
                })
                .unwrap();
        });
        HandshakeServer {
            addr,
            verdicts,
            stop,
            thread: Some(thread),
        }
    }

    /// The verdict of the next connection that finished its handshake.
    fn verdict(&self) -> Option<String> {
        self.verdicts
            .recv_timeout(common::IO_TIMEOUT)
            .expect("the server reported no verdict")
    }
}

impl Drop for HandshakeServer {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server's nonce from its `AUTH HMAC-SHA256 <sn>` challenge, checked
/// for its form: 32 bytes in lowercase hex.
fn challenge(client: &mut FileClient) -> String {
    let sn = client.challenge();
    assert_eq!(sn.len(), 64, "the nonce is 32 bytes in hex");
    assert!(
        sn.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "lowercase hex"
    );
    sn
}

/// A valid answer to the challenge `sn`, as an honest client computes it.
fn answer(user: &str, secret: &str, sn: &str, cn: &str) -> String {
    format!(
        "AUTH {user} {cn} {}\n",
        auth::client_proof(secret, sn, cn, user)
    )
}

/// Sends `answer_line` to a fresh challenge and returns what came back and how long it took.
fn try_answer(
    server: &HandshakeServer,
    answer_line: impl Fn(&str) -> Vec<u8>,
) -> (Vec<u8>, Duration) {
    let mut raw = FileClient::connect(server.addr);
    let sn = challenge(&mut raw);
    let start = Instant::now();
    raw.send_bytes(&answer_line(&sn));
    let rest = raw.rest_clean();
    (rest, start.elapsed())
}

/// Builds an answer line from the server's nonce.
type MakeAnswer<'a> = Box<dyn Fn(&str) -> Vec<u8> + 'a>;

/// A fake server that starts a handshake and then answers `OK` with `proof`
/// (computed from what the client sent). Returns its address and, at the
/// end, everything the client sent after the AUTH line.
fn impostor(
    proof: impl Fn(&str, &str) -> String + Send + 'static,
) -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
        let (mut reader, mut writer, sn, line) = common::files::fake_challenge(stream);
        writeln!(writer, "OK {}", proof(&sn, line.trim_end())).unwrap();
        let mut after = Vec::new();
        let _ = reader.read_to_end(&mut after);
        after
    });
    (addr, thread)
}
