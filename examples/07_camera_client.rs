//! # 07_camera_client: a speed camera sends one report over UDP
//!
//! Reads a photo, then sends it with its details (camera, plate, speed, time)
//! to `07_camera_server` as signed datagrams ([`netlessons::datagram`]):
//!
//! ```text
//! NETLESSONS_SECRET=… cargo run --example 07_camera_client -- \
//!     --camera demo --plate 'AB 123' --speed 87 photo.jpg
//! ```
//!
//! UDP delivers each datagram whole or not at all, and tells the sender
//! nothing either way. Everything TCP would do for us, this client does by
//! hand, and each piece has its own function so you can find it:
//!
//! * the **window** ([`Sender::fill_window`]): at most `--window` chunks in
//!   flight, so a burst never overflows the server's receive buffer (TCP's
//!   flow control);
//! * the **selective resend** ([`Sender::on_ack`]): the server's ACK says
//!   exactly which chunks it holds, and a chunk that three later chunks
//!   overtook is resent at once (TCP's fast retransmit with SACK);
//! * the **timer and its doubling** ([`Sender::on_timer`]): a chunk not
//!   acknowledged in 500 ms is resent, and each loss doubles its wait, up to
//!   4 s (TCP's retransmission timeout and backoff);
//! * the **give-up** ([`Timer::gave_up`]): after 8 tries the server is
//!   declared gone, and the client exits 1 with a clear message (TCP's
//!   connection timeout).
//!
//! With `--no-retry` it sends everything once, without window or resends,
//! and prints how many chunks the server says it got: the lost-pixel
//! counter of the course, showing that loss is real even on one machine.

use netlessons::cli::{Command, Matches};
use netlessons::datagram::{self, Ack, Dropper, Header, Hello, Kind};
use netlessons::sha256::sha256;
use netlessons::trace::{Direction, Trace};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// A chunk counts as lost once this many chunks sent after it are held: a
/// little reordering must not cause a resend, but three overtakers mean the
/// chunk is not merely late. (TCP uses the same three.)
const REORDER_THRESHOLD: u32 = 3;

fn main() -> ExitCode {
    let args = Command::new(
        "07_camera_client",
        "Sends one speed camera report (a photo and its details) to 07_camera_server over UDP.",
    )
    .opt("--addr", "HOST:PORT", "the server's UDP address", Some("127.0.0.1:7007"))
    .opt("--camera", "NAME", "this camera's name, as in the server's users file", None)
    .opt("--plate", "TEXT", "the licence plate read from the photo", None)
    .opt("--speed", "KMH", "the measured speed, a whole number of km/h", None)
    .opt("--secret", "SECRET", "the camera's secret (better: set NETLESSONS_SECRET, which other users cannot see in `ps`)", None)
    .opt("--window", "N", "at most N chunks in flight at once", Some("32"))
    .opt("--drop", "PERCENT", "throw away this share of the datagrams we send (to watch recovery)", Some("0"))
    .opt("--seed", "N", "the seed that chooses which datagrams --drop throws away", Some("1"))
    .opt("--report", "HEX", "send under this report id (16 hex digits), as a camera resending a report does (default: a new random id)", None)
    .flag("--adaptive", "let the window shrink on loss and grow back (chapter 12, exercise 2)")
    .flag("--no-retry", "send every chunk once, no window, no resends; print how many arrived")
    .flag("--trace", "show every datagram that leaves or arrives on stderr")
    // Test knobs: shorter timers, so that "the server never answers" takes
    // a fraction of a second in a test instead of about twenty.
    .hidden_opt("--retry-base-ms", Some("500"))
    .hidden_opt("--retry-max-ms", Some("4000"))
    .positional("PHOTO", "the photo file to send")
    .after_help("The secret comes from the NETLESSONS_SECRET environment variable (or --secret).")
    .parse_env();

    let config = match Config::from_args(&args) {
        Ok(config) => config,
        Err(message) => args.fail(&message),
    };
    match run(&config) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the flags say.
struct Config {
    addr: SocketAddr,
    secret: String,
    photo: Vec<u8>,
    hello: Hello,
    report: u64,
    window: usize,
    adaptive: bool,
    no_retry: bool,
    trace: bool,
    dropper: Dropper,
    timer: Timer,
}

impl Config {
    fn from_args(args: &Matches) -> Result<Config, String> {
        let [path] = args.positionals() else {
            return Err("give exactly one PHOTO to send".to_string());
        };
        let camera = args.get("--camera").ok_or("--camera NAME is required")?;
        let plate = args.get("--plate").ok_or("--plate TEXT is required")?;
        let speed: u32 = args
            .parse_value("--speed")
            .ok_or("--speed KMH is required")?;
        for (flag, text) in [("--camera", camera), ("--plate", plate)] {
            if text.is_empty() || text.contains(['\n', '\r']) {
                return Err(format!("{flag} must be one non-empty line"));
            }
        }
        let secret = args
            .get("--secret")
            .map(str::to_string)
            .or_else(|| std::env::var("NETLESSONS_SECRET").ok())
            .filter(|s| !s.is_empty())
            .ok_or("no secret: set NETLESSONS_SECRET (or pass --secret); the server prints it")?;
        let addr = args
            .get("--addr")
            .unwrap_or("127.0.0.1:7007")
            .to_socket_addrs()
            .map_err(|e| format!("bad --addr: {e}"))?
            .next()
            .ok_or("--addr names no address")?;
        let photo = std::fs::read(path).map_err(|e| format!("could not read {path}: {e}"))?;
        if photo.is_empty() {
            return Err(format!("{path} is empty: there is no photo to send"));
        }
        if datagram::chunk_count(photo.len() as u64) > u64::from(u32::MAX) {
            return Err(format!("{path} is far too large to send"));
        }
        let ext = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| "bin".to_string());
        let lines = format!(
            "camera={camera}\nplate={plate}\nspeed={speed}\ntime={}\next={ext}\n",
            datagram::utc_time(SystemTime::now())
        );
        if lines.len() > datagram::MAX_HELLO_LINES {
            return Err("--camera and --plate are too long to fit in a HELLO".to_string());
        }
        let report = match args.get("--report") {
            Some(hex) if hex.len() == 16 => {
                u64::from_str_radix(hex, 16).map_err(|_| "--report takes 16 hex digits")?
            }
            Some(_) => return Err("--report takes 16 hex digits".to_string()),
            None => {
                let mut bytes = [0u8; 8];
                netlessons::auth::fill_random(&mut bytes)
                    .map_err(|e| format!("no random numbers: {e}"))?;
                u64::from_be_bytes(bytes)
            }
        };
        let window: usize = args.value("--window");
        let drop: f64 = args.value("--drop");
        if window == 0 {
            return Err("--window must be at least 1".to_string());
        }
        if !(0.0..=100.0).contains(&drop) {
            return Err("--drop takes a percentage from 0 to 100".to_string());
        }
        Ok(Config {
            addr,
            secret,
            hello: Hello {
                size: photo.len() as u64,
                sha256: sha256(&photo),
                lines,
            },
            photo,
            report,
            window,
            adaptive: args.flag("--adaptive"),
            no_retry: args.flag("--no-retry"),
            trace: args.flag("--trace"),
            dropper: Dropper::new(drop, args.value("--seed")),
            timer: Timer {
                base: Duration::from_millis(args.value("--retry-base-ms")),
                max: Duration::from_millis(args.value("--retry-max-ms")),
                tries: 8,
            },
        })
    }
}

/// Sends the report; `Ok(true)` when the server said DONE.
fn run(config: &Config) -> io::Result<bool> {
    // Any free local port of the server's family; `connect` on a UDP socket
    // sends no packet, it only fixes the peer, so that `recv` returns only
    // the server's datagrams and `send` needs no address.
    let local = if config.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(config.addr)?;
    let mut sender = Sender::new(config, socket);
    let started = Instant::now();
    match sender.hello()? {
        Reply::Done => {
            println!(
                "already stored: report {:016x} (the server had it from an earlier send)",
                config.report
            );
            return Ok(true);
        }
        Reply::Ack(ack) => sender.on_ack(&ack),
    }
    if config.no_retry {
        return sender.send_once();
    }
    sender.send_all()?;
    let secs = started.elapsed().as_secs_f64();
    let total = sender.chunks.len();
    let rtt = sender.rtt.map_or_else(
        || "not measured".to_string(),
        |r| format!("{:.2} ms", r.as_secs_f64() * 1000.0),
    );
    let window = if config.adaptive {
        format!(
            ", window between {} and {}",
            sender.window.smallest, sender.window.largest
        )
    } else {
        String::new()
    };
    println!(
        "stored: report {:016x}, {} bytes in {total} chunks, {:.2} s, {} datagrams sent ({:.2} per chunk), round trip {rtt}{window}",
        config.report,
        config.photo.len(),
        secs,
        sender.sent,
        sender.sent as f64 / total as f64,
    );
    Ok(true)
}

/// How long to wait before sending a datagram again, and when to stop.
#[derive(Debug, Clone, Copy)]
struct Timer {
    base: Duration,
    max: Duration,
    tries: u32,
}

impl Timer {
    /// The wait after the `sends`-th send: 500 ms, then doubled for each
    /// loss (1 s, 2 s, 4 s), never more than 4 s. Doubling is what keeps a
    /// congested or dead path from being hammered at full rate forever.
    fn wait(&self, sends: u32) -> Duration {
        let doublings = sends.saturating_sub(1).min(16);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// Have we sent this often that silence means the server is gone?
    /// Eight tries with these waits come to about 20 seconds.
    fn gave_up(&self, sends: u32) -> bool {
        sends >= self.tries
    }
}

/// How many chunks may be in flight. Fixed at `--window` unless
/// `--adaptive` (chapter 12, exercise 2): then it halves when a chunk is
/// lost and grows by about one chunk per window acknowledged, the "additive
/// increase, multiplicative decrease" TCP's congestion control is built on.
/// A loss means a queue somewhere is full; sending less lets it drain.
#[derive(Debug, Clone)]
struct Window {
    size: f64,
    adaptive: bool,
    /// Losses of chunks sent before this send number were caused by the
    /// same full queue as the last cut: one cut per round, not one per chunk.
    cut_at: u64,
    smallest: usize,
    largest: usize,
}

impl Window {
    fn new(size: usize, adaptive: bool) -> Window {
        Window {
            size: size as f64,
            adaptive,
            cut_at: 0,
            smallest: size,
            largest: size,
        }
    }

    fn chunks(&self) -> usize {
        self.size as usize
    }

    /// A chunk last sent as send number `order` was lost; `now` is the
    /// current send number.
    fn on_loss(&mut self, order: u64, now: u64) {
        if self.adaptive && order > self.cut_at {
            self.size = (self.size / 2.0).max(1.0);
            self.cut_at = now;
            self.smallest = self.smallest.min(self.chunks());
        }
    }

    /// A chunk was acknowledged.
    fn on_ack(&mut self) {
        if self.adaptive {
            self.size = (self.size + 1.0 / self.size).min(f64::from(datagram::ACK_SPAN));
            self.largest = self.largest.max(self.chunks());
        }
    }
}

/// What the server answered to our HELLO.
enum Reply {
    Ack(Ack),
    Done,
}

/// The sender's bookkeeping for one chunk.
#[derive(Debug, Clone, Default)]
struct Chunk {
    held: bool,
    sends: u32,
    last_sent: Option<Instant>,
    /// When it was last sent, as a count of all sends so far: chunks sent
    /// after it have a higher number, which is how "overtaken" is judged.
    order: u64,
    /// Chunks sent after this one that the server holds.
    overtaken: u32,
}

/// One report on its way: the socket, the chunks and their state.
struct Sender<'a> {
    config: &'a Config,
    socket: UdpSocket,
    trace: Trace,
    dropper: Dropper,
    window: Window,
    chunks: Vec<Chunk>,
    /// Every chunk below this is held.
    first_missing: u32,
    next_unsent: u32,
    sends: u64,
    /// Datagrams sent, resends and HELLO included (the cost of the loss).
    sent: u64,
    /// Round-trip time, smoothed, from chunks acknowledged after one send.
    rtt: Option<Duration>,
    /// When the last ACK arrived, until a tail probe has answered to it.
    last_ack: Option<Instant>,
}

impl<'a> Sender<'a> {
    fn new(config: &'a Config, socket: UdpSocket) -> Sender<'a> {
        let total = datagram::chunk_count(config.photo.len() as u64) as usize;
        Sender {
            config,
            trace: Trace::new(config.addr, config.trace),
            socket,
            dropper: config.dropper.clone(),
            window: Window::new(config.window, config.adaptive),
            chunks: vec![Chunk::default(); total],
            first_missing: 0,
            next_unsent: 0,
            sends: 0,
            sent: 0,
            rtt: None,
            last_ack: None,
        }
    }

    fn total(&self) -> u32 {
        self.chunks.len() as u32
    }

    /// Step 1: announce the report, and wait for the server to accept it.
    /// The HELLO is resent on the same doubling timer as every chunk (with
    /// `--no-retry` too: like TCP's handshake, it is the setup, not the data).
    fn hello(&mut self) -> io::Result<Reply> {
        let mut tries = 0;
        loop {
            if self.config.timer.gave_up(tries) {
                return Err(self.silence("HELLO", tries));
            }
            self.send(Kind::Hello, 0, &self.config.hello.encode())?;
            tries += 1;
            let sent = Instant::now();
            let deadline = sent + self.config.timer.wait(tries);
            while let Some(reply) = self.receive(deadline)? {
                match reply {
                    (Kind::Ack, ack) => {
                        // The first round trip, if the first HELLO was answered.
                        if tries == 1 {
                            self.rtt = Some(sent.elapsed());
                        }
                        return Ok(Reply::Ack(ack));
                    }
                    (Kind::Done, _) => return Ok(Reply::Done),
                    _ => {}
                }
            }
        }
    }

    /// Step 2: every chunk, through the window, until DONE.
    fn send_all(&mut self) -> io::Result<()> {
        // After the last chunk is held, DONE comes once the server has
        // stored the photo. If DONE is lost, a HELLO asks again.
        let mut probes = 0;
        let mut next_probe = None;
        loop {
            self.fill_window()?;
            let now = Instant::now();
            let deadline = if self.first_missing >= self.total() {
                let at = *next_probe.get_or_insert(now + self.config.timer.wait(1));
                if now >= at {
                    if self.config.timer.gave_up(probes) {
                        return Err(self.silence("the last chunk's DONE", probes));
                    }
                    self.send(Kind::Hello, 0, &self.config.hello.encode())?;
                    probes += 1;
                    next_probe = Some(now + self.config.timer.wait(probes + 1));
                }
                next_probe.unwrap_or(now)
            } else {
                let timer = match self.next_deadline() {
                    Some(at) if at <= now => {
                        self.on_timer(now)?;
                        continue;
                    }
                    Some(at) => at,
                    None => now + self.config.timer.max,
                };
                match self.probe_due() {
                    Some(at) if at <= now => {
                        self.probe()?;
                        continue;
                    }
                    Some(at) => at.min(timer),
                    None => timer,
                }
            };
            // Wait for what the server says, until the next timer is due.
            if let Some((kind, ack)) = self.receive(deadline)? {
                match kind {
                    Kind::Ack => {
                        self.last_ack = Some(Instant::now());
                        self.on_ack(&ack);
                    }
                    Kind::Done => return Ok(()),
                    _ => {}
                }
            }
        }
    }

    /// The tail probe: when every chunk has been sent, a lost chunk near the
    /// end has no later chunks to overtake it, and would wait for its full
    /// 500 ms timer. So when the ACKs stop for two round trips, the lowest
    /// missing chunk is sent once more, early. Only once per ACK: a server
    /// that has gone quiet gets no probes, just the timers, so the give-up
    /// still takes its 20 seconds. (TCP's "tail loss probe", RFC 8985.)
    fn probe_due(&self) -> Option<Instant> {
        if self.next_unsent < self.total() {
            return None;
        }
        let rtt = self.rtt?;
        Some(self.last_ack? + (rtt * 2).max(Duration::from_millis(1)))
    }

    fn probe(&mut self) -> io::Result<()> {
        self.last_ack = None; // once per ACK
        let lowest = (self.first_missing..self.total()).find(|&seq| {
            let c = &self.chunks[seq as usize];
            !c.held && !self.config.timer.gave_up(c.sends)
        });
        match lowest {
            Some(seq) => self.send_chunk(seq),
            None => Ok(()),
        }
    }

    /// `--no-retry`: every chunk once, as fast as the socket takes them, no
    /// window, no resends. Then count what the server's ACKs say it holds.
    fn send_once(&mut self) -> io::Result<bool> {
        for seq in 0..self.total() {
            self.send_chunk(seq)?;
        }
        self.next_unsent = self.total();
        // Listen until the server has been quiet for one timer period (the
        // longest for its first answer: a busy server answers late).
        let mut done = false;
        let mut quiet = self.config.timer.max;
        loop {
            let deadline = Instant::now() + quiet;
            quiet = self.config.timer.base;
            match self.receive(deadline)? {
                Some((Kind::Ack, ack)) => self.on_ack(&ack),
                Some((Kind::Done, _)) => {
                    done = true;
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        // Our own receive buffer may have overflowed with ACKs during the
        // burst: ask once more. A HELLO for a report in progress is answered
        // with the server's current ACK.
        if !done {
            self.send(Kind::Hello, 0, &self.config.hello.encode())?;
            match self.receive(Instant::now() + self.config.timer.max)? {
                Some((Kind::Ack, ack)) => self.on_ack(&ack),
                Some((Kind::Done, _)) => done = true,
                _ => {}
            }
        }
        let held = if done {
            self.total()
        } else {
            self.chunks.iter().filter(|c| c.held).count() as u32
        };
        // An ACK describes 256 chunks from the first missing one; of any
        // chunk beyond, the server cannot tell us.
        let unknown = !done && self.first_missing.saturating_add(datagram::ACK_SPAN) < self.total();
        let at_least = if unknown { "at least " } else { "" };
        println!("received {at_least}{held} of {} chunks", self.total());
        Ok(done)
    }

    /// The window: send new chunks while fewer than `--window` are in
    /// flight. Without it, the whole photo would leave in one burst, and a
    /// server busy for a moment would find its receive buffer full: the
    /// kernel drops what does not fit, and tells no one.
    fn fill_window(&mut self) -> io::Result<()> {
        let in_flight = self
            .chunks
            .iter()
            .filter(|c| c.sends > 0 && !c.held)
            .count();
        let mut room = self.window.chunks().saturating_sub(in_flight);
        // An ACK describes 256 chunks from its base: never run further ahead
        // than the server could tell us about.
        let horizon = self
            .first_missing
            .saturating_add(datagram::ACK_SPAN)
            .min(self.total());
        while room > 0 && self.next_unsent < horizon {
            self.send_chunk(self.next_unsent)?;
            self.next_unsent += 1;
            room -= 1;
        }
        Ok(())
    }

    /// An ACK arrived: mark what the server holds, measure the round trip,
    /// and resend at once each chunk that three later chunks overtook.
    fn on_ack(&mut self, ack: &Ack) {
        let now = Instant::now();
        let end = ack
            .base
            .saturating_add(datagram::ACK_SPAN)
            .min(self.total());
        for seq in self.first_missing..end {
            let chunk = &self.chunks[seq as usize];
            if chunk.held || !ack.holds(seq) {
                continue;
            }
            // Only a chunk sent once gives an honest round trip: for a
            // resent one we cannot tell which send the ACK answers (Karn's
            // rule, which TCP follows too).
            if let (1, Some(sent)) = (chunk.sends, chunk.last_sent) {
                let sample = now.duration_since(sent);
                self.rtt = Some(self.rtt.map_or(sample, |r| (r * 7 + sample) / 8));
            }
            let order = chunk.order;
            self.chunks[seq as usize].held = true;
            self.window.on_ack();
            for other in &mut self.chunks[self.first_missing as usize..self.next_unsent as usize] {
                if !other.held && other.sends > 0 && other.order < order {
                    other.overtaken += 1;
                }
            }
        }
        while self.first_missing < self.total() && self.chunks[self.first_missing as usize].held {
            self.first_missing += 1;
        }
        // Selective resend: only the chunks shown missing, never everything
        // after the first gap (go-back-N would resend the whole window). At
        // the very end, when nothing new is left to send, one overtaker is
        // evidence enough (TCP calls this early retransmit).
        if self.config.no_retry {
            return;
        }
        let all_sent = self.next_unsent >= self.total();
        let lost: Vec<u32> = (self.first_missing..self.next_unsent)
            .filter(|&seq| {
                let c = &self.chunks[seq as usize];
                !c.held && (c.overtaken >= REORDER_THRESHOLD || (all_sent && c.overtaken >= 1))
            })
            .collect();
        for seq in lost {
            let c = &self.chunks[seq as usize];
            if self.config.timer.gave_up(c.sends) {
                continue; // its timer will give up on it
            }
            self.window.on_loss(c.order, self.sends);
            if let Err(e) = self.send_chunk(seq) {
                eprintln!("send failed: {e}");
            }
        }
    }

    /// The timer: resend every chunk whose wait is over, or give up.
    fn on_timer(&mut self, now: Instant) -> io::Result<()> {
        for seq in self.first_missing..self.next_unsent {
            let c = &self.chunks[seq as usize];
            let due = c
                .last_sent
                .is_some_and(|t| t + self.config.timer.wait(c.sends) <= now);
            if c.held || !due {
                continue;
            }
            if self.config.timer.gave_up(c.sends) {
                return Err(self.silence(&format!("chunk {seq}"), c.sends));
            }
            self.window.on_loss(c.order, self.sends);
            self.send_chunk(seq)?;
        }
        Ok(())
    }

    /// When the next chunk's timer is due.
    fn next_deadline(&self) -> Option<Instant> {
        self.chunks[self.first_missing as usize..self.next_unsent as usize]
            .iter()
            .filter(|c| !c.held)
            .filter_map(|c| Some(c.last_sent? + self.config.timer.wait(c.sends)))
            .min()
    }

    fn send_chunk(&mut self, seq: u32) -> io::Result<()> {
        let start = seq as usize * datagram::MAX_PAYLOAD;
        let end = (start + datagram::MAX_PAYLOAD).min(self.config.photo.len());
        let payload = &self.config.photo[start..end];
        self.send(Kind::Data, seq, payload)?;
        self.sends += 1;
        let c = &mut self.chunks[seq as usize];
        c.sends += 1;
        c.last_sent = Some(Instant::now());
        c.order = self.sends;
        c.overtaken = 0;
        Ok(())
    }

    /// Sends one signed datagram, unless `--drop` throws it away.
    fn send(&mut self, kind: Kind, seq: u32, payload: &[u8]) -> io::Result<()> {
        let header = Header {
            kind,
            report: self.config.report,
            seq,
            total: self.total(),
        };
        self.sent += 1;
        let shown = datagram::describe(&header, payload.len());
        if self.dropper.drop_next() {
            self.trace.note(&format!("{shown} thrown away by --drop"));
            return Ok(());
        }
        self.trace.line(Direction::Sent, shown.as_bytes());
        let bytes = datagram::build(&header, payload, self.config.secret.as_bytes());
        match self.socket.send(&bytes) {
            Ok(_) => Ok(()),
            // An earlier datagram drew an ICMP "port unreachable", which
            // Linux reports on the next call. Nothing is listening yet, or
            // any more: the timer decides when to give up, not this.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
            // The kernel's send queue is full for a moment: as good as lost.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Waits until `deadline` for a genuine datagram from the server about
    /// our report. ERR ends the transfer with the server's reason; anything
    /// not signed with our secret, or about another report, is ignored.
    fn receive(&mut self, deadline: Instant) -> io::Result<Option<(Kind, Ack)>> {
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.socket.set_read_timeout(Some(left))?;
            let len = match self.socket.recv(&mut buf) {
                Ok(len) => len,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Ok(d) = datagram::parse(&buf[..len]) else {
                continue;
            };
            // The server signs its replies with our secret: a reply that
            // does not verify did not come from the real server.
            if d.header.report != self.config.report || !d.verify(self.config.secret.as_bytes()) {
                self.trace
                    .note("ignored a datagram that is not a genuine reply about our report");
                continue;
            }
            self.trace.line(
                Direction::Received,
                datagram::describe(&d.header, d.payload.len()).as_bytes(),
            );
            match d.header.kind {
                Kind::Ack => {
                    if let Some(ack) = Ack::decode(d.header.seq, d.payload) {
                        return Ok(Some((Kind::Ack, ack)));
                    }
                }
                Kind::Done => return Ok(Some((Kind::Done, Ack::new(0)))),
                Kind::Err => {
                    let reason = String::from_utf8_lossy(d.payload);
                    return Err(io::Error::other(format!(
                        "the server refused the report: {reason}"
                    )));
                }
                Kind::Hello | Kind::Data => {}
            }
        }
    }

    /// The error for a server that never answered.
    fn silence(&self, what: &str, tries: u32) -> io::Error {
        let hint = if self.first_missing == 0 && self.next_unsent == 0 {
            "is the server running there, and are --camera and NETLESSONS_SECRET right? (a \
             server started without --users makes a new secret each time, and never answers a \
             datagram it cannot check)"
        } else {
            "the server answered before, so it stopped, or the path between us loses too much"
        };
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no answer from {} to {what} after {tries} tries, giving up: {hint}",
                self.config.addr
            ),
        )
    }
}
