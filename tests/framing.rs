//! Framing over real sockets: the library's line and frame readers fed by
//! bytes that really crossed TCP on loopback, split into pieces the way a
//! network splits them, cut off early, or far too long.
//!
//! The unit tests in `src/framing.rs` feed the same functions from memory;
//! these prove the behaviour survives a real socket. Chapter 3
//! (`docs/03-framing.md`) walks through what each case means.

mod common;

use common::IO_TIMEOUT;
use netlessons::connection::Connection;
use netlessons::framing::{is_too_long, read_frame, read_line_limited, skip_line, write_frame};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A line that arrives in three TCP segments is returned whole, once.
#[test]
fn a_line_split_across_segments_is_reassembled() {
    let (mut reader, sender) = paced(&[b"hel", b"lo wor", b"ld\r\nnext\n"]);
    assert_eq!(
        read_line_limited(&mut reader, 64).unwrap(),
        Some(b"hello world".to_vec())
    );
    assert!(
        reader.get_ref().reads >= 3,
        "the line should have taken at least three reads"
    );
    assert_eq!(
        read_line_limited(&mut reader, 64).unwrap(),
        Some(b"next".to_vec())
    );
    assert_eq!(read_line_limited(&mut reader, 64).unwrap(), None);
    sender.join().unwrap();
}

/// A frame whose header and payload are each split across segments is
/// returned whole; then the clean close reads as `None`.
#[test]
fn a_frame_split_across_segments_is_reassembled() {
    let payload = b"binary \x00\n\xff payload".to_vec();
    let mut wire = Vec::new();
    write_frame(&mut wire, &payload).unwrap();
    // Header split 2 + 2, payload split in three.
    let (mut reader, sender) = paced(&[
        &wire[..2],
        &wire[2..4],
        &wire[4..9],
        &wire[9..15],
        &wire[15..],
    ]);
    assert_eq!(read_frame(&mut reader, 1024).unwrap(), Some(payload));
    assert!(
        reader.get_ref().reads >= 5,
        "the frame should have taken at least five reads"
    );
    assert_eq!(read_frame(&mut reader, 1024).unwrap(), None);
    sender.join().unwrap();
}

/// Several lines that arrive in one segment are handed out one at a time,
/// and the end of stream after the last one is a clean `None`.
#[test]
fn clean_close_between_lines_is_none() {
    let (ours, mut peer) = socket_pair();
    peer.write_all(b"one\ntwo\r\nthree\n").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let mut reader = BufReader::new(ours);
    for expected in ["one", "two", "three"] {
        assert_eq!(
            read_line_limited(&mut reader, 64).unwrap(),
            Some(expected.as_bytes().to_vec())
        );
    }
    assert_eq!(read_line_limited(&mut reader, 64).unwrap(), None);
}

/// A peer that closes half-way through a line causes an `UnexpectedEof`
/// error, never a short line that looks complete.
#[test]
fn close_in_the_middle_of_a_line_is_an_error() {
    let (ours, mut peer) = socket_pair();
    peer.write_all(b"complete\nhalf a li").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let mut reader = BufReader::new(ours);
    assert_eq!(
        read_line_limited(&mut reader, 64).unwrap(),
        Some(b"complete".to_vec())
    );
    let err = read_line_limited(&mut reader, 64).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(err.to_string().contains("middle of a line"), "{err}");
}

/// A close between frames is `None`; a close inside the header or inside the
/// payload is an `UnexpectedEof` error.
#[test]
fn close_inside_a_frame_is_an_error() {
    let mut one = Vec::new();
    write_frame(&mut one, b"whole").unwrap();
    let cases: [(&[u8], Option<&str>); 3] = [
        (&one, None),
        (&one[..2], Some("frame header")),
        (&one[..7], Some("inside a frame")),
    ];
    for (sent, error) in cases {
        let (mut ours, mut peer) = socket_pair();
        peer.write_all(sent).unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        match error {
            None => {
                assert_eq!(read_frame(&mut ours, 64).unwrap(), Some(b"whole".to_vec()));
                assert_eq!(read_frame(&mut ours, 64).unwrap(), None);
            }
            Some(text) => {
                let err = read_frame(&mut ours, 64).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
                assert!(err.to_string().contains(text), "{err}");
            }
        }
    }
}

/// A peer streaming a megabyte without a line break gets a "too long" error
/// once the limit is passed, while it is still sending: the reader neither
/// waits for the end of the line nor buffers it.
#[test]
fn an_over_long_line_over_a_socket_is_refused() {
    let (ours, mut peer) = socket_pair();
    let sender = thread::spawn(move || {
        // Fails once the reader has given up and closed: that is expected.
        let _ = peer.write_all(&vec![b'x'; 1024 * 1024]);
    });
    let mut reader = BufReader::new(ours);
    let err = read_line_limited(&mut reader, 1024).unwrap_err();
    assert!(is_too_long(&err), "{err}");
    assert_eq!(err.to_string(), "line too long (max 1024 bytes)");
    drop(reader); // closing our end unblocks the sender
    sender.join().unwrap();
}

/// After an over-long line, `skip_line` drops the rest of it and reading
/// carries on at the next line (what SMTP does with its `500` reply).
#[test]
fn skip_line_resumes_after_an_over_long_line() {
    let (ours, mut peer) = socket_pair();
    let mut sent = vec![b'y'; 100_000];
    sent.extend_from_slice(b"\nafter\n");
    let sender = thread::spawn(move || {
        peer.write_all(&sent).unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = BufReader::new(ours);
    assert!(is_too_long(
        &read_line_limited(&mut reader, 512).unwrap_err()
    ));
    assert!(skip_line(&mut reader).unwrap());
    assert_eq!(
        read_line_limited(&mut reader, 512).unwrap(),
        Some(b"after".to_vec())
    );
    assert!(
        !skip_line(&mut reader).unwrap(),
        "nothing left after the last line"
    );
    sender.join().unwrap();
}

/// A frame that announces 4 GiB is refused as soon as its 4-byte header has
/// arrived: nothing is allocated and the reader does not wait for a payload
/// that will never come (the peer keeps the connection open).
#[test]
fn an_announced_huge_frame_is_refused_at_once() {
    let (mut ours, mut peer) = socket_pair();
    peer.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let start = Instant::now();
    let err = read_frame(&mut ours, 1024 * 1024).unwrap_err();
    assert!(is_too_long(&err), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waited for the payload"
    );
    drop(peer);
}

/// `Connection::read_line` drops a slow-loris peer that keeps sending a byte
/// now and then but never finishes its line: the line timeout counts from the
/// line's first byte, not from the last read.
#[test]
fn connection_line_timeout_drops_a_trickling_peer() {
    let (ours, mut peer) = socket_pair();
    let mut conn = Connection::new(ours, false).unwrap();
    conn.set_idle_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.set_line_timeout(Some(Duration::from_secs(1)));
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let trickler = thread::spawn(move || {
        // One byte every 100 ms, for at most 10 s, until told to stop.
        for _ in 0..100 {
            if peer.write_all(b"z").is_err() {
                return;
            }
            if stop_rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                return;
            }
        }
    });
    let start = Instant::now();
    let err = conn.read_line(1024).unwrap_err();
    let waited = start.elapsed();
    let _ = stop_tx.send(());
    trickler.join().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("line not finished"), "{err}");
    // Past the limit, the trickle kept it alive.
    common::assert_dropped_after_a_second(waited, Duration::from_secs(8));
}

/// `Connection::read_line` drops a peer that sends nothing for the idle
/// timeout, with an error that names the limit.
#[test]
fn connection_idle_timeout_drops_a_silent_peer() {
    let (ours, _peer) = socket_pair();
    let mut conn = Connection::new(ours, false).unwrap();
    conn.set_idle_timeout(Some(Duration::from_secs(1))).unwrap();
    let start = Instant::now();
    let err = conn.read_line(1024).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(err.to_string().contains("idle timeout"), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(900));
}

/// `Connection::send_line` refuses a line with an embedded line break (it
/// would arrive as two messages), sends nothing of it, and carries on.
#[test]
fn send_line_refuses_embedded_line_breaks() {
    let (ours, peer) = socket_pair();
    let mut conn = Connection::new(ours, false).unwrap();
    for bad in ["hello\nQUIT", "hello\rQUIT"] {
        let err = conn.send_line(bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
    conn.send_line("only this").unwrap();
    conn.shutdown_write().unwrap();
    let mut got = Vec::new();
    (&peer).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"only this\n");
}

/// `Connection::read_line` over a peer that writes one byte per segment:
/// the lines come out whole, and the clean close after them is `None`.
#[test]
fn connection_reads_lines_sent_one_byte_at_a_time() {
    let (ours, mut peer) = socket_pair();
    let sender = thread::spawn(move || {
        for &b in b"first\r\nsecond\n" {
            peer.write_all(&[b]).unwrap();
        }
        peer.shutdown(Shutdown::Write).unwrap();
    });
    let mut conn = Connection::new(ours, false).unwrap();
    conn.set_idle_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(conn.read_line(64).unwrap(), Some(b"first".to_vec()));
    assert_eq!(conn.read_text_line(64).unwrap().as_deref(), Some("second"));
    assert_eq!(conn.read_line(64).unwrap(), None);
    sender.join().unwrap();
}

/// Two connected ends of one TCP connection on loopback: (ours, the peer's).
///
/// No thread is needed: `connect` completes as soon as the kernel has queued
/// the connection on the listener, and `accept` then takes it off the queue.
fn socket_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    for s in [&ours, &peer] {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        // Send each write at once, as its own segment, instead of letting
        // Nagle's algorithm merge small writes.
        s.set_nodelay(true).unwrap();
    }
    (ours, peer)
}

/// A reader that asks the peer for the next piece each time it is about to
/// read, so every piece arrives on its own: the reader really does see the
/// message in parts, whatever the timing on a busy machine.
struct Paced {
    stream: TcpStream,
    go: Sender<()>,
    reads: usize,
}

impl Read for Paced {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        let _ = self.go.send(()); // the peer may have finished already
        self.stream.read(buf)
    }
}

/// The peer's side of [`Paced`]: sends one piece per request, then
/// half-closes (end of stream after the last piece).
fn send_pieces(mut peer: TcpStream, pieces: Vec<Vec<u8>>, go: Receiver<()>) -> JoinHandle<()> {
    thread::spawn(move || {
        for piece in pieces {
            if go.recv().is_err() {
                return;
            }
            peer.write_all(&piece).unwrap();
        }
        peer.shutdown(Shutdown::Write).unwrap();
    })
}

/// A connection whose reads are paced piece by piece (see [`Paced`]).
fn paced(pieces: &[&[u8]]) -> (BufReader<Paced>, JoinHandle<()>) {
    let (ours, peer) = socket_pair();
    let (tx, rx) = mpsc::channel();
    let sender = send_pieces(peer, pieces.iter().map(|p| p.to_vec()).collect(), rx);
    let reader = BufReader::new(Paced {
        stream: ours,
        go: tx,
        reads: 0,
    });
    (reader, sender)
}
