//! The echo server (`01_echo_server`) under bad input: garbage sessions,
//! a slow-loris client, and floods past `--max-conns` and past a low limit.

use super::*;

/// Echo: 4,000 garbage sessions later the server is up, echoes 100 KB byte
/// for byte and has no more threads than before. (Contract flags only: it
/// runs under the instructor's override too.)
#[test]
fn echo_survives_garbage() {
    let (ctx, mut server, before, addr) = watch("echo_survives_garbage", Server::start(ECHO, &[]));
    survive_garbage(&ctx, &mut server, before, 4000, move |rng, log| {
        echo_session(addr, rng, log)
    });
    let payload = ctx.rng(1000).bytes(100_000);
    let echoed = echo_round_trip(addr, &payload);
    assert!(
        echoed == payload,
        "a well-formed client got {} bytes back for 100000 sent, or different bytes\n{}",
        echoed.len(),
        ctx.about()
    );
    threads_settle(&ctx, &server, before);
}

/// Echo (`--idle-timeout 1`): every byte is a whole message in echo, so a
/// client trickling bytes gets each one back; once it stalls, it is dropped
/// after the idle second, like a client that never sent anything. Another
/// client is served meanwhile.
#[test]
fn slow_loris_is_dropped_echo() {
    if !reference_only(ECHO, "slow_loris_is_dropped_echo") {
        return;
    }
    let (ctx, server, before, addr) = watch(
        "slow_loris_is_dropped_echo",
        Server::start(ECHO, &["--idle-timeout", "1"]),
    );
    let trickler = thread::spawn(move || {
        let mut stream = raw(addr);
        for (i, &b) in b"slowly".iter().enumerate() {
            if i > 0 {
                thread::sleep(Duration::from_millis(300));
            }
            stream.write_all(&[b]).unwrap();
            let mut back = [0u8; 1];
            stream.read_exact(&mut back).unwrap();
            assert_eq!(back[0], b, "a trickled byte came back changed");
        }
        // 1.5 s of trickling is past the 1 s idle timeout: the client was
        // kept because each byte was a complete message. Now it stalls.
        let stalled = Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (rest, stalled.elapsed())
    });
    let silent = thread::spawn(move || {
        let mut stream = raw(addr);
        let start = Instant::now();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        (rest, start.elapsed())
    });
    assert_eq!(echo_round_trip(addr, b"meanwhile\n"), b"meanwhile\n");
    for (who, handle) in [
        ("the stalled trickler", trickler),
        ("the silent client", silent),
    ] {
        let (rest, after) = handle.join().unwrap();
        assert!(rest.is_empty(), "{who} got {}", show(&rest));
        assert!(
            (Duration::from_millis(800)..TRICKLE_LIMIT).contains(&after),
            "{who} was dropped after {after:?}, expected about 1 s"
        );
    }
    threads_settle(&ctx, &server, before);
}

/// Echo (`--max-conns 3`): 200 more clients are closed without a byte; the
/// three connected ones keep echoing; when one leaves, a new one is served.
#[test]
fn max_conns_flood_echo() {
    if !reference_only(ECHO, "max_conns_flood_echo") {
        return;
    }
    let (ctx, server, before, addr) = watch(
        "max_conns_flood_echo",
        Server::start(ECHO, &["--max-conns", "3"]),
    );
    let ping = |stream: &mut TcpStream| {
        stream.write_all(b"ping\n").unwrap();
        let mut back = [0u8; 5];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping\n");
    };
    let mut held: Vec<TcpStream> = (0..3).map(|_| raw(addr)).collect();
    held.iter_mut().for_each(ping);
    flood(&ctx, addr, b"");
    held.iter_mut().for_each(ping);
    drop(held.pop());
    eventually_admitted("echo", || {
        let mut stream = raw(addr);
        stream.write_all(b"x").unwrap();
        let mut back = [0u8; 1];
        matches!(stream.read(&mut back), Ok(1))
    });
    drop(held);
    threads_settle(&ctx, &server, before);
}

/// Echo under `ulimit -n 64` with no `--max-conns`: it announces a cap that
/// fits its files; of 150 clients held at once exactly that many are echoed
/// and every other one is closed without a byte at once (none is left
/// waiting, unanswered, behind a failing `accept`); the admitted ones keep
/// echoing, and once the flood has gone a new client is served.
#[test]
fn low_limit_flood_echo() {
    if !reference_only(ECHO, "low_limit_flood_echo") {
        return;
    }
    let (mut server, cap) = start_with_low_limit(ECHO, &[]);
    let addr = server.addr();
    let mut admitted = Vec::new();
    for i in 0..LOW_FLOOD {
        let mut stream = raw(addr);
        stream.write_all(b"x").unwrap();
        let mut back = [0u8; 1];
        match stream.read(&mut back) {
            Ok(1) => admitted.push(stream),
            Ok(_) => {} // closed without a byte: the refusal
            Err(e) => panic!(
                "client {i} of the flood got neither its echo nor a refusal: {e}\n{}",
                server.stderr()
            ),
        }
    }
    assert_eq!(
        admitted.len(),
        cap,
        "clients served beside the announced cap"
    );
    for stream in &mut admitted {
        stream.write_all(b"y").unwrap();
        let mut back = [0u8; 1];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"y");
    }
    drop(admitted);
    eventually_admitted("echo under ulimit -n 64", || {
        let mut stream = raw(addr);
        stream.write_all(b"z").unwrap();
        let mut back = [0u8; 1];
        matches!(stream.read(&mut back), Ok(1))
    });
    assert!(server.is_running(), "{}", server.stderr());
}

/// One garbage echo session. After a half-close the server must have echoed
/// exactly what was sent, byte for byte.
fn echo_session(addr: SocketAddr, rng: &mut Rng, log: &mut Vec<String>) -> Result<(), String> {
    let mut payload = Vec::new();
    for _ in 0..rng.below(4) {
        payload.extend(junk(rng));
    }
    // Kept under the socket buffers: we send all before we read, and the
    // echo must fit in our receive buffer meanwhile (see ex01's round trip).
    payload.truncate(48 * 1024);
    let end = Ending::pick(rng, !payload.is_empty());
    let mut s = Session::open(addr, log)?;
    s.send_split(rng, &payload);
    let sent_all = !s.broken;
    let back = s.end(end)?;
    if end == Ending::HalfClose && sent_all && back != payload {
        let first = back
            .iter()
            .zip(&payload)
            .position(|(a, b)| a != b)
            .unwrap_or(back.len().min(payload.len()));
        return Err(format!(
            "echoed {} bytes for {} sent, first difference at byte {first}",
            back.len(),
            payload.len()
        ));
    }
    Ok(())
}

/// Sends `payload` while reading the echo, then half-closes; returns the echo.
fn echo_round_trip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let stream = common::connect(addr);
    let mut writer = stream.try_clone().unwrap();
    let sending = payload.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&sending).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = stream;
    let echoed = common::read_to_end(&mut reader);
    sender.join().unwrap();
    echoed
}
