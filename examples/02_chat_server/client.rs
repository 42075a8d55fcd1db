//! One client's life: [`serve_client`] sets up its queue and writer, joins
//! the room, runs the reading half ([`chat`], which hands each request to
//! [`answer`]), and at the end says goodbye ([`linger`]).
//!
//! Nothing here writes to the client's socket: every line for the client
//! goes into its queue (`outbox.rs`), and its writer thread sends it.

use crate::outbox::{Outbox, QUEUE_LINES, Writer};
use crate::protocol::{Request, neutralise, parse_request};
use crate::room::{Me, Room};
use netlessons::connection::Connection;
use netlessons::framing;
use netlessons::log;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Longest line a client may send, in bytes, not counting its line ending.
const MAX_LINE: usize = 1024;
/// After saying goodbye, read and discard for at most this long (see [`linger`]).
const LINGER_TIME: Duration = Duration::from_secs(1);
/// ... or at most this many bytes.
const LINGER_BYTES: usize = 256 * 1024;

/// Talks to one client, on the thread the server runner gave it: join the
/// room, read and act on its lines until it leaves, then say goodbye.
pub fn serve_client(room: &Room, mut conn: Connection) -> io::Result<()> {
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
