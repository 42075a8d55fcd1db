//! The chat server (`02_chat_server`) under bad input: garbage lines and
//! commands, a slow-loris client, and floods past `--max-conns` and past a
//! low limit. Afterwards two real clients must still talk.

use super::*;
use common::chat::Chatter;

/// Chat: 3,000 garbage sessions later (over-long lines, invalid UTF-8, bad
/// commands, abrupt ends) two clients still talk, nobody else is in the room,
/// and no thread is left over. (Contract flags only: runs under an override.)
#[test]
fn chat_survives_garbage() {
    let (ctx, mut server, before, addr) = watch("chat_survives_garbage", Server::start(CHAT, &[]));
    survive_garbage(&ctx, &mut server, before, 3000, move |rng, log| {
        chat_session(addr, rng, log)
    });
    chat_works(addr, &ctx);
    threads_settle(&ctx, &server, before);
}

/// Chat (`--line-timeout 1`, idle timeout off as by default): a client that
/// trickles a line without ever ending it gets `! …` and is dropped after
/// about a second, and the room hears it left; a silent client stays
/// (reading without talking is normal in a chat).
#[test]
fn slow_loris_is_dropped_chat() {
    if !reference_only(CHAT, "slow_loris_is_dropped_chat") {
        return;
    }
    let (ctx, server, before, addr) = watch(
        "slow_loris_is_dropped_chat",
        Server::start(CHAT, &["--line-timeout", "1"]),
    );
    let mut watcher = Chatter::join_guest(addr);
    let silent = Chatter::join_guest(addr);
    watcher.expect_notice(" joined");
    let got = lorises(vec![(
        "chat slow-loris",
        Box::new(move || {
            let mut stream = raw(addr);
            assert!(raw_line(&mut stream).starts_with("* welcome"));
            (stream, b'z')
        }),
    )]);
    let text = String::from_utf8_lossy(&got[0].1);
    assert!(
        text.starts_with("! "),
        "the slow-loris was told nothing: {text:?}"
    );
    // The watcher saw the slow-loris join and leave; the silent client stays.
    watcher.expect_notice(" joined");
    watcher.expect_notice(" left");
    watcher.send("/who");
    let answer = watcher.line();
    assert!(
        answer.starts_with("* online: ") && answer.matches(", ").count() == 1,
        "expected the watcher and the silent client: {answer:?}"
    );
    drop((watcher, silent));
    threads_settle(&ctx, &server, before);
}

/// Chat (`--max-conns 3`): 200 more clients get `! server full`; the three
/// in the room hear no join or leave from them and keep talking.
#[test]
fn max_conns_flood_chat() {
    if !reference_only(CHAT, "max_conns_flood_chat") {
        return;
    }
    let (ctx, server, before, addr) = watch(
        "max_conns_flood_chat",
        Server::start(CHAT, &["--max-conns", "3"]),
    );
    let mut held: Vec<Chatter> = Vec::new();
    for _ in 0..3 {
        let newcomer = Chatter::join_guest(addr);
        for earlier in &mut held {
            earlier.expect_notice(" joined");
        }
        held.push(newcomer);
    }
    held[0].send("/nick first");
    assert_eq!(held[0].line(), "* you are now first");
    for other in &mut held[1..] {
        assert!(other.line().ends_with(" is now first"));
    }
    flood(&ctx, addr, b"! server full\n");
    held[0].send("still talking");
    for other in &mut held[1..] {
        // The very next line: nothing about the refused clients came first.
        assert_eq!(other.line(), "first: still talking");
    }
    drop(held.pop());
    eventually_admitted("chat", || {
        let mut stream = raw(addr);
        raw_line(&mut stream).starts_with("* welcome")
    });
    drop(held);
    threads_settle(&ctx, &server, before);
}

/// Chat (two threads a client) under `ulimit -n 64` with `--max-conns 1000`:
/// the larger figure is lowered with a warning; of 150 clients held at once
/// exactly the cap get `* welcome`, every other one `! server full` at once;
/// the room still talks, and after the flood a new client gets in.
#[test]
fn low_limit_flood_chat() {
    if !reference_only(CHAT, "low_limit_flood_chat") {
        return;
    }
    let (mut server, cap) = start_with_low_limit(CHAT, &["--max-conns", "1000"]);
    server.expect_stderr("warning: --max-conns 1000 is more than", REPLY_TIMEOUT);
    let addr = server.addr();
    let mut admitted = Vec::new();
    for i in 0..LOW_FLOOD {
        let mut stream = raw(addr);
        let mut first = Vec::new();
        let mut byte = [0u8; 1];
        while !first.ends_with(b"\n") {
            match stream.read(&mut byte) {
                Ok(1) => first.push(byte[0]),
                other => panic!(
                    "client {i} of the flood got {} then {other:?}, not a welcome or a \
                     refusal\n{}",
                    show(&first),
                    server.stderr()
                ),
            }
        }
        if first.starts_with(b"* welcome") {
            admitted.push(stream);
        } else {
            assert_eq!(show(&first), show(b"! server full\n"), "client {i}");
        }
    }
    assert_eq!(
        admitted.len(),
        cap,
        "clients in the room beside the announced cap"
    );
    drop(admitted);
    eventually_admitted("chat under ulimit -n 64", || {
        let mut stream = raw(addr);
        raw_line(&mut stream).starts_with("* welcome")
    });
    assert!(server.is_running(), "{}", server.stderr());
}

/// Chat lines with wrong arguments, odd spacing and hostile names.
const CHAT_JUNK: &[&str] = &[
    "/nick",
    "/nick ",
    "/nick two words",
    "/nick 0123456789abcdefg",
    "/nick é",
    "/nick ../../etc",
    "/nick guest1",
    "/nick GUEST2",
    "/NICK upper",
    "/msg",
    "/msg nobody",
    "/msg nobody hello",
    "/msg guest1 hi",
    "/msg  guest2   spaced   out",
    "/who extra words",
    "/me",
    "/me waves",
    "/topic",
    "/help me",
    "/",
    "//",
    "/ nick x",
    "/quit",
    "/quit now",
    "/dance",
    "",
    " ",
    "\t",
    "hello",
];

/// One chat line of garbage (without its line ending).
fn chat_line(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => junk(rng),
        // Over the 1024-byte limit: `! line too long`, then the server closes.
        1 => {
            let len = 1025 + rng.below(4000) as usize;
            printable(rng, len)
        }
        2 => printable(rng, 1024),
        3 => broken_utf8(rng),
        4 => {
            let mut line = b"/nick ".to_vec();
            let len = rng.below(20) as usize;
            line.extend(printable(rng, len));
            line
        }
        5 => {
            let mut line = b"/topic ".to_vec();
            let len = rng.below(1100) as usize;
            line.extend(printable(rng, len));
            line
        }
        6 => {
            let mut line = b"/msg ".to_vec();
            line.extend(broken_utf8(rng));
            line
        }
        _ => pick(rng, CHAT_JUNK).as_bytes().to_vec(),
    }
}

/// One garbage chat session: a few bad lines, sent without waiting.
fn chat_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let lines: Vec<Vec<u8>> = (0..1 + rng.below(6)).map(|_| chat_line(rng)).collect();
    let bytes = lines_to_bytes(rng, &lines, true);
    // Every chat client is welcomed: a reply is certain.
    let end = Ending::pick(rng, true);
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &bytes);
    s.end(end).map(drop)
}

/// Asserts that the next line about any of `ours` (the checkers' names)
/// is `want`. Lines about nobody of ours are skipped: a garbage session
/// that the server accepts late (from its backlog) may still join, say
/// something and leave, or set the topic, while the checkers talk.
fn expect_ours(chatter: &mut Chatter, want: &str, ours: &[&str], ctx: &Ctx) {
    // Bounded: every read has the socket's timeout, and at most this
    // many unrelated lines are skipped.
    for _ in 0..10_000 {
        let line = chatter.line();
        if line == want {
            return;
        }
        let mentions_ours = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .any(|word| ours.contains(&word));
        assert!(
            !mentions_ours,
            "unexpected chat line {line:?}, expected {want:?}\n{}",
            ctx.about()
        );
    }
    panic!("{want:?} never came\n{}", ctx.about());
}

/// Sends `/who` until the answer is `want`, skipping other lines meanwhile;
/// fails after [`SETTLE_TIMEOUT`].
fn wait_for_who(chatter: &mut Chatter, want: &str, ctx: &Ctx) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        chatter.send("/who");
        let mut answer = chatter.line();
        while !answer.starts_with("* online: ") {
            answer = chatter.line();
        }
        if answer == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ghosts in the room: {answer:?}, expected {want:?}\n{}",
            ctx.about()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Two clients that find each other after the garbage: nicknames, a message
/// from one to the other, a private message, and `/who` listing exactly them.
fn chat_works(addr: SocketAddr, ctx: &Ctx) {
    let mut a = Chatter::join_guest(addr);
    a.send("/nick checker-a");
    // A garbage client still on its way out may say one last thing (the
    // thread check allows for one such client): wait until the room holds
    // nobody but us, then expect every line exactly.
    wait_for_who(&mut a, "* online: checker-a", ctx);
    let mut b = Chatter::join_guest(addr);
    let b_guest = b.name.clone();
    let ours = ["checker-a", "checker-b", b_guest.as_str()];
    expect_ours(&mut a, &format!("* {b_guest} joined"), &ours, ctx);
    b.send("/nick checker-b");
    expect_ours(&mut b, "* you are now checker-b", &ours, ctx);
    expect_ours(&mut a, &format!("* {b_guest} is now checker-b"), &ours, ctx);
    a.send("hello after the garbage");
    expect_ours(&mut b, "checker-a: hello after the garbage", &ours, ctx);
    b.send("/msg checker-a and back");
    expect_ours(&mut a, "[private] checker-b: and back", &ours, ctx);
    wait_for_who(&mut b, "* online: checker-a, checker-b", ctx);
    a.send("/quit");
    expect_ours(&mut a, "* bye", &ours, ctx);
}
