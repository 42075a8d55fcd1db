//! Wire helpers: a connection that cannot hang a test, reading until the
//! peer closes, a slow-loris client, and the folders tests work in.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Read/write timeout on test sockets: a hung server fails the test instead
/// of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Connects to `addr` with [`IO_TIMEOUT`] on reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("could not connect to {addr}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Reads until the peer closes; panics on a timeout or error.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("reading until the server closes");
    out
}

/// The names in the folder `dir`, hidden ones included, sorted (byte order),
/// so a test can compare a folder with a literal list.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("could not list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The files (not folders) under `dir`, recursively, as paths relative to
/// it, sorted: what a camera store holds, or a mirrored site.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// A fresh, empty folder for one test under the target directory, removed first if left over.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A slow-loris client's loop: sends `byte` every `gap` (never a line
/// break), keeping whatever the server says meanwhile, until the server
/// hangs up or `limit` has passed. `reader` and `writer` are the two ends
/// of one connection.
///
/// Returns what the server sent, and how long after the first byte it hung
/// up (`None`: it was still connected at `limit`).
pub fn trickle(
    reader: &mut impl Read,
    writer: &mut impl Write,
    socket: &TcpStream,
    byte: u8,
    gap: Duration,
    limit: Duration,
) -> (Vec<u8>, Option<Duration>) {
    // A read that waits at most `gap` is the pause between two bytes.
    socket.set_read_timeout(Some(gap)).unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        if writer.write_all(&[byte]).is_err() {
            return (got, Some(start.elapsed())); // reset: the server hung up
        }
        match reader.read(&mut buf) {
            Ok(0) => return (got, Some(start.elapsed())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // Nothing within `gap`: still connected, send the next byte.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, Some(start.elapsed())),
        }
    }
    (got, None)
}

/// Asserts that a peer dropped by a one-second timeout went after about a
/// second: not before 900 ms, and before `limit` (a bound generous enough
/// for a loaded machine). A failure is reported at the caller's line.
#[track_caller]
pub fn assert_dropped_after_a_second(waited: Duration, limit: Duration) {
    assert!(
        waited >= Duration::from_millis(900),
        "dropped too early: {waited:?}"
    );
    assert!(
        waited < limit,
        "dropped too late (the limit is {limit:?}): {waited:?}"
    );
}

/// Many connections answering at once, for tests of parallel wrong logins:
/// `send` sends each client its line, all in a row; then every client is
/// read on a thread of its own by `read`, which gets the time left of
/// `watch` (counted from the first send, at least a millisecond) to set as
/// its read timeout, and says what came. Returns what each `read` said.
pub fn answers_at_once<S, T, R>(
    mut clients: Vec<S>,
    mut send: impl FnMut(&mut S),
    watch: Duration,
    read: R,
) -> Vec<T>
where
    S: Send + 'static,
    T: Send + 'static,
    R: Fn(S, Duration) -> T + Clone + Send + 'static,
{
    let start = Instant::now();
    for client in &mut clients {
        send(client);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let read = read.clone();
            std::thread::spawn(move || {
                let left = watch
                    .saturating_sub(start.elapsed())
                    .max(Duration::from_millis(1));
                read(client, left)
            })
        })
        .collect();
    readers.into_iter().map(|r| r.join().unwrap()).collect()
}

/// A loopback port that was free a moment ago (bind, read the port, drop):
/// nothing listens there now, so connecting to it is refused.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `example` with `--allow 10.0.0.0/8`, which our loopback client is
/// outside of, connects, sends `hello` (nothing if empty; the send may fail,
/// the server may have closed already), and asserts that the server closed
/// without a byte and logged the refusal. A failure is reported at the
/// caller's line.
#[track_caller]
pub fn assert_outsider_gets_nothing(example: &str, hello: &[u8]) {
    let server = super::Server::start(example, &["--allow", "10.0.0.0/8"]);
    let mut stream = connect(server.addr());
    if !hello.is_empty() {
        let _ = stream.write_all(hello); // may fail: already closed
    }
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got); // EOF, or a reset for the bytes we sent
    assert!(got.is_empty(), "an outsider got {got:?}");
    server.expect_stderr("refused: not in the allowlist", Duration::from_secs(10));
}

/// The two halves a line client keeps of one connection: a buffered reader
/// for the server's lines, and the stream itself for writing.
pub fn halves(stream: TcpStream) -> (io::BufReader<TcpStream>, TcpStream) {
    (io::BufReader::new(stream.try_clone().unwrap()), stream)
}
