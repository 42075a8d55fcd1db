//! The sender: one report on its way, and every piece of reliability that
//! TCP would have given us, by hand (see `main.rs` for the list).

use crate::Config;
use netlessons::datagram::{self, Ack, Dropper, Header, Kind};
use netlessons::log;
use netlessons::trace::{Direction, Trace};
use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// A chunk counts as lost once this many chunks sent after it are held: a
/// little reordering must not cause a resend, but three overtakers mean the
/// chunk is not merely late. (TCP uses the same three.)
const REORDER_THRESHOLD: u32 = 3;

/// How long to wait before sending a datagram again, and when to stop.
#[derive(Debug, Clone, Copy)]
pub struct Timer {
    pub base: Duration,
    pub max: Duration,
    pub tries: u32,
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
pub struct Window {
    size: f64,
    adaptive: bool,
    /// Losses of chunks sent before this send number were caused by the
    /// same full queue as the last cut: one cut per round, not one per chunk.
    cut_at: u64,
    pub smallest: usize,
    pub largest: usize,
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
pub enum Reply {
    Ack(Ack),
    Done,
}

/// The sender's bookkeeping for one chunk.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
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
pub struct Sender<'a> {
    config: &'a Config,
    socket: UdpSocket,
    trace: Trace,
    dropper: Dropper,
    pub window: Window,
    pub chunks: Vec<Chunk>,
    /// Every chunk below this is held.
    first_missing: u32,
    next_unsent: u32,
    sends: u64,
    /// Datagrams sent, resends and HELLO included (the cost of the loss).
    pub sent: u64,
    /// Round-trip time, smoothed, from chunks acknowledged after one send.
    pub rtt: Option<Duration>,
    /// When the last ACK arrived, until a tail probe has answered to it.
    last_ack: Option<Instant>,
}

impl<'a> Sender<'a> {
    pub fn new(config: &'a Config, socket: UdpSocket) -> Sender<'a> {
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
    pub fn hello(&mut self) -> io::Result<Reply> {
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
    pub fn send_all(&mut self) -> io::Result<()> {
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
    pub fn send_once(&mut self) -> io::Result<bool> {
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
    pub fn on_ack(&mut self, ack: &Ack) {
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
                log!("send failed: {e}");
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
                Err(e) => match e.kind() {
                    // The read timeout: nothing came before the deadline.
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(None),
                    // An ICMP "port unreachable" for an earlier datagram, or
                    // a signal: this receive is still worth doing again.
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                },
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
