//! What the server does with each datagram, and the reports in progress.
//!
//! A TCP server gets reliability from the operating system: bytes arrive in
//! order, once, or the connection fails. Over UDP the server must do that
//! work itself, and this file is where it happens:
//!
//! * **authentication first**: a datagram whose tag does not check is
//!   dropped without a word ([`Reports::handle`]);
//! * **reassembly**: chunks arrive in any order, some twice, some never; a
//!   `Partial` report (`partial.rs`) remembers which it holds (TCP's receive buffer does
//!   this for a stream);
//! * **acknowledgement**: after each chunk the server says which chunks it
//!   holds (`Partial::ack`), so the camera can resend exactly the missing
//!   ones (TCP's ACK and SACK);
//! * **limits and expiry**: a table of reports in progress is memory that
//!   strangers could fill, so it is bounded, and abandoned reports expire
//!   (a TCP server gets this from its connection cap and idle timeout);
//! * **exactly once**: a report is stored once, however often its last
//!   chunk or its HELLO arrives ([`Reports::finished`] and the store).

use crate::partial::{Dropped, Finished, Limits, Partial, same_host};
use crate::store::{self, Store};
use netlessons::auth::Users;
use netlessons::datagram::{self, Ack, Dropper, Header, Hello, Kind, Unverified};
use netlessons::log;
use netlessons::sha256::sha256;
use netlessons::subnet::Allowlist;
use netlessons::trace::{Direction, Trace};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

/// What the server is given at start, from its flags.
pub struct Settings {
    /// The cameras and their secrets.
    pub users: Users,
    /// Who may send datagrams (`--allow`).
    pub allow: Allowlist,
    pub store: Store,
    pub limits: Limits,
    /// `--drop` and `--seed`: which of our replies to throw away.
    pub dropper: Dropper,
    /// `--trace`: one line per datagram.
    pub trace: bool,
    /// A test knob: sleep this long after each new report.
    pub pause_after_hello: Duration,
}

/// The server's state: the socket, the settings, and every report in progress.
pub struct Reports {
    socket: UdpSocket,
    settings: Settings,
    /// Reports in progress, keyed by who sends them and the report id. The
    /// address is part of the key: another host that guessed (or saw) a
    /// report id still cannot add chunks to it.
    partials: HashMap<(SocketAddr, u64), Partial>,
    /// Recently stored reports, oldest first in `finished_order`.
    finished: HashMap<(SocketAddr, u64), Finished>,
    finished_order: VecDeque<(SocketAddr, u64)>,
    dropped: Dropped,
    dropped_logged: Dropped,
    last_drop_log: Instant,
}

impl Reports {
    /// The server's state around a bound socket.
    pub fn new(socket: UdpSocket, settings: Settings) -> Reports {
        Reports {
            socket,
            settings,
            partials: HashMap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            dropped: Dropped::default(),
            dropped_logged: Dropped::default(),
            last_drop_log: Instant::now(),
        }
    }

    /// The socket, for the receive loop.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Handles one datagram that arrived from `from`.
    ///
    /// The order of the checks is the lesson: *who* (the allowlist), *what
    /// shape* (parse), *which secret* (from the HELLO's camera, or from the
    /// report the datagram belongs to), *is it genuine* (the tag). Only a
    /// datagram that passes all four is ever answered. A reply to anything
    /// else would go to an address that anybody can forge in a UDP header:
    /// an attacker would send us small forged datagrams and we would fire
    /// our replies at the victim whose address they wrote (a reflection
    /// attack; amplification if our replies were bigger than their requests).
    pub fn handle(&mut self, bytes: &[u8], from: SocketAddr) {
        // 1. Who: `--allow` is checked for every datagram, since there is no
        //    connection whose first packet could be checked once for all.
        if !self.settings.allow.contains(from.ip()) {
            self.dropped.not_allowed += 1;
            return;
        }
        // 2. What shape.
        let datagram = match datagram::parse(bytes) {
            Ok(d) => d,
            Err(why) => {
                self.dropped.malformed += 1;
                self.note(from, &format!("dropped {} bytes: {why}", bytes.len()));
                return;
            }
        };
        let trace = Trace::new(from, self.settings.trace);
        trace.line(
            Direction::Received,
            datagram::describe(&datagram.header, datagram.payload.len()).as_bytes(),
        );
        // 3 and 4 depend on the kind: a HELLO names its camera; every other
        // datagram belongs to a report we already know, or to nothing.
        match datagram.header.kind {
            Kind::Hello => self.hello(&datagram, from),
            Kind::Data => self.data(&datagram, from),
            // Cameras never send these; whoever did gets nothing back.
            Kind::Ack | Kind::Done | Kind::Err => {
                self.dropped.bad_request += 1;
                self.note(from, "dropped: a server-to-camera kind sent to the server");
            }
        }
    }

    /// A HELLO's payload, camera and secret, if it is genuine; else it is
    /// counted and dropped, and `None` means "say nothing".
    fn authentic_hello(
        &mut self,
        d: &Unverified<'_>,
        from: SocketAddr,
    ) -> Option<(Hello, String, String)> {
        // The camera's name is inside the payload, so the payload must be
        // read before the tag can be checked. Nothing read here is trusted
        // or answered until `verify` says the datagram is genuine.
        let Some(hello) = Hello::decode(d.payload) else {
            self.dropped.malformed += 1;
            self.note(from, "dropped: HELLO payload breaks the format");
            return None;
        };
        let camera = hello.get("camera").unwrap_or("").to_string();
        // An unknown camera is treated exactly like a wrong tag: with no
        // secret, nothing can be checked, so nothing is answered.
        let Some(secret) = self.settings.users.secret(&camera).map(str::to_string) else {
            self.dropped.bad_tag += 1;
            self.note(from, "dropped: HELLO from an unknown camera");
            return None;
        };
        if !d.verify(secret.as_bytes()) {
            self.dropped.bad_tag += 1;
            self.note(from, "dropped: wrong tag");
            return None;
        }
        Some((hello, camera, secret))
    }

    /// A HELLO: a camera announces a report.
    fn hello(&mut self, d: &Unverified<'_>, from: SocketAddr) {
        let Some((hello, camera, secret)) = self.authentic_hello(d, from) else {
            return;
        };
        // From here on the datagram is genuine: answers are safe.
        let h = d.header;
        let key = (from, h.report);
        let to = To::new(from, &secret, h.report, h.total);
        if self.finished.contains_key(&key) {
            self.send(to, Kind::Done, 0, &[]);
            return;
        }
        if let Some(partial) = self.partials.get_mut(&key) {
            // A HELLO again: our first ACK was lost, or the camera checks on
            // us after a silence. Say where we are.
            partial.last_heard = Instant::now();
            partial.datagrams += 1;
            let ack = partial.ack();
            let total = partial.total;
            self.send_ack(To { total, ..to }, &ack);
            return;
        }
        if !store::valid_camera_name(&camera)
            || h.seq != 0
            || u64::from(h.total) != datagram::chunk_count(hello.size)
        {
            self.dropped.bad_request += 1;
            self.log(
                from,
                &format!("{camera}: refused a HELLO that breaks the format"),
            );
            self.send(to, Kind::Err, 0, b"bad request");
            return;
        }
        // Stored already, by this run or an earlier one: the camera never
        // heard our DONE. Say it again and write nothing: idempotence.
        if self.settings.store.has(&camera, h.report) {
            self.remember_finished(key, secret.clone(), h.total);
            self.send(to, Kind::Done, 0, &[]);
            return;
        }
        if let Some(reason) = self.refusal(&camera, hello.size, from) {
            self.send(to, Kind::Err, 0, reason);
            return;
        }
        self.log(
            from,
            &format!(
                "{camera}: report {:016x} announced, {} bytes in {} chunks",
                h.report, hello.size, h.total
            ),
        );
        let partial = Partial {
            camera,
            secret: secret.clone(),
            hello,
            total: h.total,
            chunks: BTreeMap::new(),
            first_missing: 0,
            last_heard: Instant::now(),
            datagrams: 1,
        };
        let ack = partial.ack();
        self.partials.insert(key, partial);
        self.send_ack(to, &ack);
        if !self.settings.pause_after_hello.is_zero() {
            // Test knob: a server too busy to read. Datagrams keep arriving
            // meanwhile and queue in the socket's receive buffer, until it is
            // full and the kernel drops the rest, telling nobody.
            std::thread::sleep(self.settings.pause_after_hello);
        }
    }

    /// Why a new report is refused, if it is (the reason its ERR carries):
    /// too large, or too many reports in progress, from this host or in all.
    fn refusal(&self, camera: &str, size: u64, from: SocketAddr) -> Option<&'static [u8]> {
        if size > self.settings.limits.max_size {
            self.log(from, &format!("{camera}: refused {size} bytes: too large"));
            return Some(b"too large");
        }
        let from_host = self
            .partials
            .keys()
            .filter(|(a, _)| same_host(a.ip(), from.ip()))
            .count();
        if self.partials.len() >= self.settings.limits.max_partials
            || from_host >= self.settings.limits.max_partials_per_ip
        {
            self.log(from, &format!("{camera}: refused a report: busy"));
            return Some(b"busy");
        }
        None
    }

    /// A DATA chunk.
    fn data(&mut self, d: &Unverified<'_>, from: SocketAddr) {
        let h = d.header;
        let key = (from, h.report);
        // The secret comes from the report this chunk claims to belong to.
        // A chunk for a report we do not know cannot be checked: dropped.
        if let Some(done) = self.finished.get(&key) {
            if d.verify(done.secret.as_bytes()) {
                // A late duplicate, or the camera never heard our DONE.
                let (secret, total) = (done.secret.clone(), done.total);
                let to = To::new(from, &secret, h.report, total);
                self.send(to, Kind::Done, 0, &[]);
            } else {
                self.dropped.bad_tag += 1;
            }
            return;
        }
        let Some(partial) = self.partials.get_mut(&key) else {
            self.dropped.unknown_report += 1;
            self.note(from, "dropped: DATA for no report in progress");
            return;
        };
        if !d.verify(partial.secret.as_bytes()) {
            self.dropped.bad_tag += 1;
            self.note(from, "dropped: wrong tag");
            return;
        }
        if h.total != partial.total
            || h.seq >= partial.total
            || d.payload.len() != partial.chunk_len(h.seq)
        {
            self.dropped.bad_request += 1;
            self.note(from, "dropped: DATA that does not fit its report");
            return;
        }
        partial.last_heard = Instant::now();
        partial.datagrams += 1;
        // Reassembly: keep the chunk unless we hold it already (a duplicate,
        // made by the network or by a resend whose original was only late).
        partial
            .chunks
            .entry(h.seq)
            .or_insert_with(|| d.payload.to_vec());
        while partial.chunks.contains_key(&partial.first_missing) {
            partial.first_missing += 1;
        }
        if partial.first_missing < partial.total {
            let ack = partial.ack();
            let (secret, total) = (partial.secret.clone(), partial.total);
            let to = To::new(from, &secret, h.report, total);
            self.send_ack(to, &ack);
            return;
        }
        // Every chunk is here.
        if let Some(partial) = self.partials.remove(&key) {
            self.complete(key, partial);
        }
    }

    /// The last chunk arrived: check the photo, store it, say DONE.
    fn complete(&mut self, key: (SocketAddr, u64), partial: Partial) {
        let (from, report) = key;
        let to = To::new(from, &partial.secret, report, partial.total);
        let camera = &partial.camera;
        let mut photo = Vec::with_capacity(partial.hello.size as usize);
        for chunk in partial.chunks.values() {
            photo.extend_from_slice(chunk);
        }
        // The digest is checked before anything touches the disk: what is
        // stored is what the camera photographed, or nothing.
        if sha256(&photo) != partial.hello.sha256 {
            self.log(
                from,
                &format!("{camera}: report {report:016x}: digest mismatch"),
            );
            self.send(to, Kind::Err, 0, b"digest mismatch");
            return;
        }
        let info = format!(
            "{}received={}\nfrom={from}\n",
            partial.hello.lines,
            datagram::utc_time(SystemTime::now())
        );
        let ext = store::extension(partial.hello.get("ext"));
        // Storing blocks this one thread (and so every camera) for the
        // writes and syncs. A real server would hand the finished report to
        // a writer thread and send DONE when that thread says it is synced.
        match self
            .settings
            .store
            .save(camera, report, &ext, &photo, &info)
        {
            Ok(path) => {
                self.log(
                    from,
                    &format!(
                        "{camera}: stored {} ({} bytes, {} chunks, {} datagrams received)",
                        path.display(),
                        photo.len(),
                        partial.total,
                        partial.datagrams
                    ),
                );
                // Only now, with the photo synced, may we say DONE.
                self.remember_finished(key, partial.secret.clone(), partial.total);
                self.send(to, Kind::Done, 0, &[]);
            }
            Err(e) => {
                let text = format!("{camera}: could not store report {report:016x}: {e}");
                self.log(from, &text);
                self.send(to, Kind::Err, 0, b"server error");
            }
        }
    }

    /// Remembers a stored report for a while, to answer its stragglers, with
    /// a bound: the oldest is forgotten first (the store still knows it).
    fn remember_finished(&mut self, key: (SocketAddr, u64), secret: String, total: u32) {
        if self
            .finished
            .insert(key, Finished { secret, total })
            .is_none()
        {
            self.finished_order.push_back(key);
        }
        while self.finished_order.len() > self.settings.limits.max_finished {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }

    /// Sends an ACK: its seq is the base, its payload the bitmap.
    fn send_ack(&mut self, to: To<'_>, ack: &Ack) {
        self.send(to, Kind::Ack, ack.base, &ack.bitmap);
    }

    /// Sends one datagram about `to.report`, signed with `to.secret`, unless
    /// `--drop` throws it away.
    fn send(&mut self, to: To<'_>, kind: Kind, seq: u32, payload: &[u8]) {
        let header = Header {
            kind,
            report: to.report,
            seq,
            total: to.total,
        };
        let secret = to.secret;
        let to = to.addr;
        let trace = Trace::new(to, self.settings.trace);
        let shown = datagram::describe(&header, payload.len());
        if self.settings.dropper.drop_next() {
            trace.note(&format!("{shown} thrown away by --drop"));
            return;
        }
        trace.line(Direction::Sent, shown.as_bytes());
        let bytes = datagram::build(&header, payload, secret.as_bytes());
        // A failed send is not worth more than a log line: the camera's
        // timer will make it ask again.
        if let Err(e) = self.socket.send_to(&bytes, to) {
            self.log(to, &format!("send failed: {e}"));
        }
    }

    /// Called after every datagram and at least once a second: expires
    /// abandoned reports and logs the drop counts now and then.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let expire = self.settings.limits.expire;
        let mut expired = Vec::new();
        self.partials.retain(|&(from, report), p| {
            let keep = now.duration_since(p.last_heard) < expire;
            if !keep {
                expired.push(format!(
                    "{from} {}: report {report:016x} expired with {} of {} chunks",
                    p.camera,
                    p.chunks.len(),
                    p.total
                ));
            }
            keep
        });
        for line in expired {
            log!("{line}");
        }
        // Dropped datagrams are summed up rather than logged one by one: a
        // flood of garbage must not become a flood of log lines.
        if self.dropped != self.dropped_logged
            && now.duration_since(self.last_drop_log) >= Duration::from_secs(1)
        {
            let d = &self.dropped;
            log!(
                "dropped {} datagram(s) without reply so far: {} not allowed, {} malformed, {} bad tag or unknown camera, {} for no report, {} not fitting their report",
                d.total(),
                d.not_allowed,
                d.malformed,
                d.bad_tag,
                d.unknown_report,
                d.bad_request
            );
            self.dropped_logged = self.dropped.clone();
            self.last_drop_log = now;
        }
    }

    /// One line on stderr about `from`.
    fn log(&self, from: SocketAddr, text: &str) {
        log!("{from} {text}");
    }

    /// A line for `--trace` only (per-datagram events would flood the log).
    fn note(&self, from: SocketAddr, text: &str) {
        Trace::new(from, self.settings.trace).note(text);
    }
}

/// Where a reply goes and what it is about: the camera's address, the
/// secret that signs the reply, and the report (its id and chunk count).
#[derive(Clone, Copy)]
struct To<'a> {
    addr: SocketAddr,
    secret: &'a str,
    report: u64,
    total: u32,
}

impl<'a> To<'a> {
    fn new(addr: SocketAddr, secret: &'a str, report: u64, total: u32) -> To<'a> {
        To {
            addr,
            secret,
            report,
            total,
        }
    }
}
