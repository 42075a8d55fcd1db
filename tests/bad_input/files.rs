//! The file server (`03_file_server`) under bad input: garbage logins and
//! commands, lying sizes and digests, a slow-loris client, a flood past
//! `--max-conns`, and parallel password guessing. Afterwards a real upload
//! and download must work and the root must hold only that file.

use super::*;
use common::files::FileClient;

/// File server: 3,000 garbage sessions (broken handshakes; after a real login,
/// bad names, impossible sizes such as `PUT x 99999999999999999999 …`,
/// bodies cut short, wrong digests, over-long lines) leave the root empty and
/// no thread behind; then a real client stores and fetches a file, and the
/// root holds exactly that file. (Reference only: it relies on the hidden
/// `--deny-delay-ms`; at the default 500 ms per DENIED it would take minutes.)
#[test]
fn file_server_survives_garbage() {
    if !reference_only(FILES, "file_server_survives_garbage") {
        return;
    }
    let (root, users) = file_setup("files");
    let (ctx, mut server, before, addr) = watch(
        "file_server_survives_garbage",
        start_file_server(&root, &users, &[]),
    );
    survive_garbage(&ctx, &mut server, before, 3000, move |rng, log| {
        file_session(addr, rng, log)
    });
    assert_eq!(
        dir_entries(&root),
        Vec::<String>::new(),
        "the garbage left files in the root\n{}",
        ctx.about()
    );

    let data = ctx.rng(1000).bytes(3000);
    let digest = hex_digest(&data);
    let mut client = logged_in(addr);
    let ready = client.ask(format!("PUT kept.bin {} {digest}", data.len()).as_bytes());
    assert_eq!(ready, "READY", "{}", ctx.about());
    client.writer.write_all(&data).unwrap();
    assert_eq!(client.line(), format!("OK {} {digest}", data.len()));
    assert_eq!(
        client.ask(b"GET kept.bin"),
        format!("OK {} {digest}", data.len())
    );
    let mut body = vec![0u8; data.len()];
    client.reader.read_exact(&mut body).unwrap();
    assert!(body == data, "GET returned other bytes than were stored");
    assert_eq!(client.ask(b"LIST"), "OK 1");
    assert_eq!(client.line(), format!("{} {digest} kept.bin", data.len()));
    assert_eq!(client.ask(b"QUIT"), "BYE");
    drop(client);
    assert_eq!(dir_entries(&root), ["kept.bin"], "{}", ctx.about());
    threads_settle(&ctx, &server, before);
}

/// File server (`--line-timeout 1`, idle 30 s): a client trickling its
/// handshake answer, a logged-in one trickling a command, and one trickling
/// an upload's body (5 bytes/s, under the 500 bytes/s a body must average
/// after its first second) are each dropped after about a second, which the
/// 30 s idle clock alone would never do. So is one that goes silent in the
/// middle of a body. No partial upload is left behind, and a real client is
/// served meanwhile.
#[test]
fn slow_loris_is_dropped_file_server() {
    if !reference_only(FILES, "slow_loris_is_dropped_file_server") {
        return;
    }
    let (root, users) = file_setup("loris");
    let (ctx, server, before, addr) = watch(
        "slow_loris_is_dropped_file_server",
        start_file_server(
            &root,
            &users,
            &["--line-timeout", "1", "--idle-timeout", "30"],
        ),
    );
    lorises(vec![
        (
            "slow-loris in the handshake",
            Box::new(move || {
                let mut stream = raw(addr);
                assert!(raw_line(&mut stream).starts_with("AUTH HMAC-SHA256 "));
                (stream, b'A')
            }),
        ),
        (
            "slow-loris after login",
            Box::new(move || {
                let client = logged_in(addr);
                (client.writer, b'L')
            }),
        ),
        (
            "slow-loris in an upload's body",
            Box::new(move || {
                let mut client = logged_in(addr);
                let digest = to_hex(&sha256(&[b'B'; 1000]));
                let ready = client.ask(format!("PUT loris.bin 1000 {digest}").as_bytes());
                assert_eq!(ready, "READY");
                (client.writer, b'B')
            }),
        ),
    ]);
    server.expect_stderr("body arrived too slowly", Duration::from_secs(5));
    // A client that stops outright in the middle of a body: the idle clock
    // (30 s) would wait, but no single wait in a body may outlast the line
    // timeout (1 s here).
    let mut stalled = logged_in(addr);
    let digest = to_hex(&sha256(&[b'S'; 1000]));
    let ready = stalled.ask(format!("PUT stalled.bin 1000 {digest}").as_bytes());
    assert_eq!(ready, "READY");
    stalled.writer.write_all(&[b'S'; 10]).unwrap();
    let since = Instant::now();
    stalled
        .writer
        .set_read_timeout(Some(TRICKLE_LIMIT))
        .unwrap();
    let mut rest = Vec::new();
    let closed = stalled.reader.read_to_end(&mut rest);
    let after = since.elapsed();
    assert!(
        closed.is_ok() && after >= Duration::from_millis(800) && after < TRICKLE_LIMIT,
        "a client silent in the middle of a body should be dropped after about 1 s, \
         not {closed:?} after {after:?} (it was told {})",
        show(&rest)
    );
    let mut client = logged_in(addr);
    assert_eq!(client.ask(b"LIST"), "OK 0");
    drop(client);
    assert_eq!(dir_entries(&root), Vec::<String>::new());
    threads_settle(&ctx, &server, before);
}

/// File server (`--max-conns 3`): 200 more clients get `ERR server full`
/// (not even a challenge); the three logged-in ones keep working.
#[test]
fn max_conns_flood_file_server() {
    if !reference_only(FILES, "max_conns_flood_file_server") {
        return;
    }
    let (root, users) = file_setup("flood");
    let (ctx, server, before, addr) = watch(
        "max_conns_flood_file_server",
        start_file_server(&root, &users, &["--max-conns", "3"]),
    );
    let mut held: Vec<FileClient> = (0..3).map(|_| logged_in(addr)).collect();
    flood(&ctx, addr, b"ERR server full\n");
    for client in &mut held {
        assert_eq!(client.ask(b"LIST"), "OK 0");
    }
    drop(held.pop());
    eventually_admitted("file server", || {
        let mut stream = raw(addr);
        raw_line(&mut stream).starts_with("AUTH HMAC-SHA256 ")
    });
    drop(held);
    threads_settle(&ctx, &server, before);
}

/// File server (`--deny-delay-ms 20`, the usual 5 free failures a minute):
/// 40 wrong logins sent at once from one address get at most a dozen
/// `DENIED`s in 3 s, not 40 in 20 ms: parallel connections do not multiply
/// a guesser's speed. The others wait their turn or are closed unanswered
/// (and logged).
#[test]
fn parallel_guessing_file_server() {
    if !reference_only(FILES, "parallel_guessing_file_server") {
        return;
    }
    let (root, users) = file_setup("guessing");
    let server = start_file_server(
        &root,
        &users,
        &["--deny-delay-ms", "20", "--free-failures", "5"],
    );
    let denied = guess_flood(
        server.addr(),
        |stream| {
            let challenge = raw_line(stream);
            let sn = challenge.strip_prefix("AUTH HMAC-SHA256 ").unwrap();
            let login = file_login_lines(sn, "learner", "a-guess").unwrap();
            format!("{}\n", login.line).into_bytes()
        },
        "DENIED",
    );
    assert!(
        (5..=GUESS_ANSWERS_MAX).contains(&denied),
        "{denied} of {GUESSES} parallel guesses answered within {GUESS_WATCH:?}"
    );
    server.expect_stderr("too many failed logins from this address", REPLY_TIMEOUT);
}

/// Names the garbage tries to store under (one is the name the real client
/// uses afterwards).
const FILE_NAMES: &[&str] = &["g0", "g1.txt", "a-b_c.d", "kept.bin"];

/// File commands with wrong arguments, bad names and impossible sizes.
const FILE_JUNK: &[&str] = &[
    "LIST x",
    "LIST ",
    "QUIT now",
    "GET",
    "GET ",
    "GET ../x",
    "GET /etc/passwd",
    "GET .upload-0000000000000000",
    "GET a b",
    "GET .",
    "GET ..",
    "STAT",
    "STAT ../x",
    "DELETE",
    "DELETE ../../x",
    "DELETE .",
    "PUT",
    "PUT ",
    "PUT x",
    "PUT x 5",
    "PUT x -5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x +5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 0x10 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 5 E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "PUT x 5 e3b0c442",
    "PUT x 5 zzb0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 99999999999999999999 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 18446744073709551615 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 18446744073709551616 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT x 4097 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT ../x 5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT .hidden 5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT a b 5 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "PUT  x  5  e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "AUTH learner x y",
    "HELO",
    "",
    " ",
    "list",
];

/// A broken handshake answer (the server's nonce is never read, so no proof
/// can be right).
fn auth_junk(rng: &mut Rng) -> Vec<u8> {
    let nonce = to_hex(&rng.bytes(32));
    let proof = to_hex(&rng.bytes(32));
    let mut line = match rng.below(10) {
        0 => format!("AUTH learner {nonce} {proof}").into_bytes(),
        1 => format!("AUTH nobody {nonce} {proof}").into_bytes(),
        2 => format!("AUTH learner {nonce}").into_bytes(),
        3 => format!("AUTH learner {nonce} {proof} extra").into_bytes(),
        4 => format!("auth  learner  {nonce}  {proof}").into_bytes(),
        5 => {
            // Over the 512-byte limit of a handshake line.
            let mut line = b"AUTH learner ".to_vec();
            let len = 500 + rng.below(6000) as usize;
            line.extend(printable(rng, len));
            line
        }
        6 => {
            let mut line = b"AUTH ".to_vec();
            line.extend(broken_utf8(rng));
            line.extend(format!(" {nonce} {proof}").bytes());
            line
        }
        7 => format!("PUT g0 5 {}", hex_digest(b"hello")).into_bytes(),
        8 => pick(rng, &["LIST", "QUIT", "", "AUTH", "GET g0"])
            .as_bytes()
            .to_vec(),
        _ => junk(rng),
    };
    line.extend_from_slice(ending(rng));
    if rng.below(3) == 0 {
        line.extend(junk(rng));
    }
    line
}

/// One command after a correct login, possibly with a body. Returns the
/// bytes and whether the session must end right after them (a body cut
/// short must stay short: what we sent next would complete it).
fn file_command(rng: &mut Rng) -> (Vec<u8>, bool) {
    let name = pick(rng, FILE_NAMES);
    let mut bytes = match rng.below(10) {
        0 | 1 => pick(rng, FILE_JUNK).as_bytes().to_vec(),
        2 => {
            // Over the command line limit: ERR bad request, then a close.
            let len = 4097 + rng.below(8000) as usize;
            let mut line = b"GET ".to_vec();
            line.extend(printable(rng, len));
            line
        }
        3 | 4 => {
            // A body cut short: the server must throw its temporary away.
            let size = 1 + rng.below(FILE_MAX_SIZE as u64) as usize;
            let body = rng.bytes(size);
            let sent = rng.below(size as u64) as usize;
            let mut out = format!("PUT {name} {size} {}\n", hex_digest(&body)).into_bytes();
            out.extend_from_slice(&body[..sent]);
            return (out, true);
        }
        5 | 6 => {
            // A whole body with the wrong digest (and maybe bytes past its
            // end, which the server must read as the next command).
            let size = rng.below(FILE_MAX_SIZE as u64 + 1) as usize;
            let body = rng.bytes(size);
            let mut out = format!("PUT {name} {size} {}\n", wrong_digest(&body)).into_bytes();
            out.extend_from_slice(&body);
            if rng.below(3) == 0 {
                out.extend(junk(rng));
            }
            return (out, false);
        }
        7 => {
            let mut line = pick(rng, &["GET ", "STAT ", "DELETE ", "PUT "])
                .as_bytes()
                .to_vec();
            line.extend(broken_utf8(rng));
            line
        }
        8 => format!("{} {name}", pick(rng, &["GET", "STAT", "get", "DELETE"])).into_bytes(),
        _ => junk(rng),
    };
    bytes.extend_from_slice(ending(rng));
    (bytes, false)
}

/// Reads the challenge, answers it correctly, checks the server's proof.
fn file_login(s: &mut Session<'_>) -> Result<(), String> {
    let challenge = s.line("the AUTH challenge")?;
    let Some(sn) = challenge.strip_prefix("AUTH HMAC-SHA256 ") else {
        return Err(format!("expected the AUTH challenge, got {challenge:?}"));
    };
    let login = file_login_lines(sn, "learner", FILE_SECRET).map_err(|e| e.to_string())?;
    s.send(format!("{}\n", login.line).as_bytes());
    let ok = s.line("OK <server proof> after a correct login")?;
    if ok != login.ok {
        return Err(format!("a correct login got {ok:?}"));
    }
    Ok(())
}

/// One garbage file session: a broken handshake, or a correct login
/// followed by bad commands.
fn file_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let mut s = Session::open(addr, log)?;
    if rng.below(10) < 4 {
        // Garbage instead of a login. The challenge is certainly there, unread.
        let bytes = auth_junk(rng);
        s.send_split(rng, &bytes);
        let end = Ending::pick(rng, true);
        return s.end(end).map(drop);
    }
    file_login(&mut s)?;
    for _ in 0..1 + rng.below(6) {
        let (bytes, must_end) = file_command(rng);
        s.send_split(rng, &bytes);
        if must_end {
            break;
        }
    }
    let end = Ending::pick(rng, false);
    s.end(end).map(drop)
}

/// A logged-in file client for the checks (panics on any surprise).
fn logged_in(addr: SocketAddr) -> FileClient {
    FileClient::login(addr, "learner", FILE_SECRET)
}

/// A served folder and a users file for one test.
fn file_setup(test: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(&format!("bad-input-files-{test}"));
    let root = dir.join("root");
    fs::create_dir(&root).unwrap();
    let users = dir.join("users.txt");
    fs::write(&users, format!("learner:{FILE_SECRET}\n")).unwrap();
    (root, users)
}

/// Starts the file server with a 1 ms pause before DENIED and no slowing
/// down of an address that fails often (hidden knobs: the garbage tests fail
/// thousands of logins from one address on purpose) and a small
/// `--max-size`, plus `extra`.
fn start_file_server(root: &Path, users: &Path, extra: &[&str]) -> Server {
    let max = FILE_MAX_SIZE.to_string();
    let mut args = vec![
        "--root",
        root.to_str().unwrap(),
        "--users",
        users.to_str().unwrap(),
        "--deny-delay-ms",
        "1",
        "--free-failures",
        "1000000000",
        "--max-size",
        &max,
    ];
    args.extend_from_slice(extra);
    Server::start(FILES, &args)
}
