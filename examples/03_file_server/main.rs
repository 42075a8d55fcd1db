//! # 03_file_server: moving files safely
//!
//! A file server for one folder. Every connection must first prove it knows a
//! user's secret (the [`netlessons::auth`] handshake); then it may `LIST` the
//! folder, `GET` a file and `PUT` one. Files are binary, so their bytes are
//! not lines: each body is *counted* by the line before it, and each carries a
//! SHA-256 digest so that both ends can tell a damaged transfer from a good one.
//!
//! ```text
//! S: AUTH HMAC-SHA256 <server nonce>            the handshake (chapter 6)
//! C: AUTH learner <client nonce> <proof>
//! S: OK <server proof>
//! C: PUT notes.txt 12 5891b5b522d5df08…         name, size, digest
//! S: READY
//! C: <12 raw bytes>
//! S: OK 12 5891b5b522d5df08…                    stored, synced, checked
//! C: GET notes.txt
//! S: OK 12 5891b5b522d5df08…
//! S: <12 raw bytes>
//! C: QUIT
//! S: BYE
//! ```
//!
//! Run it with no flags: it makes a `./files` folder and a random secret for
//! user `learner`, and prints the client command to copy:
//!
//! ```text
//! cargo run --example 03_file_server
//! ```
//!
//! The files, in the order a command meets them:
//!
//! * `main.rs`: this file: the options, the folder and the users, then
//!   `serve_client`: the handshake, and one command line at a time.
//! * `request.rs`: a command line taken apart (`parse_request`), and the
//!   name rule (`valid_name`), the server's whole defence against path tricks.
//! * `transfer.rs`: each command carried out: `list`, `get`, `put` (the
//!   upload stored through a temporary file, synced, checked, renamed),
//!   `stat` and `delete`.
//! * `store.rs`: the files on disk: `open_served` (a regular file inside the
//!   root, never a symlink out of it) and the `DigestCache`.
//!
//! Chapter 5 (`docs/05-file-transfer.md`) walks through the transfers and the
//! safe way to store an upload; chapter 6 (`docs/06-who-may-connect.md`) the
//! handshake and the allowlist.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

mod request;
mod store;
mod transfer;

use netlessons::auth::{self, LoginThrottle, Users};
use netlessons::cli::Command;
use netlessons::connection::Connection;
use netlessons::durable::sync_dir;
use netlessons::framing;
use netlessons::log;
use netlessons::server::{Server, reachable};
use request::{Request, parse_request};
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use store::DigestCache;
use transfer::{delete, get, list, put, stat};

/// Where the server listens unless `--addr` says otherwise.
const DEFAULT_ADDR: &str = "127.0.0.1:7003";

/// The longest command line we read. The longest real one is a `PUT` with a
/// 255-byte name, a 20-digit size and a 64-character digest (about 350
/// bytes); the margin lets an over-long *name* get the precise `ERR bad name`.
const MAX_LINE: usize = 4096;

/// Uploads are written to a file whose name starts with this. The leading dot
/// makes it a name no client can ask for (see [`valid_name`]) and hides it
/// from `LIST`; the fixed prefix lets the next start find leftovers.
const TEMP_PREFIX: &str = ".upload-";

/// The buffer for moving file bytes. Every transfer goes through a buffer of
/// this size, never through a buffer the size of the file, so a 1 GiB upload
/// costs the server 64 KiB of memory, not 1 GiB.
const CHUNK: usize = 64 * 1024;

/// A client has this long to finish the handshake (or the idle timeout, if
/// that is shorter). Someone who connects and says nothing is not yet anyone
/// we owe five minutes of a thread.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the connection threads share. It is read-only apart from the
/// digest cache, which has its own lock.
struct Shared {
    root: PathBuf,
    users: Users,
    max_size: u64,
    /// Login failures per client address, shared by every connection.
    logins: LoginThrottle,
    idle_timeout: Option<Duration>,
    digests: DigestCache,
}

fn main() -> ExitCode {
    netlessons::cli::exit_status(run())
}

/// Checks the folder and the users, binds, and serves until stopped. Any
/// error goes back to `main`, the one place that prints it.
fn run() -> io::Result<()> {
    let args = command().parse_env();
    let root = PathBuf::from(args.get("--root").unwrap_or("files"));
    let max_size: u64 = args.value("--max-size");
    let logins = LoginThrottle::with_limits(
        Duration::from_millis(args.value("--deny-delay-ms")),
        args.value("--free-failures"),
        auth::FAILURE_WINDOW,
        auth::MAX_ANSWER_WAIT,
    );
    let config = args.server_config("files", Some(b"ERR server full\n"));

    // Prepare the folder and the users before binding, so that a mistake in
    // either stops the server before anyone can connect.
    let stale = prepare_root(&root)?;
    // Without --users: user `learner` with a new random secret, printed below.
    let (users, demo_secret) = Users::load_or_demo(args.get("--users"), "learner")?;

    let idle_timeout = config.idle_timeout;
    let server = Server::bind(config)?;
    println!("listening on {}", server.local_addr());

    // Everything else a person should read goes to stderr.
    let shown_root = fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
    log!("serving files in {}", shown_root.display());
    if stale > 0 {
        log!("removed {stale} unfinished upload(s) left by an earlier run");
    }
    match &demo_secret {
        Some(secret) => print_demo_login(server.local_addr(), secret),
        None => log!("users: {}", users.names().collect::<Vec<_>>().join(", ")),
    }

    let shared = Arc::new(Shared {
        root,
        users,
        max_size,
        logins,
        idle_timeout,
        digests: DigestCache::default(),
    });
    server.serve(move |conn| serve_client(conn, &shared))
}

/// The options: the ones every server shares, the folder, the users file,
/// the upload limit, and two hidden knobs for tests.
fn command() -> Command {
    let default_deny_ms = auth::DEFAULT_DENY_DELAY.as_millis().to_string();
    Command::new(
        "03_file_server",
        "A file server: log in with a shared secret, then LIST, GET and PUT files in one folder.",
    )
    .server_options(DEFAULT_ADDR, Some(300))
    .opt("--root", "DIR", "the folder to serve (created if missing)", Some("files"))
    .opt(
        "--users",
        "FILE",
        "users and secrets, one name:secret per line (default: user 'learner' with a new random secret)",
        None,
    )
    .opt("--max-size", "BYTES", "refuse uploads larger than this", Some("1073741824"))
    // Tests shorten the pause before DENIED so that a dozen wrong logins do
    // not cost them seconds; the default is never weakened.
    .hidden_opt("--deny-delay-ms", Some(&default_deny_ms))
    // Failures an address may have per minute before its answers slow down
    // (tests that send thousands of bad logins on purpose raise it).
    .hidden_opt("--free-failures", Some(&auth::FREE_FAILURES.to_string()))
    .after_help(
        "Started without --users, it prints a secret and the exact client command to copy.\n\
         Users file example:\n  # name:secret\n  ada:correct-horse-battery-staple",
    )
}

/// Creates the root folder if needed and removes uploads that an earlier run
/// never finished (it was killed mid-upload). Returns how many it removed.
///
/// This assumes one server per folder: a second server started on the same
/// root would delete the first one's uploads in progress. (A real server
/// would take a lock file to make sure.)
fn prepare_root(root: &Path) -> io::Result<usize> {
    fs::create_dir_all(root).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("could not create the folder {}: {e}", root.display()),
        )
    })?;
    let mut removed = 0;
    let entries = fs::read_dir(root).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("could not read the folder {}: {e}", root.display()),
        )
    })?;
    for entry in entries {
        let entry = entry?;
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX));
        if is_temp && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(root)?;
    }
    Ok(removed)
}

/// Prints the demo secret and the exact client command, ready to copy.
fn print_demo_login(local: SocketAddr, secret: &str) {
    // A server bound to 0.0.0.0 or [::] is reached through a real address;
    // on this machine, loopback of the same family is the one that works.
    let addr = reachable(local);
    log!(
        "no --users file: user 'learner' has the secret {secret} (a new one at every start)\n\
         try it from another terminal:\n  \
         NETLESSONS_SECRET={secret} cargo run --example 03_file_client -- --addr {addr} --user learner list\n  \
         (or put PATH, get NAME instead of list)"
    );
}

/// Talks to one client: the handshake, then commands until `QUIT`.
fn serve_client(mut conn: Connection, shared: &Shared) -> io::Result<()> {
    // Step 1: who are you? Nothing else is possible before this succeeds.
    let login_timeout = shared
        .idle_timeout
        .map_or(HANDSHAKE_TIMEOUT, |t| t.min(HANDSHAKE_TIMEOUT));
    conn.set_idle_timeout(Some(login_timeout))?;
    let Some(user) = auth::serve_handshake(&mut conn, &shared.users, &shared.logins)? else {
        // Either DENIED was sent (unknown user, wrong secret, malformed
        // line: the handshake does not tell us which, on purpose) or the
        // client left without answering.
        activity(&conn, "-", "no login: denied, or left without answering");
        return Ok(()); // dropping `conn` closes the connection
    };
    conn.set_idle_timeout(shared.idle_timeout)?;
    activity(&conn, &user, "logged in");

    // Step 2: one command line at a time, each answered before the next is read.
    loop {
        let line = match conn.read_line(MAX_LINE) {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()), // the client hung up between commands
            Err(e) if framing::is_too_long(&e) => {
                // No command is this long. Whatever it was, the rest of it is
                // still unread, so we could not find the next command anyway.
                conn.send_line("ERR bad request")?;
                conn.flush()?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match parse_request(&line) {
            Ok(Request::List) => list(&mut conn, shared, &user)?,
            Ok(Request::Get(name)) => get(&mut conn, shared, &user, name)?,
            Ok(Request::Put { name, size, digest }) => {
                put(&mut conn, shared, &user, name, size, digest)?
            }
            Ok(Request::Stat(name)) => stat(&mut conn, shared, name)?,
            Ok(Request::Delete(name)) => delete(&mut conn, shared, &user, name)?,
            Ok(Request::Quit) => {
                conn.send_line("BYE")?;
                return conn.flush();
            }
            Err(reason) => conn.send_line(format!("ERR {reason}"))?,
        }
        // The reply goes out now; read_line would also flush before waiting.
        conn.flush()?;
    }
}

/// One line of activity on stderr: who did what.
fn activity(conn: &Connection, user: &str, what: &str) {
    log!("{} {user} {what}", conn.peer_addr());
}
