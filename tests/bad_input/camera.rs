//! Bad input for the camera server (UDP): thousands of random and mutated
//! datagrams from several sockets at once, and a flood of HELLOs. A datagram
//! that is not genuine must never get a reply; the server must stay up,
//! within its memory, and go on storing real reports.
//!
//! Repeat a run's inputs with `NETLESSONS_SEED=<seed> cargo test --test
//! bad_input camera_` (the seed is in every failure message).

use crate::Ctx;
use crate::common::camera::{self, Camera, rss_kib, users_file};
use crate::common::{Rng, Server, files_under, reference_only, say, temp_dir};
use netlessons::datagram::{self, Header, Kind};
use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

const SERVER: &str = "07_camera_server";
const CAMERA: &str = "garbage-cam";
const SECRET: &str = "only-genuine-datagrams-get-answers";

/// Sockets sending at once.
const SENDERS: u64 = 6;
/// Datagrams each of them sends.
const PER_SENDER: usize = 1500;

/// Random and mutated datagrams from sockets that never send a genuine one
/// get no reply at all; a socket sending genuine-but-wrong datagrams gets
/// only signed replies; the server survives and stores a real report.
#[test]
fn camera_survives_garbage() {
    let ctx = Ctx::new("camera_survives_garbage");
    let (seed, about) = (ctx.seed, ctx.about());
    let (dir, mut server) = start("garbage", &[]);
    let addr = server.addr();
    let rss_before = rss_kib(server.pid());
    let senders: Vec<_> = (0..SENDERS)
        .map(|n| {
            let mut rng = ctx.rng(n);
            thread::spawn(move || {
                let forger = Camera::new(addr, CAMERA, "a-guess");
                for i in 0..PER_SENDER {
                    forger.send_raw(&garbage(&mut rng, i as u64));
                }
                // Anything at all that came back is a reply to a forgery.
                forger.anything(Duration::from_millis(500))
            })
        })
        .collect();
    // Genuine but wrong: correctly signed datagrams that break the rules.
    let mut rng = Rng::new(seed ^ 0x5eed);
    let honest = Camera::new(addr, CAMERA, SECRET);
    for i in 0..500u64 {
        let (kind, seq, total, payload) = signed_but_wrong(&mut rng);
        honest.send(kind, 1_000_000 + i, seq, total, &payload);
    }
    for (n, sender) in senders.into_iter().enumerate() {
        let reply = sender.join().expect("a sender thread panicked");
        assert!(
            reply.is_none(),
            "forger {n} got a reply ({} bytes): the server answered a datagram it could not check\n{about}",
            reply.map_or(0, |r| r.len())
        );
    }
    // Every reply the honest camera got is signed with its secret.
    honest.socket.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65_536];
    while let Ok((len, _)) = honest.socket.recv_from(&mut buf) {
        let d = datagram::parse(&buf[..len]).expect("the server sent a malformed datagram");
        assert!(d.verify(SECRET.as_bytes()), "an unsigned reply\n{about}");
    }
    honest.socket.set_nonblocking(false).unwrap();

    assert!(
        server.is_running(),
        "the server died:\n{}\n{about}",
        server.stderr()
    );
    assert!(
        !server.stderr().contains("panicked"),
        "{}\n{about}",
        server.stderr()
    );
    // A real report still goes through, and is all the store holds.
    let photo = Rng::new(seed).bytes(30_000);
    let reply = honest
        .send_report(42, &photo, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no DONE for a real report after the garbage\n{about}"));
    assert_eq!(reply.header.kind, Kind::Done, "{reply:?}\n{about}");
    assert_eq!(
        files_under(&dir.join("store")),
        [
            format!("{CAMERA}/000000000000002a.jpg"),
            format!("{CAMERA}/000000000000002a.txt")
        ],
        "{about}"
    );
    assert_eq!(
        fs::read(dir.join("store").join(CAMERA).join("000000000000002a.jpg")).unwrap(),
        photo
    );
    if let (Some(before), Some(after)) = (rss_before, rss_kib(server.pid())) {
        assert!(
            after < before + 32 * 1024,
            "the server grew from {before} KiB to {after} KiB\n{about}"
        );
    }
    server.kill();
}

/// A flood of HELLOs (genuine ones declaring the largest photo, forged ones,
/// from ten addresses) gets replies only for the genuine, stays within the
/// limits and its memory, and a real report gets through once they expire.
#[test]
fn camera_hello_flood() {
    if !reference_only(SERVER, "the camera server's expiry knob") {
        return;
    }
    let ctx = Ctx::new("camera_hello_flood");
    let (seed, about) = (ctx.seed, ctx.about());
    let (_dir, server) = start("flood", &["--expire-ms", "3000"]);
    let addr = server.addr();
    let rss_before = rss_kib(server.pid());
    let floods: Vec<_> = (1..=10u64)
        .map(|host| {
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ host);
                let local = format!("127.0.0.{host}:0");
                let genuine = Camera::bound(&local, addr, CAMERA, SECRET);
                let forged = Camera::bound(&local, addr, CAMERA, "forged");
                for _ in 0..2000 {
                    let report = rng.next_u64();
                    // 6,990 chunks: just under the 8 MiB --max-size.
                    let size = datagram::MAX_PAYLOAD as u64 * 6990;
                    let mut payload = size.to_be_bytes().to_vec();
                    payload.extend_from_slice(&rng.bytes(32));
                    payload.extend_from_slice(format!("camera={CAMERA}\n").as_bytes());
                    let who = if rng.below(4) == 0 { &genuine } else { &forged };
                    who.send(Kind::Hello, report, 0, 6990, &payload);
                }
                let mut acks = 0;
                while let Some(reply) = genuine.reply(Duration::from_millis(500)) {
                    if reply.header.kind == Kind::Ack {
                        acks += 1;
                    }
                }
                (acks, forged.anything(Duration::from_millis(200)))
            })
        })
        .collect();
    let mut acks = 0;
    for flood in floods {
        let (here, forged_reply) = flood.join().expect("a flood thread panicked");
        assert!(
            here <= 8,
            "one address got {here} reports in progress\n{about}"
        );
        assert!(
            forged_reply.is_none(),
            "a forged HELLO got a reply\n{about}"
        );
        acks += here;
    }
    assert!(acks <= 64, "{acks} reports in progress at once\n{about}");
    if let (Some(before), Some(after)) = (rss_before, rss_kib(server.pid())) {
        assert!(
            after < before + 32 * 1024,
            "the server grew from {before} KiB to {after} KiB under the flood\n{about}"
        );
    }
    // Once the flood's reports expire, a real one is accepted and stored.
    let cam = Camera::bound("127.0.0.1:0", addr, CAMERA, SECRET);
    let photo = Rng::new(seed).bytes(10_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match cam.send_report(7, &photo, Duration::from_secs(10)) {
            Some(r) if r.header.kind == Kind::Done => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no DONE after the flood: {other:?}\n{about}"
                );
                thread::sleep(Duration::from_millis(500));
            }
        }
    }
    say(&format!(
        "camera_hello_flood: {acks} floods accepted, then a real report stored"
    ));
}

/// One datagram of garbage, never genuine: random bytes, or a well-formed
/// datagram (signed with a wrong secret) damaged in one of many ways.
fn garbage(rng: &mut Rng, i: u64) -> Vec<u8> {
    let kinds = [Kind::Hello, Kind::Data, Kind::Ack, Kind::Done, Kind::Err];
    let kind = kinds[rng.below(5) as usize];
    let payload = match kind {
        Kind::Hello => camera::hello_payload(CAMERA, &rng.bytes(5000), "jpg"),
        _ => {
            let len = rng.below(datagram::MAX_PAYLOAD as u64 + 1) as usize;
            rng.bytes(len)
        }
    };
    let header = Header {
        kind,
        report: rng.below(8),
        seq: rng.below(10) as u32,
        total: rng.below(10) as u32,
    };
    let mut d = datagram::build(&header, &payload, b"a-guess");
    match i % 9 {
        0 => {
            let len = rng.below(2000) as usize;
            rng.bytes(len)
        }
        1 => vec![0u8; 65_507],
        2 => {
            d.truncate(rng.below(d.len() as u64) as usize);
            d
        }
        3 => {
            let len = 1 + rng.below(100) as usize;
            d.extend_from_slice(&rng.bytes(len));
            d
        }
        4 => {
            let at = rng.below(d.len() as u64) as usize;
            d[at] ^= 1 << rng.below(8);
            d
        }
        5 => {
            d[22..24].copy_from_slice(&(rng.below(65_536) as u16).to_be_bytes());
            d
        }
        6 => {
            d[5] = rng.below(256) as u8;
            d
        }
        7 => {
            d[..4].copy_from_slice(b"NLCX");
            d
        }
        // Well formed, signed with a wrong secret.
        _ => d,
    }
}

/// A correctly signed datagram that breaks the protocol: a HELLO whose total
/// does not match its size or whose size is 0, DATA for no report, a chunk
/// of the wrong size, a kind only the server sends.
fn signed_but_wrong(rng: &mut Rng) -> (Kind, u32, u32, Vec<u8>) {
    match rng.below(5) {
        // 3,000 bytes take 3 chunks, never 4 or more.
        0 => {
            let p = camera::hello_payload(CAMERA, &rng.bytes(3000), "jpg");
            (Kind::Hello, 0, 4 + rng.below(100) as u32, p)
        }
        1 => {
            let mut p = camera::hello_payload(CAMERA, &[1], "jpg");
            p[..8].copy_from_slice(&0u64.to_be_bytes());
            (Kind::Hello, 0, 0, p)
        }
        2 => (Kind::Data, rng.below(5) as u32, 5, rng.bytes(1200)),
        3 => (Kind::Ack, 0, 1, vec![0xff; 32]),
        _ => (Kind::Done, 0, 1, Vec::new()),
    }
}

/// A camera server on a fresh store, with one camera.
fn start(test: &str, extra: &[&str]) -> (PathBuf, Server) {
    let dir = temp_dir(&format!("bad-camera-{test}"));
    let users = users_file(&dir, &[(CAMERA, SECRET)]);
    let server = camera::start_server(&dir.join("store"), &users, extra);
    (dir, server)
}
