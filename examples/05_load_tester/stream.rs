//! `stream`: one connection streams S bytes through an echo server while a
//! second thread reads them back: raw throughput, no round trips.

use crate::measure::{Report, Tally};
use crate::{CHUNK, MB, Setup, connect, proc};
use netlessons::cli::Matches;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

/// Runs the mode and builds its report line.
pub fn run(args: &Matches, setup: Setup) -> io::Result<Report> {
    let total = args.size("--size", 1 << 30) as u64;
    let mut tally = Tally::default();
    let start = Instant::now();
    match stream_once(setup, total) {
        Ok(()) => tally.bytes = total,
        Err(e) => tally.fail(e),
    }
    let secs = start.elapsed().as_secs_f64();
    let line = format!(
        "stream bytes={total} errors={} secs={secs:.3} mb_per_s={:.1}{}",
        tally.errors,
        tally.bytes as f64 / MB / secs,
        proc::memory_fields(args),
    );
    Ok(tally.into_report(line))
}

/// Writes `total` bytes from one thread while this one reads the echo.
///
/// Two threads are not optional: if we wrote everything first, the echoed
/// bytes would fill our receive buffer, the server would block writing them
/// and stop reading, our writes would block too, and both sides would wait
/// for each other forever (a deadlock).
fn stream_once(setup: Setup, total: u64) -> io::Result<()> {
    let stream = connect(setup)?;
    let mut writer = stream.try_clone()?;
    // The pattern, twice over, so that any 64 KiB window of the stream can be
    // checked against one slice of it without wrapping around.
    let pattern: Vec<u8> = (0..2 * CHUNK).map(|i| (i % CHUNK % 251) as u8).collect();
    let pattern = Arc::new(pattern);
    let to_send = Arc::clone(&pattern);
    let sender = thread::spawn(move || -> io::Result<()> {
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            writer.write_all(&to_send[..n])?;
            left -= n as u64;
        }
        // Half-close: "that was everything". An echo server then finishes
        // echoing and closes, and our reads see the end.
        writer.shutdown(Shutdown::Write)
    });
    let mut reader = stream;
    let mut buf = vec![0u8; CHUNK];
    let mut got: u64 = 0;
    let result = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        // Sent byte k was (k % CHUNK) % 251; CHUNK-sized writes restart the
        // pattern, so position `got` in the stream is pattern[got % CHUNK].
        let offset = (got % CHUNK as u64) as usize;
        if buf[..n] != pattern[offset..offset + n] {
            break Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("echoed bytes differ from what was sent, near byte {got}"),
            ));
        }
        got += n as u64;
        if got > total {
            break Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more bytes came back than were sent",
            ));
        }
    };
    // If reading failed, unblock the sender (it may be stuck in a write).
    if result.is_err() {
        let _ = reader.shutdown(Shutdown::Both);
    }
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the sending thread panicked")));
    result?;
    sent?;
    if got < total {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the server closed after echoing {got} of {total} bytes"),
        ));
    }
    Ok(())
}
