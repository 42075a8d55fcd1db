//! `chat`: one sender and N receivers on a chat server; latency is the time
//! from a message's send to each receipt (fan-out). With `--joins N`, a join
//! storm instead ([`run_joins`]).

use crate::measure::{self, Gate, Report, Tally};
use crate::{Setup, connect, proc};
use netlessons::cli::Matches;
use netlessons::connection::Connection;
use std::fmt::Write as _;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Longest chat message we send; the chat server refuses lines over 1024 bytes.
const MAX_CHAT_LINE: usize = 1000;

/// How many deliveries have happened, so the sender can wait for all
/// receivers to get message k before it sends message k+1.
#[derive(Default)]
struct Deliveries {
    count: Mutex<u64>,
    changed: Condvar,
}

/// Runs the mode and builds its report line.
pub fn run(args: &Matches, setup: Setup) -> io::Result<Report> {
    if let Some(joins) = args.parse_value::<usize>("--joins").filter(|&n| n > 0) {
        return run_joins(args, setup, joins);
    }
    let receivers = args.positive("--conns", 8);
    let messages = args.positive("--rounds", 200);
    let size = args.size("--size", 64).min(MAX_CHAT_LINE);

    // All clocks are measured from one Instant: the sender writes its
    // elapsed nanoseconds into each message, and a receiver subtracts that
    // from its own reading of the same clock. (Across two machines this
    // would need synchronised clocks; within one process it is exact.)
    let epoch = Instant::now();
    let deliveries = Arc::new(Deliveries::default());
    // Handles on every receiver's socket, so that a sender that gives up can
    // wake receivers blocked in a read (shutdown makes their read return).
    let sockets: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let gate = Gate::new(receivers + 1);

    let (d, s, g) = (
        Arc::clone(&deliveries),
        Arc::clone(&sockets),
        Arc::clone(&gate),
    );
    let pool = measure::start_workers(receivers, &[Arc::clone(&gate)], move |_| {
        chat_receiver(setup, messages, epoch, &g, &d, &s)
    });
    let mut sender = Tally::default();
    let sent = chat_sender(setup, receivers, messages, size, epoch, &gate, &deliveries);
    let secs = sent.as_ref().map_or(0.0, |(_, secs)| *secs);
    if let Err(e) = &sent {
        sender.fail(e);
        for socket in sockets.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
    let mut tally = measure::join(pool)?;
    tally.merge(sender);
    let delivered = tally.latencies.len();
    let mut line = format!(
        "chat receivers={receivers} messages={messages} size={size} deliveries={delivered} errors={} \
         secs={secs:.3} deliveries_per_s={:.0}",
        tally.errors,
        delivered as f64 / secs.max(1e-9),
    );
    line.push_str(&tally.latency_fields());
    line.push_str(&proc::memory_fields(args));
    Ok(tally.into_report(line))
}

/// Joins the chat, waits at the gate for every receiver, then sends
/// `messages` messages, each only after everyone received the previous one
/// (lock-step: we measure fan-out latency, not a queue filling up).
/// Returns the number sent and the seconds it took.
fn chat_sender(
    setup: Setup,
    receivers: usize,
    messages: usize,
    size: usize,
    epoch: Instant,
    gate: &Gate,
    deliveries: &Deliveries,
) -> io::Result<(usize, f64)> {
    let joined = chat_join(setup);
    if gate.wait().is_none() {
        return Err(io::Error::other("the run was called off"));
    }
    let mut conn = joined?;
    // The server adds a client to the room at some point around its welcome
    // line; ask who is online until everyone is, so no message is sent
    // before all receivers can get it.
    wait_until_online(&mut conn, receivers + 1, setup.timeout)?;
    let start = Instant::now();
    for seq in 0..messages {
        let sent_at = epoch.elapsed().as_nanos();
        let mut text = format!("{seq} {sent_at} ");
        while text.len() < size {
            text.push('x');
        }
        conn.send_line(&text)?;
        conn.flush()?;
        let want = (seq as u64 + 1) * receivers as u64;
        let count = deliveries.count.lock().unwrap_or_else(|p| p.into_inner());
        let (count, waited) = deliveries
            .changed
            .wait_timeout_while(count, setup.timeout, |n| *n < want)
            .unwrap_or_else(|p| p.into_inner());
        if waited.timed_out() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "message {seq} reached only {} of {receivers} receivers",
                    (*count + receivers as u64).saturating_sub(want)
                ),
            ));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    conn.send_line("/quit")?;
    conn.flush()?;
    Ok((messages, secs))
}

/// Sends `/who` until it lists at least `want` names.
fn wait_until_online(conn: &mut Connection, want: usize, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        conn.send_line("/who")?;
        loop {
            let line = read_chat_line(conn)?;
            if let Some(names) = line.strip_prefix("* online: ") {
                if names.split(", ").count() >= want {
                    return Ok(());
                }
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "not every receiver joined the chat",
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Connects to the chat and reads the welcome line.
fn chat_join(setup: Setup) -> io::Result<Connection> {
    let stream = connect(setup)?;
    let mut conn = Connection::new(stream, false)?;
    let welcome = read_chat_line(&mut conn)?;
    if !welcome.starts_with("* ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected a welcome line from the chat server, got {welcome:?}"),
        ));
    }
    Ok(conn)
}

fn read_chat_line(conn: &mut Connection) -> io::Result<String> {
    conn.read_text_line(4096)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the chat server closed the connection",
        )
    })
}

/// One receiver: joins, then reads until it has seen every message,
/// recording each message's delay from send to receipt.
fn chat_receiver(
    setup: Setup,
    messages: usize,
    epoch: Instant,
    gate: &Gate,
    deliveries: &Deliveries,
    sockets: &Mutex<Vec<TcpStream>>,
) -> Tally {
    let mut tally = Tally::with_capacity(messages);
    let joined = chat_join(setup).and_then(|conn| {
        sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn.socket().try_clone()?);
        Ok(conn)
    });
    if gate.wait().is_none() {
        return tally; // called off: the pool reports why
    }
    let mut conn = match joined {
        Ok(conn) => conn,
        Err(e) => {
            tally.fail(e);
            return tally;
        }
    };
    while tally.latencies.len() < messages {
        let line = match read_chat_line(&mut conn) {
            Ok(line) => line,
            Err(e) => {
                tally.fail(e);
                break;
            }
        };
        let now = epoch.elapsed().as_nanos();
        // Skip the server's notices ("* guest3 joined") and anything else
        // that is not one of our "NAME: seq nanos xxx" messages.
        let Some(sent_at) = line
            .split_once(": ")
            .filter(|_| !line.starts_with("* ") && !line.starts_with("! "))
            .and_then(|(_, text)| text.split(' ').nth(1))
            .and_then(|nanos| nanos.parse::<u128>().ok())
        else {
            continue;
        };
        let delay = Duration::from_nanos(now.saturating_sub(sent_at) as u64);
        tally.record(delay, line.len() as u64 + 1);
        *deliveries.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        deliveries.changed.notify_all();
    }
    tally
}

/// `chat --joins N`: a join storm. A watcher joins first; then N clients
/// join as fast as 8 threads can open them (each waits for its welcome and
/// then just stays); then a fresh client joins and says one line. Reports
/// how long the storm took, how long until the watcher had heard of every
/// join, how long the fresh client waited for its welcome and for its line
/// to reach the watcher, and (with `--server-pid`) the server's CPU time.
/// The latency figures are the storm clients' waits for their welcomes.
///
/// Announcing each join to everyone costs the server n² lines for n joins;
/// this is the measurement that shows whether a storm starves the room.
pub fn run_joins(args: &Matches, setup: Setup, joins: usize) -> io::Result<Report> {
    let mut watcher = chat_join(setup)?;
    watcher.send_line("/nick watcher")?;
    watcher.flush()?;
    // The watcher reads on its own thread, counting joins and noting when
    // the probe's line arrives.
    let (heard_tx, heard) = std::sync::mpsc::channel::<Option<Instant>>();
    let mut watcher_conn = watcher;
    let listener = thread::spawn(move || -> io::Result<()> {
        loop {
            let line = read_chat_line(&mut watcher_conn)?;
            if line.ends_with(" joined") {
                let _ = heard_tx.send(None);
            } else if line.ends_with(": probe") {
                let _ = heard_tx.send(Some(Instant::now()));
                return Ok(());
            }
        }
    });
    let cpu_before = proc::server_cpu(args);
    let start = Instant::now();
    let (mut tally, held) = storm(setup, joins)?;
    let storm_secs = start.elapsed().as_secs_f64();
    // Until the watcher has heard of every join that succeeded.
    let joined = tally.latencies.len();
    let deadline = Instant::now() + setup.timeout;
    let mut announced = 0;
    while announced < joined {
        let left = deadline.saturating_duration_since(Instant::now());
        match heard.recv_timeout(left) {
            Ok(None) => announced += 1,
            Ok(Some(_)) => {}
            Err(_) => {
                tally.fail(format!(
                    "the watcher heard of only {announced} of {joined} joins"
                ));
                break;
            }
        }
    }
    let announced_secs = start.elapsed().as_secs_f64();
    let (welcome_ms, message_ms) = probe(setup, &heard, &mut tally)?;
    let cpu_after = proc::server_cpu(args);
    drop(held);
    let _ = listener.join();
    let mut line = format!(
        "chat-joins joins={joins} joined={joined} errors={} storm_secs={storm_secs:.3} \
         announced_secs={announced_secs:.3} fresh_welcome_ms={welcome_ms:.3} \
         fresh_message_ms={message_ms:.3}",
        tally.errors
    );
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let _ = write!(
            line,
            " server_cpu_secs={:.2}",
            after.saturating_sub(before).as_secs_f64()
        );
    }
    line.push_str(&tally.latency_fields());
    line.push_str(&proc::memory_fields(args));
    Ok(tally.into_report(line))
}

/// The storm itself: `joins` clients joining from 8 threads at once, each
/// kept open once welcomed. The tally's latencies are the welcome waits.
fn storm(setup: Setup, joins: usize) -> io::Result<(Tally, Vec<Connection>)> {
    const THREADS: usize = 8;
    let per_thread = joins.div_ceil(THREADS);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let count = per_thread.min(joins.saturating_sub(t * per_thread));
            thread::spawn(move || {
                let mut tally = Tally::with_capacity(count);
                let mut held = Vec::with_capacity(count);
                for _ in 0..count {
                    let asked = Instant::now();
                    match chat_join(setup) {
                        Ok(conn) => {
                            tally.record(asked.elapsed(), 0);
                            held.push(conn);
                        }
                        Err(e) => tally.fail(e),
                    }
                }
                (tally, held)
            })
        })
        .collect();
    let mut tally = Tally::default();
    let mut held = Vec::with_capacity(joins);
    for worker in workers {
        let (part, conns) = worker
            .join()
            .map_err(|_| io::Error::other("a storm thread panicked"))?;
        tally.merge(part);
        held.extend(conns);
    }
    Ok((tally, held))
}

/// A fresh client after the storm: how long its welcome took, and how long
/// its one line took to reach the watcher (in ms).
fn probe(
    setup: Setup,
    heard: &std::sync::mpsc::Receiver<Option<Instant>>,
    tally: &mut Tally,
) -> io::Result<(f64, f64)> {
    let asked = Instant::now();
    let mut fresh = chat_join(setup)?;
    let welcome_ms = asked.elapsed().as_secs_f64() * 1000.0;
    let said = Instant::now();
    fresh.send_line("probe")?;
    fresh.flush()?;
    let deadline = Instant::now() + setup.timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match heard.recv_timeout(left) {
            Ok(Some(at)) => {
                return Ok((welcome_ms, at.duration_since(said).as_secs_f64() * 1000.0));
            }
            Ok(None) => {}
            Err(_) => {
                tally.fail("the fresh client's line never reached the watcher");
                return Ok((welcome_ms, f64::NAN));
            }
        }
    }
}
