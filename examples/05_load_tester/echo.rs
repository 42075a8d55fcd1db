//! `echo`: N connections, each doing M round trips of S bytes (send, then
//! wait for the same bytes back). Latency is the time of one round trip.
//!
//! Each connection has its own client thread, unless `--per-thread K` gives
//! each thread K of them (see [`echo_worker`]); `--server-pid` adds the
//! server's CPU time per request.

use crate::measure::{self, Gate, Report, Tally};
use crate::{MB, Setup, connect, proc};
use netlessons::cli::Matches;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the mode and builds its report line.
pub fn run(args: &Matches, setup: Setup) -> io::Result<Report> {
    let conns = args.positive("--conns", 32);
    let rounds = args.positive("--rounds", 1000);
    let size = args.size("--size", 64);
    let warmup = args.number("--warmup", 100);
    let per_thread = args.positive("--per-thread", 1).min(conns);
    // With --duration, every connection runs until the time is up: the
    // count of round trips is then the result rather than the setting.
    let plan = match args.seconds("--duration") {
        Some(time) => Plan::For(time),
        None => Plan::Rounds(rounds),
    };
    let payload = Arc::new(payload(size));
    let threads = conns.div_ceil(per_thread);

    // Every worker thread plus this one meet at the gate: each worker first
    // connects and warms up, and only then do all start measuring together
    // (see `measure::Gate` for why).
    let gate = Gate::new(threads + 1);
    let worker_gate = Arc::clone(&gate);
    let pool = measure::start_workers(threads, &[Arc::clone(&gate)], move |i| {
        // Share the connections out: the last thread may have fewer.
        let mine = per_thread.min(conns - i * per_thread);
        echo_worker(setup, &payload, mine, plan, warmup, &worker_gate)
    });
    let start = gate.wait();
    let cpu_before = proc::server_cpu(args);
    let mut tally = measure::join(pool)?;
    let Some(start) = start else {
        return Err(io::Error::other("the run was called off"));
    };
    let secs = start.elapsed().as_secs_f64();
    let cpu_after = proc::server_cpu(args);

    let requests = tally.latencies.len();
    let mut line = format!(
        "echo conns={conns} {} size={size}{} requests={requests} errors={} secs={secs:.3} \
         req_per_s={:.0} mb_per_s={:.2}",
        match plan {
            Plan::Rounds(rounds) => format!("rounds={rounds}"),
            Plan::For(time) => format!("duration={}", time.as_secs()),
        },
        if per_thread > 1 {
            format!(" per_thread={per_thread}")
        } else {
            String::new()
        },
        tally.errors,
        requests as f64 / secs,
        tally.bytes as f64 / MB / secs,
    );
    line.push_str(&tally.latency_fields());
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        // The server's own CPU time per request: unlike requests/s, this
        // does not depend on how much CPU the load tester took for itself.
        // (The window runs from the barrier until every worker has
        // finished, so it also holds the server's work on the closing
        // connections: a little, next to thousands of requests.)
        let per_request = after.saturating_sub(before).as_secs_f64() / requests.max(1) as f64;
        let _ = write!(line, " server_cpu_us_per_req={:.2}", per_request * 1e6);
    }
    line.push_str(&proc::memory_fields(args));
    Ok(tally.into_report(line))
}

/// How long each connection runs (echo, http).
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// This many round trips.
    Rounds(usize),
    /// As many round trips as fit in this time.
    For(Duration),
}

/// One echo worker thread with `count` connections: connect, warm up, wait
/// for everyone, then the planned timed round trips.
///
/// With one connection (the default) this is the simplest client there is:
/// send, wait for the reply, repeat. With several (`--per-thread`) the
/// thread drives them in lock-step: it sends one request on each, then
/// reads each reply in turn. Every connection still has exactly one request
/// in flight, so the server sees the same load, but the client thread
/// sleeps once per *batch* instead of once per request: by the time it has
/// read the first reply, the others have usually arrived. That is how
/// load generators such as `wrk` keep their own cost down (with an event
/// loop rather than lock-step), and on a machine where client and server
/// share the cores, a cheaper client leaves more of them to the server.
/// Each latency runs from the moment its request was sent to the moment
/// its whole reply was read, so waiting behind the batch is counted.
fn echo_worker(
    setup: Setup,
    payload: &[u8],
    count: usize,
    plan: Plan,
    warmup: usize,
    gate: &Gate,
) -> Tally {
    // For a timed run we cannot know the count; 100,000 entries (1.6 MB)
    // per connection cover a few seconds, and past that the buffer grows,
    // rarely.
    let mut tally = Tally::with_capacity(
        count
            * match plan {
                Plan::Rounds(rounds) => rounds,
                Plan::For(_) => 100_000,
            },
    );
    let mut reply = vec![0u8; payload.len()];
    let mut sent = vec![Instant::now(); count];
    let ready = (0..count)
        .map(|_| connect(setup))
        .collect::<io::Result<Vec<TcpStream>>>()
        .and_then(|mut streams| {
            for _ in 0..warmup {
                batch_round_trip(&mut streams, payload, &mut reply, &mut sent, |_| {})?;
            }
            Ok(streams)
        });
    // Every worker must reach the gate, even one that failed to connect:
    // the others (and the clock) are waiting for all of them.
    let Some(start) = gate.wait() else {
        return tally; // called off: the pool reports why
    };
    let mut streams = match ready {
        Ok(streams) => streams,
        Err(e) => {
            tally.fail(e);
            tally.errors += count as u64 - 1; // none of this thread's ran
            return tally;
        }
    };
    loop {
        let done = match plan {
            Plan::Rounds(rounds) => tally.latencies.len() >= rounds * count,
            Plan::For(time) => start.elapsed() >= time,
        };
        if done {
            break;
        }
        let finished = batch_round_trip(&mut streams, payload, &mut reply, &mut sent, |t| {
            tally.record(t, payload.len() as u64);
        });
        if let Err(e) = finished {
            // One broken connection ends its thread's share of the run. The
            // others stop with it, and count as errors too, so that
            // `errors` is always the number of connections that did not
            // finish.
            tally.fail(e);
            tally.errors += count as u64 - 1;
            break;
        }
    }
    tally
}

/// One request on every stream, then every reply; `done` gets the latency
/// of each round trip as it completes.
fn batch_round_trip(
    streams: &mut [TcpStream],
    payload: &[u8],
    reply: &mut [u8],
    sent: &mut [Instant],
    mut done: impl FnMut(Duration),
) -> io::Result<()> {
    for (stream, sent) in streams.iter_mut().zip(sent.iter_mut()) {
        *sent = Instant::now();
        stream.write_all(payload)?;
    }
    for (stream, sent) in streams.iter_mut().zip(sent.iter()) {
        read_reply(stream, payload, reply)?;
        done(sent.elapsed());
    }
    Ok(())
}

/// Sends `payload`, reads the same number of bytes back, and checks them.
pub fn round_trip(stream: &mut TcpStream, payload: &[u8], reply: &mut [u8]) -> io::Result<()> {
    stream.write_all(payload)?;
    read_reply(stream, payload, reply)
}

/// Reads the echo of `payload` into `reply` and checks it.
///
/// `read_exact` matters: the reply may arrive in several pieces, and a
/// single `read` could return only the first.
fn read_reply(stream: &mut TcpStream, payload: &[u8], reply: &mut [u8]) -> io::Result<()> {
    stream.read_exact(reply).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                e.kind(),
                "the server closed the connection before echoing everything",
            )
        } else {
            e
        }
    })?;
    if reply != payload {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the reply differs from what was sent",
        ));
    }
    Ok(())
}

/// `size` printable bytes ending in a newline, so that a server that echoes
/// whole lines (not only a byte-for-byte echo) can be measured too.
pub fn payload(size: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    if let Some(last) = bytes.last_mut() {
        *last = b'\n';
    }
    bytes
}
