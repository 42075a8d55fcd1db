//! # 01_echo_server: your first server
//!
//! Every byte a client sends comes straight back (RFC 862, the "echo"
//! service). It is the smallest useful server, which makes it the best place
//! to see the life of one: **bind** an address, **listen**, **accept** a
//! connection, **read** and **write** until the client hangs up.
//!
//! Run it, then talk to it from another terminal:
//!
//! ```text
//! cargo run --example 01_echo_server
//! printf 'hi\n' | nc -N 127.0.0.1 7001        # prints: hi
//! ```
//!
//! Chapter 2 (`docs/02-echo.md`) walks through this file.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

use netlessons::cli::Command;
use netlessons::connection::Connection;
use netlessons::limits::ConnectionCost;
use netlessons::server::Server;
use std::io;
use std::process::ExitCode;

fn main() -> ExitCode {
    netlessons::cli::exit_status(run())
}

/// Binds, prints the address, and serves until stopped. An error here (the
/// port is taken, say) goes back to `main`, which prints it.
fn run() -> io::Result<()> {
    let args = Command::new(
        "01_echo_server",
        "An echo server: every byte a client sends is sent straight back.",
    )
    .server_options("127.0.0.1:7001", Some(300))
    .after_help("Try it, from another terminal:\n  printf 'hi\\n' | nc -N 127.0.0.1 7001")
    .parse_env();

    // Step 1: bind. This claims the address (IP + port) for us; if another
    // program holds it, this is where we find out.
    // An echo connection holds one thread and its socket, nothing else: the
    // runner works out the safe connection cap from this.
    let mut config = args.server_config("echo", None);
    config.cost = ConnectionCost {
        threads: 1,
        files: 1,
    };
    let server = Server::bind(config)?;
    // The one line on stdout: tests and scripts read the real address from
    // it (with --addr 127.0.0.1:0 the OS picks the port).
    println!("listening on {}", server.local_addr());

    // Step 2: accept connections forever, one thread each, running `echo`.
    server.serve(echo)
}

/// Talks to one client: copy everything it sends back to it.
fn echo(mut conn: Connection) -> io::Result<()> {
    let mut buf = vec![0u8; FIRST_BUFFER];
    loop {
        // A read returns whatever has arrived so far: maybe one byte, maybe
        // many messages glued together. TCP keeps no message boundaries,
        // and echo needs none: we send back exactly the bytes we got.
        let n = conn.read_some(&mut buf)?;
        if n == 0 {
            // 0 bytes means end of stream: the client closed its sending
            // side. Returning drops the connection, which closes ours.
            return Ok(());
        }
        // Send it now: the client is probably waiting for this reply before
        // it sends more. `send_now` writes straight from our buffer to the
        // socket, one system call, with no copy into a write buffer (and so
        // no write buffer to allocate for each of ten thousand clients).
        conn.send_now(&buf[..n])?;
        grow_if_filled(&mut buf, n);
    }
}

/// The first read buffer. Most messages are small, and whatever one
/// connection holds, ten thousand connections hold ten thousand times: 512
/// bytes each is 5 MB for ten thousand, where 64 KiB each would be 640 MB
/// (chapter 8 measures what a connection costs).
const FIRST_BUFFER: usize = 512;
/// The buffer grows (doubling) while reads fill it, up to this size, so a
/// client streaming megabytes soon gets big reads and few system calls.
/// 64 KiB is what the kernel hands over in one go on loopback; larger reads
/// rarely return more.
const MAX_BUFFER: usize = 64 * 1024;

/// Doubles `buf` (up to [`MAX_BUFFER`]) when the last read filled it: a
/// speed detail, not part of the echo lesson. An idle connection keeps a
/// small buffer; a client streaming megabytes soon gets big reads and few
/// system calls. Chapter 8 (`docs/08-measuring.md`) measures what each
/// connection's buffer costs and why it starts small.
fn grow_if_filled(buf: &mut Vec<u8>, filled: usize) {
    if filled == buf.len() && buf.len() < MAX_BUFFER {
        buf.resize(buf.len() * 2, 0);
    }
}
