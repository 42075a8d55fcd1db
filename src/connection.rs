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
//!    or trickles a counted body (see [`MIN_BODY_RATE`]).
//! 4. **Tracing** (`--trace`), from [`crate::trace`].

use crate::framing::{self, LineState};
use crate::trace::{Direction, Trace};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// A `TcpStream` that several owners can share without duplicating the file
/// descriptor: the reader, the writer and (on a server) the shutdown registry
/// hold the same socket. `&TcpStream` implements `Read` and `Write`, which is
/// what makes this work.
#[derive(Debug, Clone)]
pub struct SharedStream(Arc<TcpStream>);

impl SharedStream {
    /// Wraps a stream so that it can be shared.
    pub fn new(stream: TcpStream) -> SharedStream {
        SharedStream(Arc::new(stream))
    }

    /// The socket itself, for `peer_addr`, `shutdown` or timeouts.
    pub fn socket(&self) -> &TcpStream {
        &self.0
    }
}

impl Read for SharedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for SharedStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The sending side of a [`Connection`]: the socket, and the **reply clock**.
///
/// A write timeout on the socket bounds each system call, not a reply: a
/// peer that asks for a big reply (a 1 GiB `GET`) and then reads a little
/// just before every timeout lets each `write` make some progress, so the
/// timeout starts again and again, and the peer holds the thread for as long
/// as it likes. So the idle timeout is measured over the whole reply: from
/// the first write after we last read, to the last one before we read again.
/// (A real server may also ask for a minimum send rate; nginx's
/// `send_timeout`, by contrast, is per write, as ours used to be.)
#[derive(Debug, Clone)]
struct ReplyWriter {
    stream: SharedStream,
    /// The longest a whole reply may take to go out (the idle timeout).
    limit: Option<Duration>,
    /// When the reply now going out started.
    started: Option<Instant>,
    /// The write timeout set on the socket now, so that we only make the
    /// system call when it must change.
    current: Option<Duration>,
}

impl ReplyWriter {
    /// Sets the socket's write timeout to what is left of the reply's time,
    /// or fails if nothing is. The timeout is tightened only in steps of a
    /// second, so a fast reply costs no system call beyond its writes.
    fn arm(&mut self) -> io::Result<()> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        let left = limit.saturating_sub(now.duration_since(started));
        if left.is_zero() {
            return Err(self.too_slow());
        }
        let stale = match self.current {
            Some(current) => current < left || current > left + Duration::from_secs(1),
            None => true,
        };
        if stale {
            self.stream.socket().set_write_timeout(Some(left))?;
            self.current = Some(left);
        }
        Ok(())
    }

    fn too_slow(&self) -> io::Error {
        let limit = self.limit.map_or(0, |l| l.as_secs());
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client stopped reading: a reply was not taken within {limit} s (idle timeout)"
            ),
        )
    }
}

impl Write for ReplyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.stream.write(buf).map_err(|e| match e.kind() {
            // On Unix a timed-out write reports `WouldBlock`, on Windows `TimedOut`.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.too_slow(),
            _ => e,
        })
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One side of a TCP conversation: buffered, framed, timed and traced.
///
/// Which `send_*` to use when:
///
/// | to send | use | goes out | traced as |
/// |---|---|---|---|
/// | one protocol line (`OK`, `250 ok`) | [`send_line`](Connection::send_line) | at the next [`flush`](Connection::flush) or read | the line |
/// | a counted body (a file, a message) | [`send_body`](Connection::send_body) | at the next flush or read | its size |
/// | a reply already whole in your own buffer (echo) | [`send_now`](Connection::send_now) | at once, no copy | the bytes, escaped |
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
            writer: BufWriter::with_capacity(
                0,
                ReplyWriter {
                    stream: shared,
                    limit: None,
                    started: None,
                    current: None,
                },
            ),
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
        let writer = self.writer.get_mut();
        writer.limit = timeout;
        writer.current = timeout;
        Ok(())
    }

    /// We are about to wait for the peer: the reply we were sending is done,
    /// so the next write starts a new reply clock.
    fn reply_done(&mut self) {
        self.writer.get_mut().started = None;
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
        let now = Instant::now();
        let idle = self.idle_timeout;
        // checked_add: a limit too far off to represent means no limit.
        let idle_deadline = idle.and_then(|d| now.checked_add(d));
        let line_limit = self.line_timeout;
        // Within a message that has started, the line clock runs from the
        // message's first byte, even before this line's first byte.
        let mut line_deadline: Option<Instant> = message
            .as_deref()
            .copied()
            .flatten()
            .and_then(|start| line_limit.and_then(|l| start.checked_add(l)));
        let mut current = self.current_read_timeout;
        let result = framing::read_line_with(self.buffered_reader(), max, |reader, state| {
            // Bytes already buffered (a pipelined request, the next header
            // line) are handed out without waiting, so no clock matters and
            // setting the socket's timeout would be a wasted system call.
            if !reader.buffer().is_empty() {
                return Ok(());
            }
            let wanted = match state {
                // Nothing of the line (or message) yet: wait up to the idle timeout.
                LineState::Idle if line_deadline.is_none() => idle,
                // Part of a line is here: wait only until the nearer deadline.
                LineState::Idle | LineState::Started => {
                    if line_deadline.is_none() {
                        line_deadline = line_limit.and_then(|l| Instant::now().checked_add(l));
                    }
                    match [idle_deadline, line_deadline].into_iter().flatten().min() {
                        None => None,
                        Some(deadline) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return Err(io::Error::from(io::ErrorKind::TimedOut));
                            }
                            Some(left)
                        }
                    }
                }
            };
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
                *started = Some(
                    line_deadline
                        .zip(line_limit)
                        .and_then(|(deadline, limit)| deadline.checked_sub(limit))
                        .unwrap_or_else(Instant::now),
                );
            }
        }
        match result {
            Ok(Some(line)) => {
                self.trace.line(Direction::Received, &line);
                Ok(Some(line))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                // Which clock ran out? The line clock, if it was running and
                // is the nearer one; otherwise the idle clock.
                let line_clock = match (line_deadline, idle_deadline) {
                    (Some(l), Some(i)) => l <= i,
                    (Some(_), None) => true,
                    _ => false,
                };
                Err(self.explain_timeout(e, line_clock))
            }
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
        let line_clock = match (self.line_timeout, self.idle_timeout) {
            (Some(line), Some(idle)) => line <= idle,
            (line, _) => line.is_some(),
        };
        let deadline = [self.line_timeout, self.idle_timeout]
            .into_iter()
            .flatten()
            .min()
            .and_then(|limit| Instant::now().checked_add(limit));
        self.reply_done();
        self.buffered_reader();
        loop {
            let wait = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let e = io::Error::from(io::ErrorKind::TimedOut);
                        return Err(self.explain_timeout(e, line_clock));
                    }
                    Some(left)
                }
            };
            self.set_read_timeout(wait)?;
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.explain_timeout(e, line_clock)),
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
        let mut waited = Duration::ZERO;
        let mut left = len;
        while left > 0 {
            let received = len - left;
            // What the body clock allows so far (`None`: no limit, when the
            // clock is off or the sum is too large to represent).
            let allowed = self
                .line_timeout
                .and_then(|grace| grace.checked_add(Duration::from_secs(received / MIN_BODY_RATE)));
            let mut wait = self.idle_timeout;
            if let (Some(grace), Some(allowed)) = (self.line_timeout, allowed) {
                let remaining = allowed.saturating_sub(waited);
                if remaining.is_zero() {
                    return Err(self.body_too_slow(received, len, waited, grace));
                }
                // Capped at the line timeout, so that during a fast upload
                // (where `remaining` races ahead) the value stays the same
                // and setting it costs no system call.
                let limit = remaining.min(grace);
                wait = Some(wait.map_or(limit, |idle| idle.min(limit)));
            }
            self.set_read_timeout(wait)?;
            let asked = Instant::now();
            let filled = self.reader.fill_buf();
            waited += asked.elapsed();
            let available = match filled {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let timed_out = matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    );
                    // Which clock rang? The body clock's, if it set the wait.
                    return Err(match (self.line_timeout, allowed) {
                        (Some(grace), Some(_)) if timed_out && wait != self.idle_timeout => {
                            self.body_too_slow(received, len, waited, grace)
                        }
                        _ => self.explain_timeout(e, false),
                    });
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
        .map_err(|e| self.explain_timeout(e, false))?;
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
                Err(e) => return Err(self.explain_timeout(e, false)),
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

    /// Turns a read timeout into an error that says which limit was hit.
    /// (On Unix a timed-out read reports `WouldBlock`, on Windows `TimedOut`.)
    /// The body clock's error: the peer kept us waiting too long for a body.
    fn body_too_slow(
        &self,
        received: u64,
        len: u64,
        waited: Duration,
        grace: Duration,
    ) -> io::Error {
        let text = format!(
            "body arrived too slowly: {received} of {len} bytes after waiting {:.1} s \
             (a body may keep us waiting {grace} s plus 1 s per {MIN_BODY_RATE} bytes, \
             and at most {grace} s at a time)",
            waited.as_secs_f64(),
            grace = grace.as_secs_f64()
        );
        self.trace.note(&text);
        io::Error::new(io::ErrorKind::TimedOut, text)
    }

    fn explain_timeout(&self, e: io::Error, line_clock: bool) -> io::Error {
        if !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return e;
        }
        let text = match (line_clock, self.line_timeout, self.idle_timeout) {
            (true, Some(limit), _) => format!("line not finished within {} s", limit.as_secs()),
            (_, _, Some(idle)) => {
                format!(
                    "no complete message for {} s (idle timeout)",
                    idle.as_secs()
                )
            }
            _ => "timed out".to_string(),
        };
        self.trace.note(&text);
        io::Error::new(io::ErrorKind::TimedOut, text)
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
