//! # 07_camera_server: one socket, one thread, every camera
//!
//! Speed cameras send their reports (a photo, the licence plate, the speed)
//! to this server over **UDP**. There is no connection and no `accept`: one
//! socket receives the datagrams of every camera, and one thread handles
//! them one at a time. Each datagram says which report it belongs to, so the
//! server keeps a table of the reports in progress instead of a thread per
//! client.
//!
//! ```text
//! camera                                   server
//! HELLO  report 1f3a… total 170  ────────▶  knows the camera? checks the tag
//!                                ◀────────  ACK  base 0 (nothing held yet)
//! DATA   0/170 … 31/170          ────────▶  (a window of 32 chunks in flight)
//!                                ◀────────  ACK  base 12, bitmap 0110…
//! DATA   12/170 (resent)         ────────▶
//! …                                          all 170 held, SHA-256 right,
//!                                ◀────────  DONE (stored and synced)
//! ```
//!
//! The datagram format (and its signature, the tag) is
//! [`netlessons::datagram`]. Read the files in this order:
//!
//! 1. `main.rs` (this file): the flags, the socket, and the receive loop;
//! 2. `reports.rs`: what the server does with each kind of datagram, in
//!    the order it checks them, and the replies;
//! 3. `partial.rs`: a report in progress (its chunks, its ACK) and the limits;
//! 4. `store.rs`: the reports on disk, durable and stored once.
//!
//! Run it with no flags: it makes a `./camera-reports` folder and a random
//! secret for camera `demo`, and prints the client command to copy:
//!
//! ```text
//! cargo run --example 07_camera_server
//! ```
//!
//! Chapter 12 (`docs/12-datagrams.md`) walks through it.

#![warn(clippy::too_many_lines)]

mod partial;
mod reports;
mod store;

use netlessons::auth::Users;
use netlessons::cli::{self, Command, Matches};
use netlessons::datagram::Dropper;
use netlessons::log;
use netlessons::server::reachable;
use netlessons::subnet::Allowlist;
use partial::Limits;
use reports::{Reports, Settings};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use store::Store;

/// Where the server listens unless `--addr` says otherwise.
const DEFAULT_ADDR: &str = "127.0.0.1:7007";

/// The receive buffer for one datagram. The format never needs more than
/// 1,240 bytes, but a datagram longer than the buffer is silently *cut* by
/// `recv_from`, and a cut datagram would look shorter than it was. With room
/// for the largest UDP datagram there is (65,507 bytes of payload over
/// IPv4), every datagram is seen whole, and an oversized one is dropped for
/// its real length.
const RECV_BUFFER: usize = 65_536;

/// How often the loop wakes up when nothing arrives, to expire old reports.
const TICK: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let args = Command::new(
        "07_camera_server",
        "Receives speed camera reports (a photo and its details) over UDP and stores them.",
    )
    .opt(
        "--addr",
        "HOST:PORT",
        "UDP address to listen on (port 0: any free port)",
        Some(DEFAULT_ADDR),
    )
    .opt(
        "--allow",
        "CIDR[,CIDR...]",
        "who may send datagrams (default: the local networks only)",
        None,
    )
    .opt("--store", "DIR", "where reports are stored (created if missing)", Some("camera-reports"))
    .opt(
        "--users",
        "FILE",
        "cameras and secrets, one name:secret per line (default: camera 'demo' with a new random secret)",
        None,
    )
    .opt("--max-size", "BYTES", "refuse photos larger than this", Some("8388608"))
    .opt("--drop", "PERCENT", "throw away this share of the datagrams we send (to watch recovery)", Some("0"))
    .opt("--seed", "N", "the seed that chooses which datagrams --drop throws away", Some("1"))
    .flag("--trace", "show every datagram that arrives or leaves on stderr")
    // Test knobs, never weaker defaults: a shorter expiry for the expiry
    // test, and a pause after each new report that plays a server too busy
    // to read its socket (the chapter's lost-burst demonstration).
    .hidden_opt("--expire-ms", Some("30000"))
    .hidden_opt("--pause-after-hello-ms", Some("0"))
    .after_help(
        "Started without --users, it prints a secret and the exact client command to copy.\n\
         Users file example:\n  # camera:secret\n  north-gate:correct-horse-battery-staple",
    )
    .parse_env();
    cli::exit_status(run(&args))
}

/// Everything after the flags: the store, the cameras, the socket, then the
/// receive loop, which runs until the process is killed.
fn run(args: &Matches) -> io::Result<()> {
    let store_dir = PathBuf::from(args.get("--store").unwrap_or("camera-reports"));
    let allow = args
        .parse_value::<Allowlist>("--allow")
        .unwrap_or_else(Allowlist::local_networks);
    let drop_percent: f64 = args.value("--drop");
    if !(0.0..=100.0).contains(&drop_percent) {
        args.fail("--drop takes a percentage from 0 to 100");
    }
    let limits = Limits {
        max_size: args.value("--max-size"),
        expire: Duration::from_millis(args.value("--expire-ms")),
        ..Limits::default()
    };
    let pause = Duration::from_millis(args.value("--pause-after-hello-ms"));

    // Prepare the store and the cameras before binding, so a mistake in
    // either stops the server before any camera can send.
    let (store, stale) = Store::open(&store_dir)?;
    // Without --users: one camera `demo` with a new random secret, printed below.
    let (users, demo_secret) = Users::load_or_demo(args.get("--users"), "demo")?;

    let addr = args.get("--addr").unwrap_or(DEFAULT_ADDR);
    let socket = UdpSocket::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("could not listen on {addr} (UDP): {e}")))?;
    let local = socket.local_addr()?;
    // The contract's first line, flushed at once (std's stdout is
    // line-buffered, so the newline sends it).
    println!("listening on {local}");

    let shown = std::fs::canonicalize(&store_dir).unwrap_or_else(|_| store_dir.clone());
    log!("storing reports in {}", shown.display());
    if stale > 0 {
        log!("removed {stale} unfinished file(s) left by an earlier run");
    }
    match &demo_secret {
        Some(secret) => print_demo_command(local, secret),
        None => log!("cameras: {}", users.names().collect::<Vec<_>>().join(", ")),
    }

    let settings = Settings {
        users,
        allow,
        store,
        limits,
        dropper: Dropper::new(drop_percent, args.value("--seed")),
        trace: args.flag("--trace"),
        pause_after_hello: pause,
    };
    let mut reports = Reports::new(socket, settings);
    serve(&mut reports)
}

/// The whole server: receive one datagram, handle it, repeat.
///
/// Compare this with the TCP servers of the earlier chapters: there, `accept`
/// gives one socket per client and a thread reads each. Here there is one
/// socket, and `recv_from` returns the next datagram *from anyone*, with the
/// address it came from. The address is all that ties one datagram to the
/// next, so [`Reports`] keys its table by it.
fn serve(reports: &mut Reports) -> io::Result<()> {
    let mut buf = vec![0u8; RECV_BUFFER];
    // Wake up at least once a TICK even when no datagram arrives, so that a
    // report abandoned by its camera expires on time.
    reports.socket().set_read_timeout(Some(TICK))?;
    loop {
        match reports.socket().recv_from(&mut buf) {
            Ok((len, from)) => reports.handle(&buf[..len], from),
            // The timeout: nothing arrived during a TICK.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // Some systems report an ICMP "port unreachable" (caused by a
            // reply we sent to a camera that has gone) on the next receive.
            // It concerns a datagram already sent, not this socket: go on.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Anything else (out of memory, say) is logged, and we back
                // off a little instead of spinning on the same error.
                log!("receive failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        reports.tick();
    }
}

/// Prints the demo secret and the exact client command, ready to copy.
fn print_demo_command(local: SocketAddr, secret: &str) {
    // A server bound to 0.0.0.0 or [::] is reached through loopback here.
    let addr = reachable(local);
    log!(
        "no --users file: camera 'demo' has the secret {secret} (a new one at every start)\n\
         try it from another terminal (any file will do as the photo):\n  \
         NETLESSONS_SECRET={secret} cargo run --example 07_camera_client -- --addr {addr} --camera demo --plate 'AB 123' --speed 87 Cargo.toml"
    );
}
