//! The writing half of every client: a bounded queue and a writer thread.
//!
//! A sender never writes to another client's socket: it only *queues*
//! ([`deliver`]), and each client's own writer thread ([`write_queued`])
//! does the writing. A client that stops reading blocks only its own writer;
//! its queue fills up behind it, and `deliver` decides what to do.

use netlessons::connection::SharedStream;
use netlessons::framing;
use netlessons::log;
use netlessons::server::DEFAULT_STACK_SIZE;
use netlessons::trace::{Direction, Trace};
use std::io::{self, BufWriter, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

/// How many lines may wait in one client's outgoing queue. A line is at most
/// about 1 KiB, so a client that stops reading holds at most ~256 KiB here
/// (on top of what the kernel buffers for it) before it is dropped.
pub const QUEUE_LINES: usize = 256;
/// How long a sender waits for room in a full queue before it gives up on
/// that receiver and disconnects it.
const FULL_QUEUE_GRACE: Duration = Duration::from_millis(200);
/// How often a waiting sender looks again.
const FULL_QUEUE_POLL: Duration = Duration::from_millis(2);
/// How long a leaving client's writer may take to send its last lines.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);

/// What a client's writer thread is asked to do.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Send this line. It is an `Arc<str>`: a broadcast line is made once and
    /// shared by every queue it goes into, however many clients there are.
    Line(Arc<str>),
    /// Send these lines: a batch of joins and leaves (see
    /// [`Room::announce`](crate::room::Room::announce)),
    /// one place in the queue however many lines it holds.
    Lines(Arc<[Arc<str>]>),
    /// Send everything queued before this, then close our sending side.
    Close,
}

/// The sending end of one client's queue, plus what we need to cut the
/// client off when it stops reading. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub queue: SyncSender<Outgoing>,
    pub socket: SharedStream,
    pub peer: SocketAddr,
    /// Set once the client has been disconnected for not reading, so that
    /// later lines skip it rather than wait for it all over again.
    pub dropped: Arc<AtomicBool>,
}

impl Outbox {
    /// Queues one line for this client alone (an answer to its own request).
    pub fn send(&self, line: impl Into<Arc<str>>) {
        deliver(std::slice::from_ref(self), &line.into());
    }

    /// Disconnects a client that stopped reading (once).
    fn drop_frozen(&self) {
        if self.dropped.swap(true, Ordering::SeqCst) {
            return;
        }
        log!(
            "{} dropped: not reading (its queue of {QUEUE_LINES} lines stayed full for {} ms)",
            self.peer,
            FULL_QUEUE_GRACE.as_millis()
        );
        // shutdown(Both) does two things at once: the client's writer thread,
        // stuck in a write that will never finish, gets an error and ends;
        // and its reader thread, waiting for a line, sees end-of-stream, so it
        // leaves the room and everyone gets "* NAME left".
        let _ = self.socket.socket().shutdown(Shutdown::Both);
    }
}

/// Puts `line` into the queue of every client in `to`, without ever letting
/// one of them hold the others up. This is where backpressure is handled.
///
/// Normally a queue has room and `try_send` returns at once. A queue is full
/// only when its writer cannot keep up: the client reads slower than the room
/// talks, and the kernel's buffers for it (often megabytes) are already full.
/// Then there are two kinds of client, and we cannot tell them apart up front:
///
/// * A **slow** client still reads. A line leaves its queue every so often,
///   so within [`FULL_QUEUE_GRACE`] there is room again and the line goes in.
///   The sender has waited a little: that is the backpressure, and through TCP
///   it reaches the sending client, which the room now follows at the pace of
///   its slowest reader. Nobody loses a line.
/// * A **frozen** client has stopped reading (a stuck program, a laptop lid
///   closed). Its queue never drains. After [`FULL_QUEUE_GRACE`] we give up
///   and disconnect it; from then on it is skipped.
///
/// Either way the wait is bounded, and we wait for all full queues *together*
/// (one deadline, not one per client), so a room full of frozen clients costs
/// a sender one grace period, not one per frozen client.
///
/// Two things we must not do, because they would bring back the freeze we are
/// avoiding: block in `send` (a `SyncSender` waits forever on a full queue),
/// and hold the room's lock while we wait (every other thread needs it).
/// That is why callers take a snapshot of the queues under the lock, release
/// it, and only then call `deliver`.
pub fn deliver(to: &[Outbox], line: &Arc<str>) {
    deliver_item(to, &Outgoing::Line(Arc::clone(line)));
}

/// [`deliver`] for any item: a line, or a batch of lines.
pub fn deliver_item(to: &[Outbox], item: &Outgoing) {
    let mut full: Vec<&Outbox> = Vec::new();
    for outbox in to {
        if outbox.dropped.load(Ordering::SeqCst) {
            continue;
        }
        match outbox.queue.try_send(item.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => full.push(outbox),
            // Its writer has ended: that client is on its way out already.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
    let deadline = Instant::now() + FULL_QUEUE_GRACE;
    while !full.is_empty() {
        if Instant::now() >= deadline {
            for outbox in full {
                outbox.drop_frozen();
            }
            return;
        }
        // std's SyncSender has no "send with a timeout", so we poll: sleep a
        // moment, try again, keep only the queues that are still full.
        thread::sleep(FULL_QUEUE_POLL);
        full.retain(|outbox| {
            matches!(
                outbox.queue.try_send(item.clone()),
                Err(TrySendError::Full(_))
            )
        });
    }
}

/// A client's writer thread, seen from its reader thread.
pub struct Writer {
    thread: thread::JoinHandle<()>,
    /// Disconnected when the writer thread ends (its sender is dropped then),
    /// which lets us wait for it with a timeout; `join` has none.
    finished: Receiver<()>,
}

impl Writer {
    /// Starts the thread that sends this client's queued lines.
    pub fn spawn(
        lines: Receiver<Outgoing>,
        stream: SharedStream,
        trace: Trace,
        peer: SocketAddr,
    ) -> io::Result<Writer> {
        let (finished_tx, finished) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name(format!("writer-{peer}"))
            .stack_size(DEFAULT_STACK_SIZE)
            .spawn(move || {
                let _finished = finished_tx;
                write_queued(lines, stream, &trace);
            })?;
        Ok(Writer { thread, finished })
    }

    /// Asks the writer to send what is left (the `* bye`) and close, and
    /// waits for it, but not forever.
    pub fn finish(self, outbox: &Outbox) {
        let socket = outbox.socket.socket();
        // A full queue means the client is not reading: there is nobody to
        // say goodbye to, so cut it off instead.
        if let Err(TrySendError::Full(_)) = outbox.queue.try_send(Outgoing::Close) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // A writer may also be stuck in a write to a client that stopped
        // reading just now. Give it a moment, then cut it off too.
        if let Err(RecvTimeoutError::Timeout) = self.finished.recv_timeout(GOODBYE_GRACE) {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let _ = self.thread.join();
    }
}

/// The body of a writer thread: take lines from the queue and write them,
/// until told to close or the socket fails.
///
/// This thread is the only one that writes to the socket, and the only one
/// that may block on it. If the client stops reading, this thread stops in
/// `write`, the queue fills up behind it, and [`deliver`] notices.
fn write_queued(lines: Receiver<Outgoing>, stream: SharedStream, trace: &Trace) {
    let socket = stream.clone();
    let mut out = BufWriter::new(stream);
    let mut write_all = || -> io::Result<()> {
        loop {
            let next = match lines.try_recv() {
                Ok(next) => next,
                // The queue is empty: send what we have gathered in one go,
                // then sleep until the next line arrives. (Flushing only when
                // the queue is empty turns a burst of lines into few writes.)
                Err(TryRecvError::Empty) => {
                    out.flush()?;
                    match lines.recv() {
                        Ok(next) => next,
                        Err(_) => return out.flush(),
                    }
                }
                Err(TryRecvError::Disconnected) => return out.flush(),
            };
            match next {
                Outgoing::Line(line) => {
                    trace.line(Direction::Sent, line.as_bytes());
                    framing::write_line(&mut out, line.as_bytes())?;
                }
                Outgoing::Lines(lines) => {
                    for line in lines.iter() {
                        trace.line(Direction::Sent, line.as_bytes());
                        framing::write_line(&mut out, line.as_bytes())?;
                    }
                }
                Outgoing::Close => return out.flush(),
            }
        }
    };
    match write_all() {
        // Done: the client reads end-of-stream after our last line.
        Ok(()) => {
            let _ = socket.socket().shutdown(Shutdown::Write);
        }
        // The client is gone or cut off. Shut the reading side too, so that
        // its reader thread stops waiting and the room hears it left.
        Err(_) => {
            let _ = socket.socket().shutdown(Shutdown::Both);
        }
    }
}
