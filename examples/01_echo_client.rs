//! # 01_echo_client: your first client
//!
//! Connects to an echo server, sends each line you type (or pipe in), and
//! prints each reply. Ends when the input ends.
//!
//! ```text
//! cargo run --example 01_echo_server                   # terminal 1
//! printf 'one\ntwo\n' | cargo run --example 01_echo_client   # terminal 2
//! ```

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
    .opt(
        "--addr",
        "HOST:PORT",
        "the echo server",
        Some("127.0.0.1:7001"),
    )
    .flag(
        "--trace",
        "show every message that crosses the wire on stderr",
    )
    .parse_env();
    let addr = args.get("--addr").unwrap_or("127.0.0.1:7001");
    match run(addr, args.flag("--trace")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: &str, trace: bool) -> io::Result<()> {
    // connect() does the TCP three-way handshake; if nothing listens on that
    // port, it fails at once with "connection refused".
    let mut conn = Connection::connect(addr, trace)?;
    let stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
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
        let reply = conn.read_line(MAX_LINE)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before replying",
            )
        })?;
        stdout.write_all(&reply)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
    }
    Ok(())
}
