//! `echo`: N connections, each doing M round trips of S bytes (send, then
//! wait for the same bytes back). Latency is the time of one round trip.
//!
//! Each connection has its own client thread, unless `--per-thread K` gives
//! each thread K of them (see `measure::closed_loop`); `--server-pid` adds the
//! server's CPU time per request.

use crate::measure::{self, Gate, Plan, Report, Tally};
use crate::{MB, Setup, connect};
use netlessons::cli::Matches;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the mode and builds its report line.
pub fn run(args: &Matches, setup: Setup) -> io::Result<Report> {
    let conns = args.positive("--conns", 32);
    let plan = Plan::from_args(args, 1000);
    let size = args.size("--size", 64);
    let warmup = args.number("--warmup", 100);
    let per_thread = args.positive("--per-thread", 1).min(conns);
    let payload = Arc::new(payload(size));
    let threads = conns.div_ceil(per_thread);

    // Every worker connects and warms up, then all start together (see
    // `measure::Gate` for why).
    let run = measure::measure_closed(args, threads, move |i, gate| {
        // Share the connections out: the last thread may have fewer.
        let mine = per_thread.min(conns - i * per_thread);
        echo_worker(setup, &payload, mine, plan, warmup, gate)
    })?;
    let requests = run.tally.latencies.len();
    let line = format!(
        "echo conns={conns} {} size={size}{} requests={requests} errors={} secs={secs:.3} \
         req_per_s={:.0} mb_per_s={:.2}",
        plan.field(),
        if per_thread > 1 {
            format!(" per_thread={per_thread}")
        } else {
            String::new()
        },
        run.tally.errors,
        requests as f64 / run.secs,
        run.tally.bytes as f64 / MB / run.secs,
        secs = run.secs,
    );
    Ok(run.into_report(line, args))
}

/// One echo worker thread with `count` connections, in lock-step batches
/// when `count` is more than 1 (see `measure::closed_loop`): each round
/// sends the payload on every connection and reads every echo back.
fn echo_worker(
    setup: Setup,
    payload: &[u8],
    count: usize,
    plan: Plan,
    warmup: usize,
    gate: &Gate,
) -> Tally {
    let mut reply = vec![0u8; payload.len()];
    let mut sent = vec![Instant::now(); count];
    let open = || connect(setup);
    measure::closed_loop(count, plan, warmup, gate, open, |streams, tally, timed| {
        batch_round_trip(streams, payload, &mut reply, &mut sent, |t| {
            if timed {
                tally.record(t, payload.len() as u64);
            }
        })
    })
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
