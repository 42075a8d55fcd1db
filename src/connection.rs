//! [`Connection`]: one TCP socket, its buffers, its timeouts and its trace.
//!
//! Every example talks through a `Connection`, on the server side (the
//! [`crate::server`] runner makes one per client) and on the client side
//! ([`Connection::connect`]). It adds four things to a bare `TcpStream`:
//!
//! 1. **Buffers.** Reading a socket one byte at a time costs a system call per
//!    byte; a [`BufReader`] reads whatever has arrived in one call and hands it
//!    out piece by piece. Writes are collected in a [`BufWriter`] and sent when
//!    we [`flush`](Connection::flush) (or before we wait to read).
//! 2. **Framing with limits**, from [`crate::framing`]: [`read_line`](Connection::read_line)
//!    and [`read_body`](Connection::read_body).
//! 3. **Timeouts.** A peer that says nothing for the idle timeout is dropped,
//!    and so is one that starts a line and then trickles it a byte at a time
//!    (a *slow-loris* attack, which would otherwise tie up a thread forever),
//!    or trickles a counted body (see [`MIN_BODY_RATE`]). Each limit is a
//!    clock over a whole line, body or reply, not over one system call: they
//!    are in `connection/clock.rs`.
//! 4. **Tracing** (`--trace`), from [`crate::trace`].
//!
//! Which `send_*` to use when:
//!
//! | to send | use | goes out | traced as |
//! |---|---|---|---|
//! | one protocol line (`OK`, `250 ok`) | [`send_line`](Connection::send_line) | at the next [`flush`](Connection::flush) or read | the line |
//! | a counted body (a file, a message) | [`send_body`](Connection::send_body) | at the next flush or read | its size |
//! | a reply already whole in your own buffer (echo) | [`send_now`](Connection::send_now) | at once, no copy | the bytes, escaped |

use crate::framing::{self, LineState};
use crate::trace::{Direction, Trace};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

mod clock;
mod shared;
use clock::{Rang, ReadClock, ReplyWriter};
pub use shared::SharedStream;

/// One side of a TCP conversation: buffered, framed, timed and traced.
///
/// Which `send_*` to use when is the table in the [module doc](self).
#[derive(Debug)]
pub struct Connection {
    /// Capacity 0 (no buffer) until a line or body is read: see [`BUFFER_SIZE`].
    reader: BufReader<SharedStream>,
    /// Capacity 0 (no buffer) until something is queued: see [`BUFFER_SIZE`].
    /// It writes through the reply clock ([`ReplyWriter`]).
    writer: BufWriter<ReplyWriter>,
    peer: SocketAddr,
    trace: Trace,
    idle_timeout: Option<Duration>,
    line_timeout: Option<Duration>,
    /// The read timeout currently set on the socket, so we only make the
    /// system call when it changes.
    current_read_timeout: Option<Duration>,
    line_ending: LineEnding,
}

impl Connection {
    /// Wraps an accepted or connected stream. `trace` turns on `--trace` output.
    ///
    /// Sets `TCP_NODELAY`: we always send whole messages and flush them, so
    /// Nagle's algorithm (which holds back small writes hoping to merge them)
    /// would only add delay to every request/response round trip.
    pub fn new(stream: TcpStream, trace: bool) -> io::Result<Connection> {
        Connection::from_shared(SharedStream::new(stream), trace)
    }

    /// Like [`Connection::new`], for a stream that is already shared (the
    /// server runner keeps a handle to wake the connection at shutdown).
    pub fn from_shared(shared: SharedStream, trace: bool) -> io::Result<Connection> {
        let peer = shared.socket().peer_addr()?;
        Connection::with_peer(shared, peer, trace)
    }

    /// Like [`Connection::from_shared`], when the peer's address is already
    /// known: `accept` returns it, and asking the socket again would cost
    /// the server a system call per connection.
    pub(crate) fn with_peer(
        shared: SharedStream,
        peer: SocketAddr,
        trace: bool,
    ) -> io::Result<Connection> {
        shared.socket().set_nodelay(true)?;
        Ok(Connection {
            // No buffers yet: `buffered_reader` and `buffered_writer` make
            // them when first needed.
            reader: BufReader::with_capacity(0, shared.clone()),
            writer: BufWriter::with_capacity(0, ReplyWriter::new(shared)),
            peer,
            trace: Trace::new(peer, trace),
            idle_timeout: None,
            line_timeout: Some(LINE_TIMEOUT),
            current_read_timeout: None,
            line_ending: LineEnding::Lf,
        })
    }

    /// Connects to `addr` (for clients), with an error that says what to check.
    ///
    /// ```no_run
    /// use netlessons::connection::Connection;
    /// let mut conn = Connection::connect("127.0.0.1:7001", false)?;
    /// conn.send_line("hello")?;
    /// conn.flush()?;
    /// let reply = conn.read_line(1024)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn connect<A: ToSocketAddrs + std::fmt::Display>(
        addr: A,
        trace: bool,
    ) -> io::Result<Connection> {
        let stream = TcpStream::connect(&addr).map_err(|e| connect_error(&addr.to_string(), e))?;
        Connection::new(stream, trace)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The trace for this connection (to note events such as timeouts).
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The socket, e.g. to `shutdown` it or to `try_clone` it.
    pub fn socket(&self) -> &TcpStream {
        self.reader.get_ref().socket()
    }

    /// Another handle on the same socket, for a second thread that writes
    /// while this one reads (the chat server's per-client writer).
    pub fn shared_stream(&self) -> SharedStream {
        self.reader.get_ref().clone()
    }

    /// Drops the peer if it completes no message for this long (`None`: never).
    /// Also bounds how long a whole reply may take to send, so a peer that
    /// asks for a big reply and stops reading (or reads a trickle) is dropped
    /// too: the *reply clock*, from the first write after we last read.
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.idle_timeout = timeout;
        self.socket().set_write_timeout(timeout)?;
        self.writer.get_mut().set_limit(timeout);
        Ok(())
    }

    /// We are about to wait for the peer: the reply we were sending is done,
    /// so the next write starts a new reply clock.
    fn reply_done(&mut self) {
        self.writer.get_mut().reply_done();
    }

    /// Drops the peer if a line, once started, takes longer than this to
    /// finish (`None`: never). Defaults to [`LINE_TIMEOUT`]. It is also the
    /// grace time of a counted body (see [`read_body`](Connection::read_body)).
    pub fn set_line_timeout(&mut self, timeout: Option<Duration>) {
        self.line_timeout = timeout;
    }

    /// Which line ending [`send_line`](Connection::send_line) appends.
    pub fn set_line_ending(&mut self, ending: LineEnding) {
        self.line_ending = ending;
    }

    /// The read buffer, allocated on first use. A reader with capacity 0
    /// holds no bytes, so swapping in a real one loses nothing.
    fn buffered_reader(&mut self) -> &mut BufReader<SharedStream> {
        if self.reader.capacity() == 0 {
            let stream = self.reader.get_ref().clone();
            self.reader = BufReader::with_capacity(BUFFER_SIZE, stream);
        }
        &mut self.reader
    }

    /// The write buffer, allocated on first use. A writer with capacity 0
    /// passes every write straight through and holds nothing, so swapping in
    /// a real one loses nothing either.
    fn buffered_writer(&mut self) -> &mut BufWriter<ReplyWriter> {
        if self.writer.capacity() == 0 {
            let stream = self.writer.get_ref().clone();
            self.writer = BufWriter::with_capacity(BUFFER_SIZE, stream);
        }
        &mut self.writer
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.current_read_timeout != timeout {
            self.socket().set_read_timeout(timeout)?;
            self.current_read_timeout = timeout;
        }
        Ok(())
    }

    /// Reads one line of at most `max` bytes, without its line ending.
    ///
    /// `Ok(None)` is a clean close between lines; see [`framing`] for the
    /// errors. Before waiting, this flushes anything we have written: a
    /// request sitting in *our* buffer while we wait for the answer to it
    /// would wait forever.
    pub fn read_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        self.read_line_clocked(max, None)
    }

    /// Reads one line of a message made of several lines (an HTTP request
    /// head, say), where the line clock runs over the *whole* message: every
    /// line must be finished within the line timeout of the message's first
    /// byte, not of its own. Pass the same `started` for each line of one
    /// message, `None` before its first line; it is set when the message's
    /// first byte is seen.
    ///
    /// With [`read_line`](Connection::read_line) alone, a peer could send
    /// a hundred header lines each just inside its own 30 s, and hold a
    /// thread for fifty minutes with one request.
    pub fn read_line_in(
        &mut self,
        max: usize,
        started: &mut Option<Instant>,
    ) -> io::Result<Option<Vec<u8>>> {
        self.read_line_clocked(max, Some(started))
    }

    fn read_line_clocked(
        &mut self,
        max: usize,
        message: Option<&mut Option<Instant>>,
    ) -> io::Result<Option<Vec<u8>>> {
        self.flush()?;
        self.reply_done();
        // Two clocks run while we wait for a line:
        // * the idle clock, from now: the peer must *complete* a message
        //   within the idle timeout, whether it sends nothing or trickles;
        // * the line clock, from the line's first byte: once started, a line
        //   must be finished within the line timeout (30 s), so a peer that
        //   sends one byte every few seconds (a slow-loris attack) cannot
        //   hold this thread forever even when there is no idle timeout.
        // Within a message that has started, the line clock runs from the
        // message's first byte, even before this line's first byte.
        let mut clock = self.clock(message.as_deref().copied().flatten());
        let mut current = self.current_read_timeout;
        let result = framing::read_line_with(self.buffered_reader(), max, |reader, state| {
            // Bytes already buffered (a pipelined request, the next header
            // line) are handed out without waiting, so no clock matters and
            // setting the socket's timeout would be a wasted system call.
            if !reader.buffer().is_empty() {
                return Ok(());
            }
            let wanted = clock.line_wait(state)?;
            if wanted != current {
                reader.get_ref().socket().set_read_timeout(wanted)?;
                current = wanted;
            }
            Ok(())
        });
        self.current_read_timeout = current;
        if let Some(started) = message {
            if started.is_none() && !matches!(result, Ok(None)) {
                // The message began during this call: when its first byte
                // arrived if we had to wait for more, else about now.
                *started = Some(clock.line_started().unwrap_or_else(Instant::now));
            }
        }
        match result {
            Ok(Some(line)) => {
                self.trace.line(Direction::Received, &line);
                Ok(Some(line))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(clock.explain(e, clock.line_rang(), &self.trace)),
        }
    }

    /// Like [`read_line`](Connection::read_line), but the line must be UTF-8.
    /// Invalid UTF-8 is an [`io::ErrorKind::InvalidData`] error.
    pub fn read_text_line(&mut self, max: usize) -> io::Result<Option<String>> {
        match self.read_line(max)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not valid UTF-8")),
        }
    }

    /// Discards the rest of the current line (after a too-long error).
    /// Returns `Ok(false)` if the stream ended first.
    ///
    /// The rest of the line is on a clock too: it must have arrived within
    /// the nearer of the line and idle timeouts, counted from this call (so a
    /// whole over-long line gets at most twice the line timeout). A timeout
    /// set afresh for each read would not do: a peer could send an over-long
    /// line, then trickle its tail a byte at a time and hold the thread forever.
    pub fn skip_line(&mut self) -> io::Result<bool> {
        // The line has begun (and gone on too long): its clock runs from now.
        let mut clock = self.clock(Some(Instant::now()));
        self.reply_done();
        self.buffered_reader();
        loop {
            let wait = clock
                .line_wait(LineState::Started)
                .map_err(|e| clock.explain(e, clock.line_rang(), &self.trace))?;
            self.set_read_timeout(wait)?;
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(clock.explain(e, clock.line_rang(), &self.trace)),
            };
            if available.is_empty() {
                return Ok(false);
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.reader.consume(i + 1);
                    return Ok(true);
                }
                None => {
                    let n = available.len();
                    self.reader.consume(n);
                }
            }
        }
    }

    /// Reads exactly `len` bytes of a counted body into `sink`, through a
    /// fixed-size buffer, so a 1 GiB upload never sits in memory. `on_chunk`
    /// sees every chunk as it passes (to hash it, or to draw a progress bar).
    ///
    /// A stream that ends early is an [`io::ErrorKind::UnexpectedEof`] error.
    ///
    /// Clocks run here as for lines. The idle clock bounds each wait for
    /// more bytes. With a [line timeout](Connection::set_line_timeout) set
    /// (the default), the body clock also runs: the body may keep us waiting
    /// for the line timeout, plus one second for every [`MIN_BODY_RATE`]
    /// bytes that have arrived, and no single wait may be longer than the
    /// line timeout. (The idle clock alone would let a peer send one byte
    /// every 299 s of a 300 s idle timeout and keep this thread for ever on
    /// a large upload.) Only time spent *waiting for the peer* counts: time
    /// our side spends writing `sink` or in `on_chunk` is not the peer's
    /// fault. `set_line_timeout(None)` turns the body clock off.
    pub fn read_body<W: Write + ?Sized>(
        &mut self,
        len: u64,
        sink: &mut W,
        mut on_chunk: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        self.flush()?;
        self.reply_done();
        self.buffered_reader();
        let mut clock = self.clock(None);
        let mut left = len;
        while left > 0 {
            let received = len - left;
            let body_clock = Rang::Body { received, len };
            let wait = clock
                .body_wait(received)
                .map_err(|e| clock.explain(e, body_clock, &self.trace))?;
            self.set_read_timeout(wait)?;
            let asked = Instant::now();
            let filled = self.reader.fill_buf();
            clock.body_waited(asked.elapsed());
            let available = match filled {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let rang = clock.body_rang(wait, received, len);
                    return Err(clock.explain(e, rang, &self.trace));
                }
            };
            if available.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {} of {len} body bytes", len - left),
                ));
            }
            let n = available
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let chunk = &available[..n];
            on_chunk(chunk);
            sink.write_all(chunk)?;
            self.trace.body(Direction::Received, n);
            self.reader.consume(n);
            left -= n as u64;
        }
        Ok(())
    }

    /// Reads whatever bytes have arrived (at least one), for protocols with no
    /// framing at all such as echo. `Ok(0)` means the peer closed its side.
    pub fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.flush()?;
        self.reply_done();
        self.set_read_timeout(self.idle_timeout)?;
        // If the BufReader holds bytes (after a line read), hand those out
        // first; otherwise read straight into `buf`, skipping a copy (and
        // never allocating the read buffer).
        let n = if self.reader.buffer().is_empty() {
            loop {
                match self.reader.get_mut().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            }
        } else {
            self.reader.read(buf)
        }
        .map_err(|e| self.clock(None).explain(e, Rang::Idle, &self.trace))?;
        // `is_on` first: with tracing off (always, under load) the hot path
        // then costs one test instead of a function call per read.
        if n > 0 && self.trace.is_on() {
            self.trace.data(Direction::Received, &buf[..n]);
        }
        Ok(n)
    }

    /// Waits (up to the idle timeout) until some bytes have arrived and shows
    /// them without taking them: a parser that needs to see bytes exactly as
    /// sent (the mail relay's message text, where a bare `\n` must be told
    /// from `\r\n`) looks, then [`consume`](Connection::consume)s what it
    /// used, and the rest stays for the next read. Empty means the peer
    /// closed its side.
    pub fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.flush()?;
        self.set_read_timeout(self.idle_timeout)?;
        self.buffered_reader();
        loop {
            match self.reader.fill_buf() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.clock(None).explain(e, Rang::Idle, &self.trace)),
                Ok(_) => break,
            }
        }
        Ok(self.reader.buffer())
    }

    /// Takes `n` bytes shown by [`fill_buf`](Connection::fill_buf). Traced
    /// as a line when they end in `\n` (so a caller that takes a line at a
    /// time traces like [`read_line`](Connection::read_line)), else like
    /// [`read_some`](Connection::read_some)'s data.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.reader.buffer().len());
        if n > 0 && self.trace.is_on() {
            let bytes = &self.reader.buffer()[..n];
            match bytes.strip_suffix(b"\n") {
                Some(line) => {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    self.trace.line(Direction::Received, line);
                }
                None => self.trace.data(Direction::Received, bytes),
            }
        }
        self.reader.consume(n);
    }

    /// Queues one line plus the line ending (see [`set_line_ending`](Connection::set_line_ending)).
    /// Nothing is sent until [`flush`](Connection::flush) or the next read.
    pub fn send_line(&mut self, line: impl AsRef<[u8]>) -> io::Result<()> {
        let line = line.as_ref();
        self.trace.line(Direction::Sent, line);
        let ending = self.line_ending.bytes();
        framing::write_line_ending(self.buffered_writer(), line, ending)
    }

    /// Queues raw body bytes, traced by size only.
    pub fn send_body(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.trace.body(Direction::Sent, bytes.len());
        self.buffered_writer().write_all(bytes)
    }

    /// Sends raw stream data at once, bypassing the write buffer (anything
    /// already queued goes first), traced as text when it is readable.
    ///
    /// For a reply that is already one piece in our own buffer, as in echo:
    /// copying it into the write buffer only to flush it straight away would
    /// cost a copy, and the write buffer's memory, for nothing.
    pub fn send_now(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flush()?;
        if self.trace.is_on() {
            self.trace.data(Direction::Sent, bytes);
        }
        self.writer.get_mut().write_all(bytes)
    }

    /// Sends everything queued.
    pub fn flush(&mut self) -> io::Result<()> {
        // Every read flushes first, and usually nothing is queued: then there
        // is nothing to do (our socket handle has no buffer of its own to
        // flush), so skip even the call.
        if self.writer.buffer().is_empty() {
            return Ok(());
        }
        self.writer.flush()
    }

    /// Flushes, then closes our sending side: the peer reads end-of-stream,
    /// while we can still read what it sends.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.flush()?;
        self.socket().shutdown(Shutdown::Write)
    }

    /// The read clocks for one wait (see [`ReadClock`]), the line clock
    /// running since `line_started` if that is known.
    fn clock(&self, line_started: Option<Instant>) -> ReadClock {
        ReadClock::start(self.idle_timeout, self.line_timeout, line_started)
    }
}

/// How long a line may take to arrive once its first byte has (30 s).
pub const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The slowest a counted body may arrive, in bytes per second on average,
/// once its first [line timeout](Connection::set_line_timeout) has passed.
/// 500 bytes/s is what Apache's `mod_reqtimeout` asks of request bodies by
/// default: slower than any real link, fast enough that a trickling peer
/// cannot hold a thread for long.
pub const MIN_BODY_RATE: u64 = 500;

/// Size of the read and write buffers. 8 KiB is std's default: big enough that
/// a line or a chunk of a file fits in one system call, small enough that
/// thousands of connections do not add up to much memory.
///
/// Each buffer is allocated on first use, not when the connection is made: a
/// connection that never reads a line (echo) or never queues a write has no
/// buffer at all. Ten thousand idle echo connections then cost their thread
/// stacks and little else (chapter 8 measures it).
const BUFFER_SIZE: usize = 8 * 1024;

/// The bytes that end each line we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnding {
    /// `\n`, for our own line protocols (chat, file transfer, auth).
    Lf,
    /// `\r\n`, which SMTP and POP3 require on the wire.
    CrLf,
}

impl LineEnding {
    fn bytes(self) -> &'static [u8] {
        match self {
            LineEnding::Lf => b"\n",
            LineEnding::CrLf => b"\r\n",
        }
    }
}

/// Builds the error a learner sees when a connection attempt fails, with a
/// hint for the usual causes.
pub fn connect_error(addr: &str, e: io::Error) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            " (nothing is listening there: is the server running, and on that port?)"
        }
        io::ErrorKind::TimedOut => {
            " (no answer: is a firewall dropping packets, or the host down?)"
        }
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            " (no route to that address: check it and your network)"
        }
        _ => "",
    };
    io::Error::new(e.kind(), format!("could not connect to {addr}: {e}{hint}"))
}

/// A chunked body read through a connection (see [`framing::read_chunked`]):
/// each chunk-size line runs on the line clock and each chunk's data on the
/// body clock, as any line or counted body does.
impl framing::ChunkSource for Connection {
    fn chunk_line(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        self.read_line(max)
    }

    fn chunk_data(&mut self, len: u64, mut sink: &mut dyn Write) -> io::Result<()> {
        self.read_body(len, &mut sink, |_| {})
    }
}
