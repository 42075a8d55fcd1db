//! `c10k`: 10,000 echo connections opened by 8 threads as fast as each can
//! (each proves itself with one round trip), all held open, then all
//! answering once more after a hold. `--server-pid` reports the server's
//! memory while it holds them all.

use crate::echo::{payload, round_trip};
use crate::measure::{self, Gate, Report, Tally};
use crate::{Setup, connect, is_out_of_files, proc};
use netlessons::cli::Matches;
use std::fmt::Write as _;
use std::io;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Runs the mode and builds its report line.
pub fn run(args: &Matches, setup: Setup) -> io::Result<Report> {
    let conns = args.positive("--conns", 10_000);
    let threads = args.positive("--threads", 8).min(conns);
    let hold = Duration::from_secs(args.number("--hold", 5) as u64);
    let size = args.size("--size", 64);
    let payload = Arc::new(payload(size));

    warn_if_few_files(conns);

    // Two meeting points: all connections open; the hold is over. Every
    // thread passes each gate whatever happened to it, so one failure
    // cannot leave the others waiting forever.
    let opened = Gate::new(threads + 1);
    let release = Gate::new(threads + 1);
    let (o, r) = (Arc::clone(&opened), Arc::clone(&release));
    // Each thread's connections come back to us at the end, so that they are
    // all still open when we read the server's memory.
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let held_by_workers = Arc::clone(&held);
    let start = Instant::now();
    let gates = [Arc::clone(&opened), Arc::clone(&release)];
    let pool = measure::start_workers(threads, &gates, move |i| {
        // Share the connections out: the first `conns % threads` threads
        // take one more.
        let mine = conns / threads + usize::from(i < conns % threads);
        c10k_worker(setup, &payload, mine, &o, &r, &held_by_workers)
    });
    let called_off = opened.wait().is_none();
    let open_secs = start.elapsed().as_secs_f64();
    let during_hold = if called_off {
        None
    } else {
        proc::server_memory(args)
    };
    if !called_off {
        thread::sleep(hold);
    }
    release.wait();
    let answer_start = Instant::now();
    let mut tally = measure::join(pool)?;
    let answer_secs = answer_start.elapsed().as_secs_f64();
    let after = proc::server_memory(args);
    let open = held.lock().unwrap_or_else(|p| p.into_inner()).len();
    drop(held);

    // The storm is the work the server had to do: accept and answer every
    // connection, then answer each again. The hold is not part of it.
    let storm_secs = open_secs + answer_secs;
    let mut line = format!(
        "c10k conns={conns} threads={threads} size={size} held={open} requests={} errors={} \
         open_secs={open_secs:.3} answer_secs={answer_secs:.3} storm_secs={storm_secs:.3} \
         req_per_s={:.0}",
        tally.latencies.len(),
        tally.errors,
        tally.latencies.len() as f64 / storm_secs,
    );
    line.push_str(&tally.latency_fields());
    line.push_str(&memory_fields(during_hold, after));
    Ok(tally.into_report(line))
}

/// Each connection is one file descriptor here (and one in the server).
/// Say so before we start rather than fail at connection 1,021.
fn warn_if_few_files(conns: usize) {
    if let Some(limit) = proc::open_file_limit()
        && limit < conns as u64 + 32
    {
        netlessons::log!(
            "warning: this process may open only {limit} files, fewer than {conns} connections \
             need; raise it with `ulimit -n 20000` (here and in the server's shell)"
        );
    }
}

/// The server's memory while it held every connection, and after the last
/// round trips (`--server-pid`): ` hold_rss_mib=… hold_threads=…
/// server_rss_mib=… server_hwm_mib=…`.
fn memory_fields(during_hold: Option<proc::Memory>, after: Option<proc::Memory>) -> String {
    let mut fields = String::new();
    if let Some(m) = during_hold {
        let _ = write!(
            fields,
            " hold_rss_mib={:.1} hold_threads={}",
            m.rss_mib, m.threads
        );
    }
    if let Some(m) = after {
        let _ = write!(
            fields,
            " server_rss_mib={:.1} server_hwm_mib={:.1}",
            m.rss_mib, m.hwm_mib
        );
    }
    fields
}

/// Opens `count` connections one after another, each proving itself with a
/// round trip; waits; then does one more round trip on each.
fn c10k_worker(
    setup: Setup,
    payload: &[u8],
    count: usize,
    opened: &Gate,
    release: &Gate,
    held: &Mutex<Vec<TcpStream>>,
) -> Tally {
    let mut tally = Tally::with_capacity(2 * count);
    let mut reply = vec![0u8; payload.len()];
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        let result = connect(setup).and_then(|mut stream| {
            round_trip(&mut stream, payload, &mut reply)?;
            Ok(stream)
        });
        match result {
            Ok(stream) => {
                tally.record(t.elapsed(), payload.len() as u64);
                streams.push(stream);
            }
            Err(e) => {
                let out_of_fds = is_out_of_files(&e);
                tally.fail(e);
                if out_of_fds {
                    break; // every further attempt would fail the same way
                }
            }
        }
    }
    if opened.wait().is_none() || release.wait().is_none() {
        return tally; // called off: the pool reports why
    }
    for stream in &mut streams {
        let t = Instant::now();
        match round_trip(stream, payload, &mut reply) {
            Ok(()) => tally.record(t.elapsed(), payload.len() as u64),
            Err(e) => tally.fail(e),
        }
    }
    held.lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(streams);
    tally
}
