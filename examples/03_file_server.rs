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
//! Chapter 5 (`docs/05-file-transfer.md`) walks through the transfers and the
//! safe way to store an upload; chapter 6 (`docs/06-who-may-connect.md`) the
//! handshake and the allowlist.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

use netlessons::auth::{self, LoginThrottle, Users};
use netlessons::cli::Command;
use netlessons::connection::Connection;
use netlessons::durable::{TempFile, sync_dir};
use netlessons::framing;
use netlessons::log;
use netlessons::server::{Server, reachable};
use netlessons::sha256::{Sha256, from_hex, to_hex};
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

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
    let default_deny_ms = auth::DEFAULT_DENY_DELAY.as_millis().to_string();
    let args = Command::new(
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
    .parse_env();

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
    let (users, demo_secret) = match args.get("--users") {
        Some(path) => {
            let users = Users::load(Path::new(path))?;
            if users.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("users file {path} lists no users, so nobody could log in"),
                ));
            }
            (users, None)
        }
        None => {
            let (users, secret) = demo_users()
                .map_err(|e| io::Error::new(e.kind(), format!("could not make a secret: {e}")))?;
            (users, Some(secret))
        }
    };

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

/// The demo login: user `learner` with a fresh random secret.
fn demo_users() -> io::Result<(Users, String)> {
    let secret = auth::new_secret()?;
    let mut users = Users::new();
    users
        .insert("learner", &secret)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok((users, secret))
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

/// A command line, checked and taken apart.
#[derive(Debug)]
enum Request<'a> {
    List,
    Get(&'a str),
    Put {
        name: &'a str,
        size: u64,
        digest: [u8; 32],
    },
    /// Exercise 2 of chapter 5: `STAT <name>` → `OK <size> <sha256>`, no body.
    Stat(&'a str),
    /// Exercise 1 of chapter 5: `DELETE <name>` → `OK`.
    Delete(&'a str),
    Quit,
}

/// Parses one command line. The error is the reason for the `ERR` reply.
///
/// The line is bytes, not text: a client may send anything, and a name with
/// a NUL or invalid UTF-8 in it must meet the same `bad name` as `../x`.
fn parse_request(line: &[u8]) -> Result<Request<'_>, &'static str> {
    let (command, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], Some(&line[i + 1..])),
        None => (line, None),
    };
    // Commands are upper case in the contract; accepting `get` too is kinder
    // to someone typing into `nc`.
    let command = command.to_ascii_uppercase();
    match (command.as_slice(), rest) {
        (b"LIST", None) => Ok(Request::List),
        (b"QUIT", None) => Ok(Request::Quit),
        (b"LIST" | b"QUIT", Some(_)) => Err("bad request"),
        // For a single-name command, everything after the first space is the
        // name, so `GET my file` is refused as a bad *name*, which it is.
        (b"GET", Some(name)) => Ok(Request::Get(checked_name(name)?)),
        (b"STAT", Some(name)) => Ok(Request::Stat(checked_name(name)?)),
        (b"DELETE", Some(name)) => Ok(Request::Delete(checked_name(name)?)),
        (b"PUT", Some(rest)) => {
            // PUT <name> <size> <sha256>: take the last two words from the
            // right; whatever is left is the name (and may be a bad one).
            let mut words = rest.rsplitn(3, |&b| b == b' ');
            let (Some(digest), Some(size), Some(name)) = (words.next(), words.next(), words.next())
            else {
                return Err("bad request");
            };
            let name = checked_name(name)?;
            let size = parse_size(size)?;
            let digest = std::str::from_utf8(digest)
                .ok()
                .and_then(from_hex)
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or("bad request")?;
            Ok(Request::Put { name, size, digest })
        }
        (b"GET" | b"STAT" | b"DELETE" | b"PUT", None) => Err("bad request"),
        _ => Err("unknown command"),
    }
}

/// A size is plain decimal digits: no sign, no spaces, no `0x`. (Rust's
/// `u64::from_str` would accept a leading `+`, so we check the digits first.)
fn parse_size(text: &[u8]) -> Result<u64, &'static str> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err("bad request");
    }
    // Only digits are left, so the one way to fail is a number too big for
    // u64, which is certainly more than we would store.
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or("too large")
}

/// The name rule: 1 to 255 bytes of `A-Z a-z 0-9 . _ -`, not starting with `.`.
///
/// This one check is the server's whole defence against path tricks. With no
/// `/` (nor `\`) allowed, a name can only ever mean a file directly inside the
/// root: `../x` and `/etc/passwd` are simply not names. Refusing a leading dot
/// rules out `.` and `..`, hidden files, and our own temporaries. 255 is the
/// longest file name Linux and macOS allow. An *allowlist* of characters is
/// much safer than a blocklist of dangerous ones: nobody has to think of NUL,
/// `\r`, Unicode look-alikes or Windows' `:`.
fn valid_name(name: &[u8]) -> bool {
    (1..=255).contains(&name.len())
        && name[0] != b'.'
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// [`valid_name`], returning the name as text (it is ASCII once it passes).
fn checked_name(name: &[u8]) -> Result<&str, &'static str> {
    if !valid_name(name) {
        return Err("bad name");
    }
    std::str::from_utf8(name).map_err(|_| "bad name")
}

/// `LIST` → `OK <n>`, then one `<size> <sha256> <name>` line per file, sorted.
fn list(conn: &mut Connection, shared: &Shared, user: &str) -> io::Result<()> {
    let mut names = Vec::new();
    for entry in fs::read_dir(&shared.root)? {
        // File names on disk need not be UTF-8 or valid for us (someone may
        // have copied files in by hand); we list only the ones a client
        // could GET, which also hides our temporaries.
        if let Ok(name) = entry?.file_name().into_string() {
            if valid_name(name.as_bytes()) {
                names.push(name);
            }
        }
    }
    names.sort(); // byte order, the same on every system
    let mut lines = Vec::with_capacity(names.len());
    for name in &names {
        // A folder, a symlink or a file deleted meanwhile is not listed.
        if let Some((file, meta)) = open_served(&shared.root, name)? {
            let digest = shared.digests.digest(name, &file, &meta)?;
            lines.push(format!("{} {} {name}", meta.len(), to_hex(&digest)));
        }
    }
    shared.digests.keep_only(&names);
    conn.send_line(format!("OK {}", lines.len()))?;
    for line in &lines {
        conn.send_line(line)?;
    }
    activity(conn, user, &format!("listed {} file(s)", lines.len()));
    Ok(())
}

/// `GET <name>` → `OK <size> <sha256>` and the bytes, or `ERR no such file`.
fn get(conn: &mut Connection, shared: &Shared, user: &str, name: &str) -> io::Result<()> {
    let Some((mut file, meta)) = open_served(&shared.root, name)? else {
        return conn.send_line("ERR no such file");
    };
    // The header carries the digest, so we must know it before the first
    // byte goes out. Hashing costs one pass over the file; the cache saves
    // that pass on every later GET of the same, unchanged file.
    let digest = shared.digests.digest(name, &file, &meta)?;
    let size = meta.len();
    conn.send_line(format!("OK {size} {}", to_hex(&digest)))?;

    // Now exactly `size` bytes, a buffer at a time. We read from the file we
    // opened (and hashed): if someone renames a new upload over the name
    // meanwhile, this client still gets the old file whole, never a mix.
    let mut buf = vec![0u8; CHUNK];
    framing::copy_exact(&mut file, size, &mut buf, |chunk| conn.send_body(chunk)).map_err(|e| {
        if framing::is_short_source(&e) {
            // The file shrank under us (someone edited it in place). We
            // promised `size` bytes and cannot keep the promise: hanging up
            // is the only honest answer; the client sees a short body.
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name} shrank while being sent; closing the connection"),
            )
        } else {
            e
        }
    })?;
    activity(conn, user, &format!("sent {name} ({size} bytes)"));
    Ok(())
}

/// `PUT <name> <size> <sha256>` → `READY`, the bytes, then `OK <size> <sha256>`.
///
/// The upload is written to a temporary file, synced, checked and only then
/// renamed over `name`. So at every moment `name` is either the old file or
/// the complete new one; a client that vanishes, a wrong digest or a server
/// killed halfway leaves nothing behind under `name`.
fn put(
    conn: &mut Connection,
    shared: &Shared,
    user: &str,
    name: &str,
    size: u64,
    digest: [u8; 32],
) -> io::Result<()> {
    // Refuse what we can *before* READY: the client then sends no body, and
    // we do not have to read (and throw away) a gigabyte to say no.
    if size > shared.max_size {
        return conn.send_line("ERR too large");
    }
    let target = shared.root.join(name);
    if fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
        return conn.send_line("ERR bad name"); // a folder holds that name
    }
    // The temporary sits in the root itself: `rename` is atomic only within
    // one file system. Its name starts with `.`, so LIST never shows it.
    let temp = TempFile::create_in(&shared.root, TEMP_PREFIX)?;
    conn.send_line("READY")?;

    // Receive the body straight into the temporary file, hashing each chunk
    // on its way past. `read_body` stops after exactly `size` bytes: what
    // follows is the client's next command, not part of this file.
    //
    // A disk can fill up half-way through. Then the rest of the body is
    // still on its way, and the client will read our answer only after it
    // has sent it all; so `DiskSink` notes the failure, throws the rest
    // away, and the client gets `ERR disk full` with its connection still in
    // step (its next command is read as a command, not as file bytes).
    let mut hasher = Sha256::new();
    let mut sink = DiskSink::new(temp.file());
    let mut out = BufWriter::with_capacity(CHUNK, &mut sink);
    conn.read_body(size, &mut out, |chunk| hasher.update(chunk))
        .map_err(|e| io::Error::new(e.kind(), format!("upload of {name} abandoned: {e}")))?;
    out.flush()?;
    drop(out);
    if let Some(e) = sink.failed {
        // `temp` is dropped on return, which deletes the partial file.
        return refuse_upload(conn, user, name, e);
    }

    if hasher.finish() != digest {
        // `temp` is dropped here, which deletes it: the wrong bytes are never
        // visible, and an older file of the same name is untouched.
        drop(temp);
        activity(conn, user, &format!("refused {name}: digest mismatch"));
        return conn.send_line("ERR digest mismatch");
    }

    // Durability, in the only order that works (`netlessons::durable`):
    // sync the file, rename it over the name in one atomic step, sync the
    // folder so the rename is on disk too. Only after all three may we say OK.
    // (A file system that allocates late, such as ext4 or XFS, may report a
    // full disk only here, when the file is synced.)
    let stored = match temp.persist(&target) {
        Ok(stored) => stored,
        Err(e) if is_disk_full(&e) => return refuse_upload(conn, user, name, e),
        Err(e) => return Err(e),
    };
    // We hashed every byte on the way in, so the first GET need not hash
    // again. (The metadata is taken after the rename, which changes ctime.)
    shared.digests.remember(name, &stored.metadata()?, digest);

    conn.send_line(format!("OK {size} {}", to_hex(&digest)))?;
    activity(conn, user, &format!("stored {name} ({size} bytes)"));
    Ok(())
}

/// Where an upload's bytes go: the temporary file, until a write fails.
/// After that it keeps accepting (and dropping) bytes, so that the body can
/// still be read to its end, and remembers the first error.
struct DiskSink<'a> {
    file: &'a File,
    failed: Option<io::Error>,
}

impl<'a> DiskSink<'a> {
    fn new(file: &'a File) -> DiskSink<'a> {
        DiskSink { file, failed: None }
    }
}

impl Write for DiskSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.is_none() {
            match self.file.write_all(buf) {
                Ok(()) => {}
                // Only a full disk is survivable here; any other error
                // (the disk is failing, say) ends the upload as before.
                Err(e) if is_disk_full(&e) => self.failed = Some(e),
                Err(e) => return Err(e),
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A write failed for want of room: the disk is full (`ENOSPC`), a quota is
/// used up (`EDQUOT`), or the file would pass the size this process may
/// write (`EFBIG`, `ulimit -f`).
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

/// Answers an upload that could not be stored for want of room, and logs it.
/// The caller drops the temporary file, which deletes it.
fn refuse_upload(conn: &mut Connection, user: &str, name: &str, e: io::Error) -> io::Result<()> {
    activity(conn, user, &format!("refused {name}: disk full ({e})"));
    conn.send_line("ERR disk full")
}

/// `STAT <name>` → `OK <size> <sha256>` without the body (exercise 2).
fn stat(conn: &mut Connection, shared: &Shared, name: &str) -> io::Result<()> {
    match open_served(&shared.root, name)? {
        Some((file, meta)) => {
            let digest = shared.digests.digest(name, &file, &meta)?;
            conn.send_line(format!("OK {} {}", meta.len(), to_hex(&digest)))
        }
        None => conn.send_line("ERR no such file"),
    }
}

/// `DELETE <name>` → `OK`, or `ERR no such file` (exercise 1).
fn delete(conn: &mut Connection, shared: &Shared, user: &str, name: &str) -> io::Result<()> {
    let path = shared.root.join(name);
    // Only what GET would serve can be deleted: a regular file, not a folder
    // or a symlink (`symlink_metadata` looks at the link, not its target).
    let is_file = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
    if !is_file {
        return conn.send_line("ERR no such file");
    }
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return conn.send_line("ERR no such file"),
        Err(e) => return Err(e),
    }
    sync_dir(&shared.root)?;
    shared.digests.forget(name);
    activity(conn, user, &format!("deleted {name}"));
    conn.send_line("OK")
}

/// Opens `root/name` for reading if it is a regular file *inside* the root.
///
/// A symlink could point anywhere (`notes.txt -> /etc/shadow`), and `File::open`
/// would follow it. So we look at the name itself with `symlink_metadata`
/// (which does not follow links) and serve only a regular file; then, after
/// opening, we check that what we opened is that same file (same device and
/// inode), in case the name was swapped for a link between the two steps.
fn open_served(root: &Path, name: &str) -> io::Result<Option<(File, Metadata)>> {
    let path = root.join(name);
    let at_name = match fs::symlink_metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !at_name.file_type().is_file() {
        return Ok(None); // a symlink, a folder, a device…: not ours to serve
    }
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let opened = file.metadata()?;
    if !same_file(&at_name, &opened) {
        return Ok(None);
    }
    Ok(Some((file, opened)))
}

/// Are two metadata of the same file? On Unix, the same device and inode.
#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Elsewhere std exposes no stable file identity: the weaker check is that
/// both are regular files of the same size and modification time.
#[cfg(not(unix))]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    b.is_file() && a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// Remembers each file's digest, so that a file is hashed once, not on every
/// `GET` and `LIST`.
///
/// An entry is trusted only while the file looks exactly as it did when it
/// was hashed: same size, modification time and (on Unix) inode and change
/// time. Git's index uses the same trick to avoid re-reading unchanged
/// files. Our own uploads never change a file in place (they rename a new
/// file over it, which makes a new inode), so only an edit by hand could
/// fool it, and that edit would also change the times.
#[derive(Default)]
struct DigestCache {
    entries: Mutex<HashMap<String, (Stamp, [u8; 32])>>,
}

/// What a file looks like from the outside: if any of this changed, the
/// content may have changed too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Inode and change time (`ctime`, which no program can set back).
    #[cfg(unix)]
    identity: (u64, u64, i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            identity: (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl DigestCache {
    /// The digest of `file` (open as `name`), from the cache or by reading it.
    fn digest(&self, name: &str, file: &File, meta: &Metadata) -> io::Result<[u8; 32]> {
        let stamp = Stamp::of(meta);
        if let Some((known, digest)) = self.lock().get(name) {
            if *known == stamp {
                return Ok(*digest);
            }
        }
        // Hash outside the lock: a large file takes seconds, and other
        // clients must not wait for it.
        let digest = hash_file(file, meta.len())?;
        self.lock().insert(name.to_string(), (stamp, digest));
        Ok(digest)
    }

    /// Records the digest of a file we just stored (we hashed it on arrival).
    fn remember(&self, name: &str, meta: &Metadata, digest: [u8; 32]) {
        self.lock()
            .insert(name.to_string(), (Stamp::of(meta), digest));
    }

    /// Drops the entry of a deleted file.
    fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Drops entries of files no longer in the folder, so the cache cannot grow without end.
    fn keep_only(&self, names: &[String]) {
        self.lock()
            .retain(|name, _| names.binary_search(name).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Stamp, [u8; 32])>> {
        // A panic while holding the lock cannot leave a half-written entry
        // (each change is one insert or remove), so a poisoned lock is fine.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hashes exactly `len` bytes of `file` through a fixed buffer, then rewinds
/// it so the caller can send it from the start.
fn hash_file(mut file: &File, len: u64) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    framing::copy_exact(&mut file, len, &mut buf, |chunk| {
        hasher.update(chunk);
        Ok(())
    })
    .map_err(|e| {
        if framing::is_short_source(&e) {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a file shrank while being hashed",
            )
        } else {
            e
        }
    })?;
    file.rewind()?;
    Ok(hasher.finish())
}

/// One line of activity on stderr: who did what.
fn activity(conn: &Connection, user: &str, what: &str) {
    log!("{} {user} {what}", conn.peer_addr());
}
