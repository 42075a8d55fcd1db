//! The library's thread-per-connection runner and `Connection` timeouts,
//! tested in-process over loopback.

use netlessons::connection::Connection;
use netlessons::server::{Server, ServerConfig, ShutdownHandle};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// shutdown() wakes the blocked accept, wakes connections blocked in a read,
/// and serve() returns only after their threads finished.
#[test]
fn shutdown_wakes_accept_and_joins_connections() {
    let finished = Arc::new(AtomicUsize::new(0));
    let f = Arc::clone(&finished);
    let running = run(ServerConfig::new("127.0.0.1:0"), move |conn| {
        let result = line_echo(conn);
        f.fetch_add(1, Ordering::SeqCst);
        result
    });
    let mut client = connect(running.addr);
    client.write_all(b"hi\n").unwrap();
    let mut buf = [0u8; 3];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi\n");
    // The connection thread is now blocked reading our next line.
    running.shutdown.shutdown();
    running.thread.join().unwrap().unwrap();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "serve returned before its connection ended"
    );
    assert!(read_all(&mut client).is_empty());
}

/// A peer outside the allowlist never reaches the handler and gets no byte.
#[test]
fn allowlist_refuses_before_the_handler_runs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.allow = "10.0.0.0/8".parse().unwrap();
    let running = run(config, move |mut conn| {
        c.fetch_add(1, Ordering::SeqCst);
        conn.send_line("hello")?;
        conn.flush()
    });
    let mut client = connect(running.addr);
    assert!(read_all(&mut client).is_empty());
    running.shutdown.shutdown();
    running.thread.join().unwrap().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Over max_conns, a client gets busy_reply then end of stream; the
/// admitted client is unaffected.
#[test]
fn max_conns_sends_the_busy_reply() {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.max_conns = Some(1);
    config.busy_reply = Some(b"! server full\n".to_vec());
    let running = run(config, line_echo);
    let mut first = connect(running.addr);
    first.write_all(b"one\n").unwrap();
    let mut buf = [0u8; 4];
    first.read_exact(&mut buf).unwrap();
    let mut second = connect(running.addr);
    assert_eq!(read_all(&mut second), b"! server full\n");
    first.write_all(b"two\n").unwrap();
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two\n");
    running.shutdown.shutdown();
    running.thread.join().unwrap().unwrap();
}

/// A slow-loris client (a line started, never finished) is dropped when the
/// line timeout runs out, even with no idle timeout.
#[test]
fn slow_loris_is_dropped_by_the_line_timeout() {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.line_timeout = Some(Duration::from_secs(1));
    let err = dropped_after_about_a_second(config);
    assert!(err.contains("line not finished within 1 s"), "{err}");
}

/// Trickling does not reset the idle clock: a client that completes no
/// message within the idle timeout is dropped even while it sends bytes.
#[test]
fn slow_loris_is_dropped_by_the_idle_timeout() {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.idle_timeout = Some(Duration::from_secs(1));
    config.line_timeout = None;
    let err = dropped_after_about_a_second(config);
    assert!(err.contains("idle timeout"), "{err}");
}

/// A client that sends whole lines in time is never dropped by the timeouts.
#[test]
fn a_client_that_completes_messages_stays() {
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.idle_timeout = Some(Duration::from_secs(1));
    config.line_timeout = Some(Duration::from_secs(1));
    let running = run(config, line_echo);
    let mut client = connect(running.addr);
    let start = Instant::now();
    let mut buf = [0u8; 3];
    while start.elapsed() < Duration::from_millis(2500) {
        client.write_all(b"ok\n").unwrap();
        client.read_exact(&mut buf).unwrap();
        thread::sleep(Duration::from_millis(200));
    }
    running.shutdown.shutdown();
    running.thread.join().unwrap().unwrap();
}

/// A handler that panics ends only its own connection; the server serves on.
#[test]
fn a_panicking_handler_does_not_stop_the_server() {
    let running = run(ServerConfig::new("127.0.0.1:0"), |mut conn| {
        let line = conn.read_line(100)?.unwrap_or_default();
        if line == b"boom" {
            panic!("handler bug triggered on purpose");
        }
        conn.send_line(line)
    });
    let mut bad = connect(running.addr);
    bad.write_all(b"boom\n").unwrap();
    assert!(read_all(&mut bad).is_empty());
    let mut good = connect(running.addr);
    good.write_all(b"fine\n").unwrap();
    assert_eq!(read_all(&mut good), b"fine\n");
    running.shutdown.shutdown();
    running.thread.join().unwrap().unwrap();
}

/// A server bound to the wildcard address can still be shut down (it wakes
/// itself through loopback).
#[test]
fn shutdown_works_for_a_wildcard_listener() {
    let running = run(ServerConfig::new("0.0.0.0:0"), line_echo);
    assert!(running.addr.ip().is_unspecified());
    running.shutdown.shutdown();
    running.thread.join().unwrap().unwrap();
}

/// Binding a port in use fails with advice, not just an OS error.
#[test]
fn bind_error_explains_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Server::bind(ServerConfig::new(taken.local_addr().unwrap().to_string())).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(
        err.to_string().contains("choose another port with --addr"),
        "{err}"
    );
}

/// A client that asks for a big reply and then reads only a trickle (64 KiB
/// every 250 ms, so that every write the server makes progresses a little)
/// is dropped once the reply has taken the idle timeout (2 s here), not held
/// for as long as the trickle lasts: the idle timeout is measured over the
/// whole reply. Meanwhile a client that asks for small replies stays.
#[test]
fn a_reply_must_be_taken_within_the_idle_timeout() {
    const REPLY: usize = 64 << 20; // far more than the kernel buffers hold
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let mut config = ServerConfig::new("127.0.0.1:0");
    config.idle_timeout = Some(Duration::from_secs(2));
    let server = run(config, move |mut conn| {
        let chunk = vec![b'x'; 64 * 1024];
        while let Some(line) = conn.read_line(64)? {
            let started = Instant::now();
            let result = if line == b"big" {
                (0..REPLY / chunk.len())
                    .try_for_each(|_| conn.send_body(&chunk))
                    .and_then(|()| conn.flush())
            } else {
                conn.send_line(line).and_then(|()| conn.flush())
            };
            if let Err(e) = result {
                let _ = tx.lock().unwrap().send((started.elapsed(), e.to_string()));
                return Err(e);
            }
        }
        Ok(())
    });
    let mut small = connect(server.addr);
    let mut big = connect(server.addr);
    big.write_all(b"big\n").unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut taken = 0;
    let outcome = loop {
        if let Ok(outcome) = rx.try_recv() {
            break Some(outcome);
        }
        if start.elapsed() > Duration::from_secs(30) {
            break None;
        }
        match big.read(&mut buf) {
            Ok(0) | Err(_) => {}
            Ok(n) => taken += n,
        }
        small.write_all(b"ping\n").unwrap();
        let mut back = [0u8; 5];
        small.read_exact(&mut back).unwrap();
        thread::sleep(Duration::from_millis(250));
    };
    let (took, error) = outcome.unwrap_or_else(|| {
        panic!("the trickling client was still being served after 30 s ({taken} bytes taken)")
    });
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(20),
        "dropped after {took:?}"
    );
    assert!(error.contains("stopped reading"), "{error}");
    assert!(taken < REPLY, "the whole reply was taken");
    // The small client was never affected.
    small.write_all(b"still here\n").unwrap();
    let mut back = [0u8; 11];
    small.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still here\n");
    drop((small, big));
    server.shutdown.shutdown();
    server.thread.join().unwrap().unwrap();
}

/// A running in-process server: its address, its shutdown handle, and the
/// thread running `serve`.
struct Running {
    addr: SocketAddr,
    shutdown: ShutdownHandle,
    thread: JoinHandle<io::Result<()>>,
}

fn run<H>(config: ServerConfig, handler: H) -> Running
where
    H: Fn(Connection) -> io::Result<()> + Send + Sync + 'static,
{
    let server = Server::bind(config).unwrap();
    let addr = server.local_addr();
    let shutdown = server.shutdown_handle();
    let thread = thread::spawn(move || server.serve(handler));
    Running {
        addr,
        shutdown,
        thread,
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// A line-echo handler, the smallest protocol to test the runner with.
fn line_echo(mut conn: Connection) -> io::Result<()> {
    while let Some(line) = conn.read_line(1024)? {
        conn.send_line(line)?;
    }
    Ok(())
}

fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Trickles at a server made from `config` until it drops us (see
/// [`trickle_until_dropped`]), asserts that took about a second (at least
/// 900 ms, under 5 s), and returns the error the server logged.
fn dropped_after_about_a_second(config: ServerConfig) -> String {
    let (took, err) = trickle_until_dropped(config);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    err
}

/// Runs a trickling client (one byte every 100 ms, never a newline) against
/// `config` and returns how long until the server dropped it, and the
/// handler's error text.
fn trickle_until_dropped(config: ServerConfig) -> (Duration, String) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let running = run(config, move |conn| {
        let result = line_echo(conn);
        let _ = tx.lock().unwrap().send(result);
        Ok(())
    });
    let mut client = connect(running.addr);
    let start = Instant::now();
    // Bounded: at most 100 bytes (10 s); the server should drop us long before.
    for _ in 0..100 {
        if client.write_all(b"x").is_err() {
            break;
        }
        if let Ok(result) = rx.recv_timeout(Duration::from_millis(100)) {
            let err = result.expect_err("a trickling client should end in an error");
            running.shutdown.shutdown();
            running.thread.join().unwrap().unwrap();
            return (start.elapsed(), err.to_string());
        }
    }
    panic!("the server never dropped a client trickling one byte at a time");
}
