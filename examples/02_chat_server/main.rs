//! # 02_chat_server: many clients, one room
//!
//! Every line a client sends goes to everyone else. This is the first server
//! in the course whose clients talk to *each other*, and that changes two
//! things:
//!
//! 1. **Shared state.** Who is online, and under which name, is known to all
//!    connection threads. It lives in one [`Room`], a `Mutex` around the
//!    [`Clients`](room::Clients) table, shared through an `Arc`.
//! 2. **Backpressure.** When one client sends, the server writes to all the
//!    others. If one of them has stopped reading, a plain `write` to it would
//!    block, and the sender (and the whole room behind it) would freeze with
//!    it. So every client gets a bounded queue of outgoing lines and its own
//!    writer thread; a sender only ever *queues*, and a client whose queue
//!    stays full is disconnected. See [`deliver`](outbox::deliver).
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
//! The files, in the order chapter 4 (`docs/04-chat.md`) walks through them:
//!
//! * `main.rs`: this file: the options, binding, and handing each
//!   connection to `serve_client`.
//! * `client.rs`: one client's life: join, read and answer its lines
//!   (`chat`, `answer`), leave, say goodbye (`linger`).
//! * `room.rs`: the shared state: `Room`, a `Mutex` around the
//!   `Clients` table, and the rule every method keeps (lock, copy, unlock,
//!   then deliver).
//! * `outbox.rs`: the writing half: each client's bounded queue, its writer
//!   thread, and `deliver`, where backpressure is handled.
//! * `notices.rs`: joins and leaves, announced in batches by one thread, so
//!   a storm of joins does not cost n² lines.
//! * `protocol.rs`: the protocol as pure functions, no sockets:
//!   `parse_request`, the name rule, and defusing escape sequences.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

mod client;
mod notices;
mod outbox;
mod protocol;
mod room;

use client::serve_client;
use netlessons::cli::Command;
use netlessons::limits::ConnectionCost;
use netlessons::server::Server;
use room::Room;
use std::io;
use std::process::ExitCode;

/// What a client over `--max-conns` is told before it is closed.
const SERVER_FULL: &[u8] = b"! server full\n";

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
