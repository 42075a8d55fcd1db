//! Bodies, both ways, each under one clock: the body a client sends with a
//! GET (read and thrown away, so none of its bytes is taken for the next
//! request) and a big file sent back (streamed in pieces, never read whole).
//!
//! A body is where a slow peer can hold a thread longest: a client that
//! trickles one-byte chunks, or one that reads our reply a byte now and
//! then. So each direction has one clock over the whole body, the line
//! timeout (or the idle timeout) plus a second per [`MIN_BODY_RATE`] bytes,
//! as an upload to the file server has (`Connection::read_body`).

use crate::request::{BodyFraming, Request};
use crate::response::Status;
use netlessons::connection::{Connection, MIN_BODY_RATE};
use netlessons::framing::{self, ChunkSource, is_too_long};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A body sent to us (a GET may carry one) larger than this gets `413`.
pub const MAX_REQUEST_BODY: u64 = 1024 * 1024;

/// Reads and throws away a body sent with a GET or HEAD, so that none of its
/// bytes is taken for the next request. `Ok(Err(status))`: a body we refuse
/// (ambiguous framing, too large, malformed chunks).
pub fn discard_body(
    conn: &mut Connection,
    request: &Request,
    line_timeout: Option<Duration>,
) -> io::Result<Result<(), Status>> {
    let framing = match request.body_framing() {
        Ok(framing) => framing,
        Err(status) => return Ok(Err(status)),
    };
    match framing {
        BodyFraming::None => Ok(Ok(())),
        BodyFraming::Length(n) if n > MAX_REQUEST_BODY => Ok(Err(Status::ContentTooLarge)),
        BodyFraming::Length(n) => {
            conn.read_body(n, &mut io::sink(), |_| {})?;
            Ok(Ok(()))
        }
        BodyFraming::Chunked => {
            let mut source = BodyClock {
                conn,
                grace: line_timeout,
                start: Instant::now(),
                received: 0,
            };
            match framing::read_chunked(&mut source, &mut io::sink(), MAX_REQUEST_BODY) {
                Ok(_) => Ok(Ok(())),
                Err(e) if is_too_long(&e) => Ok(Err(Status::ContentTooLarge)),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Err(Status::BadRequest)),
                Err(e) => Err(e),
            }
        }
    }
}

/// A chunked body read through a connection, with one clock over the whole
/// body: the line timeout plus a second per [`MIN_BODY_RATE`] bytes, as a
/// counted body has. (Each chunk's own clocks alone would let a client
/// trickle one-byte chunks for ever.)
struct BodyClock<'a> {
    conn: &'a mut Connection,
    /// The line timeout (`None`: no body clock either).
    grace: Option<Duration>,
    start: Instant,
    received: u64,
}

impl BodyClock<'_> {
    fn check(&self) -> io::Result<()> {
        let Some(grace) = self.grace else {
            return Ok(());
        };
        let allowed = grace + Duration::from_secs(self.received / MIN_BODY_RATE);
        if self.start.elapsed() > allowed {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "chunked body arrived too slowly",
            ));
        }
        Ok(())
    }
}

impl ChunkSource for BodyClock<'_> {
    fn chunk_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        self.check()?;
        self.conn.chunk_line(max)
    }

    fn chunk_data(&mut self, len: u64, sink: &mut dyn Write) -> io::Result<()> {
        self.check()?;
        self.conn.chunk_data(len, sink)?;
        self.received += len;
        Ok(())
    }
}

/// A big file is sent in steps of this size, so that the reply's clock (see
/// [`stream_file`]) is checked between steps.
const STREAM_STEP: u64 = 1024 * 1024;

/// Copies `len` bytes of `file` to the socket, through one buffer of at
/// most [`COPY_BUF`] bytes (see [`copy_step`] for why not `io::copy`).
///
/// The reply has a clock, as an upload has (see `Connection::read_body`):
/// each wait for the client to take more is bounded by the idle timeout,
/// and the whole reply by the idle timeout plus one second per
/// [`MIN_BODY_RATE`] bytes, so a client that reads a byte now and then
/// cannot hold the thread for ever.
pub fn stream_file(
    socket: &TcpStream,
    file: &File,
    len: u64,
    idle: Option<Duration>,
) -> io::Result<()> {
    let start = Instant::now();
    let mut left = len;
    let mut buf = vec![0u8; COPY_BUF.min(len as usize)];
    let result = (|| {
        while left > 0 {
            if let Some(idle) = idle {
                let allowed = idle + Duration::from_secs((len - left) / MIN_BODY_RATE);
                let remaining = allowed.saturating_sub(start.elapsed());
                if remaining.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "client took too long to read the reply ({} of {len} bytes)",
                            len - left
                        ),
                    ));
                }
                socket.set_write_timeout(Some(remaining.min(idle)))?;
            }
            let step = left.min(STREAM_STEP);
            let copied = copy_step(file, socket, step, &mut buf)?;
            if copied < step {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was being sent",
                ));
            }
            left -= copied;
        }
        Ok(())
    })();
    socket.set_write_timeout(idle)?;
    result
}

/// The buffer a big body is copied through: one `read` and one `write` per
/// 256 KiB. Allocated per big response (the small ones never need it), so
/// a thousand idle connections cost nothing for it.
const COPY_BUF: usize = 256 * 1024;

/// Copies up to `step` bytes from `file` to `socket` through `buf`; returns
/// how many (fewer only if the file ended).
///
/// Why not `io::copy`: std turns a copy from file to file into
/// `copy_file_range`, but a copy from a file to a socket into a loop of
/// 8 KiB `read`s and `write`s, and at 8 KiB a 1 GiB download is 262,144
/// system calls of each kind: about half nginx's speed, measured
/// (`docs/08-measuring.md`). With 256 KiB pieces it is 4,096 of each and
/// as fast as nginx on loopback. What nginx does instead (`sendfile on`)
/// is `sendfile`, which hands the page cache's pages to the socket without
/// a copy into the program; std has no safe call for it, and this crate
/// takes no `unsafe` and no crates.
fn copy_step(
    mut file: &File,
    mut socket: &TcpStream,
    step: u64,
    buf: &mut [u8],
) -> io::Result<u64> {
    let mut done = 0;
    while done < step {
        let want = buf.len().min((step - done) as usize);
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        socket.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(done)
}
