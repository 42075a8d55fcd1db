//! # 02_chat_client: talk and listen at the same time
//!
//! A chat client has two jobs that cannot wait for each other: send what you
//! type, and print what the others say *while you are still typing*. The
//! echo client could wait for each reply; here a message may arrive at any
//! moment, or never. So this client uses two threads:
//!
//! * the **reader** thread waits on the socket and prints each line as it arrives;
//! * the **main** thread waits on the keyboard (standard input) and sends each line.
//!
//! ```text
//! cargo run --example 02_chat_server                   # terminal 1
//! cargo run --example 02_chat_client                   # terminals 2 and 3
//! printf '/who\n' | cargo run --example 02_chat_client # a one-shot question
//! ```
//!
//! `/quit` or the end of input (Ctrl-D) leaves the chat. Chapter 4
//! (`docs/04-chat.md`) walks through this file.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

use netlessons::cli::Command;
use netlessons::connection::Connection;
use netlessons::log;
use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

/// The server's limit on a line, in bytes. Longer lines are not sent: the
/// server would answer `! line too long` and hang up.
const MAX_LINE: usize = 1024;
/// Longest line we accept from the server. Its lines are a name plus at
/// most [`MAX_LINE`] bytes of text, so this leaves plenty of room.
const MAX_INCOMING: usize = 4 * 1024;
/// After we say `/quit`, how long we wait for the server to close.
const QUIT_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args = Command::new(
        "02_chat_client",
        "Chat from the terminal: each line you type is sent to the chat server, \
         and what the others say is printed as it arrives.",
    )
    .client_options("the chat server", "127.0.0.1:7002")
    .after_help(
        "Type a line to say it to everyone. Commands: /nick NAME, /who, /msg NAME text,\n\
         /me text, /topic [TEXT], /help, /quit. The end of input (Ctrl-D) quits too.",
    )
    .parse_env();
    let addr = args.get("--addr").unwrap_or("127.0.0.1:7002");
    netlessons::cli::exit_status(run(addr, args.flag("--trace")))
}

fn run(addr: &str, trace: bool) -> io::Result<ExitCode> {
    let conn = Connection::connect(addr, trace)?;
    // Two `Connection`s on one socket: the reader thread reads through one,
    // this thread writes through the other. Each has its own buffer, so they
    // never get in each other's way (and both are traced).
    let mut sender = Connection::from_shared(conn.shared_stream(), trace)?;
    if io::stdin().is_terminal() {
        log!("connected to {addr}; type /help for the commands, /quit or Ctrl-D to leave");
    }

    // `quitting` tells the reader thread that a closing server is expected
    // (we asked for it), not news to report.
    let quitting = Arc::new(AtomicBool::new(false));
    let (ended_tx, ended) = mpsc::channel();
    let reader_quitting = Arc::clone(&quitting);
    thread::Builder::new()
        .name("reader".into())
        .spawn(move || {
            let outcome = print_incoming(conn);
            if !reader_quitting.load(Ordering::SeqCst) {
                // The server went away while we were still chatting. The main
                // thread is blocked reading the keyboard, and std has no way to
                // interrupt that read, so this thread ends the program itself.
                match outcome {
                    Ok(()) => log!("the server closed the connection"),
                    Err(e) => log!("lost the connection to the server: {e}"),
                }
                std::process::exit(1);
            }
            let _ = ended_tx.send(outcome);
        })?;

    send_typed_lines(&mut sender, &quitting)?;

    // We have said /quit. The server answers "* bye" and closes; the reader
    // prints everything up to that, then ends. (Also closing our sending side
    // means even a server that ignored /quit sees end-of-stream and closes.)
    let _ = sender.shutdown_write();
    match ended.recv_timeout(QUIT_GRACE) {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => Err(e),
        Err(RecvTimeoutError::Timeout) => {
            log!("the server did not close the connection after /quit; leaving anyway");
            Ok(ExitCode::SUCCESS)
        }
        Err(RecvTimeoutError::Disconnected) => Ok(ExitCode::FAILURE), // the reader panicked
    }
}

/// The main thread's job: send each line typed (or piped in) until `/quit`
/// or the end of input, which sends `/quit` for you.
fn send_typed_lines(sender: &mut Connection, quitting: &AtomicBool) -> io::Result<()> {
    for line in io::stdin().lock().split(b'\n') {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > MAX_LINE {
            log!(
                "not sent: the line is {} bytes, the limit is {MAX_LINE}",
                line.len()
            );
            continue;
        }
        let is_quit = line == b"/quit" || line.starts_with(b"/quit ");
        if is_quit {
            quitting.store(true, Ordering::SeqCst);
        }
        sender.send_line(&line)?;
        sender.flush()?;
        if is_quit {
            return Ok(());
        }
    }
    // End of input: leave politely.
    quitting.store(true, Ordering::SeqCst);
    sender.send_line("/quit")?;
    sender.flush()
}

/// The reader thread's job: print every line from the server as it arrives,
/// until the server closes the connection.
fn print_incoming(mut conn: Connection) -> io::Result<()> {
    let stdout = io::stdout();
    while let Some(line) = conn.read_line(MAX_INCOMING)? {
        let mut out = stdout.lock();
        out.write_all(printable(&line).as_bytes())?;
        out.write_all(b"\n")?;
        // Flush every line: the reader wants to see it now, not when a
        // buffer fills.
        out.flush()?;
    }
    Ok(())
}

/// The line as text safe to print on a terminal: invalid UTF-8 and control
/// characters (escape sequences could repaint the screen) become `�`.
fn printable(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}
