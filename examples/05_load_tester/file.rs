//! `file`: repeated `GET` (or `PUT`) of one file on the file server, after
//! the library's `auth::client_handshake`; MB/s of verified transfers.
//!
//! And `hash`: no network at all, how fast the library's SHA-256 hashes a
//! file, to compare with `sha256sum` and with `file` downloads, which must
//! hash every byte too.

use crate::measure::{Report, Tally};
use crate::{CHUNK, MB, Setup, connect, proc};
use netlessons::auth;
use netlessons::cli::Matches;
use netlessons::connection::Connection;
use netlessons::sha256::{Sha256, to_hex};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Runs the `file` mode and builds its report line.
pub fn run(args: &Matches, setup: Setup) -> io::Result<Report> {
    let rounds = args.positive("--rounds", 3);
    let Some(user) = args.get("--user") else {
        args.fail("file mode needs --user NAME (and the secret in NETLESSONS_SECRET)")
    };
    let secret = match std::env::var("NETLESSONS_SECRET") {
        Ok(s) if !s.is_empty() => s,
        _ => args.fail("file mode needs the secret in the environment: NETLESSONS_SECRET=... 05_load_tester file ..."),
    };
    let verify = !args.flag("--no-verify");
    let (op, name, data) = match (args.get("--get"), args.get("--put")) {
        (Some(name), None) => ("get", name, None),
        (None, Some(name)) => {
            let size = args.size("--size", 64 << 20);
            ("put", name, Some(generated_data(size)))
        }
        _ => args.fail("file mode needs exactly one of --get NAME or --put NAME"),
    };
    // Hash an upload before the clock starts: PUT announces the digest in
    // its header line, so the client must know it before sending a byte.
    let digest = data
        .as_ref()
        .map(|d| to_hex(&netlessons::sha256::sha256(d)));

    let mut tally = Tally::with_capacity(rounds);
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        let result = match &data {
            None => file_get(setup, user, &secret, name, verify),
            Some(data) => file_put(
                setup,
                user,
                &secret,
                name,
                data,
                digest.as_deref().unwrap_or(""),
            ),
        };
        match result {
            Ok(bytes) => tally.record(t.elapsed(), bytes),
            Err(e) => {
                tally.fail(e);
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut line = format!(
        "file op={op} name={name} transfers={} bytes={} errors={} secs={secs:.3} mb_per_s={:.1}",
        tally.latencies.len(),
        tally.bytes,
        tally.errors,
        tally.bytes as f64 / MB / secs,
    );
    if op == "get" {
        let _ = write!(line, " verified={verify}");
    }
    line.push_str(&tally.latency_fields());
    line.push_str(&proc::memory_fields(args));
    Ok(tally.into_report(line))
}

/// Connects and runs the handshake from the library.
fn file_login(setup: Setup, user: &str, secret: &str) -> io::Result<Connection> {
    let mut conn = Connection::new(connect(setup)?, false)?;
    auth::client_handshake(&mut conn, user, secret)?;
    Ok(conn)
}

/// Reads a reply line, turning `ERR reason` into an error.
fn file_reply(conn: &mut Connection) -> io::Result<String> {
    let line = conn.read_text_line(1024)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file server closed the connection",
        )
    })?;
    if line.starts_with("ERR") {
        return Err(io::Error::other(format!("the file server said: {line}")));
    }
    Ok(line)
}

/// Downloads `name` once; returns its size.
///
/// Checking the digest means hashing every byte, and SHA-256 is slower than
/// loopback TCP. Done in line (read a chunk, hash it, read the next) the
/// two would take turns and the time would be their sum. Instead a second
/// thread hashes while this one reads: on two cores the transfer then takes
/// about as long as the hashing alone. A bounded channel connects them, so
/// a reader faster than the hasher waits instead of piling up memory
/// (backpressure), and the buffers travel back to be reused.
///
/// The body is read with `read_some` straight into those 256 KiB buffers,
/// rather than with `read_body`, which hands out the connection's 8 KiB
/// buffer piece by piece: one copy instead of two, and a 32nd of the system
/// calls, which leaves more of the second core to the server.
fn file_get(setup: Setup, user: &str, secret: &str, name: &str, verify: bool) -> io::Result<u64> {
    let mut conn = file_login(setup, user, secret)?;
    conn.send_line(format!("GET {name}"))?;
    let header = file_reply(&mut conn)?;
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected reply {header:?}"),
        )
    };
    let mut words = header.split(' ');
    let (Some("OK"), Some(size), Some(expected), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(bad());
    };
    let size: u64 = size.parse().map_err(|_| bad())?;
    let expected = expected.to_string();

    const BATCH: usize = 256 * 1024;
    // Full buffers go to the hasher with how many bytes they hold; empty
    // ones come back.
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(4);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    let hasher = verify.then(|| {
        thread::spawn(move || {
            let mut hash = Sha256::new();
            for (batch, len) in full_rx {
                hash.update(&batch[..len]);
                let _ = empty_tx.send(batch); // back for reuse
            }
            to_hex(&hash.finish())
        })
    });
    let mut left = size;
    while left > 0 {
        let mut batch = empty_rx.try_recv().unwrap_or_else(|_| vec![0u8; BATCH]);
        let want = usize::try_from(left).map_or(BATCH, |left| left.min(BATCH));
        let mut len = 0;
        while len < want {
            let n = conn.read_some(&mut batch[len..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the server closed after {} of {size} bytes",
                        size - left + len as u64
                    ),
                ));
            }
            len += n;
        }
        left -= len as u64;
        if verify && full_tx.send((batch, len)).is_err() {
            break; // the hasher is gone; its join below says why
        }
    }
    if let Some(hasher) = hasher {
        drop(full_tx); // ends the hasher's loop
        let got = hasher
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))?;
        if got != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "digest mismatch for {name}: the server said {expected}, the bytes hash to {got}"
                ),
            ));
        }
    }
    conn.send_line("QUIT")?;
    conn.flush()?;
    Ok(size)
}

/// Uploads `data` as `name` once; returns its size.
fn file_put(
    setup: Setup,
    user: &str,
    secret: &str,
    name: &str,
    data: &[u8],
    digest: &str,
) -> io::Result<u64> {
    let mut conn = file_login(setup, user, secret)?;
    conn.send_line(format!("PUT {name} {} {digest}", data.len()))?;
    let ready = file_reply(&mut conn)?;
    if ready != "READY" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected READY, got {ready:?}"),
        ));
    }
    for chunk in data.chunks(CHUNK) {
        conn.send_body(chunk)?;
    }
    let done = file_reply(&mut conn)?;
    if !done.starts_with("OK ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected OK, got {done:?}"),
        ));
    }
    conn.send_line("QUIT")?;
    conn.flush()?;
    Ok(data.len() as u64)
}

/// `size` bytes that do not compress or repeat, for uploads: the library's
/// seeded generator, so every run uploads the same bytes.
fn generated_data(size: usize) -> Vec<u8> {
    netlessons::random::Rng::new(0x9e37_79b9_7f4a_7c15).bytes(size)
}

/// Hashes `--file` once, reading it in 1 MiB pieces on this one thread, the
/// way `sha256sum` does, so that the two figures compare like with like.
/// Run it twice: the first run may be reading from the disk, the second
/// reads from the page cache (as `sha256sum` will, right after).
///
/// Two rates come out: `mb_per_s` for the whole job (read and hash, what
/// `sha256sum` does), and `hash_only_mb_per_s` counting only the time spent
/// hashing: the ceiling for anything that must hash every byte, such as a
/// verified download.
pub fn run_hash(args: &Matches, _setup: Setup) -> io::Result<Report> {
    let Some(path) = args.get("--file") else {
        args.fail("hash mode needs --file PATH")
    };
    let mut tally = Tally::default();
    let mut hashing = Duration::ZERO;
    let start = Instant::now();
    let digest = hash_file(path, &mut tally.bytes, &mut hashing).unwrap_or_else(|e| {
        tally.fail(format!("could not read {path}: {e}"));
        String::new()
    });
    let secs = start.elapsed().as_secs_f64();
    let line = format!(
        "hash bytes={} errors={} secs={secs:.3} mb_per_s={:.1} hash_only_mb_per_s={:.1} sha256={digest}",
        tally.bytes,
        tally.errors,
        tally.bytes as f64 / MB / secs,
        tally.bytes as f64 / MB / hashing.as_secs_f64().max(1e-9),
    );
    Ok(tally.into_report(line))
}

fn hash_file(path: &str, bytes: &mut u64, hashing: &mut Duration) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let t = Instant::now();
        hash.update(&buf[..n]);
        *hashing += t.elapsed();
        *bytes += n as u64;
    }
    Ok(to_hex(&hash.finish()))
}
