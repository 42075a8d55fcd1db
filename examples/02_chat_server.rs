//! # 02_chat_server: many clients, one room
//!
//! Every line a client sends goes to everyone else. This is the first server
//! in the course whose clients talk to *each other*, and that changes two
//! things:
//!
//! 1. **Shared state.** Who is online, and under which name, is known to all
//!    connection threads. It lives in one [`Room`], a `Mutex` around the
//!    [`Clients`] table, shared through an `Arc`.
//! 2. **Backpressure.** When one client sends, the server writes to all the
//!    others. If one of them has stopped reading, a plain `write` to it would
//!    block, and the sender (and the whole room behind it) would freeze with
//!    it. So every client gets a bounded queue of outgoing lines and its own
//!    writer thread; a sender only ever *queues*, and a client whose queue
//!    stays full is disconnected. See [`deliver`].
//!
//! Each client costs two threads:
//!
//! ```text
//!                 ┌───────────── Room: Arc<Mutex<Clients>> ─────────────┐
//!                 │  who is online, their names, a handle on each queue │
//!                 └─────────────────────────────────────────────────────┘
//!   client A ──▶ reader A ──deliver──▶ [queue B] ──▶ writer B ──▶ client B
//!                          └─deliver─▶ [queue C] ──▶ writer C ──▶ client C
//! ```
//!
//! Run it, then chat from three terminals:
//!
//! ```text
//! cargo run --example 02_chat_server
//! nc 127.0.0.1 7002            # in each of three more terminals; type away
//! ```
//!
//! Chapter 4 (`docs/04-chat.md`) walks through this file.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

use netlessons::cli::Command;
use netlessons::connection::{Connection, SharedStream};
use netlessons::framing;
use netlessons::limits::ConnectionCost;
use netlessons::log;
use netlessons::server::{DEFAULT_STACK_SIZE, Server};
use netlessons::trace::{Direction, Trace};
use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Longest line a client may send, in bytes, not counting its line ending.
const MAX_LINE: usize = 1024;
/// Names are 1 to 16 letters, digits, `_` or `-`.
const MAX_NAME: usize = 16;
/// How many lines may wait in one client's outgoing queue. A line is at most
/// about 1 KiB, so a client that stops reading holds at most ~256 KiB here
/// (on top of what the kernel buffers for it) before it is dropped.
const QUEUE_LINES: usize = 256;
/// How long a sender waits for room in a full queue before it gives up on
/// that receiver and disconnects it.
const FULL_QUEUE_GRACE: Duration = Duration::from_millis(200);
/// How often a waiting sender looks again.
const FULL_QUEUE_POLL: Duration = Duration::from_millis(2);
/// How long a leaving client's writer may take to send its last lines.
const GOODBYE_GRACE: Duration = Duration::from_secs(2);
/// After saying goodbye, read and discard for at most this long (see [`linger`]).
const LINGER_TIME: Duration = Duration::from_secs(1);
/// ... or at most this many bytes.
const LINGER_BYTES: usize = 256 * 1024;
/// What a client over `--max-conns` is told before it is closed.
const SERVER_FULL: &[u8] = b"! server full\n";
/// At most this many batches of join and leave notices a second (see [`Notices`]).
const NOTICE_BATCHES_PER_SEC: u32 = 10;
/// The longest a client's first words wait for its join to be announced.
const JOIN_NOTICE_WAIT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    netlessons::cli::exit_status(run())
}

/// Binds, prints the address, and serves the room until stopped; an error
/// goes back to `main`, which prints it.
fn run() -> io::Result<()> {
    let args = Command::new(
        "02_chat_server",
        "A chat server: every line a client sends goes to everyone else.",
    )
    // Idle timeout off by default: in a chat, reading without talking is normal.
    .server_options("127.0.0.1:7002", None)
    .after_help(
        "Try it with three more terminals, each running:\n  nc 127.0.0.1 7002\n\
         then type. Commands: /nick NAME, /who, /msg NAME text, /me text, /topic [TEXT], \
         /help, /quit.",
    )
    .parse_env();

    let mut config = args.server_config("chat", Some(SERVER_FULL));
    // Two threads per client (reader and writer) and one socket: the runner
    // works out the safe connection cap from this.
    config.cost = ConnectionCost {
        threads: 2,
        files: 1,
    };
    let server = Server::bind(config)?;
    println!("listening on {}", server.local_addr());

    // The one piece of state every connection thread shares. `Arc` lets each
    // thread hold it; the `Mutex` inside lets one thread at a time look or change.
    let room = Room::start()?;
    server.serve(move |conn| serve_client(&room, conn))
}

// ---------------------------------------------------------------------------
// One client's life
// ---------------------------------------------------------------------------

/// Talks to one client, on the thread the server runner gave it: join the
/// room, read and act on its lines until it leaves, then say goodbye.
fn serve_client(room: &Room, mut conn: Connection) -> io::Result<()> {
    // The first step is the client's outgoing queue and the writer thread
    // that drains it. From now on *nobody* writes to this socket directly,
    // not even this thread: every line for this client goes into the queue.
    let (queue, lines) = mpsc::sync_channel(QUEUE_LINES);
    let outbox = Outbox {
        queue,
        socket: conn.shared_stream(),
        peer: conn.peer_addr(),
        dropped: Arc::default(),
    };
    let writer = Writer::spawn(
        lines,
        conn.shared_stream(),
        conn.trace().clone(),
        outbox.peer,
    )?;

    let mut membership = Membership {
        room,
        me: room.join(outbox.clone()),
        peer: outbox.peer,
    };
    log!("{} joined as {}", outbox.peer, membership.me.name);
    let outcome = chat(room, &mut membership.me, &outbox, &mut conn);
    // However the conversation ended (/quit, a closed socket, an error, or
    // dropped for not reading), the others are told: dropping the
    // membership takes us out of the room.
    drop(membership);

    writer.finish(&outbox);
    // After a goodbye the client may still be sending; see `linger`.
    let said_goodbye = match &outcome {
        Ok(ending) => *ending == Ending::Quit,
        Err(e) => framing::is_too_long(e),
    };
    if said_goodbye {
        linger(&mut conn);
    }
    // An error is logged by the server runner, with the client's address.
    outcome.map(|_| ())
}

/// A client's place in the room, given up when this is dropped.
///
/// Leaving in `Drop` (rather than by a call at the end of `serve_client`)
/// means it happens on every path out, even if a bug makes `chat` panic: the
/// others still hear `* NAME left`, the name is freed, and once the room
/// lets go of the client's queue its writer thread ends too.
struct Membership<'a> {
    room: &'a Room,
    me: Me,
    peer: SocketAddr,
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.room.leave(&self.me);
        log!("{} ({}) left", self.peer, self.me.name);
    }
}

/// How a conversation ended, when it ended without an error.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The client said `/quit`.
    Quit,
    /// The client closed the connection (or we did, for not reading).
    Closed,
}

/// The reading half of a client: one line at a time, until it leaves.
fn chat(room: &Room, me: &mut Me, outbox: &Outbox, conn: &mut Connection) -> io::Result<Ending> {
    loop {
        let bytes = match conn.read_line(MAX_LINE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Ending::Closed),
            Err(e) => {
                // Say why before closing, when the client can still hear it.
                if framing::is_too_long(&e) {
                    outbox.send(format!("! line too long (max {MAX_LINE} bytes)"));
                } else if e.kind() == io::ErrorKind::TimedOut {
                    outbox.send(format!("! {e}: closing"));
                }
                return Err(e);
            }
        };
        // A bad line is dropped, not the client: a typo in an encoding is
        // no reason to hang up on someone.
        let Ok(line) = String::from_utf8(bytes) else {
            outbox.send("! line dropped: it is not valid UTF-8");
            continue;
        };
        let line = neutralise(line);
        match parse_request(&line) {
            Request::Quit => {
                outbox.send("* bye");
                return Ok(Ending::Quit);
            }
            request => answer(room, me, outbox, request),
        }
    }
}

/// Carries out one request (everything but `/quit`).
fn answer(room: &Room, me: &mut Me, outbox: &Outbox, request: Request<'_>) {
    match request {
        Request::Nothing => {}
        Request::Say(text) => room.broadcast(me, format!("{}: {text}", me.name)),
        Request::Me(text) => room.broadcast(me, format!("* {} {text}", me.name)),
        Request::Nick(name) => match room.rename(me, name) {
            Ok(()) => outbox.send(format!("* you are now {}", me.name)),
            Err(refusal) => outbox.send(refusal),
        },
        Request::Who => outbox.send(room.who()),
        Request::Msg { to, text } => {
            room.after_my_join(me);
            if !room.tell(to, format!("[private] {}: {text}", me.name)) {
                outbox.send(format!("! no such user {to}"));
            }
        }
        Request::Topic(Some(topic)) => room.set_topic(me, topic),
        Request::Topic(None) => outbox.send(room.topic()),
        Request::Help => outbox.send(
            "* commands: /nick NAME, /who, /msg NAME text, /me text, /topic [TEXT], /help, \
             /quit; any other line is said to everyone",
        ),
        Request::Usage(usage) => outbox.send(format!("! usage: {usage}")),
        Request::Unknown(command) => outbox.send(format!("! unknown command {command}")),
        Request::Quit => unreachable!("chat() handles /quit itself"),
    }
}

/// After saying goodbye (`/quit`, or a line too long), read and throw away
/// whatever the client still sends, for a moment, before the socket closes.
///
/// Why bother: closing a socket while unread bytes sit in its receive buffer
/// makes the kernel send a *reset* instead of a normal close, and a reset can
/// destroy our last line ("! line too long") before the client has read it.
/// Web servers call this a "lingering close". It is bounded in time and
/// bytes, so a client cannot use it to hold the thread.
fn linger(conn: &mut Connection) {
    if conn.set_idle_timeout(Some(LINGER_TIME)).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut buf = [0u8; 4096];
    let mut discarded = 0;
    while discarded < LINGER_BYTES && Instant::now() < deadline {
        match conn.read_some(&mut buf) {
            Ok(0) | Err(_) => break, // the client closed too: done
            Ok(n) => discarded += n,
        }
    }
}

// ---------------------------------------------------------------------------
// The writing half: a queue and a thread per client
// ---------------------------------------------------------------------------

/// What a client's writer thread is asked to do.
#[derive(Debug, Clone)]
enum Outgoing {
    /// Send this line. It is an `Arc<str>`: a broadcast line is made once and
    /// shared by every queue it goes into, however many clients there are.
    Line(Arc<str>),
    /// Send these lines: a batch of joins and leaves (see [`Room::announce`]),
    /// one place in the queue however many lines it holds.
    Lines(Arc<[Arc<str>]>),
    /// Send everything queued before this, then close our sending side.
    Close,
}

/// The sending end of one client's queue, plus what we need to cut the
/// client off when it stops reading. Cheap to clone.
#[derive(Debug, Clone)]
struct Outbox {
    queue: SyncSender<Outgoing>,
    socket: SharedStream,
    peer: SocketAddr,
    /// Set once the client has been disconnected for not reading, so that
    /// later lines skip it rather than wait for it all over again.
    dropped: Arc<AtomicBool>,
}

impl Outbox {
    /// Queues one line for this client alone (an answer to its own request).
    fn send(&self, line: impl Into<Arc<str>>) {
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
fn deliver(to: &[Outbox], line: &Arc<str>) {
    deliver_item(to, &Outgoing::Line(Arc::clone(line)));
}

/// [`deliver`] for any item: a line, or a batch of lines.
fn deliver_item(to: &[Outbox], item: &Outgoing) {
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
struct Writer {
    thread: thread::JoinHandle<()>,
    /// Disconnected when the writer thread ends (its sender is dropped then),
    /// which lets us wait for it with a timeout; `join` has none.
    finished: Receiver<()>,
}

impl Writer {
    /// Starts the thread that sends this client's queued lines.
    fn spawn(
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
    fn finish(self, outbox: &Outbox) {
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

// ---------------------------------------------------------------------------
// The shared state
// ---------------------------------------------------------------------------

/// The chat room: everything the connection threads share.
///
/// Every method follows the same rule: lock, read or change [`Clients`], copy
/// out what is needed (the queues to deliver to), unlock, and only then
/// [`deliver`]. The lock is held for microseconds and never while waiting.
#[derive(Debug, Default)]
struct Room {
    clients: Mutex<Clients>,
    /// Joins and leaves waiting to be announced, and how far announcing got.
    notices: Mutex<Notices>,
    /// Signalled when a notice is queued, and when a batch has gone out.
    notices_changed: Condvar,
}

/// Joins and leaves not yet announced to the room.
///
/// Announcing every join to everyone costs the room one line per member
/// per join: with n clients arriving, n² lines. When 3,000 clients join at
/// once that is 4.5 million lines, each a queue entry and a wake-up of a
/// writer thread: about a minute of server CPU, during which the room (and
/// any newcomer) waits. So joins and leaves are queued here and announced in
/// batches by one thread, at most [`NOTICE_BATCHES_PER_SEC`] a second: a
/// storm of 3,000 joins becomes a few dozen batches, each one entry in each
/// queue and one write per client. Every line is still said; a quiet room
/// hears a single join at once.
#[derive(Debug, Default)]
struct Notices {
    pending: Vec<Notice>,
    /// The number the next notice gets.
    next_seq: u64,
    /// Every notice numbered below this has been delivered.
    delivered: u64,
}

/// `* NAME joined` or `* NAME left`, and its number. A member hears only
/// of what happened after it joined (not of its own arrival, nor of joins
/// before it, which its `/who` shows).
#[derive(Debug)]
struct Notice {
    seq: u64,
    line: Arc<str>,
}

/// Who is online, under what name: the state behind the room's lock.
#[derive(Debug, Default)]
struct Clients {
    /// Everyone online, by a number that stays the same when they rename.
    members: HashMap<u64, Member>,
    /// The number the next client gets in `members`.
    next_id: u64,
    /// The last guest number handed out (`guest1`, `guest2`, …).
    last_guest: u64,
    /// The room's topic, once someone set one with `/topic`.
    topic: Option<String>,
}

/// One client as the room knows it.
#[derive(Debug)]
struct Member {
    name: String,
    outbox: Outbox,
    /// The number of this member's join notice: it hears of later ones.
    since: u64,
}

/// A client as its own thread knows it: its number in the room and its name.
/// Only this client's thread ever changes its name, so it may keep a copy.
#[derive(Debug)]
struct Me {
    id: u64,
    name: String,
    /// The number of our `* NAME joined` notice until it has gone out. What
    /// we say to the others waits for it, so nobody hears from us before
    /// they have heard that we joined.
    join_notice: Cell<Option<u64>>,
}

impl Clients {
    /// The member called `name`, ignoring case (`Alice` and `alice` are one
    /// name). Names are ASCII, so an ASCII comparison is enough.
    fn find(&self, name: &str) -> Option<(u64, &Member)> {
        self.members
            .iter()
            .find(|(_, member)| member.name.eq_ignore_ascii_case(name))
            .map(|(&id, member)| (id, member))
    }

    /// The next free guest name: the counter goes up, skipping any `guestN`
    /// someone has taken with `/nick`.
    fn new_guest_name(&mut self) -> String {
        loop {
            self.last_guest += 1;
            let name = format!("guest{}", self.last_guest);
            if self.find(&name).is_none() {
                return name;
            }
        }
    }

    /// Everyone's queue.
    fn everyone(&self) -> Vec<Outbox> {
        self.members
            .values()
            .map(|member| member.outbox.clone())
            .collect()
    }

    /// Everyone's queue but `id`'s.
    fn outboxes_except(&self, id: u64) -> Vec<Outbox> {
        self.members
            .iter()
            .filter(|&(&other, _)| other != id)
            .map(|(_, member)| member.outbox.clone())
            .collect()
    }
}

impl Room {
    /// Locks the shared state. A thread that panicked while holding the lock
    /// "poisons" it; every change here is a single insert, remove or
    /// assignment, so the state is still whole and we carry on.
    fn lock(&self) -> MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new room, with its announcer thread running.
    fn start() -> io::Result<Arc<Room>> {
        let room = Arc::new(Room::default());
        let announcer = Arc::clone(&room);
        thread::Builder::new()
            .name("announcer".to_string())
            .stack_size(DEFAULT_STACK_SIZE)
            .spawn(move || announcer.announce())?;
        Ok(room)
    }

    fn notices(&self) -> MutexGuard<'_, Notices> {
        self.notices.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a join or leave for the announcer; returns its number.
    fn notify(&self, line: String) -> u64 {
        let mut notices = self.notices();
        let seq = notices.next_seq;
        notices.next_seq += 1;
        notices.pending.push(Notice {
            seq,
            line: line.into(),
        });
        self.notices_changed.notify_all();
        seq
    }

    /// The announcer thread: takes whatever joins and leaves are waiting and
    /// delivers them as one batch to everyone in the room, at most
    /// [`NOTICE_BATCHES_PER_SEC`] times a second. Runs as long as the server.
    fn announce(&self) {
        let gap = Duration::from_secs(1) / NOTICE_BATCHES_PER_SEC;
        let mut last_batch: Option<Instant> = None;
        loop {
            let mut notices = self.notices();
            while notices.pending.is_empty() {
                notices = self
                    .notices_changed
                    .wait(notices)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // Right after a batch, wait out the gap: what arrives meanwhile
            // joins this batch. After a quiet spell, go at once.
            if let Some(since) = last_batch.map(|t| t.elapsed()).filter(|&e| e < gap) {
                drop(notices);
                thread::sleep(gap - since);
                notices = self.notices();
            }
            let batch = std::mem::take(&mut notices.pending);
            let upto = notices.next_seq;
            drop(notices);
            last_batch = Some(Instant::now());

            let Some(first) = batch.first().map(|n| n.seq) else {
                continue;
            };
            let members: Vec<(u64, Outbox)> = self
                .lock()
                .members
                .values()
                .map(|member| (member.since, member.outbox.clone()))
                .collect();
            // Members from before the batch get all of it, in one shared
            // list; a newcomer in the batch gets what came after its join.
            let (newcomers, others): (Vec<_>, Vec<_>) =
                members.into_iter().partition(|&(since, _)| since >= first);
            let others: Vec<Outbox> = others.into_iter().map(|(_, outbox)| outbox).collect();
            let lines: Arc<[Arc<str>]> = batch.iter().map(|n| Arc::clone(&n.line)).collect();
            deliver_item(&others, &Outgoing::Lines(lines));
            for (since, outbox) in newcomers {
                let theirs: Arc<[Arc<str>]> = batch
                    .iter()
                    .filter(|n| n.seq > since)
                    .map(|n| Arc::clone(&n.line))
                    .collect();
                if !theirs.is_empty() {
                    deliver_item(std::slice::from_ref(&outbox), &Outgoing::Lines(theirs));
                }
            }
            self.notices().delivered = upto;
            self.notices_changed.notify_all();
        }
    }

    /// Waits (briefly) until our own join has been announced, before we say
    /// anything to the others.
    fn after_my_join(&self, me: &Me) {
        let Some(seq) = me.join_notice.get() else {
            return;
        };
        let notices = self.notices();
        let _ = self
            .notices_changed
            .wait_timeout_while(notices, JOIN_NOTICE_WAIT, |n| n.delivered <= seq);
        me.join_notice.set(None);
    }

    /// Adds a client under a fresh guest name, welcomes it and tells the others.
    fn join(&self, outbox: Outbox) -> Me {
        let me = {
            let mut clients = self.lock();
            let name = clients.new_guest_name();
            let id = clients.next_id;
            clients.next_id += 1;
            // The welcome goes into the queue *before* the client is in the
            // table, so it is the first line the client gets, whatever the
            // others are saying. The queue is brand new and empty, so this
            // `try_send` cannot find it full: nothing waits under the lock.
            let _ = outbox.queue.try_send(line(format!(
                "* welcome, you are {name} (type /help for the commands)"
            )));
            if let Some(topic) = &clients.topic {
                let _ = outbox.queue.try_send(line(format!("* topic: {topic}")));
            }
            // The others hear of it from the announcer, with any other
            // joins. Numbered under the room's lock, so that the number
            // orders this join with every other join and leave.
            let seq = self.notify(format!("* {name} joined"));
            clients.members.insert(
                id,
                Member {
                    name: name.clone(),
                    outbox,
                    since: seq,
                },
            );
            (id, name, seq)
        }; // the lock is released here
        let (id, name, seq) = me;
        Me {
            id,
            name,
            join_notice: Cell::new(Some(seq)),
        }
    }

    /// Removes a client and tells the others.
    fn leave(&self, me: &Me) {
        let mut clients = self.lock();
        clients.members.remove(&me.id);
        // After our join's notice, in the announcer's queue, like the join.
        self.notify(format!("* {} left", me.name));
    }

    /// Sends `line` to everyone but `from`.
    fn broadcast(&self, from: &Me, line: String) {
        self.after_my_join(from);
        let others = self.lock().outboxes_except(from.id);
        deliver(&others, &line.into());
    }

    /// Renames `me`, or says why not (the `! …` line to send back).
    fn rename(&self, me: &mut Me, name: &str) -> Result<(), String> {
        self.after_my_join(me);
        if !is_valid_name(name) {
            return Err(format!(
                "! invalid name {name}: use 1 to {MAX_NAME} letters, digits, _ or -"
            ));
        }
        let others = {
            let mut clients = self.lock();
            // Check and change under one lock. Checking, unlocking and then
            // changing would let two clients both see "bob" free and both
            // take it. (Renaming yourself to another case is fine.)
            if clients.find(name).is_some_and(|(id, _)| id != me.id) {
                return Err(format!("! name {name} is taken"));
            }
            if let Some(member) = clients.members.get_mut(&me.id) {
                member.name = name.to_string();
            }
            clients.outboxes_except(me.id)
        };
        let old = std::mem::replace(&mut me.name, name.to_string());
        if old != me.name {
            deliver(&others, &format!("* {old} is now {name}").into());
        }
        Ok(())
    }

    /// Sends `line` to the member called `to`; false if there is none.
    fn tell(&self, to: &str, line: String) -> bool {
        let target = self
            .lock()
            .find(to)
            .map(|(_, member)| member.outbox.clone());
        match target {
            Some(outbox) => {
                outbox.send(line);
                true
            }
            None => false,
        }
    }

    /// The `/who` answer: every name, sorted by byte order.
    fn who(&self) -> String {
        let mut names: Vec<String> = self
            .lock()
            .members
            .values()
            .map(|m| m.name.clone())
            .collect();
        names.sort();
        format!("* online: {}", names.join(", "))
    }

    /// Sets the topic and tells everyone, the setter included.
    fn set_topic(&self, me: &Me, topic: &str) {
        self.after_my_join(me);
        let everyone = {
            let mut clients = self.lock();
            clients.topic = Some(topic.to_string());
            clients.everyone()
        };
        deliver(
            &everyone,
            &format!("* {} set the topic: {topic}", me.name).into(),
        );
    }

    /// The `/topic` answer.
    fn topic(&self) -> String {
        match &self.lock().topic {
            Some(topic) => format!("* topic: {topic}"),
            None => "* no topic set".to_string(),
        }
    }
}

/// A queued line, from text.
fn line(text: String) -> Outgoing {
    Outgoing::Line(text.into())
}

// ---------------------------------------------------------------------------
// The protocol: pure functions, no sockets
// ---------------------------------------------------------------------------

/// One line from a client, understood.
#[derive(Debug, PartialEq, Eq)]
enum Request<'a> {
    /// An empty (or all-blank) line: ignored.
    Nothing,
    /// A chat line for everyone else.
    Say(&'a str),
    /// `/me waves`: an action, shown to others as `* NAME waves`.
    Me(&'a str),
    /// `/nick NAME`.
    Nick(&'a str),
    /// `/who`.
    Who,
    /// `/msg NAME text`.
    Msg {
        /// Who it is for.
        to: &'a str,
        /// What it says.
        text: &'a str,
    },
    /// `/topic TEXT` sets the topic; `/topic` alone asks for it.
    Topic(Option<&'a str>),
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// A known command used wrongly: how to use it.
    Usage(&'static str),
    /// A `/command` we do not know (the word, slash included).
    Unknown(&'a str),
}

/// Reads a line as a request. Pure: easy to test, easy to extend.
fn parse_request(line: &str) -> Request<'_> {
    if line.trim().is_empty() {
        return Request::Nothing;
    }
    if !line.starts_with('/') {
        return Request::Say(line);
    }
    let (command, args) = match line.split_once(char::is_whitespace) {
        Some((command, args)) => (command, args.trim()),
        None => (line, ""),
    };
    match (command, args) {
        ("/nick", "") => Request::Usage("/nick NAME"),
        ("/nick", name) => Request::Nick(name),
        ("/who", _) => Request::Who,
        ("/msg", args) => match args.split_once(char::is_whitespace) {
            Some((to, text)) => Request::Msg {
                to,
                text: text.trim_start(),
            },
            None => Request::Usage("/msg NAME text"),
        },
        ("/me", "") => Request::Usage("/me text"),
        ("/me", text) => Request::Me(text),
        ("/topic", "") => Request::Topic(None),
        ("/topic", text) => Request::Topic(Some(text)),
        ("/help", _) => Request::Help,
        ("/quit", _) => Request::Quit,
        (command, _) => Request::Unknown(command),
    }
}

/// Is `name` acceptable: 1 to 16 of `A-Z a-z 0-9 _ -`?
fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Replaces control characters (all but tab) with `�`.
///
/// Terminals obey "escape sequences": bytes starting with ESC (0x1b) that
/// move the cursor, change colours or clear the screen. Passed on unchanged,
/// one client could scribble over everyone else's terminal. (A real server
/// would also think about right-to-left overrides and look-alike letters.)
fn neutralise(line: String) -> String {
    let unsafe_char = |c: char| c.is_control() && c != '\t';
    if line.chars().any(unsafe_char) {
        line.chars()
            .map(|c| if unsafe_char(c) { '\u{fffd}' } else { c })
            .collect()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain text is said; blank lines are nothing; commands split at the first space.
    #[test]
    fn parses_requests() {
        assert_eq!(parse_request("hello /nick"), Request::Say("hello /nick"));
        assert_eq!(parse_request(""), Request::Nothing);
        assert_eq!(parse_request("  \t"), Request::Nothing);
        assert_eq!(parse_request("/nick bob"), Request::Nick("bob"));
        assert_eq!(parse_request("/nick"), Request::Usage("/nick NAME"));
        assert_eq!(parse_request("/nick  bob  "), Request::Nick("bob"));
        assert_eq!(parse_request("/who"), Request::Who);
        assert_eq!(
            parse_request("/msg bob  hi  there"),
            Request::Msg {
                to: "bob",
                text: "hi  there"
            }
        );
        assert_eq!(parse_request("/msg bob"), Request::Usage("/msg NAME text"));
        assert_eq!(parse_request("/me waves"), Request::Me("waves"));
        assert_eq!(parse_request("/me"), Request::Usage("/me text"));
        assert_eq!(parse_request("/topic"), Request::Topic(None));
        assert_eq!(parse_request("/topic Rust"), Request::Topic(Some("Rust")));
        assert_eq!(parse_request("/quit now"), Request::Quit);
        assert_eq!(parse_request("/dance a jig"), Request::Unknown("/dance"));
        assert_eq!(parse_request("/"), Request::Unknown("/"));
    }

    /// Names: 1 to 16 of letters, digits, `_` and `-`, nothing else.
    #[test]
    fn validates_names() {
        for good in ["a", "Bob", "x_y-z", "0123456789abcdef"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "two words", "0123456789abcdefg", "é", "a.b", "a\u{1b}"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    /// Escape sequences are defused; ordinary text, tabs and accents pass.
    #[test]
    fn neutralises_control_characters() {
        assert_eq!(neutralise("héllo\tthere".into()), "héllo\tthere");
        assert_eq!(
            neutralise("\u{1b}[2Jboo\u{7}".into()),
            "\u{fffd}[2Jboo\u{fffd}"
        );
        assert_eq!(neutralise("a\u{9b}b".into()), "a\u{fffd}b");
    }

    /// Guest numbers count up and skip names in use, ignoring case.
    #[test]
    fn guest_names_skip_names_in_use() {
        let mut clients = Clients::default();
        assert_eq!(clients.new_guest_name(), "guest1");
        let (queue, _lines) = mpsc::sync_channel(1);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let outbox = Outbox {
            queue,
            peer: stream.peer_addr().unwrap(),
            socket: SharedStream::new(stream),
            dropped: Arc::default(),
        };
        let name = "GUEST2".to_string();
        clients.members.insert(
            7,
            Member {
                name,
                outbox,
                since: 0,
            },
        );
        assert_eq!(clients.new_guest_name(), "guest3");
        assert!(clients.find("Guest2").is_some());
    }
}
