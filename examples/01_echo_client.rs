//! # 01_echo_client: your first client
//!
//! Connects to an echo server, sends each line you type (or pipe in), and
//! prints each reply. Ends when the input ends.
//!
//! ```text
//! cargo run --example 01_echo_server                   # terminal 1
//! printf 'one\ntwo\n' | cargo run --example 01_echo_client   # terminal 2
//! ```

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

use netlessons::cli::Command;
use netlessons::connection::Connection;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;

/// Longest reply line we accept. Echo replies are as long as what we sent,
/// so this also caps the lines we send.
const MAX_LINE: usize = 1024 * 1024;

fn main() -> ExitCode {
    let args = Command::new(
        "01_echo_client",
        "Sends each line of standard input to an echo server and prints each reply.",
    )
    .client_options("the echo server", "127.0.0.1:7001")
    .parse_env();
    let addr = args.get("--addr").unwrap_or("127.0.0.1:7001");
    netlessons::cli::exit_status(run(addr, args.flag("--trace")))
}

fn run(addr: &str, trace: bool) -> io::Result<()> {
    // connect() does the TCP three-way handshake; if nothing listens on that
    // port, it fails at once with "connection refused".
    let mut conn = Connection::connect(addr, trace)?;
    let stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let mut answered = false;
    for line in stdin.split(b'\n') {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("input line longer than {MAX_LINE} bytes"),
            ));
        }
        conn.send_line(&line)?;
        // read_line flushes our line out first, then waits for the reply. The
        // reply may arrive in pieces; read_line keeps reading until the "\n".
        let reply = match conn.read_line(MAX_LINE) {
            Ok(Some(reply)) => reply,
            // The server hung up instead of answering: an end of stream, or
            // a reset (it closed with our line unread, so its system answered
            // our bytes with RST). Both mean the same to a learner.
            Ok(None) => return Err(closed(answered)),
            Err(e) if is_hang_up(&e) => return Err(closed(answered)),
            Err(e) => return Err(e),
        };
        answered = true;
        stdout.write_all(&reply)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
    }
    Ok(())
}

/// Is `e` the peer hanging up (rather than, say, a timeout)?
fn is_hang_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// The error for a server that closed the connection instead of replying.
/// Before any reply, the usual cause is the server's allowlist: it accepts
/// the connection, sees an address it does not admit, and closes at once.
fn closed(answered: bool) -> io::Error {
    let message = if answered {
        "the server closed the connection before replying (its log says why)"
    } else {
        "the server closed the connection without answering: are you outside its --allow list? \
         (the server's log says why)"
    };
    io::Error::new(io::ErrorKind::UnexpectedEof, message)
}
