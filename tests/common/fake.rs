//! A fake server written in the test, for one connection: it plays a server
//! (a dribbling echo server, an impostor that cannot prove the secret, a
//! file server that sends a damaged body) to a client under test.
//!
//! Every wait is bounded. A client that exits at once, never connects or
//! never answers makes [`FakeServer::result`] fail within the time given,
//! saying which of these happened, instead of hanging the test.

use super::{IO_TIMEOUT, report};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a fake server waits for its client to connect before it gives up.
pub const ACCEPT_LIMIT: Duration = Duration::from_secs(60);

/// A one-connection server run by the test on `127.0.0.1:0`.
pub struct FakeServer<T> {
    addr: SocketAddr,
    what: String,
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    result: mpsc::Receiver<T>,
}

impl<T: Send + 'static> FakeServer<T> {
    /// Listens on a free loopback port and runs `serve` on the first
    /// connection (reads and writes time out after [`IO_TIMEOUT`]). `what`
    /// names the fake in failure messages ("an impostor file server").
    pub fn start(what: &str, serve: impl FnOnce(TcpStream) -> T + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake server");
        let addr = listener.local_addr().unwrap();
        let connected = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, result) = mpsc::channel();
        let (seen, stopped) = (Arc::clone(&connected), Arc::clone(&stop));
        thread::spawn(move || {
            let Some(stream) = accept_within(&listener, ACCEPT_LIMIT, &stopped) else {
                return;
            };
            seen.store(true, Ordering::SeqCst);
            stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
            let _ = tx.send(serve(stream));
        });
        FakeServer {
            addr,
            what: what.to_string(),
            connected,
            stop,
            result,
        }
    }

    /// The address to point the client at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What `serve` returned. Call it once the client has finished, with a
    /// few seconds: a client that connected at all is already in the
    /// listen queue by then. Fails the test, saying why, after `limit`.
    #[track_caller]
    pub fn result(self, limit: Duration) -> T {
        self.result_inner(limit, None)
    }

    /// Like [`result`](FakeServer::result), showing the finished client's
    /// exit status and last stderr lines if it fails (a client that could
    /// not start explains itself there).
    #[track_caller]
    pub fn result_after(self, limit: Duration, client: &Output) -> T {
        self.result_inner(limit, Some(client))
    }

    #[track_caller]
    fn result_inner(self, limit: Duration, client: Option<&Output>) -> T {
        let about_client = match client {
            Some(out) => format!(
                "\n  the client {}; its last stderr lines:\n{}",
                report::explain_status(out.status),
                report::tail(&String::from_utf8_lossy(&out.stderr))
            ),
            None => String::new(),
        };
        match self.result.recv_timeout(limit) {
            Ok(value) => value,
            Err(mpsc::RecvTimeoutError::Timeout) if !self.connected.load(Ordering::SeqCst) => {
                panic!(
                    "{} at {}: the client never connected (it exited first, or connected \
                     somewhere else: does it honour --addr?){about_client}",
                    self.what, self.addr
                )
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{} at {}: the client connected, but the conversation was not over within \
                 {limit:?}{about_client}",
                self.what, self.addr
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                "{} at {}: the fake server stopped early (its message is above): the client \
                 did not send what a client of this protocol sends{about_client}",
                self.what, self.addr
            ),
        }
    }
}

impl<T> Drop for FakeServer<T> {
    fn drop(&mut self) {
        // A fake server nobody will ask any more stops accepting.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Accepts one connection on `listener`, giving up after `limit` or once
/// `stop` is set. Polls a non-blocking listener, since std's `accept` has
/// no timeout.
pub fn accept_within(
    listener: &TcpListener,
    limit: Duration,
    stop: &AtomicBool,
) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                // On some systems the accepted socket inherits non-blocking mode.
                stream.set_nonblocking(false).unwrap();
                return Some(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    None
}
