//! How the load tester measures, whatever the mode: read this file first.
//!
//! Three techniques make the numbers honest (chapter 8, "Measuring"):
//!
//! 1. **A common start** ([`Gate`]): every worker connects and warms up
//!    first, then all wait at the gate and start measuring *together*.
//! 2. **A tally per worker** ([`Tally`]): each thread keeps its latencies in
//!    its own buffer, merged only at the end, so measuring never takes a
//!    shared lock (we would measure the lock).
//! 3. **Percentiles, not the mean** ([`percentile`]): the mean hides the
//!    slow requests that someone waited for; p50, p99 and max show them.
//!    [`histogram`] draws the whole distribution (`--histogram`).
//!
//! Two modes, `echo` and `http`, run a *closed loop*: each connection has
//! one request in flight and sends the next only after the answer.
//! [`closed_loop`] is that loop, for any kind of connection, and
//! [`measure_closed`] runs it on every worker thread at once and ends the
//! report line the same way for both.

use crate::proc;
use netlessons::cli::Matches;
use std::fmt::{self, Write as _};
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The stack for each client thread. Our workers keep their buffers on the
/// heap, so a small stack is enough even for hundreds of threads.
const CLIENT_STACK: usize = 256 * 1024;

/// What a mode prints: one line, plus the count and first of its errors.
pub struct Report {
    pub line: String,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Every latency, sorted, for `--histogram`.
    pub latencies: Vec<Duration>,
}

/// The start line all workers wait at: like `std::sync::Barrier`, but the
/// last to arrive reads the clock once for everyone, and the start can be
/// called off.
///
/// Why wait at all: first connections are slow (the server starts a thread,
/// caches are cold, the CPU may still be at a low clock). Without a common
/// start the first threads would run alone against an idle server and the
/// last ones would finish alone, and neither is the load we claim to
/// measure. One clock reading for everyone, because each thread reading its
/// own could differ by a scheduling delay, and a run "for 1 s" could then
/// measure 0.99 s.
///
/// Why it can be called off: if a worker thread cannot even be started (the
/// system is out of threads), the ones already waiting would wait forever;
/// [`run_workers`] calls the start off instead, and the error goes up to
/// `main`.
pub struct Gate {
    parties: usize,
    state: Mutex<GateState>,
    changed: Condvar,
}

struct GateState {
    arrived: usize,
    start: Option<Instant>,
    called_off: bool,
}

impl Gate {
    /// A gate that opens when `parties` threads wait at it.
    pub fn new(parties: usize) -> Arc<Gate> {
        Arc::new(Gate {
            parties,
            state: Mutex::new(GateState {
                arrived: 0,
                start: None,
                called_off: false,
            }),
            changed: Condvar::new(),
        })
    }

    /// Waits for everyone; returns the common start time, or `None` if the
    /// run was called off.
    pub fn wait(&self) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.arrived += 1;
        if state.arrived >= self.parties && state.start.is_none() {
            state.start = Some(Instant::now());
            self.changed.notify_all();
        }
        while state.start.is_none() && !state.called_off {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.start
    }

    /// Releases everyone waiting (and every later arrival) with `None`.
    fn call_off(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.start.is_none() {
            state.called_off = true;
        }
        self.changed.notify_all();
    }
}

/// What one worker thread collects. Each worker has its own, so measuring
/// never takes a lock shared with the others: a shared, locked list would
/// make every thread wait for every other, and we would measure the lock.
#[derive(Debug, Default)]
pub struct Tally {
    /// One entry per completed operation (round trip, delivery, transfer).
    pub latencies: Vec<Duration>,
    /// Payload bytes moved.
    pub bytes: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    /// A tally with room for `n` latencies, reserved before the clock starts
    /// so that growing the buffer never lands inside a measurement.
    pub fn with_capacity(n: usize) -> Tally {
        Tally {
            latencies: Vec::with_capacity(n),
            ..Tally::default()
        }
    }

    /// Counts one error, keeping the first one's text for the report.
    pub fn fail(&mut self, e: impl fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    /// Records one completed operation that moved `bytes` payload bytes.
    pub fn record(&mut self, latency: Duration, bytes: u64) {
        self.latencies.push(latency);
        self.bytes += bytes;
    }

    /// Adds another worker's tally to this one.
    pub fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// ` p50_ms=… p90_ms=… p99_ms=… max_ms=…` for the report line.
    pub fn latency_fields(&mut self) -> String {
        // Sorting once at the end is cheap next to the run itself, and exact
        // (no histogram buckets to round into).
        self.latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            " p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3}",
            ms(percentile(&self.latencies, 50.0)),
            ms(percentile(&self.latencies, 90.0)),
            ms(percentile(&self.latencies, 99.0)),
            ms(self.latencies.last().copied().unwrap_or_default()),
        )
    }

    /// The report: `line`, this tally's errors, and its latencies (sorted).
    pub fn into_report(mut self, line: String) -> Report {
        self.latencies.sort_unstable();
        Report {
            line,
            errors: self.errors,
            first_error: self.first_error,
            latencies: self.latencies,
        }
    }
}

/// The `p`th percentile of sorted values, by the nearest-rank method: the
/// smallest value that at least p% of the values are less than or equal to.
///
/// Why percentiles and not the mean: the mean hides the slow requests. If
/// 99 round trips take 1 ms and one takes 500 ms, the mean says 6 ms, which
/// no request took; p50 says 1 ms (the typical one), max says 500 ms (the
/// one that someone waited for).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sorted latencies as a bar chart, the way `hey` prints one: ten equal
/// buckets from the fastest to the slowest, each line the bucket's upper
/// bound in milliseconds, its count, and a bar scaled to the fullest bucket.
///
/// ```text
/// latency histogram (ms):
///   0.041 [12]    |■■
///   0.083 [230]   |■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
/// ```
///
/// A distribution is easier to see than to read: two humps (most requests
/// fast, some waiting behind something) look like one number in a mean.
pub fn histogram(sorted: &[Duration]) -> String {
    const BUCKETS: usize = 10;
    const WIDTH: usize = 40;
    let mut out = String::from("latency histogram (ms):\n");
    let (Some(&fastest), Some(&slowest)) = (sorted.first(), sorted.last()) else {
        out.push_str("  (no latencies)\n");
        return out;
    };
    let step = (slowest - fastest).as_secs_f64() / BUCKETS as f64;
    let mut counts = [0usize; BUCKETS];
    for d in sorted {
        // Which bucket: the slowest value belongs to the last one.
        let i = if step == 0.0 {
            BUCKETS - 1
        } else {
            (((*d - fastest).as_secs_f64() / step) as usize).min(BUCKETS - 1)
        };
        counts[i] += 1;
    }
    let fullest = counts.iter().copied().max().unwrap_or(1).max(1);
    for (i, count) in counts.iter().enumerate() {
        let upper = fastest.as_secs_f64() + step * (i + 1) as f64;
        let bar = "■".repeat(count * WIDTH / fullest);
        let _ = writeln!(
            out,
            "  {:>9.3} {:<9} |{bar}",
            upper * 1000.0,
            format!("[{count}]")
        );
    }
    out
}

/// Runs `count` workers on their own threads and merges their tallies.
///
/// `gates` are the start lines the workers will wait at. If a thread cannot
/// be started (the system is out of threads or memory), the measurement is
/// meaningless and the workers already started would wait at their gate
/// forever: the gates are called off, the started workers finish, and the
/// error says what to change.
pub fn run_workers<F>(count: usize, gates: &[Arc<Gate>], work: F) -> io::Result<Tally>
where
    F: Fn(usize) -> Tally + Send + Sync + 'static,
{
    let work = Arc::new(work);
    let mut handles = Vec::with_capacity(count);
    let mut failed = None;
    for i in 0..count {
        let work = Arc::clone(&work);
        match thread::Builder::new()
            .name(format!("load-{i}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || work(i))
        {
            Ok(handle) => handles.push(handle),
            Err(e) => {
                failed = Some(io::Error::new(
                    e.kind(),
                    format!(
                        "could not start client thread {i} of {count}: {e} (try fewer --conns)"
                    ),
                ));
                gates.iter().for_each(|gate| gate.call_off());
                break;
            }
        }
    }
    let mut total = Tally::default();
    for handle in handles {
        match handle.join() {
            Ok(tally) => total.merge(tally),
            Err(_) => total.fail("a client thread panicked"),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Starts [`run_workers`] on a thread of its own, so that this thread can
/// wait at the gates with the workers (and read the clock, or the server's
/// memory, at the right moments). [`join`] collects the result.
pub fn start_workers<F>(count: usize, gates: &[Arc<Gate>], work: F) -> JoinHandle<io::Result<Tally>>
where
    F: Fn(usize) -> Tally + Send + Sync + 'static,
{
    let gates = gates.to_vec();
    thread::spawn(move || run_workers(count, &gates, work))
}

/// Waits for the workers started by [`start_workers`].
pub fn join(pool: JoinHandle<io::Result<Tally>>) -> io::Result<Tally> {
    pool.join()
        .unwrap_or_else(|_| Err(io::Error::other("the worker pool panicked")))
}

/// How long each connection of a closed loop runs (echo, http).
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// This many round trips.
    Rounds(usize),
    /// As many round trips as fit in this time.
    For(Duration),
}

impl Plan {
    /// `--rounds` (default `rounds`), unless `--duration` asks for a timed
    /// run: every connection then runs until the time is up, and the count
    /// of round trips is the result rather than the setting.
    pub fn from_args(args: &Matches, rounds: usize) -> Plan {
        let rounds = args.positive("--rounds", rounds);
        match args.seconds("--duration") {
            Some(time) => Plan::For(time),
            None => Plan::Rounds(rounds),
        }
    }

    /// `rounds=N` or `duration=SECS`, for the report line.
    pub fn field(self) -> String {
        match self {
            Plan::Rounds(rounds) => format!("rounds={rounds}"),
            Plan::For(time) => format!("duration={}", time.as_secs()),
        }
    }
}

/// A closed-loop run as measured: the merged tally, the seconds from the
/// common start until the last worker finished, and the server's CPU time
/// in that window (with `--server-pid`).
pub struct Measured {
    pub tally: Tally,
    pub secs: f64,
    server_cpu: Option<Duration>,
}

/// Starts `threads` workers, each running `work(i, gate)` (normally a
/// [`closed_loop`]), waits at the gate with them, and measures from the
/// common start until all are done.
pub fn measure_closed<F>(args: &Matches, threads: usize, work: F) -> io::Result<Measured>
where
    F: Fn(usize, &Gate) -> Tally + Send + Sync + 'static,
{
    // Every worker thread plus this one meet at the gate: each worker first
    // connects and warms up, and only then do all start measuring together.
    let gate = Gate::new(threads + 1);
    let worker_gate = Arc::clone(&gate);
    let pool = start_workers(threads, &[Arc::clone(&gate)], move |i| {
        work(i, &worker_gate)
    });
    let start = gate.wait();
    let cpu_before = proc::server_cpu(args);
    let tally = join(pool)?;
    let Some(start) = start else {
        return Err(io::Error::other("the run was called off"));
    };
    let secs = start.elapsed().as_secs_f64();
    let cpu_after = proc::server_cpu(args);
    Ok(Measured {
        tally,
        secs,
        server_cpu: cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b)),
    })
}

impl Measured {
    /// Ends the mode's report `line` with what every closed loop reports:
    /// the latency percentiles, the server's CPU time per request and its
    /// memory (both with `--server-pid`).
    pub fn into_report(mut self, mut line: String, args: &Matches) -> Report {
        line.push_str(&self.tally.latency_fields());
        if let Some(cpu) = self.server_cpu {
            // The server's own CPU time per request: unlike requests/s, this
            // does not depend on how much CPU the load tester took for
            // itself. (The window runs from the gate until every worker has
            // finished, so it also holds the server's work on the closing
            // connections: a little, next to thousands of requests.)
            let requests = self.tally.latencies.len().max(1);
            let per_request = cpu.as_secs_f64() / requests as f64;
            let _ = write!(line, " server_cpu_us_per_req={:.2}", per_request * 1e6);
        }
        line.push_str(&proc::memory_fields(args));
        self.tally.into_report(line)
    }
}

/// One worker thread of a closed loop with `count` connections: open them
/// (`open`), warm up, wait for everyone at the gate, then the planned
/// rounds. `round` sends one request on every connection and reads every
/// answer; it is told whether the round is timed (`false` during the
/// warm-up, whose latencies are not recorded), and records into the tally.
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
pub fn closed_loop<C>(
    count: usize,
    plan: Plan,
    warmup: usize,
    gate: &Gate,
    mut open: impl FnMut() -> io::Result<C>,
    mut round: impl FnMut(&mut [C], &mut Tally, bool) -> io::Result<()>,
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
    let ready = (0..count)
        .map(|_| open())
        .collect::<io::Result<Vec<C>>>()
        .and_then(|mut conns| {
            for _ in 0..warmup {
                round(&mut conns, &mut tally, false)?;
            }
            Ok(conns)
        });
    // Every worker must reach the gate, even one that failed to connect:
    // the others (and the clock) are waiting for all of them.
    let Some(start) = gate.wait() else {
        return tally; // called off: the pool reports why
    };
    let mut conns = match ready {
        Ok(conns) => conns,
        Err(e) => {
            tally.fail(e);
            tally.errors += count as u64 - 1; // none of this thread's ran
            return tally;
        }
    };
    let mut rounds_done = 0;
    loop {
        let done = match plan {
            Plan::Rounds(rounds) => rounds_done >= rounds,
            Plan::For(time) => start.elapsed() >= time,
        };
        if done {
            break;
        }
        if let Err(e) = round(&mut conns, &mut tally, true) {
            // One broken connection ends its thread's share of the run. The
            // others stop with it, and count as errors too, so that
            // `errors` is always the number of connections that did not
            // finish.
            tally.fail(e);
            tally.errors += count as u64 - 1;
            break;
        }
        rounds_done += 1;
    }
    tally
}
