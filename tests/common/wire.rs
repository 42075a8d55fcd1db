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
