//! # 03_file_client: the other end of the file server
//!
//! Logs in to `03_file_server` with a user name and secret, then lists,
//! downloads or uploads one file. Every transfer is checked against its
//! SHA-256 digest, and a download is written to a temporary file that only
//! takes the real name once the digest matched.
//!
//! ```text
//! export NETLESSONS_SECRET=…          # printed by the server when it starts
//! cargo run --example 03_file_client -- --user learner list
//! cargo run --example 03_file_client -- --user learner put Cargo.toml
//! cargo run --example 03_file_client -- --user learner get Cargo.toml -o copy.toml
//! ```
//!
//! Chapter 5 (`docs/05-file-transfer.md`) walks through this file.

// Functions stay under about 80 lines (clippy.toml); see README, "For contributors".
#![warn(clippy::too_many_lines)]

use netlessons::auth;
use netlessons::cli::{Command, Matches};
use netlessons::connection::Connection;
use netlessons::durable::TempFile;
use netlessons::framing;
use netlessons::log;
use netlessons::sha256::{Sha256, from_hex, to_hex};
use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Longest reply line we accept (a `LIST` line is at most about 340 bytes).
const MAX_LINE: usize = 4096;

/// The buffer for file bytes: the client, like the server, never holds a
/// whole file in memory.
const CHUNK: usize = 64 * 1024;

/// How long we wait for the server. Before answering a `GET` of a large file
/// it has not seen before, the server hashes it, which can take a while.
const TIMEOUT: Duration = Duration::from_secs(300);

/// What the user asked for, checked before we connect.
enum Task {
    List,
    Get { name: String, output: PathBuf },
    Put { path: PathBuf, name: String },
    Stat { name: String },
    Delete { name: String },
}

fn main() -> ExitCode {
    let args = Command::new(
        "03_file_client",
        "Lists, downloads or uploads files on a 03_file_server, checking every digest.",
    )
    .client_options("the file server", "127.0.0.1:7003")
    .opt("--user", "NAME", "who to log in as", Some("learner"))
    .opt(
        "--secret",
        "SECRET",
        "the user's secret (better: set NETLESSONS_SECRET, which other users cannot see in `ps`)",
        None,
    )
    .opt(
        "--output",
        "PATH",
        "get: where to save the file: a file or a folder (default: NAME, here)",
        None,
    )
    .alias("-o", "--output")
    .opt(
        "--as",
        "NAME",
        "put: the name to store the file under (default: the file's own name)",
        None,
    )
    .positional(
        "COMMAND",
        "list | get NAME | put PATH | stat NAME | delete NAME",
    )
    .after_help(
        "The secret comes from the NETLESSONS_SECRET environment variable (or --secret).\n\
         Examples:\n  \
         03_file_client --user learner list\n  \
         03_file_client --user learner put notes.txt --as notes-v2.txt\n  \
         03_file_client --user learner get notes-v2.txt -o copy.txt",
    )
    .parse_env();

    let task = parse_task(&args);
    let secret = match args
        .get("--secret")
        .map(str::to_string)
        .or_else(|| std::env::var("NETLESSONS_SECRET").ok())
    {
        Some(secret) if !secret.is_empty() => secret,
        _ => args.fail(
            "no secret: set NETLESSONS_SECRET (or pass --secret); \
             a server started without --users prints one for user 'learner'",
        ),
    };
    let addr = args.get("--addr").unwrap_or("127.0.0.1:7003");
    let user = args.get("--user").unwrap_or("learner");
    netlessons::cli::exit_status(run(addr, user, &secret, args.flag("--trace"), &task))
}

/// Turns the positional words and options into a [`Task`], or exits 2.
fn parse_task(args: &Matches) -> Task {
    let words: Vec<&str> = args.positionals().iter().map(String::as_str).collect();
    let output = args.get("--output");
    let store_as = args.get("--as");
    if output.is_some() && words.first() != Some(&"get") {
        args.fail("-o/--output only goes with get");
    }
    if store_as.is_some() && words.first() != Some(&"put") {
        args.fail("--as only goes with put");
    }
    let task = match words.as_slice() {
        ["list"] => Task::List,
        ["get", name] => {
            let mut output = PathBuf::from(output.unwrap_or(name));
            if output.is_dir() {
                output.push(name);
            }
            Task::Get {
                name: name.to_string(),
                output,
            }
        }
        ["put", path] => {
            let path = PathBuf::from(path);
            let name = match store_as {
                Some(name) => name.to_string(),
                None => match path.file_name().and_then(|n| n.to_str()) {
                    Some(name) => name.to_string(),
                    None => args.fail(&format!(
                        "cannot tell a file name from {}: add --as NAME",
                        path.display()
                    )),
                },
            };
            Task::Put { path, name }
        }
        ["stat", name] => Task::Stat {
            name: name.to_string(),
        },
        ["delete", name] => Task::Delete {
            name: name.to_string(),
        },
        [] => args.fail("what should I do? say list, get NAME or put PATH"),
        [command, ..] if ["list", "get", "put", "stat", "delete"].contains(command) => {
            args.fail(&format!("wrong number of arguments for {command}"))
        }
        [command, ..] => args.fail(&format!(
            "unknown command '{command}' (use list, get, put, stat or delete)"
        )),
    };
    let name = match &task {
        Task::Get { name, .. }
        | Task::Put { name, .. }
        | Task::Stat { name }
        | Task::Delete { name } => name,
        Task::List => return task,
    };
    // The server decides, but a name that would break our one-line request
    // (a space, a line break) is better caught here, with a hint.
    if !valid_name(name) {
        log!("error: {}", bad_name_message(name));
        std::process::exit(2);
    }
    task
}

/// The server's name rule, repeated so we can explain it before connecting.
fn valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn bad_name_message(name: &str) -> String {
    format!(
        "{name:?} is not a name the server accepts: use 1-255 letters, digits, '.', '_' or '-', \
         not starting with '.' (for put, choose one with --as NAME)"
    )
}

/// Connects, logs in, does the task, says goodbye.
fn run(addr: &str, user: &str, secret: &str, trace: bool, task: &Task) -> io::Result<()> {
    // A missing local file is better reported before we bother the server.
    if let Task::Put { path, .. } = task {
        check_local_file(path)?;
    }
    let mut conn = Connection::connect(addr, trace)?;
    conn.set_idle_timeout(Some(TIMEOUT))?;
    auth::client_handshake(&mut conn, user, secret).map_err(|e| explain_login_failure(e, user))?;
    match task {
        Task::List => list(&mut conn)?,
        Task::Get { name, output } => get(&mut conn, name, output)?,
        Task::Put { path, name } => put(&mut conn, path, name)?,
        Task::Stat { name } => stat(&mut conn, name)?,
        Task::Delete { name } => delete(&mut conn, name)?,
    }
    // A polite goodbye. The work is done whatever the answer, so errors here
    // do not matter.
    let _ = conn.send_line("QUIT");
    let _ = conn.read_line(MAX_LINE);
    Ok(())
}

/// Adds what to check to the library's handshake errors.
fn explain_login_failure(e: io::Error, user: &str) -> io::Error {
    match e.kind() {
        io::ErrorKind::PermissionDenied if e.to_string().starts_with("access denied") => {
            io::Error::new(
                e.kind(),
                format!(
                    "{e}\n  check --user {user} and NETLESSONS_SECRET: a server started without \
                 --users makes a new secret each time it starts"
                ),
            )
        }
        io::ErrorKind::UnexpectedEof => io::Error::new(
            e.kind(),
            format!(
                "{e} (is this a 03_file_server? a wrong --addr, or an --allow list that excludes you?)"
            ),
        ),
        _ => e,
    }
}

/// Reads one reply line; the server closing instead is an error.
fn reply(conn: &mut Connection) -> io::Result<String> {
    match conn.read_text_line(MAX_LINE)? {
        Some(line) => Ok(line),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection without answering (its log may say why)",
        )),
    }
}

/// Turns an `ERR …` reply (or anything unexpected) into a clear error.
fn refused(line: &str, name: &str) -> io::Error {
    let (kind, text) = match line.strip_prefix("ERR ") {
        Some("no such file") => (
            io::ErrorKind::NotFound,
            format!("the server has no file named {name:?} (try list)"),
        ),
        Some("bad name") => (io::ErrorKind::InvalidInput, bad_name_message(name)),
        Some("too large") => (
            io::ErrorKind::InvalidInput,
            "the file is larger than the server accepts (see its --max-size)".to_string(),
        ),
        Some("digest mismatch") => (
            io::ErrorKind::InvalidData,
            "the server received different bytes than we sent (did the file change while it \
             was being sent?); it stored nothing"
                .to_string(),
        ),
        Some(reason) => (
            io::ErrorKind::Other,
            format!("the server refused: {reason}"),
        ),
        None => (
            io::ErrorKind::InvalidData,
            format!("unexpected reply from the server: {line:?}"),
        ),
    };
    io::Error::new(kind, text)
}

/// Explains a transfer that broke off halfway (the server was stopped, the
/// network failed, the local file shrank), and what was kept: nothing.
fn interrupted(e: io::Error, what: &str, name: &str, done: u64, total: u64) -> io::Error {
    let kept = if what == "upload" {
        "the server keeps nothing of an unfinished upload"
    } else {
        "nothing was saved"
    };
    io::Error::new(
        e.kind(),
        format!(
            "{what} of {name} stopped after {} of {}: {e}; {kept}",
            human(done),
            human(total)
        ),
    )
}

/// Parses `OK <size> <sha256>`, strictly: plain digits, 64 hex characters.
fn parse_ok_size_digest(line: &str) -> Option<(u64, [u8; 32])> {
    let mut words = line.strip_prefix("OK ")?.split(' ');
    let (size, digest) = (words.next()?, words.next()?);
    if words.next().is_some() || size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digest = <[u8; 32]>::try_from(from_hex(digest)?).ok()?;
    Some((size.parse().ok()?, digest))
}

/// `list`: one line per file on stdout, `size  sha256  name`.
fn list(conn: &mut Connection) -> io::Result<()> {
    conn.send_line("LIST")?;
    let header = reply(conn)?;
    let count: usize = header
        .strip_prefix("OK ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| refused(&header, ""))?;
    let mut stdout = io::stdout().lock();
    for _ in 0..count {
        let line = reply(conn)?;
        let mut words = line.splitn(3, ' ');
        let (Some(size), Some(digest), Some(name)) = (words.next(), words.next(), words.next())
        else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad LIST line {line:?}"),
            ));
        };
        writeln!(stdout, "{size:>12}  {digest}  {name}")?;
    }
    if count == 0 && io::stderr().is_terminal() {
        log!("(no files yet: try put PATH)");
    }
    Ok(())
}

/// `get NAME`: download into a temporary file next to `output`, check the
/// digest, then rename it into place. On any failure nothing is left behind
/// and an existing `output` is untouched.
fn get(conn: &mut Connection, name: &str, output: &Path) -> io::Result<()> {
    conn.send_line(format!("GET {name}"))?;
    let header = reply(conn)?;
    let (size, expected) = parse_ok_size_digest(&header).ok_or_else(|| refused(&header, name))?;

    // The download goes into `.NAME.part-<random>` beside the output: in the
    // same folder, because `rename` is only atomic within one file system.
    let temp = download_temp(output)?;
    let mut hasher = Sha256::new();
    let mut progress = Progress::new("get", size);
    {
        let mut out = BufWriter::with_capacity(CHUNK, temp.file());
        // read_body hands us each chunk as it passes: hash it and count it
        // for the progress bar, while the bytes go on into the file.
        let received = conn.read_body(size, &mut out, |chunk| {
            hasher.update(chunk);
            progress.advance(chunk.len());
        });
        if let Err(e) = received.and_then(|()| out.flush()) {
            progress.finish();
            return Err(interrupted(e, "download", name, progress.done, size));
        }
    }
    progress.finish();
    let got = hasher.finish();
    if got != expected {
        // `temp` is deleted when it goes out of scope.
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "digest mismatch: {name} arrived damaged (expected sha256 {}, got {}); nothing was saved",
                to_hex(&expected),
                to_hex(&got)
            ),
        ));
    }
    // Sync, rename over `output`, sync its folder (`netlessons::durable`).
    temp.persist(output)?;
    println!(
        "downloaded {name} to {} ({size} bytes, sha256 {} verified)",
        output.display(),
        to_hex(&got)
    );
    Ok(())
}

/// A temporary file beside `output`, deleted unless persisted: an
/// interrupted or damaged download leaves nothing behind.
fn download_temp(output: &Path) -> io::Result<TempFile> {
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = output
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("download");
    TempFile::create_in(dir, &format!(".{file_name}.part-"))
}

/// `put PATH`: hash the file, announce it, send it, check the server's answer.
fn put(conn: &mut Connection, path: &Path, name: &str) -> io::Result<()> {
    let open_error =
        |e: io::Error| io::Error::new(e.kind(), format!("could not read {}: {e}", path.display()));
    let mut file = File::open(path).map_err(open_error)?;
    // Looked at again now: the file may have changed since `run` checked.
    let size = check_local_file(path)?;
    // The header needs the digest before the first byte of the body, so the
    // file is read twice: once to hash it, once to send it.
    let mut hasher = Sha256::new();
    let mut progress = Progress::new("hashing", size);
    copy_exactly(&mut file, size, |chunk| {
        hasher.update(chunk);
        progress.advance(chunk.len());
        Ok(())
    })?;
    progress.finish();
    let digest = to_hex(&hasher.finish());
    file = File::open(path).map_err(open_error)?;

    conn.send_line(format!("PUT {name} {size} {digest}"))?;
    let ready = reply(conn)?;
    if ready != "READY" {
        // Refused before the body (bad name, too large…): we send nothing.
        return Err(refused(&ready, name));
    }
    let mut progress = Progress::new("put", size);
    let sent = copy_exactly(&mut file, size, |chunk| {
        conn.send_body(chunk)?;
        progress.advance(chunk.len());
        Ok(())
    });
    progress.finish();
    if let Err(e) = sent {
        return Err(interrupted(e, "upload", name, progress.done, size));
    }
    let done = reply(conn)?; // flushes the last of the body first
    match parse_ok_size_digest(&done) {
        Some((n, d)) if n == size && to_hex(&d) == digest => {
            println!(
                "uploaded {} as {name} ({size} bytes, sha256 {digest} verified)",
                path.display()
            );
            Ok(())
        }
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the server confirmed a different size or digest: {done:?}"),
        )),
        None => Err(refused(&done, name)),
    }
}

/// `stat NAME`: size and digest without downloading (chapter 5, exercise 2).
fn stat(conn: &mut Connection, name: &str) -> io::Result<()> {
    conn.send_line(format!("STAT {name}"))?;
    let line = reply(conn)?;
    let (size, digest) = parse_ok_size_digest(&line).ok_or_else(|| refused(&line, name))?;
    println!("{size:>12}  {}  {name}", to_hex(&digest));
    Ok(())
}

/// `delete NAME` (chapter 5, exercise 1).
fn delete(conn: &mut Connection, name: &str) -> io::Result<()> {
    conn.send_line(format!("DELETE {name}"))?;
    let line = reply(conn)?;
    if line != "OK" {
        return Err(refused(&line, name));
    }
    println!("deleted {name}");
    Ok(())
}

/// The size of the file to upload, or a clear error if it cannot be read or
/// is not a file (a folder, say).
fn check_local_file(path: &Path) -> io::Result<u64> {
    let meta = fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("could not read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a file (put sends one file at a time)",
                path.display()
            ),
        ));
    }
    Ok(meta.len())
}

/// Reads exactly `len` bytes of `file` through a fixed buffer, handing each
/// chunk to `each` ([`framing::copy_exact`] does the counting). A file that
/// turns out shorter (it changed since we looked at its size) is an error: we
/// promised the server `len` bytes.
fn copy_exactly(
    file: &mut File,
    len: u64,
    each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    framing::copy_exact(file, len, &mut buf, each).map_err(|e| {
        if framing::is_short_source(&e) {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being sent; try again",
            )
        } else {
            e
        }
    })
}

/// A progress bar on stderr, drawn only when stderr is a terminal: in a pipe
/// or a log file, a hundred redrawn lines would just be noise.
struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    last_drawn: Option<Instant>,
    enabled: bool,
}

impl Progress {
    fn new(label: &'static str, total: u64) -> Progress {
        Progress {
            label,
            total,
            done: 0,
            started: Instant::now(),
            last_drawn: None,
            enabled: io::stderr().is_terminal(),
        }
    }

    fn advance(&mut self, n: usize) {
        self.done += n as u64;
        // Redraw at most ten times a second: drawing costs a system call.
        if self.enabled
            && self
                .last_drawn
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
        {
            self.draw();
        }
    }

    fn finish(&mut self) {
        if self.enabled {
            self.draw();
            log!("");
        }
    }

    fn draw(&mut self) {
        const WIDTH: u64 = 30;
        let fraction = if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        };
        let filled = (fraction * WIDTH as f64) as u64;
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        // `\r` returns to the start of the line, so each drawing overwrites
        // the last; the trailing spaces wipe what a longer one left behind.
        // Drawn with `write!`, not `eprint!`, which would panic if stderr
        // went away mid-transfer.
        let _ = write!(
            io::stderr(),
            "\r{:<7} [{bar}] {:>3.0}%  {} / {}  {}/s   ",
            self.label,
            fraction * 100.0,
            human(self.done),
            human(self.total),
            human((self.done as f64 / secs) as u64),
        );
        self.last_drawn = Some(Instant::now());
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `20.0 MiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
